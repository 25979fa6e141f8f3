//! fal.ai against its official client (issue 23, the pattern of tests/reference.rs): for every fal
//! model in the catalog, our `create_i2v_task` and PyPI `fal-client` 1.0.x (`SyncClient.submit`,
//! `handle.status()`, and `SyncClient.upload(..., repository="fal")` for a local image), driven
//! by tests/interop/fal_reference.py, send the same requests to two strict fakes, up to a short,
//! commented allow-list: the submit (path, `?fal_webhook=` query, `Authorization: Key`, body), the
//! storage initiate and
//! PUT, and the first status poll (with its `logs=false` query). The SDK's arguments are written
//! from each model's fal page (docs/notes/fal.md), not from our adapter. Without the venv the test
//! prints `SKIPPED` and passes, except under CI.

use serde_json::{Value, json};

use i2v_mcp::catalog::{self, ModelSpec};
use i2v_mcp::model::ProviderId;

use crate::reference::compare::{self, Allowed, Captured};
use crate::support::fakes::{FakeProvider, Kind, Recorded};
use crate::support::{Workspace, call, connect, ok};

/// What fal-client and our adapter may send differently, and why. Method, path, query,
/// `Authorization`, the media type and every body field must be equal.
const ALLOWED: &[Allowed] = &[
    Allowed::Header("host", "each client has its own capture server (port)"),
    Allowed::Header("user-agent", "each client names itself"),
    Allowed::Header(
        "accept",
        "httpx sends */* by default; the answer is JSON either way",
    ),
    Allowed::Header("accept-encoding", "transport"),
    Allowed::Header("connection", "transport (keep-alive)"),
    Allowed::Header("content-length", "follows the body"),
    Allowed::MediaType("content-type", "parameters may differ"),
];

/// The storage PUT: fal-client's httpx client carries its default `Authorization` header on
/// every request, the signed upload URL included; ours sends no key to a URL that needs none.
const PUT_ALLOWED: &[Allowed] = &[
    Allowed::Header("host", "each client has its own capture server (port)"),
    Allowed::Header("user-agent", "each client names itself"),
    Allowed::Header("accept", "transport"),
    Allowed::Header("accept-encoding", "transport"),
    Allowed::Header("connection", "transport (keep-alive)"),
    Allowed::Header("content-length", "the same bytes"),
    Allowed::Header(
        "authorization",
        "fal-client sends its key to the signed upload URL too; we do not (see docs/notes/fal.md)",
    ),
];

const PROMPT: &str = "A red kite over a windy beach";
const NEGATIVE: &str = "blur, text";
const IMAGE: &str = "https://example.com/cat.png";
const END_IMAGE: &str = "https://example.com/end.png";
const AUDIO: &str = "https://example.com/beat.mp3";

