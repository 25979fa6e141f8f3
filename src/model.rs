//! Neutral types shared by both faces (MCP and CLI) and every provider: the create request, the
//! task as agents see it, and the small enums between them. Doc comments become schema descriptions,
//! so they are short: every token here is paid by every agent on every `tools/list`.

use std::fmt;
use std::str::FromStr;

use rmcp::schemars::{self, JsonSchema};
use serde::{Deserialize, Serialize};

use crate::error::Error;

pub use crate::providers::id::ProviderId;

/// The longest wait of one call: under the TypeScript SDK's 60 s default request timeout (see
/// `mcp::tools::MAX_WAIT_SECONDS`). Raise it only for hosts that reset their timeout on progress.
pub const DEFAULT_MAX_WAIT_SECONDS: u32 = 50;

/// Task state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Status::ALL
            .into_iter()
            .find(|v| v.as_str() == s.trim())
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "unknown status '{s}': use one of queued, running, succeeded, failed, cancelled"
                ))
            })
    }
}

/// Output resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Resolution {
    #[serde(rename = "480p")]
    P480,
    #[serde(rename = "580p")]
    P580,
    #[serde(rename = "720p")]
    P720,
    #[serde(rename = "1080p")]
    P1080,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::P480 => "480p",
            Resolution::P580 => "580p",
            Resolution::P720 => "720p",
            Resolution::P1080 => "1080p",
        }
    }
}

impl FromStr for Resolution {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "480p" => Ok(Resolution::P480),
            "580p" => Ok(Resolution::P580),
            "720p" => Ok(Resolution::P720),
            "1080p" => Ok(Resolution::P1080),
            _ => Err(Error::invalid_input(format!(
                "unknown resolution '{s}': use 480p, 580p, 720p or 1080p"
            ))),
        }
    }
}

/// Output aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AspectRatio {
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "16:9")]
    Landscape,
    #[serde(rename = "9:16")]
    Portrait,
    #[serde(rename = "1:1")]
    Square,
}

impl AspectRatio {
    /// Every value, `auto` first.
    pub const ALL: [AspectRatio; 4] = [
        AspectRatio::Auto,
        AspectRatio::Landscape,
        AspectRatio::Portrait,
        AspectRatio::Square,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AspectRatio::Auto => "auto",
            AspectRatio::Landscape => "16:9",
            AspectRatio::Portrait => "9:16",
            AspectRatio::Square => "1:1",
        }
    }
}

impl FromStr for AspectRatio {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim() {
            "auto" => Ok(AspectRatio::Auto),
            "16:9" => Ok(AspectRatio::Landscape),
            "9:16" => Ok(AspectRatio::Portrait),
            "1:1" => Ok(AspectRatio::Square),
            _ => Err(Error::invalid_input(format!(
                "unknown aspect ratio '{s}': use auto, 16:9, 9:16 or 1:1"
            ))),
        }
    }
}

/// A LoRA to apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraRef {
    /// Name or path (see list_loras).
    pub name: String,
    /// Strength; model default if omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
}

/// A camera move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CameraMotion {
    /// static, zoom_in|out, pan_left|right|up|down, tilt_left|right|up|down, roll_clockwise|anticlockwise.
    #[serde(rename = "type")]
    pub kind: String,
    /// Speed; range in list_models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
}

/// Everything a create can ask for. The same shape reaches every provider; a field the chosen model
/// cannot honour is an `unsupported` error, never silently dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// https URL, data: URI or local path (in allowed dirs); omit for text-to-video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// What should happen in the video.
    pub prompt: String,
    /// What to avoid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Provider; default from config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderId>,
    /// From list_models; the provider's default if omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<AspectRatio>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// LoRAs (see list_loras).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<LoraRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_motion: Option<CameraMotion>,
    /// Last frame (keyframe models); same forms as image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_image: Option<String>,
    /// Reference image/video/audio URLs or paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// Generate audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<bool>,
    /// Soundtrack URL (wav/mp3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_url: Option<String>,
    /// Let the provider rewrite the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_extend: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_shift: Option<f64>,
    /// single or multi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shot_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<bool>,
    /// none or regular.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceleration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_checker: Option<bool>,
    /// Same key, same task: never pays twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Refuse before paying if the estimate is higher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// Seconds to wait for the result (0 = return at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = DEFAULT_MAX_WAIT_SECONDS))]
    pub wait_seconds: Option<u32>,
}

impl CreateRequest {
    /// The parts of the request that decide what is generated (and paid): used to tell a retry of
    /// the same create from a different create that reuses an idempotency key.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut canonical = self.clone();
        canonical.idempotency_key = None;
        canonical.wait_seconds = None;
        canonical.max_cost_usd = None;
        let json = serde_json::to_vec(&canonical).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }
}

/// The downloaded result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Video {
    /// Provider URL (expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_expires_at: Option<String>,
    /// Downloaded file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Hex sha256 of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A video generation task. Times are RFC 3339.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Task {
    /// Our id; use with get_task.
    pub task_id: String,
    pub provider: ProviderId,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_task_id: Option<String>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u32>,
    /// Null when the price is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_cost_usd: Option<f64>,
    /// Seconds the provider billed, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billed_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<Video>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
    /// What is happening now, or what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// True if an earlier task with the same idempotency_key was returned.
    #[serde(default)]
    pub deduplicated: bool,
    /// Succeeded upstream, video not yet on disk (internal: waits go on until it is).
    #[serde(skip)]
    pub download_pending: bool,
}

impl Task {
    /// Terminal and nothing left to do (the download, if any, finished or gave up).
    pub fn is_settled(&self) -> bool {
        self.status.is_terminal() && !self.download_pending
    }

    /// One line for humans and for the text block beside structured content.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "task {} ({} {}) {}",
            self.task_id, self.provider, self.model, self.status
        );
        if let Some(p) = self.progress_percent
            && !self.status.is_terminal()
        {
            line.push_str(&format!(" {p}%"));
        }
        if let Some(eta) = self.eta_seconds
            && !self.status.is_terminal()
        {
            line.push_str(&format!(" (eta {eta} s)"));
        }
        if let Some(video) = &self.video {
            if let Some(path) = &video.local_path {
                line.push_str(&format!(": video at {path}"));
                if let Some(sha) = &video.sha256 {
                    line.push_str(&format!(" sha256 {sha}"));
                }
            } else if let Some(url) = &video.url {
                line.push_str(&format!(": video at {url}"));
            }
        }
        if let Some(err) = &self.error {
            line.push_str(&format!(": {}: {}", err.category.as_str(), err.message));
        }
        if let Some(note) = &self.note {
            line.push_str(&format!(" ({note})"));
        }
        if self.deduplicated {
            line.push_str(" [deduplicated: existing task returned]");
        }
        line
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 (UTC, seconds) for a unix-ms timestamp.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
