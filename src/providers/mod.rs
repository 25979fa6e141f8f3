//! Providers: one enum variant and one file of mostly pure translation each. The async part only
//! sends. Every provider answers in the same neutral terms: a provider task id on submit, a
//! `Snapshot` on poll, and a `ProviderError` that says whether the provider may have accepted a
//! create (which decides whether it may ever be retried).

pub mod apikley;
pub mod http;
pub mod local;
pub mod novita;
pub mod piapi;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::ModelSpec;
use crate::config::Config;
use crate::error::{Category, Error};
use crate::journal::{Journal, TaskRow};
use crate::media::ImageInput;
use crate::model::{CreateRequest, ProviderId, Status};

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
    pub image: &'a ImageInput,
    pub end_image: Option<&'a ImageInput>,
    pub webhook: Option<&'a Webhook>,
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
}

impl Provider {
    pub async fn submit(&self, s: &Submission<'_>) -> Result<String, ProviderError> {
        match self {
            Provider::Wanx(c) => c.submit(s).await,
            Provider::Novita(c) => c.submit(s).await,
            Provider::Apikley(c) => c.submit(s).await,
            Provider::Local(c) => c.submit(s).await,
        }
    }

    pub async fn poll(&self, row: &TaskRow) -> Result<Snapshot, ProviderError> {
        let ptid = row.provider_task_id.as_deref().unwrap_or_default();
        match self {
            Provider::Wanx(c) => c.poll(ptid).await,
            Provider::Novita(c) => c.poll(ptid).await,
            Provider::Apikley(c) => c.poll(ptid).await,
            Provider::Local(c) => c.poll(row).await,
        }
    }

    pub async fn cancel(&self, row: &TaskRow) -> Result<CancelOutcome, ProviderError> {
        let ptid = row.provider_task_id.as_deref().unwrap_or_default();
        match self {
            Provider::Wanx(c) => c.cancel(ptid).await,
            Provider::Novita(_) => Ok(CancelOutcome::NotCancelled(
                "Novita has no cancel API".into(),
            )),
            Provider::Apikley(_) => Ok(CancelOutcome::NotCancelled(
                "Apikley has no cancel API".into(),
            )),
            Provider::Local(c) => Ok(c.cancel(&row.id)),
        }
    }
}

/// Every provider, built once from the configuration with one shared HTTP client.
pub struct Providers {
    map: BTreeMap<ProviderId, Arc<Provider>>,
}

impl Providers {
    pub fn new(cfg: &Config, http: &http::HttpClient, journal: Journal) -> Providers {
        let mut map = BTreeMap::new();
        for (id, pc) in &cfg.providers {
            let p = match id {
                ProviderId::Piapi | ProviderId::Qubico => {
                    Provider::Wanx(piapi::Client::new(*id, pc, http.clone()))
                }
                ProviderId::Novita => Provider::Novita(novita::Client::new(pc, http.clone())),
                ProviderId::Apikley => {
                    Provider::Apikley(apikley::Client::new(pc, http.clone(), journal.clone()))
                }
                ProviderId::Local => Provider::Local(local::Client::new(
                    cfg.output_dir.clone(),
                    // A restarted render may read an inline image the journal kept by digest.
                    cfg.allowed_dirs
                        .iter()
                        .cloned()
                        .chain([crate::journal::inputs_dir(&cfg.data_dir)])
                        .collect(),
                )),
            };
            map.insert(*id, Arc::new(p));
        }
        Providers { map }
    }

    pub fn get(&self, id: ProviderId) -> Result<Arc<Provider>, Error> {
        self.map
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::internal(format!("provider {id} is not set up")))
    }
}
