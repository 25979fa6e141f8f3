//! fal.ai's queue API, strict (docs/notes/fal.md): `POST /{endpoint_id}` (`?fal_webhook=`) with
//! the model input as the body; the answer's `status_url`, `response_url` and `cancel_url` drop
//! the endpoint's subpath (`/fal-ai/wan/requests/{id}/status` for
//! `fal-ai/wan/v2.2-a14b/image-to-video`), as fal's do. Status answers `IN_QUEUE` (with
//! `queue_position`), `IN_PROGRESS`, `COMPLETED` (with `error` when the request failed); the
//! result is the model output (`video.url`) or the failure as a 422 `detail[]`. Cancel (PUT)
//! works only while queued. Storage: `POST /storage/upload/initiate?storage_type=gcs` then `PUT`
//! to the signed `upload_url` (which refuses a key). Callbacks are signed with a fixed Ed25519 key
//! served at `/.well-known/jwks.json`.
//!
//! Validation is per endpoint: an unknown field, or one of the wrong type, is a 422 with
//! `detail: [{loc: ["body", field], msg, type}]` (pydantic's shape); UNVERIFIED schemas (Wan 2.5,
//! 2.6, 3.0) are as docs/notes/fal.md records them.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use ring::signature::KeyPair;
use serde_json::{Value, json};
use sha2::Digest;

use super::check::{self, Obj};
use super::flow::{Accepted, Rejection};
use super::{Hook, Phase, TaskPlan, TaskRec};

/// The fake's signing seed (a test key, nothing secret).
const SEED: [u8; 32] = [7; 32];
/// The `x-fal-webhook-user-id` it sends.
pub const USER_ID: &str = "fal-user-test";

fn keypair() -> ring::signature::Ed25519KeyPair {
    // A fixed 32-byte seed is always a valid key.
    ring::signature::Ed25519KeyPair::from_seed_unchecked(&SEED).expect("fixed Ed25519 seed")
}

/// The JWKS fal publishes, with the fake's one key (base64url `x`).
pub fn jwks() -> Value {
    let public = keypair().public_key().as_ref().to_vec();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public);
    json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "fake-1", "use": "sig"}]})
}

/// The signature headers fal sends with `body` (signed now).
pub fn signed_headers(request_id: &str, body: &[u8]) -> Vec<(String, String)> {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .to_string();
    signed_headers_at(request_id, body, &ts)
}

pub fn signed_headers_at(request_id: &str, body: &[u8], timestamp: &str) -> Vec<(String, String)> {
    let digest = hex::encode(sha2::Sha256::digest(body));
    let message = format!("{request_id}\n{USER_ID}\n{timestamp}\n{digest}");
    let sig = hex::encode(keypair().sign(message.as_bytes()).as_ref());
    vec![
        ("x-fal-webhook-request-id".into(), request_id.into()),
        ("x-fal-webhook-user-id".into(), USER_ID.into()),
        ("x-fal-webhook-timestamp".into(), timestamp.into()),
        ("x-fal-webhook-signature".into(), sig),
    ]
}

fn unprocessable(loc: &str, msg: String) -> Rejection {
    // The body is built in `error_body` from the message; `reason` carries the field.
    Rejection::new(422, "value_error", format!("{loc}\u{1f}{msg}"))
}

/// fal's error bodies: 422 as pydantic `detail[]`, the rest as `{"detail": "..."}`.
pub fn error_body(code: u16, message: &str) -> Value {
    match (code, message.split_once('\u{1f}')) {
        (422, Some((loc, msg))) => json!({"detail": [{
            "loc": ["body", loc], "msg": msg, "type": "value_error"
        }]}),
        _ => json!({ "detail": message }),
    }
}

/// The owner/alias part of an endpoint id (what status URLs keep).
fn app_of(endpoint: &str) -> String {
    endpoint
        .trim_start_matches('/')
        .split('/')
        .take(2)
        .collect::<Vec<_>>()
        .join("/")
}

/// Field rules of one endpoint.
struct Schema {
    fields: &'static [&'static str],
    image: bool,
    resolutions: &'static [&'static str],
    /// `Some(true)`: integer `duration` in range; `Some(false)`: string enum; `None`: no duration.
    duration_int: Option<bool>,
    durations: &'static [&'static str],
    duration_range: (i64, i64),
}

