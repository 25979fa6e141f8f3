//! Request flows shared by all kinds: auth, fault injection, task creation and progression, polls,
//! cancel, downloads, uploads, webhooks, and each provider's error envelope. The axum handlers at
//! the bottom only pick the flow and the route.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::net::{self, ConnKill};
use super::{
    FakeProvider, Fault, Hook, Kind, Phase, Route, Shared, State as FakeState, StoredFile,
    TaskPlan, TaskRec, WebhookDelivery, apikley, dashscope, fal, lock, novita, piapi, replicate,
};

/// What a create body asks for beyond the task itself.
pub(super) struct Accepted {
    pub hook: Option<Hook>,
    /// Novita `extra.webhook.test_mode`: the status of the simulated event to send at once.
    pub test_mode: Option<String>,
}

/// A validation failure: the provider-level code (HTTP status or Apikley body code), the Novita
/// `reason` (ignored by the other kinds) and a message naming the field.
pub(super) struct Rejection {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Rejection {
    pub(super) fn new(code: u16, reason: &'static str, message: String) -> Rejection {
        Rejection {
            code,
            reason,
            message,
        }
    }
}

/// A webhook ready to send (built under the lock, sent after it is released).
pub(super) struct PendingHook {
    task_id: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Create,
    Poll,
    Download,
    Upload,
}

// ---------------------------------------------------------------------------------------------
// Error envelopes

/// The provider's error envelope for `code`:
/// PiAPI/Qubico `{"code","data":null,"message"}` with HTTP `code` (1.10);
/// Novita `{"code","reason","message"}` with HTTP `code` (2.5);
/// Apikley `{"code","msg","data":null}` with HTTP 200, or HTTP `code` under `apikley_http_status_errors` (3.6).
fn error(sh: &Shared, code: u16, reason: &str, message: &str) -> Response {
    match sh.kind {
        Kind::Piapi | Kind::Qubico => net::json(
            code,
            &json!({"code": code, "data": null, "message": message}),
        ),
        Kind::Novita => net::json(
            code,
            &json!({"code": code, "reason": reason, "message": message}),
        ),
        Kind::Apikley => {
            let http = if lock(&sh.state).apikley_http_status_errors {
                code
            } else {
                200
            };
            net::json(http, &json!({"code": code, "msg": message, "data": null}))
        }
        Kind::Dashscope => net::json(code, &dashscope::error_body(reason, message)),
        // Replicate's problem body; the title follows the status (its bodies carry no code).
        Kind::Replicate => {
            let title = match code {
                401 => "Unauthenticated",
                402 => "Insufficient credit",
                404 => "Not found",
                422 => "Input validation failed",
                429 => "Request was throttled",
                500..=599 => "Internal server error",
                _ => "Bad request",
            };
            let mut body = json!({"title": title, "detail": message, "status": code});
            if code == 422 {
                body["invalid_fields"] = json!([{"type": "validation", "field": "input",
                    "description": message.trim_start_matches("- ")}]);
            }
            net::json(code, &body)
        }
        Kind::Fal => net::json(code, &fal::error_body(code, message)),
    }
}

fn reject(sh: &Shared, r: Rejection) -> Response {
    error(sh, r.code, r.reason, &r.message)
}

fn invalid_json(sh: &Shared, e: &serde_json::Error) -> Response {
    let message = format!("request body is not valid JSON: {e}");
    match sh.kind {
        Kind::Apikley => error(sh, 422, "", &message),
        _ => error(sh, 400, "INVALID_REQUEST_BODY", &message),
    }
}

fn not_found(sh: &Shared) -> Response {
    error(sh, 404, "TASK_NOT_FOUND", "task not found")
}

fn auth_failure(sh: &Shared, headers: &HeaderMap) -> Option<Response> {
    let forced = lock(&sh.state).fail_auth;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let bearer = header("authorization").and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    });
    match sh.kind {
        Kind::Piapi | Kind::Qubico => match header("x-api-key") {
            None => Some(error(sh, 401, "", "missing API key (x-api-key header)")),
            Some(key) if forced || key != sh.api_key => Some(error(sh, 401, "", "invalid API key")),
            Some(_) => None,
        },
        Kind::Novita => match bearer {
            None => Some(error(sh, 400, "MISSING_API_KEY", "missing api-key")),
            Some(key) if forced || key != sh.api_key => {
                Some(error(sh, 403, "INVALID_API_KEY", "invalid api-key"))
            }
            Some(_) => None,
        },
        Kind::Dashscope => match bearer {
            None => Some(error(sh, 401, "InvalidApiKey", "No API-key provided.")),
            Some(key) if forced || key != sh.api_key => {
                Some(error(sh, 401, "InvalidApiKey", "Invalid API-key provided."))
            }
            Some(_) => None,
        },
        Kind::Replicate => match bearer {
            Some(key) if !forced && key == sh.api_key => None,
            _ => Some(error(
                sh,
                401,
                "",
                "You did not pass a valid authentication token",
            )),
        },
        // fal: `Authorization: Key <key>`; a missing or wrong key is 401 `{"detail"}`.
        Kind::Fal => {
            let key = header("authorization").and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                (scheme == "Key").then_some(token.trim())
            });
            match key {
                Some(key) if !forced && key == sh.api_key => None,
                None => Some(error(sh, 401, "", "Missing authentication header")),
                Some(_) => Some(error(sh, 401, "", "Invalid Key authorization header")),
            }
        }
        Kind::Apikley => match bearer {
            Some(key) if !forced && key == sh.api_key => None,
            _ => Some(error(
                sh,
                401,
                "",
                "Unauthorized - Authentication credentials are missing or invalid",
            )),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Faults

/// What a request does after its fault (if any) was looked at.
enum Then {
    /// Answer normally.
    Answer,
    /// Take effect, then answer with the 5xx shape (`AcceptThenServerError`).
    ServerError,
    /// Take effect, then hang (`Hang { after_accept: true }`).
    Hang,
}

/// Pops the next fault of a queue and sorts it: `Err(response)` answers now without any effect
/// (the request never reaches the provider's logic); `Ok(then)` lets the request take effect first.
async fn triage(
    sh: &Shared,
    conn: &ConnKill,
    ep: Endpoint,
    queue: fn(&mut FakeState) -> &mut VecDeque<Fault>,
) -> Result<Then, Response> {
    let fault = queue(&mut lock(&sh.state)).pop_front();
    let Some(fault) = fault else {
        return Ok(Then::Answer);
    };
    let resp = match fault {
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            return Ok(Then::Answer);
        }
        Fault::AcceptThenServerError => return Ok(Then::ServerError),
        Fault::Hang { after_accept: true } => return Ok(Then::Hang),
        Fault::Hang {
            after_accept: false,
        } => net::hang(sh, conn).await,
        Fault::Status {
            http,
            body,
            retry_after,
        } => net::raw(http, body, retry_after),
        Fault::RateLimited { retry_after_secs } => {
            let resp = if ep == Endpoint::Download {
                net::text(429, "text/plain", "429 Too Many Requests", None)
            } else if sh.kind == Kind::Replicate {
                error(
                    sh,
                    429,
                    "",
                    &format!(
                        "Request was throttled. Your rate limit resets in ~{retry_after_secs}s."
                    ),
                )
            } else {
                error(sh, 429, "RATE_LIMIT_EXCEEDED", "rate limit exceeded")
            };
            net::with_retry_after(resp, retry_after_secs)
        }
        Fault::ServerError => server_error(sh, ep),
        Fault::Malformed => malformed(sh.kind, ep),
        Fault::BodyCode { code, msg } => body_code(sh.kind, code, &msg),
        Fault::Drop => net::drop_connection(conn),
    };
    Err(resp)
}

