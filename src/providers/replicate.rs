//! Replicate (predictions API): the `wan-video` models, created with
//! `POST /v1/models/wan-video/{name}/predictions` and read back with `GET /v1/predictions/{id}`;
//! `POST /v1/predictions/{id}/cancel` cancels. Every create carries `Cancel-After` (an abandoned
//! prediction stops billing) and never `Prefer: wait`. Local images under Replicate's data-URI
//! limit go inline; larger ones are uploaded through the Files API (`POST /v1/files`, multipart,
//! at most 100 MB), and the upload is cached by sha256 in the journal. Outputs are deleted after
//! one hour, so the watcher downloads at once and a late download says why it failed. Webhooks
//! are signed (Standard Webhooks / Svix style) and checked in [`Client::verify`].
//!
//! Docs: https://replicate.com/docs/reference/http (predictions, files, webhooks),
//! https://replicate.com/docs/topics/predictions/input-files (data URIs "less than 1MB", Files
//! API "up to 100MB"), https://replicate.com/docs/topics/webhooks/verify-webhook, the official
//! client `replicate` 1.0.7 on PyPI (replicate/webhook.py, replicate/file.py,
//! replicate/prediction.py), model pages
//! https://replicate.com/wan-video/wan-2.5-i2v/versions/b4ebd9b0f1d222dca88ccb225e8e282c3d9311cbd19845f37cff6e4c30117d21/api
//! and
//! https://replicate.com/wan-video/wan-2.2-i2v-a14b/versions/9c49fe41d6b2a0e62199dc96bee4a9dd3565a4c563f9b80998358f14322c34f6/api.
//! Pricing: not captured from replicate.com (per-model billing pages were not in reach), so every
//! price is unset. Wire facts, what is UNVERIFIED, and the error table: `docs/notes/replicate.md`.

use std::sync::Arc;

use futures::future::BoxFuture;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::http::{self, Api, Reply, Stage};
use super::{
    Auth, Build, CancelOutcome, Declaration, Provider, ProviderConfig, ProviderError, RateLimits,
    Snapshot, Submission, WebhookDecl,
};
use crate::catalog::spec::{ImageDelivery, ModelSpec, Price, range};
use crate::error::{Category, Error, snippet};
use crate::journal::{Journal, TaskRow};
use crate::media::{ImageInput, LocalImage};
use crate::model::{AspectRatio, ProviderId, Resolution, Status, now_ms};

/// Every model here belongs to this owner on Replicate.
const OWNER: &str = "wan-video";
const WAN25_I2V: &str = "wan-2.5-i2v";
const WAN22_I2V_A14B: &str = "wan-2.2-i2v-a14b";
const WAN25_T2V: &str = "wan-2.5-t2v";
const FILES_PATH: &str = "/v1/files";
const SECRET_PATH: &str = "/v1/webhooks/default/secret";
/// Replicate cancels a prediction still running this long after the create (our choice: longer
/// than any Wan run we have seen queued and rendered, short enough that a prediction nobody
/// watches any more stops billing).
const CANCEL_AFTER: &str = "1h";
/// "Option 3: Data URI ... only recommended if the file is less than 1MB" (input-files page).
const DATA_URI_MAX_BYTES: usize = 1_000_000;
/// "This will work for files up to 100MB" (input-files page).
const FILES_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Outputs of API predictions are deleted after one hour (HTTP API reference, "Data retention").
const OUTPUT_TTL_MS: i64 = 60 * 60 * 1000;
/// An uploaded file is reused while its `expires_at` is this far away; without one, for an hour.
const UPLOAD_MARGIN_MS: i64 = 10 * 60 * 1000;
/// The verify-webhook page's replay window (and the Standard Webhooks default): 5 minutes.
const WEBHOOK_TOLERANCE_SECS: i64 = 300;

pub static DECL: Declaration = Declaration {
    id: ProviderId::Replicate,
    name: "Replicate",
    key_env: Some("REPLICATE_API_TOKEN"),
    default_base_url: Some("https://api.replicate.com"),
    auth: Auth::Bearer,
    // HTTP API reference, "Rate limits": 600 requests per minute to create predictions.
    rate_limits: RateLimits {
        per_minute: Some(600),
        ..RateLimits::UNLIMITED
    },
    models: || vec![wan25_i2v_spec(), wan22_i2v_a14b_spec(), wan25_t2v_spec()],
    loras: Vec::new,
    lora_note: None,
    check: super::no_check,
    preflight: super::no_preflight,
    cancels: true,
    // The webhook body is the prediction itself; its signature is checked by `verify_webhook`,
    // the per-task secret travels as `token` in the URL we gave.
    webhook: Some(WebhookDecl {
        task_id_at: "/id",
        secret_header: None,
    }),
    same_upstream: &[ProviderId::Replicate],
    poll_interval: None,
    keyless_offer: None,
    build: |b: &Build<'_>| Arc::new(Client::new(b.provider, b.http.clone(), b.journal.clone())),
};

fn key_env() -> &'static str {
    DECL.key_env.unwrap_or_default()
}

const LOCAL_NOTE: &str = "Local images under 1 MB are sent inline as a data URI; larger ones are uploaded to Replicate's Files API (private to the account, served to its models; reused while the file lives).";

