//! Every provider x model the server knows: what it can do, its limits, and its price with the
//! source of that price. A price nobody published is `None` with a note, never a guess; the user can
//! set one under `[pricing]`. Facts come from `shared/providers/CONTRACTS.md` (section named on each).

use std::sync::LazyLock;

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

const fn range(min: f64, max: f64) -> Option<Range> {
    Some(Range { min, max })
}

/// Price as published (or not).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Price {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd_per_video: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd_per_second: Option<f64>,
    /// Where the price comes from, or why there is none.
    pub source: String,
}

impl Price {
    pub fn is_known(&self) -> bool {
        self.usd_per_video.is_some() || self.usd_per_second.is_some()
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

const PIAPI_FORMATS: [&str; 3] = ["jpeg", "png", "webp"];
const TEN_MB: u64 = 10 * 1024 * 1024;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn wanx(provider: ProviderId) -> ModelSpec {
    ModelSpec {
        provider,
        model: "wan2.1-i2v-14b".into(),
        description: "Wan 2.1 14B (Qubico/wanx): 5 s, 480p. end_image -> keyframe, loras -> lora, camera_motion -> control-camera variant.".into(),
        ai: true,
        image_delivery: ImageDelivery::InlineBase64,
        image_formats: strings(&PIAPI_FORMATS),
        image_max_bytes: TEN_MB,
        image_px: None,
        no_alpha: false,
        resolutions: vec![Resolution::P480],
        default_resolution: Resolution::P480,
        aspect_ratios: vec![AspectRatio::Landscape, AspectRatio::Portrait],
        durations: vec![5],
        default_duration: 5,
        // CONTRACTS.md 1.2: prompt and negative prompt limits are UNKNOWN; no local limit is
        // enforced beyond the generic one in `validate`.
        prompt_max: None,
        negative_prompt: true,
        negative_prompt_max: None,
        seed: None,
        // CONTRACTS.md 1.2/1.3: only single-LoRA examples are documented; allowing one is the
        // defensive reading. Strength 0-1 is [SECONDARY].
        max_loras: 1,
        lora_strength: range(0.0, 1.0),
        // CONTRACTS.md 1.4: speed 0-10, default 0.2 [SECONDARY].
        camera_speed: range(0.0, 10.0),
        camera_motion: true,
        end_image: true,
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
        cancel: true,
        price: Price {
            usd_per_video: Some(0.28),
            usd_per_second: None,
            source: "PiAPI/Qubico WanX docs: $0.28 per 14B generation".into(),
        },
        note: Some("One of end_image, loras, camera_motion per request. Cancel works only while queued (WanX support unconfirmed).".into()),
    }
}

static MODELS: LazyLock<Vec<ModelSpec>> = LazyLock::new(|| {
    vec![
        wanx(ProviderId::Piapi),
        wanx(ProviderId::Qubico),
        // CONTRACTS.md 2.2, 2.7
        ModelSpec {
            provider: ProviderId::Novita,
            model: "wan2.1-i2v".into(),
            description: "Wan 2.1 on Novita: 5 s, 480p/720p, up to 3 LoRAs, image by URL only.".into(),
            ai: true,
            image_delivery: ImageDelivery::UrlOnly,
            image_formats: strings(&["jpeg", "png", "webp"]),
            image_max_bytes: TEN_MB,
            image_px: None,
            no_alpha: false,
            resolutions: vec![Resolution::P480, Resolution::P720],
            default_resolution: Resolution::P480,
            aspect_ratios: vec![AspectRatio::Auto, AspectRatio::Landscape, AspectRatio::Portrait],
            durations: vec![5],
            default_duration: 5,
            prompt_max: Some(2000),
            negative_prompt: true,
            negative_prompt_max: Some(2000),
            seed: range(-1.0, 9_999_999_999.0),
            max_loras: 3,
            // CONTRACTS.md 2.2: the scale range is UNKNOWN; 0-4 keeps obvious mistakes out.
            lora_strength: range(0.0, 4.0),
            camera_speed: None,
            camera_motion: false,
            end_image: false,
            audio: false,
            audio_url: false,
            prompt_extend: false,
            steps: range(1.0, 40.0),
            guidance_scale: range(0.0, 10.0),
            flow_shift: range(1.0, 10.0),
            shot_type: false,
            watermark: false,
            acceleration: false,
            safety_checker: true,
            cancel: false,
            price: Price {
                usd_per_video: None,
                usd_per_second: None,
                source: "unpublished: not found on any Novita page; set [pricing.\"novita/wan2.1-i2v\"]".into(),
            },
            note: Some("Output keeps the image's aspect; aspect_ratio only picks the width x height pair. LoRA name = LoRA path.".into()),
        },
        // CONTRACTS.md 2.3, 2.7
        ModelSpec {
            provider: ProviderId::Novita,
            model: "wan2.6-i2v".into(),
            description: "Wan 2.6 on Novita: 5/10/15 s, 720p/1080p, optional audio.".into(),
            ai: true,
            image_delivery: ImageDelivery::InlineDataUri,
            image_formats: strings(&["jpeg", "png", "bmp", "webp"]),
            image_max_bytes: TEN_MB,
            image_px: range(360.0, 2000.0),
            no_alpha: true,
            resolutions: vec![Resolution::P720, Resolution::P1080],
            default_resolution: Resolution::P720,
            aspect_ratios: vec![AspectRatio::Auto],
            durations: vec![5, 10, 15],
            default_duration: 5,
            prompt_max: Some(2000),
            negative_prompt: true,
            negative_prompt_max: Some(500),
            seed: range(0.0, 2_147_483_647.0),
            max_loras: 0,
            lora_strength: None,
            camera_speed: None,
            camera_motion: false,
            end_image: false,
            audio: true,
            audio_url: true,
            prompt_extend: true,
            steps: None,
            guidance_scale: None,
            flow_shift: None,
            shot_type: true,
            watermark: true,
            acceleration: false,
            safety_checker: false,
            cancel: false,
            price: Price {
                usd_per_video: None,
                usd_per_second: None,
                source: "unpublished on Novita (other vendors list $0.10/s 720p, $0.15/s 1080p); set [pricing.\"novita/wan2.6-i2v\"]".into(),
            },
            note: Some("Aspect follows the image.".into()),
        },
        // CONTRACTS.md 3.2, 3.7
        ModelSpec {
            provider: ProviderId::Apikley,
            model: "wan2.2-i2v-a14b-turbo".into(),
            description: "Wan 2.2 A14B turbo on Apikley: ~5 s, 480p/580p/720p, local images uploaded once.".into(),
            ai: true,
            image_delivery: ImageDelivery::Upload,
            image_formats: strings(&["jpeg", "png", "webp"]),
            image_max_bytes: TEN_MB,
            image_px: None,
            no_alpha: false,
            resolutions: vec![Resolution::P480, Resolution::P580, Resolution::P720],
            default_resolution: Resolution::P720,
            aspect_ratios: vec![
                AspectRatio::Auto,
                AspectRatio::Landscape,
                AspectRatio::Portrait,
                AspectRatio::Square,
            ],
            durations: vec![5],
            default_duration: 5,
            prompt_max: Some(5000),
            negative_prompt: false,
            negative_prompt_max: None,
            seed: range(0.0, 2_147_483_647.0),
            max_loras: 0,
            lora_strength: None,
            camera_speed: None,
            camera_motion: false,
            end_image: false,
            audio: false,
            audio_url: false,
            prompt_extend: true,
            steps: None,
            guidance_scale: None,
            flow_shift: None,
            shot_type: false,
            watermark: false,
            acceleration: true,
            safety_checker: false,
            cancel: false,
            price: Price {
                usd_per_video: None,
                usd_per_second: None,
                source: "unpublished by Apikley (third-party figures conflict); set [pricing.\"apikley/wan2.2-i2v-a14b-turbo\"]".into(),
            },
            note: None,
        },
        ModelSpec {
            provider: ProviderId::Local,
            model: "camera-preview".into(),
            description: "Built in, free, offline: renders the camera motion over the still image as H.264 MP4 (16 fps). No AI model.".into(),
            ai: false,
            image_delivery: ImageDelivery::Local,
            image_formats: strings(&["jpeg", "png", "webp", "bmp"]),
            image_max_bytes: 50 * 1024 * 1024,
            image_px: None,
            no_alpha: false,
            resolutions: vec![Resolution::P480, Resolution::P720],
            default_resolution: Resolution::P480,
            aspect_ratios: vec![
                AspectRatio::Auto,
                AspectRatio::Landscape,
                AspectRatio::Portrait,
                AspectRatio::Square,
            ],
            durations: vec![5, 10, 15],
            default_duration: 5,
            prompt_max: Some(2000),
            negative_prompt: false,
            negative_prompt_max: None,
            seed: None,
            max_loras: 0,
            lora_strength: None,
            camera_speed: range(
                crate::render::SPEED_MIN as f64,
                crate::render::SPEED_MAX as f64,
            ),
            camera_motion: true,
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
            cancel: true,
            price: Price {
                usd_per_video: Some(0.0),
                usd_per_second: None,
                source: "free: rendered locally".into(),
            },
            note: Some("Without camera_motion, a motion named in the prompt (\"slow zoom in\") is used, else a gentle zoom in.".into()),
        },
    ]
});

static LORAS: LazyLock<Vec<Lora>> = LazyLock::new(|| {
    let piapi = |provider: ProviderId, name: &str, description: &str| Lora {
        provider,
        model: "wan2.1-i2v-14b".into(),
        name: name.into(),
        description: description.into(),
        default_strength: 1.0,
        strength_range: Range { min: 0.0, max: 1.0 },
    };
    // CONTRACTS.md 1.3: `ghibli` is official; `inflate-effect` is [SECONDARY]. Other names are
    // passed through as free strings, never refused locally.
    let mut out = Vec::new();
    for p in [ProviderId::Piapi, ProviderId::Qubico] {
        out.push(piapi(p, "ghibli", "Studio Ghibli look"));
        out.push(piapi(
            p,
            "inflate-effect",
            "objects inflate like balloons (unconfirmed name)",
        ));
    }
    out
});

pub fn models() -> &'static [ModelSpec] {
    &MODELS
}

pub fn loras() -> &'static [Lora] {
    &LORAS
}

