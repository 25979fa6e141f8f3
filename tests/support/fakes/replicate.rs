//! Replicate wire shapes (docs/notes/replicate.md): prediction create validation per model
//! (`POST /v1/models/wan-video/{name}/predictions`, strict: an unknown input field is refused
//! with Replicate's 422 "Input validation failed" shape), the prediction body that create, poll,
//! cancel and the webhook share, the Files API (`POST /v1/files`, multipart `content`), and the
//! Standard Webhooks signature over `{webhook-id}.{webhook-timestamp}.{body}` with the secret the
//! fake serves at `GET /v1/webhooks/default/secret`. Pure functions.
//!
//! Choices where Replicate says nothing first-hand (marked in the note): data URIs of 1 MB or
//! more are refused (the docs only "recommend" less than 1 MB); a prediction whose Cancel-After
//! lapses ends `aborted` if it had not started and `canceled` if it ran (as the changelog of
//! 2025-10-16 says); a `Fail` outcome whose message starts with "aborted" ends `aborted`;
//! after the fake's output "hour" a poll shows `data_removed: true` and `output: null`, and the
//! output URL answers 404.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::check::{self, Obj};
use super::flow::{Accepted, Rejection};
use super::net::unix_ms;
use super::{Hook, Phase, TaskRec, video_url};

/// A prediction whose `Cancel-After` lapsed while it ran: `canceled` (changelog 2025-10-16).
pub(super) const LAPSED: &str = "canceled: Cancel-After lapsed";
/// ... and before it started: `aborted`, not charged.
pub(super) const LAPSED_QUEUED: &str = "aborted: Cancel-After lapsed before it started";
/// "less than 1MB" (input-files page): the fake refuses data URIs at or above it.
pub(super) const DATA_URI_MAX: usize = 1_000_000;
/// The signing secret every fake serves (base64 of 24 fixed bytes).
pub(super) const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn invalid(message: String) -> Rejection {
    Rejection::new(422, "Input validation failed", message)
}

/// The input fields of each model the fake serves, as replicate.com lists them (wan-2.5-t2v
/// from a secondary copy, as in the adapter).
fn fields(model: &str) -> Option<&'static [&'static str]> {
    Some(match model {
        "wan-2.5-i2v" => &[
            "image",
            "prompt",
            "negative_prompt",
            "resolution",
            "duration",
            "seed",
            "audio",
            "enable_prompt_expansion",
        ],
        "wan-2.2-i2v-a14b" => &[
            "image",
            "prompt",
            "num_frames",
            "resolution",
            "frames_per_second",
            "sample_steps",
            "sample_shift",
            "seed",
        ],
        "wan-2.5-t2v" => &[
            "prompt",
            "negative_prompt",
            "size",
            "duration",
            "seed",
            "audio",
            "enable_prompt_expansion",
        ],
        _ => return None,
    })
}

/// A file input: an http(s) URL (a Files API URL included) or a data URI under the limit.
fn file_input(input: &Obj, key: &str, required: bool) -> Result<(), Rejection> {
    let Some(v) = check::opt_str(input, key, key).map_err(invalid)? else {
        return if required {
            Err(invalid(format!("- input: {key} is required")))
        } else {
            Ok(())
        };
    };
    if check::is_http_url(v) {
        return Ok(());
    }
    match check::data_uri(v) {
        Some(Ok((_, bytes))) if bytes.len() < DATA_URI_MAX => Ok(()),
        Some(Ok((_, bytes))) => Err(invalid(format!(
            "- input.{key}: a data URI of {} bytes: use the Files API for files of 1 MB or more",
            bytes.len()
        ))),
        Some(Err(e)) => Err(invalid(format!("- input.{key}: {e}"))),
        None => Err(invalid(format!(
            "- input.{key}: Does not match format 'uri'"
        ))),
    }
}

