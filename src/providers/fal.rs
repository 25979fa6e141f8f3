//! fal.ai: Wan models on fal's queue API. A create is `POST {queue}/{endpoint_id}` with the model
//! input as the body (`?fal_webhook=<url>` for a callback); the answer names `request_id`,
//! `status_url`, `response_url` and `cancel_url`, which are kept (as JSON in the provider task id)
//! and used as given, never rebuilt: fal drops the endpoint's subpath in them. A poll is
//! `GET status_url?logs=false` (`IN_QUEUE` with `queue_position`, `IN_PROGRESS`, `COMPLETED`),
//! then `GET response_url` for the model's output (`video.url`). Cancel is `PUT cancel_url`,
//! honoured only while the request is queued. Local images go to fal's storage first
//! (`POST {rest}/storage/upload/initiate?storage_type=gcs`, then `PUT` the bytes to the signed
//! `upload_url`; `file_url` is public to anyone holding it) and are cached by sha256. Callbacks
//! are signed with ED25519 over `request_id\nuser_id\ntimestamp\nhex(sha256(body))`, checked
//! against fal's JWKS (cached) within 300 s.
//!
//! Hosts: `https://queue.fal.run` (I2V_MCP_FAL_BASE_URL), `https://rest.fal.ai` and the JWKS at
//! `https://rest.alpha.fal.ai/.well-known/jwks.json`. A base URL other than the default (a proxy,
//! the test fake) serves all three: `{base}/storage/...` and `{base}/.well-known/jwks.json`.
//!
//! Docs: https://docs.fal.ai/model-apis/model-endpoints/queue,
//! https://docs.fal.ai/model-apis/model-endpoints/webhooks, the PyPI `fal-client` 1.0.3 source
//! (`fal_client/client.py`: `submit`, `_BaseRequestHandle`, `_upload_via_storage`). Prices: each
//! model's `https://fal.ai/models/<endpoint>/llms.txt`. Wire facts, what is first-hand and what is
//! not, and the error mapping: docs/notes/fal.md.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;

use super::http::{self, Api, Reply, Stage};
use super::{
    Acceptance, Auth, Build, CancelOutcome, Declaration, Provider, ProviderConfig, ProviderError,
    RateLimits, Snapshot, Submission, WebhookDecl,
};
use crate::catalog::spec::{ImageDelivery, ModelSpec, Price, References, Tier, range};
use crate::error::{Category, Error, snippet};
use crate::journal::{Journal, TaskRow};
use crate::media::{ImageInput, LocalImage, Reference};
use crate::model::{AspectRatio, ProviderId, Resolution, Status, now_ms};

const DEFAULT_QUEUE: &str = "https://queue.fal.run";
const DEFAULT_REST: &str = "https://rest.fal.ai";
/// [SECONDARY, several independent verifiers]: the docs page names the JWKS but the stored
/// copies cut off before the URL; see docs/notes/fal.md.
const DEFAULT_JWKS: &str = "https://rest.alpha.fal.ai/.well-known/jwks.json";
const UPLOAD_PATH: &str = "/storage/upload/initiate";
/// How long an uploaded file's URL is reused. fal states no lifetime for storage uploads
/// (UNKNOWN); a day is short enough not to depend on one.
const UPLOAD_CACHE_MS: i64 = 24 * 60 * 60 * 1000;
/// The signature window (docs and every verifier seen: 5 minutes either way).
const WEBHOOK_WINDOW_S: i64 = 300;
/// JWKS kept this long; a signature no cached key verifies refetches once the copy is older
/// than [`JWKS_REFRESH`] (key rotation).
const JWKS_TTL: Duration = Duration::from_secs(24 * 3600);
const JWKS_REFRESH: Duration = Duration::from_secs(60);
/// The note a queued task shows while fal holds it in its queue (cleared once it runs).
const QUEUE_NOTE: &str = "waiting in fal's queue";

pub static DECL: Declaration = Declaration {
    id: ProviderId::Fal,
    name: "fal.ai",
    key_env: Some("FAL_KEY"),
    default_base_url: Some(DEFAULT_QUEUE),
    auth: Auth::Scheme("Key"),
    // fal publishes a concurrency limit (new accounts run 2 requests at once and queue the
    // rest), not a create rate: no client-side limit; its 429s are honoured.
    rate_limits: RateLimits::UNLIMITED,
    models,
    loras: Vec::new,
    lora_note: None,
    check: super::no_check,
    preflight: super::no_preflight,
    cancels: true,
    // Callbacks carry `request_id`; ours also name our task and secret in the URL.
    webhook: Some(WebhookDecl {
        task_id_at: "/request_id",
        secret_header: None,
    }),
    same_upstream: &[ProviderId::Fal],
    poll_interval: None,
    keyless_offer: None,
    build: |b: &Build<'_>| {
        std::sync::Arc::new(Client::new(b.provider, b.http.clone(), b.journal.clone()))
    },
};

/// Which input schema an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// Wan 2.2 A14B: `num_frames` at 16 fps stands for the duration.
    Wan22,
    /// Wan 2.2 A14B turbo: one fixed length.
    Wan22Turbo,
    /// Wan 2.5 preview and 2.6: `duration` as a string enum ("5", "10"[, "15"]) [UNVERIFIED].
    WanStringDuration,
    /// Wan 2.7: integer `duration`, end frame, driving audio.
    Wan27,
    /// Wan 3.0: one model, three endpoints (text, image, reference).
    Wan30,
}

