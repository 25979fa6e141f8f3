//! The HTTP face, `i2v-mcp serve --http ADDR`: one shared [`Core`] (journal, watcher, providers)
//! behind
//! - `/mcp`: MCP streamable HTTP (rmcp's `StreamableHttpService`), stateful sessions by default,
//!   stateless on request;
//! - `/sse` + `/message?sessionId=`: the legacy HTTP+SSE transport (2024-11-05), bridged in
//!   process onto the same MCP server (rmcp 3 dropped its own SSE server);
//! - `/webhooks/{provider}`: provider callbacks, authenticated by the per-task secret only and
//!   confirmed by one poll before anything changes (see [`Core::webhook`]);
//! - `/healthz`.
//!
//! Security: loopback by default; a non-loopback address is refused without a bearer token; the
//! token (compared in constant time) guards every MCP and SSE route; `Host` and `Origin`
//! allowlists guard against DNS rebinding on all of them; request bodies are bounded (413). Over
//! HTTP, MCP roots never widen the directories local images may be read from.
//!
//! Shutdown ([`ServerHandle::shutdown`]): stop accepting, let running requests finish within a
//! grace period, then end sessions and streams. Open tasks stay in the journal; the next start
//! resumes watching them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{SinkExt, StreamExt};
use rmcp::ServiceExt;
use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, JsonRpcMessage, RequestId, ServerJsonRpcMessage,
};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};
use tower_http::services::ServeFile;

use crate::config::Config;
use crate::core::{Core, WebhookOutcome};
use crate::error::{Category, Error};
use crate::mcp::Server;
use crate::model::ProviderId;
use crate::providers::registry::Declared;

/// Default largest MCP request body: `data:` URIs travel inside tool arguments.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest webhook body (providers send a task snapshot, a few KiB).
pub const WEBHOOK_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The address suggested in help texts.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8765";
/// Idle time after which a streamable-HTTP session is dropped. rmcp's timer only restarts on
/// session traffic, not while a tool runs, so this must stay well above the longest silent
/// call (a `get_task` wait, at most 50 s; waits with a progress token also send a heartbeat
/// every ≤5 s).
const SESSION_KEEP_ALIVE: Duration = Duration::from_secs(600);
/// Time to send a request's headers; also the idle time after which a keep-alive connection
/// is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Live streamable-HTTP sessions (each holds a server instance, ~70 KiB).
const MAX_SESSIONS: usize = 256;
/// SSE comment pings, so proxies do not cut quiet streams.
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Messages buffered per legacy SSE session in each direction.
const LEGACY_CHANNEL: usize = 64;

/// How to serve. Build with [`HttpOptions::from_config`]; every field may be changed after.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `host:port` to listen on, e.g. `127.0.0.1:8765`.
    pub addr: String,
    /// Bearer token required on `/mcp`, `/sse` and `/message`. Required for non-loopback addresses.
    pub auth_token: Option<SecretString>,
    /// Where clients and providers reach this server (`https://mcp.example.com`); turns
    /// webhooks on and adds its host and origin to the allowlists.
    pub public_url: Option<String>,
    /// Extra `Host` values accepted (`name` for any port, or `name:port`), besides loopback.
    pub allowed_hosts: Vec<String>,
    /// Extra browser origins accepted (`https://app.example.com:443`, `http://localhost:*`),
    /// besides loopback origins and public_url's. A request without `Origin` always passes.
    pub allowed_origins: Vec<String>,
    /// Largest `/mcp` and `/message` body.
    pub max_body_bytes: usize,
    /// Largest webhook body.
    pub webhook_max_body_bytes: usize,
    /// Streamable HTTP without sessions (each POST stands alone; no server-initiated stream).
    pub stateless: bool,
    /// Idle timeout of a stateful session; `None` keeps sessions until the client ends them.
    pub session_keep_alive: Option<Duration>,
    /// How long shutdown lets running requests finish.
    pub shutdown_grace: Duration,
    /// Most open connections; `None` sizes it from the process's file-descriptor limit.
    pub max_connections: Option<usize>,
    /// How long a connection may take to send a request's headers, and how long an idle
    /// keep-alive connection is kept.
    pub header_read_timeout: Duration,
    /// Most live streamable-HTTP sessions; past it a new session is refused (503).
    pub max_sessions: usize,
}

impl HttpOptions {
    /// The `[http]` settings and `public_url` of a resolved config.
    pub fn from_config(cfg: &Config, addr: impl Into<String>) -> HttpOptions {
        HttpOptions {
            addr: addr.into(),
            auth_token: cfg.http.auth_token.clone(),
            public_url: cfg.public_url.clone(),
            allowed_hosts: cfg.http.allowed_hosts.clone(),
            allowed_origins: cfg.http.allowed_origins.clone(),
            max_body_bytes: cfg.http.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            webhook_max_body_bytes: WEBHOOK_MAX_BODY_BYTES,
            stateless: false,
            session_keep_alive: Some(SESSION_KEEP_ALIVE),
            shutdown_grace: Duration::from_secs(10),
            max_connections: None,
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_sessions: MAX_SESSIONS,
        }
    }
}