/// Confirmed on replicate.com (the version page in the header): image, prompt, negative_prompt,
/// resolution 480p/720p/1080p (default 720p), duration (default 5), seed, audio,
/// enable_prompt_expansion (default true); output one URI.
fn wan25_i2v_spec() -> ModelSpec {
    ModelSpec {
        description: "Wan 2.5 image-to-video on Replicate: 5 or 10 s, 480p/720p/1080p, optional soundtrack (audio_url), prompt expansion.".into(),
        image_delivery: ImageDelivery::Upload,
        image_max_bytes: FILES_MAX_BYTES,
        resolutions: vec![Resolution::P480, Resolution::P720, Resolution::P1080],
        default_resolution: Resolution::P720,
        // The page names the field and its default (5); 5 and 10 are the Wan 2.5 durations
        // elsewhere (UNVERIFIED on Replicate).
        durations: vec![5, 10],
        negative_prompt: true,
        seed: range(0.0, 2_147_483_647.0),
        audio_url: true,
        prompt_extend: true,
        cancel: true,
        price: Price::unpublished(
            "not captured from replicate.com (billed per second of output; see docs/notes/replicate.md); set [pricing.\"replicate/wan-2.5-i2v\"]",
        ),
        note: Some(format!("Aspect follows the image. Soundtrack: wav/mp3, 3-30 s, at most 15 MB. {LOCAL_NOTE}")),
        ..ModelSpec::base(ProviderId::Replicate, WAN25_I2V)
    }
}

/// Confirmed on replicate.com: prompt, image, num_frames 81-100 (default 81), resolution
/// 480p/720p (default 480p), frames_per_second 5-24 (default 16), sample_steps 1-50 (default 30),
/// sample_shift 1-20 (default 5), seed; output one URI. 81 frames at 16 fps: about 5 s.
fn wan22_i2v_a14b_spec() -> ModelSpec {
    ModelSpec {
        description: "Wan 2.2 A14B image-to-video on Replicate: about 5 s (81 frames at 16 fps), 480p/720p, steps and shift adjustable.".into(),
        image_delivery: ImageDelivery::Upload,
        image_max_bytes: FILES_MAX_BYTES,
        resolutions: vec![Resolution::P480, Resolution::P720],
        default_resolution: Resolution::P480,
        seed: range(0.0, 2_147_483_647.0),
        steps: range(1.0, 50.0),
        flow_shift: range(1.0, 20.0),
        cancel: true,
        price: Price::unpublished(
            "not captured from replicate.com (the page says it is billed by video duration at 16 fps); set [pricing.\"replicate/wan-2.2-i2v-a14b\"]",
        ),
        note: Some(format!("Aspect follows the image (832x480 is 16:9, 480x832 9:16). flow_shift is sent as sample_shift, steps as sample_steps. {LOCAL_NOTE}")),
        ..ModelSpec::base(ProviderId::Replicate, WAN22_I2V_A14B)
    }
}

/// UNVERIFIED on replicate.com itself: the input fields come from a copy of the model's schema
/// (app.scenario.com model_wan-2-5-t2v: prompt, negative_prompt, size "1280*720", duration,
/// audio, enable_prompt_expansion, seed). The fake holds the same list.
fn wan25_t2v_spec() -> ModelSpec {
    ModelSpec {
        description: "Wan 2.5 text-to-video on Replicate: 5 or 10 s, 480p/720p/1080p, 16:9 or 9:16, optional soundtrack (audio_url).".into(),
        resolutions: vec![Resolution::P480, Resolution::P720, Resolution::P1080],
        default_resolution: Resolution::P720,
        aspect_ratios: vec![AspectRatio::Auto, AspectRatio::Landscape, AspectRatio::Portrait],
        durations: vec![5, 10],
        negative_prompt: true,
        seed: range(0.0, 2_147_483_647.0),
        audio_url: true,
        prompt_extend: true,
        cancel: true,
        price: Price::unpublished(
            "not captured from replicate.com; set [pricing.\"replicate/wan-2.5-t2v\"]",
        ),
        note: Some("Input schema from a secondary copy (UNVERIFIED on replicate.com); auto is 16:9.".into()),
        ..ModelSpec::base(ProviderId::Replicate, WAN25_T2V)
    }
    .text_only()
}

// ---- wire types (private to this provider) ----

/// `POST /v1/models/{owner}/{name}/predictions`: the model's input, and where to call back.
#[derive(Debug, Serialize)]
pub(crate) struct CreateBody {
    input: Input,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_events_filter: Option<[&'static str; 1]>,
}

/// The input of each model, serialised as itself.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Input {
    Wan25I2v(Wan25I2v),
    Wan22I2v(Wan22I2v),
    Wan25T2v(Wan25T2v),
}

