//! PiAPI / Qubico WanX wire shapes (CONTRACTS.md section 1): create validation (1.2-1.4), the
//! unified task envelope (1.5, 1.6) and the webhook body (1.8); on PiAPI also Wan 2.6
//! (`model: "Wan"`, CONTRACTS-2026-12.md C.2, fields [SECONDARY]). Pure functions.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::check::{self, MAX_IMAGE_BYTES, Obj};
use super::flow::{Accepted, Rejection};
use super::net::{GO_ZERO_TIME, rfc3339, unix_secs};
use super::{Hook, Kind, Phase, TaskRec, video_url};

pub(super) const MODEL: &str = "Qubico/wanx";

/// The documented task types (seed:piapi-wanx). `wan22-img2video-14b` exists only in a secondary
/// catalogue, so the fake rejects it like any unknown type.
const TASK_TYPES: [&str; 7] = [
    "img2video-14b",
    "img2video-14b-lora",
    "img2video-14b-keyframe",
    "img2video-14b-control-camera",
    "txt2video-14b",
    "txt2video-14b-lora",
    "txt2video-1.3b",
];

/// PiAPI Wan 2.6 (C.2); Qubico documents none, so its fake refuses the model.
const WAN: &str = "Wan";
const WAN_TASK_TYPES: [&str; 2] = ["wan26-img2video", "wan26-txt2video"];

const ASPECT_RATIOS: [&str; 2] = ["16:9", "9:16"];

/// Contract 1.4 reading (a): `{"motion_type", "motion_speed"}`, speed 0-10, plus the default `static`.
const CAMERA_MOTIONS: [&str; 13] = [
    "static",
    "zoom_in",
    "zoom_out",
    "pan_left",
    "pan_right",
    "pan_up",
    "pan_down",
    "tilt_left",
    "tilt_right",
    "tilt_up",
    "tilt_down",
    "roll_clockwise",
    "roll_anticlockwise",
];

fn bad(message: String) -> Rejection {
    Rejection::new(400, "", message)
}

/// Validates a create body; 400 (413 for Qubico's oversized image) on the first problem found.
pub(super) fn validate(kind: Kind, body: &Value) -> Result<Accepted, Rejection> {
    let root = check::object(Some(body), "request body").map_err(bad)?;
    let model = check::req_str(root, "model", "model").map_err(bad)?;
    if model == WAN && kind == Kind::Piapi {
        return validate_wan26(root);
    }
    if model != MODEL {
        return Err(bad(format!("model must be {MODEL:?}, got {model:?}")));
    }
    let task_type = check::req_str(root, "task_type", "task_type").map_err(bad)?;
    if !TASK_TYPES.contains(&task_type) {
        return Err(bad(format!(
            "task_type must be one of {TASK_TYPES:?}, got {task_type:?}"
        )));
    }
    let input = check::object(root.get("input"), "input").map_err(bad)?;
    check_envelope(root)?;
    // Strict (issue 21): the fields of contract 1.2's table per task type.
    let mut fields = vec!["prompt", "negative_prompt", "aspect_ratio"];
    match task_type {
        "img2video-14b-keyframe" => fields.extend(["start_image", "end_image"]),
        t if t.starts_with("txt2video") => {}
        _ => fields.push("image"),
    }
    match task_type {
        "img2video-14b-lora" | "txt2video-14b-lora" => fields.push("lora_settings"),
        "img2video-14b-control-camera" => fields.push("control_camera_settings"),
        _ => {}
    }
    check::only(input, "input", &fields).map_err(bad)?;
    // Prompt length limits are UNKNOWN (contract 1.2): only presence is checked.
    check::req_str(input, "prompt", "input.prompt").map_err(bad)?;
    check::opt_str(input, "negative_prompt", "input.negative_prompt").map_err(bad)?;
    check::opt_enum(input, "aspect_ratio", "input.aspect_ratio", &ASPECT_RATIOS).map_err(bad)?;
    let image_fields: &[&str] = match task_type {
        "img2video-14b-keyframe" => &["start_image", "end_image"],
        t if t.starts_with("txt2video") => &[],
        _ => &["image"],
    };
    for field in image_fields {
        check_image(kind, input, field)?;
    }
    if image_fields.is_empty() {
        no_image(input, task_type)?;
    }
    match task_type {
        "img2video-14b-lora" | "txt2video-14b-lora" => check_loras(input, task_type)?,
        "img2video-14b-control-camera" => check_camera(input)?,
        _ => {}
    }
    Ok(Accepted {
        hook: webhook(root)?,
        test_mode: None,
    })
}

