//! PiAPI/Qubico WanX text-to-video and PiAPI Wan 2.6 (`model: "Wan"`) end to end against the
//! contract-following fake: create, poll, download, sha256, and the exact bodies sent.

use serde_json::{Value, json};

use crate::mcp_flow::{assert_downloaded, core_for};
use crate::providers::{png_and_data_uri, quote_keys, run, wire};
use crate::support::fakes::{FakeProvider, Kind};
use crate::support::{Workspace, call, connect, err, ok};

/// The create body the fake received (the only POST).
fn created(fake: &FakeProvider) -> Value {
    fake.requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("a create was sent")
        .body
}

#[tokio::test]
async fn wanx_text_to_video_each_model_on_both_hosts() {
    let mut wires = Vec::new();
    for (kind, provider) in [(Kind::Piapi, "piapi"), (Kind::Qubico, "qubico")] {
        for (model, extra, task_type) in [
            (
                "wan2.1-t2v-14b",
                json!({"aspect_ratio": "9:16", "negative_prompt": "blur"}),
                "txt2video-14b",
            ),
            (
                "wan2.1-t2v-14b",
                json!({"loras": [{"name": "ghibli", "strength": 0.8}]}),
                "txt2video-14b-lora",
            ),
            ("wan2.1-t2v-1.3b", json!({}), "txt2video-1.3b"),
        ] {
            let (fake, task) = run(kind, provider, model, Value::Null, extra).await;
            assert_eq!(task["model"], model, "{task}");
            let body = created(&fake);
            assert_eq!(body["task_type"], task_type, "{body}");
            assert!(body["input"].get("image").is_none(), "{body}");
            wires.extend(wire(&fake));
        }
    }
    insta::assert_json_snapshot!("wanx_t2v_wire", wires);
}

/// With no image and no model, PiAPI's first text-to-video model is used: WanX 14B.
#[tokio::test]
async fn text_to_video_without_a_model_picks_wanx_14b() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let task = ok(&call(
        &s,
        "create_i2v_task",
        json!({"prompt": "a red fox in snow", "provider": "piapi", "wait_seconds": 30}),
    )
    .await);
    assert_eq!(task["model"], "wan2.1-t2v-14b", "{task}");
    assert_downloaded(&task);
    assert_eq!(created(&fake)["task_type"], "txt2video-14b");
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn wan26_image_to_video_by_url() {
    let (fake, task) = run(
        Kind::Piapi,
        "piapi",
        "wan2.6-i2v",
        json!("https://example.com/cat.png"),
        json!({"resolution": "1080p", "duration_seconds": 10, "audio": true, "shot_type": "multi", "negative_prompt": "blur", "prompt_extend": true, "watermark": false}),
    )
    .await;
    assert_eq!(task["model"], "wan2.6-i2v", "{task}");
    insta::assert_json_snapshot!("wan26_i2v_wire", wire(&fake));
}

/// Whether Wan 2.6 takes base64 is unverified: local files and data URIs are refused before
/// anything is sent, naming the models that take them.
#[tokio::test]
async fn wan26_refuses_local_images_before_sending() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let (png, data) = png_and_data_uri(&ws);
    for image in [png, data] {
        let args =
            json!({"image": image, "prompt": "p", "provider": "piapi", "model": "wan2.6-i2v"});
        let e = err(&call(&s, "create_i2v_task", args).await);
        assert_eq!(e["category"], "unsupported", "{e}");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains("piapi/wan2.6-i2v takes image URLs only"), "{m}");
        assert!(m.contains("piapi/wan2.1-i2v-14b"), "{m}");
    }
    // Contradicting audio flags are refused too.
    let e = err(&call(&s, "create_i2v_task", json!({"image": "https://example.com/a.png", "prompt": "p", "provider": "piapi", "model": "wan2.6-i2v", "audio": false, "audio_url": "https://example.com/a.mp3"})).await);
    assert_eq!(e["category"], "invalid_input", "{e}");
    assert!(fake.requests().is_empty(), "nothing sent");
    assert_eq!(
        ok(&call(&s, "list_tasks", json!({})).await)["tasks"],
        json!([])
    );
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn wan26_text_to_video() {
    let (fake, task) = run(
        Kind::Piapi,
        "piapi",
        "wan2.6-t2v",
        Value::Null,
        json!({"aspect_ratio": "1:1", "duration_seconds": 15, "audio_url": "https://example.com/beat.mp3"}),
    )
    .await;
    assert_eq!(task["model"], "wan2.6-t2v", "{task}");
    let body = created(&fake);
    assert_eq!(body["input"]["resolution"], "720P", "the default: {body}");
    insta::assert_json_snapshot!("wan26_t2v_wire", wire(&fake));
}