#[derive(Debug, Serialize)]
pub(crate) struct Wan25I2v {
    image: String,
    prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_prompt: Option<String>,
    /// Always sent, so the tier we quote is the one asked for.
    resolution: &'static str,
    /// Always sent.
    duration: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_prompt_expansion: Option<bool>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Wan22I2v {
    image: String,
    prompt: String,
    /// Always sent (the page's default is 480p).
    resolution: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample_steps: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample_shift: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Wan25T2v {
    prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_prompt: Option<String>,
    /// Always sent: width*height of the tier and aspect.
    size: &'static str,
    duration: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_prompt_expansion: Option<bool>,
}

/// A prediction (create answer, poll answer, cancel answer and webhook body). Everything
/// optional: a missing field never fails a poll.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Prediction {
    id: Option<String>,
    status: String,
    output: Option<Value>,
    error: Option<Value>,
    completed_at: Option<String>,
    data_removed: bool,
}

/// Replicate's problem body: `{"title", "detail", "status", "invalid_fields"?}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorBody {
    title: Option<String>,
    detail: Option<Value>,
    invalid_fields: Vec<InvalidField>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InvalidField {
    field: Option<String>,
    description: Option<String>,
}

/// `POST /v1/files` answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileAnswer {
    urls: FileUrls,
    expires_at: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileUrls {
    get: Option<String>,
}

/// `GET /v1/webhooks/default/secret` answer: `{"key": "whsec_..."}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SecretAnswer {
    key: String,
}

// ---- pure translation ----

fn lower_resolution(
    res: Resolution,
    model: &str,
    allowed: &[Resolution],
) -> Result<&'static str, Error> {
    if !allowed.contains(&res) {
        let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
        return Err(Error::unsupported(format!(
            "resolution {} is not available on replicate/{model}: use {}",
            res.as_str(),
            names.join(" or ")
        )));
    }
    Ok(res.as_str())
}

/// The `size` of a Wan 2.5 text-to-video tier and aspect (auto: 16:9).
fn t2v_size(resolution: Resolution, aspect: AspectRatio) -> &'static str {
    let portrait = aspect == AspectRatio::Portrait;
    match (resolution, portrait) {
        (Resolution::P1080, false) => "1920*1080",
        (Resolution::P1080, true) => "1080*1920",
        (Resolution::P480 | Resolution::P580, false) => "832*480",
        (Resolution::P480 | Resolution::P580, true) => "480*832",
        (_, false) => "1280*720",
        (_, true) => "720*1280",
    }
}

/// The path and body of a create, with the image already a URL or data URI (`image`).
pub(crate) fn create_request(
    s: &Submission<'_>,
    image: Option<String>,
) -> Result<(String, CreateBody), Error> {
    let req = s.req;
    let spec = s.spec;
    let res = req.resolution.unwrap_or(spec.default_resolution);
    let duration = req.duration_seconds.unwrap_or(spec.default_duration);
    let need_image = || {
        image.clone().ok_or_else(|| {
            Error::invalid_input(format!(
                "image is missing: replicate/{} makes a video from an image",
                spec.model
            ))
        })
    };
    let input = match spec.model.as_str() {
        WAN25_I2V => Input::Wan25I2v(Wan25I2v {
            image: need_image()?,
            prompt: req.prompt.clone(),
            negative_prompt: req.negative_prompt.clone(),
            resolution: lower_resolution(res, WAN25_I2V, &spec.resolutions)?,
            duration,
            seed: req.seed,
            audio: req.audio_url.clone(),
            enable_prompt_expansion: req.prompt_extend,
        }),
        WAN22_I2V_A14B => Input::Wan22I2v(Wan22I2v {
            image: need_image()?,
            prompt: req.prompt.clone(),
            resolution: lower_resolution(res, WAN22_I2V_A14B, &spec.resolutions)?,
            sample_steps: req.steps,
            sample_shift: req.flow_shift,
            seed: req.seed,
        }),
        WAN25_T2V => Input::Wan25T2v(Wan25T2v {
            prompt: req.prompt.clone(),
            negative_prompt: req.negative_prompt.clone(),
            size: t2v_size(
                lower_resolution(res, WAN25_T2V, &spec.resolutions).map(|_| res)?,
                req.aspect_ratio.unwrap_or(AspectRatio::Auto),
            ),
            duration,
            seed: req.seed,
            audio: req.audio_url.clone(),
            enable_prompt_expansion: req.prompt_extend,
        }),
        other => {
            return Err(Error::unsupported(format!(
                "replicate has no model '{other}': use {WAN25_I2V}, {WAN22_I2V_A14B} or {WAN25_T2V}"
            )));
        }
    };
    let path = format!("/v1/models/{OWNER}/{}/predictions", spec.model);
    Ok((
        path,
        CreateBody {
            input,
            webhook: s.webhook.map(|w| w.url.clone()),
            // Only the final state: our watcher polls for progress itself.
            webhook_events_filter: s.webhook.map(|_| ["completed"]),
        },
    ))
}

/// The multipart body of a Files API upload (`content` = the file, as the official client
/// sends it) and its content type.
pub(crate) fn upload_body(img: &LocalImage) -> (String, Vec<u8>) {
    let boundary = format!("i2v-mcp-{}", &img.sha256[..32.min(img.sha256.len())]);
    let mut body = Vec::with_capacity(img.bytes.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
            img.file_name(),
            img.format.mime()
        )
        .as_bytes(),
    );
    body.extend_from_slice(&img.bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Unix ms of an RFC 3339 time, if it reads.
fn unix_ms(t: Option<&str>) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(t?.trim())
        .ok()
        .map(|d| d.timestamp_millis())
}

