//! Image decoding, cover-fit crop, prefilter, Y'CbCr planes and per-frame bilinear sampling.
//!
//! Sampling happens in Y'CbCr rather than RGB: the colour conversion is affine and bilinear
//! interpolation is linear, so the result equals converting a bilinear RGB sample, at a third
//! of the work (chroma is sampled at 4:2:0 resolution from a prefiltered half-size plane).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, metadata::Orientation};

use super::camera::{Mat3, mul};
use super::{MAX_IMAGE_SIDE, RenderError, cover_crop};

fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, RenderError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| RenderError::InvalidImage(e.to_string()))?;
    if reader.format().is_none() {
        return Err(RenderError::InvalidImage(
            "the bytes are not a recognised image format".to_string(),
        ));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    reader.limits(limits);
    Ok(reader)
}

fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

fn invalid(e: image::ImageError) -> RenderError {
    match e {
        image::ImageError::Limits(_) => RenderError::InvalidImage(format!(
            "{e} (images may be at most {MAX_IMAGE_SIDE} px per side and 512 MiB decoded; downscale it)"
        )),
        e => RenderError::InvalidImage(e.to_string()),
    }
}

/// Width and height as displayed (EXIF orientation applied), from the header only.
pub(super) fn probe_dimensions(bytes: &[u8]) -> Result<(u32, u32), RenderError> {
    let mut decoder = reader(bytes)?.into_decoder().map_err(invalid)?;
    let (w, h) = decoder.dimensions();
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    if w == 0 || h == 0 {
        return Err(RenderError::InvalidImage(format!(
            "the image is {w}x{h} pixels"
        )));
    }
    Ok(if swaps_axes(orientation) {
        (h, w)
    } else {
        (w, h)
    })
}

fn decode(bytes: &[u8]) -> Result<DynamicImage, RenderError> {
    let mut decoder = reader(bytes)?.into_decoder().map_err(invalid)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(invalid)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Opaque RGB; transparent pixels are composited over black.
fn to_rgb(img: DynamicImage) -> image::RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    image::RgbImage::from_fn(w, h, |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = u16::from(p[3]);
        let f = |c: u8| ((u16::from(c) * a + 127) / 255) as u8;
        image::Rgb([f(p[0]), f(p[1]), f(p[2])])
    })
}

/// An 8-bit plane stored with one extra replicated column and row, so bilinear taps at
/// `x + 1`/`y + 1` never need a branch.
pub(super) struct Plane {
    w: usize,
    h: usize,
    stride: usize,
    data: Vec<u8>,
}

impl Plane {
    fn from_values(w: usize, h: usize, values: &[f32]) -> Plane {
        let stride = w + 1;
        let mut data = Vec::with_capacity(stride * (h + 1));
        for row in values.chunks_exact(w).take(h) {
            data.extend(row.iter().map(|&v| (v + 0.5) as u8));
            data.push(data.last().copied().unwrap_or(0));
        }
        let last_row = data.len().saturating_sub(stride);
        data.extend_from_within(last_row..);
        Plane { w, h, stride, data }
    }
}

/// The prefiltered cover-fit crop as BT.709 limited-range Y'CbCr planes.
pub(super) struct Source {
    y: Plane,
    cb: Plane,
    cr: Plane,
    /// Source luma pixels per crop unit (see `camera`), per axis.
    sx: f64,
    sy: f64,
}

/// Decodes, crops to the output aspect, prefilters to `oversample` x the output size (never
/// enlarging), and converts to planes.
pub(super) fn prepare_source(
    bytes: &[u8],
    out_w: usize,
    out_h: usize,
    oversample: f64,
) -> Result<Source, RenderError> {
    let rgb = to_rgb(decode(bytes)?);
    let (iw, ih) = rgb.dimensions();
    let (cw, ch) = cover_crop(iw, ih, out_w as u32, out_h as u32);
    let cw = (cw.round() as u32).clamp(1, iw);
    let ch = (ch.round() as u32).clamp(1, ih);
    let view = image::imageops::crop_imm(&rgb, (iw - cw) / 2, (ih - ch) / 2, cw, ch);

    let tw = ((out_w as f64 * oversample).round() as u32).max(2);
    let th = ((out_h as f64 * oversample).round() as u32).max(2);
    let pre = if cw <= tw || ch <= th {
        view.to_image()
    } else if cw > 4 * tw {
        // Big reductions: fast area averaging down to 2x, then a proper filter for the rest.
        let half = image::imageops::thumbnail(&*view, 2 * tw, 2 * th);
        image::imageops::resize(&half, tw, th, image::imageops::FilterType::CatmullRom)
    } else {
        image::imageops::resize(&*view, tw, th, image::imageops::FilterType::CatmullRom)
    };
    Ok(Source::from_rgb(&pre, out_w, out_h))
}

const KR: f32 = 0.2126;
const KB: f32 = 0.0722;
const KG: f32 = 1.0 - KR - KB;