/// The answer once the request took effect.
async fn finish(sh: &Shared, conn: &ConnKill, ep: Endpoint, then: Then, ok: Response) -> Response {
    match then {
        Then::Answer => ok,
        Then::ServerError => server_error(sh, ep),
        Then::Hang => net::hang(sh, conn).await,
    }
}

fn server_error(sh: &Shared, ep: Endpoint) -> Response {
    match (sh.kind, ep) {
        (_, Endpoint::Download) => net::text(500, "text/plain", "500 Internal Server Error", None),
        (Kind::Piapi | Kind::Qubico, _) => error(sh, 500, "", "internal server error"),
        (Kind::Novita, Endpoint::Create) => {
            error(sh, 500, "CREATE_TASK_FAILED", "create task failed")
        }
        (Kind::Novita, _) => error(sh, 500, "GET_RESULT_FAILED", "get result failed"),
        (Kind::Dashscope, _) => error(sh, 500, "InternalError", "An internal error has occured."),
        (Kind::Replicate, _) => error(sh, 500, "", "Internal server error"),
        (Kind::Fal, _) => error(sh, 500, "", "Internal Server Error"),
        // Apikley's OpenAPI documents a real HTTP 500 response, so it is not folded into HTTP 200.
        (Kind::Apikley, _) => net::json(
            500,
            &json!({"code": 500, "msg": "Server Error - An unexpected error occurred while processing the request", "data": null}),
        ),
    }
}

