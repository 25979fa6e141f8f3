//! Image inputs: an http(s) URL is passed through; a `data:` URI or a local path is read, confined
//! to the allowed directories (symlinks resolved first), size-checked, and identified by its bytes
//! (never by its name). Providers then deliver local bytes their own way (inline, upload).
//!
//! Arguments are attacker-controlled (an agent can be steered by text it read), so: only regular
//! files are read (a FIFO, device, socket or directory is refused without a blocking open), the
//! size cap holds while reading, dimensions are checked from the header against [`MAX_PIXELS`]
//! before anything is decoded, and the image is then decoded in full so a truncated one is refused
//! before it is journaled or sent. All of that blocks, so the async faces call [`resolve_async`]
//! and [`fits`], which run it on the blocking pool, bounded in time and in number.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use image::ImageDecoder;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::catalog::spec::{ImageDelivery, ModelSpec, who_supports_in};
use crate::error::{Category, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Bmp,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Bmp => "bmp",
        }
    }
    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Bmp => "image/bmp",
        }
    }
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Bmp => "bmp",
        }
    }
    fn image_format(self) -> image::ImageFormat {
        match self {
            Format::Jpeg => image::ImageFormat::Jpeg,
            Format::Png => image::ImageFormat::Png,
            Format::Webp => image::ImageFormat::WebP,
            Format::Bmp => image::ImageFormat::Bmp,
        }
    }
}

/// Identify an image by its leading bytes.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(Format::Webp)
    } else if bytes.starts_with(b"BM") && bytes.len() > 26 {
        Some(Format::Bmp)
    } else {
        None
    }
}

/// Image bytes read from a local file or a data URI, checked and identified.
#[derive(Debug)]
pub struct LocalImage {
    pub bytes: Vec<u8>,
    pub format: Format,
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
    pub sha256: String,
    /// The path, or "data URI", for messages.
    pub origin: String,
}

impl LocalImage {
    pub fn base64(&self) -> String {
        B64.encode(&self.bytes)
    }
    /// `data:<mime>;base64,<data>`, encoded straight into one buffer (images run to 10 MB).
    pub fn data_uri(&self) -> String {
        let prefix = format!("data:{};base64,", self.format.mime());
        let mut out = String::with_capacity(prefix.len() + self.bytes.len().div_ceil(3) * 4);
        out.push_str(&prefix);
        B64.encode_string(&self.bytes, &mut out);
        out
    }
    pub fn file_name(&self) -> String {
        format!("{}.{}", &self.sha256[..16], self.format.extension())
    }
}

/// A reference (reference-to-video) ready to send: a resolved image (URL or local bytes), or a
/// video/audio URL. Checked and resolved by `refs`; here so providers can take it without
/// importing the catalog that `refs` checks against.
#[derive(Debug, Clone)]
pub enum Reference {
    Image(ImageInput),
    Video(String),
    Audio(String),
}

/// A resolved image input.
#[derive(Debug, Clone)]
pub enum ImageInput {
    Url(String),
    Local(Arc<LocalImage>),
}

impl ImageInput {
    pub fn as_local(&self) -> Option<&LocalImage> {
        match self {
            ImageInput::Local(img) => Some(img),
            ImageInput::Url(_) => None,
        }
    }
}

/// Most pixels an image may have: 32 Mi (8192x4096, or a 6000x5000 photo). Far above what any
/// provider documents (at most 2000 px a side; see `shared/providers/CONTRACTS.md`) and what the
/// local renderer uses (it crops and scales to at most 1280x720), and small enough that checking
/// one decodes into at most [`MAX_DECODE_BYTES`]. Checked from the header, before any decoding.
pub const MAX_PIXELS: u64 = 32 * 1024 * 1024;
/// Longest side, also from the header (the local renderer's limit).
pub const MAX_SIDE: u32 = 16_384;
/// Most memory decoding one image may take (`image::Limits::max_alloc`, a second guard):
/// [`MAX_PIXELS`] at 4 bytes a pixel, plus slack for the decoder's own buffers.
pub const MAX_DECODE_BYTES: u64 = 160 * 1024 * 1024;
/// How long reading and checking one image may take, queueing included.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// Images read and checked at once, server-wide; more wait their turn. This bounds the memory
/// checks take (each may decode up to [`MAX_DECODE_BYTES`]) and leaves the blocking pool to others.
static CHECKS: Semaphore = Semaphore::const_new(2);