/// A running server. [`ServerHandle::shutdown`] stops it gracefully; dropping it stops it at once.
pub struct ServerHandle {
    addr: SocketAddr,
    stop_accepting: CancellationToken,
    /// Ends MCP sessions and SSE streams (rmcp's cancellation token and the legacy bridge's).
    streams: CancellationToken,
    /// Requests in flight: POST bodies until their response ends, legacy calls until answered.
    in_flight: TaskTracker,
    grace: Duration,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting connections, let running requests finish (up to the grace period), then
    /// end every session and stream. Open tasks stay open in the journal.
    pub async fn shutdown(mut self) {
        self.stop_accepting.cancel();
        self.in_flight.close();
        if tokio::time::timeout(self.grace, self.in_flight.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = self.in_flight.len(),
                grace_s = self.grace.as_secs(),
                "requests still running after the grace period are cut; their tasks stay in the journal"
            );
        }
        self.streams.cancel();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(3), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_accepting.cancel();
        self.streams.cancel();
    }
}

/// Resolve `opts.addr`, refuse an exposed address without a token, listen, and serve.
pub async fn bind(core: Arc<Core>, opts: HttpOptions) -> Result<(SocketAddr, ServerHandle), Error> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(opts.addr.as_str())
        .await
        .map_err(|e| {
            Error::invalid_input(format!(
                "--http '{}' is not an address to listen on ({e}): use host:port, e.g. {DEFAULT_ADDR}",
                opts.addr
            ))
        })?
        .collect();
    let Some(first) = addrs.first().copied() else {
        return Err(Error::invalid_input(format!(
            "--http '{}' resolves to no address: use host:port, e.g. {DEFAULT_ADDR}",
            opts.addr
        )));
    };
    for a in &addrs {
        refuse_exposed_without_token(*a, &opts)?;
    }
    raise_fd_limit();
    let listener = TcpListener::bind(first).await.map_err(|e| {
        Error::internal(format!("cannot listen on {first}: {e}"))
            .with_next_step("pick a free port, or stop the process that holds this one")
    })?;
    serve(listener, core, opts)
}

/// Serve on a listener already bound (tests bind 127.0.0.1:0 first to learn the public URL).
pub fn serve(
    listener: TcpListener,
    core: Arc<Core>,
    opts: HttpOptions,
) -> Result<(SocketAddr, ServerHandle), Error> {
    let addr = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("cannot read the listening address: {e}")))?;
    refuse_exposed_without_token(addr, &opts)?;
    let public = match &opts.public_url {
        Some(u) => Some(parse_public_url(u)?),
        None => None,
    };
    if let Some(p) = &public {
        core.enable_webhooks(p.as_str().trim_end_matches('/'));
    }
    let hosts = allowed_hosts(addr, public.as_ref(), &opts.allowed_hosts);
    let origins = allowed_origins(public.as_ref(), &opts.allowed_origins);
    if addr.ip().is_unspecified() && public.is_none() && opts.allowed_hosts.is_empty() {
        tracing::warn!(
            "listening on {addr} but only loopback Host names are accepted: set public_url (I2V_MCP_PUBLIC_URL) or allowed_hosts (I2V_MCP_ALLOWED_HOSTS) to the name clients use"
        );
    }

    let stop_accepting = CancellationToken::new();
    let streams = CancellationToken::new();
    let in_flight = TaskTracker::new();
    let guard = Arc::new(Guard::new(&opts, &hosts, &origins, in_flight.clone()));
    let app = Arc::new(App {
        core,
        video_base: video_base(public.as_ref(), addr),
        legacy: Mutex::new(HashMap::new()),
        message_path: message_path(public.as_ref()),
        streams: streams.clone(),
        in_flight: in_flight.clone(),
    });
    let router = router(app, guard, &opts, hosts, origins);

    let max_connections = opts
        .max_connections
        .unwrap_or_else(connection_cap_from_fd_limit);
    let conns = Arc::new(Conns::new(max_connections));
    let task = tokio::spawn(accept_loop(
        listener,
        router,
        conns,
        opts.header_read_timeout,
        stop_accepting.clone(),
    ));
    tracing::info!(
        %addr,
        auth = if opts.auth_token.is_some() { "bearer token" } else { "none (loopback only)" },
        webhooks = public.is_some(),
        stateless = opts.stateless,
        max_connections,
        max_sessions = opts.max_sessions,
        "serving MCP over HTTP at /mcp, legacy SSE at /sse"
    );
    Ok((
        addr,
        ServerHandle {
            addr,
            stop_accepting,
            streams,
            in_flight,
            grace: opts.shutdown_grace,
            task: Some(task),
        },
    ))
}

/// Results are linked where this server serves them: the public URL, else the address bound.
fn video_base(public: Option<&url::Url>, addr: SocketAddr) -> Arc<str> {
    Arc::from(match public {
        Some(p) => p.as_str().trim_end_matches('/').to_string(),
        None => format!("http://{addr}"),
    })
}

/// `<public_url path>/message`: where legacy SSE clients post.
fn message_path(public: Option<&url::Url>) -> String {
    format!(
        "{}/message",
        public.map(|p| p.path().trim_end_matches('/')).unwrap_or("")
    )
}

