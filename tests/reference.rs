//! Reference clients (issue 21): where a vendor ships an official client, the requests our adapter
//! sends are compared with the ones that client sends for the same parameters. Both go to the
//! project's strict fake (one fake each), which records them and must accept both; then
//! [`compare::differences`] must find nothing beyond a short, commented allow-list.
//!
//! DashScope: Alibaba's `dashscope` Python SDK (pinned in tests/interop/requirements.txt, installed
//! by tests/interop/setup.sh), `VideoSynthesis.async_call` then `VideoSynthesis.fetch`, driven by
//! tests/interop/dashscope_reference.py. Without the venv the test prints `SKIPPED` and passes,
//! except under CI.
//!
//! Also here: the strict fakes refuse unknown and misplaced fields with each provider's own
//! validation error.

use serde_json::{Value, json};

use i2v_mcp::catalog::{self, ModelSpec};
use i2v_mcp::model::{AspectRatio, ProviderId, Resolution};

use crate::mcp_flow::{core_for, env_for};
use crate::support::fakes::{FakeProvider, Kind, Recorded};
use crate::support::{Workspace, call, connect, ok};

/// A generic request comparison, for any provider with a reference client (fal.ai and Replicate
/// can reuse it): two captured requests, an allow-list, and the differences left.
pub(crate) mod compare {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use crate::support::fakes::Recorded;

    /// One request as compared: method, path (with ids replaced by the caller), headers by
    /// lower-case name, JSON body.
    #[derive(Debug, Clone)]
    pub(crate) struct Captured {
        pub method: String,
        pub path: String,
        pub headers: BTreeMap<String, String>,
        pub body: Value,
    }

    impl Captured {
        /// `path` rewrites the recorded path (say, a task id to `{id}`).
        pub(crate) fn of(r: &Recorded, path: impl Fn(&str) -> String) -> Self {
            Captured {
                method: r.method.clone(),
                path: path(&r.path),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect(),
                body: r.body.clone(),
            }
        }
    }

    /// A difference that is expected, and why.
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Allowed {
        /// A header either side may send or leave out, with any value.
        Header(&'static str, &'static str),
        /// A header both must send whose media type must match; parameters (`; charset=...`)
        /// may differ.
        MediaType(&'static str, &'static str),
        /// A body field (JSON pointer) either side may send or leave out, with any value.
        Body(&'static str, &'static str),
    }

    impl Allowed {
        /// The allowance as one line: what, and why.
        pub(crate) fn describe(&self) -> String {
            match self {
                Allowed::Header(h, why) => format!("header {h}: {why}"),
                Allowed::MediaType(h, why) => format!("header {h} (media type compared): {why}"),
                Allowed::Body(p, why) => format!("body {p}: {why}"),
            }
        }
    }

