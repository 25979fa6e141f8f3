//! Renderer tests: real encodes of small synthetic pictures, checked by an independent MP4 reader
//! (`mp4` crate) and the OpenH264 decoder.

use super::*;
use std::io::Cursor;
use std::sync::atomic::AtomicBool;

use openh264::decoder::Decoder;

/// The test card is 1.5x the 480p 16:9 output, so the renderer needs no prefilter resize for most
/// motions (debug builds resize slowly); one test uses a bigger card to cover that path.
const W: u32 = 1248;
const H: u32 = 702;

/// The default card, built once.
fn default_card() -> &'static [u8] {
    static CARD: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    CARD.get_or_init(|| card(W, H))
}

/// A 16:9 test card (or any size): soft gradient and low-frequency waves (all luma <= ~160), a
/// white disk right of centre, a black bar, and a pure red square for the colour check.
fn card(w: u32, h: u32) -> Vec<u8> {
    let (fw, fh) = (w as f32, h as f32);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let (u, v) = (x as f32 / fw, y as f32 / fh);
        // White disk: centre (0.70, 0.45), radius 0.035 of the width.
        let (dx, dy) = ((u - 0.70) * fw, (v - 0.45) * fh);
        if dx * dx + dy * dy < (0.035 * fw).powi(2) {
            return image::Rgb([255, 255, 255]);
        }
        if (0.30..0.36).contains(&u) && (0.55..0.80).contains(&v) {
            return image::Rgb([0, 0, 0]);
        }
        if (0.42..0.50).contains(&u) && (0.20..0.34).contains(&v) {
            return image::Rgb([255, 0, 0]);
        }
        let wave = ((u * 9.0).sin() * (v * 7.0).cos() * 30.0) as i32;
        let g = |base: f32| (base + wave as f32).clamp(20.0, 160.0) as u8;
        image::Rgb([g(40.0 + 100.0 * u), g(60.0 + 80.0 * v), g(110.0 - 40.0 * u)])
    });
    let mut out = Cursor::new(Vec::new());
    if let Err(e) = img.write_to(&mut out, image::ImageFormat::Png) {
        panic!("encoding the test card failed: {e}");
    }
    out.into_inner()
}

fn spec(motion: Motion) -> RenderSpec {
    RenderSpec {
        motion,
        speed: 1.0,
        duration_seconds: 5,
        resolution: Resolution::P480,
        aspect: Aspect::Auto,
    }
}

fn render(bytes: &[u8], spec: &RenderSpec, max_frames: Option<u32>) -> (RenderPlan, Vec<u8>) {
    let mut out = Cursor::new(Vec::new());
    let cancel = AtomicBool::new(false);
    match render_frames(bytes, spec, &mut out, &mut |_, _| {}, &cancel, max_frames) {
        Ok(plan) => (plan, out.into_inner()),
        Err(e) => panic!("render {:?} failed: {e}", spec.motion),
    }
}

/// A decoded luma plane.
struct Luma {
    w: usize,
    h: usize,
    y: Vec<u8>,
    /// Mean Cr over the red square's expected area is checked through this.
    cr: Vec<u8>,
}

impl Luma {
    fn at(&self, x: usize, y: usize) -> f32 {
        f32::from(self.y[y * self.w + x])
    }

