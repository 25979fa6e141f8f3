//! Offline "camera-motion preview" renderer: the `local` provider's `camera-preview` model.
//!
//! Turns one still image into a real H.264 MP4 by moving a virtual camera over it. No AI model,
//! no network, no key. The pipeline is:
//!
//! 1. [`plan`]: cheap checks (speed, duration, image header, minimum size) and output geometry.
//! 2. Decode the image (EXIF orientation applied), cover-fit crop it to the output aspect, prefilter it
//!    once to about 1.5x the largest window the camera will show, and convert it to Y'CbCr planes.
//! 3. For each frame, a projective map (zoom, pan, pivot with slight perspective, roll) samples a
//!    window that always stays inside the crop, so there are never black borders. Sampling is
//!    bilinear; one worker thread renders frames while the caller's thread encodes.
//! 4. OpenH264 (compiled from source by the `openh264` crate) encodes constrained-baseline H.264,
//!    and the `mp4` submodule muxes it into a fast-start MP4 (`moov` before `mdat`).
//!
//! Colour: BT.709 matrix, limited ("TV") range, signalled in the SPS VUI and in a `colr` box.

mod camera;
pub(crate) mod mp4;
mod raster;

use std::io::{Cursor, Seek, Write};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile, QpRange,
    RateControlMode, SpsPpsStrategy, UsageType, VuiConfig,
};
use openh264::formats::YUVSource;

/// A camera move over the still image.
///
/// Conventions (camera-centric, like a real camera operator): `pan_left`/`tilt_left` move the view
/// left, so the picture slides right on screen; `pan_up`/`tilt_up` move the view up, so the picture
/// slides down. `pan_*` is a flat shift; `tilt_*` is the same shift done by pivoting the camera, which
/// adds a slight perspective. `roll_clockwise` turns the picture clockwise on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Motion {
    Static,
    ZoomIn,
    ZoomOut,
    PanLeft,
    PanRight,
    PanUp,
    PanDown,
    TiltLeft,
    TiltRight,
    TiltUp,
    TiltDown,
    RollClockwise,
    RollAnticlockwise,
}

impl Motion {
    /// Every motion, in the order of the public list.
    pub const ALL: [Motion; 13] = [
        Motion::Static,
        Motion::ZoomIn,
        Motion::ZoomOut,
        Motion::PanLeft,
        Motion::PanRight,
        Motion::PanUp,
        Motion::PanDown,
        Motion::TiltLeft,
        Motion::TiltRight,
        Motion::TiltUp,
        Motion::TiltDown,
        Motion::RollClockwise,
        Motion::RollAnticlockwise,
    ];

    /// The wire name (`snake_case`), the same as the serde name.
    pub fn as_str(self) -> &'static str {
        match self {
            Motion::Static => "static",
            Motion::ZoomIn => "zoom_in",
            Motion::ZoomOut => "zoom_out",
            Motion::PanLeft => "pan_left",
            Motion::PanRight => "pan_right",
            Motion::PanUp => "pan_up",
            Motion::PanDown => "pan_down",
            Motion::TiltLeft => "tilt_left",
            Motion::TiltRight => "tilt_right",
            Motion::TiltUp => "tilt_up",
            Motion::TiltDown => "tilt_down",
            Motion::RollClockwise => "roll_clockwise",
            Motion::RollAnticlockwise => "roll_anticlockwise",
        }
    }
}

impl std::fmt::Display for Motion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Motion {
    type Err = RenderError;

