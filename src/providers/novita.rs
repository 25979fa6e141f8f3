//! Novita AI: Wan 2.7 image-to-video (`POST /v3/async/wan2.7-i2v`, model `wan2.7-i2v`, the
//! default) and text-to-video (`POST /v3/async/wan2.7-t2v`, model `wan2.7-t2v`), and the retired Wan 2.1 (`POST /v3/async/wan-i2v`, model `wan2.1-i2v`, retired
//! 2026-08-19) and Wan 2.6 (`POST /v3/async/wan2.6-i2v`, model `wan2.6-i2v`, retired 2026-09-30)
//! image-to-video. The retired ones are kept, refused unless `allow_retired` (a proxy may still
//! serve them, or Novita may bring them back). One client serves all; all are read back through
//! `GET /v3/async/task-result?task_id=`.
//!
//! Docs: https://novita.ai/docs/api-reference/model-apis-wan2.7-i2v (Wan 2.7),
//! https://novita.ai/docs/api-reference/model-apis-wan-i2v (Wan 2.1), the Novita page
//! "Wan 2.6 Image to Video" (copy in `shared/providers/novita-wan26-i2v.txt`), task result
//! https://novita.ai/docs/api-reference/model-apis-task-result, errors
//! https://novita.ai/docs/guides/error, retirements https://novita.ai/docs/changelog/03-08-26 and
//! https://novita.ai/docs/changelog/01-09-26. Pricing: none published for any of them
//! (CONTRACTS.md 2.7, CONTRACTS-2026-12.md B.5), so the catalog leaves it unset. Contracts:
//! `shared/providers/CONTRACTS.md` sections 0 and 2, `CONTRACTS-2026-12.md` section B.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{self, Api, Reply, Stage};
use super::{
    Auth, Build, CancelOutcome, Declaration, Provider, ProviderConfig, ProviderError, RateLimits,
    Snapshot, Submission, WebhookDecl,
};
use crate::catalog::spec::{ImageDelivery, ModelSpec, Price, range, strings};
use crate::error::{Category, Error, snippet};
use crate::journal::TaskRow;
use crate::media::ImageInput;
use crate::model::{AspectRatio, ProviderId, Resolution, Status, now_ms};

pub static DECL: Declaration = Declaration {
    id: ProviderId::Novita,
    name: "Novita",
    key_env: Some("NOVITA_API_KEY"),
    default_base_url: Some("https://api.novita.ai"),
    auth: Auth::Bearer,
    // Novita publishes no numbers (UNKNOWN): no client-side limit; its 429s are honoured.
    rate_limits: RateLimits::UNLIMITED,
    models: || vec![wan27_spec(), wan27_t2v_spec(), wan21_spec(), wan26_spec()],
    loras: Vec::new,
    lora_note: Some("Novita wan2.1-i2v takes a LoRA path as the name (up to 3)"),
    check: super::no_check,
    preflight: super::no_preflight,
    cancels: false,
    // CONTRACTS.md 2.6: the callback carries the task at `payload.task.task_id`, unsigned.
    webhook: Some(WebhookDecl {
        task_id_at: "/payload/task/task_id",
        secret_header: None,
    }),
    same_upstream: &[ProviderId::Novita],
    poll_interval: None,
    keyless_offer: None,
    build: |b: &Build<'_>| std::sync::Arc::new(Client::new(b.provider, b.http.clone())),
};

/// CONTRACTS-2026-12.md B.2, B.5: the default (first) model.
fn wan27_spec() -> ModelSpec {
    ModelSpec {
        description: "Wan 2.7 on Novita: 2-15 s, 720p/1080p, optional last frame (end_image) and driving audio (audio_url), always with sound; images by URL only.".into(),
        // B.2: documented as a URL; data URI / Base64 support is UNKNOWN, so assume not.
        image_delivery: ImageDelivery::UrlOnly,
        image_formats: strings(&["jpeg", "png", "bmp", "webp"]),
        image_max_bytes: 20 * 1024 * 1024,
        image_px: range(240.0, 8000.0),
        no_alpha: true,
        resolutions: vec![Resolution::P720, Resolution::P1080],
        default_resolution: Resolution::P1080,
        durations: (2..=15).collect(),
        prompt_max: Some(5000),
        prompt_optional: true,
        negative_prompt: true,
        negative_prompt_max: Some(500),
        seed: range(0.0, 2_147_483_647.0),
        end_image: true,
        // B.2: no switch for the sound track (always on); `audio_url` is the driving audio.
        audio_url: true,
        prompt_extend: true,
        watermark: true,
        price: Price::unpublished(
            "unpublished on novita.ai (billed per second by resolution); Novita's China brand PPIO lists 720P CNY 0.60/s, 1080P CNY 1.00/s; set [pricing.\"novita/wan2.7-i2v\"]",
        ),
        note: Some("Aspect follows the image (sides 240-8000 px, aspect 1:8 to 8:1, at most 20 MB). Output always has sound: generated, or driven by audio_url (wav/mp3, 2-30 s).".into()),
        ..ModelSpec::base(ProviderId::Novita, WAN27)
    }
}

/// CONTRACTS-2026-12.md B.3, B.5.
fn wan27_t2v_spec() -> ModelSpec {
    ModelSpec {
        description: "Wan 2.7 text-to-video on Novita: 2-15 s, 720p/1080p, 16:9, 9:16 or 1:1, always with sound (generated, or audio_url).".into(),
        resolutions: vec![Resolution::P720, Resolution::P1080],
        default_resolution: Resolution::P1080,
        aspect_ratios: AspectRatio::ALL.to_vec(),
        durations: (2..=15).collect(),
        // B.3: 1500 here (DashScope allows 5000 for the same model); longer is truncated upstream.
        prompt_max: Some(1500),
        negative_prompt: true,
        negative_prompt_max: Some(500),
        seed: range(0.0, 2_147_483_647.0),
        audio_url: true,
        prompt_extend: true,
        watermark: true,
        price: Price::unpublished(
            "unpublished on novita.ai (billed per second by resolution); Novita's China brand PPIO lists 720P CNY 0.60/s, 1080P CNY 1.00/s; set [pricing.\"novita/wan2.7-t2v\"]",
        ),
        note: Some("4:3 and 3:4 sizes exist upstream but have no aspect_ratio value here.".into()),
        ..ModelSpec::base(ProviderId::Novita, WAN27_T2V)
    }
    .text_only()
}

