//! Novita wire shapes (CONTRACTS.md section 2): Wan 2.1 (2.2), Wan 2.6 (2.3) and Wan 2.7
//! (CONTRACTS-2026-12.md B.2) create validation,
//! the task result (2.4) and the webhook event (2.6). Error bodies (2.5) are built in `flow`. Pure functions.

use serde_json::{Value, json};

use super::check::{self, MAX_IMAGE_BYTES, Obj};
use super::flow::{Accepted, Rejection};
use super::net::unix_ms;
use super::{Hook, Phase, Route, TaskRec, video_url};

/// Width x height pairs of Wan 2.1 (480p and 720p, both orientations).
const WAN21_SIZES: [(i64, i64); 4] = [(480, 832), (832, 480), (720, 1280), (1280, 720)];

fn bad(message: String) -> Rejection {
    Rejection::new(400, "INVALID_REQUEST_BODY", message)
}

/// `POST /v3/async/wan-i2v`. The newer page revision makes `model_name`, `width`, `height` and `seed`
/// optional, so the fake accepts their absence but checks them when present.
pub(super) fn validate_wan21(body: &Value) -> Result<Accepted, Rejection> {
    let root = check::object(Some(body), "request body").map_err(bad)?;
    // Strict (issue 21): the fields of contract 2.2.
    check::only(
        root,
        "",
        &[
            "model_name",
            "image_url",
            "width",
            "height",
            "seed",
            "prompt",
            "negative_prompt",
            "loras",
            "steps",
            "guidance_scale",
            "flow_shift",
            "enable_safety_checker",
            "fast_mode",
            "extra",
        ],
    )
    .map_err(bad)?;
    if let Some(model) = check::opt_str(root, "model_name", "model_name").map_err(bad)?
        && model != "wan2.1-i2v"
    {
        return Err(bad(format!(
            "model_name must be \"wan2.1-i2v\", got {model:?}"
        )));
    }
    let image = check::req_str(root, "image_url", "image_url").map_err(bad)?;
    if !check::is_http_url(image) {
        return Err(bad(
            "image_url must be an http(s) URL (wan-i2v does not take base64 or data URIs)".into(),
        ));
    }
    let width = check::opt_int(root, "width", "width", i64::MIN, i64::MAX).map_err(bad)?;
    let height = check::opt_int(root, "height", "height", i64::MIN, i64::MAX).map_err(bad)?;
    match (width, height) {
        (None, None) => {}
        (Some(w), Some(h)) if WAN21_SIZES.contains(&(w, h)) => {}
        _ => {
            return Err(bad(format!(
                "width x height must be one of 480x832, 832x480, 720x1280, 1280x720, got {width:?} x {height:?}"
            )));
        }
    }
    check::opt_int(root, "seed", "seed", -1, 9_999_999_999).map_err(bad)?;
    let prompt = check::req_str(root, "prompt", "prompt").map_err(bad)?;
    if check::chars(prompt) > 2000 {
        return Err(bad(format!(
            "prompt must be 1-2000 characters, got {}",
            check::chars(prompt)
        )));
    }
    if let Some(negative) =
        check::opt_str(root, "negative_prompt", "negative_prompt").map_err(bad)?
        && check::chars(negative) > 2000
    {
        return Err(bad("negative_prompt must be 0-2000 characters".into()));
    }
    if let Some(loras) = root.get("loras").filter(|v| !v.is_null()) {
        let items = loras
            .as_array()
            .ok_or_else(|| bad("loras must be an array".into()))?;
        if items.len() > 3 {
            return Err(bad(format!(
                "at most 3 loras are supported, got {}",
                items.len()
            )));
        }
        for (i, item) in items.iter().enumerate() {
            let name = format!("loras[{i}]");
            let o = check::object(Some(item), &name).map_err(bad)?;
            check::only(o, &name, &["path", "scale"]).map_err(bad)?;
            check::req_str(o, "path", &format!("{name}.path")).map_err(bad)?;
            // The scale range is UNKNOWN (contract 2.2): only the type is checked.
            check::opt_num(
                o,
                "scale",
                &format!("{name}.scale"),
                f64::NEG_INFINITY,
                f64::INFINITY,
            )
            .map_err(bad)?;
        }
    }
    check::opt_int(root, "steps", "steps", 1, 40).map_err(bad)?;
    check::opt_num(root, "guidance_scale", "guidance_scale", 0.0, 10.0).map_err(bad)?;
    check::opt_num(root, "flow_shift", "flow_shift", 1.0, 10.0).map_err(bad)?;
    check::opt_bool(root, "enable_safety_checker", "enable_safety_checker").map_err(bad)?;
    check::opt_bool(root, "fast_mode", "fast_mode").map_err(bad)?;
    webhook(root)
}

