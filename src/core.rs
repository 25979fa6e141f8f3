//! The application: create, get, list, cancel, estimate, models and LoRAs. Both faces (MCP and
//! CLI) call these and only map arguments and render results.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::schemars::{self, JsonSchema};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::catalog::{self, Lora, ModelSpec};
use crate::config::{Config, RateLimits};
use crate::error::{Category, Error, Result};
use crate::journal::{Download, Inserted, Journal, ListFilter, NewTask, TaskRow, Update};
use crate::media;
use crate::model::{
    AspectRatio, CameraMotion, CreateRequest, LoraRef, ProviderId, Resolution, Status, Task, now_ms,
};
use crate::providers::{self, Acceptance, Providers, Submission};
use crate::validate;
use crate::watcher::Watcher;

/// Create attempts when the provider surely refused for a passing reason (429, refused connection).
const CREATE_ATTEMPTS: u32 = 3;
/// How long a `get_task` without `wait_seconds` waits for its refresh poll.
const REFRESH_WAIT: Duration = Duration::from_secs(10);
/// Temp files untouched this long (at least) are left from a crash and removed at start.
const STALE_TEMP_FILES: Duration = Duration::from_secs(10 * 60);
/// Longest silence between progress notifications while a call waits.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// One progress report for a waiting caller: `progress` strictly increases, out of 100.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub progress: f64,
    pub message: String,
}

/// Per-call context from a face: where progress goes (only if the client asked for it), the
/// call's cancellation, and extra directories the caller may read images from (MCP roots; the
/// CLI's own arguments).
#[derive(Clone, Default)]
pub struct CallCtx {
    pub progress: Option<UnboundedSender<Progress>>,
    pub cancel: CancellationToken,
    pub roots: Vec<PathBuf>,
}

/// Turns task states into strictly increasing progress values with useful messages.
struct Reporter {
    tx: Option<UnboundedSender<Progress>>,
    last: f64,
    last_sent: Instant,
    last_message: String,
}

impl Reporter {
    fn new(tx: Option<UnboundedSender<Progress>>) -> Self {
        Reporter {
            tx,
            last: 0.0,
            last_sent: Instant::now(),
            last_message: String::new(),
        }
    }

    fn stage(task: &Task) -> (f64, String) {
        match task.status {
            Status::Queued => (2.0, "queued".to_string()),
            Status::Running => {
                let p = task.progress_percent.unwrap_or(0) as f64;
                let mut msg = match task.progress_percent {
                    Some(p) => format!("running {p}%"),
                    None => "running".to_string(),
                };
                if let Some(eta) = task.eta_seconds {
                    msg.push_str(&format!(" (eta {eta} s)"));
                }
                (5.0 + p * 0.85, msg)
            }
            Status::Succeeded if task.download_pending => (92.0, "downloading".to_string()),
            s => (100.0, s.as_str().to_string()),
        }
    }

    /// Report if something changed, or if `force` (a heartbeat).
    fn report(&mut self, task: &Task, force: bool) {
        let Some(tx) = &self.tx else { return };
        let (base, message) = Reporter::stage(task);
        let settled = task.is_settled();
        if !force && !settled && message == self.last_message && base <= self.last {
            return;
        }
        if settled && self.last >= 100.0 {
            return;
        }
        // Strictly increasing: never repeat or go back; below 100 until the task settles.
        let mut value = base.max(self.last + 0.01);
        if !settled {
            value = value.min(99.9_f64.max(self.last + 0.001));
        } else {
            value = 100.0_f64.max(self.last + 0.01);
        }
        self.last = value;
        self.last_sent = Instant::now();
        self.last_message = message.clone();
        let _ = tx.send(Progress {
            progress: (value * 1000.0).round() / 1000.0,
            message,
        });
    }
}

/// Client-side create limits of one provider: exact sliding windows ("at most 10 in any 60 s"),
/// as providers state them. (A token bucket with burst n lets up to 2n-1 through in one window,
/// which would meet the provider's own limit with a 429.)
struct Limiter {
    windows: Mutex<Vec<Window>>,
}

struct Window {
    max: usize,
    period: Duration,
    name: &'static str,
    /// When the creates still inside the window were admitted, oldest first.
    log: std::collections::VecDeque<Instant>,
}

impl Limiter {
    fn new(l: &RateLimits) -> Limiter {
        let windows = [
            (l.per_10_seconds, 10, "10 s"),
            (l.per_minute, 60, "minute"),
            (l.per_hour, 3600, "hour"),
            (l.per_day, 86_400, "day"),
        ]
        .into_iter()
        .filter_map(|(n, secs, name)| {
            n.filter(|n| *n > 0).map(|n| Window {
                max: n as usize,
                period: Duration::from_secs(secs),
                name,
                log: std::collections::VecDeque::new(),
            })
        })
        .collect();
        Limiter {
            windows: Mutex::new(windows),
        }
    }

