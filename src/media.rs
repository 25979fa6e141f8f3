//! Image inputs: an http(s) URL is passed through; a `data:` URI or a local path is read, confined
//! to the allowed directories (symlinks resolved first), size-checked, and identified by its bytes
//! (never by its name). Providers then deliver local bytes their own way (inline, upload).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use image::ImageDecoder;
use sha2::{Digest, Sha256};

use crate::catalog::{self, ImageDelivery, ModelSpec};
use crate::error::{Error, Result};

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

/// Read, confine and check `input` for the model `spec`. `allowed` are the directories a local
/// path may resolve into. `field` names the argument in messages (`image`, `end_image`).
pub fn resolve(
    input: &str,
    field: &str,
    spec: &ModelSpec,
    allowed: &[PathBuf],
) -> Result<ImageInput> {
    let input = input.trim();
    if input.starts_with("https://") || input.starts_with("http://") {
        let url = url::Url::parse(input)
            .map_err(|e| Error::invalid_input(format!("{field} is not a valid URL ({e})")))?;
        if spec.image_delivery == ImageDelivery::Local {
            return Err(Error::unsupported(format!(
                "{field}: {} reads local files and data URIs only, not URLs: download the image and pass its path",
                spec.key()
            )));
        }
        return Ok(ImageInput::Url(url.to_string()));
    }
    if spec.image_delivery == ImageDelivery::UrlOnly {
        return Err(Error::unsupported(format!(
            "{field}: {} takes image URLs only (its API has no upload); pass an https URL, or use a model that takes local files and data URIs: {}",
            spec.key(),
            catalog::who_supports(|m| m.image_delivery != ImageDelivery::UrlOnly
                && m.image_delivery != ImageDelivery::Local)
        )));
    }
    let image = if let Some(rest) = input.strip_prefix("data:") {
        read_data_uri(rest, field, spec)?
    } else {
        let path = input.strip_prefix("file://").unwrap_or(input);
        read_path(Path::new(path), field, spec, allowed)?
    };
    check_image(&image, field, spec)?;
    Ok(ImageInput::Local(Arc::new(image)))
}

fn read_data_uri(rest: &str, field: &str, spec: &ModelSpec) -> Result<LocalImage> {
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
    // Base64 is 4/3 of the bytes: refuse before decoding something huge.
    let max = spec.image_max_bytes;
    if (data.len() as u64) / 4 * 3 > max + 3 {
        return Err(too_big(field, (data.len() as u64) / 4 * 3, spec));
    }
    let bytes = B64
        .decode(data.trim().as_bytes())
        .map_err(|e| Error::invalid_input(format!("{field} data URI is not valid base64 ({e})")))?;
    identify(bytes, "data URI".into(), field, spec)
}

fn read_path(
    path: &Path,
    field: &str,
    spec: &ModelSpec,
    allowed: &[PathBuf],
) -> Result<LocalImage> {
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
    let meta = std::fs::metadata(&real)?;
    if meta.is_dir() {
        return Err(Error::invalid_input(format!(
            "{field} '{shown}' is a directory: give the path of an image file"
        )));
    }
    if meta.len() > spec.image_max_bytes {
        return Err(too_big(field, meta.len(), spec));
    }
    let bytes = std::fs::read(&real)?;
    identify(bytes, real.display().to_string(), field, spec)
}

/// True if `real` (already canonical) lies inside one of `allowed` (canonicalized here).
pub fn is_allowed(real: &Path, allowed: &[PathBuf]) -> bool {
    allowed.iter().any(|dir| {
        dir.canonicalize()
            .map(|d| real.starts_with(&d))
            .unwrap_or(false)
    })
}

fn too_big(field: &str, size: u64, spec: &ModelSpec) -> Error {
    Error::invalid_input(format!(
        "{field} is {:.1} MB; {} takes at most {:.0} MB: compress or resize it",
        size as f64 / 1_048_576.0,
        spec.key(),
        spec.image_max_bytes as f64 / 1_048_576.0
    ))
}