    /// Fails naming every difference (and what was allowed) unless `failures` is empty.
    pub(crate) fn assert_none<'a>(
        failures: &[String],
        client: &str,
        allowed: impl IntoIterator<Item = &'a Allowed>,
    ) {
        assert!(
            failures.is_empty(),
            "adapter and {client} differ:\n{}\n(allowed: {})",
            failures.join("\n"),
            allowed
                .into_iter()
                .map(Allowed::describe)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }

    /// Everything that differs between `ours` and `theirs` and is not allowed, one line each.
    pub(crate) fn differences(
        ours: &Captured,
        theirs: &Captured,
        allowed: &[Allowed],
    ) -> Vec<String> {
        let mut out = Vec::new();
        if ours.method != theirs.method {
            out.push(format!(
                "method: ours {}, theirs {}",
                ours.method, theirs.method
            ));
        }
        if ours.path != theirs.path {
            out.push(format!("path: ours {}, theirs {}", ours.path, theirs.path));
        }
        let names: std::collections::BTreeSet<&String> =
            ours.headers.keys().chain(theirs.headers.keys()).collect();
        for name in names {
            let (a, b) = (ours.headers.get(name), theirs.headers.get(name));
            let rule = allowed.iter().find(|r| match r {
                Allowed::Header(h, _) | Allowed::MediaType(h, _) => h == name,
                Allowed::Body(..) => false,
            });
            match rule {
                Some(Allowed::Header(..)) => {}
                Some(Allowed::MediaType(..)) => {
                    let media = |v: Option<&String>| {
                        v.map(|v| {
                            v.split(';')
                                .next()
                                .unwrap_or("")
                                .trim()
                                .to_ascii_lowercase()
                        })
                    };
                    if media(a).is_none() || media(a) != media(b) {
                        out.push(format!(
                            "header {name} (media type): ours {a:?}, theirs {b:?}"
                        ));
                    }
                }
                _ if a != b => out.push(format!("header {name}: ours {a:?}, theirs {b:?}")),
                _ => {}
            }
        }
        let skip: Vec<&str> = allowed
            .iter()
            .filter_map(|r| match r {
                Allowed::Body(p, _) => Some(*p),
                _ => None,
            })
            .collect();
        diff_json("", &ours.body, &theirs.body, &skip, &mut out);
        out
    }

    fn diff_json(at: &str, a: &Value, b: &Value, skip: &[&str], out: &mut Vec<String>) {
        if skip.contains(&at) {
            return;
        }
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let path = format!("{at}/{k}");
                    match (x.get(k), y.get(k)) {
                        (Some(va), Some(vb)) => diff_json(&path, va, vb, skip, out),
                        _ if skip.contains(&path.as_str()) => {}
                        (Some(va), None) => {
                            out.push(format!("body {path}: ours {va}, theirs absent"))
                        }
                        (None, Some(vb)) => {
                            out.push(format!("body {path}: ours absent, theirs {vb}"))
                        }
                        (None, None) => {}
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    diff_json(&format!("{at}/{i}"), va, vb, skip, out);
                }
            }
            _ if a != b => out.push(format!(
                "body {}: ours {a}, theirs {b}",
                if at.is_empty() { "/" } else { at }
            )),
            _ => {}
        }
    }

    #[test]
    fn the_comparison_sees_a_moved_field_and_honours_the_allow_list() {
        let req = |body: Value, ct: &str| Captured {
            method: "POST".into(),
            path: "/x".into(),
            headers: [
                ("content-type".to_string(), ct.to_string()),
                ("user-agent".to_string(), ct.to_string()),
            ]
            .into_iter()
            .collect(),
            body,
        };
        let ours = req(
            serde_json::json!({"input": {"p": 1}, "parameters": {"n": "b"}}),
            "application/json",
        );
        let theirs = req(
            serde_json::json!({"input": {"p": 1, "n": "b", "sdk": true}, "parameters": {}}),
            "application/json; charset=utf-8",
        );
        let allow = [
            Allowed::Header("user-agent", "t"),
            Allowed::MediaType("content-type", "t"),
            Allowed::Body("/input/sdk", "t"),
        ];
        assert_eq!(
            differences(&ours, &theirs, &allow),
            vec![
                "body /input/n: ours absent, theirs \"b\"".to_string(),
                "body /parameters/n: ours \"b\", theirs absent".to_string()
            ]
        );
        assert_eq!(differences(&ours, &ours, &[]), Vec::<String>::new());
        let ua = differences(&ours, &theirs, &allow[1..]);
        assert!(
            ua.iter().any(|d| d.starts_with("header user-agent")),
            "{ua:?}"
        );
    }
}

use compare::{Allowed, Captured};