    /// Take a slot in every window at `now`, or say how long until all of them admit one (and
    /// which window is the reason). Nothing is taken unless every window admits.
    fn try_take(&self, now: Instant) -> std::result::Result<(), (Duration, &'static str)> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait: Option<(Duration, &'static str)> = None;
        for w in windows.iter_mut() {
            while w
                .log
                .front()
                .is_some_and(|t| now.duration_since(*t) >= w.period)
            {
                w.log.pop_front();
            }
            if w.log.len() >= w.max
                && let Some(oldest) = w.log.front()
            {
                let d = (*oldest + w.period).saturating_duration_since(now);
                if wait.is_none_or(|(cur, _)| d > cur) {
                    wait = Some((d, w.name));
                }
            }
        }
        match wait {
            Some(w) => Err(w),
            None => {
                for w in windows.iter_mut() {
                    w.log.push_back(now);
                }
                Ok(())
            }
        }
    }
}

/// `list_models` result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ModelList {
    pub models: Vec<ModelEntry>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ModelEntry {
    #[serde(flatten)]
    pub spec: ModelSpec,
    /// The provider's key is set (local: always).
    pub configured: bool,
}

/// `list_loras` result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LoraList {
    pub loras: Vec<Lora>,
    /// Names not listed here are passed through to the provider as given.
    pub note: String,
}

/// `list_tasks` result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskList {
    pub tasks: Vec<Task>,
    /// Set when some journal rows could not be read and were skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What `estimate_cost` takes: the create arguments that decide the price and the model.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateRequest {
    /// Optional; checked like create's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<AspectRatio>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<LoraRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_motion: Option<CameraMotion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<bool>,
    /// Quote every model that can honour these arguments.
    #[serde(default)]
    pub compare: bool,
}

impl EstimateRequest {
    fn as_create(&self) -> CreateRequest {
        CreateRequest {
            image: self
                .image
                .clone()
                .unwrap_or_else(|| "https://example.invalid/image.png".into()),
            prompt: self.prompt.clone().unwrap_or_else(|| "estimate".into()),
            negative_prompt: self.negative_prompt.clone(),
            provider: self.provider,
            model: self.model.clone(),
            resolution: self.resolution,
            aspect_ratio: self.aspect_ratio,
            duration_seconds: self.duration_seconds,
            loras: self.loras.clone(),
            camera_motion: self.camera_motion.clone(),
            end_image: self.end_image.clone(),
            audio: self.audio,
            ..CreateRequest::default()
        }
    }
}

/// One price quote.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Quote {
    pub provider: ProviderId,
    pub model: String,
    /// Null when nobody published a price and none is configured.
    pub usd: Option<f64>,
    /// How the figure is made up.
    pub basis: String,
    pub unpriced: bool,
    pub price_source: String,
    pub configured: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BudgetStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_task_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_usd: Option<f64>,
    /// Estimated spend since 00:00 UTC.
    pub spent_today_usd: f64,
}

/// `estimate_cost` result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Estimate {
    pub quotes: Vec<Quote>,
    pub budget: BudgetStatus,
}

pub struct Core {
    pub cfg: Arc<Config>,
    journal: Journal,
    providers: Arc<Providers>,
    watcher: Watcher,
    limiters: BTreeMap<ProviderId, Limiter>,
    /// One create at a time per idempotency key inside this process (the journal's UNIQUE key
    /// guards across processes).
    key_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Set when an HTTP server with a public URL is running: creates then ask providers to call
    /// back at `<base>/webhooks/<provider>`.
    webhook_base: std::sync::OnceLock<String>,
    /// Tool calls currently waiting on a task (observability, and tests of cancellation).
    waiting: std::sync::atomic::AtomicUsize,
}

/// Counts a waiting call for as long as it lives.
struct WaitGuard<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> WaitGuard<'a> {
    fn new(n: &'a std::sync::atomic::AtomicUsize) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        WaitGuard(n)
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What a webhook call led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// The task will be polled now; the journal changes only from that poll.
    Confirming { task_id: String },
}

impl Core {
    /// Open the journal, build the providers and start the watcher (resuming open tasks).
    pub fn start(cfg: Config) -> Result<Arc<Core>> {
        let core = Core::open(cfg)?;
        // A download stalls at most `download_timeout`: an older temp file has no live writer.
        let stale_after = core.cfg.download_timeout.max(STALE_TEMP_FILES) + Duration::from_secs(60);
        crate::watcher::clean_stale_temp_files(
            &[
                core.cfg.output_dir.clone(),
                crate::journal::inputs_dir(&core.cfg.data_dir),
            ],
            stale_after,
        );
        core.watcher.recover()?;
        Ok(core)
    }

    /// Open the journal and build everything, without resuming other open tasks: for one-shot
    /// commands, which watch only the task they touch (a running server does the rest).
    pub fn open(cfg: Config) -> Result<Arc<Core>> {
        let cfg = Arc::new(cfg);
        std::fs::create_dir_all(&cfg.output_dir).map_err(|e| {
            Error::internal(format!(
                "cannot create output dir '{}': {e}",
                cfg.output_dir.display()
            ))
            .with_next_step("set I2V_MCP_OUTPUT_DIR to a writable directory")
        })?;
        let journal = Journal::open(&cfg.data_dir.join("journal.sqlite"))?;
        let http = providers::http::client()?;
        let providers = Arc::new(Providers::new(&cfg, &http, journal.clone()));
        let watcher = Watcher::new(journal.clone(), providers.clone(), cfg.clone(), http);
        let limiters = cfg
            .providers
            .iter()
            .map(|(id, pc)| (*id, Limiter::new(&pc.rate_limit)))
            .collect();
        let core = Arc::new(Core {
            cfg,
            journal,
            providers,
            watcher,
            limiters,
            key_locks: Mutex::new(HashMap::new()),
            webhook_base: std::sync::OnceLock::new(),
            waiting: std::sync::atomic::AtomicUsize::new(0),
        });
        Ok(core)
    }

