//! The HTTP face, in process on 127.0.0.1: streamable HTTP through the rmcp client, the legacy
//! HTTP+SSE transport driven with raw requests, the refusals (token, Host, Origin, body size),
//! provider webhooks against each fake, many sessions on one core, and graceful shutdown.
// Roots are deprecated in the 2026-07-28 revision (SEP-2577); the roots test still needs them.
#![allow(deprecated)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use i2v_mcp::core::{CallCtx, Core};
use i2v_mcp::http::{HttpOptions, ServerHandle};
use i2v_mcp::model::{CreateRequest, ProviderId, Status, Task};
use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ListRootsResult, ProgressNotificationParam,
    Root,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::mcp_flow::{assert_downloaded, env_for};
use crate::support::fakes::{FakeProvider, Kind};
use crate::support::{Client, Session, Workspace, call, err, ok, within};

pub(crate) const TOKEN: &str = "test-token-0123456789abcdef";

/// A config pointed at `fake` with fast polling.
pub(crate) fn config(
    ws: &Workspace,
    fake: &FakeProvider,
    provider: &str,
) -> i2v_mcp::config::Config {
    let env = env_for(fake, provider);
    let mut pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.extend([
        ("I2V_MCP_POLL_FIRST_MS", "30"),
        ("I2V_MCP_POLL_MAX_MS", "150"),
    ]);
    ws.config(&pairs)
}

/// Serve `core` on 127.0.0.1:0; `edit` sees the options and the address before serving.
pub(crate) async fn start(
    core: Arc<Core>,
    edit: impl FnOnce(&mut HttpOptions, SocketAddr),
) -> (SocketAddr, ServerHandle) {
    // reqwest (in the rmcp client) needs a TLS provider even for plain http.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut opts = HttpOptions::from_config(&core.cfg, addr.to_string());
    opts.auth_token = Some(TOKEN.to_string().into());
    edit(&mut opts, addr);
    i2v_mcp::http::serve(listener, core, opts).unwrap()
}

/// An rmcp client over streamable HTTP.
pub(crate) async fn connect_http(
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<(Session, Client), String> {
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"));
    if let Some(t) = token {
        cfg = cfg.auth_header(t);
    }
    let handler = Client::default();
    let s = within(
        10,
        "initialize over HTTP",
        handler
            .clone()
            .serve(StreamableHttpClientTransport::from_config(cfg)),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok((s, handler))
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn initialize(id: i64, version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
}

async fn task_of(core: &Core, id: &str) -> Task {
    core.journal().get(id).await.unwrap().unwrap().to_task()
}

#[tokio::test]
async fn streamable_http_end_to_end_with_progress() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let img = ws.png("cat.png", 640, 360);
    let core = Core::start(config(&ws, &fake, "piapi")).unwrap();
    let (addr, handle) = start(core, |_, _| {}).await;
    let (s, client) = connect_http(addr, Some(TOKEN)).await.unwrap();

    let task = ok(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "the cat turns its head", "provider": "piapi"}),
    )
    .await);
    assert_eq!(task["status"], "queued", "{task}");
    let r = call(
        &s,
        "get_task",
        json!({"task_id": task["task_id"], "wait_seconds": 30}),
    )
    .await;
    let done = ok(&r);
    assert_downloaded(&done);
    assert!(
        r.content.iter().any(|c| c
            .as_resource_link()
            .is_some_and(|l| l.uri.ends_with(".mp4"))),
        "no resource_link: {:?}",
        r.content
    );
    // Progress came over the POST's stream, strictly increasing, ending at 100.
    let progress = client.progress.lock().unwrap().clone();
    assert!(!progress.is_empty(), "no progress notifications");
    for w in progress.windows(2) {
        assert!(w[1].progress > w[0].progress, "{progress:?}");
    }
    assert_eq!(progress.last().unwrap().progress, 100.0);
    assert_eq!(fake.accepted_creates(), 1);

    // The same server without the token, or with a wrong one, refuses the client.
    assert!(connect_http(addr, None).await.is_err());
    assert!(connect_http(addr, Some("wrong")).await.is_err());

    s.cancel().await.unwrap();
    within(15, "shutdown", handle.shutdown()).await;
}

