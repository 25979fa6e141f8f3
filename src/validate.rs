//! Local checks of a create request against the chosen model's capabilities and limits, before
//! anything is written or paid. A parameter the model cannot honour is an `unsupported` error that
//! names the models that can; a value out of range is `invalid_input` naming the limit.

use crate::catalog::{self, ModelSpec, Range};
use crate::error::{Error, Result};
use crate::model::CreateRequest;
use crate::providers::registry::Declared;

/// Generic cap where the provider published none (CONTRACTS.md: some prompt limits are UNKNOWN).
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

/// Check everything about `req` that can be checked without reading the image: the generic
/// checks against `spec`, then the provider's own (its declaration's `check`).
pub fn check(req: &CreateRequest, spec: &ModelSpec) -> Result<()> {
    check_text(req, spec)?;
    check_choices(req, spec)?;
    check_loras(req, spec)?;
    check_camera(req, spec)?;
    check_media_flags(req, spec)?;
    crate::refs::check(req, spec)?;
    check_tuning(req, spec)?;
    (spec.provider.decl().check)(req, spec)?;
    check_limits(req)
}

/// Image, prompt and negative prompt.
fn check_text(req: &CreateRequest, spec: &ModelSpec) -> Result<()> {
    check_image_presence(req, spec)?;
    if req.prompt.trim().is_empty() && !spec.prompt_optional {
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
    Ok(())
}

/// An image-to-video model needs an image; a text-to-video model takes none.
fn check_image_presence(req: &CreateRequest, spec: &ModelSpec) -> Result<()> {
    match (&req.image, spec.text_to_video) {
        (Some(_), true) => Err(Error::unsupported(format!(
            "{} is text-to-video and takes no image",
            spec.key()
        ))
        .with_next_step(format!(
            "omit image, or pick an image-to-video model: {}",
            catalog::who_supports(|m| !m.text_to_video && m.provider == spec.provider)
        ))),
        (None, false) if spec.image_optional => match &req.end_image {
            Some(_) => Err(Error::invalid_input(format!(
                "end_image needs image: {} takes a first frame (image) with an optional last frame (end_image)",
                spec.key()
            ))),
            None => Ok(()),
        },
        (None, false) => Err(Error::invalid_input(format!(
            "image is missing: {} makes a video from an image",
            spec.key()
        ))
        .with_next_step(format!(
            "give image (an https URL, a data: URI or a local file path), or for text-to-video pick one of: {}",
            catalog::who_supports(|m| m.text_to_video)
        ))),
        (Some(img), false) if img.trim().is_empty() => Err(Error::invalid_input(
            "image is empty: give an https URL, a data: URI or a local file path",
        )),
        _ => Ok(()),
    }
}

/// A value outside the model's offered list: what it offers and who offers the value.
fn not_offered(
    field: &str,
    value: &str,
    offered: &[String],
    unit: &str,
    who: String,
    spec: &ModelSpec,
) -> Error {
    Error::unsupported(format!(
        "{field} {value} is not available on {}: it offers {}{unit}. Models with {value}{unit}: {who}",
        spec.key(),
        offered.join(", "),
    ))
}

/// Resolution, aspect ratio, duration and seed.
fn check_choices(req: &CreateRequest, spec: &ModelSpec) -> Result<()> {
    if let Some(res) = req.resolution
        && !spec.resolutions.contains(&res)
    {
        let offered: Vec<String> = spec.resolutions.iter().map(|r| r.as_str().into()).collect();
        let who = catalog::who_supports(|m| m.resolutions.contains(&res));
        return Err(not_offered(
            "resolution",
            res.as_str(),
            &offered,
            "",
            who,
            spec,
        ));
    }
    if let Some(ar) = req.aspect_ratio
        && !spec.aspect_ratios.contains(&ar)
    {
        let offered: Vec<String> = spec
            .aspect_ratios
            .iter()
            .map(|r| r.as_str().into())
            .collect();
        let who = catalog::who_supports(|m| m.aspect_ratios.contains(&ar));
        return Err(not_offered(
            "aspect_ratio",
            ar.as_str(),
            &offered,
            "",
            who,
            spec,
        ));
    }
    if let Some(d) = req.duration_seconds
        && !spec.durations.contains(&d)
    {
        let offered: Vec<String> = spec.durations.iter().map(|d| d.to_string()).collect();
        let who = catalog::who_supports(|m| m.durations.contains(&d));
        return Err(not_offered(
            "duration_seconds",
            &d.to_string(),
            &offered,
            " s",
            who,
            spec,
        ));
    }
    if let Some(seed) = req.seed {
        optional_range("seed", Some(seed as f64), spec.seed, spec, |m| {
            m.seed.is_some()
        })?;
    }
    Ok(())
}

fn check_loras(req: &CreateRequest, spec: &ModelSpec) -> Result<()> {
    if req.loras.is_empty() {
        return Ok(());
    }
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
    Ok(())
}

fn check_camera(req: &CreateRequest, spec: &ModelSpec) -> Result<()> {
    let Some(cm) = &req.camera_motion else {
        return Ok(());
    };
    if !spec.camera_motion {
        return Err(unsupported("camera_motion", spec, |m| m.camera_motion));
    }
    cm.kind
        .parse::<crate::render::Motion>()
        .map_err(|e| Error::invalid_input(e.to_string()))?;
    if let (Some(speed), Some(r)) = (cm.speed, spec.camera_speed) {
        in_range("camera_motion.speed", speed, &r, spec)?;
    }
    Ok(())
}

/// End image, audio, soundtrack and prompt extension.
fn check_media_flags(req: &CreateRequest, spec: &ModelSpec) -> Result<()> {
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
    )
}

/// Steps, guidance, flow shift, shot type, watermark, acceleration and safety checker.
fn check_tuning(req: &CreateRequest, spec: &ModelSpec) -> Result<()> {
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
    )
}

/// Cost cap and idempotency key.
fn check_limits(req: &CreateRequest) -> Result<()> {
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
