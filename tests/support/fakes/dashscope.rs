//! DashScope wire shapes (CONTRACTS-2026-12.md section A): the create body of both protocols (A.3
//! `media[]` for `wan2.7-i2v`, A.4 `img_url` for the others), the task envelope (A.7), the error
//! envelope `{code, message, request_id}` (A.2, A.10). Pure functions; the flows are in `flow`.

use serde_json::{Value, json};

use super::check::{self, Obj};
use super::flow::{Accepted, Rejection};
use super::{Phase, TaskRec, video_url};

/// A.3/A.4: 20 MB (2.7, 2.6, 2.5) or 10 MB (2.2) per image, raw.
const MB: usize = 1024 * 1024;

/// The models this fake serves, with their resolutions, durations and image cap in MB.
fn model(name: &str) -> Option<(&'static [&'static str], &'static [i64], usize)> {
    const HD: &[&str] = &["720P", "1080P"];
    const ALL: &[&str] = &["480P", "720P", "1080P"];
    const D2_15: &[i64] = &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    Some(match name {
        "wan2.7-i2v" | "wan2.6-i2v" | "wan2.6-i2v-flash" => (HD, D2_15, 20),
        "wan2.5-i2v-preview" => (ALL, &[5, 10], 20),
        "wan2.2-i2v-plus" => (&["480P", "1080P"], &[5], 10),
        "wan2.2-i2v-flash" => (ALL, &[5], 10),
        "wan2.7-t2v" => (HD, D2_15, 0),
        // A.5.2: legacy text-to-video takes `size`; these are its tiers' 16:9 sizes.
        "wan2.6-t2v" => (&["1280*720", "1920*1080"], D2_15, 0),
        "wan2.5-t2v-preview" => (&["832*480", "1280*720", "1920*1080"], &[5, 10], 0),
        "wan2.2-t2v-plus" => (&["832*480", "1920*1080"], &[5], 0),
        _ => return None,
    })
}

fn bad(message: String) -> Rejection {
    Rejection::new(400, "InvalidParameter", message)
}

/// What the official SDK adds to `input` on every call (`dashscope` 2.0.2,
/// `aigc/video_synthesis.py` `_get_input`): the deprecated `extend_prompt` and the path's
/// `function`. The real API takes them, so the fake does too.
pub(super) const SDK_INPUT: [&str; 2] = ["extend_prompt", "function"];

/// Strict (issue 21): the fields each object of `name`'s create body may hold; anything else,
/// a field in the wrong object included, is a 400 `InvalidParameter`.
fn check_fields(name: &str, root: &Obj, input: &Obj) -> Result<(), Rejection> {
    check::only(root, "", &["model", "input", "parameters"]).map_err(bad)?;
    let t2v = name.contains("-t2v");
    let audio_url = !name.starts_with("wan2.2-");
    let mut fields = vec!["prompt", "negative_prompt"];
    match name {
        "wan2.7-i2v" => fields.push("media"),
        _ if !t2v => fields.push("img_url"),
        _ => {}
    }
    if audio_url && name != "wan2.7-i2v" {
        fields.push("audio_url");
    }
    fields.extend(SDK_INPUT);
    check::only(input, "input", &fields).map_err(bad)?;
    if let Some(media) = input.get("media").and_then(Value::as_array) {
        for (i, item) in media.iter().enumerate() {
            if let Some(o) = item.as_object() {
                check::only(o, &format!("input.media[{i}]"), &["type", "url"]).map_err(bad)?;
            }
        }
    }
    let Some(p) = check::opt_object(root, "parameters", "parameters").map_err(bad)? else {
        return Ok(());
    };
    let mut fields = vec!["duration", "prompt_extend", "watermark", "seed"];
    match name {
        "wan2.7-t2v" => fields.extend(["resolution", "ratio"]),
        _ if t2v => fields.push("size"),
        _ => fields.push("resolution"),
    }
    if name.starts_with("wan2.6-") {
        fields.push("shot_type");
    }
    if name == "wan2.6-i2v-flash" {
        fields.push("audio");
    }
    check::only(p, "parameters", &fields).map_err(bad)
}

/// The error envelope (A.2): `reason` is the DashScope code; the fake's generic reasons are
/// translated.
pub(super) fn error_body(reason: &str, message: &str) -> Value {
    let code = match reason {
        "RATE_LIMIT_EXCEEDED" => "Throttling.RateQuota",
        "INVALID_REQUEST_BODY" => "InvalidParameter",
        "TASK_NOT_FOUND" | "API_NOT_FOUND" => "NotFound",
        "" => "InternalError",
        other => other,
    };
    json!({"code": code, "message": message, "request_id": "7438d53d-6eb8-4596-8835-000000000000"})
}