fn schema(endpoint: &str) -> Option<Schema> {
    const WAN22: &[&str] = &[
        "prompt",
        "image_url",
        "negative_prompt",
        "resolution",
        "aspect_ratio",
        "num_frames",
        "frames_per_second",
        "seed",
    ];
    Some(match endpoint {
        "fal-ai/wan/v2.2-a14b/image-to-video" => Schema {
            fields: WAN22,
            image: true,
            resolutions: &["480p", "580p", "720p"],
            duration_int: None,
            durations: &[],
            duration_range: (0, 0),
        },
        "fal-ai/wan/v2.2-a14b/text-to-video" => Schema {
            fields: &[
                "prompt",
                "negative_prompt",
                "resolution",
                "aspect_ratio",
                "num_frames",
                "frames_per_second",
                "seed",
            ],
            image: false,
            resolutions: &["480p", "580p", "720p"],
            duration_int: None,
            durations: &[],
            duration_range: (0, 0),
        },
        "fal-ai/wan/v2.2-a14b/image-to-video/turbo" => Schema {
            fields: &[
                "prompt",
                "image_url",
                "resolution",
                "aspect_ratio",
                "enable_prompt_expansion",
                "seed",
            ],
            image: true,
            resolutions: &["480p", "580p", "720p"],
            duration_int: None,
            durations: &[],
            duration_range: (0, 0),
        },
        "fal-ai/wan-25-preview/image-to-video" => Schema {
            fields: &[
                "prompt",
                "image_url",
                "negative_prompt",
                "resolution",
                "duration",
                "seed",
            ],
            image: true,
            resolutions: &["480p", "720p", "1080p"],
            duration_int: Some(false),
            durations: &["5", "10"],
            duration_range: (0, 0),
        },
        "wan/v2.6/image-to-video" => Schema {
            fields: &[
                "prompt",
                "image_url",
                "negative_prompt",
                "resolution",
                "duration",
                "seed",
            ],
            image: true,
            resolutions: &["720p", "1080p"],
            duration_int: Some(false),
            durations: &["5", "10", "15"],
            duration_range: (0, 0),
        },
        "fal-ai/wan/v2.7/image-to-video" => Schema {
            fields: &[
                "prompt",
                "image_url",
                "end_image_url",
                "audio_url",
                "negative_prompt",
                "resolution",
                "duration",
                "enable_prompt_expansion",
                "seed",
            ],
            image: true,
            resolutions: &["720p", "1080p"],
            duration_int: Some(true),
            durations: &[],
            duration_range: (2, 15),
        },
        "alibaba/wan-3.0/image-to-video"
        | "alibaba/wan-3.0/text-to-video"
        | "alibaba/wan-3.0/reference-to-video" => Schema {
            fields: match endpoint {
                "alibaba/wan-3.0/image-to-video" => &[
                    "prompt",
                    "image_url",
                    "resolution",
                    "aspect_ratio",
                    "duration",
                    "audio",
                    "enable_prompt_expansion",
                    "seed",
                ],
                "alibaba/wan-3.0/text-to-video" => &[
                    "prompt",
                    "resolution",
                    "aspect_ratio",
                    "duration",
                    "audio",
                    "enable_prompt_expansion",
                    "seed",
                ],
                _ => &[
                    "prompt",
                    "reference_image_urls",
                    "reference_video_urls",
                    "resolution",
                    "aspect_ratio",
                    "duration",
                    "audio",
                    "enable_prompt_expansion",
                    "seed",
                ],
            },
            image: endpoint.ends_with("image-to-video"),
            resolutions: &["480p", "720p", "1080p"],
            duration_int: Some(true),
            durations: &[],
            duration_range: (2, 30),
        },
        _ => return None,
    })
}

