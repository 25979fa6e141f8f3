//! Replicate end to end against its strict fake (tests/support/fakes/replicate.rs): image- and
//! text-to-video with wire snapshots, local images (inline under the 1 MB data-URI limit, the
//! Files API above it, uploaded once), signed webhooks (accepted; forged, tampered, stale and
//! unsigned ones refused with 401), cancel, 429 with the wait in `detail`, 402, 422, failed and
//! aborted predictions, Cancel-After honoured by the fake, and outputs that expire.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use i2v_mcp::core::Core;
use i2v_mcp::model::{CreateRequest, ProviderId, Status};

use crate::mcp_flow::assert_downloaded;
use crate::providers::wire;
use crate::support::fakes::{FakeProvider, Fault, Kind, Outcome, TaskPlan};
use crate::support::hooks::{Hooked, hooked, post_hook};
use crate::support::{Workspace, call, connect, err, ok, within};

/// The variables that point the server at `fake` (the key variable is REPLICATE_API_TOKEN).
pub(crate) fn env(fake: &FakeProvider) -> Vec<(String, String)> {
    vec![
        ("REPLICATE_API_TOKEN".into(), fake.api_key().to_string()),
        (
            "I2V_MCP_REPLICATE_BASE_URL".into(),
            fake.base_url().to_string(),
        ),
    ]
}

pub(crate) fn core(ws: &Workspace, fake: &FakeProvider, extra: &[(&str, &str)]) -> Arc<Core> {
    let env = env(fake);
    let mut pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.extend_from_slice(extra);
    Core::start(ws.config(&pairs)).unwrap()
}

fn creates(fake: &FakeProvider) -> Vec<crate::support::fakes::Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/predictions"))
        .collect()
}

/// Every create carries `Cancel-After` and never `Prefer: wait`.
fn assert_create_headers(fake: &FakeProvider) {
    let c = creates(fake);
    assert!(!c.is_empty());
    for r in c {
        assert_eq!(r.header("cancel-after"), Some("1h"), "{:?}", r.headers);
        assert_eq!(r.header("prefer"), None, "{:?}", r.headers);
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {}", fake.api_key()).as_str())
        );
    }
}

async fn run(fake: &FakeProvider, ws: &Workspace, args: Value) -> Value {
    let (s, _) = connect(core(ws, fake, &[])).await;
    let mut a =
        json!({"prompt": "the cat turns its head", "provider": "replicate", "wait_seconds": 30});
    for (k, v) in args.as_object().cloned().unwrap_or_default() {
        a[k] = v;
    }
    let task = ok(&call(&s, "create_i2v_task", a).await);
    s.cancel().await.unwrap();
    task
}

#[tokio::test]
async fn replicate_wan25_i2v_by_url() {
    let fake = FakeProvider::start(Kind::Replicate).await;
    let ws = Workspace::new();
    let task = run(
        &fake,
        &ws,
        json!({"image": "https://example.com/cat.png", "model": "wan-2.5-i2v", "resolution": "1080p",
            "duration_seconds": 10, "seed": 42, "negative_prompt": "blur", "audio_url": "https://example.com/beat.mp3",
            "prompt_extend": false}),
    )
    .await;
    assert_downloaded(&task);
    assert!(
        task["video"]["url_expires_at"].is_string(),
        "the one-hour output life is kept as the expiry: {task}"
    );
    assert_create_headers(&fake);
    insta::assert_json_snapshot!("replicate_wan25_i2v_wire", wire(&fake));
}

#[tokio::test]
async fn replicate_wan22_i2v_a14b_defaults() {
    let fake = FakeProvider::start(Kind::Replicate).await;
    let ws = Workspace::new();
    let task = run(
        &fake,
        &ws,
        json!({"image": "https://example.com/cat.png", "model": "wan-2.2-i2v-a14b", "steps": 20, "flow_shift": 8.0}),
    )
    .await;
    assert_downloaded(&task);
    insta::assert_json_snapshot!("replicate_wan22_i2v_a14b_wire", wire(&fake));
}

