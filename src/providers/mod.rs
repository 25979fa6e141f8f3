//! Providers: one file of mostly pure translation each, one registry line, one id.
//! Each file declares everything about its provider in one [`Declaration`] (key variable, base
//! URL, auth, rate limits, models, extra checks, webhooks, cancel); the rest of the server reads
//! those declarations through [`registry`] and names no provider. The async part only sends
//! (through `http::Api`) and answers through the [`Provider`] trait.
//! Every provider answers in the same neutral terms: a provider task id on submit, a `Snapshot`
//! on poll, and a `ProviderError` that says whether the provider may have accepted a create
//! (which decides whether it may ever be retried).
//!
//! Layers, lowest first (`tests/layers.rs` keeps every import running downward): this file and
//! [`id`] are the vocabulary (below the journal and media they name); [`http`] and the provider
//! modules use only that and what is below; [`registry`] lists the provider modules; the catalog,
//! the config and validation read the registry; [`runtime`] builds the clients from the config.
//!
//! Adding a provider: see CONTRIBUTING.md ("Adding a provider").

pub mod apikley;
pub mod client;
pub mod dashscope;
pub mod fal;
pub mod http;
pub mod id;
pub mod local;
pub mod novita;
pub mod piapi;
pub mod registry;
pub mod replicate;
pub mod runtime;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::SecretString;
use serde::Deserialize;

pub use id::ProviderId;

use crate::catalog::spec::{Lora, ModelSpec};
use crate::error::{Category, Error};
use crate::journal::{Journal, TaskRow};
use crate::media::ImageInput;
use crate::model::{CreateRequest, Status};

/// Client-side create limits; `None` fields are unlimited.
#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    pub per_10_seconds: Option<u32>,
    pub per_minute: Option<u32>,
    pub per_hour: Option<u32>,
    pub per_day: Option<u32>,
}

impl RateLimits {
    /// No client-side limit (the provider's 429s are still honoured).
    pub const UNLIMITED: RateLimits = RateLimits {
        per_10_seconds: None,
        per_minute: None,
        per_hour: None,
        per_day: None,
    };
}

/// One provider's resolved settings (the config resolves them from the file, the environment
/// and the provider's declaration).
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub api_key: Option<SecretString>,
    pub base_url: String,
    pub timeout: Duration,
    pub rate_limit: RateLimits,
    /// Creates on retired models are sent anyway (`allow_retired`, I2V_MCP_<ID>_ALLOW_RETIRED).
    pub allow_retired: bool,
    /// How its requests authenticate (its declaration's `auth`).
    pub auth: Auth,
    /// What to do when the key is missing: set its declared variable, or use the keyless provider.
    pub no_key: String,
}

