//! DashScope Wan 3.0 (`wan3.0-video`, `wan3.0-video-prime`) create bodies, as
//! docs/notes/wan3.md records the pages (CONTRACTS-2026-12.md A.6): one request for every mode,
//! routed by `input.media[]`. Strict: an unknown field of `input`, `parameters` or a media item is a
//! 400, and so are the documented refusals (frames with references, too many references, a prompt
//! over 20,000 characters, a duration outside 2-30 s, reference videos or audio over 15 s in total).
//!
//! Durations of reference clips: the real service reads the files; this fake reads a
//! `duration=<seconds>` query parameter of the clip's URL (a test convention, absent = 1 s).

use serde_json::Value;

use super::check::{self, Obj};
use super::flow::{Accepted, Rejection};

const MB: usize = 1024 * 1024;

fn bad(message: String) -> Rejection {
    Rejection::new(400, "InvalidParameter", message)
}

fn only(o: &Obj, allowed: &[&str], name: &str) -> Result<(), Rejection> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(format!("{name}.{k} is not a parameter of Wan 3.0"))),
        None => Ok(()),
    }
}

/// The clip length a URL stands for (see the module note).
fn clip_seconds(url: &str) -> f64 {
    url.split_once('?')
        .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("duration=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0)
}

/// An image: http(s) URL, or a data URI of an allowed image type within 20 MB.
fn check_image(url: &str, name: &str) -> Result<(), Rejection> {
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
    if bytes.len() > 20 * MB {
        return Err(Rejection::new(
            400,
            "InvalidFile.Size",
            format!("{name}: over 20 MB"),
        ));
    }
    Ok(())
}

fn check_media(items: &[Value]) -> Result<(), Rejection> {
    let (mut frames, mut refs) = (Vec::new(), 0usize);
    let mut counts = [0usize; 3];
    let mut seconds = [0.0f64; 2];
    for (i, item) in items.iter().enumerate() {
        let name = format!("input.media[{i}]");
        let o = check::object(Some(item), &name).map_err(bad)?;
        only(o, &["type", "url"], &name)?;
        let kind = check::req_str(o, "type", &format!("{name}.type")).map_err(bad)?;
        let url = check::req_str(o, "url", &format!("{name}.url")).map_err(bad)?;
        match kind {
            "first_frame" | "last_frame" => {
                check_image(url, &name)?;
                frames.push(kind);
            }
            "reference_image" => {
                check_image(url, &name)?;
                counts[0] += 1;
                refs += 1;
            }
            "reference_video" | "reference_audio" => {
                if !check::is_http_url(url) {
                    return Err(Rejection::new(
                        400,
                        "InvalidURL",
                        format!("{name}.url must be http(s)"),
                    ));
                }
                let k = usize::from(kind == "reference_audio");
                counts[1 + k] += 1;
                seconds[k] += clip_seconds(url);
                refs += 1;
            }
            other => {
                return Err(bad(format!(
                    "{name}.type {other:?} is not a Wan 3.0 media type"
                )));
            }
        }
    }
    if !frames.is_empty() && refs > 0 {
        return Err(bad(
            "first_frame/last_frame cannot be combined with reference_* media".into(),
        ));
    }
    let firsts = frames.iter().filter(|k| **k == "first_frame").count();
    let lasts = frames.len() - firsts;
    if firsts > 1 || lasts > 1 || (lasts == 1 && firsts == 0) {
        return Err(bad(format!(
            "frames {frames:?}: one first_frame, optionally one last_frame"
        )));
    }
    for (n, max, what) in [
        (counts[0], 10, "reference_image"),
        (counts[1], 5, "reference_video"),
        (counts[2], 5, "reference_audio"),
    ] {
        if n > max {
            return Err(bad(format!("at most {max} {what} items, got {n}")));
        }
    }
    for (s, what) in [
        (seconds[0], "reference_video"),
        (seconds[1], "reference_audio"),
    ] {
        if s > 15.0 {
            return Err(Rejection::new(
                400,
                "InvalidFile.Duration",
                format!("{what} items are {s} s in total; at most 15 s"),
            ));
        }
    }
    Ok(())
}

/// `POST .../video-synthesis` for a Wan 3.0 model.
pub(super) fn validate(root: &Obj) -> Result<Accepted, Rejection> {
    only(root, &["model", "input", "parameters"], "body")?;
    let input = check::object(root.get("input"), "input").map_err(bad)?;
    // The official SDK adds its two fields to every model's input (see `SDK_INPUT`): taken here
    // too, since Alibaba's own client must reach the API.
    let mut fields = vec!["prompt", "media"];
    fields.extend(super::dashscope::SDK_INPUT);
    only(input, &fields, "input")?;
    let prompt = check::opt_str(input, "prompt", "input.prompt").map_err(bad)?;
    if prompt.is_some_and(|p| check::chars(p) > 20_000) {
        return Err(bad("input.prompt over 20000 characters".into()));
    }
    let media = match input.get("media") {
        None => &[][..],
        Some(v) => v
            .as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| bad("input.media must be an array".into()))?,
    };
    if media.is_empty() && prompt.is_none_or(|p| p.trim().is_empty()) {
        return Err(bad("input.prompt is required without media".into()));
    }
    check_media(media)?;
    if let Some(p) = check::opt_object(root, "parameters", "parameters").map_err(bad)? {
        only(
            p,
            &[
                "resolution",
                "duration",
                "audio",
                "ratio",
                "watermark",
                "seed",
            ],
            "parameters",
        )?;
        check::opt_enum(
            p,
            "resolution",
            "parameters.resolution",
            &["480P", "720P", "1080P"],
        )
        .map_err(bad)?;
        if let Some(d) =
            check::opt_int(p, "duration", "parameters.duration", -1, 30).map_err(bad)?
            && (0..2).contains(&d)
        {
            return Err(bad(format!("parameters.duration {d}: use 2-30 or -1")));
        }
        check::opt_bool(p, "audio", "parameters.audio").map_err(bad)?;
        check::opt_enum(
            p,
            "ratio",
            "parameters.ratio",
            &["adaptive", "16:9", "9:16", "1:1", "4:3", "3:4"],
        )
        .map_err(bad)?;
        check::opt_bool(p, "watermark", "parameters.watermark").map_err(bad)?;
        check::opt_int(p, "seed", "parameters.seed", 0, 2_147_483_647).map_err(bad)?;
    }
    Ok(Accepted {
        hook: None,
        test_mode: None,
    })
}