fn url_list(o: &Obj, key: &str) -> Result<usize, Rejection> {
    match o.get(key) {
        None => Ok(0),
        Some(Value::Array(items)) => {
            for item in items {
                match item.as_str() {
                    Some(u) if check::is_http_url(u) => {}
                    _ => {
                        return Err(unprocessable(
                            key,
                            "each item must be an http(s) URL".into(),
                        ));
                    }
                }
            }
            Ok(items.len())
        }
        Some(_) => Err(unprocessable(key, "must be a list of URLs".into())),
    }
}

/// Checks a create against its endpoint's schema; `query` is the raw query string
/// (`fal_webhook=<url>`).
pub(super) fn validate(endpoint: &str, query: &str, body: &Value) -> Result<Accepted, Rejection> {
    let Some(s) = schema(endpoint) else {
        return Err(Rejection::new(
            404,
            "",
            format!("Application '{endpoint}' not found"),
        ));
    };
    fn bad(field: &str) -> impl Fn(String) -> Rejection + '_ {
        move |m: String| unprocessable(field, m)
    }
    let o = check::object(Some(body), "body").map_err(bad("body"))?;
    if let Some(key) = o.keys().find(|k| !s.fields.contains(&k.as_str())) {
        return Err(unprocessable(key, "Extra inputs are not permitted".into()));
    }
    check::req_str(o, "prompt", "prompt").map_err(bad("prompt"))?;
    if s.image {
        let url = check::req_str(o, "image_url", "image_url").map_err(bad("image_url"))?;
        if !check::is_http_url(url) {
            return Err(unprocessable("image_url", "must be an http(s) URL".into()));
        }
    }
    for key in ["end_image_url", "audio_url"] {
        let url = check::opt_str(o, key, key).map_err(bad(key))?;
        if url.is_some_and(|u| !check::is_http_url(u)) {
            return Err(unprocessable(key, "must be an http(s) URL".into()));
        }
    }
    check::opt_str(o, "negative_prompt", "negative_prompt").map_err(bad("negative_prompt"))?;
    check::opt_enum(o, "resolution", "resolution", s.resolutions).map_err(bad("resolution"))?;
    check::opt_enum(
        o,
        "aspect_ratio",
        "aspect_ratio",
        &["auto", "16:9", "9:16", "1:1", "4:3", "3:4"],
    )
    .map_err(bad("aspect_ratio"))?;
    check::opt_int(o, "num_frames", "num_frames", 17, 161).map_err(bad("num_frames"))?;
    check::opt_int(o, "frames_per_second", "frames_per_second", 4, 60)
        .map_err(bad("frames_per_second"))?;
    check::opt_int(o, "seed", "seed", 0, 2_147_483_647).map_err(bad("seed"))?;
    check::opt_bool(o, "audio", "audio").map_err(bad("audio"))?;
    check::opt_bool(o, "enable_prompt_expansion", "enable_prompt_expansion")
        .map_err(bad("enable_prompt_expansion"))?;
    match s.duration_int {
        Some(true) => {
            let (min, max) = s.duration_range;
            check::opt_int(o, "duration", "duration", min, max).map_err(bad("duration"))?;
        }
        Some(false) => {
            check::opt_enum(o, "duration", "duration", s.durations).map_err(bad("duration"))?;
        }
        None => {}
    }
    let images = url_list(o, "reference_image_urls")?;
    let videos = url_list(o, "reference_video_urls")?;
    if endpoint.ends_with("reference-to-video") && images + videos == 0 {
        return Err(unprocessable(
            "reference_image_urls",
            "at least one reference image or video is required".into(),
        ));
    }
    let hook = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("fal_webhook="))
        .map(|v| {
            url::form_urlencoded::parse(format!("u={v}").as_bytes())
                .next()
                .map(|(_, u)| u.to_string())
                .unwrap_or_default()
        })
        .filter(|u| !u.is_empty())
        .map(|url| Hook { url, secret: None });
    Ok(Accepted {
        hook,
        test_mode: None,
    })
}

/// The submit answer: the request id and fal's three URLs (subpath dropped).
pub(super) fn create_answer(task: &TaskRec, root: &str) -> Value {
    let base = format!("{root}/{}/requests/{}", app_of(&task.route_path), task.id);
    json!({
        "request_id": task.id,
        "gateway_request_id": task.id,
        "status": "IN_QUEUE",
        "queue_position": queue_position(task, 0),
        "response_url": base,
        "status_url": format!("{base}/status"),
        "cancel_url": format!("{base}/cancel"),
    })
}

