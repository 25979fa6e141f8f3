//! PiAPI Wan 2.6: `model: "Wan"`, task types `wan26-img2video` / `wan26-txt2video`, on the same
//! unified task API as WanX (create, poll, webhook; CONTRACTS.md 1.1, 1.5-1.8).
//!
//! Contract: `shared/providers/CONTRACTS-2026-12.md` C.2. Price [OFFICIAL] piapi.ai/wan-2-6:
//! $0.08/s at 720p, $0.12/s at 1080p, the same for both task types. Everything else here is
//! [SECONDARY] (public client code only; PiAPI's own input page was not captured), so:
//! - the input fields are those the public clients agree on, and nothing else is sent;
//! - `resolution` goes with a capital P (`720P`/`1080P`), as most public clients send it, one on
//!   purpose ("Wan aceita 720P / 1080P (P maiúsculo)", RobimLocar/saas `src/lib/piapi/client.ts`);
//!   C.2's lower case `720p` is the minority reading (docs/notes/wire-evidence.md, issue 21);
//! - `negative_prompt` and `audio_url` go on img2video too: PiAPI's catalog lists them for
//!   txt2video only, but a public client sends both on img2video (the same file);
//! - `aspect_ratio` goes on text-to-video only (a client comments it is refused on img2video);
//! - the image goes by URL only: whether `image` takes base64 is UNVERIFIED, so local files and
//!   data URIs are refused before anything is sent (`ImageDelivery::UrlOnly`) rather than paid for
//!   and failed upstream;
//! - the result URL key is UNKNOWN (C.4): every reply is read from a map, trying several keys
//!   (`super::video_url_in`);
//! - seed and prompt limits are UNKNOWN: not offered, and the generic prompt cap applies;
//! - cancel for Wan tasks is UNKNOWN (C.4): the WanX `DELETE` is tried, and anything but a clear
//!   success is reported as not cancelled.
//!
//! Qubico documents no Wan 2.6, so it is offered on `piapi` only.

use serde::Serialize;

use super::{CreateBody, Inputs, TaskConfig, WebhookConfig};
use crate::catalog::spec::{ImageDelivery, ModelSpec, Price, Tier};
use crate::error::Error;
use crate::media::ImageInput;
use crate::model::{AspectRatio, ProviderId, Resolution};
use crate::providers::Submission;

pub(super) const I2V: &str = "wan2.6-i2v";
pub(super) const T2V: &str = "wan2.6-t2v";
const MODEL: &str = "Wan";

/// Whether `model` is one of ours.
pub(super) fn is_wan26(model: &str) -> bool {
    model == I2V || model == T2V
}

/// The fields both task types take (C.2).
#[derive(Debug, Serialize)]
pub(super) struct Input {
    prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_prompt: Option<String>,
    resolution: &'static str,
    duration: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    aspect_ratio: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_extend: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shot_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    watermark: Option<bool>,
}

fn price() -> Price {
    let tier = |resolution, usd_per_second| Tier {
        resolution,
        audio: None,
        usd_per_second,
    };
    Price {
        usd_per_video: None,
        usd_per_second: None,
        by_resolution: vec![tier(Resolution::P720, 0.08), tier(Resolution::P1080, 0.12)],
        source: "piapi.ai/wan-2-6: $0.08/s 720p, $0.12/s 1080p (i2v and t2v)".into(),
    }
}

fn spec(model: &str) -> ModelSpec {
    ModelSpec {
        image_delivery: ImageDelivery::UrlOnly,
        resolutions: vec![Resolution::P720, Resolution::P1080],
        // The cheaper tier; the resolution is always sent, so this is what is billed.
        default_resolution: Resolution::P720,
        aspect_ratios: vec![AspectRatio::Auto],
        durations: vec![5, 10, 15],
        negative_prompt: true,
        audio: true,
        audio_url: true,
        prompt_extend: true,
        shot_type: true,
        watermark: true,
        cancel: true,
        price: price(),
        note: Some(
            "Input fields known from public client code only (unverified). Cancel for Wan tasks is unconfirmed.".into(),
        ),
        ..ModelSpec::base(ProviderId::Piapi, model)
    }
}