impl Source {
    fn from_rgb(img: &image::RgbImage, out_w: usize, out_h: usize) -> Source {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let raw = img.as_raw();
        let mut y = Vec::with_capacity(w * h);
        for p in raw.chunks_exact(3) {
            let l = KR * f32::from(p[0]) + KG * f32::from(p[1]) + KB * f32::from(p[2]);
            y.push(16.0 + l * (219.0 / 255.0));
        }
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let mut cb = Vec::with_capacity(cw * ch);
        let mut cr = Vec::with_capacity(cw * ch);
        for cy in 0..ch {
            for cx in 0..cw {
                let (mut r, mut g, mut b, mut n) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
                for yy in (2 * cy)..(2 * cy + 2).min(h) {
                    for xx in (2 * cx)..(2 * cx + 2).min(w) {
                        let o = (yy * w + xx) * 3;
                        r += f32::from(raw[o]);
                        g += f32::from(raw[o + 1]);
                        b += f32::from(raw[o + 2]);
                        n += 1.0;
                    }
                }
                let (r, g, b) = (r / n, g / n, b / n);
                let l = KR * r + KG * g + KB * b;
                cb.push(128.0 + (b - l) * (224.0 / 255.0) / (2.0 * (1.0 - KB)));
                cr.push(128.0 + (r - l) * (224.0 / 255.0) / (2.0 * (1.0 - KR)));
            }
        }
        Source {
            y: Plane::from_values(w, h, &y),
            cb: Plane::from_values(cw, ch, &cb),
            cr: Plane::from_values(cw, ch, &cr),
            sx: w as f64 / out_w as f64,
            sy: h as f64 / out_h as f64,
        }
    }

    /// Renders one I420 frame (`w` x `h`, planes packed Y, U, V) through `map` (output pixel
    /// coordinates to crop units, see `camera`).
    pub(super) fn render(&self, map: &Mat3, dst: &mut [u8], w: usize, h: usize) {
        let to_source = mul(
            &[[self.sx, 0.0, 0.0], [0.0, self.sy, 0.0], [0.0, 0.0, 1.0]],
            map,
        );
        // Pixel centres: output index i sits at i + 0.5; source index k at k + 0.5.
        let luma = mul(
            &translate(-0.5, -0.5),
            &mul(&to_source, &translate(0.5, 0.5)),
        );
        // H.264 default chroma siting (type 0): chroma (i, j) sits at luma (2i + 0.5, 2j + 1);
        // the half-size chroma planes are box averages, so chroma units are luma units / 2.
        let chroma = mul(
            &translate(-0.5, -0.5),
            &mul(
                &[[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 1.0]],
                &mul(
                    &to_source,
                    &[[2.0, 0.0, 0.5], [0.0, 2.0, 1.0], [0.0, 0.0, 1.0]],
                ),
            ),
        );
        let (cw, ch) = (w / 2, h / 2);
        let (y_out, rest) = dst.split_at_mut(w * h);
        let (u_out, v_out) = rest.split_at_mut(cw * ch);
        sample(&self.y, &luma, y_out, w, h);
        sample(&self.cb, &chroma, u_out, cw, ch);
        sample(&self.cr, &chroma, &mut v_out[..cw * ch], cw, ch);
    }
}

fn translate(x: f64, y: f64) -> Mat3 {
    [[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]]
}

/// Fixed-point fraction bits for sample coordinates.
const FRAC: u32 = 16;
const ONE: f32 = (1u32 << FRAC) as f32;

/// Bilinear sampling of `src` at `m * (i, j, 1)` for every output index, clamped to the plane.
/// Coordinates are 16.16 fixed point (stepped incrementally when the map is affine), weights 8 bit.
fn sample(src: &Plane, m: &Mat3, out: &mut [u8], w: usize, h: usize) {
    if src.w == 0 || src.h == 0 {
        return;
    }
    let max_x = ((src.w - 1) as i32) << FRAC;
    let max_y = ((src.h - 1) as i32) << FRAC;
    let affine = m[2][0] == 0.0 && m[2][1] == 0.0 && m[2][2] == 1.0;
    let (a, b, c) = (m[0][0] as f32, m[1][0] as f32, m[2][0] as f32);
    let (step_x, step_y) = (
        (m[0][0] * f64::from(ONE)) as i32,
        (m[1][0] * f64::from(ONE)) as i32,
    );
    let data = &src.data;
    let stride = src.stride;
    for (j, row) in out.chunks_exact_mut(w).take(h).enumerate() {
        let jf = j as f64;
        let x0 = m[0][1] * jf + m[0][2];
        let y0 = m[1][1] * jf + m[1][2];
        let z0 = (m[2][1] * jf + m[2][2]) as f32;
        // `as i32` saturates and maps NaN to 0, so no input can make this panic.
        let (mut fx_acc, mut fy_acc) = ((x0 * f64::from(ONE)) as i32, (y0 * f64::from(ONE)) as i32);
        let (x0, y0) = (x0 as f32, y0 as f32);
        for (i, px) in row.iter_mut().enumerate() {
            let (x, y) = if affine {
                let xy = (fx_acc, fy_acc);
                fx_acc = fx_acc.saturating_add(step_x);
                fy_acc = fy_acc.saturating_add(step_y);
                xy
            } else {
                let fi = i as f32;
                let z = z0 + c * fi;
                (
                    ((x0 + a * fi) / z * ONE) as i32,
                    ((y0 + b * fi) / z * ONE) as i32,
                )
            };
            let x = x.clamp(0, max_x);
            let y = y.clamp(0, max_y);
            let (xi, yi) = ((x >> FRAC) as usize, (y >> FRAC) as usize);
            let wx = ((x >> (FRAC - 8)) & 0xff) as u32;
            let wy = ((y >> (FRAC - 8)) & 0xff) as u32;
            let o = yi * stride + xi;
            let (r0, r1) = (&data[o..o + 2], &data[o + stride..o + stride + 2]);
            let top = u32::from(r0[0]) * (256 - wx) + u32::from(r0[1]) * wx;
            let bottom = u32::from(r1[0]) * (256 - wx) + u32::from(r1[1]) * wx;
            *px = ((top * (256 - wy) + bottom * wy + (1 << 15)) >> 16) as u8;
        }
    }
}
