//! The work done inside the contact-sheet child: read an MP4's H.264 track, decode it with
//! OpenH264, keep a few frames across the clip, and compose them into one labelled JPEG, plus the
//! first frame as a poster. Everything here runs on untrusted bytes, in a child process with a
//! time and memory limit (see the parent side in `mod.rs`): a panic or crash costs only the sheet.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use image::{Rgb, RgbImage};
use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;

/// Frames on a sheet: first, four middle points, last.
pub const FRAMES: usize = 6;
/// Columns of the grid (6 frames = 3 x 2).
const COLUMNS: u32 = 3;
/// Widest sheet, in pixels.
pub const MAX_WIDTH: u32 = 1024;
/// Space between cells and around the grid.
const GAP: u32 = 4;
/// JPEG quality of the sheet and the poster.
const QUALITY: u8 = 80;
/// Largest poster edge (the poster keeps the video's size up to this).
const POSTER_MAX: u32 = 1280;

/// What one run produced.
pub struct Made {
    pub sheet: Vec<u8>,
    pub poster: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub frames: usize,
    pub decoded: usize,
}

/// Frames kept while decoding, in display order.
struct Picks {
    /// Display indices wanted, ascending.
    wanted: Vec<usize>,
    /// Size of one cell.
    cell: (u32, u32),
    thumbs: Vec<(usize, RgbImage)>,
    poster: Option<RgbImage>,
    /// Keep the latest frame at full size (BT.709), for `last_frame`.
    keep_last: bool,
    last: Option<RgbImage>,
    decoded: usize,
}

impl Picks {
    fn take(&mut self, yuv: &DecodedYUV<'_>) {
        let index = self.decoded;
        self.decoded += 1;
        if index == 0 {
            self.poster = Some(to_rgb(yuv));
        }
        if self.wanted.binary_search(&index).is_ok() {
            self.thumbs.push((index, downscale(yuv, self.cell)));
        }
        if self.keep_last {
            self.last = Some(to_rgb_709(yuv));
        }
    }
}

/// Decode `path` and compose its sheet and poster.
pub fn make(path: &Path) -> Result<Made, String> {
    let (mut mp4, track) = open_track(path)?;
    let mut picks = Picks {
        wanted: wanted(track.samples as usize),
        cell: cell_size(track.width, track.height),
        thumbs: Vec::new(),
        poster: None,
        keep_last: false,
        last: None,
        decoded: 0,
    };
    let mut decoder = start_decoder(&track.headers)?;
    let (errors, stopped) = decode_samples(&mut mp4, &track, &mut decoder, &mut picks);
    let samples = track.samples;
    if picks.thumbs.len() < 2 {
        return Err(format!(
            "only {} of {samples} frames decoded ({errors} decode errors{stopped})",
            picks.decoded
        ));
    }
    let fps = samples as f64 / track.seconds.max(1e-3);
    let poster = picks
        .poster
        .take()
        .ok_or("the first frame did not decode")?;
    let sheet = compose(&picks.thumbs, picks.cell, fps);
    Ok(Made {
        width: sheet.width(),
        height: sheet.height(),
        sheet: jpeg(&sheet)?,
        poster: jpeg(&fit(poster, POSTER_MAX))?,
        frames: picks.thumbs.len(),
        decoded: picks.decoded,
    })
}

/// The last frame of `path` at full size, as a PNG (lossless: a storyboard's next shot starts
/// from exactly these pixels), with its width and height.
pub fn last_frame(path: &Path) -> Result<(Vec<u8>, u32, u32), String> {
    let (mut mp4, track) = open_track(path)?;
    let mut picks = Picks {
        wanted: Vec::new(),
        cell: (1, 1),
        thumbs: Vec::new(),
        poster: None,
        keep_last: true,
        last: None,
        decoded: 0,
    };
    let mut decoder = start_decoder(&track.headers)?;
    let (errors, stopped) = decode_samples(&mut mp4, &track, &mut decoder, &mut picks);
    // A frame missing at the end would continue from the wrong picture: all must decode.
    if errors > 0 || !stopped.is_empty() || picks.decoded < track.samples as usize {
        return Err(format!(
            "only {} of {} frames decoded ({errors} decode errors{stopped}): no last frame",
            picks.decoded, track.samples
        ));
    }
    let last = picks.last.ok_or("no frame decoded")?;
    let (w, h) = last.dimensions();
    let mut png = Vec::new();
    last.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode the PNG: {e}"))?;
    Ok((png, w, h))
}

type Mp4 = mp4::Mp4Reader<BufReader<File>>;