/// Our arguments and fal's for one model: every parameter it takes, away from its default.
fn case_for(spec: &ModelSpec) -> (Value, &'static str, Value) {
    let m = spec.model.as_str();
    let mut args = json!({"prompt": PROMPT, "provider": "fal", "model": m, "wait_seconds": 30,
        "seed": 42});
    let mut sdk = json!({"prompt": PROMPT, "seed": 42});
    let image = |args: &mut Value, sdk: &mut Value| {
        args["image"] = json!(IMAGE);
        sdk["image_url"] = json!(IMAGE);
    };
    let endpoint = match m {
        "wan2.2-i2v-a14b" | "wan2.2-t2v-a14b" => {
            // fal's page: `num_frames` 17-161 at `frames_per_second` (16 by default).
            args["duration_seconds"] = json!(10);
            sdk["num_frames"] = json!(161);
            sdk["frames_per_second"] = json!(16);
            args["resolution"] = json!("480p");
            sdk["resolution"] = json!("480p");
            args["negative_prompt"] = json!(NEGATIVE);
            sdk["negative_prompt"] = json!(NEGATIVE);
            args["aspect_ratio"] = json!("9:16");
            sdk["aspect_ratio"] = json!("9:16");
            if m == "wan2.2-i2v-a14b" {
                image(&mut args, &mut sdk);
                "fal-ai/wan/v2.2-a14b/image-to-video"
            } else {
                "fal-ai/wan/v2.2-a14b/text-to-video"
            }
        }
        "wan2.2-i2v-a14b-turbo" => {
            image(&mut args, &mut sdk);
            args["resolution"] = json!("580p");
            sdk["resolution"] = json!("580p");
            args["aspect_ratio"] = json!("1:1");
            sdk["aspect_ratio"] = json!("1:1");
            args["prompt_extend"] = json!(false);
            sdk["enable_prompt_expansion"] = json!(false);
            "fal-ai/wan/v2.2-a14b/image-to-video/turbo"
        }
        "wan2.5-i2v" | "wan2.6-i2v" => {
            image(&mut args, &mut sdk);
            args["resolution"] = json!("1080p");
            sdk["resolution"] = json!("1080p");
            args["negative_prompt"] = json!(NEGATIVE);
            sdk["negative_prompt"] = json!(NEGATIVE);
            // A string enum on both pages ("5", "10"[, "15"]).
            let d = if m == "wan2.5-i2v" { 10 } else { 15 };
            args["duration_seconds"] = json!(d);
            sdk["duration"] = json!(d.to_string());
            if m == "wan2.5-i2v" {
                "fal-ai/wan-25-preview/image-to-video"
            } else {
                "wan/v2.6/image-to-video"
            }
        }
        "wan2.7-i2v" => {
            image(&mut args, &mut sdk);
            args["end_image"] = json!(END_IMAGE);
            sdk["end_image_url"] = json!(END_IMAGE);
            args["audio_url"] = json!(AUDIO);
            sdk["audio_url"] = json!(AUDIO);
            args["resolution"] = json!("1080p");
            sdk["resolution"] = json!("1080p");
            args["negative_prompt"] = json!(NEGATIVE);
            sdk["negative_prompt"] = json!(NEGATIVE);
            args["duration_seconds"] = json!(15);
            sdk["duration"] = json!(15);
            args["prompt_extend"] = json!(false);
            sdk["enable_prompt_expansion"] = json!(false);
            "fal-ai/wan/v2.7/image-to-video"
        }
        "wan3.0" => {
            image(&mut args, &mut sdk);
            args["resolution"] = json!("1080p");
            sdk["resolution"] = json!("1080p");
            args["aspect_ratio"] = json!("9:16");
            sdk["aspect_ratio"] = json!("9:16");
            args["duration_seconds"] = json!(30);
            sdk["duration"] = json!(30);
            args["audio"] = json!(true);
            sdk["audio"] = json!(true);
            args["prompt_extend"] = json!(false);
            sdk["enable_prompt_expansion"] = json!(false);
            "alibaba/wan-3.0/image-to-video"
        }
        other => panic!("no fal-client case for fal/{other}: add it to tests/reference_fal.rs"),
    };
    (args, endpoint, sdk)
}

