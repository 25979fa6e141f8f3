//! Alibaba Cloud Model Studio (DashScope), Wan image-to-video: `wan2.7-i2v` (the `media[]`
//! protocol) and the first-frame protocol of `wan2.6-i2v`, `wan2.6-i2v-flash`,
//! `wan2.5-i2v-preview`, `wan2.2-i2v-plus` and `wan2.2-i2v-flash`; text-to-video: `wan2.7-t2v`
//! (`resolution` + `ratio`) and `wan2.6-t2v`, `wan2.5-t2v-preview`, `wan2.2-t2v-plus` (`size`,
//! A.5); Wan 3.0 `wan3.0-video` and `wan3.0-video-prime` (A.6, docs/notes/wan3.md): i2v, t2v and
//! reference-to-video in one request. One create path
//! (`POST /services/aigc/video-generation/video-synthesis`, async only), one task read
//! (`GET /tasks/{id}`), cancel while queued (`POST /tasks/{id}/cancel`).
//!
//! Docs: https://www.alibabacloud.com/help/en/model-studio/image-to-video-general-api-reference
//! (2.7), https://www.alibabacloud.com/help/en/model-studio/legacy-image-to-video-api-reference
//! (2.6 and earlier), https://www.alibabacloud.com/help/en/model-studio/manage-asynchronous-tasks,
//! errors https://docs.qwencloud.com/api-reference/preparation/error-messages. Pricing:
//! https://www.alibabacloud.com/help/en/model-studio/model-pricing could not be read (CONTRACTS-2026-12.md
//! A.12), so every model is unpriced with the figures third parties quote. Contract:
//! `shared/providers/CONTRACTS-2026-12.md` section A.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::http::{self, Api, Reply, Stage};
use super::{
    Auth, Build, CancelOutcome, Declaration, Provider, ProviderError, Snapshot, Submission,
};
use super::{ProviderConfig, RateLimits};
use crate::catalog::spec::{ImageDelivery, ModelSpec, Price, References, Tier, range, strings};
use crate::error::{Category, Error, snippet};
use crate::journal::TaskRow;
use crate::media::ImageInput;
use crate::model::{AspectRatio, ProviderId, Resolution, Status, now_ms};

pub static DECL: Declaration = Declaration {
    id: ProviderId::Dashscope,
    name: "DashScope",
    key_env: Some("DASHSCOPE_API_KEY"),
    // A.1: Singapore. Other regions (US, Beijing, workspace domains) are values of the base URL.
    default_base_url: Some("https://dashscope-intl.aliyuncs.com/api/v1"),
    auth: Auth::Bearer,
    // A.11: 5 submissions/s for the 2.6/2.5 family, 2/s for 2.2; 2.7 is UNKNOWN. The declaration
    // is per provider, so the lowest (2/s) holds for all: 20 per 10 s.
    rate_limits: RateLimits {
        per_10_seconds: Some(20),
        per_minute: None,
        per_hour: None,
        per_day: None,
    },
    models,
    loras: Vec::new,
    lora_note: None,
    check: super::no_check,
    preflight: super::no_preflight,
    cancels: true,
    // A.8: completion events go through Alibaba EventBridge, configured outside the request
    // (UNKNOWN payload): no webhook, polling is the contract.
    webhook: None,
    same_upstream: &[ProviderId::Dashscope],
    poll_interval: None,
    keyless_offer: None,
    build: |b: &Build<'_>| std::sync::Arc::new(Client::new(b.provider, b.http.clone())),
};

const CREATE_PATH: &str = "/services/aigc/video-generation/video-synthesis";
/// A.1: without it the create fails with 403 `AccessDenied` (synchronous calls unsupported).
const ASYNC: (&str, &str) = ("X-DashScope-Async", "enable");
const WAN27: &str = "wan2.7-i2v";
const WAN27_T2V: &str = "wan2.7-t2v";
/// A.6, docs/notes/wan3.md: one model for i2v, t2v and reference-to-video; Prime is the faster tier.
const WAN3: &str = "wan3.0-video";
const WAN3_PRIME: &str = "wan3.0-video-prime";
/// A.13: result URLs and task records live 24 h.
const URL_LIFETIME_MS: i64 = 24 * 3600 * 1000;
const MB: u64 = 1024 * 1024;

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
}

fn key_env() -> &'static str {
    DECL.key_env.unwrap_or_default()
}

/// A.9: local images go inline as data URIs; whether the 20 MB / 10 MB cap applies to the file
/// or to its base64 form is UNKNOWN, so the raw file must stay under 3/4 of it.
const fn inline_cap(mb: u64) -> u64 {
    mb * MB / 4 * 3
}

fn unpriced(model: &str, quoted: &str) -> Price {
    Price::unpublished(&format!(
        "unpublished: Alibaba's international price table could not be read{quoted}; set [pricing.\"dashscope/{model}\"]"
    ))
}

/// What every DashScope i2v model shares (A.3, A.4).
fn spec(model: &str) -> ModelSpec {
    ModelSpec {
        image_delivery: ImageDelivery::InlineDataUri,
        image_formats: strings(&["jpeg", "png", "bmp", "webp"]),
        image_max_bytes: inline_cap(20),
        image_px: range(240.0, 8000.0),
        default_duration: 5,
        prompt_optional: true,
        negative_prompt: true,
        negative_prompt_max: Some(500),
        seed: range(0.0, 2_147_483_647.0),
        prompt_extend: true,
        watermark: true,
        cancel: true,
        ..ModelSpec::base(ProviderId::Dashscope, model)
    }
}