    /// Tool calls waiting on a task right now.
    pub fn waiting_calls(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn watcher(&self) -> &Watcher {
        &self.watcher
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The provider a request goes to: its own, the configured default, else the first remote
    /// provider with a key. With none, an `auth` error that says how to get going.
    fn pick_provider(&self, requested: Option<ProviderId>) -> Result<ProviderId> {
        if let Some(p) = requested.or(self.cfg.default_provider) {
            return Ok(p);
        }
        ProviderId::ALL
            .into_iter()
            .find(|p| *p != ProviderId::Local && self.cfg.is_configured(*p))
            .ok_or_else(|| {
                Error::new(
                    Category::Auth,
                    "no provider has an API key: set PIAPI_API_KEY, QUBICO_API_KEY, NOVITA_API_KEY or APIKLEY_API_KEY, or pass provider \"local\" for a free offline camera-motion preview",
                )
            })
    }

    fn pick_model(&self, provider: ProviderId, model: Option<&str>) -> Result<&'static ModelSpec> {
        match model {
            None => Ok(catalog::default_model(provider)),
            Some(m) => catalog::find(provider, m).ok_or_else(|| {
                let known: Vec<String> = catalog::models()
                    .iter()
                    .filter(|s| s.provider == provider)
                    .map(|s| s.model.clone())
                    .collect();
                Error::invalid_input(format!(
                    "unknown model '{m}' for {provider}: use {} (see list_models)",
                    known.join(" or ")
                ))
            }),
        }
    }

    fn allowed_dirs(&self, ctx: &CallCtx) -> Vec<PathBuf> {
        let mut dirs = self.cfg.allowed_dirs.clone();
        dirs.extend(ctx.roots.iter().cloned());
        dirs.push(self.cfg.output_dir.clone());
        dirs
    }

    /// The price of one request on one model, with the configured override first.
    /// A model's price: the `[pricing]` override when configured, else the catalog's.
    pub fn price(&self, spec: &ModelSpec) -> catalog::Price {
        let key = spec.key();
        match self.cfg.pricing.get(&key) {
            Some(o) => catalog::Price {
                usd_per_video: o.per_video_usd,
                usd_per_second: o.per_second_usd,
                source: format!("configured under [pricing.\"{key}\"]"),
            },
            None => spec.price.clone(),
        }
    }

    pub fn quote(&self, spec: &ModelSpec, req: &CreateRequest) -> Quote {
        let duration = req.duration_seconds.unwrap_or(spec.default_duration);
        let catalog::Price {
            usd_per_video: per_video,
            usd_per_second: per_second,
            source,
        } = self.price(spec);
        let (usd, basis) = match (per_video, per_second) {
            (Some(v), _) => (Some(v), format!("${v} per video")),
            (None, Some(s)) => (
                Some((s * duration as f64 * 1e6).round() / 1e6),
                format!("${s} per second x {duration} s"),
            ),
            (None, None) => (None, "no published price".to_string()),
        };
        Quote {
            provider: spec.provider,
            model: spec.model.clone(),
            usd,
            basis,
            unpriced: usd.is_none(),
            price_source: source,
            configured: self.cfg.is_configured(spec.provider),
        }
    }

    fn start_of_day_ms() -> i64 {
        let now = chrono::Utc::now();
        now.date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .unwrap_or(0)
    }

    /// Refuse before any paid call when the estimate breaks a cap.
    async fn check_budget(&self, quote: &Quote, req: &CreateRequest) -> Result<()> {
        let caps = [
            (req.max_cost_usd, "max_cost_usd"),
            (self.cfg.budget.per_task_usd, "[budget].per_task_usd"),
        ];
        for (cap, name) in caps {
            let Some(cap) = cap else { continue };
            match quote.usd {
                None if cap >= 0.0 => {
                    return Err(Error::budget(format!(
                        "{name} is set to ${cap} but {}/{} has no known price ({}): set a price under [pricing] or drop the cap",
                        quote.provider, quote.model, quote.price_source
                    )));
                }
                Some(usd) if usd > cap => {
                    return Err(Error::budget(format!(
                        "estimated ${usd} ({}) is over {name} ${cap}: raise the cap or pick a cheaper model (estimate_cost with compare)",
                        quote.basis
                    )));
                }
                _ => {}
            }
        }
        if let Some(daily) = self.cfg.budget.daily_usd {
            let spent = self.journal.spent_since(Self::start_of_day_ms()).await?;
            let usd = quote.usd.ok_or_else(|| {
                Error::budget(format!(
                    "a daily budget is set but {}/{} has no known price: set one under [pricing]",
                    quote.provider, quote.model
                ))
            })?;
            if spent + usd > daily + 1e-9 {
                return Err(Error::budget(format!(
                    "this ${usd} task would bring today's spend to ${:.2}, over [budget].daily_usd ${daily}: wait until 00:00 UTC or raise the budget",
                    spent + usd
                )));
            }
        }
        Ok(())
    }

    /// Wait for a create slot within `deadline`, or say when to retry.
    async fn rate_limit(&self, provider: ProviderId, deadline: Instant) -> Result<()> {
        let Some(limiter) = self.limiters.get(&provider) else {
            return Ok(());
        };
        loop {
            match limiter.try_take(Instant::now()) {
                Ok(()) => return Ok(()),
                Err((wait, window)) => {
                    if Instant::now() + wait > deadline {
                        return Err(Error::new(
                            Category::RateLimited,
                            format!(
                                "client-side rate limit for {provider} (per {window}) reached: retry in {} s",
                                wait.as_secs().max(1)
                            ),
                        )
                        .with_next_step(format!(
                            "create again in {} s, or pass wait_seconds to let the server wait",
                            wait.as_secs().max(1)
                        )));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn key_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.key_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(key.to_string()).or_default().clone()
    }

    pub async fn create(&self, req: CreateRequest, ctx: CallCtx) -> Result<Task> {
        let provider = self.pick_provider(req.provider)?;
        let spec = self.pick_model(provider, req.model.as_deref())?;
        if !self.cfg.is_configured(provider) {
            let var = provider.key_env().unwrap_or_default();
            return Err(Error::new(
                Category::Auth,
                format!(
                    "{provider} has no API key: set {var} (or [providers.{provider}].api_key), or use provider \"local\" for a free preview"
                ),
            ));
        }
        validate::check(&req, spec)?;
        let wait = req.wait_seconds.unwrap_or(0).min(self.cfg.max_wait_seconds);
        let started = Instant::now();

        let _guard = match &req.idempotency_key {
            Some(k) => Some(self.key_lock(k).lock_owned().await),
            None => None,
        };
        let fingerprint = req.fingerprint();
        if let Some(key) = &req.idempotency_key
            && let Some(existing) = self.existing_for_key(key, &fingerprint).await?
        {
            return self.finish_wait(existing, wait, started, &ctx).await;
        }

        let allowed = self.allowed_dirs(&ctx);
        let image = media::resolve_async(&req.image, "image", spec, allowed.clone()).await?;
        let end_image = match &req.end_image {
            Some(e) => Some(media::resolve_async(e, "end_image", spec, allowed).await?),
            None => None,
        };
        if provider == ProviderId::Local {
            providers::local::Client::plan(&req, &image)?;
        }
        let quote = self.quote(spec, &req);
        self.check_budget(&quote, &req).await?;
        self.rate_limit(provider, started + Duration::from_secs(wait as u64))
            .await?;

        let id = new_task_id();
        let now = now_ms();
        let webhook = self.webhook_base.get().map(|base| {
            let secret = new_secret();
            // PiAPI sends the secret back as a header; the others document no authentication, so
            // the secret also travels in the callback URL.
            providers::Webhook {
                url: format!("{base}/webhooks/{provider}?task={id}&token={secret}"),
                secret,
            }
        });
        let new = NewTask {
            id: id.clone(),
            provider,
            model: spec.model.clone(),
            request: self
                .journal_request(&req, &image, end_image.as_ref())
                .await?,
            fingerprint: fingerprint.clone(),
            idempotency_key: req.idempotency_key.clone(),
            estimated_cost: quote.usd,
            webhook_secret: webhook.as_ref().map(|w| w.secret.clone()),
            created_at: now,
        };
        if let Inserted::Existing(row) = self.journal.insert(new).await? {
            // Another process took the key first.
            let task = self.dedup(&row, &fingerprint)?;
            return self.finish_wait(task, wait, started, &ctx).await;
        }

        let p = self.providers.get(provider)?;
        let sub = Submission {
            task_id: &id,
            req: &req,
            spec,
            image: &image,
            end_image: end_image.as_ref(),
            webhook: webhook.as_ref(),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match p.submit(&sub).await {
                Ok(ptid) => {
                    if let Err(e) = self.journal.mark_submitted(&id, &ptid, now_ms()).await {
                        // Paid and accepted upstream, but not in the journal: the provider's id
                        // goes to the log at once, stays in memory and is written as soon as the
                        // journal takes it; the caller learns it too.
                        tracing::error!(task = %id, provider = %provider, provider_task_id = %ptid, error = %e, "the provider accepted the task but the journal could not record its id; kept in memory, retrying");
                        self.watcher.record_submitted(&id, &ptid);
                        return Err(Error::internal(format!(
                            "{provider} accepted the task as provider task {ptid}, but the journal could not record it ({}); it is being recorded and watched in the background as task {id}",
                            e.message
                        ))
                        .with_next_step(format!(
                            "do not create it again (it is paid): call get_task with task_id {id}; free space in the data dir if it is full; the provider dashboard lists it as {ptid}"
                        )));
                    }
                    tracing::info!(task = %id, provider = %provider, provider_task_id = %ptid, "submitted");
                    break;
                }
                Err(pe) if pe.create_may_retry() && attempt < CREATE_ATTEMPTS => {
                    let backoff = pe
                        .retry_after
                        .unwrap_or(Duration::from_secs(1 << attempt))
                        .min(Duration::from_secs(60));
                    tracing::warn!(task = %id, error = %pe.error, ?backoff, "create refused for a passing reason; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = ctx.cancel.cancelled() => {
                            let e = pe.error.clone();
                            self.journal.fail(&id, &e, now_ms()).await?;
                            return Err(e);
                        }
                    }
                }
                Err(pe) => {
                    let error = match pe.acceptance {
                        Acceptance::Unknown => Error::new(
                            Category::SubmitUnknown,
                            format!(
                                "the create may or may not have reached {provider} ({}); it was not resubmitted, to avoid paying twice. Journal task {id}",
                                pe.error.message
                            ),
                        )
                        .with_next_step("check the provider dashboard before creating again: the task may exist and be charged"),
                        Acceptance::Rejected => {
                            let mut e = pe.error.clone();
                            e.message = format!("{} (nothing was charged; journal task {id})", e.message);
                            e
                        }
                    };
                    self.journal.fail(&id, &error, now_ms()).await?;
                    self.watcher.publish(&id).await;
                    return Err(error);
                }
            }
        }
        self.watcher.watch(&id);
        let task = self.load(&id).await?;
        self.finish_wait(task, wait, started, &ctx).await
    }

    /// The request as the journal keeps it: an image given inline (a data URI, up to tens of MB)
    /// is written once to `<data_dir>/inputs/<sha256>.<ext>` and the request names that file
    /// instead, so rows stay small and reading a task never loads image bytes. A restarted local
    /// render reads the file back through the same path checks as any input.
    async fn journal_request(
        &self,
        req: &CreateRequest,
        image: &media::ImageInput,
        end_image: Option<&media::ImageInput>,
    ) -> Result<String> {
        let mut req = req.clone();
        req.image = self.stored_input(&req.image, image).await?;
        if let (Some(given), Some(resolved)) = (&req.end_image, end_image) {
            req.end_image = Some(self.stored_input(given, resolved).await?);
        }
        serde_json::to_string(&req)
            .map_err(|e| Error::internal(format!("cannot encode the request: {e}")))
    }

    /// `given` as the journal keeps it: a data URI becomes the path of its bytes under
    /// `inputs_dir`, written atomically (temp file + rename) unless already there.
    async fn stored_input(&self, given: &str, resolved: &media::ImageInput) -> Result<String> {
        let Some(img) = resolved.as_local() else {
            return Ok(given.to_string());
        };
        if !given.trim_start().starts_with("data:") {
            return Ok(given.to_string());
        }
        let dir = crate::journal::inputs_dir(&self.cfg.data_dir);
        let path = dir.join(format!("{}.{}", img.sha256, img.format.extension()));
        if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            let io = |e: std::io::Error| {
                Error::internal(format!(
                    "cannot keep the image in '{}': {e}",
                    dir.display()
                ))
                .with_next_step("free space in the data dir or set I2V_MCP_DATA_DIR to a writable directory")
            };
            tokio::fs::create_dir_all(&dir).await.map_err(io)?;
            let (target, bytes) = (path.clone(), img.bytes.clone());
            tokio::task::spawn_blocking(move || crate::files::write_atomic(&target, &bytes))
                .await
                .map_err(|e| Error::internal(format!("the image write did not finish: {e}")))?
                .map_err(io)?;
        }
        Ok(path.display().to_string())
    }

    /// The task an idempotency key already stands for. A key whose create was refused (nothing
    /// accepted upstream, nothing charged) stands for nothing: the retry is a new attempt, which
    /// takes the key over in `Journal::insert`. A key whose outcome is unknown, or that the provider
    /// accepted, always returns its task and is never sent again.
    async fn existing_for_key(&self, key: &str, fingerprint: &str) -> Result<Option<Task>> {
        match self.journal.find_by_key(key).await? {
            Some(row) if row.is_refused() => Ok(None),
            Some(row) => Ok(Some(self.dedup(&row, fingerprint)?)),
            None => Ok(None),
        }
    }

    fn dedup(&self, row: &TaskRow, fingerprint: &str) -> Result<Task> {
        if row.fingerprint != fingerprint {
            return Err(Error::invalid_input(format!(
                "idempotency_key was already used for a different request (task {}): use a new key for a new request, or resend the same arguments to get that task",
                row.id
            )));
        }
        let mut task = row.to_task();
        task.deduplicated = true;
        Ok(task)
    }

    async fn finish_wait(
        &self,
        task: Task,
        wait: u32,
        started: Instant,
        ctx: &CallCtx,
    ) -> Result<Task> {
        let dedup = task.deduplicated;
        if wait == 0 || task.is_settled() {
            return Ok(task);
        }
        let deadline = started + Duration::from_secs(wait as u64);
        let mut t = self.wait_until(&task.task_id, deadline, ctx).await?;
        t.deduplicated = dedup;
        Ok(t)
    }

    async fn load(&self, id: &str) -> Result<Task> {
        self.journal
            .get(id)
            .await?
            .map(|r| r.to_task())
            .ok_or_else(|| {
                Error::not_found(format!(
                    "unknown task_id '{id}': list_tasks shows the tasks this server knows"
                ))
            })
    }

    /// Wait until the task settles or the deadline passes, reporting progress on the way. A
    /// cancelled call returns at once; the task goes on.
    async fn wait_until(&self, id: &str, deadline: Instant, ctx: &CallCtx) -> Result<Task> {
        let _counted = WaitGuard::new(&self.waiting);
        let mut rx = self.watcher.subscribe();
        let mut reporter = Reporter::new(ctx.progress.clone());
        let mut task = self.load(id).await?;
        loop {
            reporter.report(&task, false);
            let now = Instant::now();
            if task.is_settled() || now >= deadline {
                return Ok(task);
            }
            let next_beat = (reporter.last_sent + HEARTBEAT).max(now + Duration::from_millis(50));
            let wake_at = next_beat.min(deadline);
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Ok(task),
                msg = rx.recv() => match msg {
                    Ok(t) if t.task_id == id => task = t,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => task = self.load(id).await?,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(task),
                },
                _ = tokio::time::sleep_until(wake_at.into()) => {
                    if Instant::now() < deadline {
                        reporter.report(&task, true);
                    }
                }
            }
        }
    }

    pub async fn get(&self, id: &str, wait_seconds: Option<u32>, ctx: CallCtx) -> Result<Task> {
        let row = self.journal.get(id).await?.ok_or_else(|| {
            Error::not_found(format!(
                "unknown task_id '{id}': list_tasks shows the tasks this server knows"
            ))
        })?;
        let started = Instant::now();
        let task = row.to_task();
        // A download that gave up is tried again; a task we stopped watching on timeout gets one
        // more look (the provider may have finished late).
        let timed_out = task
            .error
            .as_ref()
            .is_some_and(|e| e.category == Category::Timeout)
            && row.provider_task_id.is_some();
        let task = if row.download == Some(Download::Failed)
            && self.journal.retry_download(id, now_ms()).await?
        {
            self.watcher.watch(id);
            self.load(id).await?
        } else if timed_out {
            self.refresh_timed_out(&row).await;
            self.load(id).await?
        } else {
            // The common case, a settled task: answered from the one read above.
            task
        };
        if task.is_settled() {
            return Ok(task);
        }
        if !self.watcher.is_watching(id) && !row.is_submitting() {
            self.watcher.watch(id);
        }
        let wait = wait_seconds.unwrap_or(0).min(self.cfg.max_wait_seconds);
        if wait == 0 {
            // Fresh news: poll now and wait briefly for that poll.
            self.watcher.wake(id);
            let deadline = started + REFRESH_WAIT;
            return self.wait_for_change(id, deadline, &ctx).await;
        }
        self.watcher.wake(id);
        self.wait_until(id, started + Duration::from_secs(wait as u64), &ctx)
            .await
    }

    /// Wait for the next news of one task (a poll completing), bounded.
    async fn wait_for_change(&self, id: &str, deadline: Instant, ctx: &CallCtx) -> Result<Task> {
        let mut rx = self.watcher.subscribe();
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return self.load(id).await,
                _ = tokio::time::sleep_until(deadline.into()) => return self.load(id).await,
                msg = rx.recv() => match msg {
                    Ok(t) if t.task_id == id => return Ok(t),
                    Ok(_) => {}
                    Err(_) => return self.load(id).await,
                },
            }
        }
    }