/// CONTRACTS.md 2.2, 2.7
fn wan21_spec() -> ModelSpec {
    ModelSpec {
        description: "Wan 2.1 on Novita: 5 s, 480p/720p, up to 3 LoRAs, image by URL only.".into(),
        image_delivery: ImageDelivery::UrlOnly,
        resolutions: vec![Resolution::P480, Resolution::P720],
        aspect_ratios: vec![AspectRatio::Auto, AspectRatio::Landscape, AspectRatio::Portrait],
        prompt_max: Some(2000),
        negative_prompt: true,
        negative_prompt_max: Some(2000),
        seed: range(-1.0, 9_999_999_999.0),
        max_loras: MAX_LORAS as u32,
        // CONTRACTS.md 2.2: the scale range is UNKNOWN; 0-4 keeps obvious mistakes out.
        lora_strength: range(0.0, 4.0),
        steps: range(1.0, 40.0),
        guidance_scale: range(0.0, 10.0),
        flow_shift: range(1.0, 10.0),
        safety_checker: true,
        price: Price::unpublished("unpublished: not found on any Novita page; set [pricing.\"novita/wan2.1-i2v\"]"),
        note: Some("Output keeps the image's aspect; aspect_ratio only picks the width x height pair. LoRA name = LoRA path.".into()),
        // CONTRACTS-2026-12.md B.6 (changelog 03-08-26).
        retired_on: Some("2026-08-19".into()),
        replacement: Some(format!("novita/{WAN27}")),
        ..ModelSpec::base(ProviderId::Novita, WAN21)
    }
}

/// CONTRACTS.md 2.3, 2.7
fn wan26_spec() -> ModelSpec {
    ModelSpec {
        description: "Wan 2.6 on Novita: 5/10/15 s, 720p/1080p, optional audio.".into(),
        image_delivery: ImageDelivery::InlineDataUri,
        image_formats: strings(&["jpeg", "png", "bmp", "webp"]),
        image_px: range(360.0, 2000.0),
        no_alpha: true,
        resolutions: vec![Resolution::P720, Resolution::P1080],
        default_resolution: Resolution::P720,
        durations: vec![5, 10, 15],
        prompt_max: Some(2000),
        // CONTRACTS.md 2.3: `input.prompt` takes 0-2000 characters.
        prompt_optional: true,
        negative_prompt: true,
        negative_prompt_max: Some(500),
        seed: range(0.0, 2_147_483_647.0),
        audio: true,
        audio_url: true,
        prompt_extend: true,
        shot_type: true,
        watermark: true,
        price: Price::unpublished(
            "unpublished on Novita (other vendors list $0.10/s 720p, $0.15/s 1080p); set [pricing.\"novita/wan2.6-i2v\"]",
        ),
        note: Some("Aspect follows the image.".into()),
        // CONTRACTS-2026-12.md B.6 (changelog 01-09-26): Novita names Kling 3.0, which this
        // server does not serve.
        retired_on: Some("2026-09-30".into()),
        replacement: Some(format!(
            "Kling 3.0 (Novita's choice; not served here, nearest here: novita/{WAN27})"
        )),
        ..ModelSpec::base(ProviderId::Novita, WAN26)
    }
}

const WAN27: &str = "wan2.7-i2v";
const WAN21: &str = "wan2.1-i2v";
const WAN26: &str = "wan2.6-i2v";
const WAN27_PATH: &str = "/v3/async/wan2.7-i2v";
const WAN27_T2V: &str = "wan2.7-t2v";
const WAN27_T2V_PATH: &str = "/v3/async/wan2.7-t2v";
const WAN21_PATH: &str = "/v3/async/wan-i2v";
const WAN26_PATH: &str = "/v3/async/wan2.6-i2v";
const RESULT_PATH: &str = "/v3/async/task-result";
/// CONTRACTS.md 2.2: "Currently supports up to 3 LoRAs".
const MAX_LORAS: usize = 3;

impl Provider for Client {
    fn submit<'a>(&'a self, s: &'a Submission<'a>) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(Client::submit(self, s))
    }
    fn poll<'a>(&'a self, row: &'a TaskRow) -> BoxFuture<'a, Result<Snapshot, ProviderError>> {
        Box::pin(Client::poll(self, super::provider_task_id(row)))
    }
    fn cancel<'a>(&'a self, _: &'a TaskRow) -> BoxFuture<'a, Result<CancelOutcome, ProviderError>> {
        super::no_cancel(&DECL)
    }
}

fn key_env() -> &'static str {
    DECL.key_env.unwrap_or_default()
}

pub struct Client {
    api: Api,
}

// ---- wire types (private to this provider) ----

/// CONTRACTS.md 2.2 (Wan 2.1).
#[derive(Debug, Serialize)]
pub(crate) struct Wan21Body {
    /// Required by the seed revision, absent from the newer one: always sent (CONTRACTS.md 2.2).
    model_name: &'static str,
    image_url: String,
    width: u32,
    height: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    loras: Vec<Lora>,
    /// i64: the range is -1 ..= 9 999 999 999. Required by the older revision, so -1 (random)
    /// is sent when the request has none.
    seed: i64,
    prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guidance_scale: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow_shift: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_safety_checker: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra: Option<Extra>,
}

#[derive(Debug, Serialize)]
struct Lora {
    path: String,
    scale: f64,
}

/// CONTRACTS.md 2.6: `extra.webhook.url`. Novita signs nothing, so there is no secret to send.
#[derive(Debug, Serialize)]
struct Extra {
    webhook: WebhookOut,
}

#[derive(Debug, Serialize)]
struct WebhookOut {
    url: String,
}

/// The body of any endpoint, serialised as itself.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum CreateBody {
    Wan27(Wan27Body),
    Wan27T2v(Wan27T2vBody),
    Wan21(Wan21Body),
    Wan26(Wan26Body),
}

/// CONTRACTS.md 2.3 (Wan 2.6).
#[derive(Debug, Serialize)]
pub(crate) struct Wan26Body {
    input: Wan26Input,
    parameters: Wan26Parameters,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra: Option<Extra>,
}

#[derive(Debug, Serialize)]
struct Wan26Input {
    prompt: String,
    img_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio_url: Option<String>,
}

#[derive(Debug, Serialize)]
struct Wan26Parameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio: Option<bool>,
    /// The default is not documented: always sent.
    duration: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    shot_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    watermark: Option<bool>,
    /// The default is not documented: always sent.
    resolution: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_extend: Option<bool>,
}

/// CONTRACTS-2026-12.md B.2 (Wan 2.7): flat, no `input`/`parameters`, no `media[]`.
/// `first_clip_url` (continuing a video) has no field in our request and is never sent.
#[derive(Debug, Serialize)]
pub(crate) struct Wan27Body {
    image_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_frame_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    driving_audio_url: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_prompt: Option<String>,
    /// Default 5 on the page: always sent, so the price we quote is the one asked for.
    duration: u32,
    /// Default "1080P" on the page: always sent.
    resolution: &'static str,
    /// The Novita default is not shown (PPIO says true, UNVERIFIED): always sent.
    prompt_extend: bool,
    /// Default false on the page: always sent, as the conflicting 2.6 defaults teach.
    watermark: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra: Option<Extra>,
}