/// A.3, A.4, A.12. First = default.
fn models() -> Vec<ModelSpec> {
    let p720_1080 = vec![Resolution::P720, Resolution::P1080];
    let all = vec![Resolution::P480, Resolution::P720, Resolution::P1080];
    vec![
        ModelSpec {
            description: "Wan 2.7: 2-15 s, 720p/1080p, optional end_image, audio always (generated, or driven by audio_url).".into(),
            resolutions: p720_1080.clone(),
            default_resolution: Resolution::P1080,
            durations: (2..=15).collect(),
            prompt_max: Some(5000),
            end_image: true,
            audio_url: true,
            price: unpriced(WAN27, " (fal.ai, Runware quote 720p $0.10/s, 1080p $0.15/s)"),
            note: Some("Aspect follows the image. No silent output: without audio_url the model makes its own sound. Result URLs live 24 h.".into()),
            ..spec(WAN27)
        },
        ModelSpec {
            description: "Wan 2.6: 2-15 s, 720p/1080p, audio always (generated, or audio_url), multi-shot.".into(),
            resolutions: p720_1080.clone(),
            default_resolution: Resolution::P1080,
            durations: (2..=15).collect(),
            prompt_max: Some(1500),
            audio_url: true,
            shot_type: true,
            price: unpriced("wan2.6-i2v", " (Runpod quotes 720p $0.10/s, 1080p $0.15/s)"),
            ..spec("wan2.6-i2v")
        },
        ModelSpec {
            description: "Wan 2.6 flash: 2-15 s, 720p/1080p, audio on or off, multi-shot.".into(),
            resolutions: p720_1080,
            default_resolution: Resolution::P1080,
            durations: (2..=15).collect(),
            prompt_max: Some(1500),
            audio: true,
            audio_url: true,
            shot_type: true,
            price: unpriced("wan2.6-i2v-flash", " (a reseller quotes 720p $0.05/s with audio, $0.025/s silent)"),
            ..spec("wan2.6-i2v-flash")
        },
        ModelSpec {
            description: "Wan 2.5 preview: 5/10 s, 480p-1080p, audio always (generated, or audio_url).".into(),
            resolutions: all.clone(),
            default_resolution: Resolution::P1080,
            durations: vec![5, 10],
            prompt_max: Some(1500),
            audio_url: true,
            price: unpriced("wan2.5-i2v-preview", " (no USD figure found)"),
            ..spec("wan2.5-i2v-preview")
        },
        ModelSpec {
            description: "Wan 2.2 plus: 5 s, 480p/1080p, silent.".into(),
            resolutions: vec![Resolution::P480, Resolution::P1080],
            default_resolution: Resolution::P1080,
            image_max_bytes: inline_cap(10),
            prompt_max: Some(800),
            price: unpriced("wan2.2-i2v-plus", " (no USD figure found)"),
            ..spec("wan2.2-i2v-plus")
        },
        ModelSpec {
            description: "Wan 2.2 flash: 5 s, 480p-1080p, silent.".into(),
            resolutions: all,
            default_resolution: Resolution::P720,
            image_max_bytes: inline_cap(10),
            prompt_max: Some(800),
            price: unpriced("wan2.2-i2v-flash", " (no USD figure found)"),
            ..spec("wan2.2-i2v-flash")
        },
    ]
    .into_iter()
    .chain(t2v_models())
    .chain(wan3_models())
    .collect()
}

fn is_wan3(model: &str) -> bool {
    model.starts_with("wan3.0-")
}

/// Per-second price at 480P / 720P / 1080P, the same with or without audio.
fn tiers(p480: f64, p720: f64, p1080: f64, source: &str) -> Price {
    let tier = |resolution, usd_per_second| Tier {
        resolution,
        audio: None,
        usd_per_second,
    };
    Price {
        by_resolution: vec![
            tier(Resolution::P480, p480),
            tier(Resolution::P720, p720),
            tier(Resolution::P1080, p1080),
        ],
        source: source.into(),
        ..Price::default()
    }
}

/// Wan 3.0 (A.6; every fact and its source in docs/notes/wan3.md). Both models take the same
/// request: `media[]` of `first_frame`/`last_frame`, or of `reference_image`/`reference_video`/
/// `reference_audio` (never both), or none (text-to-video). Resolution, duration and audio are
/// always sent: the documented defaults (1080P, audio on) would bill what nobody chose.
fn wan3_models() -> Vec<ModelSpec> {
    let base = |model: &str| {
        ModelSpec {
        resolutions: vec![Resolution::P480, Resolution::P720, Resolution::P1080],
        // Ours, not the provider's (1080P): the cheapest sensible tier.
        default_resolution: Resolution::P720,
        aspect_ratios: AspectRatio::ALL.to_vec(),
        durations: (2..=30).collect(),
        prompt_max: Some(20_000),
        prompt_optional: false,
        image_optional: true,
        explicit_defaults: true,
        // Up to 30 s at 1080P: Prime is said to make 15 s of 720P in about 2 min and the
        // standard tier to be 5-7x slower [SECONDARY], so a long standard task may run past the
        // default 30 min watch; the task lives 24 h (A.13). Watched 3 h at least.
        watch_at_least: Some(std::time::Duration::from_secs(3 * 3600)),
        references: Some(References {
            images: 10,
            videos: 5,
            audios: 5,
            video_seconds: 15,
            audio_seconds: 15,
            video_formats: &["mp4", "mov"],
            audio_formats: &["mp3", "wav"],
        }),
        // Second-hand: Wan 3.0 dropped both (docs/notes/wan3.md).
        negative_prompt: false,
        negative_prompt_max: None,
        prompt_extend: false,
        end_image: true,
        audio: true,
        note: Some("One model for three modes: image (+ end_image) for image-to-video, the prompt alone for text-to-video, or references (say Image 1, Video 1, Audio 1 in the prompt; not with image). Sent explicitly: resolution (720p unless asked), duration (5 s unless asked) and audio (off unless audio: true). Reference videos and audio go by https URL only, 15 s of each in total at most; images also as local files or data URIs. Preview on Alibaba's side; result URLs live 24 h.".into()),
        ..spec(model)
    }
    };
    vec![
        ModelSpec {
            description: "Wan 3.0: image-to-video (first or first+last frame), text-to-video or reference-to-video (images, videos, audio); 2-30 s, 480p-1080p, audio on request.".into(),
            price: tiers(0.05, 0.10, 0.20, "[SECONDARY] fal.ai alibaba/wan-3.0 lists $0.05/$0.10/$0.20 per second at 480p/720p/1080p; Venice's table is exactly 1.3x these; Alibaba's own international table UNREAD (docs/notes/wan3.md)"),
            ..base(WAN3)
        },
        ModelSpec {
            description: "Wan 3.0 Prime: the faster tier of Wan 3.0, same modes and limits; 2-30 s, 480p-1080p, audio on request.".into(),
            price: tiers(0.068, 0.14, 0.28, "[DERIVED, UNVERIFIED] Venice's Prime table ($0.0884/$0.182/$0.364 per second) divided by its 1.3x markup over fal.ai's Wan 3.0 price; no first- or reseller list price for Prime itself found (docs/notes/wan3.md)"),
            ..base(WAN3_PRIME)
        },
    ]
}