/// Every route: `/mcp`, `/sse`, `/message` and `/videos` behind the guard (token, Host,
/// Origin); `/healthz` and `/webhooks` open; more than one `Host` refused everywhere.
fn router(
    app: Arc<App>,
    guard: Arc<Guard>,
    opts: &HttpOptions,
    hosts: Vec<String>,
    origins: Vec<String>,
) -> Router {
    let (mcp, gate) = mcp_service(&app, opts, hosts, origins);
    let message_route = post(message).layer(DefaultBodyLimit::max(opts.max_body_bytes));
    let mut guarded = Router::new()
        .route_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(gate, mcp_gate))
        .route("/sse", get(sse))
        .route("/message", message_route.clone())
        .route("/videos/{file}", get(video));
    let plain_path = app
        .message_path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~/%".contains(c));
    if app.message_path != "/message" && plain_path && !app.message_path.contains("//") {
        // The endpoint event names public_url's path; serve it too for clients that reach this
        // server directly rather than through the proxy that strips the prefix.
        guarded = guarded.route(&app.message_path, message_route);
    }
    let guarded = guarded.layer(middleware::from_fn_with_state(guard, check));
    let open = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/webhooks/{provider}",
            post(webhook).layer(DefaultBodyLimit::max(opts.webhook_max_body_bytes)),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: MCP is served at /mcp (streamable HTTP) and /sse (legacy HTTP+SSE)",
            )
        });
    guarded
        .merge(open)
        .with_state(app)
        .layer(middleware::from_fn(one_host))
}

/// rmcp's streamable HTTP service on the shared core, and the session limits in front of it.
fn mcp_service(
    app: &App,
    opts: &HttpOptions,
    hosts: Vec<String>,
    origins: Vec<String>,
) -> (
    StreamableHttpService<Server, LocalSessionManager>,
    Arc<McpGate>,
) {
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = opts.session_keep_alive;
    let sessions = Arc::new(sessions);
    let gate = Arc::new(McpGate {
        sessions: sessions.clone(),
        max: opts.max_sessions,
        stateless: opts.stateless,
        keep_alive: opts.session_keep_alive,
        max_body_bytes: opts.max_body_bytes,
    });
    let mcp_config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(!opts.stateless)
        .with_json_response(opts.stateless)
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .with_max_request_body_bytes(opts.max_body_bytes)
        .with_sse_keep_alive(Some(SSE_KEEP_ALIVE))
        .with_cancellation_token(app.streams.child_token());
    let core = app.core.clone();
    let video_base = app.video_base.clone();
    let stateless = opts.stateless;
    let mcp = StreamableHttpService::new(
        move || {
            Ok(Server::new(core.clone())
                .trust_roots(false)
                .subscriptions(!stateless)
                .video_links(&video_base))
        },
        sessions,
        mcp_config,
    );
    (mcp, gate)
}

// ---------------------------------------------------------------------------------------------
// Connections: our own accept loop, so that a header-read timeout (also the idle keep-alive
// timeout) and a connection cap apply. At the cap the oldest idle connection (no request in
// flight: silent, dribbling headers, or kept alive) is closed to make room; when every
// connection is busy the newcomer gets a 503 at once. axum::serve has neither.

/// Descriptors kept free for the journal, provider requests and downloads.
const RESERVED_FDS: u64 = 64;
/// Upper bound on connections, whatever the descriptor limit.
const MAX_CONNECTIONS: usize = 4096;
/// The answer to a connection shed because every slot is busy.
const SHED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\nContent-Length: 52\r\nConnection: close\r\n\r\nbusy: every connection slot is in use; retry shortly";
/// The first bytes of an HTTP/2 connection with prior knowledge.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Raise the soft RLIMIT_NOFILE to the hard limit: a server holding many sockets needs it, and
/// the soft limit is often 1024. Done by [`bind`] (the real server), before sizing the cap.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (lim.current, lim.maximum)
        && cur < max
    {
        let raised = Rlimit {
            current: Some(max),
            maximum: Some(max),
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(from = cur, to = max, "raised the open-files limit"),
            Err(e) => tracing::debug!(error = %e, "cannot raise the open-files limit"),
        }
    }
}

/// Half of the descriptors left after a reserve, between 16 and [`MAX_CONNECTIONS`].
fn connection_cap_from_fd_limit() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let cap = soft.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(cap)
        .unwrap_or(MAX_CONNECTIONS)
        .clamp(16, MAX_CONNECTIONS)
}

/// The live connections, for the cap and eviction.
struct Conns {
    max: usize,
    next_id: std::sync::atomic::AtomicU64,
    live: Mutex<HashMap<u64, ConnSlot>>,
}

struct ConnSlot {
    /// Requests whose response has not finished (an open SSE stream counts).
    active: Arc<std::sync::atomic::AtomicUsize>,
    evict: CancellationToken,
}

/// A connection's place under the cap; freed on drop.
struct ConnTicket {
    conns: Arc<Conns>,
    id: u64,
    active: Arc<std::sync::atomic::AtomicUsize>,
    evict: CancellationToken,
}

impl Drop for ConnTicket {
    fn drop(&mut self) {
        self.conns.lock().remove(&self.id);
    }
}

