//! Reference media (reference-to-video, Wan 3.0): one `references` list of strings whose kind —
//! image, video or audio — is read from the data URI's media type or the URL's or path's file
//! extension. Checked against the model's limits before anything is read, journaled or sent;
//! images are then resolved like `image` (local path, data URI or https URL), videos and audio
//! must be http(s) URLs (DashScope takes no Base64 video or audio: CONTRACTS-2026-12.md A.9).

use std::path::PathBuf;

use crate::catalog::{self, ModelSpec, References};
use crate::error::{Error, Result};
use crate::media;
use crate::model::CreateRequest;

/// What a reference is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Image,
    Video,
    Audio,
}

impl RefKind {
    pub fn name(self) -> &'static str {
        match self {
            RefKind::Image => "image",
            RefKind::Video => "video",
            RefKind::Audio => "audio",
        }
    }
}

/// Defined beside `ImageInput` in `media`, below the providers that send it.
pub use crate::media::Reference;

const IMAGE_EXT: &[&str] = &["png", "jpg", "jpeg", "webp", "bmp"];
const VIDEO_EXT: &[&str] = &["mp4", "mov"];
const AUDIO_EXT: &[&str] = &["mp3", "wav"];

/// `references[i]` for messages (`media::resolve_async` takes a `&'static str`).
const FIELDS: [&str; 20] = [
    "references[0]",
    "references[1]",
    "references[2]",
    "references[3]",
    "references[4]",
    "references[5]",
    "references[6]",
    "references[7]",
    "references[8]",
    "references[9]",
    "references[10]",
    "references[11]",
    "references[12]",
    "references[13]",
    "references[14]",
    "references[15]",
    "references[16]",
    "references[17]",
    "references[18]",
    "references[19]",
];

fn field(i: usize) -> &'static str {
    FIELDS.get(i).copied().unwrap_or("references")
}

fn is_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

/// The kind of one reference, from a data URI's media type or the file extension of the URL path
/// (query and fragment ignored) or local path. `None`: it cannot be told.
pub fn kind(input: &str) -> Option<RefKind> {
    let s = input.trim();
    if let Some(rest) = s.strip_prefix("data:") {
        let mime = rest.split([';', ',']).next().unwrap_or_default();
        return match mime.split('/').next() {
            Some("image") => Some(RefKind::Image),
            Some("video") => Some(RefKind::Video),
            Some("audio") => Some(RefKind::Audio),
            _ => None,
        };
    }
    let path = if is_url(s) {
        url::Url::parse(s).ok()?.path().to_string()
    } else {
        s.strip_prefix("file://").unwrap_or(s).to_string()
    };
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    if ext.contains('/') {
        return None;
    }
    let ext = ext.as_str();
    if IMAGE_EXT.contains(&ext) {
        Some(RefKind::Image)
    } else if VIDEO_EXT.contains(&ext) {
        Some(RefKind::Video)
    } else if AUDIO_EXT.contains(&ext) {
        Some(RefKind::Audio)
    } else {
        None
    }
}