/// What every DashScope text-to-video model shares (A.5): no image; a prompt is required.
fn t2v_spec(model: &str) -> ModelSpec {
    spec(model).text_only()
}

/// A.5, A.12. Legacy (`size`) models offer 16:9 only: the other sizes per tier are [SECONDARY]
/// and UNVERIFIED for DashScope (A.5.2), so they are not sent.
fn t2v_models() -> Vec<ModelSpec> {
    let wide = vec![AspectRatio::Auto, AspectRatio::Landscape];
    vec![
        ModelSpec {
            description: "Wan 2.7 text-to-video: 2-15 s, 720p/1080p, 16:9, 9:16 or 1:1, audio always (generated, or audio_url).".into(),
            resolutions: vec![Resolution::P720, Resolution::P1080],
            default_resolution: Resolution::P1080,
            aspect_ratios: AspectRatio::ALL.to_vec(),
            durations: (2..=15).collect(),
            prompt_max: Some(5000),
            audio_url: true,
            price: unpriced(WAN27_T2V, " (fal.ai, Runware quote 720p $0.10/s, 1080p $0.15/s)"),
            note: Some("Result URLs live 24 h.".into()),
            ..t2v_spec(WAN27_T2V)
        },
        ModelSpec {
            description: "Wan 2.6 text-to-video: 2-15 s, 720p/1080p 16:9, audio always (generated, or audio_url), multi-shot.".into(),
            resolutions: vec![Resolution::P720, Resolution::P1080],
            default_resolution: Resolution::P1080,
            aspect_ratios: wide.clone(),
            durations: (2..=15).collect(),
            prompt_max: Some(1500),
            audio_url: true,
            shot_type: true,
            price: unpriced("wan2.6-t2v", " (no USD figure found)"),
            ..t2v_spec("wan2.6-t2v")
        },
        ModelSpec {
            description: "Wan 2.5 preview text-to-video: 5/10 s, 480p-1080p 16:9, audio always (generated, or audio_url).".into(),
            resolutions: vec![Resolution::P480, Resolution::P720, Resolution::P1080],
            default_resolution: Resolution::P1080,
            aspect_ratios: wide.clone(),
            durations: vec![5, 10],
            prompt_max: Some(1500),
            audio_url: true,
            price: unpriced("wan2.5-t2v-preview", " (no USD figure found)"),
            ..t2v_spec("wan2.5-t2v-preview")
        },
        ModelSpec {
            description: "Wan 2.2 plus text-to-video: 5 s, 480p/1080p 16:9, silent.".into(),
            resolutions: vec![Resolution::P480, Resolution::P1080],
            default_resolution: Resolution::P1080,
            aspect_ratios: wide,
            prompt_max: Some(800),
            price: unpriced("wan2.2-t2v-plus", " (no USD figure found)"),
            ..t2v_spec("wan2.2-t2v-plus")
        },
    ]
}

pub struct Client {
    api: Api,
}

// ---- wire types (private to this provider) ----

/// A.2: `{model, input, parameters}` for either protocol.
#[derive(Debug, Serialize)]
pub(crate) struct CreateBody {
    model: String,
    input: Input,
    parameters: Parameters,
}

#[derive(Debug, Default, Serialize)]
struct Input {
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_prompt: Option<String>,
    /// 2.7 (A.3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    media: Vec<Media>,
    /// First-frame protocol (A.4).
    #[serde(skip_serializing_if = "Option::is_none")]
    img_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio_url: Option<String>,
}

#[derive(Debug, Serialize)]
struct Media {
    #[serde(rename = "type")]
    kind: &'static str,
    url: String,
}

#[derive(Debug, Serialize)]
struct Parameters {
    /// Every model but the legacy text-to-video ones, which take `size` (A.5.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    resolution: Option<&'static str>,
    duration: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_extend: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shot_type: Option<String>,
    /// `wan2.6-i2v-flash` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    audio: Option<bool>,
    /// A.4: the default is contradictory between pages, so it is always sent.
    watermark: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    /// `wan2.7-t2v` (A.5.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio: Option<&'static str>,
    /// Legacy text-to-video: "W*H" (A.5.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<&'static str>,
}

/// A.2/A.7: the task envelope, or (without `output`) the error envelope. All optional.
#[derive(Debug, Default, Deserialize)]
struct Envelope {
    #[serde(default)]
    output: Option<Output>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    /// A.7: only on success, shape by model family: read leniently (`billed_seconds`).
    #[serde(default)]
    usage: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Output {
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default)]
    task_status: String,
    #[serde(default)]
    video_url: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

// ---- pure translation ----

fn image_url(img: &ImageInput) -> String {
    match img {
        ImageInput::Url(u) => u.clone(),
        ImageInput::Local(l) => l.data_uri(),
    }
}

/// `resolution` as the wire enum; `validate` already kept it to the model's list.
fn resolution(r: Resolution) -> &'static str {
    match r {
        Resolution::P480 | Resolution::P580 => "480P",
        Resolution::P720 => "720P",
        Resolution::P1080 => "1080P",
    }
}