#[tokio::test]
async fn replicate_wan25_t2v() {
    let fake = FakeProvider::start(Kind::Replicate).await;
    let ws = Workspace::new();
    let task = run(
        &fake,
        &ws,
        json!({"model": "wan-2.5-t2v", "aspect_ratio": "9:16", "resolution": "480p"}),
    )
    .await;
    assert_downloaded(&task);
    assert_create_headers(&fake);
    insta::assert_json_snapshot!("replicate_wan25_t2v_wire", wire(&fake));
}

/// A PNG of random pixels (it does not compress), `w` x `h`.
pub(crate) fn noisy_png(path: &std::path::Path, w: u32, h: u32) -> u64 {
    let mut x: u32 = 0x9e37_79b9;
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        image::Rgb([(x >> 24) as u8, (x >> 16) as u8, (x >> 8) as u8])
    });
    img.save(path).unwrap();
    std::fs::metadata(path).unwrap().len()
}

#[tokio::test]
async fn replicate_local_images_inline_under_1_mb_else_the_files_api_once() {
    let fake = FakeProvider::start(Kind::Replicate).await;
    let ws = Workspace::new();
    let small = ws.png("small.png", 640, 480);
    let big = ws.images().join("big.png");
    let size = noisy_png(&big, 800, 600);
    assert!(size >= 1_000_000, "the big image is {size} bytes");
    let (s, _) = connect(core(&ws, &fake, &[])).await;
    let args = |img: &std::path::Path| json!({"image": img, "prompt": "p", "provider": "replicate", "model": "wan-2.5-i2v", "wait_seconds": 30});

    let t = ok(&call(&s, "create_i2v_task", args(&small)).await);
    assert_downloaded(&t);
    assert_eq!(fake.uploads(), 0, "a small image goes inline");
    let image = &creates(&fake)[0].body["input"]["image"];
    assert!(
        image
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,"),
        "{image}"
    );

    for _ in 0..2 {
        let t = ok(&call(&s, "create_i2v_task", args(&big)).await);
        assert_downloaded(&t);
    }
    assert_eq!(
        fake.uploads(),
        1,
        "the big image is uploaded once, then reused"
    );
    let upload = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/files")
        .unwrap();
    assert!(
        upload
            .header("content-type")
            .unwrap()
            .starts_with("multipart/form-data; boundary="),
        "{:?}",
        upload.headers
    );
    let c = creates(&fake);
    for r in &c[1..] {
        let url = r.body["input"]["image"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/v1/files/rf", fake.root_url())),
            "the upload's urls.get is sent: {url}"
        );
    }
    // A failed upload creates nothing and says why.
    let other = ws.images().join("other.png");
    noisy_png(&other, 801, 600);
    fake.push_upload_fault(Fault::replicate_error(
        413,
        "Payload too large",
        "files are limited to 100 MB",
    ));
    let e = err(&call(&s, "create_i2v_task", args(&other)).await);
    assert!(e["message"].as_str().unwrap().contains("413"), "{e}");
    assert_eq!(
        fake.accepted_creates(),
        3,
        "nothing created after a failed upload"
    );
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn replicate_cancel() {
    let fake = FakeProvider::start_queued(Kind::Replicate).await;
    let ws = Workspace::new();
    let (s, _) = connect(core(&ws, &fake, &[])).await;
    let t = ok(&call(
        &s,
        "create_i2v_task",
        json!({"image": "https://example.com/cat.png", "prompt": "p", "provider": "replicate"}),
    )
    .await);
    let c = ok(&call(&s, "cancel_task", json!({"task_id": t["task_id"]})).await);
    assert_eq!(c["status"], "cancelled", "{c}");
    let cancels: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/cancel"))
        .collect();
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].method, "POST");
    assert!(fake.tasks()[0].cancelled);
    assert_eq!(fake.tasks()[0].status, "canceled");
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn replicate_429_waits_as_detail_says_then_creates_once() {
    let fake = FakeProvider::start(Kind::Replicate).await;
    let ws = Workspace::new();
    fake.push_create_fault(Fault::replicate_error(
        429,
        "Request was throttled",
        "Request was throttled. Your rate limit resets in ~1s.",
    ));
    let task = run(&fake, &ws, json!({"image": "https://example.com/cat.png"})).await;
    assert_downloaded(&task);
    assert_eq!(fake.creates(), 2, "one refused, then one accepted");
    assert_eq!(fake.accepted_creates(), 1);

    // Throttled every time: refused as rate_limited, nothing created.
    let fake = FakeProvider::start(Kind::Replicate).await;
    for _ in 0..3 {
        fake.push_create_fault(Fault::rate_limited(0));
    }
    let (s, _) = connect(core(&ws, &fake, &[])).await;
    let e = err(&call(
        &s,
        "create_i2v_task",
        json!({"image": "https://example.com/cat.png", "prompt": "p", "provider": "replicate"}),
    )
    .await);
    assert_eq!(e["category"], "rate_limited", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("resets in ~0s"),
        "{e}"
    );
    assert_eq!(fake.accepted_creates(), 0);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn replicate_refusals_and_failures() {
    let fake = FakeProvider::start(Kind::Replicate).await;
    let ws = Workspace::new();
    let (s, _) = connect(core(&ws, &fake, &[])).await;
    let args = json!({"image": "https://example.com/cat.png", "prompt": "p", "provider": "replicate", "wait_seconds": 30});

    fake.push_create_fault(Fault::replicate_error(
        402,
        "Insufficient credit",
        "You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to purchase credit.",
    ));
    let e = err(&call(&s, "create_i2v_task", args.clone()).await);
    assert_eq!(e["category"], "credits", "{e}");
    assert_eq!(fake.creates(), 1, "out of credit is not retried");

    fake.push_create_fault(Fault::status(
        422,
        json!({"title": "Input validation failed", "detail": "- input: Additional property foo is not allowed\n", "status": 422,
            "invalid_fields": [{"type": "additional_property_not_allowed", "field": "input", "description": "Additional property foo is not allowed"}]}).to_string(),
    ));
    let e = err(&call(&s, "create_i2v_task", args.clone()).await);
    assert_eq!(e["category"], "invalid_input", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Additional property foo"),
        "{e}"
    );

    fake.push_create_fault(Fault::status(401, json!({"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401}).to_string()));
    let e = err(&call(&s, "create_i2v_task", args.clone()).await);
    assert_eq!(e["category"], "auth", "{e}");
    assert!(
        e["next_step"]
            .as_str()
            .unwrap()
            .contains("REPLICATE_API_TOKEN"),
        "{e}"
    );
    assert_eq!(fake.accepted_creates(), 0);

    // The model fails, or Replicate aborts the prediction before it runs.
    for (message, word) in [
        ("NSFW content detected in the output", "NSFW"),
        ("aborted: deadline reached before start", "aborted"),
    ] {
        fake.set_plan(TaskPlan::Polls {
            pending: 0,
            processing: 1,
            outcome: Outcome::fail(message),
        });
        let t = ok(&call(&s, "create_i2v_task", args.clone()).await);
        assert_eq!(t["status"], "failed", "{t}");
        let text = t["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(word), "{t}");
    }
    let statuses: Vec<String> = fake.tasks().into_iter().map(|t| t.status).collect();
    assert_eq!(statuses, ["failed", "aborted"]);
    s.cancel().await.unwrap();
}

/// The fake's own strictness, as Replicate's validation: an unknown input field is a 422 naming
/// it, a data URI of 1 MB or more is refused, and a lapsed `Cancel-After` ends the prediction
/// `aborted` (never started) or `canceled` (running).
#[tokio::test]
async fn replicate_fake_is_strict_and_honours_cancel_after() {
    let fake = FakeProvider::start(Kind::Replicate).await;
    let c = reqwest::Client::new();
    let post = |body: Value, cancel_after: Option<&str>| {
        let mut r = c
            .post(format!(
                "{}/v1/models/wan-video/wan-2.5-i2v/predictions",
                fake.base_url()
            ))
            .bearer_auth(fake.api_key())
            .json(&body);
        if let Some(v) = cancel_after {
            r = r.header("Cancel-After", v);
        }
        r.send()
    };
    let r = post(
        json!({"input": {"image": "https://x.test/i.png", "prompt": "p", "foo": 1}}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["title"], "Input validation failed");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("Additional property foo"),
        "{b}"
    );
    let big = format!("data:image/png;base64,{}", "A".repeat(1_400_000));
    let r = post(json!({"input": {"image": big, "prompt": "p"}}), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = post(
        json!({"input": {"image": "https://x.test/i.png", "prompt": "p"}}),
        Some("soon"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);

    fake.set_plan(TaskPlan::Polls {
        pending: 1000,
        processing: 1,
        outcome: Outcome::Succeed,
    });
    let body = json!({"input": {"image": "https://x.test/i.png", "prompt": "p"}});
    let queued: Value = post(body.clone(), Some("1s"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queued["status"], "starting");
    fake.set_plan(TaskPlan::Polls {
        pending: 0,
        processing: 1000,
        outcome: Outcome::Succeed,
    });
    let running: Value = post(body, Some("1s")).await.unwrap().json().await.unwrap();
    let get = |p: &Value| {
        c.get(format!(
            "{}/v1/predictions/{}",
            fake.base_url(),
            p["id"].as_str().unwrap()
        ))
        .bearer_auth(fake.api_key())
        .send()
    };
    let first: Value = get(&running).await.unwrap().json().await.unwrap();
    assert_eq!(first["status"], "processing", "{first}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Past the deadline: never started = aborted, started = canceled (changelog 2025-10-16).
    let q: Value = get(&queued).await.unwrap().json().await.unwrap();
    assert_eq!(q["status"], "aborted", "{q}");
    let r: Value = get(&running).await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "canceled", "{r}");
}

/// The output is deleted an "hour" after the prediction ends: a download that fails until then
/// says the video is gone, not that it is still at its URL.
#[tokio::test]
async fn replicate_output_expiry_is_said_clearly() {
    let fake = FakeProvider::start(Kind::Replicate).await;
    fake.set_output_ttl(Duration::from_millis(300));
    // The first download attempt fails (the watcher retries after a backoff); by the second the
    // output is gone.
    fake.push_download_fault(Fault::ServerError);
    let ws = Workspace::new();
    let core = core(&ws, &fake, &[]);
    let task = core
        .create(
            CreateRequest {
                image: Some("https://example.com/cat.png".into()),
                prompt: "p".into(),
                provider: Some(ProviderId::Replicate),
                ..CreateRequest::default()
            },
            i2v_mcp::core::CallCtx::default(),
        )
        .await
        .unwrap();
    let id = task.task_id.clone();
    let row = within(30, "the download to give up", async {
        loop {
            let r = core.journal().get(&id).await.unwrap().unwrap();
            if r.status.public() == Status::Succeeded && r.note.is_some() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let note = row.note.unwrap();
    assert!(note.contains("no longer has the video"), "{note}");
    assert!(note.contains("deleted this prediction's output"), "{note}");
    assert!(note.contains("create the task again"), "{note}");
    assert_eq!(fake.downloads(), 2, "one failed attempt, then one 404");
}

/// Replicate signs its webhooks: a genuine delivery is accepted (and confirmed by one poll); an
/// unsigned one, one with a foreign signature and one whose body was changed are refused with
/// 401 before anything is looked up. The signing secret is fetched once (and again only after
/// a fetch that failed).
#[tokio::test]
async fn replicate_signed_webhook_accepted_and_forged_refused() {
    let fake = FakeProvider::start(Kind::Replicate).await;
    let Hooked {
        core,
        addr,
        handle,
        task,
        hook_url,
        ..
    } = hooked(&fake, &env(&fake), ProviderId::Replicate, "p").await;
    let id = task.task_id.clone();
    let ptid = task.provider_task_id.clone().unwrap();
    assert!(
        hook_url.starts_with(&format!(
            "http://{addr}/webhooks/replicate?task={id}&token="
        )),
        "{hook_url}"
    );
    let sent = &creates(&fake)[0].body;
    assert_eq!(sent["webhook"], hook_url);
    assert_eq!(sent["webhook_events_filter"], json!(["completed"]));

    let post = |body, headers| post_hook(&hook_url, headers, body);
    let forged = json!({"id": ptid, "status": "succeeded", "output": "http://127.0.0.1:9/x.mp4"})
        .to_string();
    // While the signing secret cannot be fetched, a webhook is answered 500 (Replicate
    // retries it), not 401; the next one fetches the secret again.
    fake.fail_auth(true);
    assert_eq!(post(forged.clone(), vec![]).await, 500, "no secret yet");
    fake.fail_auth(false);
    assert_eq!(post(forged.clone(), vec![]).await, 401, "unsigned");
    let now = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs())
    .to_string();
    let foreign = vec![
        ("webhook-id".to_string(), "msg_x".to_string()),
        ("webhook-timestamp".to_string(), now),
        (
            "webhook-signature".to_string(),
            "v1,bm90IGEgc2lnbmF0dXJlIGF0IGFsbCwgMzIgYnl0ZXM=".to_string(),
        ),
    ];
    assert_eq!(
        post(forged.clone(), foreign).await,
        401,
        "foreign signature"
    );
    assert_eq!(fake.polls(&ptid), 0, "a refused webhook caused a poll");

    // Replicate finishes and calls back: accepted, confirmed by one poll, downloaded.
    assert!(fake.complete_now(&ptid));
    let deliveries = fake.wait_webhooks(1, Duration::from_secs(10)).await;
    assert_eq!(deliveries[0].status, Some(200), "{:?}", deliveries[0]);
    let names: Vec<&str> = deliveries[0]
        .headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        names,
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
    );
    let done = within(10, "completion after the webhook", async {
        loop {
            let r = core.journal().get(&id).await.unwrap().unwrap();
            let t = r.to_task();
            if t.status == Status::Succeeded && !t.download_pending {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_downloaded(&serde_json::to_value(&done).unwrap());
    assert_eq!(fake.polls(&ptid), 1, "one confirming poll");

    // The genuine signature with a changed body is refused.
    let mut tampered = deliveries[0].body.clone();
    tampered["output"] = json!("http://127.0.0.1:9/evil.mp4");
    assert_eq!(
        post(tampered.to_string(), deliveries[0].headers.clone()).await,
        401,
        "tampered body"
    );
    // The genuine delivery again (Replicate retries): accepted, harmless.
    assert_eq!(
        post(
            deliveries[0].body.to_string(),
            deliveries[0].headers.clone()
        )
        .await,
        200
    );
    assert_eq!(
        fake.secret_fetches(),
        2,
        "one failed fetch, then the secret is fetched once and kept"
    );
    within(15, "shutdown", handle.shutdown()).await;
}

/// `i2v-mcp models --json` lists the Replicate models, configured once the token is set, with
/// their limits and a price that says where to set one.
#[test]
fn replicate_models_in_the_cli() {
    let ws = Workspace::new();
    let list = |env: &[(&str, &str)]| {
        let (code, out, err) = crate::cli::cli(&ws.env(env), &["models", "--json"]);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v["models"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["provider"] == "replicate")
            .cloned()
            .collect::<Vec<Value>>()
    };
    let models = list(&[]);
    let names: Vec<&str> = models
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["wan-2.5-i2v", "wan-2.2-i2v-a14b", "wan-2.5-t2v"]);
    assert!(models.iter().all(|m| m["configured"] == false));
    assert_eq!(models[2]["text_to_video"], true);
    assert_eq!(models[0]["image_delivery"], "upload");
    for m in &models {
        assert!(m["price"]["usd_per_second"].is_null(), "{m}");
        assert!(
            m["price"]["source"]
                .as_str()
                .unwrap()
                .contains("[pricing.\"replicate/"),
            "{m}"
        );
    }
    let models = list(&[("REPLICATE_API_TOKEN", "r8_test")]);
    assert!(models.iter().all(|m| m["configured"] == true), "{models:?}");
}