    async fn refresh_timed_out(&self, row: &TaskRow) {
        let Ok(p) = self.providers.get(row.provider) else {
            return;
        };
        if let Ok(snap) = p.poll(row).await
            && snap.status == Status::Succeeded
        {
            let update = Update {
                status: Some(Status::Succeeded),
                video_url: snap.video_url,
                url_expires_at: snap.url_expires_at,
                ..Default::default()
            };
            if self
                .journal
                .apply(&row.id, &update, now_ms())
                .await
                .unwrap_or(false)
            {
                self.watcher.watch(&row.id);
            }
        }
    }

    pub async fn list(
        &self,
        status: Option<Status>,
        provider: Option<ProviderId>,
        limit: Option<u32>,
    ) -> Result<TaskList> {
        let listed = self
            .journal
            .list(&ListFilter {
                status,
                provider,
                limit: limit.unwrap_or(20).clamp(1, 500),
            })
            .await?;
        let note = (!listed.unreadable.is_empty()).then(|| {
            let bad: Vec<String> = listed
                .unreadable
                .iter()
                .map(|b| format!("{} ({})", b.id, b.problem))
                .collect();
            format!(
                "skipped {} journal row(s) this version cannot read: {}",
                bad.len(),
                bad.join("; ")
            )
        });
        Ok(TaskList {
            tasks: listed.rows.iter().map(|r| r.to_task()).collect(),
            note,
        })
    }

