//! Fake Wan 2.x provider servers on 127.0.0.1 for the integration tests.
//!
//! One [`FakeProvider`] speaks one provider's wire contract from `shared/providers/CONTRACTS.md`:
//! PiAPI and Qubico WanX (section 1), Novita Wan 2.1 / Wan 2.6 (section 2) and Apikley Wan 2.2 turbo
//! (section 3), DashScope, and Replicate (`docs/notes/replicate.md`: predictions, Files API, signed
//! webhooks, Cancel-After, outputs deleted after an "hour"), including their documented error bodies. It records every request, advances tasks
//! per answered poll ([`TaskPlan::Polls`]) or by the clock ([`TaskPlan::Duration`]), serves one
//! deterministic video ([`FakeProvider::video_bytes`]), posts webhooks, and fails on purpose through
//! queued [`Fault`]s.
//!
//! Where the contract says UNKNOWN, the choice made here is written next to the code that makes it.
//! Counting rules: `creates`, `polls`, `uploads` and `downloads` count every request that reached the
//! handler (auth failures and faults included). A poll advances a [`TaskPlan::Polls`] task only when
//! it takes effect: normally, or under `Delay`, `AcceptThenServerError` or `Hang { after_accept: true }`;
//! the other faults answer before the task is looked at.

// Every integration-test binary includes this module and each uses a different part of it.
#![allow(dead_code)]

mod apikley;
mod check;
mod dashscope;
mod dashscope_wan3;
pub mod fal;
mod flow;
mod net;
mod novita;
mod piapi;
mod replicate;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use serde_json::Value;
use sha2::Digest;
use tokio::sync::{Notify, watch};

/// Which provider a fake imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// PiAPI WanX: `x-api-key`, base URL `<root>/api/v1`.
    Piapi,
    /// Qubico WanX: same API as PiAPI on `<root>/v1`, header `X-API-Key`, 413 for images over 10 MB.
    Qubico,
    /// Novita Wan 2.1 (`/v3/async/wan-i2v`), Wan 2.6 (`/v3/async/wan2.6-i2v`) and Wan 2.7
    /// (`/v3/async/wan2.7-i2v`, CONTRACTS-2026-12.md B), bearer auth.
    Novita,
    /// Apikley (kie.ai-style market API), bearer auth, HTTP 200 with a body `code` on errors.
    Apikley,
    /// DashScope (Alibaba Model Studio), bearer auth, base URL `<root>/api/v1`, async header on create.
    Dashscope,
    /// fal.ai queue API (`Authorization: Key`), storage uploads and the signing JWKS on one root.
    Fal,
    /// Replicate predictions API (`/v1/...`), bearer auth, Files API, signed webhooks.
    Replicate,
}

impl Kind {
    /// Lower-case provider id, as used in the key `test-key-<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Piapi => "piapi",
            Kind::Qubico => "qubico",
            Kind::Novita => "novita",
            Kind::Apikley => "apikley",
            Kind::Dashscope => "dashscope",
            Kind::Replicate => "replicate",
            Kind::Fal => "fal",
        }
    }

    /// Path prefix that production base URLs carry (`https://api.piapi.ai/api/v1`, ...).
    fn api_prefix(self) -> &'static str {
        match self {
            Kind::Piapi | Kind::Dashscope => "/api/v1",
            Kind::Qubico => "/v1",
            Kind::Novita | Kind::Apikley | Kind::Fal | Kind::Replicate => "",
        }
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Raw query string without `?` (empty when there is none).
    pub query: String,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `Null` when empty or not JSON (see `body_text`).
    pub body: Value,
    pub body_text: String,
}

impl Recorded {
    /// First value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How tasks created from now on progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskPlan {
    /// Deterministic by poll count: `pending` polls answer queued, then `processing` polls answer running (with progress rising), then the outcome.
    Polls {
        pending: u32,
        processing: u32,
        outcome: Outcome,
    },
    /// Time based (for benchmarks): queued for the first 20% of `total`, running until `total`, then the outcome.
    Duration { total: Duration, outcome: Outcome },
}

