//! What every HTTP provider shares: one client, sending with a classification of failures into
//! "surely not accepted" and "maybe accepted", Retry-After, and the generic status-code mapping.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;

use super::ProviderError;
use crate::error::{Category, Error, snippet};

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

/// The API key of a provider, or the `auth` error that says how to set it.
pub fn api_key(
    key: Option<&secrecy::SecretString>,
    provider: crate::model::ProviderId,
) -> Result<String, ProviderError> {
    use secrecy::ExposeSecret;
    key.map(|k| k.expose_secret().to_string()).ok_or_else(|| {
        ProviderError::rejected(
            Error::new(Category::Auth, format!("no API key for {provider}")).with_next_step(
                format!(
                    "set {} or use provider \"local\"",
                    provider.key_env().unwrap_or_default()
                ),
            ),
        )
    })
}

/// A generation the provider reported as failed, with what to do about it.
pub fn generation_failed(message: String) -> Error {
    Error::new(Category::GenerationFailed, message)
        .with_next_step("adjust the prompt or image and create a new task")
}

/// A provider's raw answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(
                Category::ProviderUnavailable,
                format!(
                    "{what}: the provider's answer does not parse ({e}); it began: {}",
                    snippet(&self.body)
                ),
            )
        })
    }
}

/// Send and read the whole body. Connection failures are classified: a refused or failed connect
/// never reached the provider (`Rejected`); anything after sending is `Unknown`.
pub async fn send(
    req: reqwest::RequestBuilder,
    timeout: Duration,
    what: &str,
) -> Result<Reply, ProviderError> {
    let resp = req
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| classify(e, what))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| classify(e, what))?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn classify(e: reqwest::Error, what: &str) -> ProviderError {
    if e.is_connect() {
        ProviderError::rejected(Error::new(
            Category::ProviderUnavailable,
            format!(
                "{what}: cannot connect to the provider ({e}); nothing was sent: try again later"
            ),
        ))
    } else if e.is_timeout() {
        ProviderError::unknown(Error::new(
            Category::Timeout,
            format!("{what}: the provider did not answer in time ({e})"),
        ))
    } else {
        ProviderError::unknown(Error::new(
            Category::ProviderUnavailable,
            format!("{what}: the connection failed ({e})"),
        ))
    }
}

/// Retry-After as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The category an HTTP status means when the body says nothing more specific.
pub fn category_for_status(status: u16) -> Category {
    match status {
        401 | 403 => Category::Auth,
        402 => Category::Credits,
        404 => Category::NotFound,
        429 => Category::RateLimited,
        400 | 405..=499 => Category::InvalidInput,
        _ => Category::ProviderUnavailable,
    }
}

/// What to tell the user to do for a category coming from a provider.
pub fn next_step(category: Category, key_env: &str) -> Option<String> {
    match category {
        Category::Auth => Some(format!("check {key_env} (or api_key in the config file)")),
        Category::Credits => Some("top up the provider account, then create again".into()),
        Category::RateLimited => Some("wait and create again".into()),
        Category::ProviderUnavailable => Some("try again in a minute".into()),
        Category::SubmitUnknown => Some(
            "check the provider dashboard before creating again: the task may exist and be charged"
                .into(),
        ),
        _ => None,
    }
}

/// Turn a non-success answer into a `ProviderError`. 5xx answers to a create are `Unknown` (the
/// provider may have accepted it); every other status is a definite refusal.
pub fn failure(reply: &Reply, category: Category, message: String, key_env: &str) -> ProviderError {
    let mut error = Error::new(category, message);
    error.next_step = next_step(category, key_env);
    let pe = if reply.status >= 500 {
        ProviderError::unknown(error)
    } else {
        ProviderError::rejected(error)
    };
    pe.with_retry_after(reply.retry_after())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(d.as_secs() > 100 && d.as_secs() <= 120, "{d:?}");
    }
}
