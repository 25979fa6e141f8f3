//! The built-in `local` provider, model `camera-preview`: renders the requested camera motion over
//! the still image with `crate::render` and writes an H.264 MP4 straight into the output dir. No AI
//! model, no key, no network, cost 0. It runs through the same lifecycle as the remote providers:
//! submit starts a render job, polls read its progress, the result arrives as a local file.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::RateLimits;
use super::{
    Auth, Build, CancelOutcome, Declaration, LocalFile, Provider, ProviderError, Snapshot,
    Submission,
};
use crate::catalog::spec::{ImageDelivery, ModelSpec, Price, range, strings};
use crate::error::{Category, Error};
use crate::journal::TaskRow;
use crate::media::{self, ImageInput};
use crate::model::{AspectRatio, CreateRequest, ProviderId, Resolution, Status};
use crate::render::{self, Aspect, Motion, RenderError, RenderSpec};

pub static DECL: Declaration = Declaration {
    id: ProviderId::Local,
    name: "local",
    key_env: None,
    default_base_url: None,
    auth: Auth::None,
    rate_limits: RateLimits::UNLIMITED,
    models: || vec![spec()],
    loras: Vec::new,
    lora_note: None,
    check: super::no_check,
    preflight: |req, image| match image {
        Some(image) => Client::plan(req, image).map(|_| ()),
        None => Err(Error::invalid_input(
            "image is missing: local/camera-preview moves a camera over an image",
        )),
    },
    cancels: true,
    webhook: None,
    same_upstream: &[ProviderId::Local],
    // Renders are polled in memory (no network): often, so per-frame progress shows at once.
    poll_interval: Some(std::time::Duration::from_millis(100)),
    keyless_offer: Some("a free offline camera-motion preview"),
    build,
};

fn build(b: &Build<'_>) -> Arc<dyn Provider> {
    Arc::new(Client::new(
        b.output_dir.to_path_buf(),
        // A restarted render may read an inline image the journal kept by digest.
        b.allowed_dirs
            .iter()
            .cloned()
            .chain([crate::journal::inputs_dir(b.data_dir)])
            .collect(),
        b.models,
    ))
}

impl Provider for Client {
    fn submit<'a>(&'a self, s: &'a Submission<'a>) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(Client::submit(self, s))
    }
    fn poll<'a>(&'a self, row: &'a TaskRow) -> BoxFuture<'a, Result<Snapshot, ProviderError>> {
        Box::pin(Client::poll(self, row))
    }
    fn cancel<'a>(
        &'a self,
        row: &'a TaskRow,
    ) -> BoxFuture<'a, Result<CancelOutcome, ProviderError>> {
        let outcome = Client::cancel(self, &row.id);
        Box::pin(async move { Ok(outcome) })
    }
}

fn spec() -> ModelSpec {
    ModelSpec {
        description: "Built in, free, offline: renders the camera motion over the still image as H.264 MP4 (16 fps). No AI model.".into(),
        ai: false,
        image_delivery: ImageDelivery::Local,
        image_formats: strings(&["jpeg", "png", "webp", "bmp"]),
        image_max_bytes: 50 * 1024 * 1024,
        resolutions: vec![Resolution::P480, Resolution::P720],
        aspect_ratios: vec![
            AspectRatio::Auto,
            AspectRatio::Landscape,
            AspectRatio::Portrait,
            AspectRatio::Square,
        ],
        durations: vec![5, 10, 15],
        prompt_max: Some(2000),
        // Without a prompt the motion defaults to a gentle zoom in.
        prompt_optional: true,
        camera_speed: range(render::SPEED_MIN as f64, render::SPEED_MAX as f64),
        camera_motion: true,
        cancel: true,
        price: Price {
            usd_per_video: Some(0.0),
            usd_per_second: None,
            by_resolution: Vec::new(),
            source: "free: rendered locally".into(),
        },
        note: Some("Without camera_motion, a motion named in the prompt (\"slow zoom in\") is used, else a gentle zoom in.".into()),
        ..ModelSpec::base(ProviderId::Local, "camera-preview")
    }
}

