//! Apikley wire shapes (CONTRACTS.md section 3): create validation (3.2), `recordInfo` (3.3), the
//! base64 upload (3.4) and the callback body (3.5, same as `recordInfo`). Error envelopes (3.6) are
//! built in `flow`. Pure functions.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::check::{self, ImageFormat};
use super::flow::{Accepted, Rejection};
use super::net::{rfc3339, unix_ms};
use super::{Hook, Phase, TaskRec, video_url};

pub(super) const MODEL: &str = "wan/2-2-a14b-image-to-video-turbo";

fn bad(message: String) -> Rejection {
    Rejection::new(422, "", message)
}

/// Validates `POST /api/v1/jobs/createTask`; body code 422 on the first problem.
pub(super) fn validate(body: &Value) -> Result<Accepted, Rejection> {
    let root = check::object(Some(body), "request body").map_err(bad)?;
    // Strict (issue 21): contract 3.2's objects.
    check::only(root, "", &["model", "callBackUrl", "input"]).map_err(bad)?;
    let model = check::req_str(root, "model", "model").map_err(bad)?;
    if model != MODEL {
        return Err(bad(format!("model must be {MODEL:?}, got {model:?}")));
    }
    let hook = match check::opt_str(root, "callBackUrl", "callBackUrl").map_err(bad)? {
        Some(url) if !check::is_http_url(url) => {
            return Err(bad("callBackUrl must be an http(s) URL".into()));
        }
        Some(url) => Some(Hook {
            url: url.to_string(),
            secret: None,
        }),
        None => None,
    };
    let input = check::object(root.get("input"), "input").map_err(bad)?;
    check::only(
        input,
        "input",
        &[
            "image_url",
            "prompt",
            "resolution",
            "aspect_ratio",
            "enable_prompt_expansion",
            "seed",
            "acceleration",
        ],
    )
    .map_err(bad)?;
    let image = check::req_str(input, "image_url", "input.image_url").map_err(bad)?;
    if !check::is_http_url(image) {
        return Err(bad(
            "input.image_url must be a file URL (upload first), not file content".into(),
        ));
    }
    let prompt = check::req_str(input, "prompt", "input.prompt").map_err(bad)?;
    if check::chars(prompt) > 5000 {
        return Err(bad(format!(
            "input.prompt exceeds 5000 characters ({})",
            check::chars(prompt)
        )));
    }
    check::opt_enum(
        input,
        "resolution",
        "input.resolution",
        &["480p", "580p", "720p"],
    )
    .map_err(bad)?;
    check::opt_enum(
        input,
        "aspect_ratio",
        "input.aspect_ratio",
        &["auto", "16:9", "9:16", "1:1"],
    )
    .map_err(bad)?;
    check::opt_bool(
        input,
        "enable_prompt_expansion",
        "input.enable_prompt_expansion",
    )
    .map_err(bad)?;
    check::opt_int(input, "seed", "input.seed", 0, 2_147_483_647).map_err(bad)?;
    check::opt_enum(
        input,
        "acceleration",
        "input.acceleration",
        &["none", "regular"],
    )
    .map_err(bad)?;
    Ok(Accepted {
        hook,
        test_mode: None,
    })
}

/// `{"code":200,"msg":"success","data":{"taskId":...}}`.
pub(super) fn create_body(id: &str) -> Value {
    json!({"code": 200, "msg": "success", "data": {"taskId": id}})
}

pub(super) fn status(phase: &Phase) -> &'static str {
    match phase {
        // Both queued states are documented; the first queued answer says `waiting`, later ones `queuing`.
        Phase::Queued { step } if *step <= 1 => "waiting",
        Phase::Queued { .. } => "queuing",
        Phase::Running { .. } => "generating",
        Phase::Succeeded => "success",
        Phase::Failed(_) => "fail",
    }
}