impl Conns {
    fn new(max: usize) -> Conns {
        Conns {
            max: max.max(1),
            next_id: std::sync::atomic::AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, ConnSlot>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection: free, or taken from the oldest idle connection; `None`
    /// when every connection is busy.
    fn admit(self: &Arc<Self>) -> Option<ConnTicket> {
        use std::sync::atomic::Ordering;
        let mut live = self.lock();
        if live.len() >= self.max {
            // Ids grow with time: the smallest idle id is the oldest idle connection.
            let oldest_idle = live
                .iter()
                .filter(|(_, c)| c.active.load(Ordering::SeqCst) == 0)
                .map(|(id, _)| *id)
                .min()?;
            if let Some(c) = live.remove(&oldest_idle) {
                c.evict.cancel();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let evict = CancellationToken::new();
        live.insert(
            id,
            ConnSlot {
                active: active.clone(),
                evict: evict.clone(),
            },
        );
        Some(ConnTicket {
            conns: self.clone(),
            id,
            active,
            evict,
        })
    }
}

/// Counts one request of a connection as in flight until its response body is done.
struct ActiveGuard(Arc<std::sync::atomic::AtomicUsize>);

impl ActiveGuard {
    fn new(active: &Arc<std::sync::atomic::AtomicUsize>) -> ActiveGuard {
        active.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ActiveGuard(active.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted until hyper is done with it.
struct CountedBody {
    inner: Body,
    _active: ActiveGuard,
}

impl hyper::body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    conns: Arc<Conns>,
    header_read_timeout: Duration,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let tracker = TaskTracker::new();
    loop {
        let tcp = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors or similar: back off a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    }
                }
            },
        };
        // Without TCP_NODELAY, an SSE answer written in pieces waits on the client's delayed
        // ACK (~40 ms per request on Linux).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let Some(ticket) = conns.admit() else {
            tracing::warn!(max = conns.max, "connection shed: every connection is busy");
            // A fresh socket's send buffer is empty: this does not block.
            let _ = tcp.try_write(SHED_RESPONSE);
            continue;
        };
        tracker.spawn(serve_connection(
            tcp,
            ticket,
            router.clone(),
            header_read_timeout,
            stop.clone(),
        ));
    }
    // Refuse new connections at once while the open ones finish.
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// HTTP/1.1, or HTTP/2 with prior knowledge, until the client leaves, the connection idles
/// past the header-read timeout, it is evicted, or the server stops.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    ticket: ConnTicket,
    router: Router,
    header_read_timeout: Duration,
    stop: CancellationToken,
) {
    let evict = ticket.evict.clone();
    let h2 = tokio::select! {
        _ = evict.cancelled() => return,
        r = tokio::time::timeout(header_read_timeout, is_h2(&tcp)) => match r {
            Ok(Ok(Some(h2))) => h2,
            _ => return, // silent past the timeout, closed, or broken
        },
    };
    let active = ticket.active.clone();
    let router = hyper_util::service::TowerToHyperService::new(router);
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let guard = ActiveGuard::new(&active);
        let call = hyper::service::Service::call(&router, req);
        async move {
            let resp = match call.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let (parts, body) = resp.into_parts();
            Ok::<_, Infallible>(hyper::Response::from_parts(
                parts,
                CountedBody {
                    inner: body,
                    _active: guard,
                },
            ))
        }
    });
    let io = hyper_util::rt::TokioIo::new(tcp);
    let timer = hyper_util::rt::TokioTimer::new();
    macro_rules! drive {
        ($conn:expr) => {{
            let conn = $conn;
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended");
                    }
                    return;
                }
                // Idle (no request in flight): closing it loses nothing.
                _ = evict.cancelled() => return,
                _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = evict.cancelled() => {}
            }
        }};
    }
    if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
        b.timer(timer)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20))
            .max_concurrent_streams(64);
        drive!(b.serve_connection(io, service));
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(timer)
            .header_read_timeout(header_read_timeout)
            .keep_alive(true);
        drive!(b.serve_connection(io, service));
    }
    drop(ticket);
}

/// Whether the client speaks HTTP/2 with prior knowledge; `None` if it closed first.
async fn is_h2(tcp: &tokio::net::TcpStream) -> std::io::Result<Option<bool>> {
    let mut buf = [0u8; 24];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(Some(false));
        }
        if n == H2_PREFACE.len() {
            return Ok(Some(true));
        }
        // A prefix of the preface so far: wait for more (peek would return at once).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Shortest bearer token accepted on a non-loopback address (32 hex digits = 128 bits).
const MIN_TOKEN_CHARS: usize = 32;

fn refuse_exposed_without_token(addr: SocketAddr, opts: &HttpOptions) -> Result<(), Error> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    let Some(token) = &opts.auth_token else {
        return Err(Error::invalid_input(format!(
            "refusing to serve on {addr} without a bearer token: anyone who can reach it could spend your provider credits"
        ))
        .with_next_step(
            "set I2V_MCP_AUTH_TOKEN (e.g. `openssl rand -hex 32`) or [http].auth_token, or listen on 127.0.0.1",
        ));
    };
    if token_is_weak(token.expose_secret()) {
        return Err(Error::invalid_input(format!(
            "refusing to serve on {addr}: the bearer token is too weak to guess-proof a public server (at least {MIN_TOKEN_CHARS} random characters, 128 bits, are needed)"
        ))
        .with_next_step(
            "make one with `openssl rand -hex 32` and set it as I2V_MCP_AUTH_TOKEN or [http].auth_token, or listen on 127.0.0.1",
        ));
    }
    Ok(())
}

/// Shorter than [`MIN_TOKEN_CHARS`], or too few distinct characters to be random ("aaaa…").
fn token_is_weak(token: &str) -> bool {
    let token = token.trim();
    let distinct: std::collections::HashSet<char> = token.chars().collect();
    token.chars().count() < MIN_TOKEN_CHARS || distinct.len() < 8
}