/// A.5.2: the 16:9 size of a legacy text-to-video tier (`validate` kept the tier to the model's).
fn size(r: Resolution) -> &'static str {
    match r {
        Resolution::P480 | Resolution::P580 => "832*480",
        Resolution::P720 => "1280*720",
        Resolution::P1080 => "1920*1080",
    }
}

/// A.5.1: `ratio` of `wan2.7-t2v`; `auto` leaves the model's default (16:9).
fn ratio(a: Option<AspectRatio>) -> Option<&'static str> {
    match a? {
        AspectRatio::Auto => None,
        AspectRatio::Landscape => Some("16:9"),
        AspectRatio::Portrait => Some("9:16"),
        AspectRatio::Square => Some("1:1"),
    }
}

/// The create body: `media[]` for 2.7 (A.3), `img_url` for the other i2v models (A.4), prompt
/// and audio only for text-to-video (A.5).
pub(crate) fn create_body(s: &Submission<'_>) -> CreateBody {
    if is_wan3(&s.spec.model) {
        return wan3_body(s);
    }
    let req = s.req;
    let wan27 = s.spec.model == WAN27;
    let legacy_t2v = s.spec.text_to_video && s.spec.model != WAN27_T2V;
    let mut input = Input {
        prompt: Some(req.prompt.clone()).filter(|p| !p.trim().is_empty()),
        // In `input` for every model, the legacy text-to-video ones too (issue 21): the official
        // SDK (`dashscope` 2.0.2, `aigc/video_synthesis.py` `_get_input`) places it there; the
        // intl legacy t2v page's `parameters.negative_prompt` (A.5.2) is not followed.
        negative_prompt: req.negative_prompt.clone(),
        ..Input::default()
    };
    if wan27 {
        if let Some(img) = s.image {
            input.media.push(Media {
                kind: "first_frame",
                url: image_url(img),
            });
        }
        if let Some(end) = s.end_image {
            input.media.push(Media {
                kind: "last_frame",
                url: image_url(end),
            });
        }
        // A.3: audio only by URL (no Base64), checked as http(s) by `validate`.
        if let Some(audio) = &req.audio_url {
            input.media.push(Media {
                kind: "driving_audio",
                url: audio.clone(),
            });
        }
    } else {
        input.img_url = s.image.map(image_url);
        input.audio_url = req.audio_url.clone();
    }
    let tier = req.resolution.unwrap_or(s.spec.default_resolution);
    CreateBody {
        model: s.spec.model.clone(),
        input,
        parameters: Parameters {
            resolution: Some(resolution(tier)).filter(|_| !legacy_t2v),
            size: Some(size(tier)).filter(|_| legacy_t2v),
            ratio: ratio(req.aspect_ratio).filter(|_| s.spec.model == WAN27_T2V),
            duration: req.duration_seconds.unwrap_or(s.spec.default_duration),
            prompt_extend: req.prompt_extend,
            shot_type: req.shot_type.clone().filter(|_| s.spec.shot_type),
            audio: req.audio.filter(|_| s.spec.audio),
            watermark: req.watermark.unwrap_or(false),
            seed: req.seed,
        },
    }
}

/// Wan 3.0 (A.6): frames or references in `media[]` (in the order given: that is how the prompt
/// names them, Image 1, Video 1, Audio 1), or no media for text-to-video. `resolution`,
/// `duration` and `audio` are always sent (never the provider's 1080P / audio-on defaults);
/// `ratio` only when a fixed one is asked (`auto` leaves `adaptive`, the documented default).
fn wan3_body(s: &Submission<'_>) -> CreateBody {
    let req = s.req;
    let mut input = Input {
        prompt: Some(req.prompt.clone()).filter(|p| !p.trim().is_empty()),
        ..Input::default()
    };
    let frames = [("first_frame", s.image), ("last_frame", s.end_image)];
    for (kind, img) in frames {
        if let Some(img) = img {
            input.media.push(Media {
                kind,
                url: image_url(img),
            });
        }
    }
    for r in s.references {
        input.media.push(match r {
            crate::media::Reference::Image(img) => Media {
                kind: "reference_image",
                url: image_url(img),
            },
            crate::media::Reference::Video(u) => Media {
                kind: "reference_video",
                url: u.clone(),
            },
            crate::media::Reference::Audio(u) => Media {
                kind: "reference_audio",
                url: u.clone(),
            },
        });
    }
    CreateBody {
        model: s.spec.model.clone(),
        input,
        parameters: Parameters {
            resolution: Some(resolution(
                req.resolution.unwrap_or(s.spec.default_resolution),
            )),
            duration: req.duration_seconds.unwrap_or(s.spec.default_duration),
            audio: Some(req.audio.unwrap_or(false)),
            watermark: req.watermark.unwrap_or(false),
            seed: req.seed,
            ratio: ratio(req.aspect_ratio),
            prompt_extend: None,
            shot_type: None,
            size: None,
        },
    }
}

/// The models DashScope serves in this catalog, newest first, for "model not found" answers.
fn current_models() -> String {
    let mut names: Vec<String> = models()
        .into_iter()
        .filter(|m| m.retired_on.is_none())
        .map(|m| m.model)
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.clone()));
    names.join(", ")
}

/// A.10 / A.6: an answer saying the model does not exist (retired, renamed, or not served in
/// this region). The message pattern is [SECONDARY] (docs/notes/wan3.md): both are matched.
fn is_model_not_found(code: &str, message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    matches!(code, "ModelNotFound" | "model_not_found")
        || m.contains("model not exist")
        || m.contains("model not found")
        || m.contains("model does not exist")
}

/// The task id of a 2xx create answer (A.2). Anything else is unreadable: the task may exist.
fn parse_create(body: &[u8]) -> Result<String, String> {
    let env: Envelope = serde_json::from_slice(body).map_err(|e| {
        format!(
            "create: the DashScope answer does not parse ({e}); it began: {}",
            snippet(body)
        )
    })?;
    env.output
        .and_then(|o| o.task_id)
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| {
            format!(
                "create: the DashScope answer has no output.task_id; it began: {}",
                snippet(body)
            )
        })
}