#[tokio::test]
async fn stateless_mode_serves_without_sessions() {
    let ws = Workspace::new();
    let core = Core::start(ws.config(&[])).unwrap();
    let (addr, handle) = start(core, |o, _| o.stateless = true).await;
    // Raw: initialize gets no session id, and a tools/call without one is answered.
    let c = http();
    let r = c
        .post(format!("http://{addr}/mcp"))
        .bearer_auth(TOKEN)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize(1, "2025-06-18"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("mcp-session-id").is_none());
    let r = c
        .post(format!("http://{addr}/mcp"))
        .bearer_auth(TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_models", "arguments": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = within(10, "stateless tools/call", r.text()).await.unwrap();
    assert!(text.contains("wan2.1-i2v-14b"), "{text}");
    // And the rmcp client works against it.
    let (s, _) = connect_http(addr, Some(TOKEN)).await.unwrap();
    let tools = within(10, "tools/list", s.list_all_tools()).await.unwrap();
    assert!(tools.iter().any(|t| t.name == "get_task"));
    s.cancel().await.unwrap();
    within(15, "shutdown", handle.shutdown()).await;
}

/// Reads `event:` / `data:` pairs from an SSE response.
struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl SseReader {
    fn new(r: reqwest::Response) -> Self {
        SseReader {
            body: r.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next event with data (keep-alive comments are skipped).
    async fn next(&mut self) -> (String, String) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut event = "message".to_string();
                let mut data = Vec::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.trim_start().to_string());
                    }
                }
                if !data.is_empty() {
                    return (event, data.join("\n"));
                }
                continue;
            }
            let chunk = within(30, "an SSE event", self.body.next())
                .await
                .expect("SSE stream ended")
                .unwrap();
            self.buf
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }

    /// Messages until the response to `id`; returns (everything before it, the response).
    async fn until_response(&mut self, id: i64) -> (Vec<Value>, Value) {
        let mut before = Vec::new();
        loop {
            let (event, data) = self.next().await;
            assert_eq!(event, "message", "{data}");
            let v: Value = serde_json::from_str(&data).unwrap();
            if v["id"] == json!(id) {
                return (before, v);
            }
            before.push(v);
        }
    }
}

