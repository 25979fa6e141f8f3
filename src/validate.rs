//! Local checks of a create request against the chosen model's capabilities and limits, before
//! anything is written or paid. A parameter the model cannot honour is an `unsupported` error that
//! names the models that can; a value out of range is `invalid_input` naming the limit.

use crate::catalog::{self, ModelSpec, Range};
use crate::error::{Error, Result};
use crate::model::{CreateRequest, ProviderId};

/// Generic cap where the provider published none (CONTRACTS.md: PiAPI prompt limits UNKNOWN).
pub const GENERIC_PROMPT_MAX: usize = 10_000;
pub const IDEMPOTENCY_KEY_MAX: usize = 200;

fn unsupported(field: &str, spec: &ModelSpec, has: impl Fn(&ModelSpec) -> bool) -> Error {
    Error::unsupported(format!(
        "{field} is not supported by {}: models that take it: {}. Remove {field} or pick one of those.",
        spec.key(),
        catalog::who_supports(has)
    ))
}

fn in_range(field: &str, value: f64, r: &Range, spec: &ModelSpec) -> Result<()> {
    if !value.is_finite() || value < r.min || value > r.max {
        return Err(Error::invalid_input(format!(
            "{field} {value} is out of range for {}: use {} to {}",
            spec.key(),
            r.min,
            r.max
        )));
    }
    Ok(())
}

fn check_len(field: &str, text: &str, max: usize, spec: &ModelSpec) -> Result<()> {
    let n = text.chars().count();
    if n > max {
        return Err(Error::invalid_input(format!(
            "{field} is {n} characters; {} takes at most {max}: shorten it",
            spec.key()
        )));
    }
    Ok(())
}

fn optional_range(
    field: &str,
    value: Option<f64>,
    r: Option<Range>,
    spec: &ModelSpec,
    has: impl Fn(&ModelSpec) -> bool,
) -> Result<()> {
    match (value, r) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(unsupported(field, spec, has)),
        (Some(v), Some(r)) => in_range(field, v, &r, spec),
    }
}

fn optional_flag(
    field: &str,
    present: bool,
    supported: bool,
    spec: &ModelSpec,
    has: impl Fn(&ModelSpec) -> bool,
) -> Result<()> {
    if present && !supported {
        return Err(unsupported(field, spec, has));
    }
    Ok(())
}

