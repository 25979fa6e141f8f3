//! Providers: one enum variant, one registry line and one file of mostly pure translation each.
//! Each file declares everything about its provider in one [`Declaration`] (key variable, base
//! URL, auth, rate limits, models, extra checks, webhooks, cancel); the rest of the server reads
//! those declarations and names no provider. The async part only sends (through `http::Api`).
//! Every provider answers in the same neutral terms: a provider task id on submit, a `Snapshot`
//! on poll, and a `ProviderError` that says whether the provider may have accepted a create
//! (which decides whether it may ever be retried).
//!
//! Adding a provider: see CONTRIBUTING.md ("Adding a provider").

pub mod apikley;
pub mod dashscope;
pub mod http;
pub mod local;
pub mod novita;
pub mod piapi;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rmcp::schemars::{self, JsonSchema};
use serde::{Deserialize, Serialize};

use crate::catalog::{Lora, ModelSpec};
use crate::config::{Config, RateLimits};
use crate::error::{Category, Error};
use crate::journal::{Journal, TaskRow};
use crate::media::ImageInput;
use crate::model::{CreateRequest, Status};

/// Provider id.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ProviderId {
    Piapi,
    Qubico,
    Novita,
    Apikley,
    Local,
    Dashscope,
}

/// Every provider's declaration, one line each, in `ProviderId` order (tested).
static REGISTRY: &[&Declaration] = &[
    &piapi::PIAPI,
    &piapi::QUBICO,
    &novita::DECL,
    &apikley::DECL,
    &local::DECL,
    &dashscope::DECL,
];

impl ProviderId {
    /// Every provider, in declaration order.
    pub const ALL: &'static [ProviderId] = <ProviderId as strum::VariantArray>::VARIANTS;

    /// What this provider declares about itself.
    pub fn decl(self) -> &'static Declaration {
        REGISTRY[self as usize]
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The environment variable holding this provider's key, if it needs one.
    pub fn key_env(self) -> Option<&'static str> {
        self.decl().key_env
    }

    /// The environment variable overriding this provider's base URL.
    pub fn base_url_env(self) -> String {
        format!("I2V_MCP_{}_BASE_URL", self.as_str().to_ascii_uppercase())
    }

    /// The environment variable that allows creates on this provider's retired models.
    pub fn allow_retired_env(self) -> String {
        format!(
            "I2V_MCP_{}_ALLOW_RETIRED",
            self.as_str().to_ascii_uppercase()
        )
    }

    pub fn default_base_url(self) -> Option<&'static str> {
        self.decl().default_base_url
    }

    /// The ids that reach the same upstream as this one (itself included): a webhook for one may
    /// name a task created through another.
    pub fn same_upstream(self) -> &'static [ProviderId] {
        self.decl().same_upstream
    }
}

impl std::str::FromStr for ProviderId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        ProviderId::ALL
            .iter()
            .copied()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = ProviderId::ALL.iter().map(|p| p.as_str()).collect();
                Error::invalid_input(format!(
                    "unknown provider '{s}': use one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// Every declaration, in `ProviderId` order.
pub fn declarations() -> impl Iterator<Item = &'static Declaration> {
    REGISTRY.iter().copied()
}

/// The provider used when none is asked for, configured or keyed: the first declared.
pub fn fallback() -> ProviderId {
    REGISTRY[0].id
}

/// The first provider that needs no key (offered when no key is set), if any.
pub fn keyless() -> Option<&'static Declaration> {
    declarations().find(|d| !d.needs_key())
}

/// The `auth` message when no provider has a key: every key variable, and the keyless provider.
pub fn no_key_message() -> String {
    let vars: Vec<&str> = declarations().filter_map(|d| d.key_env).collect();
    let vars = match vars.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => vars.join(""),
    };
    let offer = keyless()
        .map(|d| {
            format!(
                ", or pass provider \"{}\" for {}",
                d.id,
                d.keyless_offer.unwrap_or("a free preview")
            )
        })
        .unwrap_or_default();
    format!("no provider has an API key: set {vars}{offer}")
}

/// What `list_loras` says about LoRA names: each provider's note.
pub fn lora_note() -> String {
    let notes: Vec<&str> = declarations().filter_map(|d| d.lora_note).collect();
    format!("{}.", notes.join("; "))
}

/// How a provider authenticates its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// The key as the value of this header.
    Header(&'static str),
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
    pub build: fn(&Build<'_>) -> Provider,
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
    pub cfg: &'a Config,
    pub provider: &'a crate::config::ProviderConfig,
    pub http: &'a http::HttpClient,
    pub journal: &'a Journal,
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
    pub references: &'a [crate::refs::Reference],
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

pub enum Provider {
    /// PiAPI and Qubico: one adapter, two hosts.
    Wanx(piapi::Client),
    Novita(novita::Client),
    Apikley(apikley::Client),
    Local(local::Client),
    Dashscope(dashscope::Client),
}

impl Provider {
    pub async fn submit(&self, s: &Submission<'_>) -> Result<String, ProviderError> {
        match self {
            Provider::Wanx(c) => c.submit(s).await,
            Provider::Novita(c) => c.submit(s).await,
            Provider::Apikley(c) => c.submit(s).await,
            Provider::Local(c) => c.submit(s).await,
            Provider::Dashscope(c) => c.submit(s).await,
        }
    }

    pub async fn poll(&self, row: &TaskRow) -> Result<Snapshot, ProviderError> {
        let ptid = row.provider_task_id.as_deref().unwrap_or_default();
        match self {
            Provider::Wanx(c) => c.poll(ptid).await,
            Provider::Novita(c) => c.poll(ptid).await,
            Provider::Apikley(c) => c.poll(ptid).await,
            Provider::Local(c) => c.poll(row).await,
            Provider::Dashscope(c) => c.poll(ptid).await,
        }
    }

    pub async fn cancel(&self, row: &TaskRow) -> Result<CancelOutcome, ProviderError> {
        let ptid = row.provider_task_id.as_deref().unwrap_or_default();
        match self {
            Provider::Wanx(c) => c.cancel(ptid).await,
            Provider::Local(c) => Ok(c.cancel(&row.id)),
            Provider::Dashscope(c) => c.cancel(ptid).await,
            Provider::Novita(_) | Provider::Apikley(_) => Ok(CancelOutcome::NotCancelled(format!(
                "{} has no cancel API",
                row.provider.decl().name
            ))),
        }
    }
}

/// Every provider, built once from the configuration with one shared HTTP client.
pub struct Providers {
    map: BTreeMap<ProviderId, Arc<Provider>>,
}

impl Providers {
    pub fn new(cfg: &Config, http: &http::HttpClient, journal: Journal) -> Providers {
        let map = cfg
            .providers
            .iter()
            .map(|(id, pc)| {
                let b = Build {
                    id: *id,
                    cfg,
                    provider: pc,
                    http,
                    journal: &journal,
                };
                (*id, Arc::new((id.decl().build)(&b)))
            })
            .collect();
        Providers { map }
    }

    pub fn get(&self, id: ProviderId) -> Result<Arc<Provider>, Error> {
        self.map
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::internal(format!("provider {id} is not set up")))
    }
}
