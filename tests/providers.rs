//! One request shape reaches every Wan system: the same create_i2v_task call, with only
//! provider/model changed, completes end to end against contract-following fakes. The exact
//! request bodies and auth headers sent are snapshotted, so a changed wire format is a diff.

use serde_json::{Value, json};

use crate::mcp_flow::{assert_downloaded, core_for};
use crate::support::fakes::{FakeProvider, Fault, Kind, Outcome, TaskPlan};
use crate::support::{Workspace, call, connect, err, ok};

/// Long strings (inline images) become a short stable marker; everything else is kept.
pub(crate) fn redact(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() > 120 => {
            use sha2::Digest;
            let head: String = s.chars().take(22).collect();
            Value::String(format!(
                "{head}…<{} chars, sha256 {}>",
                s.len(),
                &hex::encode(sha2::Sha256::digest(s.as_bytes()))[..12]
            ))
        }
        // Fakes listen on a random port.
        Value::String(s) if s.contains("://127.0.0.1:") => {
            let (head, rest) = s.split_once("://127.0.0.1:").unwrap();
            let path = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            Value::String(format!("{head}://127.0.0.1:PORT{path}"))
        }
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), redact(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// Method, path, auth header and redacted body of every non-GET request the fake received.
pub(crate) fn wire(fake: &FakeProvider) -> Vec<Value> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| {
            let auth = r
                .header("authorization")
                .or(r.header("x-api-key"))
                .unwrap_or("<none>")
                .to_string();
            json!({"method": r.method, "path": r.path, "auth": auth, "body": redact(&r.body)})
        })
        .collect()
}

pub(crate) async fn run(
    kind: Kind,
    provider: &str,
    model: &str,
    image: Value,
    extra: Value,
) -> (FakeProvider, Value) {
    let fake = FakeProvider::start(kind).await;
    let ws = Workspace::new();
    let png = ws.png("cat.png", 640, 480);
    let image = if image == json!("LOCAL") {
        json!(png)
    } else {
        image
    };
    let (s, _) = connect(core_for(&ws, &fake, provider)).await;
    let mut args = json!({"image": image, "prompt": "the cat turns its head", "provider": provider, "model": model, "wait_seconds": 30});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        args[k] = v;
    }
    // Text-to-video: no image at all.
    if args["image"].is_null() {
        args.as_object_mut().unwrap().remove("image");
    }
    let task = ok(&call(&s, "create_i2v_task", args).await);
    assert_downloaded(&task);
    s.cancel().await.unwrap();
    (fake, task)
}

#[tokio::test]
async fn novita_wan21_by_url() {
    let (fake, task) = run(
        Kind::Novita,
        "novita",
        "wan2.1-i2v",
        json!("https://example.com/cat.png"),
        json!({"resolution": "720p", "aspect_ratio": "9:16", "seed": 9_999_999_999i64, "loras": [{"name": "https://example.com/a.safetensors", "strength": 0.7}], "steps": 25}),
    )
    .await;
    assert!(
        task["video"]["url_expires_at"].is_string(),
        "ttl kept as expiry: {task}"
    );
    insta::assert_json_snapshot!("novita_wan21_wire", wire(&fake));
}