impl Default for TaskPlan {
    /// One queued poll, two running polls, then success.
    fn default() -> Self {
        TaskPlan::Polls {
            pending: 1,
            processing: 2,
            outcome: Outcome::Succeed,
        }
    }
}

/// How a task ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeed,
    Fail { message: String },
}

impl Outcome {
    pub fn fail(message: impl Into<String>) -> Outcome {
        Outcome::Fail {
            message: message.into(),
        }
    }
}

/// A failure injected into the next create, poll, download or upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Exact raw body to send (`application/json` when it parses as JSON, else `text/plain`).
    Status {
        http: u16,
        body: String,
        retry_after: Option<u64>,
    },
    /// The provider's documented 429 shape, with a `Retry-After` header.
    RateLimited { retry_after_secs: u64 },
    /// The provider's documented 5xx shape.
    ServerError,
    /// Create: the task IS created upstream but the answer is the 5xx shape (ambiguous create).
    /// Elsewhere too the request takes effect first (a poll advances the task, an upload is stored).
    AcceptThenServerError,
    /// Never answer: hold the connection (60 s by default, see `set_hang_duration`), then close it
    /// without a response. `after_accept`: the create/upload takes effect first; a poll advances the task.
    Hang { after_accept: bool },
    /// HTTP 200 whose body is truncated JSON (e.g. `{"code":200,"data":{"task_id":`).
    Malformed,
    /// HTTP 200 with the provider's envelope and a non-200 body `code` (Apikley style).
    BodyCode { code: i64, msg: String },
    /// Close the connection without any response bytes (a real close, not an approximation).
    Drop,
    /// A slow provider: wait this long, then answer normally (the request takes effect).
    Delay(Duration),
}

impl Fault {
    /// Raw status and body.
    pub fn status(http: u16, body: impl Into<String>) -> Fault {
        Fault::Status {
            http,
            body: body.into(),
            retry_after: None,
        }
    }

    /// PiAPI/Qubico unified envelope error: `{"code":http,"data":null,"message":...}` with that HTTP status.
    pub fn piapi_error(http: u16, message: &str) -> Fault {
        Fault::status(
            http,
            serde_json::json!({"code": http, "data": null, "message": message}).to_string(),
        )
    }

    /// Novita error (CONTRACTS 2.5): `{"code":http,"reason":...,"message":...}` with that HTTP status,
    /// e.g. `Fault::novita_reason(400, "ILLEGAL_PROMPT", "prompt rejected")`.
    pub fn novita_reason(http: u16, reason: &str, message: &str) -> Fault {
        Fault::status(
            http,
            serde_json::json!({"code": http, "reason": reason, "message": message}).to_string(),
        )
    }

    /// Apikley error (CONTRACTS 3.6) as HTTP 200 with body `{"code":code,"msg":...}`,
    /// e.g. `Fault::apikley_code(402, "insufficient credits")`.
    pub fn apikley_code(code: i64, msg: &str) -> Fault {
        Fault::BodyCode {
            code,
            msg: msg.to_string(),
        }
    }

    /// Replicate's problem body `{"title","detail","status"}` with that HTTP status, e.g.
    /// `Fault::replicate_error(402, "Insufficient credit", "You have insufficient credit...")`.
    pub fn replicate_error(http: u16, title: &str, detail: &str) -> Fault {
        Fault::status(
            http,
            serde_json::json!({"title": title, "detail": detail, "status": http}).to_string(),
        )
    }

    pub fn rate_limited(retry_after_secs: u64) -> Fault {
        Fault::RateLimited { retry_after_secs }
    }

    /// Adds a `Retry-After` header to a `Status` fault (other faults are returned unchanged).
    pub fn with_retry_after(self, secs: u64) -> Fault {
        match self {
            Fault::Status { http, body, .. } => Fault::Status {
                http,
                body,
                retry_after: Some(secs),
            },
            other => other,
        }
    }
}