/// Strict (issue 21): the unified envelope (contract 1.2) `{model, task_type, input, config}`,
/// `config` holding `service_mode` and `webhook_config {endpoint, secret}`.
fn check_envelope(root: &Obj) -> Result<(), Rejection> {
    check::only(root, "", &["model", "task_type", "input", "config"]).map_err(bad)?;
    if let Some(config) = check::opt_object(root, "config", "config").map_err(bad)? {
        check::only(config, "config", &["service_mode", "webhook_config"]).map_err(bad)?;
        if let Some(wh) =
            check::opt_object(config, "webhook_config", "config.webhook_config").map_err(bad)?
        {
            check::only(wh, "config.webhook_config", &["endpoint", "secret"]).map_err(bad)?;
        }
    }
    Ok(())
}

/// A public http(s) URL, a data URI or raw base64 of a JPG/PNG/WebP of at most 10 MB.
fn check_image(kind: Kind, input: &Obj, field: &str) -> Result<(), Rejection> {
    let name = format!("input.{field}");
    let s = check::req_str(input, field, &name).map_err(bad)?;
    if check::is_http_url(s) {
        return Ok(());
    }
    let bytes = match check::data_uri(s) {
        Some(decoded) => decoded.map_err(|e| bad(format!("{name}: {e}")))?.1,
        None => check::base64_bytes(s).ok_or_else(|| {
            bad(format!(
                "{name} must be a public image URL or base64-encoded image data"
            ))
        })?,
    };
    if bytes.len() > MAX_IMAGE_BYTES {
        // 413 is documented for Qubico only; PiAPI documents 400 for invalid parameters.
        let code = if kind == Kind::Qubico { 413 } else { 400 };
        return Err(Rejection::new(
            code,
            "",
            format!("{name}: image file too large (max 10MB)"),
        ));
    }
    match check::sniff(&bytes) {
        Some(check::ImageFormat::Jpeg | check::ImageFormat::Png | check::ImageFormat::Webp) => {
            Ok(())
        }
        _ => Err(bad(format!(
            "{name}: unsupported image format (JPG, PNG or WebP)"
        ))),
    }
}

/// Text-to-video takes no image at all.
fn no_image(input: &Obj, task_type: &str) -> Result<(), Rejection> {
    for field in ["image", "start_image", "end_image"] {
        if input.contains_key(field) {
            return Err(bad(format!("input.{field} is not accepted by {task_type}")));
        }
    }
    Ok(())
}

