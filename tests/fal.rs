//! fal.ai end to end through `create_i2v_task` against the strict fake
//! (tests/support/fakes/fal.rs, docs/notes/fal.md): image-to-video with a local image uploaded
//! once (sha256 cache), text-to-video, Wan 3.0 reference-to-video, signed webhooks (accepted; a
//! forged, unsigned or stale one refused with 401), cancel while queued and refused once running,
//! 429, a 422 refusal and a failed generation, and the queue position as the task's note. Every
//! request is snapshotted (method, path, query, auth, body; ports and long strings redacted).

use std::sync::Arc;
use std::time::Duration;

use i2v_mcp::core::Core;
use i2v_mcp::model::{ProviderId, Status, Task};
use serde_json::{Value, json};

use crate::mcp_flow::assert_downloaded;
use crate::providers::redact;
use crate::support::fakes::{FakeProvider, Fault, Kind, Outcome, TaskPlan, fal};
use crate::support::hooks::{Hooked, hooked, post_hook};
use crate::support::{Workspace, call, connect, err, ok, within};

fn env(fake: &FakeProvider) -> Vec<(String, String)> {
    vec![
        ("FAL_KEY".into(), fake.api_key().to_string()),
        ("I2V_MCP_FAL_BASE_URL".into(), fake.base_url().to_string()),
        ("I2V_MCP_POLL_FIRST_MS".into(), "30".into()),
        ("I2V_MCP_POLL_MAX_MS".into(), "150".into()),
    ]
}

fn core(ws: &Workspace, fake: &FakeProvider) -> Arc<Core> {
    let env = env(fake);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Core::start(ws.config(&pairs)).unwrap()
}

/// Every request the fake received, in order: method, path, query, auth, content type and the
/// redacted body (the JWKS and video downloads are left out: they carry no wire of ours).
fn wire(fake: &FakeProvider) -> Vec<Value> {
    fake.requests()
        .into_iter()
        .filter(|r| !r.path.starts_with("/files/") && !r.path.starts_with("/.well-known/"))
        .map(|r| {
            let query = redact(&json!(r.query));
            let body = if r.body.is_null() && !r.body_text.is_empty() {
                json!(format!("<{} bytes>", r.body_text.len()))
            } else {
                redact(&r.body)
            };
            json!({
                "method": r.method, "path": r.path, "query": query,
                "auth": r.header("authorization").unwrap_or("<none>"),
                "content_type": r.header("content-type").unwrap_or("<none>"),
                "body": body,
            })
        })
        .collect()
}

fn creates(fake: &FakeProvider) -> Vec<Value> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && !r.path.starts_with("/storage/"))
        .map(|r| r.body)
        .collect()
}

async fn create(s: &crate::support::Session, args: Value) -> Value {
    ok(&call(s, "create_i2v_task", args).await)
}