fn parse_public_url(u: &str) -> Result<url::Url, Error> {
    let parsed = url::Url::parse(u.trim()).map_err(|e| {
        Error::invalid_input(format!("public URL '{u}' is not a URL ({e})")).with_next_step(
            "use the URL clients and providers reach this server at, e.g. https://mcp.example.com",
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::invalid_input(format!(
            "public URL '{u}' must be an http(s) URL with a host"
        )));
    }
    Ok(parsed)
}

/// Loopback names, the listening IP when it is a specific one, public_url's host, and extras.
fn allowed_hosts(addr: SocketAddr, public: Option<&url::Url>, extra: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    if !addr.ip().is_unspecified() && !addr.ip().is_loopback() {
        hosts.push(addr.ip().to_string());
    }
    if let Some(h) = public.and_then(|p| p.host_str()) {
        hosts.push(h.trim_matches(['[', ']']).to_string());
    }
    hosts.extend(extra.iter().cloned());
    hosts.dedup();
    hosts
}

/// Loopback origins, public_url's origin, and extras. Always enforced: a browser page elsewhere
/// must not drive this server.
fn allowed_origins(public: Option<&url::Url>, extra: &[String]) -> Vec<String> {
    let mut origins: Vec<String> = [
        "http://localhost:*",
        "https://localhost:*",
        "http://127.0.0.1:*",
        "https://127.0.0.1:*",
        "http://[::1]:*",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if let Some(p) = public
        && let (Some(host), Some(port)) = (p.host_str(), p.port_or_known_default())
    {
        origins.push(format!("{}://{host}:{port}", p.scheme()));
    }
    origins.extend(extra.iter().cloned());
    origins
}

// ---------------------------------------------------------------------------------------------
// Host, Origin and bearer checks (all guarded routes), and in-flight tracking.

/// An allowed `Host`: a name, with a port or any port.
#[derive(Debug, Clone, PartialEq)]
struct HostRule {
    host: String,
    port: Option<u16>,
}

impl HostRule {
    fn parse(s: &str) -> HostRule {
        let s = s.trim();
        match axum::http::uri::Authority::try_from(s) {
            Ok(a) => HostRule {
                host: normalize_host(a.host()),
                port: a.port_u16(),
            },
            // A bare IPv6 address ("::1") is not an authority.
            Err(_) => HostRule {
                host: normalize_host(s),
                port: None,
            },
        }
    }

    fn admits(&self, host: &HostRule) -> bool {
        self.host == host.host && self.port.is_none_or(|p| host.port == Some(p))
    }
}

fn normalize_host(h: &str) -> String {
    h.trim_matches(['[', ']']).to_ascii_lowercase()
}

/// An allowed browser origin; `port: None` is `:*`.
#[derive(Debug, Clone, PartialEq)]
struct OriginRule {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl OriginRule {
    /// `scheme://host[:port]`; `:*` for any port; no port means the scheme's default.
    fn parse(s: &str) -> Option<OriginRule> {
        let s = s.trim();
        let (base, any_port) = match s.strip_suffix(":*") {
            Some(b) => (b, true),
            None => (s, false),
        };
        let o = Self::of_request(base)?;
        Some(if any_port {
            OriginRule { port: None, ..o }
        } else {
            o
        })
    }

    /// An `Origin` header value; `null` and malformed values are `None` (refused).
    fn of_request(value: &str) -> Option<OriginRule> {
        let uri = axum::http::Uri::try_from(value.trim()).ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let authority = uri.authority()?;
        let port = authority.port_u16().or(match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        });
        Some(OriginRule {
            host: normalize_host(authority.host()),
            scheme,
            port,
        })
    }

    fn admits(&self, o: &OriginRule) -> bool {
        self.scheme == o.scheme
            && self.host == o.host
            && self.port.is_none_or(|p| o.port == Some(p))
    }
}

struct Guard {
    /// SHA-256 of the token: compared in constant time whatever the lengths.
    token_sha256: Option<[u8; 32]>,
    hosts: Vec<HostRule>,
    origins: Vec<OriginRule>,
    in_flight: TaskTracker,
}

impl Guard {
    fn new(
        opts: &HttpOptions,
        hosts: &[String],
        origins: &[String],
        in_flight: TaskTracker,
    ) -> Guard {
        Guard {
            token_sha256: opts
                .auth_token
                .as_ref()
                .map(|t| Sha256::digest(t.expose_secret().as_bytes()).into()),
            hosts: hosts.iter().map(|h| HostRule::parse(h)).collect(),
            origins: origins
                .iter()
                .filter_map(|o| OriginRule::parse(o))
                .collect(),
            in_flight,
        }
    }

    fn host_ok(&self, req: &Request) -> bool {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(HostRule::parse)
            .or_else(|| req.uri().authority().map(|a| HostRule::parse(a.as_str())));
        host.is_some_and(|h| self.hosts.iter().any(|r| r.admits(&h)))
    }

    fn origin_ok(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::ORIGIN) else {
            return true; // not a browser: nothing to rebind
        };
        value
            .to_str()
            .ok()
            .and_then(OriginRule::of_request)
            .is_some_and(|o| self.origins.iter().any(|r| r.admits(&o)))
    }

    fn token_ok(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token_sha256 else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .unwrap_or_default();
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        bool::from(given.ct_eq(expected))
    }
}

async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    if !guard.host_ok(&req) {
        tracing::warn!(
            path = req.uri().path(),
            "refused: Host not allowed (possible DNS rebinding)"
        );
        return (
            StatusCode::FORBIDDEN,
            "Forbidden: Host header is not allowed; add it to allowed_hosts (I2V_MCP_ALLOWED_HOSTS) or set public_url",
        )
            .into_response();
    }
    if !guard.origin_ok(req.headers()) {
        tracing::warn!(path = req.uri().path(), "refused: Origin not allowed");
        return (
            StatusCode::FORBIDDEN,
            "Forbidden: Origin is not allowed; add it to allowed_origins (I2V_MCP_ALLOWED_ORIGINS)",
        )
            .into_response();
    }
    if !guard.token_ok(req.headers()) {
        tracing::warn!(
            path = req.uri().path(),
            "refused: missing or wrong bearer token"
        );
        let mut r = (
            StatusCode::UNAUTHORIZED,
            "Unauthorized: send the header `Authorization: Bearer <token>` with the server's token",
        )
            .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"i2v-mcp\""),
        );
        return r;
    }
    if req.method() == Method::GET {
        // Streams (SSE) run until the client leaves; they do not hold up shutdown.
        return next.run(req).await;
    }
    // A POST's answer may be a stream that ends with the tool result: count it until it ends.
    let token = guard.in_flight.token();
    let (parts, body) = next.run(req).await.into_parts();
    let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
        let _in_flight = &token;
        chunk
    }));
    Response::from_parts(parts, body)
}