/// `POST /v3/async/wan2.6-i2v`. Over-long `prompt` (2000) and `negative_prompt` (500) are accepted:
/// the page says the excess is truncated, not rejected.
pub(super) fn validate_wan26(body: &Value) -> Result<Accepted, Rejection> {
    let root = check::object(Some(body), "request body").map_err(bad)?;
    let input = check::object(root.get("input"), "input").map_err(bad)?;
    // Strict (issue 21): contract 2.3's objects.
    check::only(root, "", &["input", "parameters", "extra"]).map_err(bad)?;
    check::only(
        input,
        "input",
        &[
            "prompt",
            "negative_prompt",
            "img_url",
            "audio_url",
            "template",
        ],
    )
    .map_err(bad)?;
    let image = check::req_str(input, "img_url", "input.img_url").map_err(bad)?;
    check_image_26(image)?;
    check::opt_str(input, "prompt", "input.prompt").map_err(bad)?;
    check::opt_str(input, "negative_prompt", "input.negative_prompt").map_err(bad)?;
    check::opt_str(input, "template", "input.template").map_err(bad)?;
    if let Some(audio) = check::opt_str(input, "audio_url", "input.audio_url").map_err(bad)?
        && !check::is_http_url(audio)
    {
        return Err(bad("input.audio_url must be an http(s) URL".into()));
    }
    if let Some(p) = check::opt_object(root, "parameters", "parameters").map_err(bad)? {
        check::only(
            p,
            "parameters",
            &[
                "seed",
                "audio",
                "duration",
                "shot_type",
                "watermark",
                "resolution",
                "prompt_extend",
            ],
        )
        .map_err(bad)?;
        check::opt_int(p, "seed", "parameters.seed", 0, 2_147_483_647).map_err(bad)?;
        check::opt_bool(p, "audio", "parameters.audio").map_err(bad)?;
        if let Some(d) =
            check::opt_int(p, "duration", "parameters.duration", 0, i64::MAX).map_err(bad)?
            && ![5, 10, 15].contains(&d)
        {
            return Err(bad(format!(
                "parameters.duration must be 5, 10 or 15, got {d}"
            )));
        }
        check::opt_enum(p, "shot_type", "parameters.shot_type", &["single", "multi"])
            .map_err(bad)?;
        check::opt_bool(p, "watermark", "parameters.watermark").map_err(bad)?;
        check::opt_enum(p, "resolution", "parameters.resolution", &["720P", "1080P"])
            .map_err(bad)?;
        check::opt_bool(p, "prompt_extend", "parameters.prompt_extend").map_err(bad)?;
    }
    webhook(root)
}

/// `POST /v3/async/wan2.7-i2v` (CONTRACTS-2026-12.md B.2): flat; exactly one of `image_url` and
/// `first_clip_url`; every media field an http(s) URL (data URIs UNKNOWN, so refused here);
/// `driving_audio_url` not with `first_clip_url` (the DashScope combination rules).
pub(super) fn validate_wan27(body: &Value) -> Result<Accepted, Rejection> {
    let root = check::object(Some(body), "request body").map_err(bad)?;
    // Strict (issue 21): B.2's flat body.
    check::only(
        root,
        "",
        &[
            "image_url",
            "first_clip_url",
            "last_frame_url",
            "driving_audio_url",
            "prompt",
            "negative_prompt",
            "duration",
            "resolution",
            "prompt_extend",
            "watermark",
            "seed",
            "extra",
        ],
    )
    .map_err(bad)?;
    for nested in ["input", "parameters", "media"] {
        if root.contains_key(nested) {
            return Err(bad(format!(
                "{nested} is not a field of wan2.7-i2v: the body is flat"
            )));
        }
    }
    let mut urls = Vec::new();
    for key in [
        "image_url",
        "first_clip_url",
        "last_frame_url",
        "driving_audio_url",
    ] {
        if let Some(u) = check::opt_str(root, key, key).map_err(bad)? {
            if !check::is_http_url(u) {
                return Err(bad(format!("{key} must be an http(s) URL")));
            }
            urls.push(key);
        }
    }
    let has = |k: &str| urls.contains(&k);
    if has("image_url") == has("first_clip_url") {
        return Err(bad(
            "exactly one of image_url and first_clip_url is required".into(),
        ));
    }
    if has("first_clip_url") && has("driving_audio_url") {
        return Err(bad(
            "driving_audio_url cannot be combined with first_clip_url".into(),
        ));
    }
    if let Some(p) = check::opt_str(root, "prompt", "prompt").map_err(bad)?
        && check::chars(p) > 5000
    {
        return Err(bad("prompt must be 0-5000 characters".into()));
    }
    if let Some(n) = check::opt_str(root, "negative_prompt", "negative_prompt").map_err(bad)?
        && check::chars(n) > 500
    {
        return Err(bad("negative_prompt must be 0-500 characters".into()));
    }
    check::opt_int(root, "duration", "duration", 2, 15).map_err(bad)?;
    check::opt_enum(root, "resolution", "resolution", &["720P", "1080P"]).map_err(bad)?;
    check::opt_bool(root, "prompt_extend", "prompt_extend").map_err(bad)?;
    check::opt_bool(root, "watermark", "watermark").map_err(bad)?;
    check::opt_int(root, "seed", "seed", 0, 2_147_483_647).map_err(bad)?;
    webhook(root)
}