pub(super) fn models() -> Vec<ModelSpec> {
    vec![
        ModelSpec {
            description: "Wan 2.6 (PiAPI model Wan): 5/10/15 s, 720p/1080p, audio, multi-shot."
                .into(),
            ..spec(I2V)
        },
        ModelSpec {
            description: "Wan 2.6 text-to-video (PiAPI model Wan): 5/10/15 s, 720p/1080p, 16:9, 9:16 or 1:1, audio.".into(),
            aspect_ratios: AspectRatio::ALL.to_vec(),
            ..spec(T2V).text_only()
        },
    ]
}

/// `audio: false` with a soundtrack asks for two things at once: refused before sending.
pub(super) fn check(req: &crate::model::CreateRequest, spec: &ModelSpec) -> Result<(), Error> {
    if req.audio == Some(false) && req.audio_url.is_some() {
        return Err(Error::invalid_input(format!(
            "{}: audio false and audio_url contradict each other: drop one",
            spec.key()
        )));
    }
    Ok(())
}

/// `720P`/`1080P`, capital P (see the module header); `validate` kept the tier to the model's.
fn resolution(r: Resolution) -> &'static str {
    match r {
        Resolution::P1080 => "1080P",
        Resolution::P480 | Resolution::P580 | Resolution::P720 => "720P",
    }
}

/// URL only (see the module header); `media` refuses local images for `UrlOnly` models first.
fn image_url(img: &ImageInput) -> Result<String, Error> {
    match img {
        ImageInput::Url(u) => Ok(u.clone()),
        ImageInput::Local(_) => Err(Error::unsupported(format!(
            "piapi/{I2V} takes image URLs only (base64 is unverified for Wan 2.6): pass an https URL, or use piapi/wan2.1-i2v-14b, which takes local files"
        ))),
    }
}