fn malformed(kind: Kind, ep: Endpoint) -> Response {
    let body = match (kind, ep) {
        (_, Endpoint::Download) => {
            // Not a video: what a misbehaving CDN or proxy sends with a 200.
            return net::text(
                200,
                "text/html",
                "<html><body><h1>502 Bad Gateway</h1>",
                None,
            );
        }
        (Kind::Piapi | Kind::Qubico, Endpoint::Create) => r#"{"code":200,"data":{"task_id":"#,
        (Kind::Piapi | Kind::Qubico, _) => r#"{"code":200,"message":"success","data":{"status":"#,
        (Kind::Novita, Endpoint::Create) => r#"{"task_id":"#,
        (Kind::Novita, _) => r#"{"task":{"status":"TASK_STATUS_"#,
        (Kind::Apikley, Endpoint::Create) => r#"{"code":200,"msg":"success","data":{"taskId":"#,
        (Kind::Apikley, Endpoint::Upload) => r#"{"success":true,"code":200,"data":{"downloadUrl":"#,
        (Kind::Apikley, _) => r#"{"code":200,"msg":"success","data":{"state":"#,
        (Kind::Dashscope, Endpoint::Create) => r#"{"output":{"task_status":"PENDING","task_id":"#,
        (Kind::Dashscope, _) => r#"{"output":{"task_status":"#,
        (Kind::Replicate, Endpoint::Create) => r#"{"id":"#,
        (Kind::Replicate, Endpoint::Upload) => r#"{"id":"f","urls":{"get":"#,
        (Kind::Replicate, _) => r#"{"status":"#,
        (Kind::Fal, Endpoint::Create) => r#"{"request_id":"7f3e","status_url":"#,
        (Kind::Fal, Endpoint::Upload) => r#"{"upload_url":"#,
        (Kind::Fal, _) => r#"{"status":"IN_"#,
    };
    net::text(200, "application/json", body, None)
}

/// HTTP 200 with the kind's envelope carrying a non-200 `code`.
fn body_code(kind: Kind, code: i64, msg: &str) -> Response {
    let body = match kind {
        Kind::Piapi | Kind::Qubico => json!({"code": code, "data": null, "message": msg}),
        Kind::Novita => json!({"code": code, "reason": msg, "message": msg}),
        Kind::Apikley => json!({"code": code, "msg": msg, "data": null}),
        // The error envelope (no `output`) behind a 2xx; `msg` is the DashScope code.
        Kind::Dashscope => dashscope::error_body(msg, &format!("code {code}")),
        Kind::Replicate => json!({"title": msg, "detail": msg, "status": code}),
        Kind::Fal => json!({"detail": msg, "code": code}),
    };
    net::json(200, &body)
}

// ---------------------------------------------------------------------------------------------
// Tasks

fn task_id(kind: Kind, seq: u64) -> String {
    // Deterministic per fake, so recorded requests snapshot well. PiAPI and Novita use UUIDs.
    match kind {
        Kind::Piapi => format!("a1b2c3d4-0000-4000-8000-{seq:012}"),
        Kind::Qubico => format!("9b1c0000-0000-4000-8000-{seq:012}"),
        Kind::Novita => format!("5e7a0000-0000-4000-8000-{seq:012}"),
        Kind::Apikley => format!("task_wan_{}", 1_765_172_522_238 + seq),
        Kind::Dashscope => format!("0385dc79-5ff8-4d82-bcb6-{seq:012}"),
        // Replicate ids: 26 lower-case letters and digits.
        Kind::Replicate => format!("rq{seq:024}"),
        Kind::Fal => fal::request_id(seq),
    }
}

pub(super) fn status_str(route: Route, phase: &Phase) -> &'static str {
    match route {
        Route::Wanx => piapi::status(phase),
        Route::NovitaWan21 | Route::NovitaWan26 | Route::NovitaWan27 | Route::NovitaWan27T2v => {
            novita::status(phase)
        }
        Route::Apikley => apikley::status(phase),
        Route::Dashscope => dashscope::status(phase, false),
        Route::Replicate => replicate::status(phase),
        Route::Fal => fal::status(phase),
    }
}

/// The poll answer for a task in `phase`.
fn render(sh: &Shared, task: &TaskRec, phase: &Phase) -> Value {
    match task.route {
        Route::Wanx => piapi::envelope(piapi::task_data(task, phase, &sh.root)),
        Route::NovitaWan21 | Route::NovitaWan26 | Route::NovitaWan27 | Route::NovitaWan27T2v => {
            novita::task_result(task, phase, &sh.root)
        }
        Route::Apikley => apikley::record_info(task, phase, &sh.root),
        Route::Dashscope => dashscope::task(task, phase, &sh.root),
        Route::Replicate => replicate::prediction(task, phase, &sh.root, task.output_removed()),
        Route::Fal => fal::status_body(task, phase, &sh.root),
    }
}

/// When a transition happened: on the plan's clock for `Duration` plans, else now.
fn moment(task: &TaskRec, ended: bool) -> SystemTime {
    match &task.plan {
        TaskPlan::Duration { total, .. } if !task.forced_final => {
            task.created_at + if ended { *total } else { *total / 5 }
        }
        _ => SystemTime::now(),
    }
}

/// Looks at a task now: records transition times, renders the poll answer, and returns the
/// webhook to send if the task just reached its final state (once per task).
pub(super) fn observe(sh: &Shared, task: &mut TaskRec) -> (Value, Option<PendingHook>) {
    let phase = task.phase(Instant::now());
    if !matches!(phase, Phase::Queued { .. }) && task.started_at.is_none() && !task.cancelled {
        task.started_at = Some(moment(task, false));
    }
    if phase.is_final() && task.ended_at.is_none() {
        task.ended_at = Some(moment(task, true));
    }
    let body = render(sh, task, &phase);
    let mut pending = None;
    if phase.is_final() && !task.hook_fired && !task.cancelled {
        task.hook_fired = true;
        if let Some(hook) = &task.hook {
            pending = Some(if task.route == Route::Fal {
                fal_hook(task, hook, &phase, &sh.root)
            } else {
                pending_hook(task, hook, &body)
            });
        }
    }
    (body, pending)
}