/// Our model name, fal's endpoint id(s) and the schema family.
struct Endpoint {
    model: &'static str,
    family: Family,
    /// The endpoint for an image (or the only one).
    image: &'static str,
    /// The endpoint for the prompt alone, if the model has one.
    text: Option<&'static str>,
    /// The endpoint for references, if the model has one.
    reference: Option<&'static str>,
}

const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        model: "wan2.2-i2v-a14b",
        family: Family::Wan22,
        image: "fal-ai/wan/v2.2-a14b/image-to-video",
        text: None,
        reference: None,
    },
    Endpoint {
        model: "wan2.2-i2v-a14b-turbo",
        family: Family::Wan22Turbo,
        image: "fal-ai/wan/v2.2-a14b/image-to-video/turbo",
        text: None,
        reference: None,
    },
    Endpoint {
        model: "wan2.2-t2v-a14b",
        family: Family::Wan22,
        image: "fal-ai/wan/v2.2-a14b/text-to-video",
        text: Some("fal-ai/wan/v2.2-a14b/text-to-video"),
        reference: None,
    },
    Endpoint {
        model: "wan2.5-i2v",
        family: Family::WanStringDuration,
        image: "fal-ai/wan-25-preview/image-to-video",
        text: None,
        reference: None,
    },
    Endpoint {
        model: "wan2.6-i2v",
        family: Family::WanStringDuration,
        image: "wan/v2.6/image-to-video",
        text: None,
        reference: None,
    },
    Endpoint {
        model: "wan2.7-i2v",
        family: Family::Wan27,
        image: "fal-ai/wan/v2.7/image-to-video",
        text: None,
        reference: None,
    },
    Endpoint {
        model: "wan3.0",
        family: Family::Wan30,
        image: "alibaba/wan-3.0/image-to-video",
        text: Some("alibaba/wan-3.0/text-to-video"),
        reference: Some("alibaba/wan-3.0/reference-to-video"),
    },
];

fn endpoint(model: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.model == model)
}

const NOTE: &str = "fal.ai: local images are uploaded to fal's storage, whose files are public by default (anyone with the URL can read them; pass an https URL to avoid it); cancel works only while the request waits in fal's queue; new accounts run 2 requests at once and queue the rest (the queue position shows in the task's note).";

fn per_second(source: &str, tiers: &[(Resolution, f64)]) -> Price {
    Price {
        by_resolution: tiers
            .iter()
            .map(|(resolution, usd)| Tier {
                resolution: *resolution,
                audio: None,
                usd_per_second: *usd,
            })
            .collect(),
        source: source.into(),
        ..Price::default()
    }
}

/// Everything fal models share: uploads, seeds, explicit defaults, cancel, the note.
fn base(model: &str) -> ModelSpec {
    ModelSpec {
        image_delivery: ImageDelivery::Upload,
        seed: range(0.0, 2_147_483_647.0),
        explicit_defaults: true,
        cancel: true,
        note: Some(NOTE.into()),
        ..ModelSpec::base(ProviderId::Fal, model)
    }
}

fn wan22_durations() -> Vec<u32> {
    (2..=10).collect()
}