/// CONTRACTS-2026-12.md B.3: `wan2.7-t2v`, flat, `size` from the two tiers' lists.
pub(super) fn validate_wan27_t2v(body: &Value) -> Result<Accepted, Rejection> {
    let root = check::object(Some(body), "request body").map_err(bad)?;
    // Strict (issue 21): B.3's flat body.
    check::only(
        root,
        "",
        &[
            "prompt",
            "size",
            "duration",
            "audio_url",
            "negative_prompt",
            "prompt_extend",
            "watermark",
            "seed",
            "extra",
        ],
    )
    .map_err(bad)?;
    for field in ["input", "parameters", "image_url", "resolution"] {
        if root.contains_key(field) {
            return Err(bad(format!("{field} is not a field of wan2.7-t2v")));
        }
    }
    let prompt = check::req_str(root, "prompt", "prompt").map_err(bad)?;
    if check::chars(prompt) > 1500 {
        return Err(bad("prompt must be 0-1500 characters".into()));
    }
    const SIZES: &[&str] = &[
        "1280*720",
        "720*1280",
        "960*960",
        "1088*832",
        "832*1088",
        "1920*1080",
        "1080*1920",
        "1440*1440",
        "1632*1248",
        "1248*1632",
    ];
    check::opt_enum(root, "size", "size", SIZES).map_err(bad)?;
    check::opt_int(root, "duration", "duration", 2, 15).map_err(bad)?;
    if let Some(u) = check::opt_str(root, "audio_url", "audio_url").map_err(bad)?
        && !check::is_http_url(u)
    {
        return Err(bad("audio_url must be an http(s) URL".into()));
    }
    if let Some(n) = check::opt_str(root, "negative_prompt", "negative_prompt").map_err(bad)?
        && check::chars(n) > 500
    {
        return Err(bad("negative_prompt must be 0-500 characters".into()));
    }
    check::opt_bool(root, "prompt_extend", "prompt_extend").map_err(bad)?;
    check::opt_bool(root, "watermark", "watermark").map_err(bad)?;
    check::opt_int(root, "seed", "seed", 0, 2_147_483_647).map_err(bad)?;
    webhook(root)
}

/// URL, or a data URI of JPEG/PNG/BMP/WEBP up to 10 MB. For PNG the IHDR is read: alpha is refused,
/// and sides must lie in 360-2000 px (other formats' dimensions are not parsed).
fn check_image_26(image: &str) -> Result<(), Rejection> {
    if check::is_http_url(image) {
        return Ok(());
    }
    let Some(decoded) = check::data_uri(image) else {
        return Err(bad(
            "input.img_url must be an http(s) URL or a data URI (data:image/png;base64,...)".into(),
        ));
    };
    let (_, bytes) = decoded
        .map_err(|e| Rejection::new(400, "INVALID_IMAGE_FORMAT", format!("input.img_url: {e}")))?;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(Rejection::new(
            400,
            "IMAGE_FILE_EXCEEDS_MAX_SIZE",
            "input.img_url: image larger than 10MB".into(),
        ));
    }
    if check::sniff(&bytes).is_none() {
        return Err(Rejection::new(
            400,
            "INVALID_IMAGE_FORMAT",
            "input.img_url: supported formats are JPEG, JPG, PNG, BMP, WEBP".into(),
        ));
    }
    if let Some((w, h, alpha)) = check::png_info(&bytes) {
        if alpha {
            return Err(Rejection::new(
                400,
                "INVALID_IMAGE_FORMAT",
                "input.img_url: PNG with a transparency channel is not supported".into(),
            ));
        }
        if w < 360 || h < 360 {
            return Err(Rejection::new(
                400,
                "INVALID_IMAGE_SIZE",
                format!("input.img_url: {w}x{h} is below 360 px"),
            ));
        }
        if w > 2000 || h > 2000 {
            return Err(Rejection::new(
                400,
                "IMAGE_EXCEEDS_MAX_RESOLUTION",
                format!("input.img_url: {w}x{h} is above 2000 px"),
            ));
        }
    }
    Ok(())
}