/// What the official SDK and our adapter may send differently, and why. Everything else (method,
/// path, `Authorization`, `X-DashScope-Async`, the media type, every body field) must be equal.
const DASHSCOPE_ALLOWED: &[Allowed] = &[
    Allowed::Header("host", "each client has its own capture server (port)"),
    Allowed::Header("user-agent", "each client names itself"),
    Allowed::Header(
        "accept",
        "the SDK asks for JSON; the answer is JSON either way",
    ),
    Allowed::Header("accept-encoding", "transport"),
    Allowed::Header("connection", "transport (keep-alive)"),
    Allowed::Header(
        "content-length",
        "follows the body, whose allowed fields differ",
    ),
    Allowed::Header(
        "x-dashscope-sdk-client",
        "SDK telemetry (python-sdk/<version>/<module>)",
    ),
    Allowed::Header(
        "x-dashscope-sdk-session-id",
        "SDK telemetry, random per process",
    ),
    Allowed::MediaType(
        "content-type",
        "the SDK adds `; charset=utf-8`; both send application/json",
    ),
    Allowed::Body(
        "/input/extend_prompt",
        "the SDK always sends its deprecated `extend_prompt: true` (video_synthesis.py _get_input); `parameters.prompt_extend` is the documented switch, compared",
    ),
    Allowed::Body(
        "/input/function",
        "the SDK copies the path's last segment (`video-synthesis`) into input",
    ),
];

/// One model's case: the `create_i2v_task` arguments and the SDK keyword arguments that ask for
/// the same video, written from the SDK's own signature (`VideoSynthesis.async_call`), not from
/// our adapter.
struct Case {
    args: Value,
    sdk: Value,
}

const PROMPT: &str = "A red kite over a windy beach";
const NEGATIVE: &str = "blur, text";
const IMAGE: &str = "https://example.com/cat.png";
const END_IMAGE: &str = "https://example.com/end.png";
const AUDIO: &str = "https://example.com/beat.mp3";

/// The SDK's names for a tier: `resolution` (2.7 and the i2v models) or the 16:9 `size` of the
/// legacy text-to-video models.
fn sdk_resolution(r: Resolution) -> (&'static str, &'static str) {
    match r {
        Resolution::P480 | Resolution::P580 => ("480P", "832*480"),
        Resolution::P720 => ("720P", "1280*720"),
        Resolution::P1080 => ("1080P", "1920*1080"),
    }
}

/// Every parameter the model takes, set away from its default where it has one. `image` is the
/// first frame as the SDK is given it (a URL, or the data URI of a local file).
fn case_for(spec: &ModelSpec, image: Option<(&str, &str)>) -> Case {
    let m = spec.model.as_str();
    let mut args =
        json!({"prompt": PROMPT, "provider": "dashscope", "model": m, "wait_seconds": 30});
    let mut sdk = json!({"prompt": PROMPT});
    let tier = spec
        .resolutions
        .iter()
        .copied()
        .find(|r| *r != spec.default_resolution)
        .unwrap_or(spec.default_resolution);
    args["resolution"] = json!(tier.as_str());
    let (resolution, size) = sdk_resolution(tier);
    // The protocol per model, from the SDK docs: `media[]` for wan2.7-i2v, `img_url` for the other
    // i2v models; `resolution` + `ratio` for wan2.7-t2v, `size` for the legacy t2v models.
    let (media, legacy_t2v) = match m {
        "wan2.7-i2v" | "wan3.0-video" | "wan3.0-video-prime" => (true, false),
        "wan2.7-t2v" => (false, false),
        _ if !spec.text_to_video => (false, false),
        "wan2.6-t2v" | "wan2.5-t2v-preview" | "wan2.2-t2v-plus" => (false, true),
        other => panic!(
            "no SDK mapping for dashscope/{other}: add its protocol to tests/reference.rs case_for"
        ),
    };
    if legacy_t2v {
        sdk["size"] = json!(size);
    } else {
        sdk["resolution"] = json!(resolution);
    }
    let duration = *spec
        .durations
        .iter()
        .max()
        .unwrap_or(&spec.default_duration);
    args["duration_seconds"] = json!(duration);
    sdk["duration"] = json!(duration);
    if spec.negative_prompt {
        args["negative_prompt"] = json!(NEGATIVE);
        sdk["negative_prompt"] = json!(NEGATIVE);
    }
    if spec.seed.is_some() {
        args["seed"] = json!(42);
        sdk["seed"] = json!(42);
    }
    if spec.prompt_extend {
        args["prompt_extend"] = json!(false);
        sdk["prompt_extend"] = json!(false);
    }
    if spec.watermark {
        args["watermark"] = json!(true);
        sdk["watermark"] = json!(true);
    }
    if spec.shot_type {
        args["shot_type"] = json!("multi");
        sdk["shot_type"] = json!("multi");
    }
    if spec.aspect_ratios.contains(&AspectRatio::Portrait) {
        args["aspect_ratio"] = json!("9:16");
        sdk["ratio"] = json!("9:16");
    }
    // `audio` (flash only) goes through the SDK's **kwargs into `parameters`; a flash call asks
    // for silence and so takes no soundtrack.
    let audio_url = spec.audio_url && !spec.audio;
    if spec.audio {
        args["audio"] = json!(false);
        sdk["audio"] = json!(false);
    }
    let mut items = Vec::new();
    if let Some((tool, wire)) = image.filter(|_| !spec.text_to_video) {
        args["image"] = json!(tool);
        if media {
            items.push(json!({"type": "first_frame", "url": wire}));
        } else {
            sdk["img_url"] = json!(wire);
        }
    }
    if spec.end_image {
        args["end_image"] = json!(END_IMAGE);
        items.push(json!({"type": "last_frame", "url": END_IMAGE}));
    }
    if audio_url {
        args["audio_url"] = json!(AUDIO);
        if media {
            items.push(json!({"type": "driving_audio", "url": AUDIO}));
        } else {
            sdk["audio_url"] = json!(AUDIO);
        }
    }
    if media {
        sdk["media"] = json!(items);
    }
    Case { args, sdk }
}