/// `POST /v1/models/wan-video/{model}/predictions`. `Err` with 404 for a model it does not
/// serve.
pub(super) fn validate(model: &str, body: &Value) -> Result<Accepted, Rejection> {
    let Some(allowed) = fields(model) else {
        return Err(Rejection::new(
            404,
            "Not found",
            format!("The requested resource could not be found (model wan-video/{model})."),
        ));
    };
    let root = check::object(Some(body), "request body").map_err(invalid)?;
    if let Some(extra) = root
        .keys()
        .find(|k| !["input", "webhook", "webhook_events_filter", "stream"].contains(&k.as_str()))
    {
        return Err(invalid(format!(
            "- (root): Additional property {extra} is not allowed"
        )));
    }
    let input = check::object(root.get("input"), "input").map_err(invalid)?;
    if let Some(extra) = input.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid(format!(
            "- input: Additional property {extra} is not allowed"
        )));
    }
    check::req_str(input, "prompt", "- input: prompt").map_err(invalid)?;
    check::opt_str(input, "negative_prompt", "- input.negative_prompt").map_err(invalid)?;
    check::opt_int(input, "seed", "- input.seed", 0, 2_147_483_647).map_err(invalid)?;
    check::opt_bool(
        input,
        "enable_prompt_expansion",
        "- input.enable_prompt_expansion",
    )
    .map_err(invalid)?;
    file_input(input, "audio", false)?;
    match model {
        "wan-2.5-i2v" => {
            file_input(input, "image", true)?;
            check::opt_enum(
                input,
                "resolution",
                "- input.resolution",
                &["480p", "720p", "1080p"],
            )
            .map_err(invalid)?;
            if let Some(d) = check::opt_int(input, "duration", "- input.duration", 0, i64::MAX)
                .map_err(invalid)?
                && ![5, 10].contains(&d)
            {
                return Err(invalid(format!(
                    "- input.duration: {d} is not one of [5, 10]"
                )));
            }
        }
        "wan-2.2-i2v-a14b" => {
            file_input(input, "image", true)?;
            check::opt_enum(input, "resolution", "- input.resolution", &["480p", "720p"])
                .map_err(invalid)?;
            check::opt_int(input, "num_frames", "- input.num_frames", 81, 100).map_err(invalid)?;
            check::opt_int(
                input,
                "frames_per_second",
                "- input.frames_per_second",
                5,
                24,
            )
            .map_err(invalid)?;
            check::opt_int(input, "sample_steps", "- input.sample_steps", 1, 50)
                .map_err(invalid)?;
            check::opt_num(input, "sample_shift", "- input.sample_shift", 1.0, 20.0)
                .map_err(invalid)?;
        }
        _ => {
            const SIZES: &[&str] = &[
                "832*480",
                "480*832",
                "1280*720",
                "720*1280",
                "1920*1080",
                "1080*1920",
            ];
            check::opt_enum(input, "size", "- input.size", SIZES).map_err(invalid)?;
            if let Some(d) = check::opt_int(input, "duration", "- input.duration", 0, i64::MAX)
                .map_err(invalid)?
                && ![5, 10].contains(&d)
            {
                return Err(invalid(format!(
                    "- input.duration: {d} is not one of [5, 10]"
                )));
            }
        }
    }
    let hook = match check::opt_str(root, "webhook", "- webhook").map_err(invalid)? {
        Some(url) if check::is_http_url(url) => Some(Hook {
            url: url.to_string(),
            secret: None,
        }),
        Some(_) => return Err(invalid("- webhook: Does not match format 'uri'".into())),
        None => None,
    };
    if let Some(f) = root.get("webhook_events_filter") {
        let ok = f.as_array().is_some_and(|items| {
            items
                .iter()
                .all(|e| matches!(e.as_str(), Some("start" | "output" | "logs" | "completed")))
        });
        if !ok {
            return Err(invalid(
                "- webhook_events_filter: items must be start, output, logs or completed".into(),
            ));
        }
    }
    Ok(Accepted {
        hook,
        test_mode: None,
    })
}

/// `Cancel-After` as a duration: Go-style `90s`, `5m`, `1h`, `1h30m`, or plain seconds.
pub(super) fn parse_cancel_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in v.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
    }
    (num.is_empty() && total > 0).then(|| Duration::from_secs(total))
}

pub(super) fn status(phase: &Phase) -> &'static str {
    match phase {
        Phase::Queued { .. } => "starting",
        Phase::Running { .. } => "processing",
        Phase::Succeeded => "succeeded",
        Phase::Failed(m) if m == LAPSED || m == "task cancelled" => "canceled",
        Phase::Failed(m) if m.starts_with("aborted") => "aborted",
        Phase::Failed(_) => "failed",
    }
}