fn models() -> Vec<ModelSpec> {
    let wan22 = |model: &str| ModelSpec {
        resolutions: vec![Resolution::P480, Resolution::P580, Resolution::P720],
        default_resolution: Resolution::P720,
        durations: wan22_durations(),
        negative_prompt: true,
        ..base(model)
    };
    vec![
        ModelSpec {
            description: "Wan 2.2 A14B on fal: 2-10 s (frames at 16 fps), 480p/580p/720p, local images uploaded to fal's public storage.".into(),
            aspect_ratios: AspectRatio::ALL.to_vec(),
            price: per_second(
                "https://fal.ai/models/fal-ai/wan/v2.2-a14b/image-to-video/llms.txt (video seconds at 16 fps)",
                &[(Resolution::P480, 0.04), (Resolution::P580, 0.06), (Resolution::P720, 0.08)],
            ),
            ..wan22("wan2.2-i2v-a14b")
        },
        ModelSpec {
            description: "Wan 2.2 A14B turbo on fal: one ~5 s clip, 480p/580p/720p, priced per video.".into(),
            resolutions: vec![Resolution::P480, Resolution::P580, Resolution::P720],
            default_resolution: Resolution::P720,
            aspect_ratios: AspectRatio::ALL.to_vec(),
            prompt_extend: true,
            // $0.05 / $0.075 / $0.10 per video; the one length is 5 s, so per second = /5.
            price: per_second(
                "https://fal.ai/models/fal-ai/wan/v2.2-a14b/image-to-video/turbo/llms.txt ($0.05/$0.075/$0.10 per 5 s video)",
                &[(Resolution::P480, 0.01), (Resolution::P580, 0.015), (Resolution::P720, 0.02)],
            ),
            ..base("wan2.2-i2v-a14b-turbo")
        },
        ModelSpec {
            description: "Wan 2.2 A14B text-to-video on fal: 2-10 s, 480p/580p/720p.".into(),
            aspect_ratios: vec![AspectRatio::Landscape, AspectRatio::Portrait, AspectRatio::Square],
            price: Price::unpublished(
                "not confirmed on fal.ai (https://fal.ai/models/fal-ai/wan/v2.2-a14b/text-to-video); set [pricing.\"fal/wan2.2-t2v-a14b\"]",
            ),
            ..wan22("wan2.2-t2v-a14b").text_only()
        },
        ModelSpec {
            description: "Wan 2.5 preview on fal: 5 or 10 s, 480p/720p/1080p.".into(),
            resolutions: vec![Resolution::P480, Resolution::P720, Resolution::P1080],
            default_resolution: Resolution::P720,
            durations: vec![5, 10],
            negative_prompt: true,
            price: Price::unpublished(
                "not confirmed first-hand (others quote $0.05/$0.10/$0.15 per s at 480p/720p/1080p for https://fal.ai/models/fal-ai/wan-25-preview/image-to-video); set [pricing.\"fal/wan2.5-i2v\"]",
            ),
            ..base("wan2.5-i2v")
        },
        ModelSpec {
            description: "Wan 2.6 on fal: 5, 10 or 15 s, 720p/1080p, multi-shot.".into(),
            resolutions: vec![Resolution::P720, Resolution::P1080],
            default_resolution: Resolution::P720,
            durations: vec![5, 10, 15],
            negative_prompt: true,
            image_max_bytes: 25 * 1024 * 1024,
            price: Price::unpublished(
                "not confirmed on fal.ai (https://fal.ai/models/wan/v2.6/image-to-video); set [pricing.\"fal/wan2.6-i2v\"]",
            ),
            ..base("wan2.6-i2v")
        },
        ModelSpec {
            description: "Wan 2.7 on fal: 2-15 s, 720p/1080p, optional last frame (end_image) and driving audio (audio_url).".into(),
            resolutions: vec![Resolution::P720, Resolution::P1080],
            default_resolution: Resolution::P720,
            durations: (2..=15).collect(),
            prompt_max: Some(5000),
            negative_prompt: true,
            negative_prompt_max: Some(500),
            prompt_extend: true,
            end_image: true,
            audio_url: true,
            image_max_bytes: 20 * 1024 * 1024,
            price: per_second(
                "https://fal.ai/models/fal-ai/wan/v2.7/image-to-video/llms.txt",
                &[(Resolution::P720, 0.10), (Resolution::P1080, 0.15)],
            ),
            ..base("wan2.7-i2v")
        },
        ModelSpec {
            description: "Wan 3.0 on fal: image-to-video, text-to-video (no image) or reference-to-video (references: images and videos); 2-30 s, 480p-1080p, audio on request.".into(),
            image_optional: true,
            resolutions: vec![Resolution::P480, Resolution::P720, Resolution::P1080],
            default_resolution: Resolution::P720,
            aspect_ratios: AspectRatio::ALL.to_vec(),
            durations: (2..=30).collect(),
            prompt_extend: true,
            audio: true,
            references: Some(References {
                images: 5,
                videos: 3,
                audios: 0,
                video_seconds: 30,
                audio_seconds: 0,
                video_formats: &["mp4", "mov"],
                audio_formats: &[],
            }),
            watch_at_least: Some(Duration::from_secs(3 * 3600)),
            price: Price::unpublished(
                "not confirmed first-hand (others quote $0.05/$0.10/$0.20 per s at 480p/720p/1080p for https://fal.ai/models/alibaba/wan-3.0/image-to-video); set [pricing.\"fal/wan3.0\"]",
            ),
            ..base("wan3.0")
        },
    ]
}

impl Provider for Client {
    fn submit<'a>(&'a self, s: &'a Submission<'a>) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(Client::submit(self, s))
    }
    fn poll<'a>(&'a self, row: &'a TaskRow) -> BoxFuture<'a, Result<Snapshot, ProviderError>> {
        Box::pin(Client::poll(self, row))
    }
    fn cancel<'a>(
        &'a self,
        row: &'a TaskRow,
    ) -> BoxFuture<'a, Result<CancelOutcome, ProviderError>> {
        Box::pin(Client::cancel(self, super::provider_task_id(row)))
    }
    fn verify_webhook<'a>(
        &'a self,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(Client::verify_webhook(self, headers, body))
    }
}

fn key_env() -> &'static str {
    DECL.key_env.unwrap_or_default()
}

// ---- wire types (private to this provider) ----

/// The model input, sent as the whole body. Fields a model does not take stay unset and are
/// never sent (fal answers 422 for a field it does not know on strict endpoints).
#[derive(Debug, Default, Serialize)]
pub(crate) struct Input {
    prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_image_url: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reference_image_urls: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reference_video_urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolution: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aspect_ratio: Option<&'static str>,
    /// An integer (2.7, 3.0) or a string enum (2.5, 2.6).
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_frames: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frames_per_second: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_prompt_expansion: Option<bool>,
    /// Omitted for a random seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
}