/// CONTRACTS-2026-12.md B.3 (Wan 2.7 text-to-video): flat, the frame as `size`.
#[derive(Debug, Serialize)]
pub(crate) struct Wan27T2vBody {
    prompt: String,
    /// Default "1920*1080" on the page: always sent, so the tier we quote is the one asked for.
    size: &'static str,
    /// Default 5: always sent.
    duration: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_prompt: Option<String>,
    /// Defaults not captured (PPIO: false / true, UNVERIFIED): always sent.
    watermark: bool,
    prompt_extend: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra: Option<Extra>,
}

#[derive(Debug, Deserialize)]
struct CreateAnswer {
    #[serde(default)]
    task_id: Option<String>,
}

/// CONTRACTS.md 2.4. Everything optional: a missing field must not fail a poll.
#[derive(Debug, Deserialize)]
struct WireResult {
    #[serde(default)]
    task: Option<WireTask>,
    #[serde(default)]
    videos: Option<Vec<WireVideo>>,
    /// Set when the body is an error body instead (CONTRACTS.md 2.5).
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireTask {
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    eta: Option<i64>,
    #[serde(default)]
    progress_percent: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct WireVideo {
    #[serde(default)]
    video_url: Option<String>,
    /// Documented as a string of seconds ("3600"); a number is tolerated too.
    #[serde(default)]
    video_url_ttl: Option<Value>,
}

/// CONTRACTS.md 2.5: `{code, reason, message, metadata?}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

// ---- pure translation ----

/// CONTRACTS.md 2.2: only the documented width x height pairs. The output keeps the image's
/// aspect either way; 9:16 picks the portrait pair, anything else the landscape one.
fn wan21_size(res: Option<Resolution>, ar: Option<AspectRatio>) -> Result<(u32, u32), Error> {
    let (long, short) = match res.unwrap_or(Resolution::P480) {
        Resolution::P480 => (832, 480),
        Resolution::P720 => (1280, 720),
        other => {
            return Err(Error::unsupported(format!(
                "resolution {} is not available on novita/{WAN21}: use 480p or 720p",
                other.as_str()
            )));
        }
    };
    Ok(match ar {
        Some(AspectRatio::Portrait) => (short, long),
        _ => (long, short),
    })
}

fn wan26_resolution(res: Option<Resolution>) -> Result<&'static str, Error> {
    upper_resolution(res.unwrap_or(Resolution::P720), WAN26)
}

/// 2.6 and 2.7 name their two tiers "720P" and "1080P".
fn upper_resolution(res: Resolution, model: &str) -> Result<&'static str, Error> {
    match res {
        Resolution::P720 => Ok("720P"),
        Resolution::P1080 => Ok("1080P"),
        other => Err(Error::unsupported(format!(
            "resolution {} is not available on novita/{model}: use 720p or 1080p",
            other.as_str()
        ))),
    }
}

/// An image for a URL-only field: a local file or data URI never leaves this machine.
/// `media` refuses them first (`ImageDelivery::UrlOnly`, naming who takes them); this is the
/// adapter's own guard.
fn url_only(image: &ImageInput, field: &str, model: &str) -> Result<String, Error> {
    match image {
        ImageInput::Url(u) => Ok(u.clone()),
        ImageInput::Local(_) => Err(Error::unsupported(format!(
            "{field}: novita/{model} takes image URLs only: pass an https URL, or use a model that takes local files (see list_models, image_delivery)"
        ))),
    }
}

fn extra(s: &Submission<'_>) -> Option<Extra> {
    s.webhook.map(|w| Extra {
        webhook: WebhookOut { url: w.url.clone() },
    })
}

fn wan21_body(s: &Submission<'_>) -> Result<Wan21Body, Error> {
    let req = s.req;
    let image_url = match s.image_required()? {
        ImageInput::Url(u) => u.clone(),
        // media.rs refuses these already (ImageDelivery::UrlOnly); never send local bytes here.
        ImageInput::Local(_) => {
            return Err(Error::unsupported(format!(
                "novita/{WAN21} takes image URLs only (Novita has no upload API for it): pass an https URL, or use novita/{WAN26}, which takes local files"
            )));
        }
    };
    if req.loras.len() > MAX_LORAS {
        return Err(Error::invalid_input(format!(
            "{} LoRAs given; novita/{WAN21} takes at most {MAX_LORAS}",
            req.loras.len()
        )));
    }
    let (width, height) = wan21_size(req.resolution, req.aspect_ratio)?;
    let body = Wan21Body {
        model_name: WAN21,
        image_url,
        width,
        height,
        loras: req
            .loras
            .iter()
            .map(|l| Lora {
                path: l.name.clone(),
                // CONTRACTS.md 2.2: the scale range and default are UNKNOWN; 1.0 = full strength.
                scale: l.strength.unwrap_or(1.0),
            })
            .collect(),
        seed: req.seed.unwrap_or(-1),
        prompt: req.prompt.clone(),
        negative_prompt: req.negative_prompt.clone(),
        steps: req.steps,
        guidance_scale: req.guidance_scale,
        flow_shift: req.flow_shift,
        enable_safety_checker: req.safety_checker,
        extra: extra(s),
    };
    Ok(body)
}

fn wan26_body(s: &Submission<'_>) -> Result<Wan26Body, Error> {
    let req = s.req;
    let img_url = match s.image_required()? {
        ImageInput::Url(u) => u.clone(),
        // CONTRACTS.md 2.3: "data:image/png;base64,..." is accepted inline.
        ImageInput::Local(l) => l.data_uri(),
    };
    let body = Wan26Body {
        input: Wan26Input {
            prompt: req.prompt.clone(),
            img_url,
            negative_prompt: req.negative_prompt.clone(),
            audio_url: req.audio_url.clone(),
        },
        parameters: Wan26Parameters {
            seed: req.seed,
            audio: req.audio,
            duration: req.duration_seconds.unwrap_or(s.spec.default_duration),
            shot_type: req.shot_type.clone(),
            watermark: req.watermark,
            resolution: wan26_resolution(req.resolution)?,
            prompt_extend: req.prompt_extend,
        },
        // CONTRACTS.md 2.3/2.6: `extra.webhook` is documented for async APIs in general but not
        // shown in the 2.6 schema (unverified). The webhook is only a hint; polling confirms.
        extra: extra(s),
    };
    Ok(body)
}

