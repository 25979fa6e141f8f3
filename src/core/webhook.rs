//! Provider webhooks. A callback is never trusted: it only asks the watcher to poll the provider
//! once, and only that poll changes the journal.

use subtle::ConstantTimeEq;

use super::Core;
use crate::error::{Category, Error, Result};
use crate::model::ProviderId;
use crate::providers::Webhook;
use crate::providers::registry::Declared;

/// What a webhook call led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// The task will be polled now; the journal changes only from that poll.
    Confirming { task_id: String },
}

impl Core {
    /// Turn provider webhooks on (HTTP mode with a public URL). Only the first call counts.
    pub fn enable_webhooks(&self, public_url: &str) {
        let _ = self
            .webhook_base
            .set(public_url.trim_end_matches('/').to_string());
    }

    pub fn webhooks_enabled(&self) -> bool {
        self.webhook_base.get().is_some()
    }

    /// Where `provider` should call back for task `id`, with a fresh per-task secret; `None`
    /// unless webhooks are on. The secret always travels in the URL (`token`); providers whose
    /// declaration names a `secret_header` also get it to send back in that header.
    pub(super) fn webhook_for(&self, provider: ProviderId, id: &str) -> Option<Webhook> {
        self.webhook_base.get().map(|base| {
            let secret = new_secret();
            Webhook {
                url: format!("{base}/webhooks/{provider}?task={id}&token={secret}"),
                secret,
            }
        })
    }

    /// A provider called back. A provider that signs its callbacks checks the signature first
    /// ([`crate::providers::Provider::verify_webhook`]); the task is found by our id (query
    /// `task`) or the provider's id in the body, the per-task secret is checked in constant time
    /// (a provider header or the `token` query parameter), and then the watcher polls the
    /// provider once (a GET). Duplicates and retries are harmless: each just asks for another
    /// poll.
    pub async fn webhook(
        &self,
        provider: ProviderId,
        task_id: Option<&str>,
        secret: Option<&str>,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<WebhookOutcome> {
        let client = self
            .providers
            .get(provider)
            .map_err(|_| Error::not_found("webhook for a provider this server does not run"))?;
        client.verify_webhook(headers, body).await?;
        let row = match task_id {
            Some(id) => self.journal.get(id).await?,
            None => match provider_task_id_in(body) {
                Some(ptid) => {
                    self.journal
                        .find_by_provider_id(provider.same_upstream(), &ptid)
                        .await?
                }
                None => None,
            },
        };
        let row = row
            .filter(|r| provider.same_upstream().contains(&r.provider))
            .ok_or_else(|| Error::not_found("webhook for an unknown task"))?;
        let expected = row.webhook_secret.as_deref().ok_or_else(|| {
            Error::new(Category::Auth, "this task was not created with a webhook")
        })?;
        if !secrets_match(expected, secret.unwrap_or_default()) {
            return Err(Error::new(Category::Auth, "webhook secret does not match"));
        }
        if !self.watcher.wake(&row.id) && !row.is_submitting() {
            self.watcher.watch(&row.id);
            self.watcher.wake(&row.id);
        }
        Ok(WebhookOutcome::Confirming { task_id: row.id })
    }
}

fn secrets_match(expected: &str, given: &str) -> bool {
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// The provider's task id in a webhook body, where any provider's declaration says it stands.
fn provider_task_id_in(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    crate::providers::registry::declarations()
        .filter_map(|d| d.webhook)
        .filter_map(|w| v.pointer(w.task_id_at))
        .find_map(|x| x.as_str().map(String::from))
}

fn new_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_found_in_each_documented_body_shape() {
        for body in [
            r#"{"data":{"task_id":"a1"}}"#,
            r#"{"payload":{"task":{"task_id":"a1"}}}"#,
            r#"{"data":{"taskId":"a1"}}"#,
        ] {
            assert_eq!(provider_task_id_in(body.as_bytes()).as_deref(), Some("a1"));
        }
        assert_eq!(provider_task_id_in(b"{\"data\":{\"task_id\":7}}"), None);
        assert_eq!(provider_task_id_in(b"not json"), None);
    }

    #[test]
    fn secrets_are_fresh_and_compared_exactly() {
        let (a, b) = (new_secret(), new_secret());
        assert_eq!(a.len(), 48);
        assert_ne!(a, b);
        assert!(secrets_match(&a, &a.clone()));
        assert!(!secrets_match(&a, &b));
        assert!(!secrets_match(&a, &a[..47]));
        assert!(!secrets_match(&a, ""));
    }
}