#[tokio::test]
async fn novita_wan26_local_png_inline() {
    let (fake, _) = run(
        Kind::Novita,
        "novita",
        "wan2.6-i2v",
        json!("LOCAL"),
        json!({"duration_seconds": 10, "resolution": "1080p", "audio": true, "negative_prompt": "blur"}),
    )
    .await;
    let body = &fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap()
        .body;
    assert!(
        body["input"]["img_url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    insta::assert_json_snapshot!("novita_wan26_wire", wire(&fake));
}

#[tokio::test]
async fn apikley_local_png_uploaded_once_when_used_twice() {
    let fake = FakeProvider::start(Kind::Apikley).await;
    let ws = Workspace::new();
    let png = ws.png("cat.png", 640, 480);
    let (s, _) = connect(core_for(&ws, &fake, "apikley")).await;
    for _ in 0..2 {
        let task = ok(&call(&s, "create_i2v_task", json!({"image": png, "prompt": "the cat turns its head", "provider": "apikley", "resolution": "480p", "wait_seconds": 30})).await);
        assert_downloaded(&task);
    }
    assert_eq!(fake.uploads(), 1, "the same image is uploaded once");
    assert_eq!(fake.accepted_creates(), 2);
    let creates: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("createTask"))
        .collect();
    assert_eq!(
        creates[0].body["input"]["image_url"],
        creates[1].body["input"]["image_url"]
    );
    insta::assert_json_snapshot!("apikley_wire", wire(&fake));
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn piapi_wire() {
    let (fake, _) = run(
        Kind::Piapi,
        "piapi",
        "wan2.1-i2v-14b",
        json!("LOCAL"),
        json!({"negative_prompt": "blur", "aspect_ratio": "9:16"}),
    )
    .await;
    insta::assert_json_snapshot!("piapi_wire", wire(&fake));
}

#[tokio::test]
async fn provider_errors_map_to_categories_and_nothing_is_resubmitted() {
    // Novita: reason codes.
    let fake = FakeProvider::start(Kind::Novita).await;
    fake.push_create_fault(Fault::novita_reason(
        400,
        "BILLING_BALANCE_NOT_ENOUGH",
        "balance not enough",
    ));
    fake.push_create_fault(Fault::novita_reason(
        400,
        "ILLEGAL_PROMPT",
        "illegal prompt",
    ));
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "novita")).await;
    let args = json!({"image": "https://example.com/a.png", "prompt": "p", "provider": "novita"});
    assert_eq!(
        err(&call(&s, "create_i2v_task", args.clone()).await)["category"],
        "credits"
    );
    assert_eq!(
        err(&call(&s, "create_i2v_task", args.clone()).await)["category"],
        "invalid_input"
    );
    // Local files are refused for Wan 2.1 (URLs only), naming the models that take them.
    let png = ws.png("a.png", 400, 400);
    let e = err(&call(
        &s,
        "create_i2v_task",
        json!({"image": png, "prompt": "p", "provider": "novita", "model": "wan2.1-i2v"}),
    )
    .await);
    assert_eq!(e["category"], "unsupported");
    assert!(
        e["message"].as_str().unwrap().contains("novita/wan2.6-i2v"),
        "{e}"
    );
    // Wan 2.6 limits are checked before sending.
    let e = err(&call(&s, "create_i2v_task", json!({"image": png, "prompt": "p", "provider": "novita", "model": "wan2.6-i2v", "negative_prompt": "x".repeat(501)})).await);
    assert!(e["message"].as_str().unwrap().contains("500"), "{e}");
    assert_eq!(fake.creates(), 2);
    s.cancel().await.unwrap();

    // Apikley: errors in the body code on HTTP 200.
    let fake = FakeProvider::start(Kind::Apikley).await;
    fake.push_create_fault(Fault::apikley_code(402, "insufficient credits"));
    fake.push_create_fault(Fault::apikley_code(500, "server error"));
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "apikley")).await;
    let args = json!({"image": "https://example.com/a.png", "prompt": "p", "provider": "apikley"});
    assert_eq!(
        err(&call(&s, "create_i2v_task", args.clone()).await)["category"],
        "credits"
    );
    assert_eq!(
        err(&call(&s, "create_i2v_task", args).await)["category"],
        "submit_unknown"
    );
    assert_eq!(fake.creates(), 2);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn novita_wan27_by_url_with_last_frame_and_driving_audio() {
    let (fake, task) = run(
        Kind::Novita,
        "novita",
        "wan2.7-i2v",
        json!("https://example.com/cat.png"),
        json!({"end_image": "https://example.com/last.png", "audio_url": "https://example.com/beat.mp3", "duration_seconds": 8, "resolution": "720p", "seed": 42}),
    )
    .await;
    assert!(
        task["video"]["url_expires_at"].is_string(),
        "ttl kept as expiry: {task}"
    );
    insta::assert_json_snapshot!("novita_wan27_wire", wire(&fake));
}

