//! The full flow through a real rmcp client against fake providers: create from a local PNG, wait
//! with get_task, find the video on disk with the reported sha256. Plus the failure paths of a
//! paid create: rate limits, ambiguous answers, failed generations, cancel.

use std::sync::Arc;

use i2v_mcp::core::Core;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::fakes::{FakeProvider, Fault, Kind, Outcome, TaskPlan};
use crate::support::{Workspace, call, connect, err, ok, within};

pub fn env_for(fake: &FakeProvider, provider: &str) -> Vec<(String, String)> {
    let up = provider.to_ascii_uppercase();
    vec![
        (format!("{up}_API_KEY"), fake.api_key().to_string()),
        (
            format!("I2V_MCP_{up}_BASE_URL"),
            fake.base_url().to_string(),
        ),
    ]
}

pub fn core_for(ws: &Workspace, fake: &FakeProvider, provider: &str) -> Arc<Core> {
    let env = env_for(fake, provider);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Core::start(ws.config(&pairs)).unwrap()
}

/// Assert the task succeeded and its file on disk has the fake's bytes and the reported sha256.
pub fn assert_downloaded(task: &Value) {
    assert_eq!(task["status"], "succeeded", "{task}");
    let video = &task["video"];
    let path = video["local_path"]
        .as_str()
        .unwrap_or_else(|| panic!("no local_path: {task}"));
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(bytes, FakeProvider::video_bytes());
    assert_eq!(video["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(video["sha256"], FakeProvider::video_sha256());
    assert_eq!(video["bytes"], bytes.len());
    let id = task["task_id"].as_str().unwrap();
    let dir = std::path::Path::new(path).parent().unwrap();
    let parts: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(&format!(".{id}")) && n.ends_with(".part"))
        .collect();
    assert!(parts.is_empty(), "temp files left: {parts:?}");
}

async fn create_and_wait(kind: Kind, provider: &str) {
    let fake = FakeProvider::start(kind).await;
    let ws = Workspace::new();
    let img = ws.png("cat.png", 640, 360);
    let (s, client) = connect(core_for(&ws, &fake, provider)).await;

    let r = call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "the cat turns its head", "provider": provider}),
    )
    .await;
    let task = ok(&r);
    assert_eq!(task["status"], "queued", "{task}");
    assert_eq!(task["estimated_cost_usd"], 0.28);
    let id = task["task_id"].as_str().unwrap().to_string();

    // What reached the provider: one create, the image inline as base64 of the file's bytes.
    let creates: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(creates.len(), 1);
    let body = &creates[0].body;
    assert_eq!(body["model"], "Qubico/wanx");
    assert_eq!(body["task_type"], "img2video-14b");
    use base64::Engine;
    let sent = base64::engine::general_purpose::STANDARD
        .decode(body["input"]["image"].as_str().unwrap())
        .unwrap();
    assert_eq!(sent, std::fs::read(&img).unwrap());
    assert_eq!(
        creates[0].header("x-api-key").unwrap_or_default(),
        fake.api_key()
    );

    let r = call(&s, "get_task", json!({"task_id": id, "wait_seconds": 30})).await;
    let task = ok(&r);
    assert_downloaded(&task);
    // A resource_link to the file travels with the result.
    let link = r
        .content
        .iter()
        .find_map(|c| c.as_resource_link().cloned())
        .expect("resource_link");
    assert!(
        link.uri.starts_with("file://") && link.uri.ends_with(".mp4"),
        "{}",
        link.uri
    );
    // Progress went out with strictly increasing values, ending at 100.
    let progress = client.progress.lock().unwrap().clone();
    assert!(!progress.is_empty());
    for w in progress.windows(2) {
        assert!(w[1].progress > w[0].progress, "{progress:?}");
    }
    assert_eq!(progress.last().unwrap().progress, 100.0);
    assert_eq!(fake.accepted_creates(), 1);

    // The journal has it: list_tasks and a second get (no new download).
    let list = ok(&call(&s, "list_tasks", json!({})).await);
    assert_eq!(list["tasks"][0]["task_id"], id);
    let again = ok(&call(&s, "get_task", json!({"task_id": id})).await);
    assert_eq!(again["video"]["sha256"], FakeProvider::video_sha256());
    assert_eq!(fake.downloads(), 1);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn piapi_local_png_to_video_on_disk() {
    create_and_wait(Kind::Piapi, "piapi").await;
}

#[tokio::test]
async fn qubico_is_the_same_adapter_on_its_own_host() {
    create_and_wait(Kind::Qubico, "qubico").await;
}

