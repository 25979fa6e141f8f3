//! The stateless 2026-07-28 revision over streamable HTTP (issue 15 item 3), raw on the wire: a
//! long `get_task` wait streams progress and outlives session and connection timeouts,
//! `server/discover` answers beside a 2025 session on the same endpoint, spend consent goes
//! through `InputRequiredResult` rounds, and a create carries a ~9 MB image as a data URI
//! (above rmcp's own 4 MiB default, under our documented 16 MiB).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use i2v_mcp::core::Core;
use i2v_mcp::model::Status;
use serde_json::{Value, json};

use crate::http::{TOKEN, config, connect_http, start};
use crate::mcp_flow::env_for;
use crate::support::fakes::{FakeProvider, Kind, Outcome, TaskPlan};
use crate::support::{Workspace, call, err, ok, raw_err, within};

/// One 2026-07-28 request: self-contained `_meta`, the revision's headers, an SSE-capable accept.
async fn post(addr: SocketAddr, id: i64, method: &str, mut params: Value, caps: Value) -> Reader {
    params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2026-07-28");
    params["_meta"]["io.modelcontextprotocol/clientInfo"] =
        json!({"name": "raw-2026", "version": "1"});
    params["_meta"]["io.modelcontextprotocol/clientCapabilities"] = caps;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let name = params["name"].as_str().unwrap_or_default().to_string();
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut r = reqwest::Client::new()
        .post(format!("http://{addr}/mcp"))
        .bearer_auth(TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if !name.is_empty() {
        r = r.header("mcp-name", name);
    }
    let r = r.json(&body).send();
    let r = within(30, method, r).await.unwrap();
    if r.status() != 200 {
        panic!(
            "{method}: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    Reader {
        body: r.bytes_stream().boxed(),
        buf: String::new(),
    }
}

/// The JSON-RPC messages of one response, as they arrive (SSE `data:` lines or a JSON body).
struct Reader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl Reader {
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buf.find('\n') {
                let line: String = self.buf.drain(..end + 1).collect();
                let line = line.trim();
                let data = line.strip_prefix("data:").unwrap_or(line).trim();
                if data.starts_with('{') {
                    return Some(serde_json::from_str(data).unwrap());
                }
                continue;
            }
            match within(30, "a message", self.body.next()).await {
                Some(chunk) => self
                    .buf
                    .push_str(&String::from_utf8_lossy(&chunk.unwrap()).replace('\r', "")),
                None if self.buf.trim().is_empty() => return None,
                None => self.buf.push('\n'),
            }
        }
    }

    /// The final response (with an `id`); everything before it in `before`.
    async fn response(mut self) -> (Vec<Value>, Value) {
        let mut before = Vec::new();
        while let Some(m) = self.next().await {
            if m.get("id").is_some() {
                return (before, m);
            }
            before.push(m);
        }
        panic!("no response; got {before:?}");
    }
}

pub(crate) async fn call26(
    addr: SocketAddr,
    id: i64,
    tool: &str,
    args: Value,
    caps: Value,
) -> Value {
    let params = json!({"name": tool, "arguments": args});
    post(addr, id, "tools/call", params, caps)
        .await
        .response()
        .await
        .1["result"]
        .clone()
}

#[tokio::test]
async fn stateless_wait_streams_progress_past_session_and_idle_timeouts() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_plan(TaskPlan::Polls {
        pending: 3,
        processing: 12,
        outcome: Outcome::Succeed,
    });
    let ws = Workspace::new();
    let img = ws.png("cat.png", 320, 180);
    let core = Core::start(config(&ws, &fake, "piapi")).unwrap();
    // Sessions idle out after 300 ms and a connection must send its headers within 300 ms; the
    // wait below takes seconds (15+ polls, 30-150 ms apart).
    let (addr, handle) = start(core.clone(), |o, _| {
        o.session_keep_alive = Some(Duration::from_millis(300));
        o.header_read_timeout = Duration::from_millis(300);
    })
    .await;

    // The same endpoint: server/discover for this revision, a 2025 session beside it.
    let (_, discovered) = post(addr, 1, "server/discover", json!({}), json!({}))
        .await
        .response()
        .await;
    assert!(discovered["result"].is_object(), "{discovered}");
    assert!(
        discovered.to_string().contains("2026-07-28"),
        "{discovered}"
    );
    let (legacy, _) = connect_http(addr, Some(TOKEN)).await.unwrap();
    let tools = within(10, "tools/list (2025)", legacy.list_all_tools())
        .await
        .unwrap();
    assert!(tools.iter().any(|t| t.name == "create_i2v_task"));

    let args = json!({"image": img, "prompt": "p", "provider": "piapi"});
    let created = call26(addr, 2, "create_i2v_task", args, json!({})).await;
    let id = created["structuredContent"]["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();

    let params = json!({"name": "get_task", "arguments": {"task_id": id, "wait_seconds": 30},
        "_meta": {"progressToken": "w-1"}});
    let mut stream = post(addr, 3, "tools/call", params, json!({})).await;
    // Streamed: the first progress arrives while the task is still running.
    let first = stream.next().await.unwrap();
    assert_eq!(first["method"], "notifications/progress", "{first}");
    assert_eq!(first["params"]["progressToken"], "w-1");
    let row = core.journal().get(&id).await.unwrap().unwrap().to_task();
    assert_ne!(
        row.status,
        Status::Succeeded,
        "progress came only at the end"
    );
    let (more, done) = stream.response().await;
    assert!(
        more.iter().all(|m| m["params"]["progressToken"] == "w-1"),
        "{more:?}"
    );
    assert_eq!(
        done["result"]["structuredContent"]["status"], "succeeded",
        "{done}"
    );
    let _ = legacy.cancel().await;
    within(15, "shutdown", handle.shutdown()).await;
}