/// Wan 2.6 (C.2): the fields public clients send; the image by URL (base64 is UNVERIFIED, so the
/// fake refuses it); `aspect_ratio` on text-to-video only.
fn validate_wan26(root: &Obj) -> Result<Accepted, Rejection> {
    let task_type = check::opt_enum(root, "task_type", "task_type", &WAN_TASK_TYPES)
        .map_err(bad)?
        .ok_or_else(|| bad("task_type is required".into()))?;
    let input = check::object(root.get("input"), "input").map_err(bad)?;
    check_envelope(root)?;
    // Strict (issue 21). PiAPI's parameter catalog lists `negative_prompt` and `audio_url` for
    // txt2video only, but a public client sends both on img2video too (RobimLocar/saas
    // `src/lib/piapi/client.ts`), so they are taken on both; `aspect_ratio` is txt2video only
    // (docs/notes/wire-evidence.md).
    let mut fields = vec![
        "prompt",
        "negative_prompt",
        "resolution",
        "duration",
        "prompt_extend",
        "shot_type",
        "audio",
        "audio_url",
        "watermark",
    ];
    if task_type == "wan26-img2video" {
        fields.push("image");
    } else {
        fields.push("aspect_ratio");
    }
    check::only(input, "input", &fields).map_err(bad)?;
    check::req_str(input, "prompt", "input.prompt").map_err(bad)?;
    check::opt_str(input, "negative_prompt", "input.negative_prompt").map_err(bad)?;
    // Capital P, as most public clients send it (docs/notes/wire-evidence.md); `720p` is refused.
    check::opt_enum(input, "resolution", "input.resolution", &["720P", "1080P"]).map_err(bad)?;
    if let Some(d) = check::opt_int(input, "duration", "input.duration", 5, 15).map_err(bad)?
        && d % 5 != 0
    {
        return Err(bad(format!("input.duration must be 5, 10 or 15, got {d}")));
    }
    check::opt_enum(input, "shot_type", "input.shot_type", &["single", "multi"]).map_err(bad)?;
    for flag in ["prompt_extend", "audio", "watermark"] {
        check::opt_bool(input, flag, &format!("input.{flag}")).map_err(bad)?;
    }
    if let Some(a) = check::opt_str(input, "audio_url", "input.audio_url").map_err(bad)?
        && !check::is_http_url(a)
    {
        return Err(bad("input.audio_url must be an http(s) URL".into()));
    }
    if task_type == "wan26-img2video" {
        let image = check::req_str(input, "image", "input.image").map_err(bad)?;
        if !check::is_http_url(image) {
            return Err(bad("input.image must be a public image URL".into()));
        }
        if input.contains_key("aspect_ratio") {
            return Err(bad(
                "input.aspect_ratio is not accepted by wan26-img2video".into()
            ));
        }
    } else {
        no_image(input, task_type)?;
        check::opt_enum(
            input,
            "aspect_ratio",
            "input.aspect_ratio",
            &["16:9", "9:16", "1:1", "4:3", "3:4"],
        )
        .map_err(bad)?;
    }
    Ok(Accepted {
        hook: webhook(root)?,
        test_mode: None,
    })
}

fn check_loras(input: &Obj, task_type: &str) -> Result<(), Rejection> {
    let items = input
        .get("lora_settings")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            bad(format!(
                "input.lora_settings (a non-empty array) is required for {task_type}"
            ))
        })?;
    for (i, item) in items.iter().enumerate() {
        let name = format!("input.lora_settings[{i}]");
        let o = check::object(Some(item), &name).map_err(bad)?;
        // lora_type is a free string (contract 1.3); the strength range is only secondary (0-1), not enforced.
        check::req_str(o, "lora_type", &format!("{name}.lora_type")).map_err(bad)?;
        check::opt_num(
            o,
            "lora_strength",
            &format!("{name}.lora_strength"),
            f64::NEG_INFINITY,
            f64::INFINITY,
        )
        .map_err(bad)?;
    }
    Ok(())
}

fn check_camera(input: &Obj) -> Result<(), Rejection> {
    let items = input
        .get("control_camera_settings")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            bad("input.control_camera_settings (an array) is required for img2video-14b-control-camera".into())
        })?;
    let [item] = items.as_slice() else {
        return Err(bad(format!(
            "input.control_camera_settings must hold exactly one camera motion, got {}",
            items.len()
        )));
    };
    let o = check::object(Some(item), "input.control_camera_settings[0]").map_err(bad)?;
    check::opt_enum(
        o,
        "motion_type",
        "input.control_camera_settings[0].motion_type",
        &CAMERA_MOTIONS,
    )
    .map_err(bad)?;
    check::opt_num(
        o,
        "motion_speed",
        "input.control_camera_settings[0].motion_speed",
        0.0,
        10.0,
    )
    .map_err(bad)?;
    Ok(())
}