/// Everything about `references` that can be checked without reading a file: the model takes
/// them, they are not combined with `image`/`end_image`, each kind can be told and delivered,
/// and each kind's count is within the model's limit.
pub fn check(req: &CreateRequest, spec: &ModelSpec) -> Result<()> {
    if req.references.is_empty() {
        return Ok(());
    }
    let Some(limits) = spec.references else {
        return Err(Error::unsupported(format!(
            "references is not supported by {}: models that take it: {}. Remove references or pick one of those.",
            spec.key(),
            catalog::who_supports(|m| m.references.is_some())
        )));
    };
    if req.image.is_some() || req.end_image.is_some() {
        return Err(Error::invalid_input(format!(
            "{} takes either frames (image, end_image) or references, not both in one request",
            spec.key()
        ))
        .with_next_step(
            "drop image/end_image for reference-to-video (say \"Image 1\" in the prompt instead), or drop references",
        ));
    }
    let mut counts = [0u32; 3];
    for (i, r) in req.references.iter().enumerate() {
        let name = field(i);
        if r.trim().is_empty() {
            return Err(Error::invalid_input(format!(
                "{name} is empty: give an https URL, a data: URI or a local image path"
            )));
        }
        let k = kind(r).ok_or_else(|| {
            Error::invalid_input(format!(
                "{name}: cannot tell whether it is an image, a video or audio"
            ))
            .with_next_step(
                "use a URL or path ending .png/.jpg/.jpeg/.webp/.bmp (image), .mp4/.mov (video) or .mp3/.wav (audio), or a data:image/... URI",
            )
        })?;
        if k != RefKind::Image && !is_url(r.trim()) {
            return Err(Error::invalid_input(format!(
                "{name}: a reference {} must be an http(s) URL; {} takes video and audio by URL only (no upload or Base64)",
                k.name(),
                spec.key()
            ))
            .with_next_step("host the file at an https URL and pass that"));
        }
        counts[k as usize] += 1;
    }
    let caps = [
        (RefKind::Image, limits.images),
        (RefKind::Video, limits.videos),
        (RefKind::Audio, limits.audios),
    ];
    for (k, cap) in caps {
        let n = counts[k as usize];
        if n > cap {
            return Err(Error::invalid_input(format!(
                "{n} reference {}s given; {} takes at most {cap}",
                k.name(),
                spec.key()
            )));
        }
    }
    Ok(())
}

/// How many references of `kind` a request has (for quotes).
pub fn count(req: &CreateRequest, k: RefKind) -> usize {
    req.references.iter().filter(|r| kind(r) == Some(k)).count()
}

/// The references resolved in order (images read and checked like `image`); `check` passed.
pub async fn resolve(
    req: &CreateRequest,
    spec: &'static ModelSpec,
    allowed: &[PathBuf],
) -> Result<Vec<Reference>> {
    let mut out = Vec::with_capacity(req.references.len());
    for (i, r) in req.references.iter().enumerate() {
        let r = r.trim();
        out.push(match kind(r) {
            Some(RefKind::Video) => Reference::Video(r.to_string()),
            Some(RefKind::Audio) => Reference::Audio(r.to_string()),
            _ => Reference::Image(
                media::resolve_async(
                    r,
                    field(i),
                    spec,
                    allowed.to_vec(),
                    crate::catalog::models(),
                )
                .await?,
            ),
        });
    }
    Ok(out)
}

/// The limits `spec` lists, for messages.
pub fn describe(limits: &References) -> String {
    format!(
        "up to {} images, {} videos ({} s in total), {} audio clips ({} s in total)",
        limits.images, limits.videos, limits.video_seconds, limits.audios, limits.audio_seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_media_types_and_extensions() {
        assert_eq!(kind("https://x.test/a/cat.PNG?sig=1"), Some(RefKind::Image));
        assert_eq!(kind("https://x.test/walk.mp4#t=2"), Some(RefKind::Video));
        assert_eq!(kind("https://x.test/v.mov"), Some(RefKind::Video));
        assert_eq!(kind("https://x.test/voice.wav"), Some(RefKind::Audio));
        assert_eq!(kind("/home/u/pic.jpeg"), Some(RefKind::Image));
        assert_eq!(kind("file:///home/u/clip.mp4"), Some(RefKind::Video));
        assert_eq!(kind("data:image/png;base64,iVBORw=="), Some(RefKind::Image));
        assert_eq!(kind("data:audio/mpeg;base64,AAAA"), Some(RefKind::Audio));
        assert_eq!(kind("data:text/plain;base64,AAAA"), None);
        assert_eq!(kind("https://x.test/download?id=7"), None);
        assert_eq!(kind("https://x.test/v1.2/file"), None);
        assert_eq!(kind("notes.txt"), None);
    }
}