/// A task as the fake holds it.
#[derive(Clone, Debug)]
pub struct FakeTask {
    pub id: String,
    /// Path of the create request (`/api/v1/task`, `/v3/async/wan2.6-i2v`, `/api/v1/jobs/createTask`, ...).
    pub route: String,
    /// The provider's status string a poll would show now (`pending`, `TASK_STATUS_PROCESSING`, `generating`, ...).
    pub status: String,
    /// The create body as received.
    pub body: Value,
    /// Polls of this task that reached the handler.
    pub polls: usize,
    /// Cancelled through `DELETE .../task/{id}` (PiAPI/Qubico).
    pub cancelled: bool,
    /// Webhook / callback URL taken from the create body.
    pub webhook_url: Option<String>,
}

/// One webhook / callback the fake tried to deliver (one try each, as the fakes do not retry).
#[derive(Clone, Debug)]
pub struct WebhookDelivery {
    pub task_id: String,
    pub url: String,
    /// Extra headers sent (PiAPI: `x-webhook-secret`).
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// HTTP status of the receiver's answer; `None` when delivery failed (see `error`).
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// A fake provider server. Dropping it stops the server (in-flight hangs end at once).
pub struct FakeProvider {
    /// What the client should use as its base URL (`http://127.0.0.1:PORT` plus the API prefix).
    pub base_url: String,
    shared: Arc<Shared>,
}

impl FakeProvider {
    /// Binds 127.0.0.1:0 and serves in the background; returns once the socket listens.
    /// Panics when it cannot bind (test helper).
    pub async fn start(kind: Kind) -> FakeProvider {
        match FakeProvider::try_start(kind).await {
            Ok(fake) => fake,
            Err(e) => panic!(
                "fake {} provider: cannot listen on 127.0.0.1: {e}",
                kind.name()
            ),
        }
    }

    /// A fake whose tasks stay queued for 1000 polls (cancel tests).
    pub async fn start_queued(kind: Kind) -> FakeProvider {
        let fake = FakeProvider::start(kind).await;
        fake.set_plan(TaskPlan::Polls {
            pending: 1000,
            processing: 1,
            outcome: Outcome::Succeed,
        });
        fake
    }

