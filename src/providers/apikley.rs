//! Placeholder: the apikley adapter is being written (issue 3).
use super::{ProviderError, Snapshot, Submission};
use crate::config::ProviderConfig;
use crate::error::Error;

pub struct Client;

impl Client {
    pub fn new(
        _cfg: &ProviderConfig,
        _http: reqwest::Client,
        _store: std::sync::Arc<crate::store::Store>,
    ) -> Self {
        Client
    }
    pub async fn submit(&self, _s: &Submission<'_>) -> Result<String, ProviderError> {
        Err(ProviderError::rejected(Error::unsupported(
            "apikley is not available yet",
        )))
    }
    pub async fn poll(&self, _ptid: &str) -> Result<Snapshot, ProviderError> {
        Err(ProviderError::rejected(Error::unsupported(
            "apikley is not available yet",
        )))
    }
}