/// Webhook bodies: PiAPI `{"timestamp","data"}` + `x-webhook-secret` (1.8); Novita
/// `{"event_type","payload"}` (2.6); Apikley the `recordInfo` body (3.5).
fn pending_hook(task: &TaskRec, hook: &Hook, poll_body: &Value) -> PendingHook {
    let (body, headers) = match task.route {
        Route::Wanx => (
            piapi::hook_body(poll_body.get("data").cloned().unwrap_or(Value::Null)),
            hook.secret
                .iter()
                .map(|s| ("x-webhook-secret".to_string(), s.clone()))
                .collect(),
        ),
        Route::NovitaWan21 | Route::NovitaWan26 | Route::NovitaWan27 | Route::NovitaWan27T2v => {
            (novita::hook_body(poll_body.clone()), Vec::new())
        }
        // DashScope never gets a hook (the fake accepts none), and fal's are built by
        // `fal_hook`, so these arms are never taken for them.
        Route::Apikley | Route::Dashscope | Route::Fal => (poll_body.clone(), Vec::new()),
        // The prediction itself, signed (Standard Webhooks) over the exact bytes sent.
        Route::Replicate => (
            poll_body.clone(),
            replicate::signed_headers(&format!("msg_{}", task.id), &poll_body.to_string()),
        ),
    };
    PendingHook {
        task_id: task.id.clone(),
        url: hook.url.clone(),
        headers,
        body,
    }
}

/// fal's callback: the result as `payload`, signed over its exact bytes.
fn fal_hook(task: &TaskRec, hook: &Hook, phase: &Phase, root: &str) -> PendingHook {
    let body = fal::hook_body(task, phase, root);
    let headers = fal::signed_headers(&task.id, body.to_string().as_bytes());
    PendingHook {
        task_id: task.id.clone(),
        url: hook.url.clone(),
        headers,
        body,
    }
}

/// Sends a webhook in the background (one try) and records the delivery.
pub(super) fn spawn_hook(sh: &Arc<Shared>, hook: PendingHook) {
    let sh2 = Arc::clone(sh);
    sh.runtime.spawn(async move {
        let result = net::post_json(&hook.url, &hook.headers, &hook.body).await;
        let (status, error) = match result {
            Ok(code) => (Some(code), None),
            Err(e) => (None, Some(e)),
        };
        lock(&sh2.state).webhooks.push(WebhookDelivery {
            task_id: hook.task_id,
            url: hook.url,
            headers: hook.headers,
            body: hook.body,
            status,
            error,
        });
        sh2.webhook_sent.notify_waiters();
    });
}

/// `Duration` plans end without a poll; a timer fires their webhook at `total`.
fn schedule_final_hook(sh: &Arc<Shared>, id: String, total: Duration) {
    let weak = Arc::downgrade(sh);
    sh.runtime.spawn(async move {
        tokio::time::sleep(total).await;
        let Some(sh) = weak.upgrade() else {
            return;
        };
        let hook = {
            let mut st = lock(&sh.state);
            st.task_mut(&id).and_then(|t| observe(&sh, t).1)
        };
        if let Some(hook) = hook {
            spawn_hook(&sh, hook);
        }
    });
}

/// Novita `test_mode`: one simulated event with the requested status, sent at once; it replaces
/// the task's real final webhook (the task itself still answers polls per the plan).
fn send_test_event(sh: &Arc<Shared>, id: &str, status: &str) {
    let hook = {
        let mut st = lock(&sh.state);
        let Some(task) = st.task_mut(id) else {
            return;
        };
        task.hook_fired = true;
        let phase = if status == "TASK_STATUS_FAILED" {
            Phase::Failed("test mode: simulated failure".to_string())
        } else {
            Phase::Succeeded
        };
        let body = novita::task_result(task, &phase, &sh.root);
        task.hook
            .as_ref()
            .map(|hook| pending_hook(task, hook, &body))
    };
    if let Some(hook) = hook {
        spawn_hook(sh, hook);
    }
}

// ---------------------------------------------------------------------------------------------
// Flows