/// A.10: what an error `code` means; an unknown code goes by the HTTP status. 429 is split:
/// throttling passes, billing does not.
fn category_for(code: &str, status: u16) -> Category {
    match code {
        c if c.starts_with("Throttling") => Category::RateLimited,
        "CommodityNotPurchased"
        | "PrepaidBillOverdue"
        | "PostpaidBillOverdue"
        | "Arrearage"
        | "AllocationQuota.FreeTierOnly" => Category::Credits,
        c if c.starts_with("InvalidParameter")
            || c.starts_with("InvalidFile")
            || c == "InvalidURL"
            || c == "DataInspectionFailed" =>
        {
            Category::InvalidInput
        }
        "InvalidApiKey" | "NOT AUTHORIZED" => Category::Auth,
        c if c.starts_with("AccessDenied") || c.ends_with(".AccessDenied") => Category::Auth,
        "ModelNotFound" | "model_not_found" => Category::NotFound,
        "InternalError" => Category::ProviderUnavailable,
        // A.11: what happens over the concurrency cap is UNKNOWN; an unlisted 429 is taken as a
        // rate limit (back off), since the request surely created nothing.
        _ if status >= 500 => Category::ProviderUnavailable,
        _ => http::category_for_status(status),
    }
}

/// Advice beyond the generic: region mismatches and the async header are DashScope's own.
fn next_step(code: &str, category: Category) -> Option<String> {
    let specific = match code {
        "InvalidApiKey" | "NOT AUTHORIZED" | "ModelNotFound" | "model_not_found" => Some(
            "the key, the base URL and the model must be of one region: check DASHSCOPE_API_KEY and I2V_MCP_DASHSCOPE_BASE_URL",
        ),
        "InvalidParameter.DataInspection" => {
            Some("the image download timed out: pass a local file (sent inline) or host it nearer")
        }
        "DataInspectionFailed" => {
            Some("the content filter refused the input: change the prompt or image")
        }
        c if c.starts_with("InvalidFile") => {
            Some("use a JPEG, PNG, BMP or WebP image of 240-8000 px a side, aspect within 1:8-8:1")
        }
        _ => None,
    };
    specific
        .map(String::from)
        .or_else(|| http::next_step(category, key_env()))
}

/// An error envelope (any status) as a `ProviderError`; 5xx to a create is `Unknown`.
fn failure(reply: &Reply, what: &str) -> ProviderError {
    let env: Envelope = serde_json::from_slice(&reply.body).unwrap_or_default();
    let code = env.code.unwrap_or_default();
    let message = env
        .message
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| snippet(&reply.body));
    let mut category = category_for(&code, reply.status);
    let gone = is_model_not_found(&code, &message) && reply.status < 500;
    if gone {
        category = Category::Unsupported;
    }
    let request = env
        .request_id
        .map_or(String::new(), |r| format!(" (request {r})"));
    let mut pe = http::failure(
        reply,
        category,
        format!(
            "{what}: DashScope answered HTTP {} {code}: {message}{request}",
            reply.status
        ),
        key_env(),
    );
    pe.error.next_step = next_step(&code, category);
    if gone {
        pe.error.message = format!(
            "{}; the model is retired, renamed or not served in this region. Current DashScope models: {}",
            pe.error.message,
            current_models()
        );
        pe.error.next_step = Some(
            "pick a current model (list_models), and check that DASHSCOPE_API_KEY and I2V_MCP_DASHSCOPE_BASE_URL are of the region that serves it".into(),
        );
    }
    pe
}

/// Unix ms at which a result URL dies: its signed `Expires` (unix s) if present, else 24 h from
/// `now` (A.7, A.13).
fn expires_at(url: &str, now: i64) -> i64 {
    let signed = url
        .split_once('?')
        .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("Expires=")))
        .and_then(|v| v.parse::<i64>().ok())
        .map(|s| s.saturating_mul(1000));
    signed.unwrap_or(now + URL_LIFETIME_MS)
}

/// A.7/A.12: the billed seconds in `usage` (`duration`; wan2.1: `video_duration`), a number or
/// a numeric string. Anything else reads as unknown: `usage` never fails a poll.
fn billed_seconds(usage: Option<&serde_json::Value>) -> Option<f64> {
    let usage = usage?.as_object()?;
    let v = usage
        .get("duration")
        .or_else(|| usage.get("video_duration"))?;
    let secs = match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    (secs.is_finite() && secs >= 0.0).then_some(secs)
}

/// A.7: a task envelope as a snapshot. `UNKNOWN` (expired or not found) is a `not_found`
/// error, so the watcher fails the task only after several in a row (a task may be briefly
/// unknown right after create, UNVERIFIED). An envelope without `output` is an error body.
fn parse_task(reply: &Reply, now: i64) -> Result<Snapshot, ProviderError> {
    let env: Envelope = http::parse(reply, Stage::Poll, "DashScope task")?;
    let Some(out) = env.output else {
        return Err(failure(reply, "poll"));
    };
    let raw = out.task_status.clone();
    let status = match raw.as_str() {
        "PENDING" => Status::Queued,
        "RUNNING" => Status::Running,
        "SUCCEEDED" => Status::Succeeded,
        "FAILED" => Status::Failed,
        "CANCELED" => Status::Cancelled,
        "UNKNOWN" => {
            return Err(ProviderError::rejected(
                Error::new(
                    Category::NotFound,
                    "poll: DashScope reports the task UNKNOWN (not found, or past its 24 h window)",
                )
                .with_next_step("create a new task"),
            ));
        }
        other => super::unknown_status(ProviderId::Dashscope, other),
    };
    let mut snap = Snapshot::new(status, raw);
    match status {
        Status::Succeeded => {
            snap.billed_seconds = billed_seconds(env.usage.as_ref());
            snap.url_expires_at = out.video_url.as_deref().map(|u| expires_at(u, now));
            snap.require_video(out.video_url, || {
                http::no_video(
                    "DashScope reported success without output.video_url",
                    "create a new task",
                )
            });
        }
        Status::Failed => {
            let code = out.code.map_or(String::new(), |c| format!(" ({c})"));
            snap.error = Some(http::failed_because("DashScope", &code, out.message));
        }
        Status::Queued | Status::Running | Status::Cancelled => {}
    }
    Ok(snap)
}