#[tokio::test]
async fn fal_i2v_uploads_a_local_image_once() {
    let fake = FakeProvider::start(Kind::Fal).await;
    let ws = Workspace::new();
    let png = ws.png("cat.png", 640, 480);
    let (s, _) = connect(core(&ws, &fake)).await;
    let args = json!({"image": png, "prompt": "the cat turns its head", "provider": "fal",
        "model": "wan2.2-i2v-a14b", "duration_seconds": 5, "wait_seconds": 30});
    let task = create(&s, args.clone()).await;
    assert_downloaded(&task);
    // 720p for 5 s at $0.08/s (fal's price for the model).
    assert_eq!(task["estimated_cost_usd"], 0.4, "{task}");
    insta::assert_json_snapshot!("fal_i2v_wire", wire(&fake));

    // The same image again: no second upload, the cached file URL is sent.
    let again = create(&s, args).await;
    assert_downloaded(&again);
    assert_eq!(fake.uploads(), 1, "uploaded twice");
    let bodies = creates(&fake);
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["image_url"], bodies[1]["image_url"]);
    assert!(
        bodies[0]["image_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/uploads/", fake.root_url())),
        "{}",
        bodies[0]
    );
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn fal_t2v_and_an_https_image_need_no_upload() {
    let fake = FakeProvider::start(Kind::Fal).await;
    let ws = Workspace::new();
    let (s, _) = connect(core(&ws, &fake)).await;
    let t2v = create(
        &s,
        json!({"prompt": "a lighthouse in a storm", "provider": "fal", "model": "wan2.2-t2v-a14b",
            "aspect_ratio": "9:16", "resolution": "480p", "duration_seconds": 10, "seed": 7,
            "wait_seconds": 30}),
    )
    .await;
    assert_downloaded(&t2v);
    let i2v = create(
        &s,
        json!({"image": "https://example.com/cat.png", "prompt": "the cat blinks", "provider": "fal",
            "model": "wan2.7-i2v", "end_image": "https://example.com/end.png",
            "resolution": "1080p", "duration_seconds": 12, "prompt_extend": false, "wait_seconds": 30}),
    )
    .await;
    assert_downloaded(&i2v);
    assert_eq!(i2v["estimated_cost_usd"], 1.8, "{i2v}");
    assert_eq!(fake.uploads(), 0);
    insta::assert_json_snapshot!("fal_t2v_and_url_i2v_wire", wire(&fake));
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn fal_wan3_reference_to_video_uploads_reference_images() {
    let fake = FakeProvider::start(Kind::Fal).await;
    let ws = Workspace::new();
    let hero = ws.png("hero.png", 640, 480);
    let (s, _) = connect(core(&ws, &fake)).await;
    let task = create(
        &s,
        json!({"prompt": "Image 1 walks like Video 1", "provider": "fal", "model": "wan3.0",
            "references": [hero, "https://example.com/walk.mp4", "https://example.com/street.jpg"],
            "duration_seconds": 8, "wait_seconds": 30}),
    )
    .await;
    assert_downloaded(&task);
    let body = &creates(&fake)[0];
    assert_eq!(fake.tasks()[0].route, "/alibaba/wan-3.0/reference-to-video");
    let images = body["reference_image_urls"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{body}");
    assert!(images[0].as_str().unwrap().contains("/uploads/"), "{body}");
    assert_eq!(images[1], "https://example.com/street.jpg");
    assert_eq!(
        body["reference_video_urls"],
        json!(["https://example.com/walk.mp4"])
    );
    // Billing-relevant defaults are sent, never left to fal: 720p, audio off.
    assert_eq!(
        (&body["resolution"], &body["audio"]),
        (&json!("720p"), &json!(false))
    );
    insta::assert_json_snapshot!("fal_wan3_references_wire", wire(&fake));

    // Text only: the text endpoint.
    let t = create(
        &s,
        json!({"prompt": "a quiet harbour", "provider": "fal", "model": "wan3.0", "audio": true,
            "wait_seconds": 30}),
    )
    .await;
    assert_downloaded(&t);
    assert_eq!(fake.tasks()[1].route, "/alibaba/wan-3.0/text-to-video");
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn fal_refusals_failures_and_rate_limits() {
    let fake = FakeProvider::start(Kind::Fal).await;
    let ws = Workspace::new();
    let (s, _) = connect(core(&ws, &fake)).await;
    let args = json!({"image": "https://example.com/cat.png", "prompt": "p", "provider": "fal",
        "model": "wan2.2-i2v-a14b-turbo"});

    // 429 with Retry-After: refused for sure, so sent again once allowed.
    fake.push_create_fault(Fault::rate_limited(1));
    let t = create(&s, args.clone()).await;
    assert_eq!(t["status"], "queued", "{t}");
    assert_eq!((fake.creates(), fake.accepted_creates()), (2, 1));

    // A 422 `detail[]`: invalid input, named field, never resent.
    fake.push_create_fault(Fault::status(
        422,
        r#"{"detail":[{"loc":["body","image_url"],"msg":"Unsupported image format","type":"value_error"}]}"#,
    ));
    let e = err(&call(&s, "create_i2v_task", args.clone()).await);
    assert_eq!(e["category"], "invalid_input", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("body.image_url: Unsupported image format"),
        "{e}"
    );
    assert_eq!(fake.creates(), 3);

    // A 5xx: fal may have queued it; never resent.
    fake.push_create_fault(Fault::ServerError);
    let e = err(&call(&s, "create_i2v_task", args.clone()).await);
    assert_eq!(e["category"], "submit_unknown", "{e}");
    assert_eq!(fake.creates(), 4);

    // A generation that fails upstream: COMPLETED with `error`.
    fake.set_plan(TaskPlan::Polls {
        pending: 0,
        processing: 1,
        outcome: Outcome::fail("content moderation flagged the output"),
    });
    let mut a = args.clone();
    a["wait_seconds"] = json!(30);
    let t = create(&s, a).await;
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["error"]["category"], "generation_failed", "{t}");
    assert!(
        t["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content moderation flagged the output"),
        "{t}"
    );

    // A wrong key: 401 from fal is `auth`, naming FAL_KEY.
    fake.fail_auth(true);
    let e = err(&call(&s, "create_i2v_task", args).await);
    assert_eq!(e["category"], "auth", "{e}");
    assert!(e["next_step"].as_str().unwrap().contains("FAL_KEY"), "{e}");
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn fal_cancel_only_while_queued_and_queue_position_as_note() {
    let fake = FakeProvider::start(Kind::Fal).await;
    fake.set_plan(TaskPlan::Polls {
        pending: 1000,
        processing: 1,
        outcome: Outcome::Succeed,
    });
    let ws = Workspace::new();
    let (s, _) = connect(core(&ws, &fake)).await;
    let args = json!({"image": "https://example.com/cat.png", "prompt": "p", "provider": "fal",
        "model": "wan2.2-i2v-a14b"});
    let t = create(&s, args.clone()).await;
    let id = t["task_id"].as_str().unwrap().to_string();
    // The queue position reaches the task as its note.
    let seen = within(10, "the queue note", async {
        loop {
            let g = ok(&call(&s, "get_task", json!({"task_id": id})).await);
            if g["note"].as_str().is_some_and(|n| n.contains("position")) {
                return g;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    })
    .await;
    assert!(
        seen["note"]
            .as_str()
            .unwrap()
            .contains("waiting in fal's queue: position 99"),
        "{seen}"
    );
    let c = ok(&call(&s, "cancel_task", json!({"task_id": id})).await);
    assert_eq!(c["status"], "cancelled", "{c}");
    let puts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 1);
    assert!(puts[0].path.ends_with("/cancel"), "{}", puts[0].path);
    assert!(fake.tasks()[0].cancelled);

    // Once running, fal refuses: we stop watching (the core's rule for a refused cancel) and
    // the note says that fal goes on and bills it.
    fake.set_plan(TaskPlan::Polls {
        pending: 0,
        processing: 1000,
        outcome: Outcome::Succeed,
    });
    let t = create(&s, args).await;
    let id = t["task_id"].as_str().unwrap().to_string();
    within(10, "the task to run", async {
        loop {
            let g = ok(&call(&s, "get_task", json!({"task_id": id})).await);
            if g["status"] == "running" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    })
    .await;
    let c = ok(&call(&s, "cancel_task", json!({"task_id": id})).await);
    let note = c["note"].as_str().unwrap();
    assert!(note.contains("only while it waits in the queue"), "{c}");
    assert!(note.contains("may still finish and charge"), "{c}");
    assert!(!fake.tasks()[1].cancelled);
    s.cancel().await.unwrap();
}

async fn task_of(core: &Core, id: &str) -> Task {
    core.journal().get(id).await.unwrap().unwrap().to_task()
}

/// A signed callback is accepted and completes the task at once; forged, unsigned or stale ones
/// are refused with 401 before the task is even looked up, and change nothing.
#[tokio::test]
async fn fal_webhooks_are_signed_and_forgeries_refused() {
    let fake = FakeProvider::start(Kind::Fal).await;
    let Hooked {
        core,
        addr,
        handle,
        task,
        upstream_id: request_id,
        hook_url,
        ..
    } = hooked(
        &fake,
        &env(&fake),
        ProviderId::Fal,
        "the cat turns its head",
    )
    .await;
    let id = task.task_id;
    let prefix = format!("http://{addr}/webhooks/fal?task={id}&token=");
    assert!(hook_url.starts_with(&prefix), "{hook_url}");
    let create = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert!(
        create
            .query
            .starts_with("fal_webhook=http%3A%2F%2F127.0.0.1%3A"),
        "{}",
        create.query
    );

    let body = json!({"request_id": request_id, "gateway_request_id": request_id, "status": "OK",
        "payload": {"video": {"url": "http://127.0.0.1:9/forged.mp4"}}})
    .to_string();
    let send = |headers, body| post_hook(&hook_url, headers, body);
    let before = task_of(&core, &id).await;
    // Unsigned.
    assert_eq!(send(vec![], body.clone()).await, 401);
    // Signed, but over another body.
    let other = fal::signed_headers(&request_id, b"{}");
    assert_eq!(send(other, body.clone()).await, 401);
    // Signed by fal's key, but 10 minutes old (a replay).
    let old = (std::time::SystemTime::now() - Duration::from_secs(600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let stale = fal::signed_headers_at(&request_id, body.as_bytes(), &old);
    assert_eq!(send(stale, body.clone()).await, 401);
    // A garbled signature.
    let mut bad = fal::signed_headers(&request_id, body.as_bytes());
    bad[3].1 = "zz".repeat(64);
    assert_eq!(send(bad, body.clone()).await, 401);
    // Properly signed, but the token of our URL missing: the per-task secret still applies.
    let good = fal::signed_headers(&request_id, body.as_bytes());
    let untokened = hook_url.split("&token=").next().unwrap().to_string();
    assert_eq!(post_hook(&untokened, good, body.clone()).await, 401);
    assert_eq!(
        task_of(&core, &id).await,
        before,
        "a refused webhook changed the journal"
    );
    assert_eq!(
        fake.polls(&request_id),
        0,
        "a refused webhook caused a poll"
    );

    // fal finishes and calls back, signed: the task completes promptly (by a confirming poll).
    assert!(fake.complete_now(&request_id));
    let deliveries = fake.wait_webhooks(1, Duration::from_secs(10)).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, Some(200), "{:?}", deliveries[0]);
    let done = within(10, "completion after the webhook", async {
        loop {
            let t = task_of(&core, &id).await;
            if t.status == Status::Succeeded && !t.download_pending {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_downloaded(&serde_json::to_value(&done).unwrap());
    let jwks_reads = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/.well-known/jwks.json")
        .count();
    assert_eq!(jwks_reads, 1, "the JWKS is cached");
    within(15, "shutdown", handle.shutdown()).await;
}

/// fal's JWKS down: with no keys yet, a genuine callback is answered 500 (fal retries it) and
/// changes nothing; once the keys were read, they keep serving while the JWKS is down again.
#[tokio::test]
async fn fal_webhooks_when_the_jwks_is_down() {
    let fake = FakeProvider::start(Kind::Fal).await;
    fake.fail_jwks(true);
    let h = hooked(
        &fake,
        &env(&fake),
        ProviderId::Fal,
        "the cat turns its head",
    )
    .await;
    let (id, request_id) = (h.task.task_id.clone(), h.upstream_id.clone());
    let body = json!({"request_id": request_id, "gateway_request_id": request_id,
        "status": "OK", "payload": {"video": {"url": "http://127.0.0.1:9/x.mp4"}}})
    .to_string();
    let signed = || fal::signed_headers(&request_id, body.as_bytes());
    let before = task_of(&h.core, &id).await;
    assert_eq!(post_hook(&h.hook_url, signed(), body.clone()).await, 500);
    assert_eq!(task_of(&h.core, &id).await, before);
    assert_eq!(
        fake.polls(&request_id),
        0,
        "a refused webhook caused a poll"
    );
    fake.fail_jwks(false);
    assert_eq!(post_hook(&h.hook_url, signed(), body.clone()).await, 200);
    fake.fail_jwks(true);
    assert_eq!(post_hook(&h.hook_url, signed(), body.clone()).await, 200);
    // A forgery is still refused from the cached keys, JWKS down or not.
    let other = fal::signed_headers(&request_id, b"{}");
    assert_eq!(post_hook(&h.hook_url, other, body.clone()).await, 401);
    within(15, "shutdown", h.handle.shutdown()).await;
}

/// fal states no lifetime for its output URLs (UNKNOWN, docs/notes/fal.md): a download that finds
/// the file gone (404) asks fal for the result again (the request's `response_url`, never a new
/// create) and fetches the URL it gives.
#[tokio::test]
async fn fal_an_expired_output_url_is_read_again_from_the_result() {
    let fake = FakeProvider::start(Kind::Fal).await;
    fake.push_download_fault(Fault::status(404, "Not Found"));
    fake.push_download_fault(Fault::status(404, "Not Found"));
    let ws = Workspace::new();
    let (s, _) = connect(core(&ws, &fake)).await;
    let t = create(
        &s,
        json!({"image": "https://example.com/cat.png", "prompt": "p", "provider": "fal",
            "model": "wan2.7-i2v", "wait_seconds": 45}),
    )
    .await;
    assert_downloaded(&t);
    assert_eq!(fake.downloads(), 3, "two expired answers, then the file");
    let id = &fake.tasks()[0].id;
    let results = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/requests/{id}")))
        .count();
    assert!(results >= 2, "the result was not read again: {results}");
    assert_eq!(fake.accepted_creates(), 1);
    s.cancel().await.unwrap();
}

/// A storage upload that fails (5xx) created nothing: the create is tried again, uploading again,
/// and fal sees one create. A failed signed PUT is the same.
#[tokio::test]
async fn fal_a_failed_upload_is_a_sure_refusal() {
    let fake = FakeProvider::start(Kind::Fal).await;
    fake.push_upload_fault(Fault::ServerError);
    let ws = Workspace::new();
    let png = ws.png("cat.png", 640, 480);
    let (s, _) = connect(core(&ws, &fake)).await;
    let t = create(
        &s,
        json!({"image": png, "prompt": "p", "provider": "fal", "model": "wan2.2-i2v-a14b"}),
    )
    .await;
    assert_eq!(t["status"], "queued", "{t}");
    assert_eq!(fake.uploads(), 2, "the upload is tried again");
    assert_eq!((fake.creates(), fake.accepted_creates()), (1, 1));
    s.cancel().await.unwrap();
}