async fn create(
    sh: Arc<Shared>,
    conn: ConnKill,
    headers: &HeaderMap,
    raw: &[u8],
    route: Route,
    path: &str,
) -> Response {
    lock(&sh.state).creates += 1;
    if let Some(resp) = auth_failure(&sh, headers) {
        return resp;
    }
    let then = match triage(&sh, &conn, Endpoint::Create, |st| &mut st.create_faults).await {
        Ok(then) => then,
        Err(resp) => return resp,
    };
    let body: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => return invalid_json(&sh, &e),
    };
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let validated = match route {
        Route::Wanx => piapi::validate(sh.kind, &body),
        Route::NovitaWan21 => novita::validate_wan21(&body),
        Route::NovitaWan26 => novita::validate_wan26(&body),
        Route::NovitaWan27 => novita::validate_wan27(&body),
        Route::NovitaWan27T2v => novita::validate_wan27_t2v(&body),
        Route::Apikley => apikley::validate(&body),
        Route::Dashscope => dashscope::validate(&body),
        Route::Replicate => {
            let model = path
                .strip_prefix("/v1/models/wan-video/")
                .and_then(|m| m.strip_suffix("/predictions"))
                .unwrap_or("(another owner)");
            replicate::validate(model, &body)
        }
        Route::Fal => fal::validate(path.trim_start_matches('/'), query, &body),
    };
    let Accepted { hook, test_mode } = match validated {
        Ok(accepted) => accepted,
        Err(r) => return reject(&sh, r),
    };
    // Replicate: `Cancel-After` sets a deadline; one that does not read is refused.
    let deadline = match headers
        .get("cancel-after")
        .map(|v| v.to_str().unwrap_or(""))
    {
        Some(v) if route == Route::Replicate => match replicate::parse_cancel_after(v) {
            Some(d) => Some(d),
            None => {
                return error(
                    &sh,
                    400,
                    "",
                    &format!("Cancel-After: {v:?} is not a duration such as 90s, 5m or 1h"),
                );
            }
        },
        _ => None,
    };
    let (id, answer, timer) = {
        let mut st = lock(&sh.state);
        st.accepted_creates += 1;
        let seq = st.next_seq();
        let task = TaskRec {
            id: task_id(sh.kind, seq),
            route,
            route_path: path.to_string(),
            body,
            plan: st.plan.clone(),
            created_at: SystemTime::now(),
            created_instant: Instant::now(),
            answered_polls: 0,
            forced_final: false,
            cancelled: false,
            started_at: None,
            ended_at: None,
            hook,
            hook_fired: false,
            deadline: deadline.map(|d| Instant::now() + d),
            output_ttl: st.output_ttl,
        };
        let answer = match route {
            Route::Wanx => piapi::create_body(sh.kind, st.piapi_flat_create, &task, &sh.root),
            Route::NovitaWan21
            | Route::NovitaWan26
            | Route::NovitaWan27
            | Route::NovitaWan27T2v => {
                json!({ "task_id": task.id })
            }
            Route::Apikley => apikley::create_body(&task.id),
            Route::Dashscope => dashscope::create_answer(&task.id),
            Route::Replicate => {
                replicate::prediction(&task, &Phase::Queued { step: 0 }, &sh.root, false)
            }
            Route::Fal => fal::create_answer(&task, &sh.root),
        };
        let timer = match (&task.plan, &task.hook) {
            (TaskPlan::Duration { total, .. }, Some(_)) => Some(*total),
            _ => None,
        };
        let id = task.id.clone();
        st.tasks.push(task);
        (id, answer, timer)
    };
    if let Some(total) = timer {
        schedule_final_hook(&sh, id.clone(), total);
    }
    if let Some(status) = test_mode {
        send_test_event(&sh, &id, &status);
    }
    // Replicate answers a create with 201 Created.
    let code = if route == Route::Replicate { 201 } else { 200 };
    finish(&sh, &conn, Endpoint::Create, then, net::json(code, &answer)).await
}

async fn poll(
    sh: Arc<Shared>,
    conn: ConnKill,
    headers: &HeaderMap,
    id: Option<String>,
) -> Response {
    if let Some(id) = &id {
        *lock(&sh.state).polls.entry(id.clone()).or_default() += 1;
    }
    if let Some(resp) = auth_failure(&sh, headers) {
        return resp;
    }
    let then = match triage(&sh, &conn, Endpoint::Poll, |st| &mut st.poll_faults).await {
        Ok(then) => then,
        Err(resp) => return resp,
    };
    let Some(id) = id.filter(|id| !id.is_empty()) else {
        return match sh.kind {
            Kind::Apikley => error(&sh, 422, "", "taskId is required"),
            _ => error(&sh, 400, "INVALID_REQUEST_BODY", "task_id is required"),
        };
    };
    let found = {
        let mut st = lock(&sh.state);
        st.task_mut(&id).map(|task| {
            task.answered_polls = task.answered_polls.saturating_add(1);
            observe(&sh, task)
        })
    };
    let Some((body, hook)) = found else {
        return match sh.kind {
            // A.7: an unknown (or expired) id is HTTP 200 with status UNKNOWN.
            Kind::Dashscope => net::json(200, &dashscope::unknown(&id)),
            _ => not_found(&sh),
        };
    };
    if let Some(hook) = hook {
        spawn_hook(&sh, hook);
    }
    finish(&sh, &conn, Endpoint::Poll, then, net::json(200, &body)).await
}