#[tokio::test]
async fn legacy_sse_end_to_end() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let img = ws.png("cat.png", 320, 180);
    let core = Core::start(config(&ws, &fake, "piapi")).unwrap();
    let (addr, handle) = start(core, |_, _| {}).await;
    let c = http();
    let sse = within(
        10,
        "GET /sse",
        c.get(format!("http://{addr}/sse"))
            .bearer_auth(TOKEN)
            .header("accept", "text/event-stream")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(sse.status(), 200);
    let mut events = SseReader::new(sse);
    let (event, endpoint) = events.next().await;
    assert_eq!(event, "endpoint");
    assert!(endpoint.starts_with("/message?sessionId="), "{endpoint}");
    let post_url = format!("http://{addr}{endpoint}");
    let post = |body: Value| {
        let req = c.post(&post_url).bearer_auth(TOKEN).json(&body);
        async move { within(10, "POST /message", req.send()).await.unwrap() }
    };

    assert_eq!(post(initialize(1, "2024-11-05")).await.status(), 202);
    let (_, init) = events.until_response(1).await;
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05", "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "i2v-mcp");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(post(initialized).await.status(), 202);
    assert_eq!(
        post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
            .await
            .status(),
        202
    );
    let (_, tools) = events.until_response(2).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"create_i2v_task"), "{names:?}");

    // Malformed input is refused and the session keeps serving.
    let bad = c
        .post(&post_url)
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let create = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "create_i2v_task",
        "arguments": {"image": img, "prompt": "p", "provider": "piapi"}}});
    assert_eq!(post(create).await.status(), 202);
    let (_, created) = events.until_response(3).await;
    let task_id = created["result"]["structuredContent"]["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    let wait = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "get_task",
        "arguments": {"task_id": task_id, "wait_seconds": 30}, "_meta": {"progressToken": "p-4"}}});
    assert_eq!(post(wait).await.status(), 202);
    let (before, done) = events.until_response(4).await;
    assert_downloaded(&done["result"]["structuredContent"]);
    let progress: Vec<&Value> = before
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(!progress.is_empty(), "no progress: {before:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "p-4")
    );

    // Unknown sessions are 404; a closed stream closes its session.
    let unknown = c
        .post(format!("http://{addr}/message?sessionId=nope"))
        .bearer_auth(TOKEN)
        .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    drop(events);
    within(10, "the session to close with its stream", async {
        loop {
            let r = c
                .post(&post_url)
                .bearer_auth(TOKEN)
                .json(&json!({"jsonrpc": "2.0", "id": 10, "method": "ping"}))
                .send()
                .await
                .unwrap();
            if r.status() == 404 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    within(15, "shutdown", handle.shutdown()).await;
}

#[tokio::test]
async fn refusals_token_host_origin_and_size() {
    let ws = Workspace::new();
    let core = Core::start(ws.config(&[])).unwrap();
    let (addr, handle) = start(core, |o, _| {
        o.max_body_bytes = 64 * 1024;
        o.allowed_origins = vec!["https://app.example.com:443".into()];
    })
    .await;
    let c = http();
    let mcp = format!("http://{addr}/mcp");
    let init = initialize(1, "2025-06-18");
    let accept = "application/json, text/event-stream";
    let post_mcp = |token: Option<&str>, headers: &[(&str, &str)], body: String| {
        let mut req = c
            .post(&mcp)
            .header("accept", accept)
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        async move { within(10, "POST /mcp", req.send()).await.unwrap() }
    };

    // Health needs nothing.
    let h = c
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    assert_eq!(h.text().await.unwrap(), "ok");

    // Token: missing or wrong -> 401 on every guarded route; right -> served.
    let r = post_mcp(None, &[], init.to_string()).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some());
    assert_eq!(
        post_mcp(Some("wrong"), &[], init.to_string())
            .await
            .status(),
        401
    );
    assert_eq!(
        post_mcp(Some(&TOKEN[..TOKEN.len() - 1]), &[], init.to_string())
            .await
            .status(),
        401
    );
    let sse = c.get(format!("http://{addr}/sse")).send().await.unwrap();
    assert_eq!(sse.status(), 401);
    let msg = c
        .post(format!("http://{addr}/message?sessionId=x"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(msg.status(), 401);
    let r = post_mcp(Some(TOKEN), &[], init.to_string()).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("mcp-session-id").is_some());

    // Host (DNS rebinding) and Origin -> 403, with the right token, on every guarded route.
    for (k, v) in [("host", "evil.example"), ("origin", "https://evil.example")] {
        let r = post_mcp(Some(TOKEN), &[(k, v)], init.to_string()).await;
        assert_eq!(r.status(), 403, "{k}: {v}");
        let r = c
            .get(format!("http://{addr}/sse"))
            .bearer_auth(TOKEN)
            .header(k, v)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "/sse {k}: {v}");
        let r = c
            .post(format!("http://{addr}/message?sessionId=x"))
            .bearer_auth(TOKEN)
            .header(k, v)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "/message {k}: {v}");
    }
    // Allowed: a loopback Host name, the configured origin and loopback origins.
    for (k, v) in [
        ("host", format!("localhost:{}", addr.port())),
        ("origin", "https://app.example.com".to_string()),
        ("origin", "http://localhost:6274".to_string()),
    ] {
        let r = post_mcp(Some(TOKEN), &[(k, v.as_str())], init.to_string()).await;
        assert_eq!(r.status(), 200, "{k}: {v}");
    }

    // Oversized bodies -> 413: MCP, legacy messages, webhooks (1 MiB).
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(100 * 1024)
    );
    let r = post_mcp(Some(TOKEN), &[], big.clone()).await;
    assert_eq!(r.status(), 413);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("64 KiB") && text.contains("https URL"),
        "names the limit and the alternative: {text}"
    );
    let r = c
        .post(format!("http://{addr}/message?sessionId=x"))
        .bearer_auth(TOKEN)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = c
        .post(format!("http://{addr}/webhooks/piapi?task=x"))
        .body(vec![b'x'; 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // Malformed JSON-RPC is answered and the server goes on serving.
    let r = post_mcp(Some(TOKEN), &[], "{\"jsonrpc\":".into()).await;
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = post_mcp(Some(TOKEN), &[], "[1,2,3]".into()).await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(
        post_mcp(Some(TOKEN), &[], init.to_string()).await.status(),
        200
    );
    within(15, "shutdown", handle.shutdown()).await;
}

#[tokio::test]
async fn exposed_address_without_token_is_refused() {
    let ws = Workspace::new();
    let core = Core::start(ws.config(&[])).unwrap();
    let mut opts = HttpOptions::from_config(&core.cfg, "0.0.0.0:0");
    opts.auth_token = None;
    let e = i2v_mcp::http::bind(core.clone(), opts).await.err().unwrap();
    assert!(
        e.message.contains("without a bearer token"),
        "{}",
        e.message
    );
    assert!(
        e.next_step.unwrap().contains("I2V_MCP_AUTH_TOKEN"),
        "the error says how to fix it"
    );
    // Loopback without a token is fine.
    let mut opts = HttpOptions::from_config(&core.cfg, "127.0.0.1:0");
    opts.auth_token = None;
    let (addr, handle) = i2v_mcp::http::bind(core, opts).await.unwrap();
    assert!(addr.ip().is_loopback());
    let (s, _) = connect_http(addr, None).await.unwrap();
    s.cancel().await.unwrap();
    within(15, "shutdown", handle.shutdown()).await;
}

/// A webhook is believed only after the per-task secret matches and one poll confirms it.
async fn webhook_flow(kind: Kind, provider: &str) {
    let fake = FakeProvider::start(kind).await;
    let ws = Workspace::new();
    // Polling so slow that only the webhook can explain a prompt completion.
    let cfg = config(&ws, &fake, provider)
        .with_fast_polling(Duration::from_secs(600), Duration::from_secs(600));
    let core = Core::start(cfg).unwrap();
    let (addr, handle) = start(core.clone(), |o, addr| {
        o.public_url = Some(format!("http://{addr}"));
    })
    .await;
    let pid: ProviderId = provider.parse().unwrap();
    let task = core
        .create(
            CreateRequest {
                image: Some("https://example.com/cat.png".into()),
                prompt: "the cat turns its head".into(),
                provider: Some(pid),
                ..CreateRequest::default()
            },
            CallCtx::default(),
        )
        .await
        .unwrap();
    let id = task.task_id.clone();
    let ptid = task.provider_task_id.clone().unwrap();
    let hook_url = fake.tasks()[0].webhook_url.clone().unwrap();
    let prefix = format!("http://{addr}/webhooks/{provider}?task={id}&token=");
    assert!(hook_url.starts_with(&prefix), "{hook_url}");
    let secret = hook_url[prefix.len()..].to_string();
    let c = http();
    let hook = |query: String, secret_header: Option<&str>, body: Value| {
        let mut req = c
            .post(format!("http://{addr}/webhooks/{query}"))
            .json(&body);
        if let Some(s) = secret_header {
            req = req.header("x-webhook-secret", s);
        }
        async move { within(10, "webhook", req.send()).await.unwrap().status() }
    };
    let forged = json!({"data": {"task_id": ptid, "status": "completed", "output": {"video_url": "http://127.0.0.1:9/x.mp4"}},
        "payload": {"task": {"task_id": ptid, "status": "TASK_STATUS_SUCCEED"}}});

    // Refused: wrong or missing secret (401), unknown task or provider (404). Nothing changes.
    let before = task_of(&core, &id).await;
    assert_eq!(
        hook(
            format!("{provider}?task={id}&token=wrong"),
            None,
            forged.clone()
        )
        .await,
        401
    );
    assert_eq!(
        hook(
            format!("{provider}?task={id}"),
            Some("wrong"),
            forged.clone()
        )
        .await,
        401
    );
    assert_eq!(
        hook(format!("{provider}?task={id}"), None, forged.clone()).await,
        401
    );
    assert_eq!(
        hook(
            format!("{provider}?task=tsk_unknown&token={secret}"),
            None,
            forged.clone()
        )
        .await,
        404
    );
    assert_eq!(
        hook(
            format!("nope?task={id}&token={secret}"),
            None,
            forged.clone()
        )
        .await,
        404
    );
    let other = if pid == ProviderId::Novita {
        "apikley"
    } else {
        "novita"
    };
    assert_eq!(
        hook(
            format!("{other}?task={id}&token={secret}"),
            None,
            forged.clone()
        )
        .await,
        404,
        "a webhook for another provider's task"
    );
    assert_eq!(
        task_of(&core, &id).await,
        before,
        "a refused webhook changed the journal"
    );
    assert_eq!(fake.polls(&ptid), 0, "a refused webhook caused a poll");

    // The right secret with a forged body: only the confirming poll counts (still queued there).
    let mut news = core.watcher().subscribe();
    assert_eq!(
        hook(
            format!("{provider}?task={id}&token={secret}"),
            None,
            forged.clone()
        )
        .await,
        200
    );
    let t = within(10, "the confirming poll to be recorded", async {
        loop {
            let t = news.recv().await.unwrap();
            if t.task_id == id {
                return t;
            }
        }
    })
    .await;
    assert_eq!(fake.polls(&ptid), 1);
    assert!(
        !t.status.is_terminal() && t.video.is_none(),
        "the forged body was believed: {t:?}"
    );

    // The provider finishes and calls back: the task completes promptly.
    assert!(fake.complete_now(&ptid));
    let deliveries = fake.wait_webhooks(1, Duration::from_secs(10)).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, Some(200), "{:?}", deliveries[0]);
    let done = within(10, "completion after the webhook", async {
        loop {
            let t = task_of(&core, &id).await;
            if t.status == Status::Succeeded && !t.download_pending {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_downloaded(&serde_json::to_value(&done).unwrap());
    assert_eq!(
        fake.polls(&ptid),
        2,
        "one confirming poll per accepted webhook"
    );

    // A duplicate delivery is harmless: accepted, no poll, nothing changes.
    let d = &deliveries[0];
    let mut req = c.post(&d.url).json(&d.body);
    for (k, v) in &d.headers {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
    within(10, "the watcher to let go again", async {
        while core.watcher().is_watching(&id) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(task_of(&core, &id).await, done);
    assert_eq!(fake.polls(&ptid), 2);
    assert_eq!(fake.downloads(), 1);
    within(15, "shutdown", handle.shutdown()).await;
}

#[tokio::test]
async fn webhook_piapi() {
    webhook_flow(Kind::Piapi, "piapi").await;
}

#[tokio::test]
async fn webhook_novita() {
    webhook_flow(Kind::Novita, "novita").await;
}

#[tokio::test]
async fn webhook_apikley() {
    webhook_flow(Kind::Apikley, "apikley").await;
}

#[tokio::test]
async fn fifty_concurrent_sessions_share_one_core() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let img = ws.png("cat.png", 64, 64);
    let core = Core::start(config(&ws, &fake, "piapi")).unwrap();
    let req = CreateRequest {
        image: Some(img.display().to_string()),
        prompt: "p".into(),
        provider: Some(ProviderId::Piapi),
        wait_seconds: Some(30),
        ..CreateRequest::default()
    };
    let task = within(40, "a finished task", core.create(req, CallCtx::default()))
        .await
        .unwrap();
    assert_eq!(task.status, Status::Succeeded, "{task:?}");
    let requests_before = fake.requests().len();
    let (addr, handle) = start(core.clone(), |_, _| {}).await;

    let sessions: Vec<_> = (0..50)
        .map(|_| {
            let id = task.task_id.clone();
            tokio::spawn(async move {
                let (s, _) = connect_http(addr, Some(TOKEN)).await.unwrap();
                let tools = within(20, "tools/list", s.list_all_tools()).await.unwrap();
                assert_eq!(tools.len(), 7);
                let t = ok(&call(&s, "get_task", json!({"task_id": id})).await);
                assert_eq!(t["status"], "succeeded");
                s.cancel().await.unwrap();
            })
        })
        .collect();
    for s in sessions {
        within(60, "50 sessions", s).await.unwrap();
    }
    // Answered from the journal: nothing reached the provider.
    assert_eq!(fake.requests().len(), requests_before);
    assert_eq!(core.list(None, None, None).await.unwrap().tasks.len(), 1);
    within(15, "shutdown", handle.shutdown()).await;
}

#[tokio::test]
async fn shutdown_lets_running_calls_finish_and_keeps_tasks_open() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_plan(crate::support::fakes::TaskPlan::Polls {
        pending: 100_000,
        processing: 1,
        outcome: crate::support::fakes::Outcome::Succeed,
    });
    let ws = Workspace::new();
    let img = ws.png("cat.png", 64, 64);
    let core = Core::start(config(&ws, &fake, "piapi")).unwrap();
    let (addr, handle) = start(core.clone(), |o, _| {
        o.shutdown_grace = Duration::from_secs(20);
    })
    .await;
    let (s, client) = connect_http(addr, Some(TOKEN)).await.unwrap();
    let t = ok(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "p", "provider": "piapi"}),
    )
    .await);
    let id = t["task_id"].as_str().unwrap().to_string();

    // A 2 s wait is running when shutdown starts: it is let finish.
    let waiting = tokio::spawn(async move {
        let r = call(&s, "get_task", json!({"task_id": id, "wait_seconds": 2})).await;
        let _ = s.cancel().await;
        r
    });
    within(10, "the wait to start", async {
        while client.progress.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    within(15, "graceful shutdown", handle.shutdown()).await;
    let r = within(10, "the running call", waiting).await.unwrap();
    let t = ok(&r);
    assert_eq!(t["status"], "queued", "{t}");
    // No new connections; the task stays open for the next start.
    assert!(
        http()
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_err()
    );
    let id = t["task_id"].as_str().unwrap();
    assert!(!task_of(&core, id).await.status.is_terminal());
    drop(core);
    let again = Core::start(config(&ws, &fake, "piapi")).unwrap();
    assert!(again.watcher().is_watching(id), "not resumed after restart");
}

/// A client that offers one root and records whether the server asked for it.
#[derive(Clone)]
struct RootsClient {
    root: String,
    asked: Arc<AtomicBool>,
    notify: Arc<tokio::sync::Notify>,
}

impl ClientHandler for RootsClient {
    async fn list_roots(
        &self,
        _: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        self.asked.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
        Ok(ListRootsResult::new(vec![Root::new(self.root.clone())]))
    }
    async fn on_progress(&self, _: ProgressNotificationParam, _: NotificationContext<RoleClient>) {}
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_roots().build(),
            Implementation::new("roots-client", "0"),
        )
    }
}

#[tokio::test]
async fn roots_do_not_widen_allowed_dirs_over_http() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let img = elsewhere.path().join("cat.png");
    crate::support::write_png(&img, 64, 64);
    let core = Core::start(config(&ws, &fake, "piapi")).unwrap();
    let root = url::Url::from_directory_path(elsewhere.path())
        .unwrap()
        .to_string();

    // Over HTTP the server never asks for roots, and a file under one is refused.
    let (addr, handle) = start(core.clone(), |_, _| {}).await;
    let client = RootsClient {
        root: root.clone(),
        asked: Arc::default(),
        notify: Arc::default(),
    };
    let cfg = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"))
        .auth_header(TOKEN);
    let s = within(
        10,
        "initialize",
        client
            .clone()
            .serve(StreamableHttpClientTransport::from_config(cfg)),
    )
    .await
    .unwrap();
    let args = json!({"image": img, "prompt": "p", "provider": "piapi"});
    let params = rmcp::model::CallToolRequestParams::new("create_i2v_task")
        .with_arguments(args.as_object().cloned().unwrap());
    let r = within(10, "create", s.call_tool(params.clone()))
        .await
        .unwrap();
    let e = err(&r);
    assert_eq!(e["category"], "invalid_input", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("outside the allowed"),
        "{e}"
    );
    assert!(
        !client.asked.load(Ordering::SeqCst),
        "roots were requested over HTTP"
    );
    s.cancel().await.unwrap();
    within(15, "shutdown", handle.shutdown()).await;

    // The control: the same client in process (stdio-like trust) is asked for its roots.
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = i2v_mcp::mcp::Server::new(core.clone());
    tokio::spawn(async move {
        if let Ok(running) = server.serve(a).await {
            let _ = running.waiting().await;
        }
    });
    let local = RootsClient {
        root,
        asked: Arc::default(),
        notify: Arc::default(),
    };
    let notified = local.notify.clone();
    let wait = notified.notified();
    let s = within(10, "initialize", local.clone().serve(b))
        .await
        .unwrap();
    if !local.asked.load(Ordering::SeqCst) {
        within(10, "the roots request", wait).await;
    }
    s.cancel().await.unwrap();
    assert_eq!(fake.creates(), 0);
}

#[tokio::test]
async fn legacy_endpoint_follows_public_url_path() {
    let ws = Workspace::new();
    let core = Core::start(ws.config(&[])).unwrap();
    let (addr, handle) = start(core, |o, addr| {
        o.public_url = Some(format!("http://{addr}/i2v/"));
    })
    .await;
    let c = http();
    let sse = c
        .get(format!("http://{addr}/sse"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(sse);
    let (event, endpoint) = events.next().await;
    assert_eq!(event, "endpoint");
    let session = endpoint
        .strip_prefix("/i2v/message?sessionId=")
        .unwrap_or_else(|| panic!("{endpoint}"))
        .to_string();
    // Through a proxy that strips /i2v, or directly: both reach the session.
    for (id, path) in [(1, "/i2v/message"), (2, "/message")] {
        let r = c
            .post(format!("http://{addr}{path}?sessionId={session}"))
            .bearer_auth(TOKEN)
            .json(&initialize(id, "2024-11-05"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{path}");
        if id == 1 {
            let (_, init) = events.until_response(1).await;
            assert!(init["result"]["serverInfo"].is_object(), "{init}");
        }
    }
    drop(events);
    within(15, "shutdown", handle.shutdown()).await;
}

/// A remote client cannot open the server's files: results are linked and served at
/// /videos/{task_id}.mp4, behind the token.
#[tokio::test]
async fn videos_are_linked_and_served_to_token_holders() {
    let (_ws, addr, handle, s, r) = served_local_video().await;
    let t = r.structured_content.clone().unwrap();
    let link = r
        .content
        .iter()
        .find_map(|c| c.as_resource_link().cloned())
        .expect("resource_link");
    let id = t["task_id"].as_str().unwrap();
    // Signed (issue 24): a `<video>` tag opens it without a header; the token never goes in it.
    let plain = format!("http://{addr}/videos/{id}.mp4");
    let signed_path = link
        .uri
        .strip_prefix(&format!("http://{addr}/videos/s/"))
        .expect("a signed link");
    assert!(
        signed_path.ends_with(&format!("/{id}.mp4")) && !signed_path.contains(TOKEN),
        "{signed_path}"
    );
    let on_disk = std::fs::read(t["video"]["local_path"].as_str().unwrap()).unwrap();

    let got = within(
        10,
        "GET video",
        http().get(&link.uri).bearer_auth(TOKEN).send(),
    )
    .await
    .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "video/mp4");
    assert_eq!(got.bytes().await.unwrap().to_vec(), on_disk);
    let anon = within(10, "GET without token", http().get(&plain).send())
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    let signed = within(10, "GET the signed link", http().get(&link.uri).send())
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    assert_eq!(signed.bytes().await.unwrap().to_vec(), on_disk);
    let sig = signed_path.split('/').nth(1).unwrap();
    let forged = link.uri.replace(sig, &"0".repeat(64));
    let r = within(10, "GET a forged link", http().get(&forged).send())
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("get_task"));
    // The contact sheet and the poster beside it, behind the same token.
    for (file, on_disk) in [("sheet", "sheet.jpg"), ("poster", "poster.jpg")] {
        let url = format!("http://{addr}/videos/{id}.{on_disk}");
        let got = within(10, "GET image", http().get(&url).bearer_auth(TOKEN).send())
            .await
            .unwrap();
        assert_eq!(got.status(), 200, "{file}");
        assert_eq!(got.headers()["content-type"], "image/jpeg", "{file}");
        let video = std::path::Path::new(t["video"]["local_path"].as_str().unwrap());
        let beside = video.with_file_name(format!("{id}.{on_disk}"));
        assert_eq!(
            got.bytes().await.unwrap().to_vec(),
            std::fs::read(beside).unwrap()
        );
        let anon = within(10, "GET image without token", http().get(&url).send())
            .await
            .unwrap();
        assert_eq!(anon.status(), 401, "{file}");
    }
    let missing = within(
        10,
        "GET unknown",
        http()
            .get(format!("http://{addr}/videos/tsk_nope"))
            .bearer_auth(TOKEN)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);
    s.cancel().await.unwrap();
    within(15, "shutdown", handle.shutdown()).await;
}

/// A server with a token and a client session on it, and a local render made through it
/// (waited for until it succeeded). Keep the workspace until the end of the test.
async fn served_local_video() -> (
    Workspace,
    SocketAddr,
    ServerHandle,
    Session,
    rmcp::model::CallToolResult,
) {
    let ws = Workspace::new();
    let img = ws.png("scene.png", 640, 360);
    let core = Core::start(ws.config(&[])).unwrap();
    let (addr, handle) = start(core, |_, _| {}).await;
    let (s, _) = connect_http(addr, Some(TOKEN)).await.unwrap();
    let args = json!({"image": img, "prompt": "zoom in", "provider": "local", "wait_seconds": 60});
    let params = rmcp::model::CallToolRequestParams::new("create_i2v_task")
        .with_arguments(args.as_object().cloned().unwrap());
    let r = within(60, "create", s.call_tool(params)).await.unwrap();
    let t = r.structured_content.clone().unwrap();
    assert_eq!(t["status"], "succeeded", "{t}");
    (ws, addr, handle, s, r)
}

/// Players seek: /videos answers `Range` with 206 and exactly those bytes, `HEAD` with the
/// length and no body, a range past the end with 416, and a repeat with `If-Modified-Since`
/// with 304.
#[tokio::test]
async fn videos_answer_ranges_and_head() {
    let (_ws, addr, handle, s, r) = served_local_video().await;
    let t = r.structured_content.unwrap();
    let on_disk = std::fs::read(t["video"]["local_path"].as_str().unwrap()).unwrap();
    assert!(on_disk.len() > 100, "{} bytes", on_disk.len());
    let url = format!(
        "http://{addr}/videos/{}.mp4",
        t["task_id"].as_str().unwrap()
    );
    let get = |range: Option<&str>| {
        let mut r = http().get(&url).bearer_auth(TOKEN);
        if let Some(range) = range {
            r = r.header("range", range);
        }
        within(10, "GET video", r.send())
    };

    let part = get(Some("bytes=0-99")).await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 0-99/{}", on_disk.len()).as_str()
    );
    assert_eq!(part.headers()["content-type"], "video/mp4");
    assert_eq!(
        part.bytes().await.unwrap().to_vec(),
        on_disk[..100].to_vec()
    );

    let past = format!("bytes={}-", on_disk.len() + 10);
    let refused = get(Some(&past)).await.unwrap();
    assert_eq!(refused.status(), 416);

    let head = within(
        10,
        "HEAD video",
        http().head(&url).bearer_auth(TOKEN).send(),
    )
    .await
    .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        on_disk.len().to_string().as_str()
    );
    assert_eq!(head.headers()["content-type"], "video/mp4");
    assert!(head.headers().contains_key("accept-ranges"));
    let modified = head.headers()["last-modified"].clone();
    assert!(head.bytes().await.unwrap().is_empty());
    let anon_head = within(10, "HEAD without token", http().head(&url).send())
        .await
        .unwrap();
    assert_eq!(anon_head.status(), 401);

    let again = within(
        10,
        "GET If-Modified-Since",
        http()
            .get(&url)
            .bearer_auth(TOKEN)
            .header("if-modified-since", modified)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(again.status(), 304);
    s.cancel().await.unwrap();
    within(15, "shutdown", handle.shutdown()).await;
}

// ---------------------------------------------------------------------------------------------
// Hardening: idle and slow clients, session and connection caps, duplicate Host, weak tokens.

/// Send raw bytes on a fresh connection and read until the server closes it (bounded).
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = within(5, "connect", tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match within(5, "raw response", tcp.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // One answer is enough: we only look at the status line and headers.
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Until the server closes `tcp` (read returns 0 or an error); panics after `secs`.
async fn closed_by_server(tcp: &mut tokio::net::TcpStream, secs: u64, what: &str) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    loop {
        match within(secs, what, tcp.read(&mut buf)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Defect 6: 300 idle sockets (no token needed) used to exhaust the file descriptors. The real
/// binary under a 256-descriptor limit must still answer /healthz and an authenticated
/// tools/list within a second each.
#[tokio::test]
async fn idle_sockets_do_not_starve_the_server() {
    use tokio::io::AsyncBufReadExt;
    let ws = Workspace::new();
    let token = "0123456789abcdef0123456789abcdef";
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" serve --http 127.0.0.1:0")
        .arg(env!("CARGO_BIN_EXE_i2v-mcp"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .envs(ws.env(&[("I2V_MCP_AUTH_TOKEN", token)]))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = within(30, "the serving line on stderr", async {
        loop {
            let line = lines.next_line().await.unwrap().expect("stderr closed");
            if let Some(rest) = line.split("serving MCP at http://").nth(1) {
                return rest.split('/').next().unwrap().parse().unwrap();
            }
        }
    })
    .await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(
            within(
                5,
                "an idle connection",
                tokio::net::TcpStream::connect(addr),
            )
            .await
            .unwrap(),
        );
    }
    let started = std::time::Instant::now();
    let h = within(1, "/healthz with 300 idle sockets", async {
        http()
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(h.status(), 200);
    let healthz = started.elapsed();
    let started = std::time::Instant::now();
    let (s, _) = within(
        1,
        "initialize with 300 idle sockets",
        connect_http(addr, Some(token)),
    )
    .await
    .unwrap();
    let tools = within(1, "tools/list with 300 idle sockets", s.list_all_tools())
        .await
        .unwrap();
    assert!(!tools.is_empty());
    eprintln!(
        "with 300 idle sockets: /healthz {healthz:?}, initialize + tools/list {:?}",
        started.elapsed()
    );
    drop(idle);
    let _ = s.cancel().await;
    let _ = child.start_kill();
}

/// An idle connection, and one that dribbles a partial header, are closed after the header
/// read timeout; a busy connection (an open stream) stays.
#[tokio::test]
async fn idle_and_slow_connections_time_out() {
    use tokio::io::AsyncWriteExt;
    let ws = Workspace::new();
    let core = Core::start(ws.config(&[])).unwrap();
    let (addr, handle) = start(core, |o, _| {
        o.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    closed_by_server(&mut silent, 3, "the idle connection to be closed").await;
    closed_by_server(&mut slow, 3, "the slow header to be cut").await;
    // A keep-alive connection that went idle after an answer is closed too.
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    closed_by_server(&mut kept, 3, "the idle keep-alive connection to be closed").await;
    within(15, "shutdown", handle.shutdown()).await;
}

/// At the connection cap the oldest idle connection makes room; when every connection is busy
/// a newcomer is told 503 at once rather than left hanging.
#[tokio::test]
async fn connection_cap_evicts_idle_then_sheds_with_503() {
    let ws = Workspace::new();
    let core = Core::start(ws.config(&[])).unwrap();
    let (addr, handle) = start(core, |o, _| {
        o.max_connections = Some(2);
    })
    .await;
    // Two idle sockets fill the cap; /healthz still answers (one of them is evicted).
    let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
    let r = raw_exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // Two open SSE streams are busy: they are never evicted, so the third is shed.
    let c = http();
    let mut streams = Vec::new();
    for _ in 0..2 {
        let s = within(
            5,
            "GET /sse",
            c.get(format!("http://{addr}/sse"))
                .bearer_auth(TOKEN)
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(s.status(), 200);
        streams.push(s);
    }
    let started = std::time::Instant::now();
    let r = raw_exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.to_ascii_lowercase().contains("retry-after:"), "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    drop(streams);
    within(15, "shutdown", handle.shutdown()).await;
}

/// Streamable-HTTP sessions are capped: over the cap a new session is refused with 503 and
/// Retry-After; ending one (DELETE, answered 204) makes room.
#[tokio::test]
async fn sessions_over_the_cap_are_refused_until_one_ends() {
    let ws = Workspace::new();
    let core = Core::start(ws.config(&[])).unwrap();
    let (addr, handle) = start(core, |o, _| {
        o.max_sessions = 2;
    })
    .await;
    let c = http();
    let mcp = format!("http://{addr}/mcp");
    let init = |id: i64| {
        c.post(&mcp)
            .bearer_auth(TOKEN)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(initialize(id, "2025-06-18").to_string())
            .send()
    };
    let mut ids = Vec::new();
    for i in 0..2 {
        let r = within(10, "initialize", init(i)).await.unwrap();
        assert_eq!(r.status(), 200);
        ids.push(r.headers()["mcp-session-id"].to_str().unwrap().to_string());
    }
    let r = within(10, "initialize over the cap", init(3))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        r.headers().get("retry-after").is_some(),
        "{:?}",
        r.headers()
    );
    let text = r.text().await.unwrap();
    assert!(text.contains("sessions"), "{text}");
    // A 2026-07-28 request opens no session: the cap does not apply to it.
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}
    });
    let r = within(
        10,
        "a sessionless request at the cap",
        c.post(&mcp)
            .bearer_auth(TOKEN)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "server/discover")
            .body(
                json!({"jsonrpc":"2.0","id":9,"method":"server/discover","params":{"_meta": meta}})
                    .to_string(),
            )
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // Issue 10 item 8: ending a session is 204 (clients expect 200/204, not 202).
    let r = within(
        10,
        "DELETE /mcp",
        c.delete(&mcp)
            .bearer_auth(TOKEN)
            .header("mcp-session-id", &ids[0])
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    let r = within(10, "initialize after a DELETE", init(4))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    within(15, "shutdown", handle.shutdown()).await;
}

/// Two Host headers are refused (400) everywhere, before the allowlist could pick one.
#[tokio::test]
async fn duplicate_host_headers_are_refused() {
    let ws = Workspace::new();
    let core = Core::start(ws.config(&[])).unwrap();
    let (addr, handle) = start(core, |_, _| {}).await;
    for path in ["/healthz", "/mcp"] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        );
        let r = raw_exchange(addr, req.as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{path}: {r}");
    }
    let r = raw_exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    within(15, "shutdown", handle.shutdown()).await;
}

/// A public bind needs a strong token; the error says how to make one.
#[tokio::test]
async fn weak_token_is_refused_for_a_public_bind() {
    let ws = Workspace::new();
    let core = Core::start(ws.config(&[])).unwrap();
    for weak in ["x", "short-token", &"a".repeat(40)] {
        let mut opts = HttpOptions::from_config(&core.cfg, "0.0.0.0:0");
        opts.auth_token = Some(weak.to_string().into());
        let e = i2v_mcp::http::bind(core.clone(), opts).await.err().unwrap();
        assert!(e.message.contains("too weak"), "{weak}: {}", e.message);
        assert!(
            e.next_step
                .unwrap_or_default()
                .contains("openssl rand -hex 32"),
            "the error says how to make one"
        );
    }
    let mut opts = HttpOptions::from_config(&core.cfg, "0.0.0.0:0");
    opts.auth_token = Some("3f9c2a7b1e8d4f6a0c5b9e2d7a1f4c8b".to_string().into());
    let (_, handle) = i2v_mcp::http::bind(core, opts).await.unwrap();
    within(15, "shutdown", handle.shutdown()).await;
}

/// The header-read timeout and eviction never cut a call that is running: a silent 2 s wait
/// finishes through a 300 ms header timeout while idle sockets push against a cap of 4.
#[tokio::test]
async fn running_calls_survive_timeouts_and_eviction() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_plan(crate::support::fakes::TaskPlan::Polls {
        pending: 100_000,
        processing: 1,
        outcome: crate::support::fakes::Outcome::Succeed,
    });
    let ws = Workspace::new();
    let img = ws.png("cat.png", 64, 64);
    let core = Core::start(config(&ws, &fake, "piapi")).unwrap();
    let (addr, handle) = start(core, |o, _| {
        o.header_read_timeout = Duration::from_millis(300);
        o.max_connections = Some(4);
    })
    .await;
    let (s, _) = connect_http(addr, Some(TOKEN)).await.unwrap();
    let t = ok(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "p", "provider": "piapi"}),
    )
    .await);
    let waiting = tokio::spawn(async move {
        let r = call(
            &s,
            "get_task",
            json!({"task_id": t["task_id"], "wait_seconds": 2}),
        )
        .await;
        let _ = s.cancel().await;
        r
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = within(10, "the running wait", waiting).await.unwrap();
    assert_eq!(ok(&r)["status"], "queued");
    drop(idle);
    within(15, "shutdown", handle.shutdown()).await;
}
