//! The one runner for HTTP providers: one client, [`Api`] sending typed bodies with the auth the
//! provider declares, and the rules written once: which failures surely did not reach the
//! provider (`Rejected`) and which may have (`Unknown`), error bodies kept (truncated) in the
//! error, an answer that does not parse, and "succeeded without a video URL is failed".
//! Provider modules keep the pure translation and their own reading of error bodies.

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Acceptance, Auth, ProviderConfig, ProviderError};
use crate::error::{Category, Error, snippet};
use crate::model::ProviderId;

pub use super::client::{HttpClient, client};

/// The API key of a provider, or the `auth` error that says how to set it (`no_key`, see
/// [`ProviderConfig::no_key`]).
pub fn api_key(
    key: Option<&SecretString>,
    provider: ProviderId,
    no_key: &str,
) -> Result<String, ProviderError> {
    key.map(|k| k.expose_secret().to_string()).ok_or_else(|| {
        ProviderError::rejected(
            Error::new(Category::Auth, format!("no API key for {provider}"))
                .with_next_step(no_key.to_string()),
        )
    })
}

/// What a request is for: it decides what a failure means for the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Create,
    Poll,
    Cancel,
    /// An upload before a create: nothing is created or paid when it fails.
    Upload,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Create => "create",
            Stage::Poll => "poll",
            Stage::Cancel => "cancel",
            Stage::Upload => "image upload",
        }
    }

    /// THE rule: whether a failed request may have been taken by the provider. `reached`: it was
    /// sent and the answer (if any) does not say surely not. An upload never creates a task.
    pub fn acceptance(self, reached: bool) -> Acceptance {
        match self {
            Stage::Upload => Acceptance::Rejected,
            Stage::Create | Stage::Poll | Stage::Cancel if reached => Acceptance::Unknown,
            Stage::Create | Stage::Poll | Stage::Cancel => Acceptance::Rejected,
        }
    }
}

/// An answer that does not parse (or lacks what it must hold): after a 2xx to a create the task
/// may exist (`submit_unknown`); a poll goes on polling; an upload created nothing.
pub fn unreadable(stage: Stage, message: String) -> ProviderError {
    let category = match stage {
        Stage::Create => Category::SubmitUnknown,
        Stage::Poll | Stage::Cancel | Stage::Upload => Category::ProviderUnavailable,
    };
    let error = Error::new(category, message);
    match stage.acceptance(true) {
        Acceptance::Unknown => ProviderError::unknown(error),
        Acceptance::Rejected => ProviderError::rejected(error),
    }
}

/// Parse an answer as `O`, or [`unreadable`] with what the body began with.
pub fn parse<O: DeserializeOwned>(
    reply: &Reply,
    stage: Stage,
    whose: &str,
) -> Result<O, ProviderError> {
    serde_json::from_slice(&reply.body).map_err(|e| {
        unreadable(
            stage,
            format!(
                "{}: the {whose} answer does not parse ({e}); it began: {}",
                stage.as_str(),
                snippet(&reply.body)
            ),
        )
    })
}

/// A task the provider reported as succeeded without a video URL: failed, since nothing can be
/// fetched. `why` says what was missing.
pub fn no_video(why: &str, next_step: &str) -> Error {
    Error::new(Category::GenerationFailed, why).with_next_step(next_step)
}

/// One provider's HTTP endpoint: base URL, key, timeout and the shared client; it sends, with the
/// auth the provider declares, and reads the whole answer. Bodies are typed: one that cannot be
/// encoded is an error, never a `null` sent to a paid API.
pub struct Api {
    pub id: ProviderId,
    base_url: String,
    key: Option<SecretString>,
    auth: Auth,
    no_key: String,
    timeout: Duration,
    http: HttpClient,
}

impl Api {
    pub fn new(id: ProviderId, cfg: &ProviderConfig, http: HttpClient) -> Api {
        Api {
            id,
            base_url: cfg.base_url.trim_end_matches('/').to_string(),
            key: cfg.api_key.clone(),
            auth: cfg.auth,
            no_key: cfg.no_key.clone(),
            timeout: cfg.timeout,
            http,
        }
    }

    fn authorize(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let key = || api_key(self.key.as_ref(), self.id, &self.no_key);
        Ok(match self.auth {
            Auth::Bearer => req.bearer_auth(key()?),
            Auth::Header(name) => req.header(name, key()?),
            Auth::Scheme(scheme) => req.header(
                reqwest::header::AUTHORIZATION,
                format!("{scheme} {}", key()?),
            ),
            Auth::None => req,
        })
    }