/// The H.264 track of an MP4: what decoding and the sheet need.
struct Track {
    id: u32,
    samples: u32,
    seconds: f64,
    /// The SPS and PPS, in Annex B form.
    headers: Vec<u8>,
    /// Bytes of each NAL unit's length prefix.
    nal_len: usize,
    width: u32,
    height: u32,
}

/// Open `path` as an MP4 and find its (non-empty) H.264 track.
fn open_track(path: &Path) -> Result<(Mp4, Track), String> {
    let file = File::open(path).map_err(|e| format!("cannot open the video: {e}"))?;
    let size = file
        .metadata()
        .map_err(|e| format!("cannot read the video: {e}"))?
        .len();
    let mp4 = mp4::Mp4Reader::read_header(BufReader::new(file), size)
        .map_err(|e| format!("not a readable MP4: {e}"))?;
    let track = mp4
        .tracks()
        .values()
        .find(|t| matches!(t.media_type(), Ok(mp4::MediaType::H264)))
        .ok_or("the MP4 has no H.264 video track")?;
    let avcc = track
        .trak
        .mdia
        .minf
        .stbl
        .stsd
        .avc1
        .as_ref()
        .map(|a| a.avcc.clone())
        .ok_or("the H.264 track has no avcC box")?;
    let mut headers = Vec::new();
    for nal in avcc
        .sequence_parameter_sets
        .iter()
        .chain(&avcc.picture_parameter_sets)
    {
        headers.extend_from_slice(&[0, 0, 0, 1]);
        headers.extend_from_slice(&nal.bytes);
    }
    let found = Track {
        id: track.track_id(),
        samples: track.sample_count(),
        seconds: track.duration().as_secs_f64(),
        nal_len: usize::from(avcc.length_size_minus_one & 3) + 1,
        headers,
        width: u32::from(track.width()),
        height: u32::from(track.height()),
    };
    if found.samples == 0 || found.width == 0 || found.height == 0 {
        return Err("the video track is empty".into());
    }
    Ok((mp4, found))
}

/// A decoder primed with the track's SPS and PPS.
fn start_decoder(headers: &[u8]) -> Result<Decoder, String> {
    let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
    let mut decoder = Decoder::with_api_config(openh264::OpenH264API::from_source(), config)
        .map_err(|e| format!("cannot start the H.264 decoder: {e}"))?;
    // SPS/PPS alone yield no picture; an error here shows in the samples' decoding.
    let _ = decoder.decode(headers);
    Ok(decoder)
}

/// Decode every sample into `picks`; returns the decode errors and why reading stopped early
/// (empty when it did not).
fn decode_samples(
    mp4: &mut Mp4,
    track: &Track,
    decoder: &mut Decoder,
    picks: &mut Picks,
) -> (usize, String) {
    let mut errors = 0usize;
    let mut stopped = String::new();
    let mut annex_b = Vec::new();
    for id in 1..=track.samples {
        let sample = match mp4.read_sample(track.id, id) {
            Ok(Some(s)) => s,
            Ok(None) => break,
            // A truncated file: sheet what was read.
            Err(e) => {
                stopped = format!("; reading stopped at sample {id}: {e}");
                break;
            }
        };
        if !avcc_to_annex_b(&sample.bytes, track.nal_len, &mut annex_b) {
            errors += 1;
            continue;
        }
        match decoder.decode(&annex_b) {
            Ok(Some(yuv)) => picks.take(&yuv),
            Ok(None) => {}
            Err(_) => errors += 1,
        }
    }
    match decoder.flush_remaining() {
        Ok(rest) => rest.iter().for_each(|yuv| picks.take(yuv)),
        Err(_) => errors += 1,
    }
    (errors, stopped)
}

/// Display indices to keep among `n` frames: first, evenly spaced middle points, last.
fn wanted(n: usize) -> Vec<usize> {
    let k = FRAMES.min(n);
    let mut v: Vec<usize> = (0..k)
        .map(|i| {
            if k == 1 {
                0
            } else {
                (i * (n - 1) + (k - 1) / 2) / (k - 1)
            }
        })
        .collect();
    v.dedup();
    v
}

/// One cell: the frame scaled to fit a square of a third of the sheet's width, never enlarged.
fn cell_size(w: u32, h: u32) -> (u32, u32) {
    let edge = (MAX_WIDTH - GAP * (COLUMNS + 1)) / COLUMNS;
    let scale = (edge as f64 / w as f64)
        .min(edge as f64 / h as f64)
        .min(1.0);
    (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    )
}