/// PiAPI cancel (1.7): only while pending. The success body is UNKNOWN; the fake answers
/// `{"code":200,"data":{"task_id"},"message":"success"}`, and a refusal is HTTP 400 with the envelope.
/// A cancelled task then polls as `failed` with `error.message` "task cancelled" and sends no webhook.
async fn cancel(sh: Arc<Shared>, headers: &HeaderMap, id: &str) -> Response {
    if let Some(resp) = auth_failure(&sh, headers) {
        return resp;
    }
    let verdict = {
        let mut st = lock(&sh.state);
        st.task_mut(id).map(|task| {
            let phase = task.phase(Instant::now());
            if task.cancelled {
                Err("task is already cancelled".to_string())
            } else if matches!(phase, Phase::Queued { .. }) {
                task.cancelled = true;
                task.ended_at = Some(SystemTime::now());
                Ok(())
            } else {
                Err(format!(
                    "only pending tasks can be cancelled; task is {}",
                    piapi::status(&phase)
                ))
            }
        })
    };
    match (sh.kind, verdict) {
        // A.8: success is `{request_id}`; the answer for a non-PENDING task is UNKNOWN, the fake
        // sends HTTP 400 with the error envelope.
        (Kind::Dashscope, Some(Ok(()))) => net::json(200, &json!({"request_id": "c0a1"})),
        (Kind::Dashscope, Some(Err(message))) => error(&sh, 400, "UnsupportedOperation", &message),
        // fal: 202 while queued; once running or done the request cannot be stopped.
        (Kind::Fal, Some(Ok(()))) => net::json(202, &json!({"status": "CANCELLATION_REQUESTED"})),
        (Kind::Fal, Some(Err(_))) => net::json(400, &json!({"status": "ALREADY_COMPLETED"})),
        (_, None) => not_found(&sh),
        (_, Some(Ok(()))) => net::json(
            200,
            &json!({"code": 200, "data": {"task_id": id}, "message": "success"}),
        ),
        (_, Some(Err(message))) => error(&sh, 400, "", &message),
    }
}

/// `GET /files/{id}.mp4`: the video of a succeeded task (no auth, like a CDN).
async fn download_file(sh: Arc<Shared>, conn: ConnKill, file: &str) -> Response {
    lock(&sh.state).downloads += 1;
    let then = match triage(&sh, &conn, Endpoint::Download, |st| &mut st.download_faults).await {
        Ok(then) => then,
        Err(resp) => return resp,
    };
    let now = Instant::now();
    let ready = file.strip_suffix(".mp4").is_some_and(|id| {
        lock(&sh.state)
            .tasks
            .iter()
            .any(|t| t.id == id && t.phase(now) == Phase::Succeeded && !t.output_removed())
    });
    if !ready {
        return net::text(404, "text/plain", "404 Not Found", None);
    }
    let bytes = lock(&sh.state)
        .video
        .clone()
        .unwrap_or_else(FakeProvider::video_bytes);
    let video = net::text(200, "video/mp4", bytes, None);
    finish(&sh, &conn, Endpoint::Download, then, video).await
}

/// Apikley base64 upload (3.4); the file is then served at `downloadUrl`.
async fn upload(sh: Arc<Shared>, conn: ConnKill, headers: &HeaderMap, raw: &[u8]) -> Response {
    lock(&sh.state).uploads += 1;
    if let Some(resp) = auth_failure(&sh, headers) {
        return resp;
    }
    let then = match triage(&sh, &conn, Endpoint::Upload, |st| &mut st.upload_faults).await {
        Ok(then) => then,
        Err(resp) => return resp,
    };
    let body: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => return invalid_json(&sh, &e),
    };
    let upload = match apikley::parse_upload(&body) {
        Ok(u) => u,
        Err(r) => return reject(&sh, r),
    };
    let answer = {
        let mut st = lock(&sh.state);
        let seq = st.next_seq();
        let name = upload
            .file_name
            .clone()
            .unwrap_or_else(|| apikley::default_file_name(seq, &upload.bytes));
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let url = format!("{}/uploads/{seq}/{safe}", sh.root);
        let answer = apikley::upload_body(&upload, &name, &url);
        st.files.insert(
            format!("{seq}/{safe}"),
            StoredFile {
                bytes: upload.bytes,
                mime: upload.mime,
            },
        );
        answer
    };
    finish(&sh, &conn, Endpoint::Upload, then, net::json(200, &answer)).await
}

// ---------------------------------------------------------------------------------------------
// axum handlers

type Sh = State<Arc<Shared>>;
type Conn = ConnectInfo<ConnKill>;

pub(super) async fn wanx_create(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("{}/task", sh.kind.api_prefix());
    create(sh, conn, &headers, &body, Route::Wanx, &path).await
}

pub(super) async fn wanx_get(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    poll(sh, conn, &headers, Some(id)).await
}

pub(super) async fn wanx_cancel(
    State(sh): Sh,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    cancel(sh, &headers, &id).await
}

/// A.1: without `X-DashScope-Async: enable` the create is refused (403 `AccessDenied`).
pub(super) async fn dashscope_create(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = "/api/v1/services/aigc/video-generation/video-synthesis";
    let is_async = headers
        .get("x-dashscope-async")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("enable"));
    if !is_async {
        lock(&sh.state).creates += 1;
        return error(
            &sh,
            403,
            "AccessDenied",
            "current user api does not support synchronous calls",
        );
    }
    create(sh, conn, &headers, &body, Route::Dashscope, path).await
}