/// What a submit answers (fal-client `submit`: it reads these four).
#[derive(Debug, Deserialize)]
struct Submitted {
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    status_url: Option<String>,
    #[serde(default)]
    response_url: Option<String>,
    #[serde(default)]
    cancel_url: Option<String>,
}

/// The provider task id: fal's request id and the three URLs it gave, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Handle {
    pub request_id: String,
    pub status_url: String,
    pub response_url: String,
    pub cancel_url: String,
}

#[derive(Debug, Deserialize)]
struct QueueStatus {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    queue_position: Option<u64>,
    /// On `COMPLETED` when the request failed (fal-client `Completed.error`).
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    error_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Output {
    #[serde(default)]
    video: Option<VideoFile>,
}

#[derive(Debug, Deserialize)]
struct VideoFile {
    #[serde(default)]
    url: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct UploadInit {
    file_name: String,
    content_type: &'static str,
}

#[derive(Debug, Deserialize)]
struct UploadTarget {
    #[serde(default)]
    upload_url: Option<String>,
    #[serde(default)]
    file_url: Option<String>,
}

/// fal's error body: `detail` is a string or a list of `{loc, msg, type}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    detail: Option<Value>,
    #[serde(default)]
    error_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Jwks {
    #[serde(default)]
    keys: Vec<Jwk>,
}

#[derive(Debug, Deserialize)]
struct Jwk {
    #[serde(default)]
    x: Option<String>,
}

// ---- pure translation ----

/// Which endpoint a submission goes to: references, the prompt alone, or an image.
pub(crate) fn endpoint_for(s: &Submission<'_>) -> Result<&'static str, Error> {
    let e = endpoint(&s.spec.model)
        .ok_or_else(|| Error::unsupported(format!("{} is not a fal model", s.spec.key())))?;
    if !s.references.is_empty() {
        return e
            .reference
            .ok_or_else(|| Error::unsupported(format!("{} takes no references", s.spec.key())));
    }
    match (s.image, e.text) {
        (None, Some(text)) => Ok(text),
        (None, None) => Err(s.image_required().err().unwrap_or_else(|| {
            Error::invalid_input(format!("image is missing: {} needs one", s.spec.key()))
        })),
        (Some(_), _) if s.spec.text_to_video => Err(Error::invalid_input(format!(
            "{} makes a video from the prompt alone: drop the image",
            s.spec.key()
        ))),
        (Some(_), _) => Ok(e.image),
    }
}

/// The body, with every image already a URL fal can read (`image`, `end_image`, and the
/// reference images in order; reference videos are URLs already).
pub(crate) fn create_body(
    s: &Submission<'_>,
    image: Option<String>,
    end_image: Option<String>,
    reference_images: Vec<String>,
) -> Result<Input, Error> {
    let req = s.req;
    let spec = s.spec;
    let family = endpoint(&spec.model)
        .map(|e| e.family)
        .ok_or_else(|| Error::unsupported(format!("{} is not a fal model", spec.key())))?;
    let duration = req.duration_seconds.unwrap_or(spec.default_duration);
    let resolution = req.resolution.unwrap_or(spec.default_resolution);
    let aspect = req
        .aspect_ratio
        .filter(|a| *a != AspectRatio::Auto || family != Family::Wan30);
    let mut input = Input {
        prompt: req.prompt.clone(),
        image_url: image,
        negative_prompt: req.negative_prompt.clone().filter(|_| spec.negative_prompt),
        resolution: Some(resolution.as_str()),
        aspect_ratio: aspect.map(|a| a.as_str()),
        seed: req.seed,
        enable_prompt_expansion: req.prompt_extend.filter(|_| spec.prompt_extend),
        ..Input::default()
    };
    match family {
        Family::Wan22 => {
            // 16 frames a second, plus the first: 5 s = 81 frames (fal's default), 10 s = 161.
            input.num_frames = Some(16 * duration + 1);
            input.frames_per_second = Some(16);
        }
        Family::Wan22Turbo => {}
        Family::WanStringDuration => input.duration = Some(Value::from(duration.to_string())),
        Family::Wan27 => {
            input.duration = Some(Value::from(duration));
            input.end_image_url = end_image;
            input.audio_url = req.audio_url.clone();
        }
        Family::Wan30 => {
            input.duration = Some(Value::from(duration));
            // Explicit: never billed for sound by omission.
            input.audio = Some(req.audio.unwrap_or(false));
            input.reference_image_urls = reference_images;
            input.reference_video_urls = s
                .references
                .iter()
                .filter_map(|r| match r {
                    Reference::Video(u) => Some(u.clone()),
                    _ => None,
                })
                .collect();
        }
    }
    Ok(input)
}

pub(crate) fn upload_init(img: &LocalImage) -> UploadInit {
    UploadInit {
        file_name: img.file_name(),
        content_type: img.format.mime(),
    }
}

/// `detail` as one line: a string as is; a list as `loc: msg` items joined by "; ".
fn detail_text(detail: &Value) -> String {
    match detail {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let loc = item
                    .get("loc")
                    .and_then(Value::as_array)
                    .map(|l| {
                        l.iter()
                            .map(|p| match p {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .collect::<Vec<_>>()
                            .join(".")
                    })
                    .unwrap_or_default();
                let msg = item
                    .get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                match (loc.is_empty(), msg.is_empty()) {
                    (false, false) => format!("{loc}: {msg}"),
                    (true, false) => msg,
                    _ => item.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The category a refusal means (docs/notes/fal.md, "Error mapping").
fn category(status: u16, text: &str, error_type: Option<&str>) -> Category {
    let lower = text.to_ascii_lowercase();
    match status {
        401 => Category::Auth,
        // fal locks an account whose balance ran out with a 403 ("User is locked. Reason:
        // Exhausted balance").
        402 => Category::Credits,
        403 if lower.contains("balance") || lower.contains("locked") => Category::Credits,
        403 => Category::Auth,
        404 => Category::NotFound,
        429 => Category::RateLimited,
        400 | 405..=499 => match error_type {
            Some(t) if t.contains("content_policy") => Category::GenerationFailed,
            _ => Category::InvalidInput,
        },
        _ => Category::ProviderUnavailable,
    }
}

fn next_step(category: Category, stage: Stage) -> Option<String> {
    if let Some(s) = http::next_step(category, key_env()) {
        return Some(s);
    }
    match (category, stage) {
        (Category::InvalidInput, _) => {
            Some("fix the request as the message says, then create again".into())
        }
        (Category::NotFound, Stage::Create) => {
            Some("check the model (list_models) and I2V_MCP_FAL_BASE_URL".into())
        }
        (Category::NotFound, _) => {
            Some("fal does not know this request (it may have expired): create a new one".into())
        }
        (Category::GenerationFailed, _) => {
            Some("adjust the prompt or image and create a new task".into())
        }
        _ => None,
    }
}

/// A non-2xx answer as a `ProviderError`. On a create, only a 5xx leaves open that fal took it;
/// on an upload nothing does. `X-Fal-Retryable` is kept as a hint in the message, never as a
/// reason to send a create again.
fn refusal(reply: &Reply, stage: Stage) -> ProviderError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(&reply.body).ok();
    let header = |name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let error_type = parsed
        .as_ref()
        .and_then(|b| b.error_type.clone())
        .or_else(|| header("x-fal-error-type"));
    let text = parsed
        .as_ref()
        .and_then(|b| b.detail.as_ref())
        .map(detail_text)
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| snippet(&reply.body));
    let category = category(reply.status, &text, error_type.as_deref());
    let mut message = format!(
        "{}: fal answered HTTP {}: {text}",
        stage.as_str(),
        reply.status
    );
    if let Some(t) = &error_type {
        message.push_str(&format!(" (error type {t})"));
    }
    let retryable = header("x-fal-retryable").map(|v| v.eq_ignore_ascii_case("true"));
    if retryable == Some(true) && stage == Stage::Create && reply.status >= 500 {
        message.push_str(" (fal marks it retryable, but the request may exist: not resent)");
    }
    let mut error = Error::new(category, message);
    error.next_step = next_step(category, stage);
    // An upload never creates a task: even its 5xx is a sure refusal of the create.
    let maybe_taken = reply.status >= 500 && stage.acceptance(true) == Acceptance::Unknown;
    http::settle(error, maybe_taken, reply)
}

/// The handle from a submit answer; a 2xx without the four fields may still have queued a
/// request (`submit_unknown`).
pub(crate) fn parse_submit(reply: &Reply) -> Result<Handle, ProviderError> {
    if !reply.is_success() {
        return Err(refusal(reply, Stage::Create));
    }
    let s: Submitted = http::parse(reply, Stage::Create, "fal")?;
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    match (
        nonempty(s.request_id),
        nonempty(s.status_url),
        nonempty(s.response_url),
        nonempty(s.cancel_url),
    ) {
        (Some(request_id), Some(status_url), Some(response_url), Some(cancel_url)) => Ok(Handle {
            request_id,
            status_url,
            response_url,
            cancel_url,
        }),
        _ => Err(http::unreadable(
            Stage::Create,
            format!(
                "create: the fal answer lacks request_id, status_url, response_url or cancel_url; it began: {}",
                snippet(&reply.body)
            ),
        )),
    }
}

impl Handle {
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.request_id.clone())
    }

    pub(crate) fn decode(ptid: &str) -> Result<Handle, ProviderError> {
        serde_json::from_str(ptid).map_err(|e| {
            ProviderError::rejected(Error::internal(format!(
                "the journaled fal request '{}' is not a fal handle ({e})",
                snippet(ptid.as_bytes())
            )))
        })
    }
}

/// What a status answer says; `Ok(None)` for `COMPLETED` without an error (the result is read
/// next).
pub(crate) fn parse_status(reply: &Reply) -> Result<Option<Snapshot>, ProviderError> {
    if !reply.is_success() {
        return Err(refusal(reply, Stage::Poll));
    }
    let q: QueueStatus = http::parse(reply, Stage::Poll, "fal status")?;
    let raw = q.status.clone().unwrap_or_default();
    let mut snap = match raw.as_str() {
        "IN_QUEUE" => Snapshot::new(Status::Queued, raw.clone()),
        "IN_PROGRESS" => Snapshot::new(Status::Running, raw.clone()),
        "COMPLETED" => match q.error.as_ref().filter(|e| !e.is_null()) {
            None => return Ok(None),
            Some(e) => {
                let mut snap = Snapshot::new(Status::Failed, raw.clone());
                let reason = match e {
                    Value::String(s) => s.clone(),
                    other => detail_text(other),
                };
                let code = q
                    .error_type
                    .as_deref()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default();
                snap.error = Some(http::failed_because("fal", &code, Some(reason)));
                snap
            }
        },
        other => Snapshot::new(super::unknown_status(ProviderId::Fal, other), raw.clone()),
    };
    if snap.status == Status::Queued {
        snap.raw_status = match q.queue_position {
            Some(p) => format!("IN_QUEUE (position {p})"),
            None => raw,
        };
    }
    Ok(Some(snap))
}

/// The queue position a queued snapshot carries, for the note.
fn queue_position(snap: &Snapshot) -> Option<&str> {
    snap.raw_status
        .strip_prefix("IN_QUEUE (position ")
        .and_then(|r| r.strip_suffix(')'))
}

/// A result answer: the model's output with `video.url`, or the request's failure.
pub(crate) fn parse_result(reply: &Reply) -> Result<Snapshot, ProviderError> {
    if !reply.is_success() {
        // The request ran and failed: a 4xx is that request's own answer (a 422 from the
        // model's validation), final. A 5xx may pass: polling goes on.
        let pe = refusal(reply, Stage::Poll);
        if reply.status >= 500 || reply.status == 429 {
            return Err(pe);
        }
        let mut snap = Snapshot::new(Status::Failed, format!("COMPLETED (HTTP {})", reply.status));
        let mut error = pe.error;
        if error.category == Category::InvalidInput || error.category == Category::NotFound {
            error.message = format!("fal generation failed: {}", error.message);
        }
        snap.error = Some(error);
        return Ok(snap);
    }
    let out: Output = http::parse(reply, Stage::Poll, "fal result")?;
    let mut snap = Snapshot::new(Status::Succeeded, "COMPLETED");
    snap.require_video(out.video.and_then(|v| v.url), || {
        http::no_video(
            "fal reported the request completed without video.url",
            "create a new task; if it happens again, contact fal support",
        )
    });
    Ok(snap)
}

/// A cancel answer: 202 `CANCELLATION_REQUESTED` while queued; anything else says why not.
pub(crate) fn parse_cancel(reply: &Reply) -> Result<CancelOutcome, ProviderError> {
    let status = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|v| v.get("status").and_then(Value::as_str).map(String::from));
    if reply.is_success() && status.as_deref() != Some("ALREADY_COMPLETED") {
        return Ok(CancelOutcome::Cancelled);
    }
    if reply.status >= 500 || reply.status == 429 || reply.status == 401 || reply.status == 403 {
        return Err(refusal(reply, Stage::Cancel));
    }
    let said = status.unwrap_or_else(|| format!("HTTP {}", reply.status));
    Ok(CancelOutcome::NotCancelled(format!(
        "fal refused the cancel ({said}): fal cancels a request only while it waits in the queue; once running it completes and is billed"
    )))
}

/// The message a callback's signature covers.
pub(crate) fn signed_message(
    request_id: &str,
    user_id: &str,
    timestamp: &str,
    body: &[u8],
) -> Vec<u8> {
    let digest = hex::encode(sha2::Sha256::digest(body));
    format!("{request_id}\n{user_id}\n{timestamp}\n{digest}").into_bytes()
}

/// The Ed25519 public keys of a JWKS (`keys[].x`, base64url, padded or not).
fn jwks_keys(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use base64::Engine;
    let jwks: Jwks =
        serde_json::from_slice(body).map_err(|e| format!("the JWKS does not parse ({e})"))?;
    let keys: Vec<Vec<u8>> = jwks
        .keys
        .iter()
        .filter_map(|k| k.x.as_deref())
        .filter_map(|x| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(x.trim_end_matches('='))
                .ok()
        })
        .filter(|k| k.len() == 32)
        .collect();
    if keys.is_empty() {
        return Err("the JWKS holds no Ed25519 key".into());
    }
    Ok(keys)
}

fn auth_error(why: &str) -> Error {
    Error::new(Category::Auth, format!("fal webhook refused: {why}"))
}

/// Check the signature headers against the body and `keys`, at `now` (unix seconds).
pub(crate) fn check_signature(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[Vec<u8>],
    now: i64,
) -> Result<(), Error> {
    let get = |name: &str| {
        super::callback_header(headers, name)
            .ok_or_else(|| auth_error(&format!("header {name} is missing")))
    };
    let request_id = get("x-fal-webhook-request-id")?;
    let user_id = get("x-fal-webhook-user-id")?;
    let timestamp = get("x-fal-webhook-timestamp")?;
    let signature = get("x-fal-webhook-signature")?;
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| auth_error("x-fal-webhook-timestamp is not a number"))?;
    if (now - ts).abs() > WEBHOOK_WINDOW_S {
        return Err(auth_error(&format!(
            "timestamp {ts} is more than {WEBHOOK_WINDOW_S} s from now ({now})"
        )));
    }
    let sig =
        hex::decode(signature).map_err(|_| auth_error("x-fal-webhook-signature is not hex"))?;
    let message = signed_message(request_id, user_id, timestamp, body);
    let verified = keys.iter().any(|k| {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, k)
            .verify(&message, &sig)
            .is_ok()
    });
    if verified {
        Ok(())
    } else {
        Err(auth_error(
            "the signature does not verify against fal's keys",
        ))
    }
}