/// Two `Host` headers: which one would the allowlist, a proxy, or rmcp believe? Refuse.
async fn one_host(req: Request, next: Next) -> Response {
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        tracing::warn!(
            path = req.uri().path(),
            "refused: more than one Host header"
        );
        return (
            StatusCode::BAD_REQUEST,
            "Bad Request: more than one Host header",
        )
            .into_response();
    }
    next.run(req).await
}

/// Session limits of `/mcp`.
struct McpGate {
    sessions: Arc<LocalSessionManager>,
    max: usize,
    stateless: bool,
    keep_alive: Option<Duration>,
    max_body_bytes: usize,
}

/// `/mcp`: refuse a new session past the cap (503 + Retry-After), answer a session's DELETE
/// with 204 (rmcp says 202; clients expect 200 or 204), and say what to do about a 413.
async fn mcp_gate(State(gate): State<Arc<McpGate>>, req: Request, next: Next) -> Response {
    // Requests of the 2026-07-28 revision are stateless whatever the mode: they open no session.
    let sessionless_revision = req
        .headers()
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= "2026-07-28");
    let opens_session = !gate.stateless
        && !sessionless_revision
        && req.method() == Method::POST
        && !req.headers().contains_key("mcp-session-id");
    if opens_session {
        let live = gate.sessions.sessions.read().await.len();
        if live >= gate.max {
            let idle = gate
                .keep_alive
                .map(|d| format!("; idle sessions end after {} s", d.as_secs()))
                .unwrap_or_default();
            tracing::warn!(
                live,
                max = gate.max,
                "new MCP session refused: too many sessions"
            );
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "too many open MCP sessions ({live}, the limit is {}): end unused ones (DELETE /mcp with their Mcp-Session-Id) or retry later{idle}",
                    gate.max
                ),
            )
                .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            return r;
        }
    }
    let delete = req.method() == Method::DELETE;
    let resp = next.run(req).await;
    if delete && resp.status() == StatusCode::ACCEPTED {
        let (mut parts, _) = resp.into_parts();
        parts.status = StatusCode::NO_CONTENT;
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::CONTENT_TYPE);
        return Response::from_parts(parts, Body::empty());
    }
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Payload Too Large: an MCP request may be at most {} (max_body_bytes): send images as an https URL rather than a data: URI, or raise max_body_bytes (I2V_MCP_MAX_BODY_BYTES)",
                human_bytes(gate.max_body_bytes)
            ),
        )
            .into_response();
    }
    resp
}

/// `16 MiB`, `64 KiB`, or bytes.
fn human_bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// `GET`/`HEAD /videos/{task_id}.mp4` (behind the token): a succeeded task's downloaded file;
/// `/videos/{task_id}.sheet.jpg` and `.poster.jpg`: its contact sheet and poster, kept beside it.
/// Only files the journal recorded inside the output dir (and their sheets) are served, through
/// tower-http's `ServeFile` so players get `Range`, `HEAD` and `If-Modified-Since`.
async fn video(State(app): State<Arc<App>>, Path(file): Path<String>, req: Request) -> Response {
    let (task_id, image) = split_video_file(&file);
    let path = match succeeded_video(&app, task_id).await {
        Ok(path) => path,
        Err(refused) => return refused.into_response(),
    };
    let (path, mime, gone) = match image {
        Some(beside) => (
            beside(&path, task_id),
            "image/jpeg",
            "this task has no contact sheet: see get_task's note",
        ),
        None => (path, "video/mp4", "the video file is gone"),
    };
    match ServeFile::new(&path).try_call(req).await {
        Ok(resp) if resp.status() == StatusCode::NOT_FOUND => {
            (StatusCode::NOT_FOUND, gone).into_response()
        }
        Ok(resp) => {
            let mut resp = resp.map(Body::new);
            if resp.status().is_success() {
                // What the task is, not what its file name suggests.
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
            }
            resp
        }
        // As before ServeFile: a file that cannot be opened is gone, whatever the reason.
        Err(e) => {
            tracing::warn!(task = %task_id, error = %e, "cannot open a result file");
            (StatusCode::NOT_FOUND, gone).into_response()
        }
    }
}

