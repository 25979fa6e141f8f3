//! The application: create, get, list, cancel, estimate, models and LoRAs. Both faces (MCP and
//! CLI) call these and only map arguments and render results. One module per concern: pricing
//! and budgets, client-side rate limits, waiting and progress, submission, webhooks.

pub mod batch;
mod consent;
mod pricing;
mod progress;
mod ratelimit;
mod submit;
mod webhook;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::schemars::{self, JsonSchema};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

pub use consent::{Answer, Consent, SpendAsk};
pub use pricing::{BudgetStatus, Estimate, EstimateRequest, Quote};
pub use progress::Progress;
pub use webhook::WebhookOutcome;

use crate::catalog::{self, Lora, ModelSpec};
use crate::config::Config;
use crate::error::{Category, Error, Result};
use crate::journal::{Journal, ListFilter, TaskRow};
use crate::model::{ProviderId, Status, Task, now_ms};
use crate::providers;
use crate::providers::registry::{self, Declared};
use crate::providers::runtime::Providers;
use crate::watcher::Watcher;
use ratelimit::RateLimiters;

/// Temp files untouched this long (at least) are left from a crash and removed at start.
const STALE_TEMP_FILES: Duration = Duration::from_secs(10 * 60);

/// Per-call context from a face: where progress goes (only if the client asked for it), the
/// call's cancellation, and extra directories the caller may read images from (MCP roots; the
/// CLI's own arguments).
#[derive(Clone, Default)]
pub struct CallCtx {
    pub progress: Option<UnboundedSender<Progress>>,
    pub cancel: CancellationToken,
    pub roots: Vec<PathBuf>,
    /// How to ask the person before spending (`[budget] confirm_above_usd`); `None`: the
    /// caller is the person (the CLI), nobody is asked.
    pub consent: Option<Arc<dyn Consent>>,
    /// On whose behalf: the operator (CLI, stdio, the static token) sees every task; an OAuth
    /// subject only its own (the HTTP auth layer says which).
    pub caller: Principal,
}

pub use crate::oauth::Principal;

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

pub struct Core {
    pub cfg: Arc<Config>,
    journal: Journal,
    providers: Arc<Providers>,
    watcher: Watcher,
    limiters: RateLimiters,
    /// One create at a time per idempotency key inside this process (the journal's UNIQUE key
    /// guards across processes).
    key_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Set when an HTTP server with a public URL is running: creates then ask providers to call
    /// back at `<base>/webhooks/<provider>`.
    webhook_base: std::sync::OnceLock<String>,
    /// Tool calls currently waiting on a task (observability, and tests of cancellation).
    waiting: std::sync::atomic::AtomicUsize,
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
                crate::watcher::claims_dir(&core.cfg.output_dir),
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
        let journal = open_journal(&cfg)?;
        let http = providers::http::client()?;
        let providers = Arc::new(Providers::new(&cfg, &http, journal.clone()));
        let watcher = Watcher::new(journal.clone(), providers.clone(), cfg.clone(), http);
        let limiters = RateLimiters::new(&cfg, &journal);
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

    pub fn watcher(&self) -> &Watcher {
        &self.watcher
    }

    /// The journal itself, for tests and maintenance; the faces ask `task` and `video_path`.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// A task as agents see it, or a `not_found` error that says where to look.
    pub async fn task(&self, id: &str) -> Result<Task> {
        self.task_as(id, &Principal::operator()).await
    }

    /// A task `who` may see (its own, or any for an admin); another owner's is `not_found`,
    /// exactly like an unknown id, so ids of others cannot be probed.
    pub async fn task_as(&self, id: &str, who: &Principal) -> Result<Task> {
        Ok(self.row_as(id, who).await?.to_task())
    }

    /// Whether `who` may see and act on `row`. The one place tenancy is decided.
    pub fn visible(row: &TaskRow, who: &Principal) -> bool {
        who.admin || row.owner == who.owner
    }

    pub(crate) async fn row_as(&self, id: &str, who: &Principal) -> Result<TaskRow> {
        let row = self.row(id).await?;
        if Self::visible(&row, who) {
            Ok(row)
        } else {
            Err(unknown_task(id))
        }
    }

    /// The downloaded video of a succeeded task: `Ok(None)` while there is none (not succeeded,
    /// not downloaded yet, or no longer inside the output dir); a `not_found` error for an
    /// unknown task.
    pub async fn video_path(&self, id: &str) -> Result<Option<(Task, PathBuf)>> {
        self.video_path_as(id, &Principal::operator()).await
    }