    /// Send one request and read the whole answer, whatever its status. A failed upload is
    /// always `Rejected` (see [`Stage::acceptance`]).
    pub async fn execute(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        stage: Stage,
    ) -> Result<Reply, ProviderError> {
        self.execute_with(method, path, query, &[], body, stage)
            .await
    }

    /// [`Api::execute`] with extra headers (a provider's own, e.g. DashScope's async switch).
    pub async fn execute_with(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&'static str, &'static str)],
        body: Option<Vec<u8>>,
        stage: Stage,
    ) -> Result<Reply, ProviderError> {
        let body = body.map(|b| ("application/json".to_string(), b));
        let url = format!("{}{path}", self.base_url);
        self.send_at(method, &url, query, headers, body, stage)
            .await
    }

    /// POST a body that is not JSON (a multipart upload), with its own content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: String,
        body: Vec<u8>,
        stage: Stage,
    ) -> Result<Reply, ProviderError> {
        let url = format!("{}{path}", self.base_url);
        self.send_at(
            Method::POST,
            &url,
            &[],
            &[],
            Some((content_type, body)),
            stage,
        )
        .await
    }

    /// [`Api::execute_with`] to a whole URL rather than a path under the base URL: one the
    /// provider handed back (fal's `status_url`), sent with the same auth. The caller checks
    /// that it trusts the URL's host before sending its key there.
    pub async fn execute_at(
        &self,
        method: Method,
        url: &str,
        query: &[(&str, &str)],
        headers: &[(&'static str, &'static str)],
        body: Option<Vec<u8>>,
        stage: Stage,
    ) -> Result<Reply, ProviderError> {
        let body = body.map(|b| ("application/json".to_string(), b));
        self.send_at(method, url, query, headers, body, stage).await
    }

    /// Send to `url` with this provider's auth; `body` is (content type, bytes).
    async fn send_at(
        &self,
        method: Method,
        url: &str,
        query: &[(&str, &str)],
        headers: &[(&'static str, &'static str)],
        body: Option<(String, Vec<u8>)>,
        stage: Stage,
    ) -> Result<Reply, ProviderError> {
        let mut req = self.http.request(method, url);
        if !query.is_empty() {
            req = req.query(query);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req = self.authorize(req)?;
        if let Some((content_type, body)) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        send(req, self.timeout, stage.as_str())
            .await
            .map_err(|mut pe| {
                if stage.acceptance(true) == Acceptance::Rejected {
                    pe.acceptance = Acceptance::Rejected;
                }
                pe
            })
    }

    /// POST a typed JSON body.
    pub async fn post<I: Serialize>(
        &self,
        path: &str,
        body: &I,
        stage: Stage,
    ) -> Result<Reply, ProviderError> {
        self.post_with(path, &[], body, stage).await
    }

    /// POST a typed JSON body with extra headers.
    pub async fn post_with<I: Serialize>(
        &self,
        path: &str,
        headers: &[(&'static str, &'static str)],
        body: &I,
        stage: Stage,
    ) -> Result<Reply, ProviderError> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            ProviderError::rejected(Error::internal(format!(
                "{}: cannot encode the {} request: {e}",
                stage.as_str(),
                self.id
            )))
        })?;
        self.execute_with(Method::POST, path, &[], headers, Some(bytes), stage)
            .await
    }

    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
        stage: Stage,
    ) -> Result<Reply, ProviderError> {
        self.execute(Method::GET, path, query, None, stage).await
    }

    /// The base URL (without a trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub async fn delete(&self, path: &str, stage: Stage) -> Result<Reply, ProviderError> {
        self.execute(Method::DELETE, path, &[], None, stage).await
    }
}

/// A generation the provider reported as failed, with what to do about it.
pub fn generation_failed(message: String) -> Error {
    Error::new(Category::GenerationFailed, message)
        .with_next_step("adjust the prompt or image and create a new task")
}

/// A generation `name` reported as failed, with its `code` (" (code 500)" or "") and reason
/// (blank: "no reason given").
pub fn failed_because(name: &str, code: &str, reason: Option<String>) -> Error {
    let reason = reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "no reason given".into());
    generation_failed(format!("{name} generation failed{code}: {reason}"))
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
    settle(error, reply.status >= 500, reply)
}

/// A refusal read from an answer: `Unknown` when the answer leaves open that the provider took
/// the request (`maybe_taken`), else `Rejected`; Retry-After kept.
pub fn settle(error: Error, maybe_taken: bool, reply: &Reply) -> ProviderError {
    let pe = if maybe_taken {
        ProviderError::unknown(error)
    } else {
        ProviderError::rejected(error)
    };
    pe.with_retry_after(reply.retry_after())
}

/// An answer with `status` and `body`, for tests.
#[cfg(test)]
pub(crate) fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: HeaderMap::new(),
        body: Bytes::from(body.to_string()),
    }
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