    /// Accepts the wire names, case-insensitively, with `-` or spaces in place of `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .trim()
            .chars()
            .map(|c| match c {
                '-' | ' ' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        Motion::ALL
            .into_iter()
            .find(|m| m.as_str() == norm)
            .ok_or_else(|| RenderError::UnsupportedMotion(s.to_string()))
    }
}

fn valid_motion_names() -> String {
    Motion::ALL
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Finds a camera move described in plain words in a prompt ("slow zoom in", "the camera pans
/// left", "rotate counterclockwise", "static camera", "locked-off shot", or a wire name such as
/// `tilt_up`). Case-insensitive; the phrase that starts earliest in the prompt wins. `None` if the
/// prompt names no camera move.
pub fn motion_from_prompt(prompt: &str) -> Option<Motion> {
    let lowered = prompt.to_lowercase();
    let words: Vec<&str> = lowered
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    if words.len() == 1 && words[0] == "static" {
        return Some(Motion::Static);
    }
    (0..words.len()).find_map(|i| phrase_at(&words[i..]))
}

/// Words that may sit between a camera verb and its direction: "pan slowly to the left".
const FILLER: [&str; 12] = [
    "to", "the", "towards", "toward", "slowly", "slightly", "gently", "quickly", "a", "bit",
    "camera", "its",
];

/// The camera move named by the phrase that starts at `w[0]`, if any.
fn phrase_at(w: &[&str]) -> Option<Motion> {
    if names_static(w) {
        return Some(Motion::Static);
    }
    let verb = Verb::of(w.first()?)?;
    let rest: Vec<&str> = w
        .iter()
        .skip(1)
        .copied()
        .skip_while(|x| FILLER.contains(x))
        .take(2)
        .collect();
    let dir = *rest.first()?;
    let next = rest.get(1).copied().unwrap_or("");
    verb.toward(dir, next)
}

/// "static camera", "locked off", "fixed shot", "camera is static", "camera stays still"...
fn names_static(w: &[&str]) -> bool {
    let Some(&first) = w.first() else {
        return false;
    };
    let second = w.get(1).copied().unwrap_or("");
    match (first, second) {
        ("static", "camera" | "shot" | "view" | "frame") => return true,
        ("locked", "off" | "down") => return true,
        ("fixed" | "still" | "stationary", "camera" | "shot") => return true,
        _ => {}
    }
    if first != "camera" {
        return false;
    }
    // "camera static", "camera is static", "camera stays still".
    let rest: Vec<&str> = w
        .iter()
        .skip(1)
        .take(2)
        .copied()
        .filter(|x| !matches!(*x, "is" | "stays" | "remains" | "holds"))
        .collect();
    matches!(
        rest.first(),
        Some(&("static" | "still" | "stationary" | "fixed"))
    )
}

/// A camera verb, before its direction is known.
enum Verb {
    Zoom,
    Pan,
    Tilt,
    Roll,
}

impl Verb {
    fn of(word: &str) -> Option<Verb> {
        Some(match word {
            "zoom" | "zooms" | "zooming" | "zoomed" | "dolly" | "dollies" | "dollying" => {
                Verb::Zoom
            }
            "pan" | "pans" | "panning" | "panned" => Verb::Pan,
            "tilt" | "tilts" | "tilting" | "tilted" => Verb::Tilt,
            "roll" | "rolls" | "rolling" | "rotate" | "rotates" | "rotating" | "rotation"
            | "spin" | "spins" | "spinning" | "turn" | "turns" | "turning" => Verb::Roll,
            _ => return None,
        })
    }

    /// The move this verb makes toward `dir` (`next` completes "counter clockwise").
    fn toward(self, dir: &str, next: &str) -> Option<Motion> {
        match self {
            Verb::Zoom => match dir {
                "in" | "into" => Some(Motion::ZoomIn),
                "out" => Some(Motion::ZoomOut),
                _ => None,
            },
            Verb::Pan | Verb::Tilt => {
                let pan = matches!(self, Verb::Pan);
                match dir {
                    "left" | "leftward" | "leftwards" => Some(if pan {
                        Motion::PanLeft
                    } else {
                        Motion::TiltLeft
                    }),
                    "right" | "rightward" | "rightwards" => Some(if pan {
                        Motion::PanRight
                    } else {
                        Motion::TiltRight
                    }),
                    "up" | "upward" | "upwards" => {
                        Some(if pan { Motion::PanUp } else { Motion::TiltUp })
                    }
                    "down" | "downward" | "downwards" => Some(if pan {
                        Motion::PanDown
                    } else {
                        Motion::TiltDown
                    }),
                    _ => None,
                }
            }
            Verb::Roll => match (dir, next) {
                ("counterclockwise" | "anticlockwise" | "ccw", _) => {
                    Some(Motion::RollAnticlockwise)
                }
                ("counter" | "anti", "clockwise") => Some(Motion::RollAnticlockwise),
                ("clockwise" | "cw", _) => Some(Motion::RollClockwise),
                _ => None,
            },
        }
    }
}

/// Slowest accepted speed multiplier.
pub const SPEED_MIN: f32 = 0.05;
/// Fastest accepted speed multiplier.
pub const SPEED_MAX: f32 = 4.0;
/// Speed used when the caller gives none.
pub const SPEED_DEFAULT: f32 = 1.0;
/// Output frame rate.
pub const FPS: u32 = 16;
/// Accepted clip lengths in seconds.
pub const DURATIONS: [u32; 3] = [5, 10, 15];

/// Output resolution class, named after the short side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Short side 480 px (16:9 is 832x480).
    P480,
    /// Short side 720 px (16:9 is 1280x720).
    P720,
}

impl Resolution {
    /// Length of the short side in pixels.
    pub fn short_side(self) -> u32 {
        match self {
            Resolution::P480 => 480,
            Resolution::P720 => 720,
        }
    }

    /// "480p" or "720p".
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::P480 => "480p",
            Resolution::P720 => "720p",
        }
    }
}