/// The URL of an upload and how long to reuse it.
fn parse_upload(reply: &Reply, now: i64) -> Result<(String, i64), ProviderError> {
    if !reply.is_success() {
        return Err(failure(reply, Stage::Upload));
    }
    let answer: FileAnswer = http::parse(reply, Stage::Upload, "Replicate Files API")?;
    let url = answer
        .urls
        .get
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            http::unreadable(
                Stage::Upload,
                format!(
                    "image upload: the Replicate Files API answer has no urls.get; it began: {}",
                    snippet(&reply.body)
                ),
            )
        })?;
    let until = unix_ms(answer.expires_at.as_deref())
        .map(|e| e - UPLOAD_MARGIN_MS)
        .unwrap_or(now + OUTPUT_TTL_MS);
    Ok((url, until))
}

/// The prediction id of a 2xx create answer; anything else is `submit_unknown` (it may exist).
pub(crate) fn parse_create(reply: &Reply) -> Result<String, ProviderError> {
    let p: Prediction = http::parse(reply, Stage::Create, "Replicate create")?;
    p.id.filter(|id| !id.trim().is_empty()).ok_or_else(|| {
        http::unreadable(
            Stage::Create,
            format!(
                "create: the Replicate answer has no prediction id; it began: {}",
                snippet(&reply.body)
            ),
        )
    })
}

/// The first URL in a prediction's output: one URI string (these models), or a list of them.
fn output_url(output: Option<&Value>) -> Option<String> {
    match output? {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items.iter().find_map(|v| v.as_str().map(String::from)),
        Value::Object(o) => o.get("video").and_then(Value::as_str).map(String::from),
        _ => None,
    }
    .filter(|u| !u.trim().is_empty())
}

fn error_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A 2xx prediction body as a snapshot. `now` dates the output expiry when the answer has no
/// `completed_at`.
pub(crate) fn parse_task(reply: &Reply, now: i64) -> Result<Snapshot, ProviderError> {
    let p: Prediction = http::parse(reply, Stage::Poll, "Replicate prediction")?;
    let status = match p.status.as_str() {
        "starting" => Status::Queued,
        "processing" => Status::Running,
        "succeeded" => Status::Succeeded,
        "failed" | "aborted" => Status::Failed,
        "canceled" => Status::Cancelled,
        other => super::unknown_status(ProviderId::Replicate, other),
    };
    let mut snap = Snapshot::new(status, p.status.clone());
    match p.status.as_str() {
        "succeeded" => {
            if p.data_removed {
                snap.status = Status::Failed;
                snap.error = Some(
                    Error::new(
                        Category::GenerationFailed,
                        "Replicate deleted this prediction's output (outputs are kept for one hour after it ends): the video can no longer be fetched",
                    )
                    .with_next_step("create the task again; results are downloaded at once while the server runs"),
                );
                return Ok(snap);
            }
            let ended = unix_ms(p.completed_at.as_deref()).unwrap_or(now);
            snap.url_expires_at = Some(ended + OUTPUT_TTL_MS);
            snap.require_video(output_url(p.output.as_ref()), || {
                http::no_video(
                    "Replicate reported success without an output URL",
                    "create a new task; if it happens again, try another model",
                )
            });
        }
        "failed" => {
            snap.error = Some(http::failed_because(
                "Replicate",
                "",
                error_text(p.error.as_ref()),
            ));
        }
        "aborted" => {
            let why = error_text(p.error.as_ref()).unwrap_or_else(|| "no reason given".into());
            snap.error = Some(
                Error::new(
                    Category::GenerationFailed,
                    format!("Replicate aborted the prediction before it started ({why}): its Cancel-After deadline passed while it waited; aborted predictions of public models are not charged"),
                )
                .with_next_step("create the task again, later if Replicate is busy"),
            );
        }
        _ => {}
    }
    Ok(snap)
}

/// Seconds named in a 429 `detail`: "Request was throttled. Your rate limit resets in ~30s."
/// (the rate-limits page), or "... Expected available in 7 seconds." (older answers).
fn wait_in(detail: &str) -> Option<u64> {
    let after = detail.rsplit_once(" in ")?.1.trim_start_matches(['~', ' ']);
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    let unit = after[digits.len()..].trim_start();
    Some(if unit.starts_with('m') && !unit.starts_with("ms") {
        n * 60
    } else {
        n
    })
}

/// A non-2xx answer as a `ProviderError`, by status (Replicate's bodies carry no code of their
/// own): 401/403 auth, 402 credits, 404 not found, 409/422 invalid input, 429 rate limited
/// (`Retry-After`, else the wait its `detail` names), 5xx unavailable (a create may have been
/// taken). See `docs/notes/replicate.md` for the table.
fn failure(reply: &Reply, stage: Stage) -> ProviderError {
    let body: ErrorBody = serde_json::from_slice(&reply.body).unwrap_or_default();
    let detail = error_text(body.detail.as_ref()).unwrap_or_default();
    let mut parts: Vec<String> = Vec::new();
    if let Some(t) = body.title.filter(|t| !t.trim().is_empty()) {
        parts.push(t);
    }
    if !detail.trim().is_empty() {
        parts.push(detail.trim().to_string());
    }
    for f in &body.invalid_fields {
        parts.push(format!(
            "{}: {}",
            f.field.as_deref().unwrap_or("input"),
            f.description.as_deref().unwrap_or("invalid")
        ));
    }
    if parts.is_empty() {
        parts.push(snippet(&reply.body));
    }
    let category = http::category_for_status(reply.status);
    let message = format!(
        "{}: Replicate answered HTTP {}: {}",
        stage.as_str(),
        reply.status,
        parts.join("; ")
    );
    let mut pe = http::failure(reply, category, message, key_env());
    if stage.acceptance(true) == super::Acceptance::Rejected {
        // An upload never creates a prediction, whatever its answer.
        pe.acceptance = super::Acceptance::Rejected;
    }
    if category == Category::InvalidInput {
        pe.error.next_step = Some("fix the request as the message says, then create again".into());
    }
    if category == Category::Credits {
        pe.error.next_step =
            Some("add credit at https://replicate.com/account/billing, then create again".into());
    }
    if category == Category::NotFound {
        pe.error.next_step = Some(
            "Replicate does not know this (another account's token, or deleted): create a new task"
                .into(),
        );
    }
    if category == Category::RateLimited && pe.retry_after.is_none() {
        pe.retry_after = wait_in(&detail).map(std::time::Duration::from_secs);
    }
    pe
}