/// `extra.webhook` (2.6): the URL, and the `test_mode` status to simulate when enabled.
fn webhook(root: &Obj) -> Result<Accepted, Rejection> {
    let none = Accepted {
        hook: None,
        test_mode: None,
    };
    let Some(extra) = check::opt_object(root, "extra", "extra").map_err(bad)? else {
        return Ok(none);
    };
    check::only(extra, "extra", &["webhook"]).map_err(bad)?;
    let Some(wh) = check::opt_object(extra, "webhook", "extra.webhook").map_err(bad)? else {
        return Ok(none);
    };
    check::only(wh, "extra.webhook", &["url", "test_mode"]).map_err(bad)?;
    let url = check::req_str(wh, "url", "extra.webhook.url").map_err(bad)?;
    if !check::is_http_url(url) {
        return Err(bad("extra.webhook.url must be an http(s) URL".into()));
    }
    let mut test_mode = None;
    if let Some(tm) = check::opt_object(wh, "test_mode", "extra.webhook.test_mode").map_err(bad)?
        && check::only(
            tm,
            "extra.webhook.test_mode",
            &["enabled", "return_task_status"],
        )
        .map(|()| true)
        .map_err(bad)?
        && check::opt_bool(tm, "enabled", "extra.webhook.test_mode.enabled").map_err(bad)?
            == Some(true)
    {
        let status = check::opt_enum(
            tm,
            "return_task_status",
            "extra.webhook.test_mode.return_task_status",
            &["TASK_STATUS_SUCCEED", "TASK_STATUS_FAILED"],
        )
        .map_err(bad)?
        .unwrap_or("TASK_STATUS_SUCCEED");
        test_mode = Some(status.to_string());
    }
    Ok(Accepted {
        hook: Some(Hook {
            url: url.to_string(),
            secret: None,
        }),
        test_mode,
    })
}

pub(super) fn status(phase: &Phase) -> &'static str {
    match phase {
        Phase::Queued { .. } => "TASK_STATUS_QUEUED",
        Phase::Running { .. } => "TASK_STATUS_PROCESSING",
        Phase::Succeeded => "TASK_STATUS_SUCCEED",
        Phase::Failed(_) => "TASK_STATUS_FAILED",
    }
}

/// `WAN_IMG_TO_VIDEO` is documented for Wan 2.1; the Wan 2.6 value is UNKNOWN, so the fake invents one.
fn task_type(route: Route) -> &'static str {
    match route {
        Route::NovitaWan26 => "WAN_2_6_IMG_TO_VIDEO",
        // CONTRACTS-2026-12.md B.4: UNKNOWN too; the adapter must not match on it.
        Route::NovitaWan27 => "WAN_2_7_IMG_TO_VIDEO",
        Route::NovitaWan27T2v => "WAN_2_7_TXT_TO_VIDEO",
        _ => "WAN_IMG_TO_VIDEO",
    }
}

/// `GET /v3/async/task-result` body (2.4).
pub(super) fn task_result(task: &TaskRec, phase: &Phase, root: &str) -> Value {
    let (reason, eta, progress) = match phase {
        Phase::Queued { .. } => (String::new(), 0, 0),
        Phase::Running { percent, eta_s } => (String::new(), *eta_s, *percent),
        Phase::Succeeded => (String::new(), 0, 100),
        Phase::Failed(message) => (message.clone(), 0, 0),
    };
    let videos = match phase {
        Phase::Succeeded => json!([{
            "video_url": video_url(root, &task.id),
            "video_url_ttl": "3600",
            "video_type": "mp4"
        }]),
        _ => json!([]),
    };
    let seed = task
        .body
        .get("seed")
        .or_else(|| task.body.pointer("/parameters/seed"))
        .and_then(Value::as_i64)
        .unwrap_or(-1);
    let ms = |t: Option<std::time::SystemTime>| t.map_or(0, unix_ms).to_string();
    json!({
        "extra": {
            "seed": seed.to_string(),
            "enable_nsfw_detection": false,
            "debug_info": {
                "request_info": "",
                "submit_time_ms": unix_ms(task.created_at).to_string(),
                "execute_time_ms": ms(task.started_at),
                "complete_time_ms": ms(task.ended_at)
            }
        },
        "task": {
            "task_id": task.id,
            "task_type": task_type(task.route),
            "status": status(phase),
            "reason": reason,
            "eta": eta,
            "progress_percent": progress
        },
        "images": [],
        "videos": videos,
        "audios": []
    })
}

/// Webhook event (2.6): `{"event_type":"ASYNC_TASK_RESULT","payload":<task result>}`.
pub(super) fn hook_body(result: Value) -> Value {
    json!({"event_type": "ASYNC_TASK_RESULT", "payload": result})
}
