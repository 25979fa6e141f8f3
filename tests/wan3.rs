//! DashScope Wan 3.0 (`wan3.0-video`, `wan3.0-video-prime`) end to end through `create_i2v_task`
//! against the strict fake (tests/support/fakes/dashscope_wan3.rs, docs/notes/wan3.md): each mode
//! (first frame, first + last frame, references, text only) with its wire snapshotted; every
//! billing-relevant parameter sent explicitly; the documented limits refused before anything is
//! journaled or sent; the fake's own refusals; a model-not-found answer as `unsupported`.

use serde_json::{Value, json};

use crate::mcp_flow::core_for;
use crate::providers::{run, wire};
use crate::support::fakes::{FakeProvider, Fault, Kind};
use crate::support::{Workspace, call, connect, err, ok};

fn create_body(fake: &FakeProvider) -> Value {
    let create = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("a create was sent");
    assert_eq!(create.header("x-dashscope-async"), Some("enable"));
    create.body
}

#[tokio::test]
async fn wan3_first_frame_sends_our_defaults_not_the_providers() {
    let (fake, task) = run(
        Kind::Dashscope,
        "dashscope",
        "wan3.0-video",
        json!("LOCAL"),
        json!({}),
    )
    .await;
    let p = &create_body(&fake)["parameters"];
    // Never 1080P / audio on by omission: 720P, 5 s, audio off, all on the wire.
    assert_eq!(p["resolution"], "720P");
    assert_eq!(p["duration"], 5);
    assert_eq!(p["audio"], false);
    assert_eq!(task["billed_seconds"], 5.0, "{task}");
    insta::assert_json_snapshot!("wan3_first_frame_wire", wire(&fake));
}

#[tokio::test]
async fn wan3_first_and_last_frame_30_seconds_1080p_with_audio() {
    let (fake, task) = run(
        Kind::Dashscope,
        "dashscope",
        "wan3.0-video-prime",
        json!("https://example.com/first.png"),
        json!({"end_image": "https://example.com/last.png", "resolution": "1080p", "duration_seconds": 30, "audio": true, "aspect_ratio": "16:9"}),
    )
    .await;
    assert_eq!(task["billed_seconds"], 30.0, "{task}");
    insta::assert_json_snapshot!("wan3_first_last_wire", wire(&fake));
}

#[tokio::test]
async fn wan3_references_images_video_audio_in_order() {
    let fake = FakeProvider::start(Kind::Dashscope).await;
    let ws = Workspace::new();
    let local = ws.png("hero.png", 640, 480);
    let (s, _) = connect(core_for(&ws, &fake, "dashscope")).await;
    // No model: references pick the provider's first model that takes them.
    let args = json!({
        "prompt": "Image 1 walks like Video 1 and speaks with Audio 1 in front of Image 2",
        "provider": "dashscope", "wait_seconds": 30,
        "references": [local, "https://example.com/walk.mp4?duration=6", "https://example.com/voice.mp3", "https://example.com/street.jpg"],
    });
    let task = ok(&call(&s, "create_i2v_task", args).await);
    crate::mcp_flow::assert_downloaded(&task);
    s.cancel().await.unwrap();
    let media = &create_body(&fake)["input"]["media"];
    assert_eq!(media[0]["type"], "reference_image");
    assert!(
        media[0]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    insta::assert_json_snapshot!("wan3_references_wire", wire(&fake));
}

#[tokio::test]
async fn wan3_text_only() {
    let (fake, _) = run(
        Kind::Dashscope,
        "dashscope",
        "wan3.0-video",
        Value::Null,
        json!({"prompt": "A lighthouse at dusk, waves, gulls", "resolution": "480p", "duration_seconds": 12}),
    )
    .await;
    assert!(create_body(&fake)["input"].get("media").is_none());
    insta::assert_json_snapshot!("wan3_text_only_wire", wire(&fake));
}

/// What the pages refuse is refused here first: nothing journaled, nothing sent.
#[tokio::test]
async fn wan3_limits_are_refused_before_anything_is_sent() {
    let fake = FakeProvider::start(Kind::Dashscope).await;
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "dashscope")).await;
    let base = json!({"prompt": "p", "provider": "dashscope", "model": "wan3.0-video"});
    let with = |extra: Value| {
        let mut a = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    };
    let img = |i: usize| format!("https://example.com/{i}.png");
    let cases = [
        (
            json!({"image": "https://example.com/a.png", "references": ["https://example.com/b.png"]}),
            "invalid_input",
            "not both",
        ),
        (
            json!({"references": (0..11).map(img).collect::<Vec<_>>()}),
            "invalid_input",
            "at most 10",
        ),
        (
            json!({"references": (0..6).map(|i| format!("https://example.com/{i}.mp4")).collect::<Vec<_>>()}),
            "invalid_input",
            "at most 5",
        ),
        (
            json!({"references": ["https://example.com/download?id=3"]}),
            "invalid_input",
            "cannot tell",
        ),
        (
            json!({"references": ["/tmp/clip.mp4"]}),
            "invalid_input",
            "http(s) URL",
        ),
        (
            json!({"prompt": "x".repeat(20_001)}),
            "invalid_input",
            "at most 20000",
        ),
        (json!({"duration_seconds": 31}), "unsupported", "31"),
        (
            json!({"negative_prompt": "blur"}),
            "unsupported",
            "negative_prompt",
        ),
        (
            json!({"prompt_extend": true}),
            "unsupported",
            "prompt_extend",
        ),
        (
            json!({"end_image": "https://example.com/z.png"}),
            "invalid_input",
            "end_image needs image",
        ),
    ];
    for (extra, category, says) in cases {
        let e = err(&call(&s, "create_i2v_task", with(extra.clone())).await);
        assert_eq!(e["category"], category, "{extra}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(says),
            "{extra}: {e}"
        );
    }
    // References on a model that takes none.
    let mut a = with(
        json!({"image": "https://example.com/a.png", "references": ["https://example.com/b.png"]}),
    );
    a["model"] = json!("wan2.7-i2v");
    let e = err(&call(&s, "create_i2v_task", a).await);
    assert_eq!(e["category"], "unsupported", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("wan3.0-video"),
        "{e}"
    );
    assert_eq!(fake.creates(), 0, "nothing was sent");
    let tasks = ok(&call(&s, "list_tasks", json!({})).await);
    assert_eq!(
        tasks["tasks"].as_array().unwrap().len(),
        0,
        "nothing journaled: {tasks}"
    );
    s.cancel().await.unwrap();
}