    /// Bilinear sample, clamped.
    fn sample(&self, x: f32, y: f32) -> f32 {
        let x = x.clamp(0.0, (self.w - 1) as f32);
        let y = y.clamp(0.0, (self.h - 1) as f32);
        let (x0, y0) = (x as usize, y as usize);
        let (x1, y1) = ((x0 + 1).min(self.w - 1), (y0 + 1).min(self.h - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let top = self.at(x0, y0) * (1.0 - fx) + self.at(x1, y0) * fx;
        let bottom = self.at(x0, y1) * (1.0 - fx) + self.at(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    }

    /// Centroid of the white disk (luma above 200).
    fn marker(&self) -> (f32, f32) {
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
        for y in 0..self.h {
            for x in 0..self.w {
                if self.at(x, y) > 200.0 {
                    sx += x as f32 + 0.5;
                    sy += y as f32 + 0.5;
                    n += 1.0;
                }
            }
        }
        assert!(n > 100.0, "white marker not found (only {n} bright pixels)");
        (sx / n, sy / n)
    }
}

/// Mean absolute luma difference between `a` and `f(x, y)` over the central 80% of the frame.
fn mae(a: &Luma, f: impl Fn(f32, f32) -> f32) -> f32 {
    let (mut sum, mut n) = (0.0, 0.0);
    for y in (a.h / 10..a.h * 9 / 10).step_by(2) {
        for x in (a.w / 10..a.w * 9 / 10).step_by(2) {
            sum += (a.at(x, y) - f(x as f32 + 0.5, y as f32 + 0.5)).abs();
            n += 1.0;
        }
    }
    sum / n
}

fn open(file: &[u8]) -> ::mp4::Mp4Reader<Cursor<&[u8]>> {
    match ::mp4::Mp4Reader::read_header(Cursor::new(file), file.len() as u64) {
        Ok(r) => r,
        Err(e) => panic!("the mp4 crate cannot read our file: {e}"),
    }
}

/// Decodes every sample of track 1 with OpenH264.
fn decode_all(file: &[u8]) -> Vec<Luma> {
    let mut reader = open(file);
    let track = &reader.tracks()[&1];
    let mut annexb = Vec::new();
    for ps in [
        track.sequence_parameter_set().map(<[u8]>::to_vec),
        track.picture_parameter_set().map(<[u8]>::to_vec),
    ] {
        annexb.extend_from_slice(&[0, 0, 0, 1]);
        annexb.extend_from_slice(&ps.unwrap_or_else(|e| panic!("avcC: {e}")));
    }
    let count = track.sample_count();
    let mut decoder = Decoder::new().unwrap_or_else(|e| panic!("decoder: {e}"));
    let mut frames = Vec::new();
    for id in 1..=count {
        let sample = match reader.read_sample(1, id) {
            Ok(Some(s)) => s,
            other => panic!("sample {id}: {other:?}"),
        };
        let mut rest = &sample.bytes[..];
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(&rest[4..4 + len]);
            rest = &rest[4 + len..];
        }
        let yuv = match decoder.decode(&annexb) {
            Ok(Some(yuv)) => yuv,
            other => panic!("decoding sample {id}: {:?}", other.err()),
        };
        annexb.clear();
        let (w, h) = yuv.dimensions();
        let (ys, us, _) = yuv.strides();
        let y = (0..h)
            .flat_map(|r| yuv.y()[r * ys..r * ys + w].to_vec())
            .collect();
        let cr = (0..h / 2)
            .flat_map(|r| yuv.v()[r * us..r * us + w / 2].to_vec())
            .collect();
        frames.push(Luma { w, h, y, cr });
    }
    frames
}

/// First and last frame of the full clip (a 2-frame render samples exactly t = 0 and t = 1).
fn ends(motion: Motion) -> (Luma, Luma) {
    ends_of(default_card(), motion)
}

fn ends_of(bytes: &[u8], motion: Motion) -> (Luma, Luma) {
    let (_, file) = render(bytes, &spec(motion), Some(2));
    let mut frames = decode_all(&file);
    assert_eq!(frames.len(), 2);
    let last = frames.pop().unwrap_or_else(|| unreachable!());
    let first = frames.pop().unwrap_or_else(|| unreachable!());
    (first, last)
}

fn top_level_boxes(file: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= file.len() {
        let size = u32::from_be_bytes([file[pos], file[pos + 1], file[pos + 2], file[pos + 3]]);
        names.push(String::from_utf8_lossy(&file[pos + 4..pos + 8]).to_string());
        pos += size as usize;
    }
    names
}

#[test]
fn full_clip_container_is_5s_80_frames_avc1_faststart() {
    let mut calls = Vec::new();
    let mut out = Cursor::new(Vec::new());
    let cancel = AtomicBool::new(false);
    let plan = render_mp4(
        default_card(),
        &spec(Motion::PanRight),
        &mut out,
        &mut |done, total| calls.push((done, total)),
        &cancel,
    )
    .unwrap_or_else(|e| panic!("render: {e}"));
    let file = out.into_inner();
    assert_eq!(
        plan,
        RenderPlan {
            width: 832,
            height: 480,
            frames: 80
        }
    );
    assert_eq!(calls.len(), 80);
    assert_eq!(calls.first(), Some(&(1, 80)));
    assert_eq!(calls.last(), Some(&(80, 80)));

    assert_eq!(top_level_boxes(&file), ["ftyp", "moov", "mdat"]);
    let mut reader = open(&file);
    assert_eq!(reader.tracks().len(), 1);
    assert_eq!(reader.duration(), std::time::Duration::from_secs(5));
    let track = &reader.tracks()[&1];
    assert_eq!(
        track.box_type().map(|b| b.to_string()).ok().as_deref(),
        Some("avc1")
    );
    assert!(matches!(track.media_type(), Ok(::mp4::MediaType::H264)));
    assert_eq!((track.width(), track.height()), (832, 480));
    assert_eq!(track.sample_count(), 80);
    assert_eq!(track.duration(), std::time::Duration::from_secs(5));
    assert_eq!(track.timescale(), 16_000);
    assert!((track.frame_rate() - 16.0).abs() < 1e-9);
    let sps = track.sequence_parameter_set().unwrap_or_default().to_vec();
    assert_eq!(sps.first().map(|b| b & 0x1f), Some(7));
    assert_eq!(sps.get(1), Some(&66), "constrained baseline profile");
    let stss = track
        .trak
        .mdia
        .minf
        .stbl
        .stss
        .as_ref()
        .map(|s| s.entries.clone());
    assert_eq!(
        stss,
        Some(vec![1, 33, 65]),
        "IDR every 2 s, marked as sync samples"
    );
    for id in [1, 2, 33, 80] {
        let s = reader.read_sample(1, id).ok().flatten();
        let s = s.unwrap_or_else(|| panic!("sample {id} missing"));
        assert_eq!(s.is_sync, id == 1 || id == 33, "sample {id}");
        assert_eq!(s.start_time, u64::from(id - 1) * 1000);
        assert_eq!(s.duration, 1000);
    }
    let decoded = decode_all(&file);
    assert_eq!(decoded.len(), 80, "every sample decodes");
}

#[test]
fn portrait_and_square_aspects_and_auto_dimensions() {
    let bytes = default_card();
    let mut s = spec(Motion::Static);
    s.aspect = Aspect::Portrait9x16;
    let (rendered, file) = render(bytes, &s, Some(3));
    assert_eq!((rendered.width, rendered.height), (480, 832));
    let reader = open(&file);
    let track = &reader.tracks()[&1];
    assert_eq!((track.width(), track.height()), (480, 832));
    assert_eq!(track.sample_count(), 3);

    // The extreme speed still renders inside the picture (the camera tests check the geometry).
    let mut fast = spec(Motion::RollClockwise);
    fast.speed = SPEED_MAX;
    fast.aspect = Aspect::Portrait9x16;
    let (_, file) = render(bytes, &fast, Some(2));
    assert_eq!(decode_all(&file).len(), 2);

    s.aspect = Aspect::Square;
    assert_eq!(plan_dims(bytes, &s), (480, 480));
    s.resolution = Resolution::P720;
    assert_eq!(plan_dims(bytes, &s), (720, 720));
    s.aspect = Aspect::Landscape16x9;
    assert_eq!(plan_dims(bytes, &s), (1280, 720));
    s.aspect = Aspect::Portrait9x16;
    assert_eq!(plan_dims(bytes, &s), (720, 1280));

    assert_eq!(
        output_dims(1920, 1080, Resolution::P480, Aspect::Auto),
        (832, 480)
    );
    assert_eq!(
        output_dims(1080, 1920, Resolution::P720, Aspect::Auto),
        (720, 1280)
    );
    assert_eq!(
        output_dims(1000, 1000, Resolution::P480, Aspect::Auto),
        (480, 480)
    );
    assert_eq!(
        output_dims(1600, 1200, Resolution::P480, Aspect::Auto),
        (640, 480)
    );
    assert_eq!(
        output_dims(1200, 1600, Resolution::P720, Aspect::Auto),
        (720, 960)
    );
    assert_eq!(
        output_dims(3000, 2000, Resolution::P480, Aspect::Auto),
        (720, 480)
    );
    assert_eq!(
        output_dims(9000, 1000, Resolution::P480, Aspect::Auto),
        (960, 480)
    );
    assert_eq!(
        output_dims(1000, 9000, Resolution::P720, Aspect::Auto),
        (720, 1440)
    );

    let mut s = spec(Motion::ZoomIn);
    for (secs, frames) in [(5, 80), (10, 160), (15, 240)] {
        s.duration_seconds = secs;
        assert_eq!(plan(bytes, &s).map(|p| p.frames).ok(), Some(frames));
    }
}

fn plan_dims(bytes: &[u8], s: &RenderSpec) -> (u32, u32) {
    match plan(bytes, s) {
        Ok(p) => (p.width, p.height),
        Err(e) => panic!("plan: {e}"),
    }
}

#[test]
fn static_frames_are_identical_and_colours_survive() {
    // A card bigger than 1.5x the output exercises the prefilter resize.
    let (first, last) = ends_of(&card(2000, 1125), Motion::Static);
    assert!(mae(&last, |x, y| first.sample(x - 0.5, y - 0.5)) < 1.0);
    // The whole 16:9 card is shown: the white disk centre sits at (0.70, 0.45) of the frame.
    let (mx, my) = first.marker();
    assert!(
        (mx / 832.0 - 0.70).abs() < 0.01 && (my / 480.0 - 0.45).abs() < 0.01,
        "{mx},{my}"
    );
    // Red square (0.42..0.50, 0.20..0.34) has high Cr; the background does not.
    let cr = |u: f32, v: f32| {
        let (cx, cy) = ((u * 416.0) as usize, (v * 240.0) as usize);
        first.cr[cy * 416 + cx]
    };
    assert!(cr(0.46, 0.27) > 220, "red square Cr {}", cr(0.46, 0.27));
    assert!(cr(0.20, 0.80) < 160, "background Cr {}", cr(0.20, 0.80));
}

#[test]
fn zoom_in_ends_on_a_135x_centre_crop_and_zoom_out_starts_there() {
    let mag = 1.35f32;
    fn magnified(src: &Luma, mag: f32) -> impl Fn(f32, f32) -> f32 + '_ {
        let (cx, cy) = (src.w as f32 / 2.0, src.h as f32 / 2.0);
        move |x: f32, y: f32| src.sample(cx + (x - cx) / mag - 0.5, cy + (y - cy) / mag - 0.5)
    }
    let (first, last) = ends(Motion::ZoomIn);
    let good = mae(&last, magnified(&first, mag));
    let unmagnified = mae(&last, |x, y| first.sample(x - 0.5, y - 0.5));
    let wrong_way = mae(&last, |x, y| {
        let (cx, cy) = (416.0, 240.0);
        first.sample(cx + (x - cx) * mag - 0.5, cy + (y - cy) * mag - 0.5)
    });
    assert!(good < 3.0, "zoom_in: last vs magnified first MAE {good}");
    assert!(
        unmagnified > 2.0 * good && wrong_way > 2.0 * good,
        "{good} {unmagnified} {wrong_way}"
    );

    let (first, last) = ends(Motion::ZoomOut);
    let good = mae(&first, magnified(&last, mag));
    assert!(good < 3.0, "zoom_out: first vs magnified last MAE {good}");
}

fn marker_shift(motion: Motion) -> (f32, f32) {
    let (first, last) = ends(motion);
    let (a, b) = (first.marker(), last.marker());
    (b.0 - a.0, b.1 - a.1)
}

#[test]
fn pans_move_the_view_by_a_fifth_of_the_frame() {
    // pan_left: the view moves left, so the picture slides right on screen.
    let (dx, dy) = marker_shift(Motion::PanLeft);
    assert!(
        (dx - 0.2 * 832.0).abs() < 3.0 && dy.abs() < 1.5,
        "pan_left {dx},{dy}"
    );
    let (dx, dy) = marker_shift(Motion::PanRight);
    assert!(
        (dx + 0.2 * 832.0).abs() < 3.0 && dy.abs() < 1.5,
        "pan_right {dx},{dy}"
    );
    // pan_up: the view moves up, so the picture slides down.
    let (dx, dy) = marker_shift(Motion::PanUp);
    assert!(
        (dy - 0.2 * 480.0).abs() < 3.0 && dx.abs() < 1.5,
        "pan_up {dx},{dy}"
    );
    let (dx, dy) = marker_shift(Motion::PanDown);
    assert!(
        (dy + 0.2 * 480.0).abs() < 3.0 && dx.abs() < 1.5,
        "pan_down {dx},{dy}"
    );
}

#[test]
fn tilts_pivot_the_same_way_as_pans() {
    // Perspective makes the marker travel differ a little from the centre's 20%.
    let (dx, _) = marker_shift(Motion::TiltLeft);
    assert!(dx > 0.14 * 832.0 && dx < 0.30 * 832.0, "tilt_left {dx}");
    let (dx, _) = marker_shift(Motion::TiltRight);
    assert!(dx < -0.14 * 832.0 && dx > -0.30 * 832.0, "tilt_right {dx}");
    let (_, dy) = marker_shift(Motion::TiltUp);
    assert!(dy > 0.14 * 480.0 && dy < 0.30 * 480.0, "tilt_up {dy}");
    let (_, dy) = marker_shift(Motion::TiltDown);
    assert!(dy < -0.14 * 480.0 && dy > -0.30 * 480.0, "tilt_down {dy}");
}

#[test]
fn rolls_turn_the_picture_by_eight_degrees() {
    let angle = |motion| {
        let (first, last) = ends(motion);
        let polar = |(x, y): (f32, f32)| (y - 240.0).atan2(x - 416.0);
        // Image y points down, so a growing atan2 angle is a clockwise turn on screen.
        (polar(last.marker()) - polar(first.marker())).to_degrees()
    };
    let cw = angle(Motion::RollClockwise);
    assert!((cw - 8.0).abs() < 0.6, "roll_clockwise turned {cw} degrees");
    let ccw = angle(Motion::RollAnticlockwise);
    assert!(
        (ccw + 8.0).abs() < 0.6,
        "roll_anticlockwise turned {ccw} degrees"
    );
}

fn expect_plan_error(bytes: &[u8], s: &RenderSpec) -> RenderError {
    let mut out = Cursor::new(Vec::new());
    let mut called = false;
    let cancel = AtomicBool::new(false);
    let result = render_mp4(bytes, s, &mut out, &mut |_, _| called = true, &cancel);
    assert!(out.get_ref().is_empty(), "nothing may be written on error");
    assert!(!called, "no progress on a plan error");
    match result {
        Err(e) => e,
        Ok(p) => panic!("expected an error, rendered {p:?}"),
    }
}

#[test]
fn errors_are_specific_and_actionable_and_write_nothing() {
    let e = "warp_speed".parse::<Motion>().err();
    assert!(matches!(e, Some(RenderError::UnsupportedMotion(ref m)) if m == "warp_speed"));
    let msg = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("zoom_in") && msg.contains("roll_anticlockwise"),
        "{msg}"
    );
    for m in Motion::ALL {
        assert_eq!(m.as_str().parse::<Motion>().ok(), Some(m));
        let json = serde_json::to_string(&m).unwrap_or_default();
        assert_eq!(json, format!("\"{}\"", m.as_str()));
        assert_eq!(serde_json::from_str::<Motion>(&json).ok(), Some(m));
    }
    assert_eq!("Zoom-In".parse::<Motion>().ok(), Some(Motion::ZoomIn));

