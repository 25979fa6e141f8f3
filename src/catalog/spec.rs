//! What a model is, in facts a provider declares (`providers::Declaration::models`): what it can
//! do, its limits, and its price with the source of that price. Types and pure helpers only, below
//! every provider module; the gathered catalog is in [`crate::catalog`].

use rmcp::schemars::{self, JsonSchema};
use serde::Serialize;

use crate::model::{AspectRatio, ProviderId, Resolution};

/// How a model can receive the source image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageDelivery {
    /// Local files and data URIs are sent inline as base64.
    InlineBase64,
    /// Local files and data URIs are sent inline as a data URI.
    InlineDataUri,
    /// Local files and data URIs are uploaded through the provider's upload API first.
    Upload,
    /// Only http(s) URLs; local files are refused.
    UrlOnly,
    /// Read locally (built-in renderer).
    Local,
}

/// An inclusive numeric range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

pub(crate) const fn range(min: f64, max: f64) -> Option<Range> {
    Some(Range { min, max })
}

/// Price as published (or not).
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct Price {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd_per_video: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd_per_second: Option<f64>,
    /// Per-second prices by output resolution (and audio), where they differ; these win over
    /// `usd_per_second` for the resolution they name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub by_resolution: Vec<Tier>,
    /// Where the price comes from, or why there is none.
    pub source: String,
}

/// One per-second price for one output resolution.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Tier {
    pub resolution: Resolution,
    /// Only with (true) or without (false) audio; absent: either.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<bool>,
    pub usd_per_second: f64,
}

impl Price {
    pub fn is_known(&self) -> bool {
        self.usd_per_video.is_some()
            || self.usd_per_second.is_some()
            || !self.by_resolution.is_empty()
    }

    /// The tier for `resolution` and `audio`, if one is listed: a tier naming the audio wins over
    /// one that takes either.
    pub fn tier(&self, resolution: Resolution, audio: bool) -> Option<&Tier> {
        let at = |r: Resolution| self.by_resolution.iter().filter(move |t| t.resolution == r);
        at(resolution)
            .find(|t| t.audio == Some(audio))
            .or_else(|| at(resolution).find(|t| t.audio.is_none()))
    }

    /// A short human form: "$0.28/video", "$0.1/s", "720p $0.1/s, 1080p $0.15/s", "unpriced".
    pub fn short(&self) -> String {
        if let Some(v) = self.usd_per_video {
            return format!("${v}/video");
        }
        let mut parts: Vec<String> = self
            .by_resolution
            .iter()
            .map(|t| {
                let audio = match t.audio {
                    Some(true) => " audio",
                    Some(false) => " silent",
                    None => "",
                };
                format!("{}{audio} ${}/s", t.resolution.as_str(), t.usd_per_second)
            })
            .collect();
        if let Some(s) = self.usd_per_second {
            let label = if parts.is_empty() { "" } else { "other " };
            parts.push(format!("{label}${s}/s"));
        }
        if parts.is_empty() {
            "unpriced".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Capabilities and limits of one provider x model.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ModelSpec {
    pub provider: ProviderId,
    pub model: String,
    pub description: String,
    /// False for the built-in preview, which uses no AI model.
    pub ai: bool,
    /// Makes a video from the prompt alone: takes no image.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub text_to_video: bool,
    /// Takes an image or none (one model for image-to-video and text-to-video).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub image_optional: bool,
    /// Resolution, duration and audio are always sent, audio off unless asked: the provider's
    /// own defaults (1080P, audio on) are never billed by omission (internal: not listed).
    #[serde(skip)]
    pub explicit_defaults: bool,
    /// The least time a task is watched before it is given up, where the model can take longer
    /// than `[poll] give_up_minutes` (internal: not listed).
    #[serde(skip)]
    pub watch_at_least: Option<std::time::Duration>,
    /// Reference media it takes (`references`), and their limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub references: Option<References>,
    pub image_delivery: ImageDelivery,
    pub image_formats: Vec<String>,
    pub image_max_bytes: u64,
    /// Min and max width/height in px, where the provider documents them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_px: Option<Range>,
    /// PNG with an alpha channel refused.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_alpha: bool,
    pub resolutions: Vec<Resolution>,
    pub default_resolution: Resolution,
    pub aspect_ratios: Vec<AspectRatio>,
    pub durations: Vec<u32>,
    pub default_duration: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_max: Option<u32>,
    /// An empty prompt is accepted (internal: not listed).
    #[serde(skip)]
    pub prompt_optional: bool,
    /// Whether negative_prompt is accepted; its max length if known.
    pub negative_prompt: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt_max: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<Range>,
    /// Max LoRAs per request (0 = none).
    pub max_loras: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora_strength: Option<Range>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_speed: Option<Range>,
    pub camera_motion: bool,
    pub end_image: bool,
    pub audio: bool,
    pub audio_url: bool,
    pub prompt_extend: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Range>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<Range>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_shift: Option<Range>,
    pub shot_type: bool,
    pub watermark: bool,
    pub acceleration: bool,
    pub safety_checker: bool,
    /// Upstream cancel exists (maybe only while queued).
    pub cancel: bool,
    pub price: Price,
    /// Anything else an agent should know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The day (YYYY-MM-DD) the provider retired this model: creates are refused unless the
    /// provider's `allow_retired` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_on: Option<String>,
    /// What the provider named in its place, for a retired model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
}

/// How many reference images, videos and audio clips a model takes (reference-to-video), and the
/// total seconds allowed of each timed kind. Never combined with `image`/`end_image`. A reference
/// image has the model's `image_formats` and `image_max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, JsonSchema)]
pub struct References {
    pub images: u32,
    pub videos: u32,
    pub audios: u32,
    /// Total seconds of all reference videos.
    pub video_seconds: u32,
    /// Total seconds of all reference audio.
    pub audio_seconds: u32,
    pub video_formats: &'static [&'static str],
    pub audio_formats: &'static [&'static str],
}

/// A LoRA a model is known to take.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Lora {
    pub provider: ProviderId,
    pub model: String,
    pub name: String,
    pub description: String,
    pub default_strength: f64,
    pub strength_range: Range,
}