fn identify(bytes: Vec<u8>, origin: String, field: &str, spec: &ModelSpec) -> Result<LocalImage> {
    if bytes.len() as u64 > spec.image_max_bytes {
        return Err(too_big(field, bytes.len() as u64, spec));
    }
    let format = sniff(&bytes).ok_or_else(|| {
        Error::invalid_input(format!(
            "{field} ({origin}) is not a JPEG, PNG, WebP or BMP image (checked by its bytes)"
        ))
    })?;
    let (width, height, alpha) = {
        let decoder = image::ImageReader::with_format(Cursor::new(&bytes), format.image_format())
            .into_decoder()
            .map_err(|e| {
                Error::invalid_input(format!(
                    "{field} ({origin}) looks like {} but cannot be read ({e}): is it corrupt?",
                    format.name()
                ))
            })?;
        let (w, h) = decoder.dimensions();
        (w, h, decoder.color_type().has_alpha())
    };
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
mod tests {
    use super::*;
    use crate::catalog::find_key;
    use crate::error::Category;

    fn png(w: u32, h: u32, alpha: bool) -> Vec<u8> {
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
    fn local_files_are_confined_and_sniffed() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let allowed = vec![dir.path().to_path_buf()];
        let spec = find_key("piapi/wan2.1-i2v-14b").unwrap();

        let good = dir.path().join("a.png");
        std::fs::write(&good, png(64, 48, false)).unwrap();
        let img = resolve(good.to_str().unwrap(), "image", spec, &allowed).unwrap();
        let local = img.as_local().unwrap();
        assert_eq!(
            (local.width, local.height, local.format),
            (64, 48, Format::Png)
        );

        let outside = other.path().join("b.png");
        std::fs::write(&outside, png(8, 8, false)).unwrap();
        let e = resolve(outside.to_str().unwrap(), "image", spec, &allowed).unwrap_err();
        assert!(e.message.contains("outside the allowed"), "{}", e.message);

        // A symlink inside the allowed dir pointing outside is refused: symlinks are resolved first.
        let link = dir.path().join("link.png");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let e = resolve(link.to_str().unwrap(), "image", spec, &allowed).unwrap_err();
        assert!(e.message.contains("outside the allowed"), "{}", e.message);

        let e = resolve(dir.path().to_str().unwrap(), "image", spec, &allowed).unwrap_err();
        assert!(e.message.contains("directory"), "{}", e.message);

        let fake = dir.path().join("fake.png");
        std::fs::write(&fake, b"not an image at all, just text").unwrap();
        let e = resolve(fake.to_str().unwrap(), "image", spec, &allowed).unwrap_err();
        assert!(e.message.contains("not a JPEG"), "{}", e.message);

        let big = dir.path().join("big.png");
        let mut bytes = png(8, 8, false);
        bytes.resize(11 * 1024 * 1024, 0);
        std::fs::write(&big, bytes).unwrap();
        let e = resolve(big.to_str().unwrap(), "image", spec, &allowed).unwrap_err();
        assert!(e.message.contains("at most 10 MB"), "{}", e.message);

        let e = resolve("/no/such/file.png", "image", spec, &allowed).unwrap_err();
        assert_eq!(e.category, Category::InvalidInput);
    }

    #[test]
    fn data_uris_and_model_rules() {
        let spec26 = find_key("novita/wan2.6-i2v").unwrap();
        let uri = format!("data:image/png;base64,{}", B64.encode(png(400, 400, true)));
        let e = resolve(&uri, "image", spec26, &[]).unwrap_err();
        assert!(e.message.contains("alpha"), "{}", e.message);
        let uri = format!("data:image/png;base64,{}", B64.encode(png(100, 400, false)));
        let e = resolve(&uri, "image", spec26, &[]).unwrap_err();
        assert!(e.message.contains("between 360 and 2000"), "{}", e.message);
        let uri = format!("data:image/png;base64,{}", B64.encode(png(400, 400, false)));
        assert!(resolve(&uri, "image", spec26, &[]).is_ok());

        let spec21 = find_key("novita/wan2.1-i2v").unwrap();
        let e = resolve(&uri, "image", spec21, &[]).unwrap_err();
        assert_eq!(e.category, Category::Unsupported);
        assert!(e.message.contains("novita/wan2.6-i2v"), "{}", e.message);
        assert!(matches!(
            resolve("https://x.test/a.png", "image", spec21, &[]).unwrap(),
            ImageInput::Url(_)
        ));
    }
}