fn webhook(root: &Obj) -> Result<Option<Hook>, Rejection> {
    let Some(config) = check::opt_object(root, "config", "config").map_err(bad)? else {
        return Ok(None);
    };
    let Some(wh) =
        check::opt_object(config, "webhook_config", "config.webhook_config").map_err(bad)?
    else {
        return Ok(None);
    };
    let endpoint = check::opt_str(wh, "endpoint", "config.webhook_config.endpoint")
        .map_err(bad)?
        .unwrap_or_default();
    let secret = check::opt_str(wh, "secret", "config.webhook_config.secret").map_err(bad)?;
    if endpoint.is_empty() {
        return Ok(None);
    }
    if !check::is_http_url(endpoint) {
        return Err(bad(
            "config.webhook_config.endpoint must be an http(s) URL".into()
        ));
    }
    Ok(Some(Hook {
        url: endpoint.to_string(),
        secret: secret.filter(|s| !s.is_empty()).map(str::to_string),
    }))
}

pub(super) fn status(phase: &Phase) -> &'static str {
    match phase {
        Phase::Queued { .. } => "pending",
        Phase::Running { .. } => "processing",
        Phase::Succeeded => "completed",
        Phase::Failed(_) => "failed",
    }
}

/// The unified task object (`data` of get-task, create and the webhook). WanX shows no progress field.
pub(super) fn task_data(task: &TaskRec, phase: &Phase, root: &str) -> Value {
    let (endpoint, secret) = task
        .hook
        .as_ref()
        .map(|h| (h.url.clone(), h.secret.clone().unwrap_or_default()))
        .unwrap_or_default();
    let output = match phase {
        Phase::Succeeded => json!({ "video_url": video_url(root, &task.id) }),
        _ => Value::Null,
    };
    // WanX error codes are UNKNOWN (contract 1.6); 10000 follows the constructed example.
    let error = match phase {
        Phase::Failed(message) => {
            json!({"code": 10000, "raw_message": message, "message": message, "detail": null})
        }
        _ => json!({"code": 0, "raw_message": "", "message": "", "detail": null}),
    };
    let (frozen, consume) = match phase {
        Phase::Queued { .. } | Phase::Failed(_) => (0, 0),
        Phase::Running { .. } => (280_000, 0),
        Phase::Succeeded => (0, 280_000),
    };
    let time = |t: Option<SystemTime>| t.map_or_else(|| GO_ZERO_TIME.to_string(), rfc3339);
    json!({
        "task_id": task.id,
        "model": task.body.get("model").cloned().unwrap_or(Value::Null),
        "task_type": task.body.get("task_type").cloned().unwrap_or(Value::Null),
        "status": status(phase),
        "config": {"service_mode": "", "webhook_config": {"endpoint": endpoint, "secret": secret}},
        "input": task.body.get("input").cloned().unwrap_or(Value::Null),
        "output": output,
        "meta": {
            "created_at": rfc3339(task.created_at),
            "started_at": time(task.started_at),
            "ended_at": time(task.ended_at),
            "usage": {"type": "point", "frozen": frozen, "consume": consume},
            "is_using_private_pool": false
        },
        "detail": null,
        "logs": [],
        "error": error
    })
}

/// `{"code":200,"message":"success","data":...}`.
pub(super) fn envelope(data: Value) -> Value {
    json!({"code": 200, "message": "success", "data": data})
}

/// Create answer: the unified envelope, or the flat body documented for the kind (1.5).
pub(super) fn create_body(kind: Kind, flat: bool, task: &TaskRec, root: &str) -> Value {
    match (flat, kind) {
        (false, _) => envelope(task_data(task, &Phase::Queued { step: 0 }, root)),
        (true, Kind::Qubico) => json!({
            "task_id": task.id,
            "status": "pending",
            "message": "Task submitted successfully",
            "estimated_time": "60-120 seconds"
        }),
        (true, _) => json!({
            "task_id": task.id,
            "status": "pending",
            "created_at": rfc3339(task.created_at)
        }),
    }
}

/// Webhook body (1.8): `{"timestamp": unix seconds, "data": <get-task data>}`.
pub(super) fn hook_body(data: Value) -> Value {
    json!({"timestamp": unix_secs(SystemTime::now()), "data": data})
}