pub(crate) const TEN_MB: u64 = 10 * 1024 * 1024;

pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Price {
    /// No published price: why, and how to set one.
    pub fn unpublished(source: &str) -> Price {
        Price {
            source: source.into(),
            ..Price::default()
        }
    }
}

impl ModelSpec {
    /// A model that takes nothing optional: 5 s, 480p, JPEG/PNG/WebP up to 10 MB by URL, no
    /// price. Providers set what theirs can do over this (`..ModelSpec::base(..)`).
    pub fn base(provider: ProviderId, model: &str) -> ModelSpec {
        ModelSpec {
            provider,
            model: model.into(),
            description: String::new(),
            ai: true,
            text_to_video: false,
            image_optional: false,
            explicit_defaults: false,
            watch_at_least: None,
            references: None,
            image_delivery: ImageDelivery::UrlOnly,
            image_formats: strings(&["jpeg", "png", "webp"]),
            image_max_bytes: TEN_MB,
            image_px: None,
            no_alpha: false,
            resolutions: vec![Resolution::P480],
            default_resolution: Resolution::P480,
            aspect_ratios: vec![AspectRatio::Auto],
            durations: vec![5],
            default_duration: 5,
            prompt_max: None,
            prompt_optional: false,
            negative_prompt: false,
            negative_prompt_max: None,
            seed: None,
            max_loras: 0,
            lora_strength: None,
            camera_speed: None,
            camera_motion: false,
            end_image: false,
            audio: false,
            audio_url: false,
            prompt_extend: false,
            steps: None,
            guidance_scale: None,
            flow_shift: None,
            shot_type: false,
            watermark: false,
            acceleration: false,
            safety_checker: false,
            cancel: false,
            price: Price::unpublished(""),
            note: None,
            retired_on: None,
            replacement: None,
        }
    }
}

impl ModelSpec {
    /// This model as text-to-video: it takes no image (`validate` refuses one), so it lists no
    /// image limits, and it needs a prompt.
    pub fn text_only(self) -> ModelSpec {
        ModelSpec {
            text_to_video: true,
            image_formats: Vec::new(),
            image_max_bytes: 0,
            image_px: None,
            no_alpha: false,
            prompt_optional: false,
            ..self
        }
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.provider, self.model)
    }

    /// `key()`, marked when retired (for "who supports it" lists).
    pub(crate) fn listed_key(&self) -> String {
        match &self.retired_on {
            Some(on) => format!("{} (retired {on})", self.key()),
            None => self.key(),
        }
    }
}

/// `provider/model` keys of the `models` for which `has` holds, for "who supports it" messages.
pub fn who_supports_in(models: &[ModelSpec], has: impl Fn(&ModelSpec) -> bool) -> String {
    let keys: Vec<String> = models
        .iter()
        .filter(|m| has(m))
        .map(|m| m.listed_key())
        .collect();
    if keys.is_empty() {
        "no model".into()
    } else {
        keys.join(", ")
    }
}