/// HMAC-SHA256 (RFC 2104) over the concatenation of `msg` with `key` (ring's, which rustls
/// already builds).
fn hmac_sha256(key: &[u8], msg: &[&[u8]]) -> [u8; 32] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    for m in msg {
        ctx.update(m);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// The HMAC key of a `whsec_<base64>` signing secret.
fn secret_key(secret: &str) -> Result<Vec<u8>, Error> {
    use base64::Engine;
    let b64 = secret.trim().strip_prefix("whsec_").ok_or_else(|| {
        Error::new(
            Category::ProviderUnavailable,
            "the Replicate webhook signing secret does not start with whsec_",
        )
    })?;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| {
            Error::new(
                Category::ProviderUnavailable,
                format!("the Replicate webhook signing secret is not base64 ({e})"),
            )
        })
}

fn unauthenticated(why: &str) -> Error {
    Error::new(Category::Auth, format!("Replicate webhook refused: {why}"))
}

/// Checks a webhook's signature: `webhook-signature` holds space-separated `v1,<base64>`
/// entries, one of which must equal HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")
/// (compared in constant time), and the timestamp must be within 5 minutes of `now_secs`.
pub(crate) fn verify_signature(
    key: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<(), Error> {
    use base64::Engine;
    let header = |name: &str| {
        super::callback_header(headers, name)
            .ok_or_else(|| unauthenticated(&format!("no {name} header")))
    };
    let id = header("webhook-id")?;
    let ts = header("webhook-timestamp")?;
    let sigs = header("webhook-signature")?;
    let when: i64 = ts
        .parse()
        .map_err(|_| unauthenticated("webhook-timestamp is not a number of seconds"))?;
    if (now_secs - when).abs() > WEBHOOK_TOLERANCE_SECS {
        return Err(unauthenticated(
            "webhook-timestamp is more than 5 minutes away from now (a replay, or a clock far off)",
        ));
    }
    let expected = hmac_sha256(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    let good = sigs.split_whitespace().any(|entry| {
        let Some(("v1", b64)) = entry.split_once(',') else {
            return false;
        };
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .is_ok_and(|sig| bool::from(sig.as_slice().ct_eq(&expected)))
    });
    if good {
        Ok(())
    } else {
        Err(unauthenticated("no webhook-signature matches the body"))
    }
}

// ---- the client ----

pub struct Client {
    api: Api,
    journal: Journal,
    /// The webhook signing key, fetched once from `GET /v1/webhooks/default/secret`.
    webhook_key: tokio::sync::OnceCell<Vec<u8>>,
}

impl Provider for Client {
    fn submit<'a>(&'a self, s: &'a Submission<'a>) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(Client::submit(self, s))
    }
    fn poll<'a>(&'a self, row: &'a TaskRow) -> BoxFuture<'a, Result<Snapshot, ProviderError>> {
        Box::pin(Client::poll(self, super::provider_task_id(row)))
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
        Box::pin(Client::verify(self, headers, body))
    }
}

impl Client {
    pub fn new(cfg: &ProviderConfig, http: http::HttpClient, journal: Journal) -> Self {
        Client {
            api: Api::new(ProviderId::Replicate, cfg, http),
            journal,
            webhook_key: tokio::sync::OnceCell::new(),
        }
    }