/// Output aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aspect {
    /// Follow the image (long side at most 2x the short side; within 4% of 16:9, 9:16 or 1:1 it
    /// snaps to that preset).
    Auto,
    Landscape16x9,
    Portrait9x16,
    Square,
}

/// What to render.
#[derive(Debug, Clone)]
pub struct RenderSpec {
    pub motion: Motion,
    /// Amplitude multiplier, [`SPEED_MIN`]..=[`SPEED_MAX`]; at 1.0 a zoom ends at 1.35x, a pan or
    /// tilt travels 20% of the frame, a roll turns 8 degrees. Longer clips move the same amount, slower.
    pub speed: f32,
    /// 5, 10 or 15.
    pub duration_seconds: u32,
    pub resolution: Resolution,
    pub aspect: Aspect,
}

/// The output geometry decided by [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderPlan {
    pub width: u32,
    pub height: u32,
    pub frames: u32,
}

/// Everything that can go wrong; every message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("unsupported camera motion {0:?}: use one of {names}", names = valid_motion_names())]
    UnsupportedMotion(String),
    #[error(
        "speed {0} is out of range: use {SPEED_MIN} to {SPEED_MAX:.1} (default {SPEED_DEFAULT:.1})"
    )]
    SpeedOutOfRange(f32),
    #[error("duration {0} s is not supported: use 5, 10 or 15 seconds")]
    UnsupportedDuration(u32),
    #[error("invalid image: {0}: send a JPEG, PNG, WebP or BMP image")]
    InvalidImage(String),
    #[error(
        "image is {width}x{height} but the requested output needs at least {need_width}x{need_height} \
         (after cropping to the output aspect the picture may be enlarged at most 2x): \
         use resolution 480p (if you asked for 720p), aspect auto, or a larger image"
    )]
    ImageTooSmall {
        width: u32,
        height: u32,
        need_width: u32,
        need_height: u32,
    },
    #[error("H.264 encoding failed: {0}; retry, or use resolution 480p if memory is short")]
    Encode(String),
    #[error("could not write the video: {0}; check the output location has space and is writable")]
    Io(#[from] std::io::Error),
    #[error("render cancelled")]
    Cancelled,
}

/// Largest accepted image side; bigger files are refused before decoding.
const MAX_IMAGE_SIDE: u32 = 16_384;
/// Most a cover-fit crop may be enlarged.
const MAX_UPSCALE: f64 = 2.0;

/// Cheap checks before any work: speed in range, duration in {5,10,15}, image decodable
/// header-wise, image big enough. Returns output dims and frame count.
///
/// # Errors
///
/// [`RenderError::SpeedOutOfRange`], [`RenderError::UnsupportedDuration`],
/// [`RenderError::InvalidImage`] or [`RenderError::ImageTooSmall`].
pub fn plan(image_bytes: &[u8], spec: &RenderSpec) -> Result<RenderPlan, RenderError> {
    if !(SPEED_MIN..=SPEED_MAX).contains(&spec.speed) {
        return Err(RenderError::SpeedOutOfRange(spec.speed));
    }
    if !DURATIONS.contains(&spec.duration_seconds) {
        return Err(RenderError::UnsupportedDuration(spec.duration_seconds));
    }
    let (iw, ih) = raster::probe_dimensions(image_bytes)?;
    let (width, height) = output_dims(iw, ih, spec.resolution, spec.aspect);
    let (cw, _) = cover_crop(iw, ih, width, height);
    let need = f64::from(width) / MAX_UPSCALE;
    if cw + 1e-9 < need {
        // Smallest image of this shape whose crop is big enough.
        let k = need / cw;
        return Err(RenderError::ImageTooSmall {
            width: iw,
            height: ih,
            need_width: (f64::from(iw) * k - 1e-6).ceil() as u32,
            need_height: (f64::from(ih) * k - 1e-6).ceil() as u32,
        });
    }
    Ok(RenderPlan {
        width,
        height,
        frames: FPS * spec.duration_seconds,
    })
}