pub(super) fn request_id(seq: u64) -> String {
    format!("7f3e0000-fa10-4000-8000-{seq:012}")
}

fn queue_position(task: &TaskRec, step: u32) -> u32 {
    match &task.plan {
        TaskPlan::Polls { pending, .. } => pending.saturating_sub(step),
        TaskPlan::Duration { .. } => 0,
    }
}

pub(super) fn status(phase: &Phase) -> &'static str {
    match phase {
        Phase::Queued { .. } => "IN_QUEUE",
        Phase::Running { .. } => "IN_PROGRESS",
        Phase::Succeeded | Phase::Failed(_) => "COMPLETED",
    }
}

/// The status answer for a task in `phase`.
pub(super) fn status_body(task: &TaskRec, phase: &Phase, root: &str) -> Value {
    let response_url = format!("{root}/{}/requests/{}", app_of(&task.route_path), task.id);
    match phase {
        Phase::Queued { step } => json!({
            "status": "IN_QUEUE", "queue_position": queue_position(task, *step),
            "response_url": response_url,
        }),
        Phase::Running { .. } => json!({
            "status": "IN_PROGRESS", "logs": null, "response_url": response_url,
        }),
        Phase::Succeeded => json!({
            "status": "COMPLETED", "logs": null, "response_url": response_url,
            "metrics": {"inference_time": 41.2},
        }),
        Phase::Failed(message) => json!({
            "status": "COMPLETED", "logs": null, "response_url": response_url,
            "metrics": {}, "error": message, "error_type": "generation_error",
        }),
    }
}

/// The result (`GET response_url`): the output, or the failure's 422.
pub(super) fn result(task: &TaskRec, phase: &Phase, root: &str) -> (u16, Value) {
    match phase {
        Phase::Succeeded => (
            200,
            json!({
                "video": {
                    "url": super::video_url(root, &task.id),
                    "content_type": "video/mp4",
                    "file_name": format!("{}.mp4", task.id),
                    "file_size": super::FakeProvider::video_bytes().len(),
                },
                "seed": 42,
                "prompt": task.body.get("prompt").cloned().unwrap_or(Value::Null),
            }),
        ),
        Phase::Failed(message) => (
            422,
            json!({"detail": [{"loc": ["body"], "msg": message, "type": "generation_error"}]}),
        ),
        Phase::Queued { .. } | Phase::Running { .. } => {
            (400, json!({"detail": "Request is still in progress"}))
        }
    }
}

/// The callback body fal posts when a request is done.
pub(super) fn hook_body(task: &TaskRec, phase: &Phase, root: &str) -> Value {
    let (code, payload) = result(task, phase, root);
    match phase {
        Phase::Succeeded => json!({
            "request_id": task.id, "gateway_request_id": task.id, "status": "OK", "payload": payload,
        }),
        _ => json!({
            "request_id": task.id, "gateway_request_id": task.id, "status": "ERROR",
            "error": format!("Invalid status code: {code}"), "payload": payload,
        }),
    }
}

/// A storage upload request `{file_name, content_type}`.
pub(super) fn parse_upload_init(body: &Value) -> Result<(String, String), Rejection> {
    fn bad(field: &str) -> impl Fn(String) -> Rejection + '_ {
        move |m: String| unprocessable(field, m)
    }
    let o = check::object(Some(body), "body").map_err(bad("body"))?;
    if let Some(key) = o
        .keys()
        .find(|k| !["file_name", "content_type"].contains(&k.as_str()))
    {
        return Err(unprocessable(key, "Extra inputs are not permitted".into()));
    }
    let name = check::req_str(o, "file_name", "file_name").map_err(bad("file_name"))?;
    let mime = check::req_str(o, "content_type", "content_type").map_err(bad("content_type"))?;
    if !["image/png", "image/jpeg", "image/webp", "image/bmp"].contains(&mime) {
        return Err(unprocessable(
            "content_type",
            format!("{mime} is not an image type"),
        ));
    }
    Ok((name.to_string(), mime.to_string()))
}