/// Check everything about `req` that can be checked without reading the image.
pub fn check(req: &CreateRequest, spec: &ModelSpec) -> Result<()> {
    if req.image.trim().is_empty() {
        return Err(Error::invalid_input(
            "image is empty: give an https URL, a data: URI or a local file path",
        ));
    }
    let prompt_optional = spec.provider == ProviderId::Local || spec.model == "wan2.6-i2v";
    if req.prompt.trim().is_empty() && !prompt_optional {
        return Err(Error::invalid_input(format!(
            "prompt is empty: {} needs a prompt describing the motion",
            spec.key()
        )));
    }
    let prompt_max = spec
        .prompt_max
        .map(|m| m as usize)
        .unwrap_or(GENERIC_PROMPT_MAX);
    check_len("prompt", &req.prompt, prompt_max, spec)?;

    if let Some(neg) = &req.negative_prompt {
        if !spec.negative_prompt {
            return Err(unsupported("negative_prompt", spec, |m| m.negative_prompt));
        }
        let max = spec
            .negative_prompt_max
            .map(|m| m as usize)
            .unwrap_or(GENERIC_PROMPT_MAX);
        check_len("negative_prompt", neg, max, spec)?;
    }

    if let Some(res) = req.resolution
        && !spec.resolutions.contains(&res)
    {
        let offered: Vec<&str> = spec.resolutions.iter().map(|r| r.as_str()).collect();
        return Err(Error::unsupported(format!(
            "resolution {} is not available on {}: it offers {}. Models with {}: {}",
            res.as_str(),
            spec.key(),
            offered.join(", "),
            res.as_str(),
            catalog::who_supports(|m| m.resolutions.contains(&res))
        )));
    }
    if let Some(ar) = req.aspect_ratio
        && !spec.aspect_ratios.contains(&ar)
    {
        let offered: Vec<&str> = spec.aspect_ratios.iter().map(|r| r.as_str()).collect();
        return Err(Error::unsupported(format!(
            "aspect_ratio {} is not available on {}: it offers {}. Models with {}: {}",
            ar.as_str(),
            spec.key(),
            offered.join(", "),
            ar.as_str(),
            catalog::who_supports(|m| m.aspect_ratios.contains(&ar))
        )));
    }
    if let Some(d) = req.duration_seconds
        && !spec.durations.contains(&d)
    {
        let offered: Vec<String> = spec.durations.iter().map(|d| d.to_string()).collect();
        return Err(Error::unsupported(format!(
            "duration_seconds {d} is not available on {}: it offers {} s. Models with {d} s: {}",
            spec.key(),
            offered.join(", "),
            catalog::who_supports(|m| m.durations.contains(&d))
        )));
    }
    if let Some(seed) = req.seed {
        optional_range("seed", Some(seed as f64), spec.seed, spec, |m| {
            m.seed.is_some()
        })?;
    }

    if !req.loras.is_empty() {
        if spec.max_loras == 0 {
            return Err(unsupported("loras", spec, |m| m.max_loras > 0));
        }
        if req.loras.len() > spec.max_loras as usize {
            return Err(Error::invalid_input(format!(
                "{} LoRAs given; {} takes at most {}",
                req.loras.len(),
                spec.key(),
                spec.max_loras
            )));
        }
        for lora in &req.loras {
            if lora.name.trim().is_empty() {
                return Err(Error::invalid_input(
                    "a LoRA has an empty name: see list_loras",
                ));
            }
            if let (Some(s), Some(r)) = (lora.strength, spec.lora_strength) {
                in_range(&format!("strength of LoRA '{}'", lora.name), s, &r, spec)?;
            }
        }
    }

    if let Some(cm) = &req.camera_motion {
        if !spec.camera_motion {
            return Err(unsupported("camera_motion", spec, |m| m.camera_motion));
        }
        cm.kind
            .parse::<crate::render::Motion>()
            .map_err(|e| Error::invalid_input(e.to_string()))?;
        if let (Some(speed), Some(r)) = (cm.speed, spec.camera_speed) {
            in_range("camera_motion.speed", speed, &r, spec)?;
        }
    }

    optional_flag(
        "end_image",
        req.end_image.is_some(),
        spec.end_image,
        spec,
        |m| m.end_image,
    )?;
    optional_flag("audio", req.audio.is_some(), spec.audio, spec, |m| m.audio)?;
    optional_flag(
        "audio_url",
        req.audio_url.is_some(),
        spec.audio_url,
        spec,
        |m| m.audio_url,
    )?;
    if let Some(url) = &req.audio_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(Error::invalid_input(
            "audio_url must be an http(s) URL of a wav or mp3 file (3-30 s, at most 15 MB)",
        ));
    }
    optional_flag(
        "prompt_extend",
        req.prompt_extend.is_some(),
        spec.prompt_extend,
        spec,
        |m| m.prompt_extend,
    )?;
    optional_range("steps", req.steps.map(f64::from), spec.steps, spec, |m| {
        m.steps.is_some()
    })?;
    optional_range(
        "guidance_scale",
        req.guidance_scale,
        spec.guidance_scale,
        spec,
        |m| m.guidance_scale.is_some(),
    )?;
    optional_range("flow_shift", req.flow_shift, spec.flow_shift, spec, |m| {
        m.flow_shift.is_some()
    })?;
    if let Some(shot) = &req.shot_type {
        if !spec.shot_type {
            return Err(unsupported("shot_type", spec, |m| m.shot_type));
        }
        if shot != "single" && shot != "multi" {
            return Err(Error::invalid_input(format!(
                "shot_type '{shot}' is not valid: use single or multi"
            )));
        }
    }
    optional_flag(
        "watermark",
        req.watermark.is_some(),
        spec.watermark,
        spec,
        |m| m.watermark,
    )?;
    if let Some(acc) = &req.acceleration {
        if !spec.acceleration {
            return Err(unsupported("acceleration", spec, |m| m.acceleration));
        }
        if acc != "none" && acc != "regular" {
            return Err(Error::invalid_input(format!(
                "acceleration '{acc}' is not valid: use none or regular"
            )));
        }
    }
    optional_flag(
        "safety_checker",
        req.safety_checker.is_some(),
        spec.safety_checker,
        spec,
        |m| m.safety_checker,
    )?;

    if matches!(spec.provider, ProviderId::Piapi | ProviderId::Qubico) {
        // CONTRACTS.md 1.2: the variant is a task type; each takes one of these.
        let chosen: Vec<&str> = [
            ("end_image", req.end_image.is_some()),
            ("loras", !req.loras.is_empty()),
            ("camera_motion", req.camera_motion.is_some()),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| name)
        .collect();
        if chosen.len() > 1 {
            return Err(Error::unsupported(format!(
                "{} cannot combine {} in one request (each selects a different WanX task type): keep one",
                spec.key(),
                chosen.join(" and ")
            )));
        }
    }

    if let Some(max) = req.max_cost_usd
        && (!max.is_finite() || max < 0.0)
    {
        return Err(Error::invalid_input(
            "max_cost_usd must be a non-negative number of US dollars",
        ));
    }
    if let Some(key) = &req.idempotency_key
        && (key.trim().is_empty() || key.len() > IDEMPOTENCY_KEY_MAX)
    {
        return Err(Error::invalid_input(format!(
            "idempotency_key must be 1 to {IDEMPOTENCY_KEY_MAX} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::find_key;
    use crate::error::Category;
    use crate::model::{CameraMotion, LoraRef, Resolution};

    fn req() -> CreateRequest {
        CreateRequest {
            image: "https://example.com/a.png".into(),
            prompt: "a cat turns its head".into(),
            ..CreateRequest::default()
        }
    }

    #[test]
    fn unsupported_parameters_name_who_supports_them() {
        let spec = find_key("novita/wan2.1-i2v").unwrap();
        let mut r = req();
        r.camera_motion = Some(CameraMotion {
            kind: "zoom_in".into(),
            speed: None,
        });
        let e = check(&r, spec).unwrap_err();
        assert_eq!(e.category, Category::Unsupported);
        assert!(e.message.contains("piapi/wan2.1-i2v-14b"), "{}", e.message);
        assert!(e.message.contains("local/camera-preview"), "{}", e.message);
    }

    #[test]
    fn limits_are_named() {
        let spec = find_key("novita/wan2.6-i2v").unwrap();
        let mut r = req();
        r.negative_prompt = Some("x".repeat(501));
        let e = check(&r, spec).unwrap_err();
        assert_eq!(e.category, Category::InvalidInput);
        assert!(e.message.contains("at most 500"), "{}", e.message);

        let mut r = req();
        r.resolution = Some(Resolution::P480);
        let e = check(&r, spec).unwrap_err();
        assert!(e.message.contains("720p, 1080p"), "{}", e.message);

        let spec21 = find_key("novita/wan2.1-i2v").unwrap();
        let mut r = req();
        r.seed = Some(9_999_999_999);
        assert!(
            check(&r, spec21).is_ok(),
            "seed beyond 32 bits is valid on wan2.1"
        );
        r.seed = Some(10_000_000_000);
        assert!(check(&r, spec21).is_err());
        r.seed = None;
        r.loras = (0..4)
            .map(|i| LoraRef {
                name: format!("l{i}"),
                strength: None,
            })
            .collect();
        assert!(check(&r, spec21).unwrap_err().message.contains("at most 3"));
    }

    #[test]
    fn wanx_variants_do_not_combine() {
        let spec = find_key("piapi/wan2.1-i2v-14b").unwrap();
        let mut r = req();
        r.end_image = Some("https://example.com/b.png".into());
        assert!(check(&r, spec).is_ok());
        r.loras = vec![LoraRef {
            name: "ghibli".into(),
            strength: None,
        }];
        let e = check(&r, spec).unwrap_err();
        assert_eq!(e.category, Category::Unsupported);
        assert!(e.message.contains("end_image and loras"), "{}", e.message);
    }

    #[test]
    fn bad_motion_and_speed() {
        let spec = find_key("local/camera-preview").unwrap();
        let mut r = req();
        r.camera_motion = Some(CameraMotion {
            kind: "spin".into(),
            speed: None,
        });
        assert_eq!(
            check(&r, spec).unwrap_err().category,
            Category::InvalidInput
        );
        r.camera_motion = Some(CameraMotion {
            kind: "zoom_in".into(),
            speed: Some(99.0),
        });
        assert!(
            check(&r, spec)
                .unwrap_err()
                .message
                .contains("out of range")
        );
    }
}