/// CONTRACTS-2026-12.md B.2. The image combinations our request can express (first frame,
/// first + last frame, either with driving audio) are all permitted ones.
fn wan27_body(s: &Submission<'_>) -> Result<Wan27Body, Error> {
    let req = s.req;
    Ok(Wan27Body {
        image_url: url_only(s.image_required()?, "image", WAN27)?,
        last_frame_url: s
            .end_image
            .map(|e| url_only(e, "end_image", WAN27))
            .transpose()?,
        driving_audio_url: req.audio_url.clone(),
        prompt: req.prompt.clone(),
        negative_prompt: req.negative_prompt.clone(),
        duration: req.duration_seconds.unwrap_or(s.spec.default_duration),
        resolution: upper_resolution(req.resolution.unwrap_or(s.spec.default_resolution), WAN27)?,
        prompt_extend: req.prompt_extend.unwrap_or(true),
        watermark: req.watermark.unwrap_or(false),
        seed: req.seed,
        // B.4: whether 2.7 accepts `extra.webhook` is UNKNOWN; sent as for 2.6 (the webhook is
        // only a hint, polling confirms every result).
        extra: extra(s),
    })
}

/// B.3: the `size` of a tier and aspect (`validate` kept both to the model's lists; `auto` is
/// the page's default, 16:9).
fn t2v_size(resolution: Resolution, aspect: AspectRatio) -> &'static str {
    match (resolution, aspect) {
        (Resolution::P1080, AspectRatio::Portrait) => "1080*1920",
        (Resolution::P1080, AspectRatio::Square) => "1440*1440",
        (Resolution::P1080, _) => "1920*1080",
        (_, AspectRatio::Portrait) => "720*1280",
        (_, AspectRatio::Square) => "960*960",
        _ => "1280*720",
    }
}

fn wan27_t2v_body(s: &Submission<'_>) -> Wan27T2vBody {
    let req = s.req;
    Wan27T2vBody {
        prompt: req.prompt.clone(),
        size: t2v_size(
            req.resolution.unwrap_or(s.spec.default_resolution),
            req.aspect_ratio.unwrap_or(AspectRatio::Auto),
        ),
        duration: req.duration_seconds.unwrap_or(s.spec.default_duration),
        audio_url: req.audio_url.clone(),
        negative_prompt: req.negative_prompt.clone(),
        watermark: req.watermark.unwrap_or(false),
        prompt_extend: req.prompt_extend.unwrap_or(true),
        seed: req.seed,
        // B.4: `extra.webhook` on 2.7 is UNKNOWN; sent as for i2v (polling confirms).
        extra: extra(s),
    }
}

/// The endpoint path and body for a submission, chosen by model.
pub(crate) fn create_request(s: &Submission<'_>) -> Result<(&'static str, CreateBody), Error> {
    match s.spec.model.as_str() {
        WAN27 => Ok((WAN27_PATH, CreateBody::Wan27(wan27_body(s)?))),
        WAN27_T2V => Ok((WAN27_T2V_PATH, CreateBody::Wan27T2v(wan27_t2v_body(s)))),
        WAN21 => Ok((WAN21_PATH, CreateBody::Wan21(wan21_body(s)?))),
        WAN26 => Ok((WAN26_PATH, CreateBody::Wan26(wan26_body(s)?))),
        other => Err(Error::unsupported(format!(
            "novita has no model '{other}': use {WAN27}"
        ))),
    }
}

/// The task id from a 2xx create answer `{"task_id": "..."}`. Anything else is `SubmitUnknown`:
/// the provider said 2xx, so the task may exist.
pub(crate) fn parse_create(body: &[u8]) -> Result<String, Error> {
    let answer: CreateAnswer = serde_json::from_slice(body).map_err(|e| {
        Error::new(
            Category::SubmitUnknown,
            format!(
                "the Novita create answer does not parse ({e}); it began: {}",
                snippet(body)
            ),
        )
    })?;
    answer
        .task_id
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| {
            Error::new(
                Category::SubmitUnknown,
                format!(
                    "the Novita create answer has no task_id; it began: {}",
                    snippet(body)
                ),
            )
        })
}