pub(super) async fn novita21_create(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(
        sh,
        conn,
        &headers,
        &body,
        Route::NovitaWan21,
        "/v3/async/wan-i2v",
    )
    .await
}

pub(super) async fn novita26_create(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(
        sh,
        conn,
        &headers,
        &body,
        Route::NovitaWan26,
        "/v3/async/wan2.6-i2v",
    )
    .await
}

pub(super) async fn novita27_create(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(
        sh,
        conn,
        &headers,
        &body,
        Route::NovitaWan27,
        "/v3/async/wan2.7-i2v",
    )
    .await
}

pub(super) async fn novita27_t2v_create(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(
        sh,
        conn,
        &headers,
        &body,
        Route::NovitaWan27T2v,
        "/v3/async/wan2.7-t2v",
    )
    .await
}

pub(super) async fn novita_result(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let id = query.get("task_id").cloned();
    poll(sh, conn, &headers, id).await
}

pub(super) async fn apikley_create(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(
        sh,
        conn,
        &headers,
        &body,
        Route::Apikley,
        "/api/v1/jobs/createTask",
    )
    .await
}

pub(super) async fn apikley_record(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let id = query.get("taskId").cloned();
    poll(sh, conn, &headers, id).await
}

pub(super) async fn apikley_upload(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    upload(sh, conn, &headers, &body).await
}

pub(super) async fn serve_upload(
    State(sh): Sh,
    Path((seq, name)): Path<(String, String)>,
) -> Response {
    let st = lock(&sh.state);
    match st.files.get(&format!("{seq}/{name}")) {
        Some(file) => net::text(200, &file.mime, file.bytes.clone(), None),
        None => net::text(404, "text/plain", "404 Not Found", None),
    }
}

pub(super) async fn download(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    Path(file): Path<String>,
) -> Response {
    download_file(sh, conn, &file).await
}

/// Unknown paths: HTTP 404 for every kind (Apikley included: an unknown route is not an API answer).
pub(super) async fn fallback(State(sh): Sh) -> Response {
    match sh.kind {
        Kind::Apikley => net::json(
            404,
            &json!({"code": 404, "msg": "Not Found - The requested resource or endpoint does not exist", "data": null}),
        ),
        _ => error(&sh, 404, "API_NOT_FOUND", "not found"),
    }
}

// ---------------------------------------------------------------------------------------------
// Replicate

pub(super) async fn replicate_create(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let path = format!("/v1/models/{owner}/{name}/predictions");
    create(sh, conn, &headers, &body, Route::Replicate, &path).await
}

/// `POST /v1/predictions/{id}/cancel`: a prediction not yet final ends `canceled`; the answer is
/// the prediction as it then stands (a final one unchanged).
pub(super) async fn replicate_cancel(
    State(sh): Sh,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(resp) = auth_failure(&sh, &headers) {
        return resp;
    }
    let body = {
        let mut st = lock(&sh.state);
        st.task_mut(&id).map(|task| {
            if !task.phase(Instant::now()).is_final() {
                task.cancelled = true;
                task.ended_at = Some(SystemTime::now());
            }
            observe(&sh, task).0
        })
    };
    match body {
        Some(b) => net::json(200, &b),
        None => not_found(&sh),
    }
}

/// `POST /v1/files`: multipart with a `content` file part (and optional `metadata`).
pub(super) async fn replicate_upload(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lock(&sh.state).uploads += 1;
    if let Some(resp) = auth_failure(&sh, &headers) {
        return resp;
    }
    let then = match triage(&sh, &conn, Endpoint::Upload, |st| &mut st.upload_faults).await {
        Ok(then) => then,
        Err(resp) => return resp,
    };
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parts = match replicate::multipart(ct, &body) {
        Ok(p) => p,
        Err(e) => return error(&sh, 400, "", &e),
    };
    let Some((_, filename, mime, bytes)) = parts.into_iter().find(|(n, ..)| n == "content") else {
        return error(&sh, 400, "", "the multipart body has no content part");
    };
    let Some(filename) = filename.filter(|f| !f.is_empty() && f.len() <= 255) else {
        return error(
            &sh,
            400,
            "",
            "the content part needs a filename (at most 255 bytes)",
        );
    };
    if bytes.len() as u64 > 100 * 1024 * 1024 {
        return error(&sh, 413, "", "files are limited to 100 MB");
    }
    let mime = mime.unwrap_or_else(|| "application/octet-stream".into());
    let answer = {
        let mut st = lock(&sh.state);
        let seq = st.next_seq();
        let id = format!("rf{seq:024}");
        let answer = replicate::file_answer(&id, &filename, &mime, &bytes, &sh.root);
        st.files
            .insert(format!("rf/{id}"), StoredFile { bytes, mime });
        answer
    };
    finish(&sh, &conn, Endpoint::Upload, then, net::json(201, &answer)).await
}