/// `provider/model` of every quote of an `estimate_cost` answer, in its order.
pub(crate) fn quote_keys(est: &Value) -> Vec<String> {
    est["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            format!(
                "{}/{}",
                q["provider"].as_str().unwrap(),
                q["model"].as_str().unwrap()
            )
        })
        .collect()
}

/// A local PNG and the same image as a data URI, for URL-only refusals.
pub(crate) fn png_and_data_uri(ws: &Workspace) -> (Value, Value) {
    let png = ws.png("a.png", 400, 400);
    let data = format!(
        "data:image/png;base64,{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            std::fs::read(&png).unwrap()
        )
    );
    (json!(png), json!(data))
}

/// Novita 2.7 needs public URLs: local files and data URIs are refused before anything is sent,
/// naming the models that take them; an upstream refusal and a failed task read as such.
#[tokio::test]
async fn novita_wan27_refusals_and_failures() {
    let fake = FakeProvider::start(Kind::Novita).await;
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "novita")).await;
    let (png, data) = png_and_data_uri(&ws);
    for (image, end) in [
        (png.clone(), json!(null)),
        (data, json!(null)),
        (json!("https://example.com/a.png"), png),
    ] {
        let mut args = json!({"image": image, "prompt": "p", "provider": "novita"});
        if !end.is_null() {
            args["end_image"] = end;
        }
        let e = err(&call(&s, "create_i2v_task", args).await);
        assert_eq!(e["category"], "unsupported", "{e}");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains("novita/wan2.7-i2v takes image URLs only"), "{m}");
        assert!(m.contains("piapi/") && m.contains("apikley/"), "{m}");
    }
    assert_eq!(fake.creates(), 0, "nothing sent");
    fake.push_create_fault(Fault::novita_reason(
        400,
        "INVALID_REQUEST_BODY",
        "duration out of range",
    ));
    let url = json!({"image": "https://example.com/a.png", "prompt": "p", "provider": "novita"});
    let e = err(&call(&s, "create_i2v_task", url.clone()).await);
    assert_eq!(e["category"], "invalid_input", "{e}");
    assert_eq!(fake.creates(), 1, "a refusal is not resent");
    s.cancel().await.unwrap();
}