/// [`resolve`] off the async workers (a blocking-pool thread), at most [`CHECK_TIMEOUT`] long and
/// two at a time. What fails without reading anything (a URL for a local-only model, a data URI
/// over the size limit) fails here at once, before the input is copied.
pub async fn resolve_async(
    input: &str,
    field: &'static str,
    spec: &'static ModelSpec,
    allowed: Vec<PathBuf>,
    models: &'static [ModelSpec],
) -> Result<ImageInput> {
    let src = Source::parse(input, field)?;
    src.check(field, spec, models)?;
    if let Source::Url(url) = src {
        return Ok(ImageInput::Url(url.to_string()));
    }
    let input = input.to_string();
    off_runtime(field, move || {
        resolve(&input, field, spec, &allowed, models)
    })
    .await
}

/// Which of `specs` would take `input` (in order), reading and decoding it once, off the async
/// workers: `estimate_cost` checks its image like create does, for one model or many.
pub async fn fits(
    input: &str,
    field: &'static str,
    specs: &[&'static ModelSpec],
    allowed: Vec<PathBuf>,
    models: &[ModelSpec],
) -> Vec<Result<()>> {
    let verdicts = |err: Error| specs.iter().map(|_| Err(err.clone())).collect();
    let src = match Source::parse(input, field) {
        Ok(src) => src,
        Err(e) => return verdicts(e),
    };
    let passes: Vec<Result<()>> = specs.iter().map(|s| src.check(field, s, models)).collect();
    let cap = specs
        .iter()
        .zip(&passes)
        .filter(|(_, p)| p.is_ok())
        .map(|(s, _)| s.image_max_bytes)
        .max();
    let (Some(cap), false) = (cap, matches!(src, Source::Url(_))) else {
        return passes;
    };
    let input = input.to_string();
    let loaded = off_runtime(field, move || {
        Source::parse(&input, field)?.load(field, cap, &allowed)
    })
    .await;
    let img = match loaded {
        Ok(img) => img,
        Err(e) => return verdicts(e),
    };
    specs
        .iter()
        .zip(passes)
        .map(|(spec, pass)| pass.and_then(|()| check_image(&img, field, spec)))
        .collect()
}

/// Run blocking image work on the blocking pool, bounded in number and time.
async fn off_runtime<T: Send + 'static>(
    field: &str,
    job: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let work = async {
        let permit = CHECKS
            .acquire()
            .await
            .map_err(|e| Error::internal(format!("image checks unavailable: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|e| Error::internal(format!("the image check stopped: {e}")))?
    };
    match tokio::time::timeout(CHECK_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            Category::Timeout,
            format!(
                "{field} could not be read and checked within {} s (a slow disk, or the server is busy checking other images)",
                CHECK_TIMEOUT.as_secs()
            ),
        )
        .with_next_step("try again; if it keeps failing, pass a smaller image or an https URL")),
    }
}

/// Read, confine and check `input` for the model `spec`. `allowed` are the directories a local
/// path may resolve into. `field` names the argument in messages (`image`, `end_image`);
/// `models` are those a refusal may name instead (the catalog).
/// Blocking (reads and decodes): on the async runtime, use [`resolve_async`].
pub fn resolve(
    input: &str,
    field: &str,
    spec: &ModelSpec,
    allowed: &[PathBuf],
    models: &[ModelSpec],
) -> Result<ImageInput> {
    let src = Source::parse(input, field)?;
    src.check(field, spec, models)?;
    if let Source::Url(url) = src {
        return Ok(ImageInput::Url(url.to_string()));
    }
    let image = src.load(field, spec.image_max_bytes, allowed)?;
    check_image(&image, field, spec)?;
    Ok(ImageInput::Local(Arc::new(image)))
}

/// Where an image argument points, parsed without reading anything.
enum Source<'a> {
    Url(url::Url),
    /// The base64 payload of a `data:` URI.
    Data(&'a str),
    Path(&'a Path),
}

impl<'a> Source<'a> {
    fn parse(input: &'a str, field: &str) -> Result<Source<'a>> {
        let input = input.trim();
        if input.starts_with("https://") || input.starts_with("http://") {
            let url = url::Url::parse(input)
                .map_err(|e| Error::invalid_input(format!("{field} is not a valid URL ({e})")))?;
            return Ok(Source::Url(url));
        }
        if let Some(rest) = input.strip_prefix("data:") {
            let (meta, data) = rest.split_once(',').ok_or_else(|| {
                Error::invalid_input(format!(
                    "{field} is not a valid data URI: expected data:image/png;base64,<data>"
                ))
            })?;
            if !meta.ends_with(";base64") {
                return Err(Error::invalid_input(format!(
                    "{field} data URI must be base64-encoded (data:image/png;base64,...)"
                )));
            }
            return Ok(Source::Data(data.trim()));
        }
        let path = input.strip_prefix("file://").unwrap_or(input);
        if path.contains('\0') {
            return Err(Error::invalid_input(format!(
                "{field} path contains a NUL byte: give the path of an image file"
            )));
        }
        Ok(Source::Path(Path::new(path)))
    }

    /// What `spec` refuses without reading: the delivery rules, and a data URI whose length
    /// alone puts it over the size limit (base64 is 4/3 of the bytes). `models`: the catalog, for
    /// naming the models that would take it.
    fn check(&self, field: &str, spec: &ModelSpec, models: &[ModelSpec]) -> Result<()> {
        match self {
            Source::Url(_) if spec.image_delivery == ImageDelivery::Local => {
                Err(Error::unsupported(format!(
                    "{field}: {} reads local files and data URIs only, not URLs: download the image and pass its path",
                    spec.key()
                )))
            }
            Source::Url(_) => Ok(()),
            _ if spec.image_delivery == ImageDelivery::UrlOnly => Err(Error::unsupported(format!(
                "{field}: {} takes image URLs only (its API has no upload); pass an https URL, or use a model that takes local files and data URIs: {}",
                spec.key(),
                who_supports_in(models, |m| m.image_delivery != ImageDelivery::UrlOnly
                    && m.image_delivery != ImageDelivery::Local)
            ))),
            Source::Data(data) => {
                let at_least = (data.len() as u64 / 4 * 3).saturating_sub(3);
                if at_least > spec.image_max_bytes {
                    return Err(too_big(field, at_least, spec.image_max_bytes, spec));
                }
                Ok(())
            }
            Source::Path(_) => Ok(()),
        }
    }

    /// Read (at most `cap` bytes), identify and fully decode a local image. Blocking.
    fn load(&self, field: &str, cap: u64, allowed: &[PathBuf]) -> Result<LocalImage> {
        let (bytes, origin) = match self {
            Source::Url(_) => {
                return Err(Error::internal(format!(
                    "{field}: a URL is not read locally"
                )));
            }
            Source::Data(data) => {
                let bytes = B64.decode(data.as_bytes()).map_err(|e| {
                    Error::invalid_input(format!("{field} data URI is not valid base64 ({e})"))
                })?;
                (bytes, "data URI".to_string())
            }
            Source::Path(path) => read_path(path, field, cap, allowed)?,
        };
        if bytes.len() as u64 > cap {
            return Err(too_big_for(field, bytes.len() as u64, cap));
        }
        identify(bytes, origin, field)
    }
}

/// Read a local file: confined to `allowed` (symlinks resolved first), a regular file only (a
/// FIFO, device, socket or directory is refused without being opened for a blocking read), at
/// most `cap` bytes however large the file claims or turns out to be.
fn read_path(path: &Path, field: &str, cap: u64, allowed: &[PathBuf]) -> Result<(Vec<u8>, String)> {
    let shown = path.display().to_string();
    let real = path.canonicalize().map_err(|e| {
        Error::invalid_input(format!(
            "{field} '{shown}' cannot be opened ({e}): give an existing file path, an https URL or a data: URI"
        ))
    })?;
    if !is_allowed(&real, allowed) {
        let dirs: Vec<String> = allowed.iter().map(|d| d.display().to_string()).collect();
        return Err(Error::invalid_input(format!(
            "{field} '{shown}' resolves to '{}', outside the allowed directories ({}): move the file into one, or add its directory to allowed_dirs / I2V_MCP_ALLOWED_DIRS",
            real.display(),
            if dirs.is_empty() {
                "none configured".to_string()
            } else {
                dirs.join(", ")
            }
        )));
    }
    let not_regular = |kind: &str| {
        Error::invalid_input(format!(
            "{field} '{shown}' is {kind}, not a regular file: give the path of an image file"
        ))
    };
    let meta = std::fs::metadata(&real)?;
    if let Some(kind) = special_kind(&meta) {
        return Err(not_regular(kind));
    }
    // The path was checked; now make sure the file opened is that one. Non-blocking, so a FIFO
    // swapped in meanwhile cannot hang the open, and fstat says what was really opened.
    let file = open_nonblocking(&real)
        .map_err(|e| Error::invalid_input(format!("{field} '{shown}' cannot be opened ({e})")))?;
    let opened = file.metadata()?;
    if let Some(kind) = special_kind(&opened) {
        return Err(not_regular(kind));
    }
    if !same_file(&meta, &opened) {
        return Err(Error::invalid_input(format!(
            "{field} '{shown}' changed while it was being opened: try again"
        )));
    }
    if opened.len() > cap {
        return Err(too_big_for(field, opened.len(), cap));
    }
    let mut bytes = Vec::with_capacity(opened.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    Ok((bytes, real.display().to_string()))
}

/// What a non-regular file is, for messages; `None` for a regular file.
fn special_kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if t.is_socket() {
            return Some("a socket");
        }
        if t.is_char_device() {
            return Some("a character device");
        }
        if t.is_block_device() {
            return Some("a block device");
        }
    }
    Some("not a regular file")
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    true
}

/// True if `real` (already canonical) lies inside one of `allowed` (canonicalized here).
pub fn is_allowed(real: &Path, allowed: &[PathBuf]) -> bool {
    allowed.iter().any(|dir| {
        dir.canonicalize()
            .map(|d| real.starts_with(&d))
            .unwrap_or(false)
    })
}

fn too_big(field: &str, size: u64, max: u64, spec: &ModelSpec) -> Error {
    Error::invalid_input(format!(
        "{field} is {:.1} MB; {} takes at most {:.0} MB: compress or resize it",
        size as f64 / 1_048_576.0,
        spec.key(),
        max as f64 / 1_048_576.0
    ))
}

/// Over the read cap (the most any model asked about takes); `size` may be just the cap + 1.
fn too_big_for(field: &str, size: u64, cap: u64) -> Error {
    Error::invalid_input(format!(
        "{field} is {} {:.1} MB; at most {:.0} MB is taken: compress or resize it",
        if size > cap { "over" } else { "about" },
        cap.min(size) as f64 / 1_048_576.0,
        cap as f64 / 1_048_576.0
    ))
}

/// Identify the image by its bytes, check its dimensions from the header, then decode it in full
/// (bounded by [`MAX_PIXELS`] and `image::Limits`) so a corrupt or truncated file is refused here,
/// before anything is journaled or sent to a provider. Blocking.
fn identify(bytes: Vec<u8>, origin: String, field: &str) -> Result<LocalImage> {
    let format = sniff(&bytes).ok_or_else(|| {
        Error::invalid_input(format!(
            "{field} ({origin}) is not a JPEG, PNG, WebP or BMP image (checked by its bytes)"
        ))
    })?;
    let unreadable = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => Error::invalid_input(format!(
            "{field} ({origin}) is too large to read ({e}): images may be at most {MAX_SIDE} px a side and {} megapixels; downscale it",
            MAX_PIXELS / 1_048_576
        )),
        e => Error::invalid_input(format!(
            "{field} ({origin}) looks like {} but cannot be decoded ({e}): is it corrupt or truncated?",
            format.name()
        )),
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(&bytes), format.image_format());
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(unreadable)?;
    let (width, height) = decoder.dimensions();
    let alpha = decoder.color_type().has_alpha();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS || width > MAX_SIDE || height > MAX_SIDE {
        return Err(Error::invalid_input(format!(
            "{field} ({origin}) is {width}x{height} px ({:.0} megapixels); images may be at most {} megapixels and {MAX_SIDE} px a side: downscale it",
            pixels as f64 / 1_048_576.0,
            MAX_PIXELS / 1_048_576
        )));
    }
    if decoder.total_bytes() > MAX_DECODE_BYTES {
        return Err(Error::invalid_input(format!(
            "{field} ({origin}) is {width}x{height} px at {} bytes a pixel, over {} MiB decoded: downscale it or save it with 8 bits a channel",
            decoder.color_type().bytes_per_pixel(),
            MAX_DECODE_BYTES / 1_048_576
        )));
    }
    if width == 0 || height == 0 {
        return Err(Error::invalid_input(format!(
            "{field} ({origin}) is {width}x{height} px: give a real image"
        )));
    }
    // Some decoders fill a cut-off scan with grey instead of failing: check the end is there.
    if !structurally_complete(&bytes, format) {
        return Err(Error::invalid_input(format!(
            "{field} ({origin}) is a {} whose end is missing: is it truncated? Save or download it again",
            format.name()
        )));
    }
    image::DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    let has_alpha = alpha || png_has_trns(&bytes, format);
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(LocalImage {
        bytes,
        format,
        width,
        height,
        has_alpha,
        sha256,
        origin,
    })
}

/// Whether the container's end is present: a JPEG's end-of-image marker after its first scan.
/// (PNG, WebP and BMP decoders fail on a short file by themselves.)
fn structurally_complete(bytes: &[u8], format: Format) -> bool {
    match format {
        Format::Jpeg => match jpeg_scan_start(bytes) {
            Some(sos) => bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9]),
            None => false,
        },
        Format::Png | Format::Webp | Format::Bmp => true,
    }
}

