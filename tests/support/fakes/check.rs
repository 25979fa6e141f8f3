//! Field and image checks shared by the providers' create validators. Errors are plain messages;
//! each provider wraps them in its own error shape.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

pub(super) type Obj = Map<String, Value>;

/// 10 MB, the documented image limit of every provider here.
pub(super) const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;

pub(super) fn object<'a>(v: Option<&'a Value>, name: &str) -> Result<&'a Obj, String> {
    match v {
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(format!("{name} must be an object")),
        None => Err(format!("{name} is required")),
    }
}

/// Strict fakes (issue 21): refuses a key of `o` that is not in `allowed`, as the real APIs'
/// validation refuses an unknown parameter. Each object has its own list, so a field in the wrong
/// object is refused too, naming the object it was found in. `name` is the object's path, empty
/// for the request body.
pub(super) fn only(o: &Obj, name: &str, allowed: &[&str]) -> Result<(), String> {
    let Some(key) = o.keys().find(|k| !allowed.contains(&k.as_str())) else {
        return Ok(());
    };
    let path = if name.is_empty() {
        key.clone()
    } else {
        format!("{name}.{key}")
    };
    let place = if name.is_empty() {
        "the request body"
    } else {
        name
    };
    Err(format!(
        "{path}: unknown field in {place} (accepted there: {})",
        allowed.join(", ")
    ))
}

pub(super) fn opt_object<'a>(o: &'a Obj, key: &str, name: &str) -> Result<Option<&'a Obj>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(_) => Err(format!("{name} must be an object")),
    }
}

pub(super) fn opt_str<'a>(o: &'a Obj, key: &str, name: &str) -> Result<Option<&'a str>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

/// A present, non-empty string.
pub(super) fn req_str<'a>(o: &'a Obj, key: &str, name: &str) -> Result<&'a str, String> {
    match opt_str(o, key, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!("{name} is required")),
    }
}

pub(super) fn opt_bool(o: &Obj, key: &str, name: &str) -> Result<Option<bool>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{name} must be a boolean")),
    }
}

/// An optional integer (a JSON number without a fraction) within `min..=max`.
pub(super) fn opt_int(
    o: &Obj,
    key: &str,
    name: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, String> {
    let Some(v) = o.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let n = v
        .as_i64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        })
        .ok_or_else(|| format!("{name} must be an integer"))?;
    if n < min || n > max {
        return Err(format!("{name} must be between {min} and {max}, got {n}"));
    }
    Ok(Some(n))
}

pub(super) fn opt_num(
    o: &Obj,
    key: &str,
    name: &str,
    min: f64,
    max: f64,
) -> Result<Option<f64>, String> {
    let Some(v) = o.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let n = v
        .as_f64()
        .ok_or_else(|| format!("{name} must be a number"))?;
    if n < min || n > max {
        return Err(format!("{name} must be between {min} and {max}, got {n}"));
    }
    Ok(Some(n))
}

/// An optional string that must be one of `allowed`.
pub(super) fn opt_enum<'a>(
    o: &'a Obj,
    key: &str,
    name: &str,
    allowed: &[&str],
) -> Result<Option<&'a str>, String> {
    match opt_str(o, key, name)? {
        Some(s) if !allowed.contains(&s) => {
            Err(format!("{name} must be one of {allowed:?}, got {s:?}"))
        }
        other => Ok(other),
    }
}

/// Length in characters (the providers count characters, not bytes).
pub(super) fn chars(s: &str) -> usize {
    s.chars().count()
}

/// `http://` or `https://` followed by a host, no whitespace.
pub(super) fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

/// Decodes `data:<mime>;base64,<payload>`: `None` when `s` is not a data URI, `Some(Err)` when it is
/// one but not valid base64. Returns (declared mime, bytes).
pub(super) fn data_uri(s: &str) -> Option<Result<(String, Vec<u8>), String>> {
    let rest = s.strip_prefix("data:")?;
    let Some((meta, payload)) = rest.split_once(',') else {
        return Some(Err("data URI without a comma".to_string()));
    };
    let Some(mime) = meta.strip_suffix(";base64") else {
        return Some(Err("data URI is not base64-encoded".to_string()));
    };
    Some(
        base64_bytes(payload)
            .map(|bytes| (mime.to_string(), bytes))
            .ok_or_else(|| "data URI payload is not valid base64".to_string()),
    )
}

/// Standard base64 (padding required), ignoring ASCII whitespace such as line breaks.
pub(super) fn base64_bytes(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return None;
    }
    STANDARD.decode(compact).ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ImageFormat {
    Jpeg,
    Png,
    Webp,
    Bmp,
}

impl ImageFormat {
    pub(super) fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Webp => "image/webp",
            ImageFormat::Bmp => "image/bmp",
        }
    }

    pub(super) fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
            ImageFormat::Bmp => "bmp",
        }
    }
}

/// Image format by magic bytes.
pub(super) fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(ImageFormat::Webp)
    } else if bytes.starts_with(b"BM") {
        Some(ImageFormat::Bmp)
    } else {
        None
    }
}

/// PNG header facts, read from IHDR: (width, height, has an alpha channel by colour type).
/// A `tRNS` chunk is not looked at.
pub(super) fn png_info(bytes: &[u8]) -> Option<(u32, u32, bool)> {
    if sniff(bytes) != Some(ImageFormat::Png) || bytes.len() < 26 || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let height = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    // Colour types 4 (grey + alpha) and 6 (RGBA) carry alpha.
    let alpha = matches!(bytes[25], 4 | 6);
    Some((width, height, alpha))
}