    pub async fn cancel(&self, id: &str) -> Result<Task> {
        let row = self.journal.get(id).await?.ok_or_else(|| {
            Error::not_found(format!(
                "unknown task_id '{id}': list_tasks shows the tasks this server knows"
            ))
        })?;
        let task = row.to_task();
        if task.status.is_terminal() {
            let mut t = task;
            t.note = Some(format!("already {}; nothing to cancel", t.status));
            return Ok(t);
        }
        if row.is_submitting() {
            return Err(Error::invalid_input(format!(
                "task {id} is being submitted right now: call cancel_task again in a few seconds"
            )));
        }
        let p = self.providers.get(row.provider)?;
        let note = match p.cancel(&row).await {
            Ok(providers::CancelOutcome::Cancelled) => format!("cancelled at {}", row.provider),
            Ok(providers::CancelOutcome::NotCancelled(reason)) => format!(
                "{reason}; stopped watching here: the provider may still finish and charge, and the result will not be downloaded"
            ),
            Err(pe) => {
                return Err(Error::new(
                    pe.error.category,
                    format!(
                        "cancel failed: {}; the task is still being watched",
                        pe.error.message
                    ),
                ));
            }
        };
        self.journal.cancel(id, &note, now_ms()).await?;
        self.watcher.publish(id).await;
        self.load(id).await
    }

