//! Placeholder until the renderer lands (being written in parallel); same public names.
#![allow(dead_code)]
use std::str::FromStr;
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
impl FromStr for Motion {
    type Err = RenderError;
    fn from_str(s: &str) -> Result<Self, RenderError> {
        Motion::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| RenderError::UnsupportedMotion(s.to_string()))
    }
}
pub fn motion_from_prompt(_prompt: &str) -> Option<Motion> {
    None
}
pub const SPEED_MIN: f32 = 0.05;
pub const SPEED_MAX: f32 = 4.0;
pub const SPEED_DEFAULT: f32 = 1.0;
pub const FPS: u32 = 16;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    P480,
    P720,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aspect {
    Auto,
    Landscape16x9,
    Portrait9x16,
    Square,
}
#[derive(Debug, Clone)]
pub struct RenderSpec {
    pub motion: Motion,
    pub speed: f32,
    pub duration_seconds: u32,
    pub resolution: Resolution,
    pub aspect: Aspect,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderPlan {
    pub width: u32,
    pub height: u32,
    pub frames: u32,
}
pub fn plan(_image_bytes: &[u8], _spec: &RenderSpec) -> Result<RenderPlan, RenderError> {
    Err(RenderError::Encode("renderer not built yet".into()))
}
pub fn render_mp4<W: std::io::Write + std::io::Seek>(
    _image_bytes: &[u8],
    _spec: &RenderSpec,
    _out: &mut W,
    _progress: &mut dyn FnMut(u32, u32),
    _cancel: &std::sync::atomic::AtomicBool,
) -> Result<RenderPlan, RenderError> {
    Err(RenderError::Encode("renderer not built yet".into()))
}
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("unsupported motion {0}")]
    UnsupportedMotion(String),
    #[error("speed {0}")]
    SpeedOutOfRange(f32),
    #[error("duration {0}")]
    UnsupportedDuration(u32),
    #[error("invalid image {0}")]
    InvalidImage(String),
    #[error("too small")]
    ImageTooSmall {
        width: u32,
        height: u32,
        need_width: u32,
        need_height: u32,
    },
    #[error("encode {0}")]
    Encode(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("cancelled")]
    Cancelled,
}