/// A retired model is refused before anything is sent or written, naming the date and the
/// replacement; `estimate_cost` with `compare` leaves it out; `list_models` shows the dates.
#[tokio::test]
async fn retired_novita_models_refused_unless_allowed() {
    let fake = FakeProvider::start(Kind::Novita).await;
    let ws = Workspace::new();
    let mut env = crate::mcp_flow::env_for(&fake, "novita");
    env.push(("I2V_MCP_NOVITA_ALLOW_RETIRED".into(), "false".into()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let core = i2v_mcp::core::Core::start(ws.config(&pairs)).unwrap();
    let (s, _) = connect(core).await;
    for (model, date, replacement) in [
        ("wan2.1-i2v", "2026-08-19", "novita/wan2.7-i2v"),
        ("wan2.6-i2v", "2026-09-30", "Kling 3.0"),
    ] {
        let args = json!({"image": "https://example.com/a.png", "prompt": "p", "provider": "novita", "model": model});
        let e = err(&call(&s, "create_i2v_task", args.clone()).await);
        assert_eq!(e["category"], "unsupported", "{e}");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains(date) && m.contains(replacement), "{m}");
        assert!(
            e["next_step"].as_str().unwrap().contains("allow_retired"),
            "{e}"
        );
        let e = err(&call(
            &s,
            "estimate_cost",
            json!({"provider": "novita", "model": model}),
        )
        .await);
        assert_eq!(e["category"], "unsupported", "{e}");
    }
    assert!(fake.requests().is_empty(), "zero upstream requests");
    let list = ok(&call(&s, "list_tasks", json!({})).await);
    assert_eq!(list["tasks"], json!([]), "nothing journaled: {list}");

    let est = ok(&call(&s, "estimate_cost", json!({"compare": true})).await);
    let ranked: Vec<String> = quote_keys(&est);
    assert!(
        ranked.contains(&"novita/wan2.7-i2v".to_string()),
        "{ranked:?}"
    );
    assert!(
        !ranked
            .iter()
            .any(|k| k == "novita/wan2.1-i2v" || k == "novita/wan2.6-i2v"),
        "{ranked:?}"
    );

    let models = ok(&call(&s, "list_models", json!({"provider": "novita"})).await);
    let models = models["models"].as_array().unwrap();
    assert_eq!(models[0]["model"], "wan2.7-i2v", "the default first");
    assert!(models[0].get("retired_on").is_none());
    let m26 = models.iter().find(|m| m["model"] == "wan2.6-i2v").unwrap();
    assert_eq!(m26["retired_on"], "2026-09-30");
    assert!(m26["replacement"].as_str().unwrap().contains("Kling 3.0"));
    s.cancel().await.unwrap();

    // Allowed (the default test setting): compare ranks them again.
    let (s, _) = connect(core_for(&ws, &fake, "novita")).await;
    let est = ok(&call(&s, "estimate_cost", json!({"compare": true})).await);
    assert!(est.to_string().contains("wan2.6-i2v"), "{est}");
    s.cancel().await.unwrap();
}

/// The create POST a DashScope fake received, with its async header checked (A.1).
fn dashscope_create(fake: &FakeProvider) -> Value {
    let create = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("a create was sent");
    assert_eq!(create.header("x-dashscope-async"), Some("enable"));
    create.body
}

#[tokio::test]
async fn dashscope_wan27_first_and_last_frame_with_driving_audio() {
    let (fake, task) = run(
        Kind::Dashscope,
        "dashscope",
        "wan2.7-i2v",
        json!("LOCAL"),
        json!({"end_image": "https://example.com/end.png", "resolution": "720p", "duration_seconds": 8, "audio_url": "https://example.com/rap.mp3", "negative_prompt": "blur"}),
    )
    .await;
    assert!(
        task["video"]["url_expires_at"].is_string(),
        "24 h result URL kept as expiry: {task}"
    );
    // The seconds DashScope billed (its poll's usage.duration) are shown on the task.
    assert_eq!(task["billed_seconds"], 8.0, "{task}");
    let body = dashscope_create(&fake);
    assert!(
        body["input"]["media"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    insta::assert_json_snapshot!("dashscope_wan27_wire", wire(&fake));
}

#[tokio::test]
async fn dashscope_first_frame_protocol_silent_flash() {
    let (fake, _) = run(
        Kind::Dashscope,
        "dashscope",
        "wan2.6-i2v-flash",
        json!("https://example.com/cat.png"),
        json!({"audio": false, "resolution": "720p", "duration_seconds": 3, "shot_type": "multi", "seed": 42}),
    )
    .await;
    assert_eq!(
        dashscope_create(&fake)["input"]["img_url"],
        "https://example.com/cat.png"
    );
    insta::assert_json_snapshot!("dashscope_wan26_flash_wire", wire(&fake));
}

#[tokio::test]
async fn dashscope_unknown_fails_a_task_only_when_confirmed() {
    let fake = FakeProvider::start(Kind::Dashscope).await;
    let unknown =
        json!({"request_id": "a4de", "output": {"task_id": "x", "task_status": "UNKNOWN"}})
            .to_string();
    // Two UNKNOWN answers right after create, then the task shows up and finishes.
    for _ in 0..2 {
        fake.push_poll_fault(Fault::status(200, unknown.clone()));
    }
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "dashscope")).await;
    let args = json!({"image": "https://example.com/a.png", "prompt": "p", "provider": "dashscope", "model": "wan2.2-i2v-flash", "wait_seconds": 30});
    assert_downloaded(&ok(&call(&s, "create_i2v_task", args.clone()).await));
    // UNKNOWN every time: failed as not found after a few in a row.
    for _ in 0..10 {
        fake.push_poll_fault(Fault::status(200, unknown.clone()));
    }
    let t = ok(&call(&s, "create_i2v_task", args).await);
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["error"]["category"], "not_found", "{t}");
    assert_eq!(fake.accepted_creates(), 2, "nothing resubmitted");
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn dashscope_cancels_only_pending_tasks() {
    let fake = FakeProvider::start(Kind::Dashscope).await;
    fake.set_plan(TaskPlan::Polls {
        pending: 1000,
        processing: 1,
        outcome: Outcome::Succeed,
    });
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "dashscope")).await;
    let args =
        json!({"image": "https://example.com/a.png", "prompt": "p", "provider": "dashscope"});
    let t = ok(&call(&s, "create_i2v_task", args.clone()).await);
    let c = ok(&call(&s, "cancel_task", json!({"task_id": t["task_id"]})).await);
    assert_eq!(c["status"], "cancelled", "{c}");
    let cancels = |f: &FakeProvider| {
        f.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/cancel"))
            .count()
    };
    assert_eq!(cancels(&fake), 1);

    // A running task is not cancelled upstream: the reason is said, no cancel call is made.
    fake.set_plan(TaskPlan::Polls {
        pending: 0,
        processing: 1000,
        outcome: Outcome::Succeed,
    });
    let t = ok(&call(&s, "create_i2v_task", args).await);
    let c = ok(&call(&s, "cancel_task", json!({"task_id": t["task_id"]})).await);
    assert!(
        c["note"].as_str().unwrap_or_default().contains("PENDING"),
        "{c}"
    );
    assert_eq!(cancels(&fake), 1);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn dashscope_errors_map_to_categories_and_nothing_is_resubmitted() {
    let fake = FakeProvider::start(Kind::Dashscope).await;
    let ds = |http: u16, code: &str| {
        Fault::status(
            http,
            json!({"code": code, "message": "m", "request_id": "r"}).to_string(),
        )
    };
    fake.push_create_fault(ds(429, "Throttling.RateQuota").with_retry_after(0));
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "dashscope")).await;
    let args =
        json!({"image": "https://example.com/a.png", "prompt": "p", "provider": "dashscope"});
    // The throttled create is retried once and then taken.
    let first = ok(&call(&s, "create_i2v_task", args.clone()).await);
    assert!(first["task_id"].is_string(), "{first}");
    // A billing 429 is not a rate limit; a 5xx or an unreadable 2xx may have created a task.
    fake.push_create_fault(ds(429, "PrepaidBillOverdue"));
    fake.push_create_fault(Fault::ServerError);
    fake.push_create_fault(Fault::Malformed);
    for want in ["credits", "submit_unknown", "submit_unknown"] {
        let e = err(&call(&s, "create_i2v_task", args.clone()).await);
        assert_eq!(e["category"], want, "{e}");
    }
    assert_eq!(fake.creates(), 5);
    s.cancel().await.unwrap();
}