pub struct Client {
    queue: Api,
    rest: Api,
    jwks_url: String,
    http: http::HttpClient,
    journal: Journal,
    timeout: Duration,
    jwks: Mutex<Option<(Instant, Vec<Vec<u8>>)>>,
}

/// Whether `url` has the origin (scheme, host, port) of `base`: the only URLs our key is sent to.
fn same_origin(url: &str, base: &str) -> bool {
    match (url::Url::parse(url), url::Url::parse(base)) {
        (Ok(u), Ok(b)) => u.origin() == b.origin(),
        _ => false,
    }
}

impl Client {
    pub fn new(cfg: &ProviderConfig, http: http::HttpClient, journal: Journal) -> Self {
        let base = cfg.base_url.trim_end_matches('/').to_string();
        let (rest, jwks_url) = if base == DEFAULT_QUEUE {
            (DEFAULT_REST.to_string(), DEFAULT_JWKS.to_string())
        } else {
            (base.clone(), format!("{base}/.well-known/jwks.json"))
        };
        let rest_cfg = ProviderConfig {
            base_url: rest,
            ..cfg.clone()
        };
        Client {
            queue: Api::new(ProviderId::Fal, cfg, http.clone()),
            rest: Api::new(ProviderId::Fal, &rest_cfg, http.clone()),
            jwks_url,
            http,
            journal,
            timeout: cfg.timeout,
            jwks: Mutex::new(None),
        }
    }