/// Cancel for Wan tasks is unconfirmed upstream: the WanX DELETE is tried while queued.
#[tokio::test]
async fn wan26_cancel_while_queued() {
    let fake = FakeProvider::start_queued(Kind::Piapi).await;
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let t = ok(&call(
        &s,
        "create_i2v_task",
        json!({"prompt": "p", "provider": "piapi", "model": "wan2.6-t2v"}),
    )
    .await);
    let c = ok(&call(&s, "cancel_task", json!({"task_id": t["task_id"]})).await);
    assert_eq!(c["status"], "cancelled", "{c}");
    let deletes: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path)
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert!(deletes[0].starts_with("/api/v1/task/"), "{deletes:?}");
    s.cancel().await.unwrap();
}

/// `list_models` marks the text-to-video models; `estimate_cost` quotes them, Wan 2.6 per second
/// by resolution x duration.
#[tokio::test]
async fn listed_and_quoted() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let models = ok(&call(&s, "list_models", json!({"provider": "piapi"})).await);
    let models = models["models"].as_array().unwrap();
    assert_eq!(models[0]["model"], "wan2.1-i2v-14b", "the default first");
    let t2v: Vec<&str> = models
        .iter()
        .filter(|m| m["text_to_video"] == json!(true))
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(t2v, ["wan2.1-t2v-14b", "wan2.1-t2v-1.3b", "wan2.6-t2v"]);
    let w26 = models.iter().find(|m| m["model"] == "wan2.6-t2v").unwrap();
    assert_eq!(w26["price"]["by_resolution"][1]["usd_per_second"], 0.12);
    let qubico = ok(&call(&s, "list_models", json!({"provider": "qubico"})).await);
    assert!(!qubico.to_string().contains("wan2.6"), "{qubico}");

    for (model, extra, usd) in [
        (
            "wan2.6-t2v",
            json!({"resolution": "1080p", "duration_seconds": 10}),
            1.2,
        ),
        ("wan2.6-i2v", json!({"duration_seconds": 15}), 1.2),
        ("wan2.6-i2v", json!({}), 0.4),
        ("wan2.1-t2v-1.3b", json!({}), 0.12),
        ("wan2.1-t2v-14b", json!({}), 0.28),
    ] {
        let mut args = json!({"provider": "piapi", "model": model});
        for (k, v) in extra.as_object().unwrap() {
            args[k] = v.clone();
        }
        let est = ok(&call(&s, "estimate_cost", args).await);
        let q = &est["quotes"][0];
        let got = q["usd"].as_f64().unwrap();
        assert!((got - usd).abs() < 1e-9, "{model}: {q}");
    }
    let est = ok(&call(
        &s,
        "estimate_cost",
        json!({"compare": true, "duration_seconds": 5}),
    )
    .await);
    let keys: Vec<String> = quote_keys(&est);
    for k in [
        "piapi/wan2.1-t2v-1.3b",
        "qubico/wan2.1-t2v-14b",
        "piapi/wan2.6-t2v",
    ] {
        assert!(keys.contains(&k.to_string()), "{k} ranked: {keys:?}");
    }
    assert!(fake.requests().is_empty());
    s.cancel().await.unwrap();
}