/// The fake follows the pages: it refuses what the real service documents refusing.
#[tokio::test]
async fn the_wan3_fake_refuses_what_the_pages_refuse() {
    let fake = FakeProvider::start(Kind::Dashscope).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let http = http.clone();
        let url = format!(
            "{}/services/aigc/video-generation/video-synthesis",
            fake.base_url()
        );
        async move {
            let r = http
                .post(url)
                .header("authorization", "Bearer test-key-dashscope")
                .header("x-dashscope-async", "enable")
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let body = |media: Value, params: Value| json!({"model": "wan3.0-video", "input": {"prompt": "p", "media": media}, "parameters": params});
    let m = |t: &str, u: &str| json!({"type": t, "url": u});
    let ok_params = json!({"resolution": "720P", "duration": 5, "audio": false});
    let refused = [
        body(
            json!([
                m("first_frame", "https://x.test/a.png"),
                m("reference_image", "https://x.test/b.png")
            ]),
            ok_params.clone(),
        ),
        body(
            json!(
                (0..11)
                    .map(|i| m("reference_image", &format!("https://x.test/{i}.png")))
                    .collect::<Vec<_>>()
            ),
            ok_params.clone(),
        ),
        body(
            json!([
                m("reference_video", "https://x.test/a.mp4?duration=10"),
                m("reference_video", "https://x.test/b.mp4?duration=6")
            ]),
            ok_params.clone(),
        ),
        body(
            json!([m("reference_audio", "data:audio/mpeg;base64,AAAA")]),
            ok_params.clone(),
        ),
        body(json!([]), json!({"resolution": "720P", "duration": 31})),
        body(json!([]), json!({"prompt_extend": true})),
        json!({"model": "wan3.0-video", "input": {"prompt": "x".repeat(20_001)}}),
        json!({"model": "wan3.0-video", "input": {"prompt": "p", "negative_prompt": "blur"}}),
    ];
    for b in refused {
        let (status, answer) = post(b.clone()).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["code"].as_str().unwrap().starts_with("Invalid"),
            "{answer}"
        );
    }
    let (status, answer) = post(body(
        json!([m("reference_video", "https://x.test/a.mp4?duration=15")]),
        ok_params,
    ))
    .await;
    assert_eq!(status, 200, "{answer}");
}

/// Reference videos longer than the 15 s allowance cannot be measured here (URLs); the
/// service's refusal ends the task with a clear error, and nothing is sent twice.
#[tokio::test]
async fn wan3_refusal_of_long_reference_videos_is_clear_and_not_resubmitted() {
    let fake = FakeProvider::start(Kind::Dashscope).await;
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "dashscope")).await;
    let args = json!({"prompt": "Video 1 dances", "provider": "dashscope", "model": "wan3.0-video",
        "references": ["https://example.com/a.mp4?duration=12", "https://example.com/b.mp4?duration=9"]});
    let e = err(&call(&s, "create_i2v_task", args).await);
    assert_eq!(e["category"], "invalid_input", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("at most 15 s"),
        "{e}"
    );
    assert_eq!(fake.creates(), 1);
    s.cancel().await.unwrap();
}

/// A model DashScope no longer knows (retired, renamed, other region) is `unsupported` and the
/// answer names the current models.
#[tokio::test]
async fn model_not_found_is_unsupported_and_names_current_models() {
    let fake = FakeProvider::start(Kind::Dashscope).await;
    fake.push_create_fault(Fault::status(
        404,
        json!({"code": "ModelNotFound", "message": "Model not found: wan2.6-i2v", "request_id": "r"}).to_string(),
    ));
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "dashscope")).await;
    let args = json!({"image": "https://example.com/a.png", "prompt": "p", "provider": "dashscope", "model": "wan2.6-i2v"});
    let e = err(&call(&s, "create_i2v_task", args).await);
    assert_eq!(e["category"], "unsupported", "{e}");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("wan3.0-video") && msg.contains("wan3.0-video-prime"),
        "{e}"
    );
    assert_eq!(fake.creates(), 1, "not retried");
    s.cancel().await.unwrap();
}

