//! Asking the person before a create spends money (`[budget] confirm_above_usd`), in elicitation
//! form mode: on 2025 sessions an `elicitation/create` request while the call waits; on
//! 2026-07-28, which forbids server-to-client requests, an `InputRequiredResult` whose
//! `inputRequests` hold the same question, answered by the client retrying the call with
//! `inputResponses` and the echoed `requestState`.

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use rmcp::RoleServer;
use rmcp::model::{
    ClientCapabilities, ClientResult, ElicitRequest, ElicitRequestParams, ElicitationAction,
    ElicitationSchema, InputRequest, InputRequiredResult, InputResponses, ProtocolVersion,
    ServerRequest,
};
use rmcp::service::{Peer, RequestContext};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::core::{Answer, Consent, SpendAsk};

/// The key of the question in `inputRequests` / `inputResponses`.
pub const INPUT_KEY: &str = "spend_consent";

/// The boolean field of the form; accepting with it `false` is a decline.
const APPROVE: &str = "approve";

/// How this call can ask.
enum Way {
    /// 2025 session whose client declared form elicitation: ask now and wait.
    Request {
        peer: Peer<RoleServer>,
        cancel: CancellationToken,
    },
    /// 2026-07-28 with elicitation declared: the answer (if any) came with this call.
    Rounds {
        responses: Option<InputResponses>,
        state: Option<String>,
    },
    Cannot(String),
}

/// The consent of one `create_i2v_task` call.
pub struct CallConsent {
    way: Way,
    /// What the request is, for binding a 2026-07-28 answer to the question it answers.
    fingerprint: String,
    /// The question this call left unanswered (2026-07-28): the face returns it.
    pending: Mutex<Option<SpendAsk>>,
}

impl CallConsent {
    /// `stateless`: a legacy request over stateless HTTP, where the client's answer to a
    /// server request has no way back.
    pub fn new(
        rc: &RequestContext<RoleServer>,
        fingerprint: String,
        responses: Option<InputResponses>,
        state: Option<String>,
        stateless: bool,
    ) -> Arc<Self> {
        let rounds = rc
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        let form = form_declared(rc.client_capabilities().as_ref());
        let way = if stateless && !rounds {
            // Checked first: a stateless server does not keep what a 2025 client declared.
            Way::Cannot("a stateless HTTP server (serve --http --stateless) cannot ask during a 2025 session: the answer has no way back".into())
        } else if !form {
            Way::Cannot(
                "this client does not support elicitation (form mode), so it cannot be asked"
                    .into(),
            )
        } else if rounds {
            Way::Rounds { responses, state }
        } else {
            Way::Request {
                peer: rc.peer.clone(),
                cancel: rc.ct.clone(),
            }
        };
        Arc::new(CallConsent {
            way,
            fingerprint,
            pending: Mutex::new(None),
        })
    }

    /// The question to send back when the call stopped for it (2026-07-28).
    pub fn input_required(&self) -> Option<InputRequiredResult> {
        let ask = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        let question = InputRequest::Elicitation(ElicitRequest::new(form(&ask)));
        let requests = [(INPUT_KEY.to_string(), question)].into_iter().collect();
        Some(InputRequiredResult::new(
            Some(requests),
            Some(state_for(&self.fingerprint, &ask)),
        ))
    }

    async fn ask_now(
        &self,
        peer: &Peer<RoleServer>,
        cancel: &CancellationToken,
        ask: &SpendAsk,
    ) -> Answer {
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(form(ask)));
        let reply = tokio::select! {
            r = peer.send_request(request) => r,
            _ = cancel.cancelled() => return Answer::Declined,
        };
        match reply {
            Ok(ClientResult::ElicitResult(r)) => decide(r.action, r.content.as_ref()),
            Ok(other) => {
                Answer::Unavailable(format!("the client answered the question with {other:?}"))
            }
            Err(e) => Answer::Unavailable(format!("the client did not answer the question ({e})")),
        }
    }

    fn answered(
        &self,
        responses: Option<&InputResponses>,
        state: Option<&str>,
        ask: &SpendAsk,
    ) -> Answer {
        let reply = responses.and_then(|r| r.get(INPUT_KEY));
        match reply {
            // An answer to this very question (same request, same price) counts.
            Some(reply) if state == Some(state_for(&self.fingerprint, ask).as_str()) => {
                let action = reply
                    .get("action")
                    .and_then(|a| serde_json::from_value::<ElicitationAction>(a.clone()).ok());
                match action {
                    Some(action) => decide(action, reply.get("content")),
                    None => self.pend(ask),
                }
            }
            _ => self.pend(ask),
        }
    }

    fn pend(&self, ask: &SpendAsk) -> Answer {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(ask.clone());
        Answer::Pending
    }
}

impl Consent for CallConsent {
    fn ask<'a>(&'a self, ask: &'a SpendAsk) -> BoxFuture<'a, Answer> {
        match &self.way {
            Way::Request { peer, cancel } => self.ask_now(peer, cancel, ask).boxed(),
            Way::Rounds { responses, state } => {
                let answer = self.answered(responses.as_ref(), state.as_deref(), ask);
                futures::future::ready(answer).boxed()
            }
            Way::Cannot(why) => futures::future::ready(Answer::Unavailable(why.clone())).boxed(),
        }
    }
}

/// Whether the client can answer a form: `elicitation: {}` (2025-06-18) or with `form`.
fn form_declared(caps: Option<&ClientCapabilities>) -> bool {
    caps.and_then(|c| c.elicitation.as_ref())
        .is_some_and(|e| e.form.is_some() || e.url.is_none())
}

/// Accept (unless the form says `approve: false`) gives consent; decline and cancel do not.
fn decide(action: ElicitationAction, content: Option<&Value>) -> Answer {
    let approved = content
        .and_then(|c| c.get(APPROVE))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    match action {
        ElicitationAction::Accept if approved => Answer::Given,
        _ => Answer::Declined,
    }
}

fn form(ask: &SpendAsk) -> ElicitRequestParams {
    let price = ask
        .usd
        .map(|u| format!("${u:.2}"))
        .unwrap_or_else(|| "unknown price".into());
    let detail = format!(
        "{}/{}, {} s, {}; spent today ${:.2}",
        ask.provider, ask.model, ask.duration_seconds, ask.resolution, ask.spent_today_usd
    );
    let requested_schema = ElicitationSchema::builder()
        .title(format!("Approve {price}"))
        .required_bool_with(APPROVE, |b| {
            b.title(format!("Spend {price} on this video"))
                .description(detail)
                .with_default(true)
        })
        .build_unchecked();
    ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: ask.message(),
        requested_schema,
    }
}

/// `requestState`: binds an answer to the request and price it was given for. Not a secret: a
/// client could forge consent anyway (and `max_cost_usd` is consent by design); it keeps an
/// answer from carrying over to a different request or a changed price.
fn state_for(fingerprint: &str, ask: &SpendAsk) -> String {
    let mut h = Sha256::new();
    h.update(fingerprint.as_bytes());
    h.update(format!("|{:?}|{}/{}", ask.usd, ask.provider, ask.model).as_bytes());
    format!("consent-{}", hex::encode(&h.finalize()[..16]))
}