    /// What Replicate's model reads for a local image: a data URI under the documented limit,
    /// else a Files API upload (cached by sha256 while the file lives). Every failure is
    /// `Rejected`: nothing was created or paid yet.
    async fn image_ref(&self, image: &ImageInput) -> Result<String, ProviderError> {
        let img = match image {
            ImageInput::Url(u) => return Ok(u.clone()),
            ImageInput::Local(img) => img,
        };
        if img.bytes.len() < DATA_URI_MAX_BYTES {
            return Ok(img.data_uri());
        }
        if img.bytes.len() as u64 > FILES_MAX_BYTES {
            return Err(ProviderError::rejected(Error::invalid_input(format!(
                "{}: {} bytes is more than the 100 MB Replicate's Files API takes",
                img.origin,
                img.bytes.len()
            ))));
        }
        let now = now_ms();
        match self
            .journal
            .upload_get(ProviderId::Replicate, &img.sha256, now)
            .await
        {
            Ok(Some(url)) => return Ok(url),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "upload cache unreadable; uploading again"),
        }
        let (content_type, body) = upload_body(img);
        let reply = self
            .api
            .post_raw(FILES_PATH, content_type, body, Stage::Upload)
            .await?;
        let (url, until) = parse_upload(&reply, now)?;
        if until > now
            && let Err(e) = self
                .journal
                .upload_put(ProviderId::Replicate, &img.sha256, &url, until)
                .await
        {
            tracing::warn!(error = %e, "cannot cache the upload; the next task uploads again");
        }
        Ok(url)
    }

    pub async fn submit(&self, s: &Submission<'_>) -> Result<String, ProviderError> {
        let image = match s.image {
            Some(i) => Some(self.image_ref(i).await?),
            None => None,
        };
        let (path, body) = create_request(s, image).map_err(ProviderError::rejected)?;
        // Never `Prefer: wait`: the create returns at once and the watcher polls.
        let reply = self
            .api
            .post_with(
                &path,
                &[("Cancel-After", CANCEL_AFTER)],
                &body,
                Stage::Create,
            )
            .await?;
        if !reply.is_success() {
            return Err(failure(&reply, Stage::Create));
        }
        parse_create(&reply)
    }

    pub async fn poll(&self, id: &str) -> Result<Snapshot, ProviderError> {
        let reply = self
            .api
            .get(
                &format!("/v1/predictions/{}", path_segment(id)),
                &[],
                Stage::Poll,
            )
            .await?;
        if !reply.is_success() {
            return Err(failure(&reply, Stage::Poll));
        }
        parse_task(&reply, now_ms())
    }

    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome, ProviderError> {
        let reply = self
            .api
            .execute(
                reqwest::Method::POST,
                &format!("/v1/predictions/{}/cancel", path_segment(id)),
                &[],
                None,
                Stage::Cancel,
            )
            .await?;
        if !reply.is_success() {
            return Err(failure(&reply, Stage::Cancel));
        }
        let p: Prediction = http::parse(&reply, Stage::Cancel, "Replicate cancel")?;
        Ok(match p.status.as_str() {
            "succeeded" | "failed" | "aborted" => CancelOutcome::NotCancelled(format!(
                "the Replicate prediction had already ended ({})",
                p.status
            )),
            _ => CancelOutcome::Cancelled,
        })
    }

    async fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Error> {
        // A secret that cannot be fetched is not the caller's fault: the webhook is answered
        // 500 (Replicate retries it) and the next one fetches again; polling confirms anyway.
        let unavailable = |e: Error| {
            Error::new(
                Category::ProviderUnavailable,
                format!(
                    "cannot fetch the Replicate webhook signing secret: {}",
                    e.message
                ),
            )
        };
        let key = self
            .webhook_key
            .get_or_try_init(|| async {
                let reply = self
                    .api
                    .get(SECRET_PATH, &[], Stage::Poll)
                    .await
                    .map_err(|pe| unavailable(pe.error))?;
                if !reply.is_success() {
                    return Err(unavailable(failure(&reply, Stage::Poll).error));
                }
                let answer: SecretAnswer =
                    http::parse(&reply, Stage::Poll, "Replicate webhook secret")
                        .map_err(|pe| unavailable(pe.error))?;
                secret_key(&answer.key)
            })
            .await?;
        verify_signature(key, headers, body, now_ms() / 1000)
    }
}