fn tasks_path(p: &str) -> String {
    match p.strip_prefix("/api/v1/tasks/") {
        Some(rest) if !rest.contains('/') => "/api/v1/tasks/{id}".to_string(),
        _ => p.to_string(),
    }
}

/// The requests a fake got with `method`, in order.
fn with_method(fake: &FakeProvider, method: &str) -> Vec<Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == method)
        .collect()
}

/// Every DashScope model in the catalog: our create and the official SDK's `async_call` for the
/// same parameters are equal up to [`DASHSCOPE_ALLOWED`]; so are the first polls (`fetch`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashscope_sdk_and_adapter_send_the_same_requests_for_every_model() {
    let ours = FakeProvider::start(Kind::Dashscope).await;
    let theirs = FakeProvider::start(Kind::Dashscope).await;
    let ws = Workspace::new();
    let png = ws.png("frame.png", 320, 320);
    let data_uri = {
        use base64::Engine;
        let bytes = std::fs::read(&png).unwrap();
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    };
    let png = png.to_string_lossy().to_string();
    let specs: Vec<&ModelSpec> = catalog::models()
        .iter()
        .filter(|m| m.provider == ProviderId::Dashscope)
        .collect();
    assert!(
        specs.len() >= 10,
        "the catalog's DashScope models: {}",
        specs.len()
    );
    let (s, _) = connect(core_for(&ws, &ours, "dashscope")).await;
    let mut calls = Vec::new();
    let mut names = Vec::new();
    for spec in &specs {
        // One model (an i2v one on the first-frame protocol) sends a local file inline.
        let image = if spec.model == "wan2.6-i2v" {
            (png.as_str(), data_uri.as_str())
        } else {
            (IMAGE, IMAGE)
        };
        let case = case_for(spec, Some(image));
        let task = ok(&call(&s, "create_i2v_task", case.args.clone()).await);
        assert_eq!(task["status"], "succeeded", "{}: {task}", spec.model);
        calls.push(json!({"model": spec.model, "kwargs": case.sdk}));
        names.push(spec.model.clone());
    }
    s.cancel().await.unwrap();

    let mut env = env_for(&theirs, "dashscope");
    env.push((
        "DASHSCOPE_HTTP_BASE_URL".into(),
        theirs.base_url().to_string(),
    ));
    env.push(("REF_CALLS".into(), Value::Array(calls).to_string()));
    if !crate::support::run_interop_python("dashscope_reference.py", env).await {
        return;
    }

    let mut failures = Vec::new();
    for method in ["POST", "GET"] {
        let (a, b) = (with_method(&ours, method), with_method(&theirs, method));
        // Ours polls until done: compare each task's first poll with the SDK's one fetch.
        let a: Vec<Recorded> = if method == "GET" {
            let firsts: Vec<Recorded> = ours
                .tasks()
                .iter()
                .filter_map(|t| {
                    a.iter()
                        .find(|r| r.path.ends_with(&format!("/tasks/{}", t.id)))
                        .cloned()
                })
                .collect();
            firsts
        } else {
            a
        };
        assert_eq!(a.len(), names.len(), "our {method}s");
        assert_eq!(b.len(), names.len(), "the SDK's {method}s");
        for ((name, x), y) in names.iter().zip(&a).zip(&b) {
            let d = compare::differences(
                &Captured::of(x, tasks_path),
                &Captured::of(y, tasks_path),
                DASHSCOPE_ALLOWED,
            );
            failures.extend(d.into_iter().map(|d| format!("{name} {method}: {d}")));
        }
    }
    compare::assert_none(&failures, "official SDK", DASHSCOPE_ALLOWED);
}