/// AVCC sample (length-prefixed NAL units) -> Annex B (start codes). False if a length runs
/// past the sample.
fn avcc_to_annex_b(sample: &[u8], nal_len: usize, out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut rest = sample;
    while !rest.is_empty() {
        if rest.len() < nal_len {
            return false;
        }
        let (len, tail) = rest.split_at(nal_len);
        let n = len
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if n > tail.len() {
            return false;
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&tail[..n]);
        rest = &tail[n..];
    }
    !out.is_empty()
}

/// Full-size RGB of a decoded frame.
fn to_rgb(yuv: &DecodedYUV<'_>) -> RgbImage {
    let (w, h) = yuv.dimensions();
    let mut buf = vec![0u8; w * h * 3];
    yuv.write_rgb8(&mut buf);
    RgbImage::from_raw(w as u32, h as u32, buf).unwrap_or_else(|| RgbImage::new(1, 1))
}

/// Full-size RGB of a decoded frame, BT.709 limited range: the matrix the local renderer
/// encodes with and the one HD video (Wan's outputs) uses, so a frame taken out and rendered
/// again keeps its colours (OpenH264's own conversion is BT.601).
fn to_rgb_709(yuv: &DecodedYUV<'_>) -> RgbImage {
    let (w, h) = yuv.dimensions();
    let (sy, su, sv) = yuv.strides();
    let (ys, us, vs) = (yuv.y(), yuv.u(), yuv.v());
    let clamp = |x: f32| x.round().clamp(0.0, 255.0) as u8;
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        let l = (f32::from(ys.get(y * sy + x).copied().unwrap_or(16)) - 16.0) * (255.0 / 219.0);
        let cb = (f32::from(us.get((y / 2) * su + x / 2).copied().unwrap_or(128)) - 128.0)
            * (255.0 / 224.0);
        let cr = (f32::from(vs.get((y / 2) * sv + x / 2).copied().unwrap_or(128)) - 128.0)
            * (255.0 / 224.0);
        Rgb([
            clamp(l + 1.5748 * cr),
            clamp(l - 0.1873 * cb - 0.4681 * cr),
            clamp(l + 1.8556 * cb),
        ])
    })
}

/// Area-average downscale straight from I420 to RGB at `cell` size: only the kept frames pay.
fn downscale(yuv: &DecodedYUV<'_>, cell: (u32, u32)) -> RgbImage {
    let (w, h) = yuv.dimensions();
    let (sy, su, sv) = yuv.strides();
    let (ys, us, vs) = (yuv.y(), yuv.u(), yuv.v());
    let (cw, ch) = (cell.0 as usize, cell.1 as usize);
    let mut img = RgbImage::new(cell.0, cell.1);
    for oy in 0..ch {
        let y0 = oy * h / ch;
        let y1 = ((oy + 1) * h / ch).max(y0 + 1).min(h);
        for ox in 0..cw {
            let x0 = ox * w / cw;
            let x1 = ((ox + 1) * w / cw).max(x0 + 1).min(w);
            let (mut ty, mut tu, mut tv, mut n) = (0u32, 0u32, 0u32, 0u32);
            for y in y0..y1 {
                for x in x0..x1 {
                    ty += u32::from(ys.get(y * sy + x).copied().unwrap_or(16));
                    tu += u32::from(us.get((y / 2) * su + x / 2).copied().unwrap_or(128));
                    tv += u32::from(vs.get((y / 2) * sv + x / 2).copied().unwrap_or(128));
                    n += 1;
                }
            }
            let n = n.max(1) as f32;
            img.put_pixel(
                ox as u32,
                oy as u32,
                yuv_to_rgb(ty as f32 / n, tu as f32 / n, tv as f32 / n),
            );
        }
    }
    img
}

/// BT.601 limited range, as OpenH264's own RGB conversion.
fn yuv_to_rgb(y: f32, u: f32, v: f32) -> Rgb<u8> {
    let c = 1.164 * (y - 16.0);
    let (d, e) = (u - 128.0, v - 128.0);
    let clamp = |x: f32| x.round().clamp(0.0, 255.0) as u8;
    Rgb([
        clamp(c + 1.596 * e),
        clamp(c - 0.392 * d - 0.813 * e),
        clamp(c + 2.017 * d),
    ])
}