    pub async fn try_start(kind: Kind) -> std::io::Result<FakeProvider> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let root = format!("http://{}", listener.local_addr()?);
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            kind,
            root: root.clone(),
            api_key: format!("test-key-{}", kind.name()),
            state: Mutex::new(State::default()),
            shutdown,
            webhook_sent: Notify::new(),
            runtime: tokio::runtime::Handle::current(),
        });
        let app =
            router(Arc::clone(&shared)).into_make_service_with_connect_info::<net::ConnKill>();
        let mut stop = shared.shutdown.subscribe();
        let server = axum::serve(net::KillableListener::new(listener), app).with_graceful_shutdown(
            async move {
                // Err only when the sender is gone, which also means: stop.
                let _ = stop.wait_for(|stop| *stop).await;
            },
        );
        tokio::spawn(async move {
            // Serve errors end the fake; the test then sees refused connections.
            let _ = server.await;
        });
        Ok(FakeProvider {
            base_url: format!("{root}{}", kind.api_prefix()),
            shared,
        })
    }

    pub fn kind(&self) -> Kind {
        self.shared.kind
    }

    /// Base URL for the client (includes the API prefix, e.g. `http://127.0.0.1:PORT/api/v1`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `http://127.0.0.1:PORT` without the API prefix (video and upload URLs live here).
    pub fn root_url(&self) -> &str {
        &self.shared.root
    }

    /// The only key accepted: `test-key-<kind>`.
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// URL at which a succeeded task's video is served.
    pub fn video_url(&self, provider_task_id: &str) -> String {
        video_url(&self.shared.root, provider_task_id)
    }

    /// Everything received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Create requests that reached the handler (including those answered with errors, faults or hangs).
    pub fn creates(&self) -> usize {
        self.lock().creates
    }

    /// Creates that produced an upstream task.
    pub fn accepted_creates(&self) -> usize {
        self.lock().accepted_creates
    }

    /// Apikley base64 upload requests that reached the handler.
    pub fn uploads(&self) -> usize {
        self.lock().uploads
    }

    /// Poll requests that reached the handler for this task id (including faulted ones).
    pub fn polls(&self, provider_task_id: &str) -> usize {
        self.lock()
            .polls
            .get(provider_task_id)
            .copied()
            .unwrap_or(0)
    }

    /// Requests to `/files/{id}.mp4` that reached the handler (including faulted ones).
    pub fn downloads(&self) -> usize {
        self.lock().downloads
    }

    /// The bytes every succeeded task's video URL serves: a 32-byte MP4 `ftyp` box, then an
    /// `mdat` box of 4096 deterministic bytes (4136 bytes in all).
    pub fn video_bytes() -> Vec<u8> {
        const PAYLOAD: u32 = 4096;
        let mut v = Vec::with_capacity(40 + PAYLOAD as usize);
        v.extend_from_slice(&32u32.to_be_bytes());
        v.extend_from_slice(b"ftypisom");
        v.extend_from_slice(&0x200u32.to_be_bytes());
        v.extend_from_slice(b"isomiso2avc1mp41");
        v.extend_from_slice(&(PAYLOAD + 8).to_be_bytes());
        v.extend_from_slice(b"mdat");
        let mut x: u32 = 0x1234_5678;
        for _ in 0..PAYLOAD {
            // xorshift32: deterministic, not random.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            v.push((x >> 24) as u8);
        }
        v
    }

    /// Serve these bytes as every video from now on (a real MP4, a truncated one...) instead of
    /// [`FakeProvider::video_bytes`].
    pub fn serve_video(&self, bytes: Vec<u8>) {
        self.lock().video = Some(bytes);
    }

    /// Lower-case hex sha256 of [`FakeProvider::video_bytes`].
    pub fn video_sha256() -> String {
        hex::encode(sha2::Sha256::digest(FakeProvider::video_bytes()))
    }

    /// Plan used for tasks created from now on (default: 1 queued poll, 2 running polls, success).
    pub fn set_plan(&self, plan: TaskPlan) {
        self.lock().plan = plan;
    }

    /// Queue: the next create(s) get these faults first, in order.
    pub fn push_create_fault(&self, f: Fault) {
        self.lock().create_faults.push_back(f);
    }

    /// Queue: the next poll(s), of any task, get these faults first.
    pub fn push_poll_fault(&self, f: Fault) {
        self.lock().poll_faults.push_back(f);
    }

    /// Queue: the next video download(s) get these faults first.
    pub fn push_download_fault(&self, f: Fault) {
        self.lock().download_faults.push_back(f);
    }

    /// Queue: the next Apikley base64 upload(s) get these faults first.
    pub fn push_upload_fault(&self, f: Fault) {
        self.lock().upload_faults.push_back(f);
    }

    /// While on, every authenticated endpoint answers the provider's auth error, even with the right key.
    pub fn fail_auth(&self, on: bool) {
        self.lock().fail_auth = on;
    }

    /// PiAPI/Qubico: answer creates with the flat documented body instead of the unified envelope
    /// (PiAPI: `{"task_id","status":"pending","created_at"}`; Qubico: `{"task_id","status","message","estimated_time"}`).
    pub fn piapi_flat_create(&self, on: bool) {
        self.lock().piapi_flat_create = on;
    }

    /// Apikley: send the body `code` as the HTTP status too, instead of HTTP 200 (the contract's assumption).
    pub fn apikley_http_status_errors(&self, on: bool) {
        self.lock().apikley_http_status_errors = on;
    }

    /// Replicate: how long after a prediction ends its output lives (default one hour, as
    /// documented); later its URL answers 404 and polls show `data_removed`. For tasks created
    /// from now on.
    pub fn set_output_ttl(&self, d: Duration) {
        self.lock().output_ttl = d;
    }

    /// Replicate: the `whsec_` secret this fake signs its webhooks with.
    pub fn webhook_signing_secret(&self) -> &'static str {
        replicate::SIGNING_SECRET
    }

    /// fal: make the signing JWKS answer 503 (`true`) or serve again.
    pub fn fail_jwks(&self, down: bool) {
        self.lock().jwks_down = down;
    }

    /// Replicate: requests that reached `GET /v1/webhooks/default/secret`.
    pub fn secret_fetches(&self) -> usize {
        self.lock().secret_fetches
    }

    /// How long `Fault::Hang` holds a connection before closing it (default 60 s).
    pub fn set_hang_duration(&self, d: Duration) {
        self.lock().hang_for = d;
    }

    /// Forces a task to its plan's final state now (and fires its webhook once). Returns false when
    /// the task is unknown or was cancelled.
    pub fn complete_now(&self, provider_task_id: &str) -> bool {
        let hook = {
            let mut st = self.lock();
            let Some(task) = st.task_mut(provider_task_id) else {
                return false;
            };
            if task.cancelled {
                return false;
            }
            task.forced_final = true;
            flow::observe(&self.shared, task).1
        };
        if let Some(hook) = hook {
            flow::spawn_hook(&self.shared, hook);
        }
        true
    }

    /// All tasks, in creation order.
    pub fn tasks(&self) -> Vec<FakeTask> {
        let now = Instant::now();
        let st = self.lock();
        st.tasks
            .iter()
            .map(|t| FakeTask {
                id: t.id.clone(),
                route: t.route_path.clone(),
                status: flow::status_str(t.route, &t.phase(now)).to_string(),
                body: t.body.clone(),
                polls: st.polls.get(&t.id).copied().unwrap_or(0),
                cancelled: t.cancelled,
                webhook_url: t.hook.as_ref().map(|h| h.url.clone()),
            })
            .collect()
    }

    /// Webhook / callback deliveries attempted so far, in completion order.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.lock().webhooks.clone()
    }

    /// Waits until at least `n` webhook deliveries were attempted, or `within` elapses; returns them all.
    pub async fn wait_webhooks(&self, n: usize, within: Duration) -> Vec<WebhookDelivery> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.webhook_sent.notified();
            let seen = self.webhook_deliveries();
            if seen.len() >= n {
                return seen;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.webhook_deliveries();
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

/// Locks the state. A poisoned mutex (a panic elsewhere while it was held) is recovered: the
/// fake's state stays usable for the test's own assertions.
fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn video_url(root: &str, id: &str) -> String {
    format!("{root}/files/{id}.mp4")
}

/// Shared between the handle and the server.
struct Shared {
    kind: Kind,
    root: String,
    api_key: String,
    state: Mutex<State>,
    shutdown: watch::Sender<bool>,
    webhook_sent: Notify,
    runtime: tokio::runtime::Handle,
}

struct State {
    requests: Vec<Recorded>,
    creates: usize,
    accepted_creates: usize,
    uploads: usize,
    downloads: usize,
    polls: HashMap<String, usize>,
    plan: TaskPlan,
    create_faults: VecDeque<Fault>,
    poll_faults: VecDeque<Fault>,
    download_faults: VecDeque<Fault>,
    upload_faults: VecDeque<Fault>,
    fail_auth: bool,
    piapi_flat_create: bool,
    apikley_http_status_errors: bool,
    hang_for: Duration,
    tasks: Vec<TaskRec>,
    files: HashMap<String, StoredFile>,
    next_seq: u64,
    webhooks: Vec<WebhookDelivery>,
    /// What video URLs serve; `None`: [`FakeProvider::video_bytes`].
    video: Option<Vec<u8>>,
    /// Replicate: how long outputs live after a prediction ends.
    output_ttl: Duration,
    secret_fetches: usize,
    /// fal: the JWKS answers 503 while set.
    jwks_down: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            requests: Vec::new(),
            creates: 0,
            accepted_creates: 0,
            uploads: 0,
            downloads: 0,
            polls: HashMap::new(),
            plan: TaskPlan::default(),
            create_faults: VecDeque::new(),
            poll_faults: VecDeque::new(),
            download_faults: VecDeque::new(),
            upload_faults: VecDeque::new(),
            fail_auth: false,
            piapi_flat_create: false,
            apikley_http_status_errors: false,
            hang_for: Duration::from_secs(60),
            tasks: Vec::new(),
            files: HashMap::new(),
            next_seq: 1,
            webhooks: Vec::new(),
            video: None,
            output_ttl: Duration::from_secs(3600),
            secret_fetches: 0,
            jwks_down: false,
        }
    }
}

