//! The one HTTP client, shared by every provider and the downloader (the vocabulary's
//! [`super::Build`] hands it to each provider; [`super::http`] sends with it).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::Error;

/// The one HTTP client, shared by every provider and the downloader, built on first use (with
/// explicit timeouts): loading the system's CA roots costs time and memory that a server which
/// only lists tools, or only renders locally, never needs to pay.
#[derive(Clone, Default)]
pub struct HttpClient(Arc<OnceLock<reqwest::Client>>);

impl std::ops::Deref for HttpClient {
    type Target = reqwest::Client;
    fn deref(&self) -> &reqwest::Client {
        self.0.get_or_init(build)
    }
}

fn build() -> reqwest::Client {
    // reqwest is built without a default TLS provider (ring instead of aws-lc keeps the build
    // light); `client()` installed ring. A second install fails harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("i2v-mcp/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|e| {
            // Only a broken TLS setup fails here; a plain client still serves http:// bases.
            tracing::error!(error = %e, "cannot build the configured HTTP client; using defaults");
            reqwest::Client::new()
        })
}

/// The shared client (built lazily on first request). Installs the process-wide TLS crypto
/// provider now, which is cheap, so any reqwest client in the process can be built.
pub fn client() -> Result<HttpClient, Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(HttpClient::default())
}