/// `GET /v1/files/{id}` (authenticated): the stored bytes.
pub(super) async fn replicate_file(
    State(sh): Sh,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(resp) = auth_failure(&sh, &headers) {
        return resp;
    }
    let st = lock(&sh.state);
    match st.files.get(&format!("rf/{id}")) {
        Some(file) => net::text(200, &file.mime, file.bytes.clone(), None),
        None => error(&sh, 404, "", "The requested resource could not be found."),
    }
}

/// `GET /v1/webhooks/default/secret`: `{"key": "whsec_..."}`.
pub(super) async fn replicate_secret(State(sh): Sh, headers: HeaderMap) -> Response {
    lock(&sh.state).secret_fetches += 1;
    if let Some(resp) = auth_failure(&sh, &headers) {
        return resp;
    }
    net::json(200, &json!({"key": replicate::SIGNING_SECRET}))
}

// ---------------------------------------------------------------------------------------------
// fal.ai (tests/support/fakes/fal.rs): one catch-all for the queue, plus storage and the JWKS.

/// `POST /{endpoint_id}` creates; `GET /{app}/requests/{id}/status` polls, `GET
/// /{app}/requests/{id}` reads the result, `PUT /{app}/requests/{id}/cancel` cancels.
pub(super) async fn fal_dispatch(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let at = parts.iter().position(|p| *p == "requests");
    match (method.as_str(), at) {
        ("POST", None) => {
            let full = match uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            create(sh, conn, &headers, &body, Route::Fal, &full).await
        }
        ("GET", Some(i)) if i == 2 && parts.len() == 5 && parts[4] == "status" => {
            poll(sh, conn, &headers, Some(parts[3].to_string())).await
        }
        ("GET", Some(i)) if i == 2 && parts.len() == 4 => fal_result(sh, &headers, parts[3]).await,
        ("PUT", Some(i)) if i == 2 && parts.len() == 5 && parts[4] == "cancel" => {
            cancel(sh, &headers, parts[3]).await
        }
        _ => error(
            &sh,
            404,
            "",
            &format!("{} {path}: no such queue route", method),
        ),
    }
}

/// The result of a finished request (400 while it is not).
async fn fal_result(sh: Arc<Shared>, headers: &HeaderMap, id: &str) -> Response {
    if let Some(resp) = auth_failure(&sh, headers) {
        return resp;
    }
    let now = Instant::now();
    let found = lock(&sh.state).task_mut(id).map(|t| {
        let phase = t.phase(now);
        fal::result(t, &phase, &sh.root)
    });
    match found {
        Some((code, body)) => net::json(code, &body),
        None => not_found(&sh),
    }
}

/// `POST /storage/upload/initiate?storage_type=gcs` `{file_name, content_type}` →
/// `{upload_url, file_url}`; the bytes come by `PUT upload_url`.
pub(super) async fn fal_upload_init(
    State(sh): Sh,
    ConnectInfo(conn): Conn,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lock(&sh.state).uploads += 1;
    if let Some(resp) = auth_failure(&sh, &headers) {
        return resp;
    }
    let then = match triage(&sh, &conn, Endpoint::Upload, |st| &mut st.upload_faults).await {
        Ok(then) => then,
        Err(resp) => return resp,
    };
    if uri.query() != Some("storage_type=gcs") {
        return error(
            &sh,
            422,
            "",
            "storage_type\u{1f}storage_type=gcs is required",
        );
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return invalid_json(&sh, &e),
    };
    let (name, mime) = match fal::parse_upload_init(&body) {
        Ok(x) => x,
        Err(r) => return reject(&sh, r),
    };
    let answer = {
        let mut st = lock(&sh.state);
        let seq = st.next_seq();
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        st.files.insert(
            format!("{seq}/{safe}"),
            StoredFile {
                bytes: Vec::new(),
                mime,
            },
        );
        json!({
            "upload_url": format!("{}/storage/put/{seq}?name={safe}&signature=fake", sh.root),
            "file_url": format!("{}/uploads/{seq}/{safe}", sh.root),
        })
    };
    finish(&sh, &conn, Endpoint::Upload, then, net::json(200, &answer)).await
}

/// The signed upload URL: takes the bytes with the initiated content type. It needs no key (what
/// the real storage does with one is UNKNOWN; fal-client sends its key along, we send none, and
/// the tests check ours).
pub(super) async fn fal_upload_put(
    State(sh): Sh,
    Path(seq): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = format!("{seq}/{}", query.get("name").cloned().unwrap_or_default());
    let mut st = lock(&sh.state);
    let Some(file) = st.files.get_mut(&key) else {
        return net::json(404, &json!({"detail": "no such upload"}));
    };
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct != file.mime {
        return net::json(
            400,
            &json!({"detail": format!("content-type {ct} is not the initiated {}", file.mime)}),
        );
    }
    file.bytes = body.to_vec();
    net::json(200, &json!({}))
}

pub(super) async fn fal_jwks(State(sh): Sh) -> Response {
    if lock(&sh.state).jwks_down {
        return net::json(503, &json!({"detail": "Service Unavailable"}));
    }
    net::json(200, &fal::jwks())
}