impl Client {
    pub fn new(cfg: &ProviderConfig, http: http::HttpClient) -> Self {
        Client {
            api: Api::new(ProviderId::Dashscope, cfg, http),
        }
    }

    pub async fn submit(&self, s: &Submission<'_>) -> Result<String, ProviderError> {
        let body = create_body(s);
        let reply = self
            .api
            .post_with(CREATE_PATH, &[ASYNC], &body, Stage::Create)
            .await?;
        if !reply.is_success() {
            return Err(failure(&reply, "create"));
        }
        parse_create(&reply.body).map_err(|m| http::unreadable(Stage::Create, m))
    }

    pub async fn poll(&self, ptid: &str) -> Result<Snapshot, ProviderError> {
        let reply = self
            .api
            .get(&format!("/tasks/{ptid}"), &[], Stage::Poll)
            .await?;
        if !reply.is_success() {
            return Err(failure(&reply, "poll"));
        }
        parse_task(&reply, now_ms())
    }

    /// A.8: only a `PENDING` task can be cancelled; the state is read first, so a running task
    /// is answered without a call whose reply is UNKNOWN.
    pub async fn cancel(&self, ptid: &str) -> Result<CancelOutcome, ProviderError> {
        let snap = self.poll(ptid).await?;
        if snap.status != Status::Queued {
            return Ok(CancelOutcome::NotCancelled(format!(
                "DashScope cancels only queued (PENDING) tasks; this one is {}",
                snap.raw_status
            )));
        }
        let reply = self
            .api
            .execute(
                reqwest::Method::POST,
                &format!("/tasks/{ptid}/cancel"),
                &[],
                None,
                Stage::Cancel,
            )
            .await?;
        if reply.is_success() {
            return Ok(CancelOutcome::Cancelled);
        }
        let pe = failure(&reply, "cancel");
        match pe.error.category {
            // It started meanwhile, or DashScope refused for its own reason: say so.
            Category::InvalidInput | Category::NotFound => {
                Ok(CancelOutcome::NotCancelled(pe.error.message))
            }
            _ => Err(pe),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CreateRequest;
    use crate::providers::Acceptance;
    use crate::providers::http::reply;
    use serde_json::{Value, json};

    fn body(
        model: &str,
        req: &CreateRequest,
        image: &ImageInput,
        end: Option<&ImageInput>,
    ) -> Value {
        let s = crate::providers::submission(
            &format!("dashscope/{model}"),
            req,
            Some(image),
            end,
            None,
        );
        serde_json::to_value(create_body(&s)).unwrap()
    }

    fn png() -> ImageInput {
        crate::providers::tiny_png()
    }

    fn url(u: &str) -> ImageInput {
        ImageInput::Url(u.into())
    }

    #[test]
    fn wan27_media_first_last_frame_and_driving_audio() {
        let req = CreateRequest {
            prompt: "The boy raps under a railway bridge.".into(),
            negative_prompt: Some("blur".into()),
            resolution: Some(Resolution::P720),
            duration_seconds: Some(10),
            prompt_extend: Some(true),
            audio_url: Some("https://example.com/rap.mp3".into()),
            seed: Some(7),
            ..CreateRequest::default()
        };
        let end = url("https://example.com/end.png");
        assert_eq!(
            body(WAN27, &req, &png(), Some(&end)),
            json!({
                "model": "wan2.7-i2v",
                "input": {
                    "prompt": "The boy raps under a railway bridge.",
                    "negative_prompt": "blur",
                    "media": [
                        {"type": "first_frame", "url": "data:image/png;base64,iVBORw=="},
                        {"type": "last_frame", "url": "https://example.com/end.png"},
                        {"type": "driving_audio", "url": "https://example.com/rap.mp3"}
                    ]
                },
                "parameters": {"resolution": "720P", "duration": 10, "prompt_extend": true, "watermark": false, "seed": 7}
            })
        );
    }

    #[test]
    fn first_frame_protocol_with_defaults_and_flash_audio_switch() {
        let req = CreateRequest {
            prompt: "A cat running on the grass".into(),
            audio: Some(false),
            shot_type: Some("multi".into()),
            ..CreateRequest::default()
        };
        assert_eq!(
            body("wan2.6-i2v-flash", &req, &png(), None),
            json!({
                "model": "wan2.6-i2v-flash",
                "input": {"prompt": "A cat running on the grass", "img_url": "data:image/png;base64,iVBORw=="},
                "parameters": {"resolution": "1080P", "duration": 5, "shot_type": "multi", "audio": false, "watermark": false}
            })
        );
        let req = CreateRequest::default();
        assert_eq!(
            body("wan2.2-i2v-flash", &req, &url("https://x.test/a.jpg"), None),
            json!({
                "model": "wan2.2-i2v-flash",
                "input": {"img_url": "https://x.test/a.jpg"},
                "parameters": {"resolution": "720P", "duration": 5, "watermark": false}
            })
        );
    }

    /// Issue 21: the official SDK (`dashscope` 2.0.2, `aigc/video_synthesis.py` `_get_input`)
    /// puts `negative_prompt` in `input` for every model, the legacy text-to-video ones included.
    #[test]
    fn legacy_t2v_negative_prompt_goes_in_input() {
        let req = CreateRequest {
            prompt: "A kitten on a moonlit roof".into(),
            negative_prompt: Some("blur".into()),
            resolution: Some(Resolution::P720),
            duration_seconds: Some(12),
            seed: Some(3),
            ..CreateRequest::default()
        };
        for model in ["wan2.6-t2v", "wan2.5-t2v-preview", "wan2.2-t2v-plus"] {
            let s =
                crate::providers::submission(&format!("dashscope/{model}"), &req, None, None, None);
            let b = serde_json::to_value(create_body(&s)).unwrap();
            assert_eq!(b["input"]["negative_prompt"], "blur", "{model}: {b}");
            assert!(
                b["parameters"].get("negative_prompt").is_none(),
                "{model}: {b}"
            );
            assert_eq!(
                b["parameters"]["size"],
                size(Resolution::P720),
                "{model}: {b}"
            );
        }
    }

    #[test]
    fn a_create_answer_gives_the_task_id_and_anything_else_is_submit_unknown() {
        let ok = r#"{"output":{"task_status":"PENDING","task_id":"0385dc79"},"request_id":"4909"}"#;
        assert_eq!(parse_create(ok.as_bytes()).unwrap(), "0385dc79");
        for bad in [
            r#"{"output":{"task_id":"#,
            r#"{"request_id":"x"}"#,
            "<html>",
        ] {
            let m = parse_create(bad.as_bytes()).unwrap_err();
            let pe = http::unreadable(Stage::Create, m);
            assert_eq!(pe.error.category, Category::SubmitUnknown, "{bad}");
            assert_eq!(pe.acceptance, Acceptance::Unknown);
        }
    }

    fn poll(body: &str) -> Result<Snapshot, ProviderError> {
        parse_task(&reply(200, body), 1_000)
    }

    #[test]
    fn every_status_maps() {
        let st = |s: &str| {
            poll(&format!(
                r#"{{"output":{{"task_id":"t","task_status":"{s}"}}}}"#
            ))
            .unwrap()
            .status
        };
        assert_eq!(st("PENDING"), Status::Queued);
        assert_eq!(st("RUNNING"), Status::Running);
        assert_eq!(st("CANCELED"), Status::Cancelled);
        assert_eq!(st("SOMETHING_NEW"), Status::Running);
        let ok = poll(r#"{"request_id":"2ca1","output":{"task_id":"af6e","task_status":"SUCCEEDED","video_url":"https://r.test/x.mp4?Expires=1700000000&Signature=s"},"usage":{"duration":10,"SR":720}}"#).unwrap();
        assert_eq!(ok.status, Status::Succeeded);
        assert_eq!(ok.billed_seconds, Some(10.0));
        assert_eq!(ok.url_expires_at, Some(1_700_000_000_000));
        let ok = poll(r#"{"output":{"task_status":"SUCCEEDED","video_url":"https://r.test/x.mp4"},"usage":{"duration":5.13,"SR":"720"}}"#).unwrap();
        assert_eq!(ok.url_expires_at, Some(1_000 + URL_LIFETIME_MS));
        assert_eq!(ok.billed_seconds, Some(5.13));
        let none = poll(r#"{"output":{"task_status":"SUCCEEDED"}}"#).unwrap();
        assert_eq!(none.status, Status::Failed);
        let failed = poll(r#"{"request_id":"e5d7","output":{"task_id":"86ec","task_status":"FAILED","code":"InvalidParameter","message":"The size is not match xxxxxx"}}"#).unwrap();
        assert_eq!(failed.status, Status::Failed);
        let e = failed.error.unwrap();
        assert_eq!(e.category, Category::GenerationFailed);
        assert!(
            e.message
                .contains("(InvalidParameter): The size is not match"),
            "{}",
            e.message
        );
    }

    #[test]
    fn billed_seconds_are_read_leniently_and_never_fail_a_poll() {
        let secs = |usage: &str| {
            let body = format!(
                r#"{{"output":{{"task_status":"SUCCEEDED","video_url":"https://r.test/x.mp4"}},"usage":{usage}}}"#
            );
            let snap = poll(&body).unwrap();
            assert_eq!(snap.status, Status::Succeeded, "{usage}");
            snap.billed_seconds
        };
        assert_eq!(secs(r#"{"duration":"13.24"}"#), Some(13.24));
        assert_eq!(
            secs(r#"{"video_duration":4,"video_ratio":"standard"}"#),
            Some(4.0)
        );
        for odd in [
            r#"{"duration":"soon"}"#,
            r#"{"duration":-1}"#,
            r#"{"duration":null}"#,
            "[1]",
            "7",
            "null",
            "{}",
        ] {
            assert_eq!(secs(odd), None, "{odd}");
        }
        let none =
            poll(r#"{"output":{"task_status":"SUCCEEDED","video_url":"https://r.test/x.mp4"}}"#)
                .unwrap();
        assert_eq!(none.billed_seconds, None);
    }

    #[test]
    fn unknown_is_a_permanent_poll_failure_and_a_bad_body_passes() {
        let pe =
            poll(r#"{"request_id":"a4de","output":{"task_id":"502a","task_status":"UNKNOWN"}}"#)
                .unwrap_err();
        assert_eq!(pe.error.category, Category::NotFound);
        assert_eq!(pe.acceptance, Acceptance::Rejected);
        let pe = poll("{not json").unwrap_err();
        assert!(pe.error.category.is_retryable(), "{:?}", pe.error);
        // The error envelope behind a 2xx.
        let pe = poll(
            r#"{"code":"InvalidApiKey","message":"No API-key provided.","request_id":"7438"}"#,
        )
        .unwrap_err();
        assert_eq!(pe.error.category, Category::Auth);
    }

    #[test]
    fn error_bodies_map_to_categories() {
        let cases = [
            (400, "InvalidParameter", Category::InvalidInput),
            (400, "InvalidFile.Resolution", Category::InvalidInput),
            (400, "DataInspectionFailed", Category::InvalidInput),
            (401, "InvalidApiKey", Category::Auth),
            (403, "AccessDenied", Category::Auth),
            (403, "Model.AccessDenied", Category::Auth),
            (404, "ModelNotFound", Category::Unsupported),
            (429, "Throttling.RateQuota", Category::RateLimited),
            (429, "PrepaidBillOverdue", Category::Credits),
            (429, "SomethingNew", Category::RateLimited),
            (500, "InternalError", Category::ProviderUnavailable),
            (502, "", Category::ProviderUnavailable),
        ];
        for (status, code, want) in cases {
            let r = reply(
                status,
                &json!({"code": code, "message": "m", "request_id": "r"}).to_string(),
            );
            let pe = failure(&r, "create");
            assert_eq!(pe.error.category, want, "{status} {code}");
            assert_eq!(
                pe.acceptance == Acceptance::Unknown,
                status >= 500,
                "{status} {code}"
            );
        }
        let pe = failure(
            &reply(401, r#"{"code":"InvalidApiKey","message":"bad"}"#),
            "create",
        );
        assert!(pe.error.next_step.unwrap().contains("one region"));
        let pe = failure(
            &reply(429, r#"{"code":"Throttling","message":"slow down"}"#),
            "create",
        );
        assert!(pe.create_may_retry());
    }

    fn wan3(
        model: &str,
        req: &CreateRequest,
        image: Option<&ImageInput>,
        end: Option<&ImageInput>,
        refs: &[crate::media::Reference],
    ) -> Value {
        let mut s =
            crate::providers::submission(&format!("dashscope/{model}"), req, image, end, None);
        s.references = refs;
        serde_json::to_value(create_body(&s)).unwrap()
    }

    #[test]
    fn wan3_always_sends_resolution_duration_and_audio() {
        let req = CreateRequest {
            prompt: "A lighthouse at dusk".into(),
            ..CreateRequest::default()
        };
        // Text to video: no media, our defaults (720P, 5 s, audio off) sent, never omitted.
        assert_eq!(
            wan3(WAN3, &req, None, None, &[]),
            json!({
                "model": "wan3.0-video",
                "input": {"prompt": "A lighthouse at dusk"},
                "parameters": {"resolution": "720P", "duration": 5, "audio": false, "watermark": false}
            })
        );
        let req = CreateRequest {
            prompt: "The cat jumps".into(),
            resolution: Some(Resolution::P1080),
            duration_seconds: Some(30),
            audio: Some(true),
            aspect_ratio: Some(AspectRatio::Portrait),
            seed: Some(3),
            ..CreateRequest::default()
        };
        let end = url("https://example.com/end.png");
        assert_eq!(
            wan3(WAN3_PRIME, &req, Some(&png()), Some(&end), &[]),
            json!({
                "model": "wan3.0-video-prime",
                "input": {"prompt": "The cat jumps", "media": [
                    {"type": "first_frame", "url": "data:image/png;base64,iVBORw=="},
                    {"type": "last_frame", "url": "https://example.com/end.png"}
                ]},
                "parameters": {"resolution": "1080P", "duration": 30, "audio": true, "watermark": false, "seed": 3, "ratio": "9:16"}
            })
        );
    }

    #[test]
    fn wan3_references_keep_their_order_and_kind() {
        use crate::media::Reference;
        let req = CreateRequest {
            prompt: "Image 1 dances to Audio 1 like Video 1".into(),
            ..CreateRequest::default()
        };
        let refs = [
            Reference::Image(png()),
            Reference::Video("https://example.com/walk.mp4".into()),
            Reference::Audio("https://example.com/voice.mp3".into()),
            Reference::Image(url("https://example.com/b.jpg")),
        ];
        assert_eq!(
            wan3(WAN3, &req, None, None, &refs)["input"]["media"],
            json!([
                {"type": "reference_image", "url": "data:image/png;base64,iVBORw=="},
                {"type": "reference_video", "url": "https://example.com/walk.mp4"},
                {"type": "reference_audio", "url": "https://example.com/voice.mp3"},
                {"type": "reference_image", "url": "https://example.com/b.jpg"}
            ])
        );
    }

    #[test]
    fn model_not_found_on_any_model_is_unsupported_naming_current_models() {
        for body in [
            r#"{"code":"ModelNotFound","message":"Model not found: wan2.6-i2v","request_id":"r"}"#,
            r#"{"code":"InvalidParameter","message":"Model not exist.","request_id":"r"}"#,
        ] {
            let pe = failure(&reply(400, body), "create");
            assert_eq!(pe.error.category, Category::Unsupported, "{body}");
            assert_eq!(pe.acceptance, Acceptance::Rejected);
            assert!(
                pe.error.message.contains("wan3.0-video, "),
                "{}",
                pe.error.message
            );
            assert!(
                pe.error.message.contains("wan2.7-i2v"),
                "{}",
                pe.error.message
            );
        }
        // Another InvalidParameter stays invalid input.
        let pe = failure(
            &reply(400, r#"{"code":"InvalidParameter","message":"duration"}"#),
            "create",
        );
        assert_eq!(pe.error.category, Category::InvalidInput);
    }

    #[test]
    fn models_follow_the_contract() {
        let ms = models();
        assert_eq!(ms[0].model, WAN27, "2.7 is the default");
        let by = |m: &str| ms.iter().find(|s| s.model == m).unwrap();
        assert!(by(WAN27).end_image && !by("wan2.6-i2v").end_image);
        assert_eq!(by("wan2.5-i2v-preview").durations, vec![5, 10]);
        assert_eq!(by("wan2.2-i2v-plus").image_max_bytes, 10 * MB / 4 * 3);
        assert!(
            ms.iter()
                .filter(|m| !is_wan3(&m.model))
                .all(|m| !m.price.is_known() && m.price.source.contains("[pricing"))
        );
        for m in [by(WAN3), by(WAN3_PRIME)] {
            assert!(m.price.is_known() && m.price.source.contains("wan3.md"));
            assert_eq!(m.durations, (2..=30).collect::<Vec<u32>>());
            assert_eq!(m.default_resolution, Resolution::P720);
            assert!(
                m.image_optional && m.explicit_defaults && !m.negative_prompt && !m.prompt_extend
            );
        }
    }
}