/// How a provider authenticates its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// The key as the value of this header.
    Header(&'static str),
    /// `Authorization: <scheme> <key>` (fal: `Key`).
    Scheme(&'static str),
    /// No network, no key.
    None,
}

/// How a provider's webhook bodies name a task and carry the per-task secret.
#[derive(Debug, Clone, Copy)]
pub struct WebhookDecl {
    /// JSON pointer to the provider's task id in the body.
    pub task_id_at: &'static str,
    /// The header the provider sends the secret in; `None`: it travels as the `token` query
    /// parameter of the callback URL we gave.
    pub secret_header: Option<&'static str>,
}

/// Everything the rest of the server needs to know about one provider, declared in its module.
pub struct Declaration {
    pub id: ProviderId,
    /// Name in human messages.
    pub name: &'static str,
    /// Environment variable holding the key; `None` for a provider that needs none.
    pub key_env: Option<&'static str>,
    /// `None` for a provider without a network API.
    pub default_base_url: Option<&'static str>,
    pub auth: Auth,
    /// Client-side create limits used unless the config says otherwise.
    pub rate_limits: RateLimits,
    /// Its models, first = default.
    pub models: fn() -> Vec<ModelSpec>,
    /// LoRAs its models are known to take.
    pub loras: fn() -> Vec<Lora>,
    /// What `list_loras` should say about this provider's LoRA names.
    pub lora_note: Option<&'static str>,
    /// Request checks beyond the generic ones in `validate`.
    pub check: fn(&CreateRequest, &ModelSpec) -> Result<(), Error>,
    /// Checks against the read image before anything is written (the local renderer's plan).
    pub preflight: fn(&CreateRequest, Option<&ImageInput>) -> Result<(), Error>,
    /// Whether it has an upstream cancel.
    pub cancels: bool,
    /// `None`: it never calls back.
    pub webhook: Option<WebhookDecl>,
    /// Ids that share one upstream with it (itself included).
    pub same_upstream: &'static [ProviderId],
    /// A fixed poll interval (the in-memory local renderer) instead of the backoff schedule.
    pub poll_interval: Option<Duration>,
    /// For a keyless provider: what it offers, said when no key is set.
    pub keyless_offer: Option<&'static str>,
    /// Builds its client once from the configuration.
    pub build: fn(&Build<'_>) -> Arc<dyn Provider>,
}

impl Declaration {
    pub fn needs_key(&self) -> bool {
        self.key_env.is_some()
    }
}

/// A check that accepts everything.
pub fn no_check<A, B>(_: &A, _: &B) -> Result<(), Error> {
    Ok(())
}

pub fn no_preflight(_: &CreateRequest, _: Option<&ImageInput>) -> Result<(), Error> {
    Ok(())
}

/// What a provider's `build` gets.
pub struct Build<'a> {
    pub id: ProviderId,
    pub provider: &'a ProviderConfig,
    pub http: &'a client::HttpClient,
    pub journal: &'a Journal,
    /// Where results are written.
    pub output_dir: &'a Path,
    /// The directories a local image path may resolve into.
    pub allowed_dirs: &'a [PathBuf],
    pub data_dir: &'a Path,
    /// Every model (the catalog), for messages that name the models that would take an input.
    pub models: &'static [ModelSpec],
}

/// Whether the provider may have accepted a request that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// Surely not accepted: the connection was refused before sending, or the provider answered
    /// with a definite refusal. Nothing was created upstream.
    Rejected,
    /// Maybe accepted: timeout after sending, a 5xx, an answer that does not parse. A create that
    /// ends here must never be resubmitted automatically: it could charge twice.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct ProviderError {
    pub error: Error,
    pub acceptance: Acceptance,
    /// From a Retry-After header, when the provider sent one.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn rejected(error: Error) -> Self {
        ProviderError {
            error,
            acceptance: Acceptance::Rejected,
            retry_after: None,
        }
    }
    pub fn unknown(error: Error) -> Self {
        ProviderError {
            error,
            acceptance: Acceptance::Unknown,
            retry_after: None,
        }
    }
    pub fn with_retry_after(mut self, d: Option<Duration>) -> Self {
        self.retry_after = d;
        self
    }

    /// A create may be sent again only when the provider surely did not take it and the reason is
    /// one that passes: a rate limit (not out-of-credits) or a refused connection.
    pub fn create_may_retry(&self) -> bool {
        self.acceptance == Acceptance::Rejected
            && matches!(
                self.error.category,
                Category::RateLimited | Category::ProviderUnavailable
            )
            && self.error.retryable
    }
}

/// A result file the provider produced locally (the built-in renderer), so no download is needed.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What one poll learned, in neutral terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub status: Status,
    pub progress: Option<u8>,
    pub eta: Option<u32>,
    pub video_url: Option<String>,
    /// Unix ms.
    pub url_expires_at: Option<i64>,
    pub error: Option<Error>,
    pub local_file: Option<LocalFile>,
    /// The provider's own status string, for logs.
    pub raw_status: String,
    /// Seconds billed, when the poll answer says (DashScope's `usage.duration`).
    pub billed_seconds: Option<f64>,
}

/// A task status string this adapter does not know (a provider may add one): logged, and read as
/// `Running`, so polling goes on until a status it knows arrives.
pub fn unknown_status(provider: ProviderId, raw: &str) -> Status {
    tracing::warn!(%provider, status = raw, "unknown task status; treating as running");
    Status::Running
}

impl Snapshot {
    pub fn new(status: Status, raw_status: impl Into<String>) -> Self {
        Snapshot {
            status,
            progress: None,
            eta: None,
            video_url: None,
            url_expires_at: None,
            error: None,
            local_file: None,
            raw_status: raw_status.into(),
            billed_seconds: None,
        }
    }