impl State {
    fn task_mut(&mut self, id: &str) -> Option<&mut TaskRec> {
        self.tasks.iter_mut().find(|t| t.id == id)
    }

    fn next_seq(&mut self) -> u64 {
        let n = self.next_seq;
        self.next_seq += 1;
        n
    }
}

/// An uploaded file (Apikley base64 upload), served at its `downloadUrl`.
struct StoredFile {
    bytes: Vec<u8>,
    mime: String,
}

/// Which create endpoint made a task (decides its wire shapes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Wanx,
    NovitaWan21,
    NovitaWan26,
    NovitaWan27,
    NovitaWan27T2v,
    Apikley,
    Dashscope,
    Fal,
    Replicate,
}

/// Where the final state is posted (from the create body).
#[derive(Clone, Debug)]
struct Hook {
    url: String,
    /// PiAPI `webhook_config.secret`, sent as `x-webhook-secret`.
    secret: Option<String>,
}

/// A task held by the fake.
struct TaskRec {
    id: String,
    route: Route,
    route_path: String,
    body: Value,
    plan: TaskPlan,
    created_at: SystemTime,
    created_instant: Instant,
    /// Polls answered with this task (drives `TaskPlan::Polls`).
    answered_polls: u32,
    forced_final: bool,
    cancelled: bool,
    started_at: Option<SystemTime>,
    ended_at: Option<SystemTime>,
    hook: Option<Hook>,
    hook_fired: bool,
    /// Replicate `Cancel-After`: a prediction not final by then ends `canceled`.
    deadline: Option<Instant>,
    /// Replicate: how long the output lives after the end.
    output_ttl: Duration,
}