/// `recordInfo` body, also the callback body. `param` and `resultJson` are JSON *strings*; times are
/// epoch ms (0 when not reached). `progress` is left out: it is only secondary and its type is unknown.
pub(super) fn record_info(task: &TaskRec, phase: &Phase, root: &str) -> Value {
    let result_json = match phase {
        Phase::Succeeded => json!({ "resultUrls": [video_url(root, &task.id)] }).to_string(),
        _ => String::new(),
    };
    // failCode values are UNKNOWN (contract 3.3); "500" follows the constructed example.
    let (fail_code, fail_msg) = match phase {
        Phase::Failed(message) => ("500", message.as_str()),
        _ => ("", ""),
    };
    let ms = |t: Option<SystemTime>| t.map_or(0, unix_ms);
    let cost = match (task.started_at, task.ended_at) {
        (Some(s), Some(e)) => ms(Some(e)).saturating_sub(ms(Some(s))),
        _ => 0,
    };
    let updated = task.ended_at.or(task.started_at).unwrap_or(task.created_at);
    json!({
        "code": 200,
        "msg": "success",
        "data": {
            "taskId": task.id,
            "model": MODEL,
            "state": status(phase),
            "param": task.body.to_string(),
            "resultJson": result_json,
            "failCode": fail_code,
            "failMsg": fail_msg,
            "costTime": cost,
            "completeTime": ms(task.ended_at),
            "createTime": unix_ms(task.created_at),
            "updateTime": unix_ms(updated)
        }
    })
}

/// A decoded base64 upload request.
pub(super) struct Upload {
    pub bytes: Vec<u8>,
    pub mime: String,
    pub file_name: Option<String>,
    pub upload_path: String,
}

/// `POST /file-upload/api/file-base64-upload` body `{"base64Data","uploadPath","fileName"}`;
/// `base64Data` is raw base64 or a data URL.
pub(super) fn parse_upload(body: &Value) -> Result<Upload, Rejection> {
    let root = check::object(Some(body), "request body").map_err(bad)?;
    // Strict (issue 21): contract 3.4's base64 upload fields.
    check::only(root, "", &["base64Data", "uploadPath", "fileName"]).map_err(bad)?;
    let data = check::req_str(root, "base64Data", "base64Data").map_err(bad)?;
    let upload_path = check::opt_str(root, "uploadPath", "uploadPath")
        .map_err(bad)?
        .unwrap_or_default()
        .trim_matches('/')
        .to_string();
    let file_name = check::opt_str(root, "fileName", "fileName")
        .map_err(bad)?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let (declared, bytes) = match check::data_uri(data) {
        Some(decoded) => decoded.map_err(|e| bad(format!("base64Data: {e}")))?,
        None => (
            String::new(),
            check::base64_bytes(data)
                .ok_or_else(|| bad("base64Data is not valid base64".into()))?,
        ),
    };
    let mime = match check::sniff(&bytes) {
        Some(format) => format.mime().to_string(),
        None if !declared.is_empty() => declared,
        None => "application/octet-stream".to_string(),
    };
    Ok(Upload {
        bytes,
        mime,
        file_name,
        upload_path,
    })
}

/// Default name for an upload without `fileName`.
pub(super) fn default_file_name(seq: u64, bytes: &[u8]) -> String {
    let ext = check::sniff(bytes).map_or("bin", ImageFormat::extension);
    format!("upload-{seq}.{ext}")
}

/// Upload answer (kie.ai field names, contract 3.4).
pub(super) fn upload_body(upload: &Upload, file_name: &str, download_url: &str) -> Value {
    let file_path = if upload.upload_path.is_empty() {
        file_name.to_string()
    } else {
        format!("{}/{file_name}", upload.upload_path)
    };
    json!({
        "success": true,
        "code": 200,
        "msg": "File uploaded successfully",
        "data": {
            "fileName": file_name,
            "filePath": file_path,
            "downloadUrl": download_url,
            "fileSize": upload.bytes.len(),
            "mimeType": upload.mime,
            "uploadedAt": rfc3339(SystemTime::now())
        }
    })
}