/// Ids and ports out of a request, and the query into the path.
fn captured(r: &Recorded, root: &str) -> Captured {
    let mut c = Captured::of(r, |p| {
        let p = match p.split_once("/requests/") {
            Some((app, rest)) => {
                let tail = rest.split_once('/').map(|(_, t)| format!("/{t}"));
                format!("{app}/requests/{{id}}{}", tail.unwrap_or_default())
            }
            None => p.to_string(),
        };
        match p.strip_prefix("/storage/put/") {
            Some(_) => "/storage/put/{seq}".to_string(),
            None => p,
        }
    });
    if !r.query.is_empty() {
        c.path = format!("{}?{}", c.path, r.query);
    }
    let text = c.body.to_string().replace(root, "{root}");
    c.body = serde_json::from_str(&text).unwrap_or(c.body);
    if c.body.is_null() && !r.body_text.is_empty() {
        c.body = json!(format!("<{} bytes>", r.body_text.len()));
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fal_client_and_adapter_send_the_same_requests_for_every_model() {
    let ours = FakeProvider::start(Kind::Fal).await;
    let theirs = FakeProvider::start(Kind::Fal).await;
    let ws = Workspace::new();
    let png = ws.png("frame.png", 320, 320);
    let bytes = std::fs::read(&png).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let specs: Vec<&ModelSpec> = catalog::models()
        .iter()
        .filter(|m| m.provider == ProviderId::Fal)
        .collect();
    assert!(
        specs.len() >= 3,
        "the catalog's fal models: {}",
        specs.len()
    );
    let env = [
        ("FAL_KEY".to_string(), ours.api_key().to_string()),
        (
            "I2V_MCP_FAL_BASE_URL".to_string(),
            ours.base_url().to_string(),
        ),
        ("I2V_MCP_POLL_FIRST_MS".to_string(), "30".to_string()),
        ("I2V_MCP_POLL_MAX_MS".to_string(), "150".to_string()),
    ];
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let core = i2v_mcp::core::Core::start(ws.config(&pairs)).unwrap();
    // Callbacks on (nothing listens there): every create carries `?fal_webhook=`, and fal-client
    // is given the same URL, so the query's encoding is compared too.
    core.enable_webhooks("http://127.0.0.1:9");
    let (s, _) = connect(core).await;
    let mut calls = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let (mut args, endpoint, sdk) = case_for(spec);
        // The first model takes a local file: both upload it to fal's storage first.
        let upload = if i == 0 {
            assert!(
                args.get("image").is_some(),
                "the first fal model takes an image"
            );
            args["image"] = json!(png.to_string_lossy());
            use base64::Engine;
            json!({"field": "image_url", "content_type": "image/png",
                   // Our name for an upload (the sha256 prefix); the SDK takes any.
                   "file_name": format!("{}.png", &sha[..16]),
                   "base64": base64::engine::general_purpose::STANDARD.encode(&bytes)})
        } else {
            Value::Null
        };
        let task = ok(&call(&s, "create_i2v_task", args).await);
        assert_eq!(task["status"], "succeeded", "{}: {task}", spec.model);
        let hook = ours.tasks().last().and_then(|t| t.webhook_url.clone());
        assert!(hook.is_some(), "{}: no fal_webhook sent", spec.model);
        calls.push(
            json!({"endpoint": endpoint, "arguments": sdk, "upload": upload,
                          "webhook_url": hook}),
        );
    }
    s.cancel().await.unwrap();

    let script_env = vec![
        ("FAL_KEY".to_string(), theirs.api_key().to_string()),
        ("FAL_ROOT".to_string(), theirs.root_url().to_string()),
        (
            "REF_CALLS".to_string(),
            Value::Array(calls.clone()).to_string(),
        ),
    ];
    if !crate::support::run_interop_python("fal_reference.py", script_env).await {
        return;
    }

    let pick = |fake: &FakeProvider, method: &str| -> Vec<Captured> {
        let reqs: Vec<Recorded> = fake
            .requests()
            .into_iter()
            .filter(|r| r.method == method && !r.path.starts_with("/files/"))
            .collect();
        let reqs: Vec<Recorded> = if method == "GET" {
            // Ours polls until done: each task's first status poll against the SDK's one.
            fake.tasks()
                .iter()
                .filter_map(|t| {
                    reqs.iter()
                        .find(|r| r.path.contains(&t.id) && r.path.ends_with("/status"))
                        .cloned()
                })
                .collect()
        } else {
            reqs
        };
        reqs.iter().map(|r| captured(r, fake.root_url())).collect()
    };
    let mut failures = Vec::new();
    for (method, allowed, n) in [
        ("POST", ALLOWED, calls.len() + 1),
        ("PUT", PUT_ALLOWED, 1),
        ("GET", ALLOWED, calls.len()),
    ] {
        let (a, b) = (pick(&ours, method), pick(&theirs, method));
        assert_eq!(a.len(), n, "our {method}s: {a:?}");
        assert_eq!(b.len(), n, "fal-client's {method}s: {b:?}");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let d = compare::differences(x, y, allowed);
            failures.extend(
                d.into_iter()
                    .map(|d| format!("{method} #{i} {}: {d}", x.path)),
            );
        }
    }
    compare::assert_none(&failures, "fal-client", ALLOWED.iter().chain(PUT_ALLOWED));
}