/// Where a task stands; rendered per provider.
#[derive(Clone, Debug, PartialEq)]
enum Phase {
    /// `step`: answered polls so far (Apikley shows `waiting` first, then `queuing`).
    Queued {
        step: u32,
    },
    Running {
        percent: u8,
        eta_s: u32,
    },
    Succeeded,
    Failed(String),
}

impl Phase {
    fn is_final(&self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed(_))
    }
}

impl TaskRec {
    fn phase(&self, now: Instant) -> Phase {
        if self.cancelled {
            return Phase::Failed("task cancelled".to_string());
        }
        let phase = self.plan_phase(now);
        // Replicate's prediction deadlines: `aborted` if it never started, `canceled` if it ran.
        match (self.deadline, &phase) {
            (Some(at), Phase::Queued { .. }) if now >= at => {
                Phase::Failed(replicate::LAPSED_QUEUED.into())
            }
            (Some(at), _) if now >= at && !phase.is_final() => {
                Phase::Failed(replicate::LAPSED.into())
            }
            _ => phase,
        }
    }

    /// Whether the output has been deleted (Replicate's hour after the end).
    fn output_removed(&self) -> bool {
        self.route == Route::Replicate
            && self
                .ended_at
                .is_some_and(|t| t + self.output_ttl <= SystemTime::now())
    }