    /// A success must carry a video URL: without one (`None` or blank) the task failed, with
    /// `missing` as the error, since there is nothing to fetch.
    pub fn require_video(&mut self, url: Option<String>, missing: impl FnOnce() -> Error) {
        match url.filter(|u| !u.trim().is_empty()) {
            Some(url) => self.video_url = Some(url),
            None => {
                self.status = Status::Failed;
                self.error = Some(missing());
            }
        }
    }
}

/// Where a provider should call back, when the server has a public URL (HTTP mode).
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
}

/// Everything a provider needs to submit one task.
pub struct Submission<'a> {
    pub task_id: &'a str,
    pub req: &'a CreateRequest,
    pub spec: &'a ModelSpec,
    /// `None` for a text-to-video model.
    pub image: Option<&'a ImageInput>,
    pub end_image: Option<&'a ImageInput>,
    /// Reference media, resolved, in the order given (reference-to-video models only).
    pub references: &'a [crate::media::Reference],
    pub webhook: Option<&'a Webhook>,
}

impl<'a> Submission<'a> {
    /// The image of an image-to-video model (`validate` refused a create without one).
    pub fn image_required(&self) -> Result<&'a ImageInput, Error> {
        self.image.ok_or_else(|| {
            Error::invalid_input(format!(
                "image is missing: {} makes a video from an image",
                self.spec.key()
            ))
        })
    }
}

/// A submission of `req` to the model `key` ("provider/model"), for tests.
#[cfg(test)]
pub(crate) fn submission<'a>(
    key: &str,
    req: &'a CreateRequest,
    image: Option<&'a ImageInput>,
    end_image: Option<&'a ImageInput>,
    webhook: Option<&'a Webhook>,
) -> Submission<'a> {
    Submission {
        task_id: "t",
        req,
        spec: crate::catalog::find_key(key).unwrap(),
        image,
        end_image,
        references: &[],
        webhook,
    }
}

/// A 400x400 local PNG of four bytes (base64 `iVBORw==`), for body tests.
#[cfg(test)]
pub(crate) fn tiny_png() -> ImageInput {
    ImageInput::Local(Arc::new(crate::media::LocalImage {
        bytes: vec![0x89, b'P', b'N', b'G'],
        format: crate::media::Format::Png,
        width: 400,
        height: 400,
        has_alpha: false,
        sha256: "a".repeat(64),
        origin: "x".into(),
    }))
}

pub enum CancelOutcome {
    /// Cancelled upstream.
    Cancelled,
    /// The provider has no cancel, or refused it (e.g. the task already runs): say why.
    NotCancelled(String),
}

/// A provider's client as the watcher and the core use it. Each provider module implements it
/// for its `Client` (a few lines that call its own `submit`, `poll` and `cancel`).
pub trait Provider: Send + Sync {
    fn submit<'a>(&'a self, s: &'a Submission<'a>) -> BoxFuture<'a, Result<String, ProviderError>>;

    fn poll<'a>(&'a self, row: &'a TaskRow) -> BoxFuture<'a, Result<Snapshot, ProviderError>>;

    fn cancel<'a>(
        &'a self,
        row: &'a TaskRow,
    ) -> BoxFuture<'a, Result<CancelOutcome, ProviderError>>;

    /// Check a callback's own signature, for providers that sign them (headers and the raw
    /// body as they arrived). Runs before the task is looked up and before the per-task secret
    /// is compared; an `Err` (category `auth`) refuses the call with 401. Default: the provider
    /// does not sign, the per-task secret alone authenticates.
    fn verify_webhook<'a>(
        &'a self,
        _headers: &'a reqwest::header::HeaderMap,
        _body: &'a [u8],
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}

/// A header of a signed callback, trimmed; `None` when it is missing, empty or not text (for
/// [`Provider::verify_webhook`]).
pub(crate) fn callback_header<'a>(
    headers: &'a reqwest::header::HeaderMap,
    name: &str,
) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The provider's own id for a task (empty before it has one).
pub fn provider_task_id(row: &TaskRow) -> &str {
    row.provider_task_id.as_deref().unwrap_or_default()
}

/// The cancel of a provider without a cancel API.
pub fn no_cancel<'a>(decl: &Declaration) -> BoxFuture<'a, Result<CancelOutcome, ProviderError>> {
    let reason = format!("{} has no cancel API", decl.name);
    Box::pin(async move { Ok(CancelOutcome::NotCancelled(reason)) })
}