/// Text-to-video on DashScope: 2.7 takes `resolution` + `ratio`, the legacy models `size`
/// (`negative_prompt` in `input` for all, as the official SDK sends it); none gets an image
/// field. Each runs end to end.
#[tokio::test]
async fn dashscope_text_to_video_each_model() {
    let mut wires = Vec::new();
    for (model, extra) in [
        (
            "wan2.7-t2v",
            json!({"aspect_ratio": "9:16", "resolution": "720p", "duration_seconds": 4, "audio_url": "https://example.com/beat.mp3", "negative_prompt": "blur"}),
        ),
        (
            "wan2.6-t2v",
            json!({"resolution": "1080p", "duration_seconds": 12, "shot_type": "multi", "negative_prompt": "blur"}),
        ),
        (
            "wan2.5-t2v-preview",
            json!({"resolution": "480p", "duration_seconds": 10}),
        ),
        ("wan2.2-t2v-plus", json!({"seed": 7})),
    ] {
        let (fake, task) = run(Kind::Dashscope, "dashscope", model, Value::Null, extra).await;
        assert_eq!(task["model"], model, "{task}");
        let body = dashscope_create(&fake);
        assert!(body["input"].get("img_url").is_none() && body["input"].get("media").is_none());
        wires.extend(wire(&fake));
    }
    insta::assert_json_snapshot!("dashscope_t2v_wire", wires);
}