/// Where a file beside the video lives, given the video's path and the task id.
type Beside = fn(&std::path::Path, &str) -> std::path::PathBuf;

/// `{id}.mp4` -> (id, None); `{id}.sheet.jpg` / `{id}.poster.jpg` -> (id, where it lies).
fn split_video_file(file: &str) -> (&str, Option<Beside>) {
    if let Some(id) = file.strip_suffix(".sheet.jpg") {
        (id, Some(crate::preview::sheet_path as Beside))
    } else if let Some(id) = file.strip_suffix(".poster.jpg") {
        (id, Some(crate::preview::poster_path as Beside))
    } else {
        (file.strip_suffix(".mp4").unwrap_or(file), None)
    }
}

/// The downloaded video of a succeeded task (`Core::video_path` checks that it still lies inside
/// the output dir); else the 404 (or 500) to answer.
async fn succeeded_video(
    app: &App,
    task_id: &str,
) -> Result<std::path::PathBuf, (StatusCode, String)> {
    let not_found = |why: &str| (StatusCode::NOT_FOUND, why.to_string());
    let path = match app.core.video_path(task_id).await {
        Ok(Some((_, path))) => path,
        Ok(None) => {
            return Err(not_found(
                "this task has no downloaded video (yet, or no longer in the output dir): see get_task",
            ));
        }
        Err(e) if e.category == Category::NotFound => return Err(not_found("unknown task")),
        Err(e) => return Err((StatusCode::INTERNAL_SERVER_ERROR, e.message)),
    };
    Ok(path)
}

// ---------------------------------------------------------------------------------------------
// Legacy HTTP+SSE (2024-11-05): GET /sse opens a session whose server messages arrive as
// `message` events; the client POSTs its messages to the `endpoint` event's URL.

struct App {
    core: Arc<Core>,
    /// Base of `/videos/{task_id}.mp4` links.
    video_base: Arc<str>,
    legacy: Mutex<HashMap<String, LegacySession>>,
    /// `<public_url path>/message`, announced in the endpoint event.
    message_path: String,
    streams: CancellationToken,
    in_flight: TaskTracker,
}

#[derive(Clone)]
struct LegacySession {
    to_server: futures::channel::mpsc::Sender<ClientJsonRpcMessage>,
    /// Client requests not yet answered (they hold up a graceful shutdown).
    pending: Arc<Mutex<HashMap<RequestId, TaskTrackerToken>>>,
}

impl App {
    fn legacy(&self) -> MutexGuard<'_, HashMap<String, LegacySession>> {
        self.legacy.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes the session when its SSE stream is dropped (client gone or shutdown); that closes
/// the MCP service's input, which ends it.
struct SessionGuard {
    app: Arc<App>,
    id: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.app.legacy().remove(&self.id);
        tracing::debug!(session = %self.id, "legacy SSE session closed");
    }
}

fn lock_pending(
    p: &Mutex<HashMap<RequestId, TaskTrackerToken>>,
) -> MutexGuard<'_, HashMap<RequestId, TaskTrackerToken>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

async fn sse(State(app): State<Arc<App>>) -> impl IntoResponse {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (to_server, from_client) = futures::channel::mpsc::channel(LEGACY_CHANNEL);
    let (to_client, from_server) = futures::channel::mpsc::channel(LEGACY_CHANNEL);
    let pending: Arc<Mutex<HashMap<RequestId, TaskTrackerToken>>> = Arc::default();
    app.legacy().insert(
        id.clone(),
        LegacySession {
            to_server,
            pending: pending.clone(),
        },
    );
    let server = Server::new(app.core.clone())
        .trust_roots(false)
        .video_links(&app.video_base);
    let ct = app.streams.child_token();
    let session = id.clone();
    tokio::spawn(async move {
        match server.serve_with_ct((to_client, from_client), ct).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(e) => {
                tracing::debug!(%session, error = %e, "legacy SSE session ended before initialize")
            }
        }
    });

    let endpoint = format!("{}?sessionId={id}", app.message_path);
    let guard = SessionGuard {
        app: app.clone(),
        id,
    };
    let first = futures::stream::once(async move {
        Ok::<_, Infallible>(Event::default().event("endpoint").data(endpoint))
    });
    let messages = from_server.filter_map(move |m: ServerJsonRpcMessage| {
        let _session = &guard;
        let answered = match &m {
            JsonRpcMessage::Response(r) => Some(r.id.clone()),
            JsonRpcMessage::Error(e) => e.id.clone(),
            _ => None,
        };
        if let Some(rid) = answered {
            lock_pending(&pending).remove(&rid);
        }
        let event = match serde_json::to_string(&m) {
            Ok(data) => Some(Ok(Event::default().event("message").data(data))),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a server message; dropped");
                None
            }
        };
        std::future::ready(event)
    });
    let stream = first
        .chain(messages)
        .take_until(app.streams.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(SSE_KEEP_ALIVE))
}