    let bytes = card(640, 360);
    let mut s = spec(Motion::ZoomIn);
    s.speed = 7.0;
    let e = expect_plan_error(&bytes, &s);
    assert!(matches!(e, RenderError::SpeedOutOfRange(v) if v == 7.0));
    assert_eq!(
        e.to_string(),
        "speed 7 is out of range: use 0.05 to 4.0 (default 1.0)"
    );
    s.speed = f32::NAN;
    assert!(matches!(
        expect_plan_error(&bytes, &s),
        RenderError::SpeedOutOfRange(_)
    ));

    let mut s = spec(Motion::ZoomIn);
    s.duration_seconds = 7;
    let e = expect_plan_error(&bytes, &s);
    assert!(matches!(e, RenderError::UnsupportedDuration(7)));
    assert!(e.to_string().contains("5, 10 or 15"), "{e}");

    let s = spec(Motion::ZoomIn);
    let e = expect_plan_error(b"definitely not an image", &s);
    assert!(matches!(e, RenderError::InvalidImage(_)), "{e:?}");
    assert!(e.to_string().contains("JPEG, PNG, WebP"), "{e}");
    let e = expect_plan_error(&[], &s);
    assert!(matches!(e, RenderError::InvalidImage(_)), "{e:?}");

    let tiny = card(200, 150);
    let mut s = spec(Motion::ZoomIn);
    s.resolution = Resolution::P720;
    s.aspect = Aspect::Landscape16x9;
    let e = expect_plan_error(&tiny, &s);
    assert!(
        matches!(
            e,
            RenderError::ImageTooSmall {
                width: 200,
                height: 150,
                need_width: 640,
                need_height: 480
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("200x150") && e.to_string().contains("480p"),
        "{e}"
    );
    // Exactly at the 2x limit passes: 416x240 crop for 832x480.
    assert!(plan(&card(416, 240), &spec(Motion::ZoomIn)).is_ok());
    assert!(matches!(
        plan(&card(414, 240), &spec(Motion::ZoomIn)),
        Err(RenderError::ImageTooSmall { .. })
    ));
}

#[test]
fn a_truncated_image_passes_plan_but_fails_render_without_writing() {
    let mut bytes = default_card().to_vec();
    bytes.truncate(bytes.len() / 3);
    let s = spec(Motion::ZoomIn);
    assert!(plan(&bytes, &s).is_ok(), "the header alone is fine");
    let mut out = Cursor::new(Vec::new());
    let cancel = AtomicBool::new(false);
    let result = render_mp4(&bytes, &s, &mut out, &mut |_, _| {}, &cancel);
    assert!(
        matches!(result, Err(RenderError::InvalidImage(_))),
        "{result:?}"
    );
    assert!(out.get_ref().is_empty());
}

#[test]
fn cancel_stops_between_frames_and_writes_nothing() {
    let bytes = card(640, 360);
    let s = spec(Motion::PanLeft);
    let cancel = AtomicBool::new(true);
    let mut out = Cursor::new(Vec::new());
    let result = render_mp4(&bytes, &s, &mut out, &mut |_, _| {}, &cancel);
    assert!(matches!(result, Err(RenderError::Cancelled)), "{result:?}");

    let cancel = AtomicBool::new(false);
    let mut seen = 0;
    let result = render_mp4(
        &bytes,
        &s,
        &mut out,
        &mut |done, _| {
            seen = done;
            if done == 3 {
                cancel.store(true, Ordering::Relaxed);
            }
        },
        &cancel,
    );
    assert!(matches!(result, Err(RenderError::Cancelled)), "{result:?}");
    assert_eq!(seen, 3, "no frame after the cancel");
    assert!(out.get_ref().is_empty());
    assert_eq!(RenderError::Cancelled.to_string(), "render cancelled");
}

#[test]
fn prompts_name_camera_moves() {
    let cases: &[(&str, Option<Motion>)] = &[
        ("A slow zoom in on the lighthouse", Some(Motion::ZoomIn)),
        ("ZOOM OUT to reveal the city", Some(Motion::ZoomOut)),
        ("the camera zooms into her eyes", Some(Motion::ZoomIn)),
        ("pan left across the beach", Some(Motion::PanLeft)),
        ("Camera panning right, golden hour", Some(Motion::PanRight)),
        ("pans slowly to the left", Some(Motion::PanLeft)),
        ("pan up the tower", Some(Motion::PanUp)),
        ("tilt up to the sky", Some(Motion::TiltUp)),
        ("tilting down toward the river", Some(Motion::TiltDown)),
        ("tilt_left", Some(Motion::TiltLeft)),
        ("a gentle roll clockwise", Some(Motion::RollClockwise)),
        ("rotate counterclockwise", Some(Motion::RollAnticlockwise)),
        (
            "rotate counter-clockwise slowly",
            Some(Motion::RollAnticlockwise),
        ),
        ("rolling anticlockwise", Some(Motion::RollAnticlockwise)),
        ("roll_anticlockwise", Some(Motion::RollAnticlockwise)),
        ("static camera, wind in the trees", Some(Motion::Static)),
        ("a locked-off shot of the harbour", Some(Motion::Static)),
        ("static", Some(Motion::Static)),
        ("zoom_out", Some(Motion::ZoomOut)),
        ("pan_down", Some(Motion::PanDown)),
        // The earliest phrase wins.
        ("pan right, then zoom in", Some(Motion::PanRight)),
        ("zoom in while we pan right", Some(Motion::ZoomIn)),
        (
            "static camera; later the camera pans left",
            Some(Motion::Static),
        ),
        // Nothing, or words that only look like moves.
        ("a cat sleeping on a sofa", None),
        ("static electricity in her hair", None),
        ("a frying pan on the stove", None),
        ("zoom", None),
        ("dolly in toward the door", Some(Motion::ZoomIn)),
        ("", None),
    ];
    for (prompt, want) in cases {
        assert_eq!(motion_from_prompt(prompt), *want, "{prompt:?}");
    }
}

#[test]
#[ignore = "timing probe: cargo test --release sampler_throughput -- --ignored --nocapture"]
fn sampler_throughput() {
    let bytes = card(1920, 1080);
    for (w, h) in [(832usize, 480usize), (1280, 720)] {
        let path = camera::CameraPath::new(Motion::ZoomIn, 1.0, w as f64, h as f64);
        let src = raster::prepare_source(&bytes, w, h, path.oversample_scale())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut frame = Frame::new(w, h);
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            for i in 0..80 {
                src.render(&path.homography(f64::from(i) / 79.0), &mut frame.data, w, h);
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        eprintln!("{w}x{h}: 80 frames sampled in {best:.3} s");
    }
}