    /// A URL fal handed back, refused unless it is on the queue host (our key goes with it).
    fn trusted<'u>(&self, url: &'u str, stage: Stage) -> Result<&'u str, ProviderError> {
        if same_origin(url, self.queue.base_url()) {
            Ok(url)
        } else {
            Err(ProviderError::rejected(
                Error::new(
                    Category::ProviderUnavailable,
                    format!(
                        "{}: fal handed back {url}, which is not on {}; not sending the key there",
                        stage.as_str(),
                        self.queue.base_url()
                    ),
                )
                .with_next_step("check I2V_MCP_FAL_BASE_URL; the task stays as it is"),
            ))
        }
    }

    /// A URL fal can read for a local image: cached while the upload is fresh, else uploaded.
    /// Every failure is `Rejected`: nothing has been created or paid yet.
    async fn image_url(&self, img: &LocalImage) -> Result<String, ProviderError> {
        let now = now_ms();
        match self
            .journal
            .upload_get(ProviderId::Fal, &img.sha256, now)
            .await
        {
            Ok(Some(url)) => return Ok(url),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "upload cache unreadable; uploading again"),
        }
        let body = serde_json::to_vec(&upload_init(img)).map_err(|e| {
            ProviderError::rejected(Error::internal(format!("cannot encode the upload: {e}")))
        })?;
        let reply = self
            .rest
            .execute_with(
                Method::POST,
                UPLOAD_PATH,
                &[("storage_type", "gcs")],
                &[("accept", "application/json")],
                Some(body),
                Stage::Upload,
            )
            .await?;
        if !reply.is_success() {
            return Err(refusal(&reply, Stage::Upload));
        }
        let target: UploadTarget = http::parse(&reply, Stage::Upload, "fal storage")?;
        let (Some(upload_url), Some(file_url)) = (target.upload_url, target.file_url) else {
            return Err(http::unreadable(
                Stage::Upload,
                format!(
                    "image upload: the fal answer lacks upload_url or file_url; it began: {}",
                    snippet(&reply.body)
                ),
            ));
        };
        // A signed URL: no key goes with it.
        let put = self
            .http
            .request(Method::PUT, &upload_url)
            .header(reqwest::header::CONTENT_TYPE, img.format.mime())
            .body(img.bytes.clone());
        let reply = http::send(put, self.timeout, "image upload")
            .await
            .map_err(|mut pe| {
                pe.acceptance = Acceptance::Rejected;
                pe
            })?;
        if !reply.is_success() {
            return Err(refusal(&reply, Stage::Upload));
        }
        if let Err(e) = self
            .journal
            .upload_put(
                ProviderId::Fal,
                &img.sha256,
                &file_url,
                now + UPLOAD_CACHE_MS,
            )
            .await
        {
            tracing::warn!(error = %e, "cannot cache the upload; the next task uploads again");
        }
        Ok(file_url)
    }

    async fn readable(&self, img: Option<&ImageInput>) -> Result<Option<String>, ProviderError> {
        Ok(match img {
            None => None,
            Some(ImageInput::Url(u)) => Some(u.clone()),
            Some(ImageInput::Local(l)) => Some(self.image_url(l).await?),
        })
    }

    pub async fn submit(&self, s: &Submission<'_>) -> Result<String, ProviderError> {
        let endpoint = endpoint_for(s).map_err(ProviderError::rejected)?;
        let image = self.readable(s.image).await?;
        let end_image = self.readable(s.end_image).await?;
        let mut reference_images = Vec::new();
        for r in s.references {
            let Reference::Image(img) = r else { continue };
            if let Some(url) = self.readable(Some(img)).await? {
                reference_images.push(url);
            }
        }
        let input =
            create_body(s, image, end_image, reference_images).map_err(ProviderError::rejected)?;
        let body = serde_json::to_vec(&input).map_err(|e| {
            ProviderError::rejected(Error::internal(format!("cannot encode the fal input: {e}")))
        })?;
        let hook = s.webhook.map(|w| w.url.clone());
        let query: Vec<(&str, &str)> = hook.iter().map(|u| ("fal_webhook", u.as_str())).collect();
        let reply = self
            .queue
            .execute_with(
                Method::POST,
                &format!("/{endpoint}"),
                &query,
                &[],
                Some(body),
                Stage::Create,
            )
            .await?;
        Ok(parse_submit(&reply)?.encode())
    }

    pub async fn poll(&self, row: &TaskRow) -> Result<Snapshot, ProviderError> {
        let h = Handle::decode(super::provider_task_id(row))?;
        let url = self.trusted(&h.status_url, Stage::Poll)?;
        let reply = self
            .queue
            .execute_at(
                Method::GET,
                url,
                &[("logs", "false")],
                &[],
                None,
                Stage::Poll,
            )
            .await?;
        let snap = match parse_status(&reply)? {
            Some(snap) => snap,
            None => {
                let url = self.trusted(&h.response_url, Stage::Poll)?;
                let reply = self
                    .queue
                    .execute_at(Method::GET, url, &[], &[], None, Stage::Poll)
                    .await?;
                parse_result(&reply)?
            }
        };
        self.queue_note(row, &snap).await;
        Ok(snap)
    }

    /// While queued, the task's note says where it stands in fal's queue; cleared once it runs.
    async fn queue_note(&self, row: &TaskRow, snap: &Snapshot) {
        let ours = row
            .note
            .as_deref()
            .is_some_and(|n| n.starts_with(QUEUE_NOTE));
        let note = match (snap.status, queue_position(snap)) {
            (Status::Queued, Some(p)) => Some(format!(
                "{QUEUE_NOTE}: position {p} (fal runs a few requests per account at once and queues the rest)"
            )),
            _ if ours => None,
            _ => return,
        };
        if note == row.note {
            return;
        }
        if let Err(e) = self
            .journal
            .set_note(&row.id, note.as_deref(), now_ms())
            .await
        {
            tracing::warn!(task = %row.id, error = %e, "cannot write the queue note");
        }
    }

    pub async fn cancel(&self, ptid: &str) -> Result<CancelOutcome, ProviderError> {
        let h = Handle::decode(ptid)?;
        let url = self.trusted(&h.cancel_url, Stage::Cancel)?;
        let reply = self
            .queue
            .execute_at(Method::PUT, url, &[], &[], None, Stage::Cancel)
            .await?;
        parse_cancel(&reply)
    }

    /// fal's keys: cached, fetched when absent, stale (24 h), or when `refresh` and the copy is
    /// older than a minute.
    async fn keys(&self, refresh: bool) -> Result<Vec<Vec<u8>>, Error> {
        let cached = self
            .jwks
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|(at, k)| (*at, k.clone())));
        if let Some((at, keys)) = &cached {
            let age = at.elapsed();
            if age < JWKS_TTL && !(refresh && age > JWKS_REFRESH) {
                return Ok(keys.clone());
            }
        }
        let unavailable = |why: String| {
            Error::new(
                Category::ProviderUnavailable,
                format!(
                    "fal webhook: cannot read fal's keys at {}: {why}",
                    self.jwks_url
                ),
            )
            .with_next_step("fal retries the callback; polling goes on meanwhile")
        };
        let fetched = match http::send(
            self.http.request(Method::GET, &self.jwks_url),
            self.timeout,
            "fal JWKS",
        )
        .await
        {
            Err(pe) => Err(unavailable(pe.error.message)),
            Ok(reply) if !reply.is_success() => Err(unavailable(format!("HTTP {}", reply.status))),
            Ok(reply) => jwks_keys(&reply.body).map_err(unavailable),
        };
        match (fetched, cached) {
            (Ok(keys), _) => {
                if let Ok(mut g) = self.jwks.lock() {
                    *g = Some((Instant::now(), keys.clone()));
                }
                Ok(keys)
            }
            // fal's keys cannot be read now: the copy we have keeps serving (keys rotate
            // rarely), and the next call tries again.
            (Err(e), Some((_, keys))) => {
                tracing::warn!(reason = %e.message, "fal webhook: serving the cached keys");
                Ok(keys)
            }
            (Err(e), None) => Err(e),
        }
    }

    pub async fn verify_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Error> {
        let now = now_ms() / 1000;
        let keys = self.keys(false).await?;
        match check_signature(headers, body, &keys, now) {
            Ok(()) => Ok(()),
            Err(e) if e.message.contains("does not verify") => {
                // Keys may have rotated: one fresh copy, then the verdict.
                let fresh = self.keys(true).await?;
                if fresh == keys {
                    return Err(e);
                }
                check_signature(headers, body, &fresh, now)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