pub(super) fn create_body(s: &Submission<'_>) -> Result<CreateBody, Error> {
    let req = s.req;
    let t2v = s.spec.text_to_video;
    let image = if t2v {
        None
    } else {
        Some(image_url(s.image_required()?)?)
    };
    let aspect_ratio = match req.aspect_ratio {
        Some(AspectRatio::Auto) | None => None,
        Some(a) if t2v => Some(a.as_str()),
        // `validate` refuses these on i2v (it offers `auto` only).
        Some(_) => None,
    };
    let input = Input {
        prompt: req.prompt.clone(),
        image,
        negative_prompt: req.negative_prompt.clone(),
        resolution: resolution(req.resolution.unwrap_or(s.spec.default_resolution)),
        duration: req.duration_seconds.unwrap_or(s.spec.default_duration),
        aspect_ratio,
        prompt_extend: req.prompt_extend,
        shot_type: req.shot_type.clone(),
        // One client sends `audio: true` beside `audio_url`; do the same when audio is not given.
        audio: req.audio.or(req.audio_url.as_ref().map(|_| true)),
        audio_url: req.audio_url.clone(),
        watermark: req.watermark,
    };
    Ok(CreateBody {
        model: MODEL,
        task_type: if t2v {
            "wan26-txt2video"
        } else {
            "wan26-img2video"
        },
        input: Inputs::Wan26(input),
        config: s.webhook.map(|w| TaskConfig {
            webhook_config: WebhookConfig {
                endpoint: w.url.clone(),
                secret: w.secret.clone(),
            },
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CreateRequest;
    use crate::providers::{Webhook, submission, tiny_png};
    use serde_json::{Value, json};

    fn body(key: &str, req: &CreateRequest, image: Option<&ImageInput>) -> Result<Value, Error> {
        let s = submission(key, req, image, None, None);
        create_body(&s).map(|b| serde_json::to_value(b).unwrap())
    }

    #[test]
    fn i2v_body_by_url_with_defaults() {
        let url = ImageInput::Url("https://x.test/a.jpg".into());
        let req = CreateRequest {
            image: Some("https://x.test/a.jpg".into()),
            prompt: "p".into(),
            ..CreateRequest::default()
        };
        assert_eq!(
            body("piapi/wan2.6-i2v", &req, Some(&url)).unwrap(),
            json!({"model":"Wan","task_type":"wan26-img2video",
                "input":{"prompt":"p","image":"https://x.test/a.jpg","resolution":"720P","duration":5}})
        );
    }

    #[test]
    fn t2v_body_carries_every_option() {
        let req = CreateRequest {
            prompt: "p".into(),
            negative_prompt: Some("blur".into()),
            resolution: Some(Resolution::P1080),
            duration_seconds: Some(15),
            aspect_ratio: Some(AspectRatio::Square),
            prompt_extend: Some(false),
            shot_type: Some("multi".into()),
            audio_url: Some("https://x.test/a.mp3".into()),
            watermark: Some(false),
            ..CreateRequest::default()
        };
        let hook = Webhook {
            url: "https://me.test/hook".into(),
            secret: "s".into(),
        };
        let s = submission("piapi/wan2.6-t2v", &req, None, None, Some(&hook));
        let b = serde_json::to_value(create_body(&s).unwrap()).unwrap();
        assert_eq!(
            b,
            json!({"model":"Wan","task_type":"wan26-txt2video",
                "input":{"prompt":"p","negative_prompt":"blur","resolution":"1080P","duration":15,
                    "aspect_ratio":"1:1","prompt_extend":false,"shot_type":"multi","audio":true,
                    "audio_url":"https://x.test/a.mp3","watermark":false},
                "config":{"webhook_config":{"endpoint":"https://me.test/hook","secret":"s"}}})
        );
    }

    /// Issue 21: PiAPI's catalog lists `negative_prompt` and `audio_url` for txt2video only, but
    /// public clients send both on img2video (docs/notes/wire-evidence.md), so they stay offered
    /// and sent there; `aspect_ratio` stays txt2video only.
    #[test]
    fn i2v_takes_negative_prompt_and_audio_url() {
        let spec = crate::catalog::find_key("piapi/wan2.6-i2v").unwrap();
        assert!(spec.negative_prompt && spec.audio_url, "offered on i2v");
        let url = ImageInput::Url("https://x.test/a.jpg".into());
        let req = CreateRequest {
            prompt: "p".into(),
            negative_prompt: Some("blur".into()),
            audio_url: Some("https://x.test/a.mp3".into()),
            resolution: Some(Resolution::P1080),
            ..CreateRequest::default()
        };
        assert_eq!(
            body("piapi/wan2.6-i2v", &req, Some(&url)).unwrap()["input"],
            json!({"prompt":"p","image":"https://x.test/a.jpg","negative_prompt":"blur",
                "resolution":"1080P","duration":5,"audio":true,"audio_url":"https://x.test/a.mp3"})
        );
    }

    #[test]
    fn local_images_are_never_sent() {
        let req = CreateRequest {
            prompt: "p".into(),
            ..CreateRequest::default()
        };
        let e = body("piapi/wan2.6-i2v", &req, Some(&tiny_png())).unwrap_err();
        assert_eq!(e.category, crate::error::Category::Unsupported);
        assert!(e.message.contains("URLs only"), "{}", e.message);
    }

    #[test]
    fn audio_off_with_a_soundtrack_is_refused() {
        let spec = crate::catalog::find_key("piapi/wan2.6-t2v").unwrap();
        let req = CreateRequest {
            prompt: "p".into(),
            audio: Some(false),
            audio_url: Some("https://x.test/a.mp3".into()),
            ..CreateRequest::default()
        };
        assert!(check(&req, spec).is_err());
        let req = CreateRequest {
            audio: Some(true),
            ..req
        };
        assert!(check(&req, spec).is_ok());
    }

    #[test]
    fn priced_per_second_by_resolution() {
        let p = price();
        assert_eq!(p.tier(Resolution::P720, true).unwrap().usd_per_second, 0.08);
        assert_eq!(
            p.tier(Resolution::P1080, false).unwrap().usd_per_second,
            0.12
        );
        assert!(p.tier(Resolution::P480, false).is_none());
    }
}