/// Unix ms at which a result URL expires: `video_url_ttl` is a string of seconds (CONTRACTS.md
/// 2.4), counted from when we read it. A missing, unreadable or non-positive ttl gives `None`.
fn expires_at(ttl: Option<&Value>, now_ms: i64) -> Option<i64> {
    let secs = match ttl? {
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    (secs > 0).then(|| now_ms.saturating_add(secs.saturating_mul(1000)))
}

/// A 2xx task-result body as a snapshot (CONTRACTS.md section 0 and 2.4). `now_ms` dates the
/// URL expiry. A body that does not parse is an error carrying its start.
pub(crate) fn parse_task(body: &[u8], now_ms: i64) -> Result<Snapshot, Error> {
    let wire: WireResult = serde_json::from_slice(body).map_err(|e| {
        Error::new(
            Category::ProviderUnavailable,
            format!(
                "poll: the Novita task result does not parse ({e}); it began: {}",
                snippet(body)
            ),
        )
    })?;
    let Some(task) = wire.task else {
        // An error body behind a 2xx: classify by its reason.
        let category = wire
            .reason
            .as_deref()
            .map_or(Category::ProviderUnavailable, |r| category_for(r, 200));
        return Err(Error::new(
            category,
            format!(
                "poll: the Novita task result has no task ({}); it began: {}",
                wire.message.unwrap_or_default(),
                snippet(body)
            ),
        ));
    };
    let status = status_of(&task.status);
    let mut snap = Snapshot::new(status, task.status.clone());
    snap.progress = task
        .progress_percent
        .map(|p| u8::try_from(p.clamp(0, 100)).unwrap_or(0));
    // eta 0 is what Novita sends when it has no estimate (queued, finished): not kept.
    snap.eta = task
        .eta
        .filter(|e| *e > 0)
        .map(|e| u32::try_from(e).unwrap_or(u32::MAX));
    match status {
        Status::Succeeded => {
            let video = wire
                .videos
                .iter()
                .flatten()
                .find(|v| v.video_url.as_deref().is_some_and(|u| !u.trim().is_empty()));
            snap.url_expires_at = video.and_then(|v| expires_at(v.video_url_ttl.as_ref(), now_ms));
            snap.require_video(video.and_then(|v| v.video_url.clone()), || {
                http::no_video(
                    "Novita reported success without a video_url",
                    "create a new task; if it happens again, try the other model",
                )
            });
        }
        Status::Failed => {
            snap.error = Some(http::failed_because("Novita", "", task.reason));
        }
        Status::Queued | Status::Running | Status::Cancelled => {}
    }
    Ok(snap)
}

/// CONTRACTS.md section 0: anything unknown keeps polling. This includes
/// `TASK_STATUS_CANCELED`, which only third-party code checks: keeping on polling never drops a
/// video that is still coming, and the watcher's total time bounds the wait.
fn status_of(raw: &str) -> Status {
    match raw {
        "TASK_STATUS_QUEUED" => Status::Queued,
        "TASK_STATUS_PROCESSING" => Status::Running,
        "TASK_STATUS_SUCCEED" => Status::Succeeded,
        "TASK_STATUS_FAILED" => Status::Failed,
        other => super::unknown_status(ProviderId::Novita, other),
    }
}

/// CONTRACTS.md 2.5: the category a `reason` means; an unknown reason goes by HTTP status.
fn category_for(reason: &str, status: u16) -> Category {
    match reason {
        "RATE_LIMIT_EXCEEDED" => Category::RateLimited,
        "BILLING_BALANCE_NOT_ENOUGH" => Category::Credits,
        "INVALID_API_KEY"
        | "MISSING_API_KEY"
        | "BILLING_AUTH_FAILED"
        | "API_NOT_ALLOWED"
        | "NEED_REAL_NAME_VERIFY" => Category::Auth,
        "ILLEGAL_PROMPT" | "ILLEGAL_IMAGE_CONTENT" | "INVALID_REQUEST_BODY" => {
            Category::InvalidInput
        }
        r if r.starts_with("IMAGE_") || r.starts_with("INVALID_IMAGE_") => Category::InvalidInput,
        "TASK_NOT_FOUND" | "API_NOT_FOUND" => Category::NotFound,
        "CREATE_TASK_FAILED" | "GET_RESULT_FAILED" | "BILLING_FAILED" | "TASK_FAILED" => {
            Category::ProviderUnavailable
        }
        _ if status >= 500 => Category::ProviderUnavailable,
        _ => http::category_for_status(status),
    }
}

/// What to do about an error answer, where the generic advice says nothing or too little.
fn next_step(reason: &str, category: Category, what: &str) -> Option<String> {
    let specific = match reason {
        "ILLEGAL_PROMPT" => Some("rephrase the prompt: Novita's content filter refused it"),
        "ILLEGAL_IMAGE_CONTENT" => Some("use another image: Novita's content filter refused it"),
        "NEED_REAL_NAME_VERIFY" => {
            Some("complete the real-name verification in the Novita account, then create again")
        }
        "API_NOT_ALLOWED" => Some("this Novita account may not use this API: check its plan"),
        r if r.starts_with("IMAGE_") || r.starts_with("INVALID_IMAGE_") => {
            Some("use a JPEG, PNG or WebP image of reasonable size and resolution")
        }
        _ => None,
    };
    if let Some(s) = specific {
        return Some(s.to_string());
    }
    if let Some(s) = http::next_step(category, key_env()) {
        return Some(s);
    }
    match category {
        Category::InvalidInput => {
            Some("fix the request as the message says, then create again".into())
        }
        Category::NotFound if what == "poll" => {
            Some("Novita does not know this task (it may have expired): create a new one".into())
        }
        Category::NotFound => Some("check the Novita base URL (I2V_MCP_NOVITA_BASE_URL)".into()),
        _ => None,
    }
}

/// Map a non-2xx answer. 5xx to a create is `Unknown` (the task may exist); a 429 keeps its
/// Retry-After (both through `http::failure`).
fn failure(reply: &Reply, what: &str) -> ProviderError {
    let body: Option<ErrorBody> = serde_json::from_slice(&reply.body).ok();
    let reason = body
        .as_ref()
        .and_then(|b| b.reason.clone())
        .unwrap_or_default();
    let message = body
        .and_then(|b| b.message)
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| snippet(&reply.body));
    let category = category_for(&reason, reply.status);
    let label = if reason.is_empty() {
        String::new()
    } else {
        format!(" {reason}")
    };
    let mut pe = http::failure(
        reply,
        category,
        format!(
            "{what}: novita answered HTTP {}{label}: {message}",
            reply.status
        ),
        key_env(),
    );
    pe.error.next_step = next_step(&reason, category, what);
    pe
}

impl Client {
    pub fn new(cfg: &ProviderConfig, http: http::HttpClient) -> Self {
        Client {
            api: Api::new(ProviderId::Novita, cfg, http),
        }
    }

    pub async fn submit(&self, s: &Submission<'_>) -> Result<String, ProviderError> {
        let (path, body) = create_request(s).map_err(ProviderError::rejected)?;
        let reply = self.api.post(path, &body, Stage::Create).await?;
        if !reply.is_success() {
            return Err(failure(&reply, "create"));
        }
        // A 2xx whose body we cannot read: the task may exist upstream.
        parse_create(&reply.body).map_err(|e| http::unreadable(Stage::Create, e.message))
    }