/// The default model of a provider (its first in the catalog).
pub fn default_model(provider: ProviderId) -> &'static ModelSpec {
    // Every provider has at least one model (tested), so the fallback is never taken.
    MODELS
        .iter()
        .find(|m| m.provider == provider)
        .unwrap_or(&MODELS[0])
}

pub fn find(provider: ProviderId, model: &str) -> Option<&'static ModelSpec> {
    MODELS
        .iter()
        .find(|m| m.provider == provider && m.model.eq_ignore_ascii_case(model.trim()))
}

/// Look up a `provider/model` key, as used under `[pricing]`.
pub fn find_key(key: &str) -> Option<&'static ModelSpec> {
    let (p, m) = key.split_once('/')?;
    find(p.parse().ok()?, m)
}

impl ModelSpec {
    pub fn key(&self) -> String {
        format!("{}/{}", self.provider, self.model)
    }
}

/// `provider/model` keys of the models for which `has` holds, for "who supports it" messages.
pub fn who_supports(has: impl Fn(&ModelSpec) -> bool) -> String {
    let keys: Vec<String> = MODELS.iter().filter(|m| has(m)).map(|m| m.key()).collect();
    if keys.is_empty() {
        "no model".into()
    } else {
        keys.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_a_model_and_defaults_are_in_range() {
        for p in ProviderId::ALL {
            assert_eq!(default_model(p).provider, p);
        }
        for m in models() {
            assert!(m.resolutions.contains(&m.default_resolution), "{}", m.key());
            assert!(m.durations.contains(&m.default_duration), "{}", m.key());
            assert!(!m.price.source.is_empty());
        }
    }

    #[test]
    fn unpublished_prices_are_null_with_a_reason() {
        for key in [
            "novita/wan2.1-i2v",
            "novita/wan2.6-i2v",
            "apikley/wan2.2-i2v-a14b-turbo",
        ] {
            let m = find_key(key).unwrap();
            assert!(!m.price.is_known(), "{key}");
            assert!(m.price.source.contains("[pricing"), "{key}");
        }
        assert_eq!(
            find_key("piapi/wan2.1-i2v-14b")
                .unwrap()
                .price
                .usd_per_video,
            Some(0.28)
        );
        assert_eq!(
            find_key("local/camera-preview")
                .unwrap()
                .price
                .usd_per_video,
            Some(0.0)
        );
    }
}