/// An image: http(s) URL or a data URI of an allowed MIME type (A.9) within the model's cap.
fn check_image(url: &str, name: &str, cap_mb: usize) -> Result<(), Rejection> {
    if check::is_http_url(url) {
        return Ok(());
    }
    let Some(decoded) = check::data_uri(url) else {
        return Err(Rejection::new(
            400,
            "InvalidURL",
            format!("{name} must be an http(s) URL or a data URI"),
        ));
    };
    let (mime, bytes) = decoded.map_err(|e| bad(format!("{name}: {e}")))?;
    if !["image/jpeg", "image/png", "image/bmp", "image/webp"].contains(&mime.as_str()) {
        return Err(Rejection::new(
            400,
            "InvalidFile.Format",
            format!("{name}: {mime} not allowed"),
        ));
    }
    if bytes.len() > cap_mb * MB {
        return Err(Rejection::new(
            400,
            "InvalidFile.Size",
            format!("{name}: over {cap_mb} MB"),
        ));
    }
    Ok(())
}

/// A.3: `media` of one of the permitted combinations (images only, audio by URL).
fn check_media(input: &Obj, cap_mb: usize) -> Result<(), Rejection> {
    let items = input
        .get("media")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("input.media is required for wan2.7-i2v".into()))?;
    let mut kinds = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let name = format!("input.media[{i}]");
        let o = check::object(Some(item), &name).map_err(bad)?;
        let kind = check::req_str(o, "type", &format!("{name}.type")).map_err(bad)?;
        let url = check::req_str(o, "url", &format!("{name}.url")).map_err(bad)?;
        match kind {
            "first_frame" | "last_frame" => check_image(url, &name, cap_mb)?,
            "driving_audio" | "first_clip" if !check::is_http_url(url) => {
                return Err(Rejection::new(
                    400,
                    "InvalidURL",
                    format!("{name}.url must be http(s)"),
                ));
            }
            _ => {}
        }
        kinds.push(kind);
    }
    let permitted: [&[&str]; 6] = [
        &["first_frame"],
        &["first_frame", "driving_audio"],
        &["first_frame", "last_frame"],
        &["first_frame", "last_frame", "driving_audio"],
        &["first_clip"],
        &["first_clip", "last_frame"],
    ];
    let mut sorted = kinds.clone();
    sorted.sort_unstable();
    if !permitted.iter().any(|p| {
        let mut p = p.to_vec();
        p.sort_unstable();
        p == sorted
    }) {
        return Err(bad(format!("media combination {kinds:?} is not permitted")));
    }
    Ok(())
}

/// A.5: text-to-video takes no image, needs a prompt; 2.7 takes `resolution` + `ratio`, the
/// others `size` (and no `resolution`).
fn check_t2v(name: &str, root: &Obj, input: &Obj) -> Result<(), Rejection> {
    for image in ["img_url", "media"] {
        if input.contains_key(image) {
            return Err(bad(format!("{name} is text-to-video: no input.{image}")));
        }
    }
    let prompt = check::req_str(input, "prompt", "input.prompt").map_err(bad)?;
    let max = match name {
        "wan2.7-t2v" => 5000,
        "wan2.2-t2v-plus" => 800,
        _ => 1500,
    };
    if check::chars(prompt) > max {
        return Err(bad(format!("input.prompt over {max} characters")));
    }
    let Some(p) = check::opt_object(root, "parameters", "parameters").map_err(bad)? else {
        return Ok(());
    };
    if name == "wan2.7-t2v" {
        check::opt_enum(
            p,
            "ratio",
            "parameters.ratio",
            &["16:9", "9:16", "1:1", "4:3", "3:4"],
        )
        .map_err(bad)?;
        if p.contains_key("size") {
            return Err(bad("wan2.7-t2v takes resolution + ratio, not size".into()));
        }
    } else if p.contains_key("resolution") || p.contains_key("ratio") {
        return Err(bad(format!("{name} takes parameters.size")));
    }
    Ok(())
}