#[tokio::test]
async fn variants_follow_the_request() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.piapi_flat_create(true);
    let ws = Workspace::new();
    let img = ws.png("a.png", 320, 180);
    let end = ws.png("b.png", 320, 180);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let t = ok(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "end_image": end, "prompt": "morph", "provider": "piapi"}),
    )
    .await);
    assert_eq!(t["status"], "queued");
    ok(&call(&s, "create_i2v_task", json!({"image": "https://example.com/a.png", "prompt": "zoom", "provider": "piapi", "camera_motion": {"type": "zoom_in", "speed": 0.5}})).await);
    ok(&call(&s, "create_i2v_task", json!({"image": "https://example.com/a.png", "prompt": "p", "provider": "piapi", "loras": [{"name": "ghibli"}]})).await);
    let types: Vec<String> = fake
        .tasks()
        .iter()
        .map(|t| t.body["task_type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        types,
        [
            "img2video-14b-keyframe",
            "img2video-14b-control-camera",
            "img2video-14b-lora"
        ]
    );
    // A combination the API cannot do is refused before anything is sent.
    let e = err(&call(&s, "create_i2v_task", json!({"image": img, "end_image": end, "prompt": "p", "provider": "piapi", "loras": [{"name": "ghibli"}]})).await);
    assert_eq!(e["category"], "unsupported");
    assert_eq!(fake.creates(), 3);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn rate_limited_create_is_retried_once_accepted() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.push_create_fault(Fault::RateLimited {
        retry_after_secs: 1,
    });
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let t = ok(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "p", "provider": "piapi"}),
    )
    .await);
    assert_eq!(t["status"], "queued");
    assert_eq!(fake.creates(), 2, "one refused, one accepted");
    assert_eq!(fake.accepted_creates(), 1);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn ambiguous_creates_are_never_resubmitted() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.push_create_fault(Fault::AcceptThenServerError);
    fake.push_create_fault(Fault::Malformed);
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    for _ in 0..2 {
        let e = err(&call(
            &s,
            "create_i2v_task",
            json!({"image": img, "prompt": "p", "provider": "piapi"}),
        )
        .await);
        assert_eq!(e["category"], "submit_unknown", "{e}");
        assert!(
            e["next_step"].as_str().unwrap().contains("dashboard"),
            "{e}"
        );
    }
    assert_eq!(fake.creates(), 2, "each create sent exactly once");
    let list = ok(&call(&s, "list_tasks", json!({"status": "failed"})).await);
    assert_eq!(
        list["tasks"].as_array().unwrap().len(),
        2,
        "both kept in the journal"
    );
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn refused_create_is_an_error_with_nothing_charged() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.fail_auth(true);
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let e = err(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "p", "provider": "piapi"}),
    )
    .await);
    assert_eq!(e["category"], "auth");
    assert!(
        e["next_step"].as_str().unwrap().contains("PIAPI_API_KEY"),
        "{e}"
    );
    assert!(!e.to_string().contains(fake.api_key()), "key leaked: {e}");
    assert_eq!(fake.creates(), 1);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn failed_generation_and_flapping_polls() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_plan(TaskPlan::Polls {
        pending: 1,
        processing: 1,
        outcome: Outcome::Fail {
            message: "content policy".into(),
        },
    });
    fake.push_poll_fault(Fault::ServerError);
    fake.push_poll_fault(Fault::Malformed);
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let t = ok(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "p", "provider": "piapi", "wait_seconds": 30}),
    )
    .await);
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["error"]["category"], "generation_failed");
    assert!(
        t["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content policy")
    );
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn cancel_while_queued_and_idempotency() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_plan(TaskPlan::Polls {
        pending: 1000,
        processing: 1,
        outcome: Outcome::Succeed,
    });
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let args = json!({"image": img, "prompt": "p", "provider": "piapi", "idempotency_key": "k-1"});
    let t1 = ok(&call(&s, "create_i2v_task", args.clone()).await);
    let t2 = ok(&call(&s, "create_i2v_task", args).await);
    assert_eq!(t1["task_id"], t2["task_id"]);
    assert_eq!(t2["deduplicated"], true);
    assert_eq!(fake.creates(), 1);
    let e = err(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "other", "provider": "piapi", "idempotency_key": "k-1"}),
    )
    .await);
    assert_eq!(e["category"], "invalid_input");

    let c = ok(&call(&s, "cancel_task", json!({"task_id": t1["task_id"]})).await);
    assert_eq!(c["status"], "cancelled", "{c}");
    let deletes = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deletes, 1);
    let again = ok(&call(&s, "cancel_task", json!({"task_id": t1["task_id"]})).await);
    assert!(
        again["note"].as_str().unwrap().contains("already"),
        "{again}"
    );
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn the_binary_end_to_end_over_stdio_and_the_cli() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let img = ws.png("cat.png", 640, 360);
    let mut env = ws.env(&[
        ("I2V_MCP_POLL_FIRST_MS", "30"),
        ("I2V_MCP_POLL_MAX_MS", "150"),
    ]);
    env.extend(env_for(&fake, "piapi"));

    let mut p = crate::mcp_stdio::Proc::spawn(&env);
    p.init("2025-06-18").await;
    let t = p
        .call(1, "create_i2v_task", json!({"image": img, "prompt": "p"}))
        .await;
    let id = t["structuredContent"]["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{t}"))
        .to_string();
    let done = p
        .call(2, "get_task", json!({"task_id": id, "wait_seconds": 30}))
        .await;
    assert_downloaded(&done["structuredContent"]);
    p.close().await;

    // The same flow from the CLI, on the same journal.
    let env2 = env.clone();
    let img_s = img.display().to_string();
    let (code, out, errout) = within(
        60,
        "cli create --wait",
        tokio::task::spawn_blocking(move || {
            crate::cli::cli(
                &env2,
                &[
                    "create", "--image", &img_s, "--prompt", "p", "--wait", "--json",
                ],
            )
        }),
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "{errout}");
    let task: Value = serde_json::from_str(&out).unwrap();
    assert_downloaded(&task);
    let (code, out, _) = crate::cli::cli(&env, &["tasks", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["tasks"].as_array().unwrap().len(), 2);
}