/// A provider id as one path segment: only what Replicate's ids are made of passes.
fn path_segment(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CreateRequest;
    use crate::providers::http::reply;
    use crate::providers::{Acceptance, Webhook};
    use serde_json::json;

    fn body(
        key: &str,
        req: &CreateRequest,
        image: Option<&str>,
        hook: Option<&Webhook>,
    ) -> (String, Value) {
        let url = image.map(|u| ImageInput::Url(u.into()));
        let s = crate::providers::submission(key, req, url.as_ref(), None, hook);
        let (path, b) = create_request(&s, image.map(String::from)).unwrap();
        (path, serde_json::to_value(b).unwrap())
    }

    #[test]
    fn create_bodies_per_model() {
        let req = CreateRequest {
            prompt: "a kite".into(),
            negative_prompt: Some("blur".into()),
            resolution: Some(Resolution::P1080),
            duration_seconds: Some(10),
            seed: Some(7),
            audio_url: Some("https://x.test/a.mp3".into()),
            prompt_extend: Some(false),
            ..CreateRequest::default()
        };
        let hook = Webhook {
            url: "https://me.test/webhooks/replicate?task=t&token=s".into(),
            secret: "s".into(),
        };
        let (path, b) = body(
            "replicate/wan-2.5-i2v",
            &req,
            Some("https://x.test/i.png"),
            Some(&hook),
        );
        assert_eq!(path, "/v1/models/wan-video/wan-2.5-i2v/predictions");
        assert_eq!(
            b,
            json!({"input": {"image": "https://x.test/i.png", "prompt": "a kite", "negative_prompt": "blur",
                "resolution": "1080p", "duration": 10, "seed": 7, "audio": "https://x.test/a.mp3",
                "enable_prompt_expansion": false},
              "webhook": "https://me.test/webhooks/replicate?task=t&token=s",
              "webhook_events_filter": ["completed"]})
        );
        let req = CreateRequest {
            prompt: "p".into(),
            steps: Some(20),
            flow_shift: Some(8.0),
            ..CreateRequest::default()
        };
        let (path, b) = body(
            "replicate/wan-2.2-i2v-a14b",
            &req,
            Some("https://x.test/i.png"),
            None,
        );
        assert_eq!(path, "/v1/models/wan-video/wan-2.2-i2v-a14b/predictions");
        assert_eq!(
            b,
            json!({"input": {"image": "https://x.test/i.png", "prompt": "p", "resolution": "480p",
                "sample_steps": 20, "sample_shift": 8.0}})
        );
        let req = CreateRequest {
            prompt: "p".into(),
            aspect_ratio: Some(AspectRatio::Portrait),
            ..CreateRequest::default()
        };
        let (_, b) = body("replicate/wan-2.5-t2v", &req, None, None);
        assert_eq!(
            b,
            json!({"input": {"prompt": "p", "size": "720*1280", "duration": 5}})
        );
    }

    #[test]
    fn refused_before_sending() {
        let req = CreateRequest {
            prompt: "p".into(),
            resolution: Some(Resolution::P1080),
            ..CreateRequest::default()
        };
        let url = ImageInput::Url("https://x.test/i.png".into());
        let s = crate::providers::submission(
            "replicate/wan-2.2-i2v-a14b",
            &req,
            Some(&url),
            None,
            None,
        );
        let e = create_request(&s, Some("https://x.test/i.png".into())).unwrap_err();
        assert_eq!(e.category, Category::Unsupported);
        assert!(e.message.contains("480p or 720p"), "{}", e.message);
        let e = create_request(&s, None).unwrap_err();
        assert_eq!(e.category, Category::InvalidInput, "{}", e.message);
    }

    #[test]
    fn every_status() {
        let now = 1_000_000;
        let snap = |b: &str| parse_task(&reply(200, b), now).unwrap();
        assert_eq!(
            snap(r#"{"id":"p1","status":"starting"}"#).status,
            Status::Queued
        );
        assert_eq!(
            snap(r#"{"id":"p1","status":"processing"}"#).status,
            Status::Running
        );
        assert_eq!(
            snap(r#"{"id":"p1","status":"canceled"}"#).status,
            Status::Cancelled
        );
        assert_eq!(
            snap(r#"{"id":"p1","status":"something_new"}"#).status,
            Status::Running
        );
        let ok = snap(
            r#"{"id":"p1","status":"succeeded","output":"https://replicate.delivery/x/out.mp4","completed_at":"2026-12-07T12:00:00.000Z","data_removed":false}"#,
        );
        assert_eq!(ok.status, Status::Succeeded);
        assert_eq!(
            ok.video_url.as_deref(),
            Some("https://replicate.delivery/x/out.mp4")
        );
        assert_eq!(ok.url_expires_at, Some(1_796_644_800_000 + OUTPUT_TTL_MS));
        let list = snap(r#"{"status":"succeeded","output":["https://r.test/a.mp4"]}"#);
        assert_eq!(list.url_expires_at, Some(now + OUTPUT_TTL_MS));
        assert_eq!(list.video_url.as_deref(), Some("https://r.test/a.mp4"));
        let empty = snap(r#"{"status":"succeeded","output":null}"#);
        assert_eq!(empty.status, Status::Failed);
        let gone =
            snap(r#"{"status":"succeeded","output":"https://r.test/a.mp4","data_removed":true}"#);
        assert_eq!(gone.status, Status::Failed);
        assert!(gone.error.unwrap().message.contains("one hour"));
        let failed = snap(r#"{"status":"failed","error":"NSFW content detected"}"#);
        assert_eq!(failed.status, Status::Failed);
        assert!(
            failed
                .error
                .unwrap()
                .message
                .contains("NSFW content detected")
        );
        let aborted = snap(r#"{"status":"aborted","error":null}"#);
        assert_eq!(aborted.status, Status::Failed);
        assert!(aborted.error.unwrap().message.contains("aborted"));
        let pe = parse_task(&reply(200, "<html>"), now).unwrap_err();
        assert_eq!(pe.error.category, Category::ProviderUnavailable);
    }

    #[test]
    fn create_answers() {
        assert_eq!(
            parse_create(&reply(201, r#"{"id":"abc","status":"starting"}"#)).unwrap(),
            "abc"
        );
        for bad in [r#"{"id":""}"#, "{}", "<html>gateway"] {
            let pe = parse_create(&reply(201, bad)).unwrap_err();
            assert_eq!(pe.error.category, Category::SubmitUnknown, "{bad}");
            assert_eq!(pe.acceptance, Acceptance::Unknown);
        }
    }

    #[test]
    fn error_answers_map_to_categories() {
        let cases: &[(u16, &str, Category, Acceptance)] = &[
            (
                401,
                r#"{"title":"Unauthenticated","detail":"You did not pass a valid authentication token","status":401}"#,
                Category::Auth,
                Acceptance::Rejected,
            ),
            (
                402,
                r#"{"title":"Insufficient credit","detail":"You have insufficient credit to run this model.","status":402}"#,
                Category::Credits,
                Acceptance::Rejected,
            ),
            (
                404,
                r#"{"title":"Not found","detail":"The requested resource could not be found.","status":404}"#,
                Category::NotFound,
                Acceptance::Rejected,
            ),
            (
                422,
                r#"{"title":"Input validation failed","detail":"- input: Additional property foo is not allowed","status":422,"invalid_fields":[{"type":"additional_property_not_allowed","field":"input","description":"Additional property foo is not allowed"}]}"#,
                Category::InvalidInput,
                Acceptance::Rejected,
            ),
            (
                429,
                r#"{"title":"Request was throttled","detail":"Request was throttled. Expected available in 7 seconds.","status":429}"#,
                Category::RateLimited,
                Acceptance::Rejected,
            ),
            (
                500,
                "<html>oops</html>",
                Category::ProviderUnavailable,
                Acceptance::Unknown,
            ),
        ];
        for (status, text, cat, acc) in cases {
            let pe = failure(&reply(*status, text), Stage::Create);
            assert_eq!(pe.error.category, *cat, "{text}");
            assert_eq!(pe.acceptance, *acc, "{text}");
            assert!(pe.error.next_step.is_some(), "{text}");
        }
        let pe = failure(&reply(429, cases[4].1), Stage::Create);
        assert_eq!(pe.retry_after, Some(std::time::Duration::from_secs(7)));
        // The rate-limits page's example body.
        let pe = failure(
            &reply(
                429,
                r#"{"detail":"Request was throttled. Your rate limit resets in ~30s."}"#,
            ),
            Stage::Create,
        );
        assert_eq!(pe.retry_after, Some(std::time::Duration::from_secs(30)));
        assert!(
            pe.error.message.contains("resets in ~30s"),
            "{}",
            pe.error.message
        );
        assert_eq!(wait_in("resets in ~2m"), Some(120));
        assert_eq!(wait_in("throttled"), None);
        assert!(pe.create_may_retry());
        let pe = failure(&reply(422, cases[3].1), Stage::Create);
        assert!(
            pe.error.message.contains("Additional property foo"),
            "{}",
            pe.error.message
        );
        assert!(!failure(&reply(402, cases[1].1), Stage::Create).create_may_retry());
        assert_eq!(
            failure(&reply(500, "x"), Stage::Upload).acceptance,
            Acceptance::Rejected
        );
    }

    /// RFC 4231 test case 2, then a Standard Webhooks signature made by hand.
    #[test]
    fn webhook_signatures() {
        assert_eq!(
            hex::encode(hmac_sha256(
                b"Jefe",
                &[b"what do ya want ", b"for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"id":"p1","status":"succeeded"}"#;
        let sig = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .encode(hmac_sha256(&key, &[b"msg_1.1700000000.", body]))
        };
        let headers = |sigs: &str, ts: &str| {
            let mut h = HeaderMap::new();
            h.insert("webhook-id", "msg_1".parse().unwrap());
            h.insert("webhook-timestamp", ts.parse().unwrap());
            h.insert("webhook-signature", sigs.parse().unwrap());
            h
        };
        let now = 1_700_000_100;
        verify_signature(
            &key,
            &headers(&format!("v1,{sig}"), "1700000000"),
            body,
            now,
        )
        .unwrap();
        // Several signatures (a rotated secret): one match is enough.
        verify_signature(
            &key,
            &headers(&format!("v1,AAAA v1,{sig}"), "1700000000"),
            body,
            now,
        )
        .unwrap();
        for (sigs, ts, at) in [
            (format!("v1,{sig}"), "1700000000", now + 400),
            (format!("v1,{sig}"), "1700000001", now),
            (format!("v2,{sig}"), "1700000000", now),
            ("v1,bm9wZQ==".to_string(), "1700000000", now),
            (format!("v1,{sig}"), "soon", now),
        ] {
            let e = verify_signature(&key, &headers(&sigs, ts), body, at).unwrap_err();
            assert_eq!(e.category, Category::Auth, "{sigs} {ts}");
        }
        let e = verify_signature(
            &key,
            &headers(&format!("v1,{sig}"), "1700000000"),
            b"{}",
            now,
        )
        .unwrap_err();
        assert_eq!(e.category, Category::Auth);
        let e = verify_signature(&key, &HeaderMap::new(), body, now).unwrap_err();
        assert!(e.message.contains("webhook-id"), "{}", e.message);
        assert!(secret_key("MfKQ9r8").is_err());
    }

    #[test]
    fn upload_multipart_and_answer() {
        let img = match crate::providers::tiny_png() {
            ImageInput::Local(l) => l,
            ImageInput::Url(_) => unreachable!(),
        };
        let (ct, b) = upload_body(&img);
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8_lossy(&b);
        assert!(text.starts_with(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\""
        )));
        assert!(
            text.contains("Content-Type: image/png\r\n\r\n\u{89}PNG")
                || b.windows(4).any(|w| w == [0x89, b'P', b'N', b'G'])
        );
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
        let now = 1_000;
        let (url, until) = parse_upload(
            &reply(201, r#"{"id":"f1","urls":{"get":"https://api.replicate.com/v1/files/f1"},"expires_at":"2026-12-08T12:00:00Z"}"#),
            now,
        )
        .unwrap();
        assert_eq!(url, "https://api.replicate.com/v1/files/f1");
        assert_eq!(until, 1_796_731_200_000 - UPLOAD_MARGIN_MS);
        let pe = parse_upload(&reply(201, r#"{"id":"f1"}"#), now).unwrap_err();
        assert_eq!(pe.acceptance, Acceptance::Rejected);
        let pe = parse_upload(&reply(413, r#"{"detail":"too large"}"#), now).unwrap_err();
        assert_eq!(pe.acceptance, Acceptance::Rejected);
    }

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(
            path_segment("ufawqhfynnddngldkgtslldrkq"),
            "ufawqhfynnddngldkgtslldrkq"
        );
        assert_eq!(path_segment("../x?y"), "xy");
    }
}