/// One create endpoint of a fake: a body it takes, and changed copies it must refuse.
struct Strict {
    kind: Kind,
    path: &'static str,
    valid: Value,
    /// (what was changed, the body, a word the error must name)
    refused: Vec<(&'static str, Value, &'static str)>,
}

/// `body` with `value` set at the JSON pointer `at` (`None`: the field removed).
fn with(body: &Value, at: &str, value: Option<Value>) -> Value {
    let mut b = body.clone();
    let (parent, key) = at.rsplit_once('/').unwrap();
    let obj = b
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap();
    match value {
        Some(v) => obj.insert(key.to_string(), v),
        None => obj.remove(key),
    };
    b
}

/// `body` with the field at `from` moved to `to`.
fn moved(body: &Value, from: &str, to: &str) -> Value {
    let v = body.pointer(from).cloned().unwrap();
    with(&with(body, from, None), to, Some(v))
}

fn strict_cases() -> Vec<Strict> {
    let wanx = json!({"model": "Qubico/wanx", "task_type": "img2video-14b",
        "input": {"prompt": "p", "negative_prompt": "n", "image": IMAGE},
        "config": {"webhook_config": {"endpoint": "https://me.test/h", "secret": "s"}}});
    let wanx_refused = vec![
        (
            "unknown field in input",
            with(&wanx, "/input/seed", Some(json!(1))),
            "input.seed",
        ),
        (
            "input field at the root",
            moved(&wanx, "/input/negative_prompt", "/negative_prompt"),
            "negative_prompt",
        ),
        (
            "unknown field in webhook_config",
            with(
                &wanx,
                "/config/webhook_config/url",
                Some(json!("https://x.test")),
            ),
            "config.webhook_config.url",
        ),
        (
            "keyframe field on img2video-14b",
            with(&wanx, "/input/end_image", Some(json!(IMAGE))),
            "input.end_image",
        ),
    ];
    let wan26 = json!({"model": "Wan", "task_type": "wan26-img2video",
        "input": {"prompt": "p", "image": IMAGE, "negative_prompt": "n", "resolution": "720P", "duration": 5, "audio_url": AUDIO}});
    let dashscope = json!({"model": "wan2.6-t2v",
        "input": {"prompt": "p", "negative_prompt": "n", "extend_prompt": true, "function": "video-synthesis"},
        "parameters": {"size": "1280*720", "duration": 5, "seed": 1, "watermark": false}});
    let ds_i2v = json!({"model": "wan2.7-i2v",
        "input": {"prompt": "p", "media": [{"type": "first_frame", "url": IMAGE}]},
        "parameters": {"resolution": "720P", "duration": 5}});
    let novita26 = json!({"input": {"img_url": IMAGE, "prompt": "p", "negative_prompt": "n"},
        "parameters": {"resolution": "720P", "duration": 5, "seed": 1},
        "extra": {"webhook": {"url": "https://me.test/h"}}});
    let novita21 = json!({"model_name": "wan2.1-i2v", "image_url": IMAGE, "width": 1280, "height": 720, "prompt": "p", "seed": 1,
        "loras": [{"path": "https://x.test/l.safetensors", "scale": 0.5}]});
    let novita27 = json!({"image_url": IMAGE, "prompt": "p", "resolution": "720P", "duration": 5});
    let novita27t = json!({"prompt": "p", "size": "1280*720", "duration": 5});
    let apikley = json!({"model": "wan/2-2-a14b-image-to-video-turbo", "callBackUrl": "https://me.test/h",
        "input": {"image_url": IMAGE, "prompt": "p", "resolution": "720p", "seed": 1}});
    let fal27 = json!({"prompt": "p", "image_url": IMAGE, "resolution": "720p", "duration": 5});
    let fal25 = json!({"prompt": "p", "image_url": IMAGE, "resolution": "720p", "duration": "5"});
    vec![
        Strict {
            kind: Kind::Piapi,
            path: "/task",
            valid: wanx.clone(),
            refused: wanx_refused.clone(),
        },
        Strict {
            kind: Kind::Qubico,
            path: "/task",
            valid: wanx,
            refused: wanx_refused,
        },
        Strict {
            kind: Kind::Piapi,
            path: "/task",
            valid: wan26.clone(),
            refused: vec![
                (
                    "lower-case resolution",
                    with(&wan26, "/input/resolution", Some(json!("720p"))),
                    r#"input.resolution must be one of ["720P", "1080P"]"#,
                ),
                (
                    "aspect_ratio on img2video",
                    with(&wan26, "/input/aspect_ratio", Some(json!("16:9"))),
                    "input.aspect_ratio",
                ),
                (
                    "the WanX image field name",
                    moved(&wan26, "/input/image", "/input/img_url"),
                    "input.img_url",
                ),
                (
                    "unknown root field",
                    with(&wan26, "/seed", Some(json!(1))),
                    "seed",
                ),
            ],
        },
        Strict {
            kind: Kind::Dashscope,
            path: "/services/aigc/video-generation/video-synthesis",
            valid: dashscope.clone(),
            refused: vec![
                // Issue 21 item 1: where the adapter used to put it.
                (
                    "negative_prompt in parameters",
                    moved(
                        &dashscope,
                        "/input/negative_prompt",
                        "/parameters/negative_prompt",
                    ),
                    "parameters.negative_prompt",
                ),
                (
                    "seed in input",
                    moved(&dashscope, "/parameters/seed", "/input/seed"),
                    "input.seed",
                ),
                (
                    "resolution on a size model",
                    moved(&dashscope, "/parameters/size", "/parameters/resolution"),
                    "resolution",
                ),
                (
                    "unknown root field",
                    with(&dashscope, "/seed", Some(json!(1))),
                    "seed",
                ),
            ],
        },
        Strict {
            kind: Kind::Dashscope,
            path: "/services/aigc/video-generation/video-synthesis",
            valid: ds_i2v.clone(),
            refused: vec![
                (
                    "unknown media item field",
                    with(&ds_i2v, "/input/media/0/role", Some(json!("x"))),
                    "input.media[0].role",
                ),
                (
                    "img_url on wan2.7-i2v",
                    with(&ds_i2v, "/input/img_url", Some(json!(IMAGE))),
                    "input.img_url",
                ),
                (
                    "audio on a non-flash model",
                    with(&ds_i2v, "/parameters/audio", Some(json!(false))),
                    "parameters.audio",
                ),
            ],
        },
        Strict {
            kind: Kind::Novita,
            path: "/v3/async/wan2.6-i2v",
            valid: novita26.clone(),
            refused: vec![
                (
                    "negative_prompt in parameters",
                    moved(
                        &novita26,
                        "/input/negative_prompt",
                        "/parameters/negative_prompt",
                    ),
                    "parameters.negative_prompt",
                ),
                (
                    "resolution in input",
                    moved(&novita26, "/parameters/resolution", "/input/resolution"),
                    "input.resolution",
                ),
                (
                    "unknown webhook field",
                    with(&novita26, "/extra/webhook/secret", Some(json!("s"))),
                    "extra.webhook.secret",
                ),
            ],
        },
        Strict {
            kind: Kind::Novita,
            path: "/v3/async/wan-i2v",
            valid: novita21.clone(),
            refused: vec![
                (
                    "unknown field",
                    with(&novita21, "/duration", Some(json!(5))),
                    "duration",
                ),
                (
                    "unknown lora field",
                    with(&novita21, "/loras/0/name", Some(json!("x"))),
                    "loras[0].name",
                ),
            ],
        },
        Strict {
            kind: Kind::Novita,
            path: "/v3/async/wan2.7-i2v",
            valid: novita27.clone(),
            refused: vec![(
                "unknown field",
                with(&novita27, "/img_url", Some(json!(IMAGE))),
                "img_url",
            )],
        },
        Strict {
            kind: Kind::Novita,
            path: "/v3/async/wan2.7-t2v",
            valid: novita27t.clone(),
            refused: vec![(
                "ratio (DashScope's name)",
                with(&novita27t, "/ratio", Some(json!("16:9"))),
                "ratio",
            )],
        },
        Strict {
            kind: Kind::Apikley,
            path: "/api/v1/jobs/createTask",
            valid: apikley.clone(),
            refused: vec![
                (
                    "input field at the root",
                    moved(&apikley, "/input/prompt", "/prompt"),
                    "prompt",
                ),
                (
                    "unknown input field",
                    with(&apikley, "/input/duration", Some(json!(5))),
                    "input.duration",
                ),
            ],
        },
        Strict {
            kind: Kind::Fal,
            path: "/fal-ai/wan/v2.7/image-to-video",
            valid: fal27.clone(),
            refused: vec![
                (
                    "a field Wan 2.7 does not take",
                    with(&fal27, "/num_frames", Some(json!(81))),
                    "body.num_frames: Extra inputs are not permitted",
                ),
                (
                    "the input wrapped as in other APIs",
                    json!({"input": fal27.clone()}),
                    "body.input: Extra inputs are not permitted",
                ),
                (
                    "duration as a string on an integer field",
                    with(&fal27, "/duration", Some(json!("5"))),
                    "body.duration: duration must be an integer",
                ),
            ],
        },
        Strict {
            kind: Kind::Fal,
            path: "/fal-ai/wan-25-preview/image-to-video",
            valid: fal25.clone(),
            refused: vec![(
                "duration as an integer on a string enum",
                with(&fal25, "/duration", Some(json!(5))),
                "body.duration: duration must be a string",
            )],
        },
    ]
}