    pub async fn poll(&self, ptid: &str) -> Result<Snapshot, ProviderError> {
        let reply = self
            .api
            .get(RESULT_PATH, &[("task_id", ptid)], Stage::Poll)
            .await?;
        if !reply.is_success() {
            return Err(failure(&reply, "poll"));
        }
        parse_task(&reply.body, now_ms()).map_err(|e| {
            if e.category.is_retryable() {
                ProviderError::unknown(e)
            } else {
                ProviderError::rejected(e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Format, LocalImage};
    use crate::model::{CreateRequest, LoraRef};
    use crate::providers::{Acceptance, Webhook};
    use serde_json::json;
    use std::sync::Arc;
    use std::time::Duration;

    /// The path and the body as sent, for comparing with the contract's JSON.
    fn create_request(s: &Submission<'_>) -> Result<(&'static str, Value), Error> {
        super::create_request(s).map(|(p, b)| (p, serde_json::to_value(b).unwrap()))
    }

    fn sub<'a>(
        model: &str,
        req: &'a CreateRequest,
        image: &'a ImageInput,
        webhook: Option<&'a Webhook>,
    ) -> Submission<'a> {
        crate::providers::submission(&format!("novita/{model}"), req, Some(image), None, webhook)
    }

    fn png_image() -> ImageInput {
        ImageInput::Local(Arc::new(LocalImage {
            bytes: vec![0x89, b'P', b'N', b'G'],
            format: Format::Png,
            width: 400,
            height: 400,
            has_alpha: false,
            sha256: "a".repeat(64),
            origin: "x".into(),
        }))
    }

    use crate::providers::http::reply;

    #[test]
    fn wan21_body_with_loras_big_seed_and_720p_portrait() {
        let url = ImageInput::Url("https://x.test/in.jpg".into());
        let req = CreateRequest {
            prompt: "a panda walks".into(),
            negative_prompt: Some("blur".into()),
            resolution: Some(Resolution::P720),
            aspect_ratio: Some(AspectRatio::Portrait),
            seed: Some(9_999_999_999),
            loras: vec![
                LoraRef {
                    name: "https://x.test/a.safetensors".into(),
                    strength: Some(0.7),
                },
                LoraRef {
                    name: "b".into(),
                    strength: None,
                },
            ],
            steps: Some(25),
            guidance_scale: Some(6.5),
            flow_shift: Some(3.0),
            safety_checker: Some(false),
            ..CreateRequest::default()
        };
        let (path, body) = create_request(&sub(WAN21, &req, &url, None)).unwrap();
        assert_eq!(path, "/v3/async/wan-i2v");
        assert_eq!(
            body,
            json!({
                "model_name": "wan2.1-i2v",
                "image_url": "https://x.test/in.jpg",
                "width": 720,
                "height": 1280,
                "loras": [
                    {"path": "https://x.test/a.safetensors", "scale": 0.7},
                    {"path": "b", "scale": 1.0}
                ],
                "seed": 9_999_999_999_i64,
                "prompt": "a panda walks",
                "negative_prompt": "blur",
                "steps": 25,
                "guidance_scale": 6.5,
                "flow_shift": 3.0,
                "enable_safety_checker": false
            })
        );
    }

    #[test]
    fn wan21_defaults_and_webhook() {
        let url = ImageInput::Url("https://x.test/in.jpg".into());
        let req = CreateRequest {
            prompt: "p".into(),
            ..CreateRequest::default()
        };
        let hook = Webhook {
            url: "https://me.test/webhooks/novita".into(),
            secret: "s".into(),
        };
        let (_, body) = create_request(&sub(WAN21, &req, &url, Some(&hook))).unwrap();
        assert_eq!(
            body,
            json!({
                "model_name": "wan2.1-i2v",
                "image_url": "https://x.test/in.jpg",
                "width": 832,
                "height": 480,
                "seed": -1,
                "prompt": "p",
                "extra": {"webhook": {"url": "https://me.test/webhooks/novita"}}
            })
        );
        for (res, ar, want) in [
            (
                Some(Resolution::P480),
                Some(AspectRatio::Portrait),
                (480, 832),
            ),
            (
                Some(Resolution::P720),
                Some(AspectRatio::Landscape),
                (1280, 720),
            ),
            (Some(Resolution::P720), Some(AspectRatio::Auto), (1280, 720)),
            (None, None, (832, 480)),
        ] {
            assert_eq!(wan21_size(res, ar).unwrap(), want, "{res:?} {ar:?}");
        }
        assert_eq!(
            wan21_size(Some(Resolution::P1080), None)
                .unwrap_err()
                .category,
            Category::Unsupported
        );
    }

    #[test]
    fn wan21_refuses_local_images_and_too_many_loras() {
        let req = CreateRequest {
            prompt: "p".into(),
            ..CreateRequest::default()
        };
        let img = png_image();
        let e = create_request(&sub(WAN21, &req, &img, None)).unwrap_err();
        assert_eq!(e.category, Category::Unsupported);
        assert!(e.message.contains("URLs only"), "{}", e.message);

        let url = ImageInput::Url("https://x.test/in.jpg".into());
        let req = CreateRequest {
            prompt: "p".into(),
            loras: (0..4)
                .map(|i| LoraRef {
                    name: format!("l{i}"),
                    strength: None,
                })
                .collect(),
            ..CreateRequest::default()
        };
        let e = create_request(&sub(WAN21, &req, &url, None)).unwrap_err();
        assert_eq!(e.category, Category::InvalidInput);
    }

    #[test]
    fn wan26_body_with_local_png_duration_1080p_and_audio() {
        let img = png_image();
        let req = CreateRequest {
            prompt: "waves crash".into(),
            negative_prompt: Some("text".into()),
            resolution: Some(Resolution::P1080),
            duration_seconds: Some(10),
            audio: Some(true),
            audio_url: Some("https://x.test/a.mp3".into()),
            seed: Some(42),
            shot_type: Some("multi".into()),
            watermark: Some(false),
            prompt_extend: Some(false),
            ..CreateRequest::default()
        };
        let (path, body) = create_request(&sub(WAN26, &req, &img, None)).unwrap();
        assert_eq!(path, "/v3/async/wan2.6-i2v");
        assert_eq!(
            body,
            json!({
                "input": {
                    "prompt": "waves crash",
                    "img_url": "data:image/png;base64,iVBORw==",
                    "negative_prompt": "text",
                    "audio_url": "https://x.test/a.mp3"
                },
                "parameters": {
                    "seed": 42,
                    "audio": true,
                    "duration": 10,
                    "shot_type": "multi",
                    "watermark": false,
                    "resolution": "1080P",
                    "prompt_extend": false
                }
            })
        );
    }

    #[test]
    fn wan26_defaults_are_always_sent() {
        let url = ImageInput::Url("https://x.test/in.jpg".into());
        let req = CreateRequest::default();
        let hook = Webhook {
            url: "https://me.test/wh".into(),
            secret: "s".into(),
        };
        let (_, body) = create_request(&sub(WAN26, &req, &url, Some(&hook))).unwrap();
        assert_eq!(
            body,
            json!({
                "input": {"prompt": "", "img_url": "https://x.test/in.jpg"},
                "parameters": {"duration": 5, "resolution": "720P"},
                "extra": {"webhook": {"url": "https://me.test/wh"}}
            })
        );
    }

    /// CONTRACTS-2026-12.md B.2's example, as our request expresses it.
    #[test]
    fn wan27_body_matches_the_contract_example() {
        let url = ImageInput::Url("https://example.com/first.png".into());
        let last = ImageInput::Url("https://example.com/last.png".into());
        let req = CreateRequest {
            prompt: "The camera slowly pushes in while the dancer spins.".into(),
            duration_seconds: Some(8),
            resolution: Some(Resolution::P720),
            prompt_extend: Some(false),
            watermark: Some(false),
            seed: Some(42),
            ..CreateRequest::default()
        };
        let s =
            crate::providers::submission("novita/wan2.7-i2v", &req, Some(&url), Some(&last), None);
        let (path, body) = create_request(&s).unwrap();
        assert_eq!(path, "/v3/async/wan2.7-i2v");
        assert_eq!(
            body,
            json!({ "image_url": "https://example.com/first.png", "last_frame_url": "https://example.com/last.png",
              "prompt": "The camera slowly pushes in while the dancer spins.", "duration": 8, "resolution": "720P",
              "prompt_extend": false, "watermark": false, "seed": 42 })
        );
    }

    #[test]
    fn wan27_defaults_audio_and_webhook() {
        let url = ImageInput::Url("https://x.test/in.jpg".into());
        let req = CreateRequest {
            audio_url: Some("https://x.test/rap.mp3".into()),
            negative_prompt: Some("blur".into()),
            ..CreateRequest::default()
        };
        let hook = Webhook {
            url: "https://me.test/wh".into(),
            secret: "s".into(),
        };
        let (_, body) = create_request(&sub(WAN27, &req, &url, Some(&hook))).unwrap();
        assert_eq!(
            body,
            json!({
                "image_url": "https://x.test/in.jpg",
                "driving_audio_url": "https://x.test/rap.mp3",
                "negative_prompt": "blur",
                "duration": 5,
                "resolution": "1080P",
                "prompt_extend": true,
                "watermark": false,
                "extra": {"webhook": {"url": "https://me.test/wh"}}
            })
        );
    }

    #[test]
    fn wan27_never_sends_local_images() {
        let req = CreateRequest::default();
        let img = png_image();
        let e = create_request(&sub(WAN27, &req, &img, None)).unwrap_err();
        assert_eq!(e.category, Category::Unsupported);
        let url = ImageInput::Url("https://x.test/in.jpg".into());
        let s =
            crate::providers::submission("novita/wan2.7-i2v", &req, Some(&url), Some(&img), None);
        let e = create_request(&s).unwrap_err();
        assert!(e.message.starts_with("end_image"), "{}", e.message);
        let req = CreateRequest {
            resolution: Some(Resolution::P480),
            ..CreateRequest::default()
        };
        let e = create_request(&sub(WAN27, &req, &url, None)).unwrap_err();
        assert_eq!(e.category, Category::Unsupported);
    }

    /// B.4: the 2.7 result is read like the others, whatever its `task_type`.
    #[test]
    fn wan27_result_with_an_unknown_task_type() {
        let body = r#"{"task":{"task_id":"x","task_type":"SOMETHING_2_7","status":"TASK_STATUS_SUCCEED","progress_percent":100},"videos":[{"video_url":"https://cdn.test/v.mp4","video_url_ttl":"600"}]}"#;
        let s = parse_task(body.as_bytes(), 0).unwrap();
        assert_eq!(s.status, Status::Succeeded);
        assert_eq!(s.url_expires_at, Some(600_000));
    }

    #[test]
    fn create_answers() {
        assert_eq!(
            parse_create(br#"{"task_id":"abc-123"}"#).unwrap(),
            "abc-123"
        );
        for bad in [&br#"{"task_id":""}"#[..], b"{}", b"<html>gateway", b""] {
            let e = parse_create(bad).unwrap_err();
            assert_eq!(e.category, Category::SubmitUnknown, "{}", e.message);
        }
        assert!(
            parse_create(b"<html>gateway")
                .unwrap_err()
                .message
                .contains("<html>gateway")
        );
    }

    #[test]
    fn contract_examples_for_every_status() {
        let now = 1_000_000;
        let queued = r#"{"task":{"task_id":"abc","task_type":"WAN_IMG_TO_VIDEO","status":"TASK_STATUS_QUEUED","reason":"","eta":0,"progress_percent":0},"images":[],"videos":[]}"#;
        let s = parse_task(queued.as_bytes(), now).unwrap();
        assert_eq!(
            (s.status, s.progress, s.eta),
            (Status::Queued, Some(0), None)
        );
        assert_eq!(s.raw_status, "TASK_STATUS_QUEUED");

        let processing = r#"{"task":{"task_id":"abc","task_type":"WAN_IMG_TO_VIDEO","status":"TASK_STATUS_PROCESSING","reason":"","eta":42,"progress_percent":35},"images":[],"videos":[]}"#;
        let s = parse_task(processing.as_bytes(), now).unwrap();
        assert_eq!(
            (s.status, s.progress, s.eta),
            (Status::Running, Some(35), Some(42))
        );

        let succeeded = r#"{"task":{"task_id":"{Returned Task ID}","task_type":"WAN_IMG_TO_VIDEO","status":"TASK_STATUS_SUCCEED","reason":"","eta":0,"progress_percent":100},"images":[],"videos":[{"video_url":"https://cdn.test/v.mp4","video_url_ttl":"3600","video_type":"mp4"}]}"#;
        let s = parse_task(succeeded.as_bytes(), now).unwrap();
        assert_eq!(s.status, Status::Succeeded);
        assert_eq!(s.video_url.as_deref(), Some("https://cdn.test/v.mp4"));
        assert_eq!(s.url_expires_at, Some(now + 3_600_000));
        assert_eq!(s.progress, Some(100));
        assert!(s.error.is_none());

        let failed = r#"{"task":{"task_id":"abc","task_type":"WAN_IMG_TO_VIDEO","status":"TASK_STATUS_FAILED","reason":"nsfw detected","eta":0,"progress_percent":0},"images":[],"videos":[]}"#;
        let s = parse_task(failed.as_bytes(), now).unwrap();
        assert_eq!(s.status, Status::Failed);
        let e = s.error.unwrap();
        assert_eq!(e.category, Category::GenerationFailed);
        assert!(e.message.contains("nsfw detected"), "{}", e.message);
        assert!(e.next_step.is_some());
    }

    #[test]
    fn unknown_and_odd_results() {
        let body = |status: &str| format!(r#"{{"task":{{"status":"{status}"}}}}"#);
        for unknown in ["TASK_STATUS_CANCELED", "TASK_STATUS_SOMETHING_NEW", ""] {
            let s = parse_task(body(unknown).as_bytes(), 0).unwrap();
            assert_eq!(s.status, Status::Running, "{unknown}");
            assert_eq!(s.raw_status, unknown);
        }
        // Success without a video is a clear failure, not a success with nothing to download.
        let s = parse_task(body("TASK_STATUS_SUCCEED").as_bytes(), 0).unwrap();
        assert_eq!(s.status, Status::Failed);
        assert!(s.error.unwrap().message.contains("without a video_url"));
        // Videos: null, the first non-empty URL wins; progress is clamped.
        let s = parse_task(
            br#"{"task":{"status":"TASK_STATUS_SUCCEED","progress_percent":140},"videos":[{"video_url":""},{"video_url":"https://cdn.test/2.mp4"}]}"#,
            0,
        )
        .unwrap();
        assert_eq!(s.video_url.as_deref(), Some("https://cdn.test/2.mp4"));
        assert_eq!((s.url_expires_at, s.progress), (None, Some(100)));
        let s = parse_task(
            br#"{"task":{"status":"TASK_STATUS_QUEUED"},"videos":null}"#,
            0,
        )
        .unwrap();
        assert_eq!(s.status, Status::Queued);
        // A body that does not parse is an error that quotes it.
        let e = parse_task(b"<html>502 Bad Gateway</html>", 0).unwrap_err();
        assert_eq!(e.category, Category::ProviderUnavailable);
        assert!(e.message.contains("502 Bad Gateway"), "{}", e.message);
        // An error body behind a 2xx is classified by its reason.
        let e = parse_task(
            br#"{"code":404,"reason":"TASK_NOT_FOUND","message":"task not found"}"#,
            0,
        )
        .unwrap_err();
        assert_eq!(e.category, Category::NotFound);
    }

    #[test]
    fn ttl_becomes_expiry() {
        let now = 1_700_000_000_000;
        assert_eq!(expires_at(Some(&json!("3600")), now), Some(now + 3_600_000));
        assert_eq!(expires_at(Some(&json!(" 60 ")), now), Some(now + 60_000));
        assert_eq!(expires_at(Some(&json!(120)), now), Some(now + 120_000));
        assert_eq!(expires_at(Some(&json!("0")), now), None);
        assert_eq!(expires_at(Some(&json!("soon")), now), None);
        assert_eq!(expires_at(Some(&Value::Null), now), None);
        assert_eq!(expires_at(None, now), None);
    }

    #[test]
    fn error_bodies_map_to_categories() {
        let cases: &[(u16, &str, Category)] = &[
            (429, "RATE_LIMIT_EXCEEDED", Category::RateLimited),
            (400, "BILLING_BALANCE_NOT_ENOUGH", Category::Credits),
            (403, "INVALID_API_KEY", Category::Auth),
            (400, "MISSING_API_KEY", Category::Auth),
            (403, "BILLING_AUTH_FAILED", Category::Auth),
            (403, "API_NOT_ALLOWED", Category::Auth),
            (403, "NEED_REAL_NAME_VERIFY", Category::Auth),
            (400, "ILLEGAL_PROMPT", Category::InvalidInput),
            (400, "ILLEGAL_IMAGE_CONTENT", Category::InvalidInput),
            (400, "INVALID_REQUEST_BODY", Category::InvalidInput),
            (400, "IMAGE_FILE_EXCEEDS_MAX_SIZE", Category::InvalidInput),
            (400, "IMAGE_EXCEEDS_MAX_RESOLUTION", Category::InvalidInput),
            (400, "INVALID_IMAGE_FORMAT", Category::InvalidInput),
            (400, "INVALID_IMAGE_SIZE", Category::InvalidInput),
            (404, "TASK_NOT_FOUND", Category::NotFound),
            (404, "API_NOT_FOUND", Category::NotFound),
            (500, "CREATE_TASK_FAILED", Category::ProviderUnavailable),
            (500, "GET_RESULT_FAILED", Category::ProviderUnavailable),
            (500, "BILLING_FAILED", Category::ProviderUnavailable),
            (500, "TASK_FAILED", Category::ProviderUnavailable),
            (503, "SOMETHING_NEW", Category::ProviderUnavailable),
            (402, "SOMETHING_NEW", Category::Credits),
            (418, "SOMETHING_NEW", Category::InvalidInput),
        ];
        for (status, reason, want) in cases {
            let body = format!(
                r#"{{"code":{status},"reason":"{reason}","message":"the text","metadata":{{"trace_id":"x"}}}}"#
            );
            let pe = failure(&reply(*status, &body), "create");
            assert_eq!(pe.error.category, *want, "{reason}");
            assert!(pe.error.message.contains(reason), "{}", pe.error.message);
            assert!(
                pe.error.message.contains("the text"),
                "{}",
                pe.error.message
            );
            assert!(pe.error.next_step.is_some(), "{reason}: no next step");
            let acceptance = if *status >= 500 {
                Acceptance::Unknown
            } else {
                Acceptance::Rejected
            };
            assert_eq!(pe.acceptance, acceptance, "{reason}");
        }
        // The secondary-source live probe, and a body that is not JSON at all.
        let pe = failure(
            &reply(
                403,
                r#"{"code":403,"reason":"INVALID_API_KEY","message":"invalid api-key"}"#,
            ),
            "poll",
        );
        assert!(pe.error.next_step.unwrap().contains("NOVITA_API_KEY"));
        let pe = failure(&reply(502, "<html>bad gateway</html>"), "create");
        assert_eq!(pe.error.category, Category::ProviderUnavailable);
        assert_eq!(pe.acceptance, Acceptance::Unknown);
        assert!(pe.error.message.contains("bad gateway"));
    }

    #[test]
    fn rate_limit_keeps_retry_after_and_may_be_retried() {
        let mut r = reply(
            429,
            r#"{"code":429,"reason":"RATE_LIMIT_EXCEEDED","message":"slow down"}"#,
        );
        r.headers.insert("retry-after", "12".parse().unwrap());
        let pe = failure(&r, "create");
        assert_eq!(pe.acceptance, Acceptance::Rejected);
        assert_eq!(pe.retry_after, Some(Duration::from_secs(12)));
        assert!(pe.create_may_retry());
        // Out of credits is not a passing reason.
        let pe = failure(
            &reply(
                400,
                r#"{"code":400,"reason":"BILLING_BALANCE_NOT_ENOUGH","message":"top up"}"#,
            ),
            "create",
        );
        assert!(!pe.create_may_retry());
    }

    /// The async part against a loopback stand-in: the endpoint per model, the bearer key, the
    /// poll query string.
    #[tokio::test]
    async fn client_sends_to_the_model_endpoint() {
        use axum::extract::{Query, Request};
        use axum::routing::{get, post};
        use std::collections::HashMap;

        fn auth_ok(req: &Request) -> bool {
            req.headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                == Some("Bearer k-123")
        }
        let app = axum::Router::new()
            .route(
                "/v3/async/wan-i2v",
                post(|req: Request| async move {
                    if auth_ok(&req) { r#"{"task_id":"t21"}"# } else { "{}" }
                }),
            )
            .route(
                "/v3/async/wan2.6-i2v",
                post(|| async { r#"{"task_id":"t26"}"# }),
            )
            .route(
                "/v3/async/task-result",
                get(|Query(q): Query<HashMap<String, String>>| async move {
                    // The id must arrive intact through the query string.
                    if q.get("task_id").map(String::as_str) == Some("t 21&x") {
                        r#"{"task":{"status":"TASK_STATUS_PROCESSING","eta":9,"progress_percent":50}}"#
                    } else {
                        r#"{"task":{"status":"TASK_STATUS_FAILED","reason":"wrong id"}}"#
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let cfg = ProviderConfig {
            api_key: Some("k-123".to_string().into()),
            base_url: format!("http://{addr}/"),
            timeout: Duration::from_secs(5),
            rate_limit: Default::default(),
            allow_retired: false,
            auth: DECL.auth,
            no_key: String::new(),
        };
        let client = Client::new(&cfg, http::client().unwrap());
        let url = ImageInput::Url("https://x.test/in.jpg".into());
        let req = CreateRequest {
            prompt: "p".into(),
            ..CreateRequest::default()
        };
        let run = async {
            let t21 = client.submit(&sub(WAN21, &req, &url, None)).await.unwrap();
            let t26 = client.submit(&sub(WAN26, &req, &url, None)).await.unwrap();
            let snap = client.poll("t 21&x").await.unwrap();
            (t21, t26, snap)
        };
        let (t21, t26, snap) = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("the fake Novita did not answer within 20 s");
        assert_eq!((t21.as_str(), t26.as_str()), ("t21", "t26"));
        assert_eq!(
            (snap.status, snap.progress, snap.eta),
            (Status::Running, Some(50), Some(9))
        );
    }
}