/// Offset of the first start-of-scan marker, walking the segments (their lengths skip over
/// embedded thumbnails, whose own markers do not count).
fn jpeg_scan_start(bytes: &[u8]) -> Option<usize> {
    let mut pos = 2;
    loop {
        while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1; // fill bytes
        }
        if bytes.get(pos) != Some(&0xFF) {
            return None;
        }
        let marker = *bytes.get(pos + 1)?;
        match marker {
            0xDA => return Some(pos),
            0x01 | 0xD0..=0xD7 => pos += 2,
            _ => {
                let len = u16::from_be_bytes([*bytes.get(pos + 2)?, *bytes.get(pos + 3)?]);
                pos += 2 + usize::from(len);
            }
        }
    }
}

/// A palette or grey PNG can carry transparency in a tRNS chunk instead of an alpha channel.
fn png_has_trns(bytes: &[u8], format: Format) -> bool {
    if format != Format::Png {
        return false;
    }
    let mut pos = 8;
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        let kind = &bytes[pos + 4..pos + 8];
        if kind == b"tRNS" {
            return true;
        }
        if kind == b"IDAT" || kind == b"IEND" {
            return false;
        }
        pos = pos.saturating_add(12).saturating_add(len);
    }
    false
}

fn check_image(img: &LocalImage, field: &str, spec: &ModelSpec) -> Result<()> {
    if img.bytes.len() as u64 > spec.image_max_bytes {
        return Err(too_big(
            field,
            img.bytes.len() as u64,
            spec.image_max_bytes,
            spec,
        ));
    }
    if !spec.image_formats.iter().any(|f| f == img.format.name()) {
        return Err(Error::unsupported(format!(
            "{field} is {}; {} takes {}: convert it",
            img.format.name(),
            spec.key(),
            spec.image_formats.join(", ")
        )));
    }
    if let Some(px) = spec.image_px {
        let (min, max) = (px.min as u32, px.max as u32);
        for (name, v) in [("width", img.width), ("height", img.height)] {
            if v < min || v > max {
                return Err(Error::invalid_input(format!(
                    "{field} is {}x{} px; {} needs width and height between {min} and {max} px: resize it",
                    img.width,
                    img.height,
                    spec.key()
                ))
                .with_next_step(format!("resize so the {name} is within {min}-{max} px")));
            }
        }
    }
    if spec.no_alpha && img.has_alpha {
        return Err(Error::invalid_input(format!(
            "{field} is a PNG with an alpha channel, which {} refuses: flatten it onto a background or save as JPEG",
            spec.key()
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn png(w: u32, h: u32, alpha: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if alpha {
            image::RgbaImage::from_pixel(w, h, image::Rgba([10, 20, 30, 128]))
                .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
                .unwrap();
        } else {
            image::RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]))
                .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
                .unwrap();
        }
        out
    }

    #[test]
    fn the_size_cap_holds_while_reading() {
        // /proc files are regular files that report size 0, like devices: only the read can tell.
        let status = Path::new("/proc/self/status");
        if !status.exists() {
            eprintln!("SKIPPED: this system has no /proc");
            return;
        }
        let allowed = [PathBuf::from("/proc")];
        let e = Source::Path(status)
            .load("image", 64, &allowed)
            .unwrap_err();
        assert!(e.message.contains("at most 0 MB"), "{}", e.message);
        assert!(e.message.contains("over"), "{}", e.message);
    }
}