/// Output size for an image of `iw`x`ih`.
fn output_dims(iw: u32, ih: u32, res: Resolution, aspect: Aspect) -> (u32, u32) {
    let s = res.short_side();
    let long_16x9 = match res {
        Resolution::P480 => 832,
        Resolution::P720 => 1280,
    };
    match aspect {
        Aspect::Landscape16x9 => (long_16x9, s),
        Aspect::Portrait9x16 => (s, long_16x9),
        Aspect::Square => (s, s),
        Aspect::Auto => {
            let a = f64::from(iw) / f64::from(ih);
            let near = |target: f64| (a / target).ln().abs() < 0.04;
            if near(16.0 / 9.0) {
                return (long_16x9, s);
            }
            if near(9.0 / 16.0) {
                return (s, long_16x9);
            }
            if near(1.0) {
                return (s, s);
            }
            let ratio = if a >= 1.0 { a } else { 1.0 / a }.min(2.0);
            let long = ((f64::from(s) * ratio / 16.0).round() as u32 * 16).clamp(s, 2 * s);
            if a >= 1.0 { (long, s) } else { (s, long) }
        }
    }
}

/// Largest centred rectangle of the output's aspect inside the image, in image pixels.
fn cover_crop(iw: u32, ih: u32, ow: u32, oh: u32) -> (f64, f64) {
    let (iw, ih, ow, oh) = (f64::from(iw), f64::from(ih), f64::from(ow), f64::from(oh));
    if iw * oh > ih * ow {
        (ih * ow / oh, ih)
    } else {
        (iw, iw * oh / ow)
    }
}

/// Target bitrate: about 0.17 bits per pixel, i.e. 1.1 Mbit/s at 832x480 and 2.5 Mbit/s at 1280x720.
fn bitrate_for(width: u32, height: u32) -> u32 {
    (f64::from(width) * f64::from(height) * f64::from(FPS) * 0.17) as u32
}

/// Seconds between IDR frames (seek points).
const IDR_INTERVAL_FRAMES: u32 = 2 * FPS;

/// Decode, render every frame, encode H.264, mux MP4 into `out`. Calls `progress(done_frames,
/// total_frames)` after each encoded frame. Checks `cancel` between frames and returns
/// [`RenderError::Cancelled`] if set. Nothing is written to `out` unless the whole video succeeded.
///
/// # Errors
///
/// Everything [`plan`] returns, plus [`RenderError::InvalidImage`] if the full decode fails,
/// [`RenderError::Encode`], [`RenderError::Io`] from `out`, and [`RenderError::Cancelled`].
pub fn render_mp4<W: Write + Seek>(
    image_bytes: &[u8],
    spec: &RenderSpec,
    out: &mut W,
    progress: &mut dyn FnMut(u32, u32),
    cancel: &AtomicBool,
) -> Result<RenderPlan, RenderError> {
    render_frames(image_bytes, spec, out, progress, cancel, None)
}

/// [`render_mp4`] with an optional cap on the number of frames (tests use it to stay fast in debug
/// builds; the container duration follows the frames actually written).
fn render_frames<W: Write + Seek>(
    image_bytes: &[u8],
    spec: &RenderSpec,
    out: &mut W,
    progress: &mut dyn FnMut(u32, u32),
    cancel: &AtomicBool,
    max_frames: Option<u32>,
) -> Result<RenderPlan, RenderError> {
    let mut plan = plan(image_bytes, spec)?;
    if let Some(cap) = max_frames {
        plan.frames = plan.frames.min(cap.max(2));
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(RenderError::Cancelled);
    }
    let (w, h) = (plan.width as usize, plan.height as usize);
    let path = camera::CameraPath::new(spec.motion, f64::from(spec.speed), w as f64, h as f64);
    let source = raster::prepare_source(image_bytes, w, h, path.oversample_scale())?;
    let frames = plan.frames;
    let mut encoder = encoder_for(&plan)?;
    let mut muxer = mp4::AvcTrack::new(plan.width, plan.height, FPS);

    // One worker renders frames ahead while this thread encodes; the bounded channel keeps at most
    // a few frames in memory. Dropping the receiver (error or cancel) stops the worker.
    std::thread::scope(|scope| -> Result<(), RenderError> {
        let (tx, rx) = mpsc::sync_channel::<Frame>(3);
        let shot = Shot {
            source: &source,
            path: &path,
            w,
            h,
            frames,
        };
        scope.spawn(move || shot.render_into(&tx, cancel));
        for i in 0..frames {
            if cancel.load(Ordering::Relaxed) {
                return Err(RenderError::Cancelled);
            }
            let frame = rx.recv().map_err(|_| {
                if cancel.load(Ordering::Relaxed) {
                    RenderError::Cancelled
                } else {
                    RenderError::Encode("the frame renderer stopped early".to_string())
                }
            })?;
            let ts = openh264::Timestamp::from_millis(u64::from(i) * 1000 / u64::from(FPS));
            let bits = encoder
                .encode_at(&frame, ts)
                .map_err(|e| RenderError::Encode(format!("frame {i}: {e}")))?;
            mux_frame(&bits, &mut muxer);
            progress(i + 1, frames);
        }
        Ok(())
    })?;

    let file = muxer.finish()?;
    out.write_all(&file)?;
    out.flush()?;
    Ok(plan)
}