    fn plan_phase(&self, now: Instant) -> Phase {
        let final_phase = |outcome: &Outcome| match outcome {
            Outcome::Succeed => Phase::Succeeded,
            Outcome::Fail { message } => Phase::Failed(message.clone()),
        };
        match &self.plan {
            TaskPlan::Polls { outcome, .. } | TaskPlan::Duration { outcome, .. }
                if self.forced_final =>
            {
                final_phase(outcome)
            }
            TaskPlan::Polls {
                pending,
                processing,
                outcome,
            } => {
                let k = self.answered_polls;
                if k <= *pending {
                    Phase::Queued { step: k }
                } else if k - pending <= *processing {
                    let i = k - pending;
                    let percent = (u64::from(i) * 100 / (u64::from(*processing) + 1)).clamp(1, 99);
                    Phase::Running {
                        percent: u8::try_from(percent).unwrap_or(99),
                        eta_s: (processing - i + 1) * 10,
                    }
                } else {
                    final_phase(outcome)
                }
            }
            TaskPlan::Duration { total, outcome } => {
                let elapsed = now.saturating_duration_since(self.created_instant);
                let queued_for = *total / 5;
                if elapsed < queued_for {
                    Phase::Queued {
                        step: self.answered_polls,
                    }
                } else if elapsed < *total {
                    let running = (*total - queued_for).as_secs_f64().max(1e-9);
                    let done = (elapsed - queued_for).as_secs_f64() / running;
                    Phase::Running {
                        percent: (done * 100.0).clamp(1.0, 99.0) as u8,
                        eta_s: (*total - elapsed).as_secs_f64().ceil() as u32,
                    }
                } else {
                    final_phase(outcome)
                }
            }
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let kind = shared.kind;
    let mut r = Router::new();
    match kind {
        Kind::Piapi | Kind::Qubico => {
            let p = kind.api_prefix();
            r = r
                .route(&format!("{p}/task"), post(flow::wanx_create))
                .route(
                    &format!("{p}/task/{{id}}"),
                    get(flow::wanx_get).delete(flow::wanx_cancel),
                );
        }
        Kind::Novita => {
            r = r
                .route("/v3/async/wan-i2v", post(flow::novita21_create))
                .route("/v3/async/wan2.6-i2v", post(flow::novita26_create))
                .route("/v3/async/wan2.7-i2v", post(flow::novita27_create))
                .route("/v3/async/wan2.7-t2v", post(flow::novita27_t2v_create))
                .route("/v3/async/task-result", get(flow::novita_result));
        }
        Kind::Apikley => {
            r = r
                .route("/api/v1/jobs/createTask", post(flow::apikley_create))
                .route("/api/v1/jobs/recordInfo", get(flow::apikley_record))
                .route(
                    "/file-upload/api/file-base64-upload",
                    post(flow::apikley_upload),
                )
                .route("/uploads/{seq}/{name}", get(flow::serve_upload));
        }
        Kind::Dashscope => {
            r = r
                .route(
                    "/api/v1/services/aigc/video-generation/video-synthesis",
                    post(flow::dashscope_create),
                )
                .route("/api/v1/tasks/{id}", get(flow::wanx_get))
                .route("/api/v1/tasks/{id}/cancel", post(flow::wanx_cancel));
        }
        Kind::Replicate => {
            r = r
                .route(
                    "/v1/models/{owner}/{name}/predictions",
                    post(flow::replicate_create),
                )
                .route("/v1/predictions/{id}", get(flow::wanx_get))
                .route("/v1/predictions/{id}/cancel", post(flow::replicate_cancel))
                .route("/v1/files", post(flow::replicate_upload))
                .route("/v1/files/{id}", get(flow::replicate_file))
                .route("/v1/webhooks/default/secret", get(flow::replicate_secret));
        }
        Kind::Fal => {
            r = r
                .route("/storage/upload/initiate", post(flow::fal_upload_init))
                .route(
                    "/storage/put/{seq}",
                    axum::routing::put(flow::fal_upload_put),
                )
                .route("/uploads/{seq}/{name}", get(flow::serve_upload))
                .route("/.well-known/jwks.json", get(flow::fal_jwks))
                .route("/{*path}", axum::routing::any(flow::fal_dispatch));
        }
    }
    r.route("/files/{file}", get(flow::download))
        .fallback(flow::fallback)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            net::record,
        ))
        // The recording middleware buffers bodies with its own limit (base64 images reach 10 MB+).
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}