/// The quote names what is sent, reference videos make it an upper bound, and compare ranks
/// Wan 3.0 among the other models.
#[tokio::test]
async fn wan3_quotes_name_what_is_sent_and_compare_ranks_it() {
    let fake = FakeProvider::start(Kind::Dashscope).await;
    let ws = Workspace::new();
    let (s, _) = connect(core_for(&ws, &fake, "dashscope")).await;
    let est = ok(&call(
        &s,
        "estimate_cost",
        json!({"provider": "dashscope", "model": "wan3.0-video"}),
    )
    .await);
    let q = &est["quotes"][0];
    assert_eq!(q["usd"], 0.5, "{est}");
    let basis = q["basis"].as_str().unwrap();
    assert!(
        basis.contains("sends resolution 720p, duration 5 s, audio off"),
        "{basis}"
    );
    let est = ok(&call(
        &s,
        "estimate_cost",
        json!({"compare": true, "duration_seconds": 10, "resolution": "720p"}),
    )
    .await);
    let ranked: Vec<&str> = est["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["model"].as_str().unwrap())
        .collect();
    let at = |m: &str| ranked.iter().position(|r| *r == m);
    let (std, prime) = (
        at("wan3.0-video").unwrap(),
        at("wan3.0-video-prime").unwrap(),
    );
    assert!(std < prime, "standard is cheaper than Prime: {ranked:?}");
    // A max_cost_usd below the worst case with a reference video is refused before sending:
    // 5 s output + up to 15 s of reference video input at $0.10/s = $2.00.
    let args = json!({"prompt": "Video 1", "provider": "dashscope", "model": "wan3.0-video",
        "references": ["https://example.com/a.mp4"], "max_cost_usd": 1.0});
    let e = err(&call(&s, "create_i2v_task", args).await);
    assert_eq!(e["category"], "budget", "{e}");
    assert!(e["message"].as_str().unwrap().contains("$2"), "{e}");
    assert_eq!(fake.creates(), 0);
    s.cancel().await.unwrap();
}

/// `i2v-mcp models --json` lists both Wan 3.0 models, priced, up to 30 s, with their references.
#[test]
fn models_json_lists_wan3_priced_up_to_30_seconds() {
    let ws = Workspace::new();
    let env = ws.env(&[]);
    let (code, out, _) = crate::cli::cli(&env, &["models", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    for name in ["wan3.0-video", "wan3.0-video-prime"] {
        let m = v["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["provider"] == "dashscope" && m["model"] == name)
            .unwrap_or_else(|| panic!("{name} not listed"));
        assert_eq!(
            m["durations"].as_array().unwrap().last().unwrap(),
            30,
            "{m}"
        );
        assert_eq!(m["durations"][0], 2, "{m}");
        let tiers = m["price"]["by_resolution"].as_array().unwrap();
        assert_eq!(tiers.len(), 3, "{m}");
        assert!(
            m["price"]["source"].as_str().unwrap().contains("wan3.md"),
            "{m}"
        );
        assert_eq!(m["image_optional"], true);
        assert_eq!(m["references"]["images"], 10);
        assert_eq!(m["default_resolution"], "720p");
    }
}

/// A 30 s Wan 3.0 task may run longer than the default watch: it is watched at least 3 h, while a
/// model without such a floor is given up at `[poll] give_up_minutes`.
#[tokio::test]
async fn wan3_tasks_outlast_the_default_give_up() {
    use crate::support::fakes::{Outcome, TaskPlan};
    let fake = FakeProvider::start(Kind::Dashscope).await;
    fake.set_plan(TaskPlan::Polls {
        pending: 100_000,
        processing: 1,
        outcome: Outcome::Succeed,
    });
    let ws = Workspace::new();
    let env = crate::mcp_flow::env_for(&fake, "dashscope");
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut cfg = ws.config(&pairs);
    cfg.poll.give_up_after = std::time::Duration::from_millis(300);
    let (s, _) = connect(i2v_mcp::core::Core::start(cfg).unwrap()).await;
    let create = |model: &str| json!({"image": "https://example.com/a.png", "prompt": "p", "provider": "dashscope", "model": model});
    let old = ok(&call(&s, "create_i2v_task", create("wan2.7-i2v")).await);
    let new = ok(&call(&s, "create_i2v_task", create("wan3.0-video")).await);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let get = |t: &Value| json!({"task_id": t["task_id"]});
    let old = ok(&call(&s, "get_task", get(&old)).await);
    let new = ok(&call(&s, "get_task", get(&new)).await);
    assert_eq!(old["status"], "failed", "{old}");
    assert_eq!(old["error"]["category"], "timeout", "{old}");
    assert_eq!(new["status"], "queued", "{new}");
    s.cancel().await.unwrap();
}