    /// `video_path` of a task `who` may see.
    pub async fn video_path_as(
        &self,
        id: &str,
        who: &Principal,
    ) -> Result<Option<(Task, PathBuf)>> {
        let task = self.task_as(id, who).await?;
        let Some(path) = task
            .video
            .as_ref()
            .and_then(|v| v.local_path.as_ref())
            .filter(|_| task.status == Status::Succeeded)
            .map(PathBuf::from)
        else {
            return Ok(None);
        };
        // Both faces serve this file: it must still lie inside the output dir (a journal row is
        // data, and the dir may have been changed or the file replaced by a link since).
        let dir = self.cfg.output_dir.clone();
        let probe = path.clone();
        let inside =
            tokio::task::spawn_blocking(move || match (probe.canonicalize(), dir.canonicalize()) {
                (Ok(p), Ok(dir)) => p.starts_with(dir),
                _ => false,
            })
            .await
            .unwrap_or(false);
        if !inside {
            tracing::warn!(task = id, path = %path.display(), "the video is no longer in the output dir");
            return Ok(None);
        }
        Ok(Some((task, path)))
    }

    async fn row(&self, id: &str) -> Result<TaskRow> {
        self.journal.get(id).await?.ok_or_else(|| unknown_task(id))
    }

    /// The requested provider, else the configured default, else the first provider with a key
    /// (and, for text-to-video, a text-to-video model).
    fn pick_provider(&self, requested: Option<ProviderId>, t2v: bool) -> Result<ProviderId> {
        if let Some(p) = requested.or(self.cfg.default_provider) {
            return Ok(p);
        }
        let configured = |p: &ProviderId| p.decl().needs_key() && self.cfg.is_configured(*p);
        let mut keyed = ProviderId::ALL
            .iter()
            .copied()
            .filter(configured)
            .peekable();
        if keyed.peek().is_none() {
            return Err(Error::new(Category::Auth, registry::no_key_message()));
        }
        keyed
            .find(|p| !t2v || catalog::default_t2v_model(*p).is_some())
            .ok_or_else(|| no_t2v("none of the providers with a key has a text-to-video model"))
    }

    fn pick_model(
        &self,
        provider: ProviderId,
        model: Option<&str>,
        t2v: bool,
    ) -> Result<&'static ModelSpec> {
        match model {
            None if t2v => catalog::default_t2v_model(provider)
                .ok_or_else(|| no_t2v(&format!("{provider} has no text-to-video model"))),
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

    pub async fn list(
        &self,
        status: Option<Status>,
        provider: Option<ProviderId>,
        limit: Option<u32>,
    ) -> Result<TaskList> {
        self.list_as(&Principal::operator(), status, provider, limit)
            .await
    }

    /// The tasks `who` may see (an admin: everyone's), newest first.
    pub async fn list_as(
        &self,
        who: &Principal,
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
                owner: (!who.admin).then(|| who.owner.clone()),
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
        self.cancel_as(id, &Principal::operator()).await
    }

    /// `cancel` of a task `who` may see.
    pub async fn cancel_as(&self, id: &str, who: &Principal) -> Result<Task> {
        let row = self.row_as(id, who).await?;
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
        self.task(id).await
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
            self.pick_model(p, Some(m), false)?;
        }
        let loras = catalog::loras()
            .iter()
            .filter(|l| provider.is_none_or(|p| l.provider == p))
            .filter(|l| model.is_none_or(|m| l.model.eq_ignore_ascii_case(m)))
            .cloned()
            .collect();
        Ok(LoraList {
            loras,
            note: registry::lora_note(),
        })
    }
}

fn unknown_task(id: &str) -> Error {
    Error::not_found(format!(
        "unknown task_id '{id}': list_tasks shows the tasks this server knows"
    ))
}

/// No image, and nothing here makes video from text alone (`why`): give one, or use a model that does.
fn no_t2v(why: &str) -> Error {
    Error::invalid_input(format!("image is missing, and {why}")).with_next_step(format!(
        "give image for image-to-video, or pick a text-to-video model: {}",
        catalog::who_supports(|m| m.text_to_video && m.retired_on.is_none())
    ))
}

/// The journal the config names: PostgreSQL with a database URL, else SQLite in the data dir.
fn open_journal(cfg: &Config) -> Result<Journal> {
    use secrecy::ExposeSecret;
    match &cfg.database_url {
        Some(url) => Journal::open_postgres(url.expose_secret()),
        None => Journal::open(&cfg.data_dir.join("journal.sqlite")),
    }
}