struct Job {
    done: AtomicU32,
    total: AtomicU32,
    cancel: AtomicBool,
    started: Instant,
    result: Mutex<Option<Result<LocalFile, Error>>>,
}

pub struct Client {
    output_dir: PathBuf,
    /// Where a restarted render may re-read its image from.
    allowed: Vec<PathBuf>,
    /// The catalog, for the image checks of a restarted render.
    models: &'static [ModelSpec],
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

/// The render settings a request asks for (pure). Motion: `camera_motion`, else one named in the
/// prompt, else a gentle zoom in.
pub fn render_spec(req: &CreateRequest) -> Result<RenderSpec, Error> {
    let (motion, speed) = match &req.camera_motion {
        Some(cm) => (
            cm.kind
                .parse::<Motion>()
                .map_err(|e| Error::invalid_input(e.to_string()))?,
            cm.speed.map(|s| s as f32).unwrap_or(render::SPEED_DEFAULT),
        ),
        None => match render::motion_from_prompt(&req.prompt) {
            Some(m) => (m, render::SPEED_DEFAULT),
            None => (Motion::ZoomIn, 0.5),
        },
    };
    let resolution = match req.resolution.unwrap_or(Resolution::P480) {
        Resolution::P480 => render::Resolution::P480,
        Resolution::P720 => render::Resolution::P720,
        other => {
            return Err(Error::unsupported(format!(
                "resolution {} is not available on local/camera-preview: use 480p or 720p",
                other.as_str()
            )));
        }
    };
    let aspect = match req.aspect_ratio.unwrap_or(AspectRatio::Auto) {
        AspectRatio::Auto => Aspect::Auto,
        AspectRatio::Landscape => Aspect::Landscape16x9,
        AspectRatio::Portrait => Aspect::Portrait9x16,
        AspectRatio::Square => Aspect::Square,
    };
    Ok(RenderSpec {
        motion,
        speed,
        duration_seconds: req.duration_seconds.unwrap_or(5),
        resolution,
        aspect,
    })
}

fn render_error(e: RenderError) -> Error {
    match e {
        RenderError::Io(io) => Error::internal(format!("cannot write the video: {io}")),
        RenderError::Encode(m) => Error::internal(format!("encoding failed: {m}")),
        RenderError::Cancelled => Error::new(Category::InvalidInput, "render cancelled"),
        other => Error::invalid_input(other.to_string()),
    }
}

impl Client {
    pub fn new(output_dir: PathBuf, allowed: Vec<PathBuf>, models: &'static [ModelSpec]) -> Self {
        Client {
            output_dir,
            allowed,
            models,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Check the request against the image (cheap: header only) without rendering.
    pub fn plan(req: &CreateRequest, image: &ImageInput) -> Result<render::RenderPlan, Error> {
        let img = image.as_local().ok_or_else(|| {
            Error::unsupported("local/camera-preview reads local files and data URIs only")
        })?;
        // `media` has already decoded the image in full, off the async workers, so a corrupt or
        // truncated one never gets here; this reads the header only.
        render::plan(&img.bytes, &render_spec(req)?).map_err(render_error)
    }

    pub async fn submit(&self, s: &Submission<'_>) -> Result<String, ProviderError> {
        let image = s.image_required().map_err(ProviderError::rejected)?;
        Self::plan(s.req, image).map_err(ProviderError::rejected)?;
        let spec = render_spec(s.req).map_err(ProviderError::rejected)?;
        let ImageInput::Local(img) = image.clone() else {
            return Err(ProviderError::rejected(Error::unsupported(
                "local/camera-preview needs a local image",
            )));
        };
        self.start(s.task_id, img.bytes.clone(), spec);
        Ok(s.task_id.to_string())
    }

    fn start(&self, task_id: &str, bytes: Vec<u8>, spec: RenderSpec) -> Arc<Job> {
        let job = Arc::new(Job {
            done: AtomicU32::new(0),
            total: AtomicU32::new(spec.duration_seconds * render::FPS),
            cancel: AtomicBool::new(false),
            started: Instant::now(),
            result: Mutex::new(None),
        });
        self.jobs().insert(task_id.to_string(), job.clone());
        let out_dir = self.output_dir.clone();
        let id = task_id.to_string();
        let j = job.clone();
        tokio::task::spawn_blocking(move || {
            let result = render_to_file(&bytes, &spec, &out_dir, &id, &j);
            *j.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        });
        job
    }

    pub async fn poll(&self, row: &TaskRow) -> Result<Snapshot, ProviderError> {
        let existing = self.jobs().get(&row.id).cloned();
        let job = match existing {
            Some(j) => j,
            // The server restarted mid-render: rendering is free and deterministic, so start over.
            None => self.restart(row).await.map_err(ProviderError::rejected)?,
        };
        let result = job.result.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(match result {
            Some(Ok(file)) => {
                self.jobs().remove(&row.id);
                let mut s = Snapshot::new(Status::Succeeded, "rendered");
                s.progress = Some(100);
                s.local_file = Some(file);
                s
            }
            Some(Err(e)) => {
                self.jobs().remove(&row.id);
                let mut s = Snapshot::new(Status::Failed, "render failed");
                s.error = Some(e);
                s
            }
            None => {
                let done = job.done.load(Ordering::Relaxed);
                let total = job.total.load(Ordering::Relaxed).max(1);
                let mut s = Snapshot::new(
                    if done == 0 {
                        Status::Queued
                    } else {
                        Status::Running
                    },
                    "rendering",
                );
                s.progress = Some(((done as u64 * 99) / total as u64) as u8);
                if done > 0 {
                    let per_frame = job.started.elapsed().as_secs_f64() / done as f64;
                    s.eta = Some((per_frame * (total - done.min(total)) as f64).ceil() as u32);
                }
                s
            }
        })
    }

    async fn restart(&self, row: &TaskRow) -> Result<Arc<Job>, Error> {
        let req: CreateRequest =
            serde_json::from_str(row.request.as_deref().unwrap_or_default())
                .map_err(|e| Error::internal(format!("journal request unreadable: {e}")))?;
        // Its first model is its default (`DECL.models`).
        let spec = self
            .models
            .iter()
            .find(|m| m.provider == ProviderId::Local)
            .ok_or_else(|| Error::internal("the catalog has no local model"))?;
        let mut allowed = self.allowed.clone();
        allowed.push(self.output_dir.clone());
        let given = req.image.as_deref().unwrap_or_default();
        let image = media::resolve_async(given, "image", spec, allowed, self.models).await?;
        let ImageInput::Local(img) = image else {
            return Err(Error::unsupported(
                "local/camera-preview needs a local image",
            ));
        };
        // Another poll may have restarted it while the image was read.
        if let Some(job) = self.jobs().get(&row.id).cloned() {
            return Ok(job);
        }
        Ok(self.start(&row.id, img.bytes.clone(), render_spec(&req)?))
    }

    pub fn cancel(&self, task_id: &str) -> CancelOutcome {
        if let Some(job) = self.jobs().remove(task_id) {
            job.cancel.store(true, Ordering::Relaxed);
        }
        CancelOutcome::Cancelled
    }
}

/// Render into memory, then write `<id>.mp4` through a temp file and a rename, so the output dir
/// never holds a half-written video.
fn render_to_file(
    bytes: &[u8],
    spec: &RenderSpec,
    out_dir: &std::path::Path,
    id: &str,
    job: &Job,
) -> Result<LocalFile, Error> {
    let mut buf = Cursor::new(Vec::new());
    let mut progress = |done: u32, total: u32| {
        job.done.store(done, Ordering::Relaxed);
        job.total.store(total, Ordering::Relaxed);
    };
    render::render_mp4(bytes, spec, &mut buf, &mut progress, &job.cancel).map_err(render_error)?;
    let data = buf.into_inner();
    std::fs::create_dir_all(out_dir)?;
    let final_path = out_dir.join(format!("{id}.mp4"));
    crate::files::write_atomic(&final_path, &data)?;
    Ok(LocalFile {
        path: final_path.display().to_string(),
        bytes: data.len() as u64,
        sha256: hex::encode(Sha256::digest(&data)),
    })
}