    pub fn list_models(&self, provider: Option<ProviderId>) -> ModelList {
        let models = catalog::models()
            .iter()
            .filter(|m| provider.is_none_or(|p| m.provider == p))
            .map(|m| {
                let mut spec = m.clone();
                spec.price = self.price(m);
                ModelEntry {
                    configured: self.cfg.is_configured(m.provider),
                    spec,
                }
            })
            .collect();
        ModelList { models }
    }

    pub fn list_loras(
        &self,
        provider: Option<ProviderId>,
        model: Option<&str>,
    ) -> Result<LoraList> {
        if let (Some(p), Some(m)) = (provider, model) {
            self.pick_model(p, Some(m))?;
        }
        let loras = catalog::loras()
            .iter()
            .filter(|l| provider.is_none_or(|p| l.provider == p))
            .filter(|l| model.is_none_or(|m| l.model.eq_ignore_ascii_case(m)))
            .cloned()
            .collect();
        Ok(LoraList {
            loras,
            note: "PiAPI/Qubico take other LoRA type names as given; Novita wan2.1-i2v takes a LoRA path as the name (up to 3).".into(),
        })
    }

    /// Quotes for `req`; its images are read and checked like create's (nothing is sent), from
    /// the allowed directories and `ctx`'s roots.
    pub async fn estimate(&self, req: &EstimateRequest, ctx: &CallCtx) -> Result<Estimate> {
        let create = req.as_create();
        let specs: Vec<&'static ModelSpec> = if req.compare {
            catalog::models()
                .iter()
                .filter(|m| {
                    let mut c = create.clone();
                    c.provider = Some(m.provider);
                    validate::check(&c, m).is_ok()
                })
                .collect()
        } else {
            let provider = match req.provider.or(self.cfg.default_provider) {
                Some(p) => p,
                None => self.pick_provider(None).unwrap_or(ProviderId::Piapi),
            };
            let spec = self.pick_model(provider, req.model.as_deref())?;
            validate::check(&create, spec)?;
            vec![spec]
        };
        let specs = self.fitting_images(req, specs, ctx).await?;
        if specs.is_empty() {
            return Err(Error::unsupported(
                "no model can honour these arguments together: drop one (see list_models)",
            ));
        }
        let spent = self.journal.spent_since(Self::start_of_day_ms()).await?;
        Ok(Estimate {
            quotes: specs.into_iter().map(|s| self.quote(s, &create)).collect(),
            budget: BudgetStatus {
                per_task_usd: self.cfg.budget.per_task_usd,
                daily_usd: self.cfg.budget.daily_usd,
                spent_today_usd: (spent * 1e6).round() / 1e6,
            },
        })
    }
}