#[tokio::test]
async fn novita_wan27_text_to_video() {
    let (fake, task) = run(
        Kind::Novita,
        "novita",
        "wan2.7-t2v",
        Value::Null,
        json!({"aspect_ratio": "1:1", "resolution": "720p", "duration_seconds": 6, "audio_url": "https://example.com/beat.mp3", "seed": 3}),
    )
    .await;
    assert_eq!(task["model"], "wan2.7-t2v", "{task}");
    assert!(task.get("billed_seconds").is_none(), "{task}");
    let body = &fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap()
        .body;
    assert_eq!(body["size"], "960*960", "{body}");
    insta::assert_json_snapshot!("novita_wan27_t2v_wire", wire(&fake));
}

/// One create tool for both: no image picks the provider's text-to-video model; an image on a
/// text-to-video model, or none on an image-to-video one, is refused before anything is sent,
/// naming what to do; a provider without text-to-video says who has it.
#[tokio::test]
async fn text_to_video_surface() {
    let fake = FakeProvider::start(Kind::Dashscope).await;
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "dashscope")).await;

    let e = err(&call(&s, "create_i2v_task", json!({"image": "https://example.com/a.png", "prompt": "p", "provider": "dashscope", "model": "wan2.7-t2v"})).await);
    assert_eq!(e["category"], "unsupported", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("takes no image"),
        "{e}"
    );
    let e = err(&call(
        &s,
        "create_i2v_task",
        json!({"prompt": "p", "provider": "dashscope", "model": "wan2.6-i2v"}),
    )
    .await);
    assert_eq!(e["category"], "invalid_input", "{e}");
    assert!(
        e["next_step"]
            .as_str()
            .unwrap()
            .contains("dashscope/wan2.7-t2v"),
        "{e}"
    );
    let e = err(&call(
        &s,
        "create_i2v_task",
        json!({"prompt": "p", "provider": "local"}),
    )
    .await);
    assert_eq!(e["category"], "invalid_input", "{e}");
    assert!(
        e["next_step"]
            .as_str()
            .unwrap()
            .contains("novita/wan2.7-t2v"),
        "{e}"
    );
    assert!(
        fake.requests().is_empty(),
        "nothing sent: {:?}",
        fake.requests()
    );
    assert_eq!(
        ok(&call(&s, "list_tasks", json!({})).await)["tasks"],
        json!([])
    );

    let task = ok(&call(
        &s,
        "create_i2v_task",
        json!({"prompt": "a red fox in snow", "wait_seconds": 30}),
    )
    .await);
    assert_eq!(
        task["model"], "wan2.7-t2v",
        "the provider's first text-to-video model: {task}"
    );
    assert_downloaded(&task);
    let again = ok(&call(&s, "get_task", json!({"task_id": task["task_id"]})).await);
    assert_eq!(again["status"], "succeeded");

    let models = ok(&call(&s, "list_models", json!({"provider": "dashscope"})).await);
    let t2v: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["text_to_video"] == json!(true))
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(
        t2v,
        [
            "wan2.7-t2v",
            "wan2.6-t2v",
            "wan2.5-t2v-preview",
            "wan2.2-t2v-plus"
        ]
    );

    let est = ok(&call(
        &s,
        "estimate_cost",
        json!({"compare": true, "prompt": "p", "duration_seconds": 10}),
    )
    .await);
    let keys: Vec<String> = quote_keys(&est);
    assert!(
        keys.contains(&"dashscope/wan2.6-t2v".to_string())
            && keys.contains(&"dashscope/wan2.6-i2v".to_string()),
        "both kinds ranked without an image: {keys:?}"
    );
    let est = ok(&call(
        &s,
        "estimate_cost",
        json!({"compare": true, "image": "https://example.com/a.png"}),
    )
    .await);
    assert!(
        !est.to_string().contains("-t2v"),
        "an image rules text-to-video out: {est}"
    );
    s.cancel().await.unwrap();
}