fn rfc3339(t: Option<SystemTime>) -> Value {
    t.map_or(Value::Null, |t| {
        let ms = i64::try_from(unix_ms(t)).unwrap_or(0);
        chrono::DateTime::from_timestamp_millis(ms).map_or(Value::Null, |d| {
            json!(d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        })
    })
}

/// The prediction as every endpoint shows it. `removed`: the output "hour" has passed.
pub(super) fn prediction(task: &TaskRec, phase: &Phase, root: &str, removed: bool) -> Value {
    let model = task
        .route_path
        .trim_start_matches("/v1/models/")
        .trim_end_matches("/predictions");
    let st = status(phase);
    let output = match phase {
        Phase::Succeeded if !removed => json!(video_url(root, &task.id)),
        _ => Value::Null,
    };
    let error = match phase {
        Phase::Failed(m) if st == "failed" || st == "aborted" => json!(m),
        _ => Value::Null,
    };
    let logs = match phase {
        Phase::Running { percent, .. } => format!("{percent}%|"),
        _ => String::new(),
    };
    json!({
        "id": task.id,
        "model": model,
        "version": "hidden",
        "input": task.body.get("input").cloned().unwrap_or(Value::Null),
        "logs": logs,
        "output": output,
        "data_removed": removed,
        "error": error,
        "status": st,
        "created_at": rfc3339(Some(task.created_at)),
        "started_at": rfc3339(task.started_at),
        "completed_at": rfc3339(task.ended_at),
        "urls": {
            "cancel": format!("{root}/v1/predictions/{}/cancel", task.id),
            "get": format!("{root}/v1/predictions/{}", task.id),
            "web": format!("https://replicate.com/p/{}", task.id)
        },
        "metrics": if st == "succeeded" { json!({"predict_time": 1.5}) } else { json!({}) }
    })
}

/// One part of a `multipart/form-data` body: name, filename, content type, bytes.
pub(super) type Part = (String, Option<String>, Option<String>, Vec<u8>);

/// The parts of one `multipart/form-data` body.
pub(super) fn multipart(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|_| content_type.trim().starts_with("multipart/form-data"))
        .ok_or("Content-Type must be multipart/form-data with a boundary")?;
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    let start = find(rest, delim.as_bytes()).ok_or("no multipart boundary in the body")?;
    rest = &rest[start + delim.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or("a boundary is not followed by CRLF")?;
        let head_end = find(rest, b"\r\n\r\n").ok_or("a part has no header end")?;
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        rest = &rest[head_end + 4..];
        let end = find(rest, format!("\r\n{delim}").as_bytes()).ok_or("a part is not closed")?;
        let data = rest[..end].to_vec();
        rest = &rest[end + 2 + delim.len()..];
        let mut name = None;
        let mut filename = None;
        let mut ctype = None;
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':').ok_or("a part header has no colon")?;
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                for p in v.split(';').map(str::trim) {
                    if let Some(n) = p.strip_prefix("name=") {
                        name = Some(n.trim_matches('"').to_string());
                    } else if let Some(f) = p.strip_prefix("filename=") {
                        filename = Some(f.trim_matches('"').to_string());
                    }
                }
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                ctype = Some(v.trim().to_string());
            }
        }
        parts.push((name.ok_or("a part has no name")?, filename, ctype, data));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `POST /v1/files` answer for a stored file.
pub(super) fn file_answer(id: &str, name: &str, mime: &str, bytes: &[u8], root: &str) -> Value {
    let now = SystemTime::now();
    json!({
        "id": id,
        "name": name,
        "content_type": mime,
        "size": bytes.len(),
        "etag": format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..32]),
        "checksums": {"sha256": hex::encode(Sha256::digest(bytes))},
        "metadata": {},
        "created_at": rfc3339(Some(now)),
        "expires_at": rfc3339(Some(now + Duration::from_secs(24 * 3600))),
        "urls": {"get": format!("{root}/v1/files/{id}")}
    })
}

/// HMAC-SHA256, written here again (not the adapter's) so the two check each other.
fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// The three Standard Webhooks headers for `payload`, signed with [`SIGNING_SECRET`].
pub(super) fn signed_headers(msg_id: &str, payload: &str) -> Vec<(String, String)> {
    let ts = unix_ms(SystemTime::now()) / 1000;
    let key = STANDARD
        .decode(SIGNING_SECRET.trim_start_matches("whsec_"))
        .unwrap_or_default();
    let sig = STANDARD.encode(hmac(&key, format!("{msg_id}.{ts}.{payload}").as_bytes()));
    vec![
        ("webhook-id".to_string(), msg_id.to_string()),
        ("webhook-timestamp".to_string(), ts.to_string()),
        ("webhook-signature".to_string(), format!("v1,{sig}")),
    ]
}