impl Core {
    /// The models of `specs` that would take `req`'s images. When none would, the first model's
    /// reason is the answer (with one model, its own).
    async fn fitting_images(
        &self,
        req: &EstimateRequest,
        mut specs: Vec<&'static ModelSpec>,
        ctx: &CallCtx,
    ) -> Result<Vec<&'static ModelSpec>> {
        for (field, input) in [("image", &req.image), ("end_image", &req.end_image)] {
            let Some(input) = input else { continue };
            let verdicts = media::fits(input, field, &specs, self.allowed_dirs(ctx)).await;
            let mut first_err = None;
            let mut kept = Vec::new();
            for (spec, verdict) in specs.into_iter().zip(verdicts) {
                match verdict {
                    Ok(()) => kept.push(spec),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let (true, Some(e)) = (kept.is_empty(), first_err) {
                return Err(e);
            }
            specs = kept;
        }
        Ok(specs)
    }

    /// Turn provider webhooks on (HTTP mode with a public URL). Only the first call counts.
    pub fn enable_webhooks(&self, public_url: &str) {
        let _ = self
            .webhook_base
            .set(public_url.trim_end_matches('/').to_string());
    }

    pub fn webhooks_enabled(&self) -> bool {
        self.webhook_base.get().is_some()
    }

    /// A provider called back. The body is never trusted: the task is found by our id (query
    /// `task`) or the provider's id in the body, the per-task secret is checked in constant time
    /// (PiAPI sends it as `x-webhook-secret`; others carry it as the `token` query parameter), and
    /// then the watcher polls the provider once (a GET) — only that poll changes the journal.
    /// Duplicates and retries are harmless: each just asks for another poll.
    pub async fn webhook(
        &self,
        provider: ProviderId,
        task_id: Option<&str>,
        secret: Option<&str>,
        body: &[u8],
    ) -> Result<WebhookOutcome> {
        let row = match task_id {
            Some(id) => self.journal.get(id).await?,
            None => match provider_task_id_in(body) {
                Some(ptid) => {
                    // Qubico and PiAPI share one upstream; a webhook for one may name the other.
                    let upstream = match provider {
                        ProviderId::Piapi | ProviderId::Qubico => {
                            vec![ProviderId::Piapi, ProviderId::Qubico]
                        }
                        p => vec![p],
                    };
                    self.journal.find_by_provider_id(&upstream, &ptid).await?
                }
                None => None,
            },
        };
        let same_upstream = |a: ProviderId, b: ProviderId| {
            a == b
                || matches!(
                    (a, b),
                    (ProviderId::Piapi, ProviderId::Qubico)
                        | (ProviderId::Qubico, ProviderId::Piapi)
                )
        };
        let row = row
            .filter(|r| same_upstream(r.provider, provider))
            .ok_or_else(|| Error::not_found("webhook for an unknown task"))?;
        let expected = row.webhook_secret.as_deref().ok_or_else(|| {
            Error::new(Category::Auth, "this task was not created with a webhook")
        })?;
        let given = secret.unwrap_or_default();
        use subtle::ConstantTimeEq;
        if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            return Err(Error::new(Category::Auth, "webhook secret does not match"));
        }
        if !self.watcher.wake(&row.id) && !row.is_submitting() {
            self.watcher.watch(&row.id);
            self.watcher.wake(&row.id);
        }
        Ok(WebhookOutcome::Confirming { task_id: row.id })
    }
}