/// The grid: cells left to right, top to bottom, each labelled with its time.
fn compose(thumbs: &[(usize, RgbImage)], cell: (u32, u32), fps: f64) -> RgbImage {
    let n = thumbs.len() as u32;
    let cols = n.min(COLUMNS);
    let rows = n.div_ceil(cols);
    let mut sheet = RgbImage::from_pixel(
        cols * cell.0 + GAP * (cols + 1),
        rows * cell.1 + GAP * (rows + 1),
        Rgb([24, 24, 24]),
    );
    let scale = if cell.0 >= 240 { 3 } else { 2 };
    for (i, (index, thumb)) in thumbs.iter().enumerate() {
        let i = i as u32;
        let x = GAP + (i % cols) * (cell.0 + GAP);
        let y = GAP + (i / cols) * (cell.1 + GAP);
        image::imageops::replace(&mut sheet, thumb, i64::from(x), i64::from(y));
        let label = format!("{:.1}s", *index as f64 / fps);
        font::label(&mut sheet, x + 2, y + 2, &label, scale);
    }
    sheet
}

/// `img` scaled down to at most `max` on its longer edge.
fn fit(img: RgbImage, max: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if w.max(h) <= max {
        return img;
    }
    let s = max as f64 / w.max(h) as f64;
    image::imageops::resize(
        &img,
        ((w as f64 * s).round() as u32).max(1),
        ((h as f64 * s).round() as u32).max(1),
        image::imageops::FilterType::Triangle,
    )
}

fn jpeg(img: &RgbImage) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, QUALITY)
        .encode_image(img)
        .map_err(|e| format!("cannot encode the JPEG: {e}"))?;
    Ok(out)
}

/// A 3x5 bitmap font for time labels: digits, '.', 's'. No font files.
mod font {
    use image::{Rgb, RgbImage};

    /// Rows of 3 bits, top to bottom.
    fn glyph(c: char) -> [u8; 5] {
        match c {
            '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
            '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
            '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
            '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
            '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
            '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
            '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
            '7' => [0b111, 0b001, 0b001, 0b001, 0b001],
            '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
            '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
            '.' => [0, 0, 0, 0, 0b010],
            's' => [0, 0b011, 0b100, 0b001, 0b110],
            _ => [0; 5],
        }
    }

    /// White text on a black box with its top-left corner at (x, y); clipped to the image.
    pub fn label(img: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32) {
        let pad = scale;
        let advance = 4 * scale;
        let w = text.chars().count() as u32 * advance - scale + 2 * pad;
        let h = 5 * scale + 2 * pad;
        let mut put = |px: u32, py: u32, c: Rgb<u8>| {
            if px < img.width() && py < img.height() {
                img.put_pixel(px, py, c);
            }
        };
        for dy in 0..h {
            for dx in 0..w {
                put(x + dx, y + dy, Rgb([0, 0, 0]));
            }
        }
        for (i, c) in text.chars().enumerate() {
            let gx = x + pad + i as u32 * advance;
            for (row, bits) in glyph(c).iter().enumerate() {
                for col in 0..3u32 {
                    if bits & (0b100 >> col) != 0 {
                        for sy in 0..scale {
                            for sx in 0..scale {
                                put(
                                    gx + col * scale + sx,
                                    y + pad + row as u32 * scale + sy,
                                    Rgb([255, 255, 255]),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_first_middle_and_last() {
        assert_eq!(wanted(81), vec![0, 16, 32, 48, 64, 80]);
        assert_eq!(wanted(3), vec![0, 1, 2]);
        assert_eq!(wanted(1), vec![0]);
        let w = wanted(7);
        assert_eq!((w[0], w[w.len() - 1], w.len()), (0, 6, 6));
    }

    #[test]
    fn cells_fit_the_sheet_width() {
        assert_eq!(cell_size(832, 480), (336, 194));
        assert_eq!(cell_size(480, 832), (194, 336));
        assert_eq!(cell_size(160, 90), (160, 90));
        let (cw, _) = cell_size(1920, 1080);
        assert!(cw * COLUMNS + GAP * (COLUMNS + 1) <= MAX_WIDTH);
    }

    #[test]
    fn avcc_lengths_are_checked() {
        let mut out = Vec::new();
        assert!(avcc_to_annex_b(&[0, 0, 0, 2, 0x65, 1], 4, &mut out));
        assert_eq!(out, [0, 0, 0, 1, 0x65, 1]);
        assert!(!avcc_to_annex_b(&[0, 0, 0, 9, 0x65, 1], 4, &mut out));
        assert!(!avcc_to_annex_b(&[0, 0], 4, &mut out));
    }

    #[test]
    fn labels_draw_white_pixels_and_clip() {
        let mut img = RgbImage::new(20, 12);
        font::label(&mut img, 0, 0, "1.5s", 2);
        assert!(img.pixels().any(|p| p.0 == [255, 255, 255]));
        // Past the edge: clipped, no panic.
        font::label(&mut img, 15, 8, "10.0s", 3);
    }
}