/// `POST /services/aigc/video-generation/video-synthesis` (A.2-A.5).
pub(super) fn validate(body: &Value) -> Result<Accepted, Rejection> {
    let root = check::object(Some(body), "request body").map_err(bad)?;
    let name = check::req_str(root, "model", "model").map_err(bad)?;
    if matches!(name, "wan3.0-video" | "wan3.0-video-prime") {
        return super::dashscope_wan3::validate(root);
    }
    let (resolutions, durations, cap_mb) = model(name)
        .ok_or_else(|| Rejection::new(404, "ModelNotFound", format!("model {name} not found")))?;
    let input = check::object(root.get("input"), "input").map_err(bad)?;
    check_fields(name, root, input)?;
    check::opt_str(input, "prompt", "input.prompt").map_err(bad)?;
    check::opt_str(input, "negative_prompt", "input.negative_prompt").map_err(bad)?;
    let t2v = name.contains("-t2v");
    if t2v {
        check_t2v(name, root, input)?;
    } else if name == "wan2.7-i2v" {
        check_media(input, cap_mb)?;
        if input.contains_key("img_url") {
            return Err(bad("wan2.7-i2v takes input.media, not input.img_url".into()));
        }
    } else {
        let img = check::req_str(input, "img_url", "input.img_url").map_err(bad)?;
        check_image(img, "input.img_url", cap_mb)?;
        if input.contains_key("media") {
            return Err(bad(format!("{name} takes input.img_url, not input.media")));
        }
    }
    if let Some(p) = check::opt_object(root, "parameters", "parameters").map_err(bad)? {
        let tiers = if t2v && name != "wan2.7-t2v" {
            "size"
        } else {
            "resolution"
        };
        check::opt_enum(p, tiers, &format!("parameters.{tiers}"), resolutions).map_err(bad)?;
        if let Some(d) = check::opt_int(p, "duration", "parameters.duration", 0, 60).map_err(bad)?
            && !durations.contains(&d)
        {
            return Err(bad(format!(
                "parameters.duration {d} not allowed for {name}"
            )));
        }
        check::opt_int(p, "seed", "parameters.seed", 0, 2_147_483_647).map_err(bad)?;
        check::opt_bool(p, "watermark", "parameters.watermark").map_err(bad)?;
        check::opt_bool(p, "prompt_extend", "parameters.prompt_extend").map_err(bad)?;
        if p.contains_key("audio") && name != "wan2.6-i2v-flash" {
            return Err(bad(format!(
                "parameters.audio is for wan2.6-i2v-flash only, not {name}"
            )));
        }
    }
    Ok(Accepted {
        hook: None,
        test_mode: None,
    })
}

pub(super) fn create_answer(id: &str) -> Value {
    json!({"output": {"task_status": "PENDING", "task_id": id}, "request_id": "4909100c-7b5a-9f92-bfe5-000000000000"})
}

pub(super) fn status(phase: &Phase, cancelled: bool) -> &'static str {
    match phase {
        _ if cancelled => "CANCELED",
        Phase::Queued { .. } => "PENDING",
        Phase::Running { .. } => "RUNNING",
        Phase::Succeeded => "SUCCEEDED",
        Phase::Failed(_) => "FAILED",
    }
}

/// `GET /tasks/{id}` (A.7). The video URL carries a signed `Expires` like OSS's.
pub(super) fn task(task: &TaskRec, phase: &Phase, root: &str) -> Value {
    let mut output = json!({
        "task_id": task.id,
        "task_status": status(phase, task.cancelled),
        "submit_time": "2026-04-20 19:33:50.425",
    });
    let mut body = json!({"request_id": "2ca1c497-0000-0000-0000-000000000000"});
    match phase {
        Phase::Succeeded if !task.cancelled => {
            let expires = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() + 24 * 3600);
            output["video_url"] = json!(format!(
                "{}?Expires={expires}&OSSAccessKeyId=x&Signature=y",
                video_url(root, &task.id)
            ));
            let d = task
                .body
                .pointer("/parameters/duration")
                .cloned()
                .unwrap_or(json!(5));
            body["usage"] = json!({"duration": d, "input_video_duration": 0, "output_video_duration": d, "video_count": 1, "SR": 720});
        }
        Phase::Failed(message) if !task.cancelled => {
            output["code"] = json!("InvalidParameter");
            output["message"] = json!(message);
        }
        _ => {}
    }
    body["output"] = output;
    body
}

/// A.7: an id the fake does not know reads `UNKNOWN` with HTTP 200.
pub(super) fn unknown(id: &str) -> Value {
    json!({"request_id": "a4de7c32-0000-0000-0000-000000000000", "output": {"task_id": id, "task_status": "UNKNOWN"}})
}