/// The provider's task id in a webhook body: PiAPI `data.task_id`, Novita
/// `payload.task.task_id`, Apikley `data.taskId`.
fn provider_task_id_in(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    [
        v.pointer("/data/task_id"),
        v.pointer("/payload/task/task_id"),
        v.pointer("/data/taskId"),
    ]
    .into_iter()
    .flatten()
    .find_map(|x| x.as_str().map(String::from))
}

fn new_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    hex::encode(bytes)
}

/// Time-ordered, unguessable task ids.
fn new_task_id() -> String {
    format!("tsk_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: Status, progress: Option<u8>) -> Task {
        Task {
            task_id: "t".into(),
            provider: ProviderId::Local,
            model: "m".into(),
            provider_task_id: None,
            status,
            progress_percent: progress,
            eta_seconds: None,
            estimated_cost_usd: None,
            video: None,
            error: None,
            note: None,
            created_at: String::new(),
            updated_at: String::new(),
            finished_at: None,
            deduplicated: false,
            download_pending: false,
        }
    }

    #[test]
    fn progress_strictly_increases_and_ends_at_100() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut r = Reporter::new(Some(tx));
        r.report(&task(Status::Queued, None), false);
        r.report(&task(Status::Queued, None), false); // unchanged: nothing
        r.report(&task(Status::Queued, None), true); // heartbeat
        r.report(&task(Status::Running, Some(35)), false);
        r.report(&task(Status::Running, Some(20)), false); // provider went back: still increasing
        r.report(&task(Status::Succeeded, None), false);
        let mut seen = Vec::new();
        while let Ok(p) = rx.try_recv() {
            seen.push(p);
        }
        assert_eq!(seen.len(), 5, "{seen:?}");
        for w in seen.windows(2) {
            assert!(w[1].progress > w[0].progress, "{seen:?}");
        }
        assert_eq!(seen.last().unwrap().progress, 100.0);
        assert_eq!(seen[2].message, "running 35%");
    }

    #[test]
    fn rate_windows_are_exact_and_take_nothing_when_refusing() {
        let l = Limiter::new(&RateLimits {
            per_minute: Some(2),
            per_hour: Some(3),
            ..RateLimits::default()
        });
        let t0 = Instant::now();
        assert!(l.try_take(t0).is_ok());
        assert!(l.try_take(t0 + Duration::from_secs(1)).is_ok());
        // Third in the same minute: refused until the first leaves the window.
        let (wait, window) = l.try_take(t0 + Duration::from_secs(2)).unwrap_err();
        assert_eq!((wait, window), (Duration::from_secs(58), "minute"));
        // Refusals took no hour slot: after the minute, one more fits, then the hour is full.
        assert!(l.try_take(t0 + Duration::from_secs(61)).is_ok());
        let (_, window) = l.try_take(t0 + Duration::from_secs(200)).unwrap_err();
        assert_eq!(window, "hour");
    }

    #[test]
    fn no_token_no_progress() {
        let mut r = Reporter::new(None);
        r.report(&task(Status::Running, Some(10)), true);
        assert_eq!(r.last, 0.0);
    }
}