/// The H.264 encoder for a plan: constant bitrate, baseline profile, an IDR every
/// [`IDR_INTERVAL_FRAMES`].
fn encoder_for(plan: &RenderPlan) -> Result<Encoder, RenderError> {
    let config = EncoderConfig::new()
        .usage_type(UsageType::CameraVideoRealTime)
        .rate_control_mode(RateControlMode::Bitrate)
        .bitrate(BitRate::from_bps(bitrate_for(plan.width, plan.height)))
        .max_frame_rate(FrameRate::from_hz(FPS as f32))
        .skip_frames(false)
        .profile(Profile::Baseline)
        // Measured on a photo at 480p: Low complexity and no scene-change/background detection
        // (useless for a single synthetic shot) encode ~25% faster at the same SSIM/PSNR.
        .complexity(Complexity::Low)
        .scene_change_detect(false)
        .background_detection(false)
        .qp(QpRange::new(12, 42))
        .intra_frame_period(IntraFramePeriod::from_num_frames(IDR_INTERVAL_FRAMES))
        .sps_pps_strategy(SpsPpsStrategy::ConstantId)
        .num_threads(1)
        .vui(VuiConfig::bt709());
    Encoder::with_api_config(OpenH264API::from_source(), config)
        .map_err(|e| RenderError::Encode(format!("could not start the encoder: {e}")))
}

/// Every NAL unit of one encoded frame, as one MP4 sample.
fn mux_frame(bits: &openh264::encoder::EncodedBitStream<'_>, muxer: &mut mp4::AvcTrack) {
    muxer.begin_frame();
    for l in 0..bits.num_layers() {
        if let Some(layer) = bits.layer(l) {
            for n in 0..layer.nal_count() {
                if let Some(nal) = layer.nal_unit(n) {
                    muxer.add_nal(nal);
                }
            }
        }
    }
    muxer.end_frame();
}

/// The frames of one clip: a source image moved along a camera path.
struct Shot<'a> {
    source: &'a raster::Source,
    path: &'a camera::CameraPath,
    w: usize,
    h: usize,
    frames: u32,
}

impl Shot<'_> {
    /// Render every frame in order into `tx`; stops on cancel or when the receiver is gone.
    fn render_into(&self, tx: &mpsc::SyncSender<Frame>, cancel: &AtomicBool) {
        let frames = self.frames;
        for i in 0..frames {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            let t = if frames > 1 {
                f64::from(i) / f64::from(frames - 1)
            } else {
                0.0
            };
            let mut frame = Frame::new(self.w, self.h);
            self.source
                .render(&self.path.homography(t), &mut frame.data, self.w, self.h);
            if tx.send(frame).is_err() {
                break;
            }
        }
    }
}

/// One I420 frame with tightly packed planes (Y, then U, then V).
struct Frame {
    data: Vec<u8>,
    width: usize,
    height: usize,
}

impl Frame {
    fn new(width: usize, height: usize) -> Self {
        Frame {
            data: vec![0; width * height + 2 * (width / 2) * (height / 2)],
            width,
            height,
        }
    }
}

impl YUVSource for Frame {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        &self.data[..self.width * self.height]
    }

    fn u(&self) -> &[u8] {
        let y = self.width * self.height;
        let c = (self.width / 2) * (self.height / 2);
        &self.data[y..y + c]
    }

    fn v(&self) -> &[u8] {
        let y = self.width * self.height;
        let c = (self.width / 2) * (self.height / 2);
        &self.data[y + c..y + 2 * c]
    }
}

/// Renders into a memory buffer; convenience for callers that want the bytes.
///
/// # Errors
///
/// As [`render_mp4`].
pub fn render_mp4_to_vec(
    image_bytes: &[u8],
    spec: &RenderSpec,
    progress: &mut dyn FnMut(u32, u32),
    cancel: &AtomicBool,
) -> Result<(RenderPlan, Vec<u8>), RenderError> {
    let mut cur = Cursor::new(Vec::new());
    let plan = render_mp4(image_bytes, spec, &mut cur, progress, cancel)?;
    Ok((plan, cur.into_inner()))
}

#[cfg(test)]
mod tests;