/// Replicate (issue 23): an unknown input field, and an input field at the root, are refused
/// with its 422 naming the property.
fn replicate_strict() -> Strict {
    let valid = json!({"input": {"image": IMAGE, "prompt": "p", "resolution": "720p"}});
    Strict {
        kind: Kind::Replicate,
        path: "/v1/models/wan-video/wan-2.5-i2v/predictions",
        refused: vec![
            (
                "unknown input field",
                with(&valid, "/input/num_frames", Some(json!(81))),
                "input: Additional property num_frames is not allowed",
            ),
            (
                "input field at the root",
                moved(&valid, "/input/resolution", "/resolution"),
                "(root): Additional property resolution is not allowed",
            ),
        ],
        valid,
    }
}

/// The provider's own validation error: HTTP status, and the body's error fields.
fn assert_validation_error(kind: Kind, status: u16, body: &Value, names: &str, what: &str) {
    let fal_message;
    let message = match kind {
        Kind::Piapi | Kind::Qubico => {
            assert_eq!(
                (status, body["code"].as_i64()),
                (400, Some(400)),
                "{what}: {body}"
            );
            &body["message"]
        }
        Kind::Novita => {
            assert_eq!(status, 400, "{what}: {body}");
            assert_eq!(body["reason"], "INVALID_REQUEST_BODY", "{what}: {body}");
            &body["message"]
        }
        Kind::Apikley => {
            // HTTP 200, the error in the body's `code` (contract 3.6).
            assert_eq!(
                (status, body["code"].as_i64()),
                (200, Some(422)),
                "{what}: {body}"
            );
            &body["msg"]
        }
        Kind::Dashscope => {
            assert_eq!(status, 400, "{what}: {body}");
            assert_eq!(body["code"], "InvalidParameter", "{what}: {body}");
            assert!(body["request_id"].is_string(), "{what}: {body}");
            &body["message"]
        }
        Kind::Replicate => {
            assert_eq!(status, 422, "{what}: {body}");
            assert_eq!(body["title"], "Input validation failed", "{what}: {body}");
            &body["detail"]
        }
        Kind::Fal => {
            // pydantic's `detail[]`: the field is in `loc`, the reason in `msg`.
            assert_eq!(status, 422, "{what}: {body}");
            let d = &body["detail"][0];
            let loc: Vec<String> = d["loc"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|p| p.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            fal_message = json!(format!(
                "{}: {}",
                loc.join("."),
                d["msg"].as_str().unwrap_or("")
            ));
            &fal_message
        }
    };
    let message = message.as_str().unwrap_or_default();
    // A bare path is an unknown field there; anything else is quoted as the message says it.
    let want = if names.contains(' ') {
        names.to_string()
    } else {
        format!("{names}: unknown field")
    };
    assert!(
        message.contains(&want),
        "{what}: the message says {want:?}: {message}"
    );
}

/// Issue 21: every fake refuses unknown fields and fields in the wrong object with a 400 (fal: 422) shaped
/// like that provider's validation error, and takes the same body without them.
#[tokio::test]
async fn strict_fakes_refuse_unknown_and_misplaced_fields() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    for case in strict_cases().into_iter().chain([replicate_strict()]) {
        let fake = FakeProvider::start(case.kind).await;
        let post = |body: &Value| {
            let mut r = http
                .post(format!("{}{}", fake.base_url(), case.path))
                .json(body)
                .header("x-dashscope-async", "enable");
            r = match case.kind {
                Kind::Piapi | Kind::Qubico => r.header("x-api-key", fake.api_key()),
                Kind::Fal => r.header("authorization", format!("Key {}", fake.api_key())),
                _ => r.bearer_auth(fake.api_key()),
            };
            async move {
                let resp = r.send().await.unwrap();
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.unwrap())
            }
        };
        let (status, body) = post(&case.valid).await;
        let ok_status = if case.kind == Kind::Apikley {
            body["code"].as_i64() == Some(200)
        } else if case.kind == Kind::Replicate {
            status == 201
        } else {
            status == 200
        };
        assert!(
            ok_status,
            "{:?} {}: the valid body: {status} {body}",
            case.kind, case.path
        );
        for (what, changed, names) in &case.refused {
            let (status, body) = post(changed).await;
            assert_validation_error(
                case.kind,
                status,
                &body,
                names,
                &format!("{:?} {}: {what}", case.kind, case.path),
            );
        }
        assert_eq!(fake.accepted_creates(), 1, "{:?} {}", case.kind, case.path);
    }
}