/// `[budget] confirm_above_usd` on 2026-07-28: the question comes back as `InputRequiredResult`,
/// the retry with `inputResponses` and the echoed `requestState` answers it.
#[tokio::test]
async fn spend_consent_rounds_on_the_wire() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let img = ws.png("cat.png", 320, 180);
    let env = env_for(&fake, "piapi");
    let mut pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.push(("I2V_MCP_CONFIRM_ABOVE_USD", "0.1"));
    let core = Core::start(ws.config(&pairs)).unwrap();
    let (addr, handle) = start(core.clone(), |_, _| {}).await;
    let form = json!({"elicitation": {"form": {}}});
    let args = json!({"image": img, "prompt": "p", "provider": "piapi"});

    let asked = call26(addr, 1, "create_i2v_task", args.clone(), form.clone()).await;
    assert_eq!(asked["resultType"], "input_required", "{asked}");
    let q = &asked["inputRequests"]["spend_consent"];
    assert_eq!(q["method"], "elicitation/create", "{asked}");
    assert_eq!(q["params"]["mode"], "form", "{asked}");
    assert!(
        q["params"]["message"].as_str().unwrap().contains("$0.28"),
        "{asked}"
    );
    assert_eq!(
        q["params"]["requestedSchema"]["properties"]["approve"]["type"],
        "boolean"
    );
    let state = asked["requestState"].as_str().unwrap().to_string();
    assert_eq!(fake.creates(), 0);
    assert!(core.list(None, None, None).await.unwrap().tasks.is_empty());

    let answer =
        |action: &str| json!({"spend_consent": {"action": action, "content": {"approve": true}}});
    let retry = |id: i64, args: Value, action: &str, state: &str| {
        let params = json!({"name": "create_i2v_task", "arguments": args,
            "inputResponses": answer(action), "requestState": state});
        let form = form.clone();
        async move {
            post(addr, id, "tools/call", params, form)
                .await
                .response()
                .await
                .1["result"]
                .clone()
        }
    };
    // An answer given for another request is not consent for this one: asked again.
    let mut other = args.clone();
    other["prompt"] = json!("another");
    let again = retry(2, other, "accept", &state).await;
    assert_eq!(again["resultType"], "input_required", "{again}");
    assert_eq!(fake.creates(), 0);
    // Declined: a budget error, nothing sent.
    let declined = retry(3, args.clone(), "decline", &state).await;
    assert_eq!(raw_err(&declined)["category"], "budget", "{declined}");
    assert_eq!(fake.creates(), 0);
    // Accepted: one create.
    let done = retry(4, args.clone(), "accept", &state).await;
    assert_eq!(done["structuredContent"]["status"], "queued", "{done}");
    assert_eq!(fake.creates(), 1);
    // A client declaring no elicitation: a budget error that says how to proceed.
    let refused = call26(addr, 5, "create_i2v_task", args, json!({})).await;
    let next = raw_err(&refused)["next_step"].to_string();
    assert!(next.contains("max_cost_usd 0.28"), "{refused}");
    assert_eq!(fake.creates(), 1);
    within(15, "shutdown", handle.shutdown()).await;
}

/// PNG bytes of noise (incompressible): about 3 bytes a pixel.
fn noise_png(w: u32, h: u32) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        let mut px = [0u8; 3];
        for b in &mut px {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        image::Rgb(px)
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// The documented 16 MiB body limit is the one that applies (rmcp's own default is 4 MiB).
#[tokio::test]
async fn a_nine_megabyte_data_uri_creates_over_http() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let core: Arc<Core> = Core::start(config(&ws, &fake, "piapi")).unwrap();
    let (addr, handle) = start(core, |_, _| {}).await;
    let png = noise_png(1760, 1720);
    assert!(
        png.len() > 9_000_000 && png.len() < 9_500_000,
        "{}",
        png.len()
    );
    let uri = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    assert!(
        uri.len() > 8 << 20,
        "the body must be well over rmcp's 4 MiB"
    );
    let (s, _) = connect_http(addr, Some(TOKEN)).await.unwrap();
    let args = json!({"image": uri, "prompt": "p", "provider": "piapi"});
    let task = ok(&call(&s, "create_i2v_task", args).await);
    assert_eq!(task["status"], "queued", "{task}");
    assert_eq!(fake.creates(), 1);
    // Over the limit: refused before the core, with what to do.
    let big = format!("{uri}{}", "A".repeat(5 << 20));
    let r = s
        .call_tool(
            rmcp::model::CallToolRequestParams::new("create_i2v_task").with_arguments(
                json!({"image": big, "prompt": "p"})
                    .as_object()
                    .cloned()
                    .unwrap(),
            ),
        )
        .await;
    let _ = r
        .map(|r| err(&r))
        .expect_err("a 17+ MiB body must be refused");
    assert_eq!(fake.creates(), 1);
    let _ = s.cancel().await;
    within(15, "shutdown", handle.shutdown()).await;
}