#[derive(Deserialize)]
struct MessageQuery {
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

async fn message(
    State(app): State<Arc<App>>,
    Query(q): Query<MessageQuery>,
    body: Bytes,
) -> Response {
    let Some(id) = q.session_id else {
        return (
            StatusCode::BAD_REQUEST,
            "missing sessionId: POST to the URL of the `endpoint` event from GET /sse",
        )
            .into_response();
    };
    let Some(session) = app.legacy().get(&id).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            "unknown or closed session: open GET /sse again",
        )
            .into_response();
    };
    let messages = match parse_client_messages(&body) {
        Ok(m) => m,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a JSON-RPC message: {e}"),
            )
                .into_response();
        }
    };
    let mut tx = session.to_server;
    for m in messages {
        match &m {
            JsonRpcMessage::Request(r) => {
                lock_pending(&session.pending).insert(r.id.clone(), app.in_flight.token());
            }
            // A cancelled request gets no answer: stop counting it.
            JsonRpcMessage::Notification(n) => {
                if let ClientNotification::CancelledNotification(c) = &n.notification
                    && let Some(rid) = &c.params.request_id
                {
                    lock_pending(&session.pending).remove(rid);
                }
            }
            _ => {}
        }
        if tx.send(m).await.is_err() {
            return (StatusCode::NOT_FOUND, "session closed: open GET /sse again").into_response();
        }
    }
    StatusCode::ACCEPTED.into_response()
}

/// One message, or a batch (an array), as the 2024-11-05 revision allows.
fn parse_client_messages(body: &[u8]) -> Result<Vec<ClientJsonRpcMessage>, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_slice(body)?;
    match value {
        serde_json::Value::Array(items) => items.into_iter().map(serde_json::from_value).collect(),
        one => Ok(vec![serde_json::from_value(one)?]),
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks: not behind the bearer token (providers cannot send it); the per-task secret
// authenticates, and only the confirming poll changes the journal.

#[derive(Deserialize)]
struct HookQuery {
    task: Option<String>,
    token: Option<String>,
}

async fn webhook(
    State(app): State<Arc<App>>,
    Path(provider): Path<String>,
    Query(q): Query<HookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(p) = provider.parse::<ProviderId>() else {
        let shown: String = provider.chars().take(32).collect();
        tracing::warn!(provider = %shown, "webhook refused: unknown provider");
        return (StatusCode::NOT_FOUND, "unknown provider").into_response();
    };
    // In the header the provider declares, else in the callback URL we gave it.
    let secret = p
        .decl()
        .webhook
        .and_then(|w| w.secret_header)
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok())
        .or(q.token.as_deref());
    match app
        .core
        .webhook(p, q.task.as_deref(), secret, &headers, &body)
        .await
    {
        Ok(WebhookOutcome::Confirming { task_id }) => {
            tracing::info!(task = %task_id, provider = %p, "webhook accepted; confirming with one poll");
            (StatusCode::OK, "ok").into_response()
        }
        Err(e) => {
            let status = match e.category {
                Category::NotFound => StatusCode::NOT_FOUND,
                Category::Auth => StatusCode::UNAUTHORIZED,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            // The task id is ours and not secret; secrets and tokens are never logged.
            let task: Option<String> = q.task.as_deref().map(|t| t.chars().take(64).collect());
            tracing::warn!(provider = %p, task = ?task, reason = %e.message, "webhook refused");
            let text = match e.category {
                Category::NotFound => "unknown task",
                Category::Auth => "webhook not authenticated (signature or per-task secret)",
                _ => "internal error",
            };
            (status, text).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_rules() {
        let rules: Vec<HostRule> = ["localhost", "::1", "mcp.example.com:8443"]
            .iter()
            .map(|h| HostRule::parse(h))
            .collect();
        let ok = |h: &str| rules.iter().any(|r| r.admits(&HostRule::parse(h)));
        assert!(ok("localhost:8765"));
        assert!(ok("LOCALHOST"));
        assert!(ok("[::1]:8765"));
        assert!(ok("mcp.example.com:8443"));
        assert!(!ok("mcp.example.com"));
        assert!(!ok("evil.example:8765"));
        assert!(!ok("localhost.evil.example"));
    }

    #[test]
    fn origin_rules() {
        let rules: Vec<OriginRule> = ["http://localhost:*", "https://app.example.com"]
            .iter()
            .filter_map(|o| OriginRule::parse(o))
            .collect();
        let ok =
            |o: &str| OriginRule::of_request(o).is_some_and(|o| rules.iter().any(|r| r.admits(&o)));
        assert!(ok("http://localhost:6274"));
        assert!(ok("https://app.example.com"));
        assert!(ok("https://app.example.com:443"));
        assert!(!ok("https://app.example.com:8443"));
        assert!(!ok("http://app.example.com"));
        assert!(!ok("https://evil.example"));
        assert!(!ok("null"));
    }

    #[test]
    fn public_url_widens_hosts_and_origins() {
        let p = parse_public_url("https://MCP.example.com/i2v").unwrap();
        let addr: SocketAddr = "0.0.0.0:8765".parse().unwrap();
        let hosts = allowed_hosts(addr, Some(&p), &["extra.example".into()]);
        assert!(hosts.contains(&"mcp.example.com".to_string()), "{hosts:?}");
        assert!(hosts.contains(&"extra.example".to_string()));
        assert!(!hosts.contains(&"0.0.0.0".to_string()));
        let origins = allowed_origins(Some(&p), &[]);
        assert!(origins.contains(&"https://mcp.example.com:443".to_string()));
        assert!(parse_public_url("ftp://x").is_err());
    }
}
