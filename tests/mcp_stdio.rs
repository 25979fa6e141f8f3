//! The built binary over stdio, driven with raw JSON-RPC lines: what a newcomer's MCP client
//! sees, including that nothing but JSON-RPC ever reaches stdout (also with RUST_LOG=trace).

use std::collections::BTreeMap;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::support::{Workspace, raw_err, within};

pub struct Proc {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every stdout line seen so far.
    pub seen: Vec<Value>,
}

impl Proc {
    pub fn spawn(env: &BTreeMap<String, String>) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_i2v-mcp"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "HOME",
                env.get("HOME")
                    .cloned()
                    .unwrap_or_else(|| "/nonexistent".into()),
            )
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = r.next_line().await {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The server's process id (tests/hostile.rs reads its peak memory).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("server running")
    }

    pub async fn send(&mut self, msg: Value) {
        let mut line = serde_json::to_vec(&msg).unwrap();
        line.push(b'\n');
        self.stdin.write_all(&line).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Read until the response with `id`; every line must be JSON-RPC 2.0.
    pub async fn response(&mut self, id: i64) -> Value {
        let what = format!("response {id}");
        loop {
            let v = self.next(&what).await;
            if v["id"] == json!(id) {
                return v;
            }
        }
    }

    pub async fn request(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}))
            .await;
        self.response(id).await
    }

    /// Write one raw line (a newline is added).
    pub async fn send_raw(&mut self, line: &[u8]) {
        self.stdin.write_all(line).await.unwrap();
        self.stdin.write_all(b"\n").await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The next stdout line, which must be JSON-RPC 2.0.
    pub async fn next(&mut self, what: &str) -> Value {
        let line = within(60, what, self.lines.recv())
            .await
            .expect("stdout closed");
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("non-JSON on stdout ({e}): {line}"));
        assert_eq!(v["jsonrpc"], "2.0", "not JSON-RPC: {line}");
        self.seen.push(v.clone());
        v
    }

    pub async fn init(&mut self, version: &str) -> Value {
        let r = self
            .request(0, "initialize", json!({"protocolVersion":version,"capabilities":{},"clientInfo":{"name":"raw","version":"1"}}))
            .await;
        self.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        r
    }

    pub async fn call(&mut self, id: i64, tool: &str, args: Value) -> Value {
        self.request(id, "tools/call", json!({"name":tool,"arguments":args}))
            .await["result"]
            .clone()
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        let _ = within(20, "killed server exit", self.child.wait()).await;
    }

    /// Close stdin and require a clean exit, with no stray stdout line.
    pub async fn close(mut self) {
        drop(self.stdin);
        let status = within(20, "server exit", self.child.wait()).await.unwrap();
        assert!(status.success(), "server exited with {status}");
        while let Ok(line) = self.lines.try_recv() {
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("non-JSON on stdout ({e}): {line}"));
            assert_eq!(v["jsonrpc"], "2.0");
        }
    }
}

#[tokio::test]
async fn lists_seven_tools_on_each_protocol_revision() {
    let ws = Workspace::new();
    for version in ["2025-06-18", "2025-11-25"] {
        let mut p = Proc::spawn(&ws.env(&[]));
        let init = p.init(version).await;
        assert_eq!(init["result"]["protocolVersion"], version);
        assert!(
            init["result"]["instructions"]
                .as_str()
                .unwrap()
                .contains("idempotency_key")
        );
        let list = p.request(1, "tools/list", json!({})).await;
        let tools = list["result"]["tools"].as_array().unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "cancel_task",
                "create_i2v_task",
                "estimate_cost",
                "get_task",
                "list_loras",
                "list_models",
                "list_tasks"
            ]
        );
        assert!(!list.to_string().contains("$ref"));
        p.close().await;
    }
    // 2026-07-28 has no initialize: server/discover, then per-request _meta.
    let mut p = Proc::spawn(&ws.env(&[]));
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}
    });
    let d = p
        .request(1, "server/discover", json!({"_meta": meta}))
        .await;
    let versions = d["result"]["supportedVersions"].to_string();
    assert!(versions.contains("2026-07-28"), "{d}");
    let list = p.request(2, "tools/list", json!({"_meta": meta})).await;
    assert_eq!(
        list["result"]["tools"].as_array().map(Vec::len),
        Some(7),
        "{list}"
    );
    p.close().await;
}

#[tokio::test]
async fn bad_input_is_a_clear_tool_error_and_the_server_keeps_serving() {
    let ws = Workspace::new();
    let img = ws.png("ok.png", 64, 64);
    let outside = tempfile::tempdir().unwrap();
    let outside_img = outside.path().join("x.png");
    crate::support::write_png(&outside_img, 32, 32);
    let not_image = ws.images().join("notes.png");
    std::fs::write(&not_image, "just text").unwrap();
    let big = ws.images().join("big.png");
    let mut bytes = std::fs::read(&img).unwrap();
    bytes.resize(11 * 1024 * 1024, 0);
    std::fs::write(&big, bytes).unwrap();
    let img = img.display().to_string();

    let mut env = ws.env(&[
        ("PIAPI_API_KEY", "k"),
        ("I2V_MCP_PIAPI_BASE_URL", "http://127.0.0.1:9"),
    ]);
    env.insert("RUST_LOG".into(), "trace".into());
    let mut p = Proc::spawn(&env);
    p.init("2025-06-18").await;
    let cases: Vec<(&str, Value, &str)> = vec![
        // No image on an image-to-video model (piapi's default t2v model would take it).
        (
            "create_i2v_task",
            json!({"prompt": "x", "provider": "piapi", "model": "wan2.1-i2v-14b"}),
            "invalid_input",
        ),
        (
            "create_i2v_task",
            json!({"image": 5, "prompt": "x"}),
            "invalid_input",
        ),
        (
            "create_i2v_task",
            json!({"image": img, "prompt": "x", "provider": "nope"}),
            "invalid_input",
        ),
        (
            "create_i2v_task",
            json!({"image": img, "prompt": "x", "provider": "piapi", "model": "wan9"}),
            "invalid_input",
        ),
        (
            "create_i2v_task",
            json!({"image": img, "prompt": "x", "provider": "piapi", "seed": 3}),
            "unsupported",
        ),
        (
            "create_i2v_task",
            json!({"image": img, "prompt": "x".repeat(10_001), "provider": "piapi"}),
            "invalid_input",
        ),
        (
            "create_i2v_task",
            json!({"image": outside_img, "prompt": "x", "provider": "piapi"}),
            "invalid_input",
        ),
        (
            "create_i2v_task",
            json!({"image": ws.images(), "prompt": "x", "provider": "piapi"}),
            "invalid_input",
        ),
        (
            "create_i2v_task",
            json!({"image": not_image, "prompt": "x", "provider": "piapi"}),
            "invalid_input",
        ),
        (
            "create_i2v_task",
            json!({"image": big, "prompt": "x", "provider": "piapi"}),
            "invalid_input",
        ),
        (
            "create_i2v_task",
            json!({"image": img, "prompt": "x", "provider": "novita"}),
            "auth",
        ),
        (
            "create_i2v_task",
            json!({"image": img, "prompt": "x", "provider": "piapi", "max_cost_usd": 0.1}),
            "budget",
        ),
        (
            "create_i2v_task",
            json!({"image": img, "prompt": "x", "bogus": 1}),
            "invalid_input",
        ),
        ("get_task", json!({"task_id": "tsk_nope"}), "not_found"),
        ("get_task", json!({}), "invalid_input"),
        ("cancel_task", json!({"task_id": "tsk_nope"}), "not_found"),
        ("list_tasks", json!({"status": "weird"}), "invalid_input"),
        (
            "list_loras",
            json!({"provider": "piapi", "model": "x"}),
            "invalid_input",
        ),
        ("list_models", json!({"provider": 3}), "invalid_input"),
        (
            "estimate_cost",
            json!({"provider": "novita", "model": "wan2.6-i2v", "duration_seconds": 7}),
            "unsupported",
        ),
    ];
    for (i, (tool, args, category)) in cases.iter().enumerate() {
        let r = p.call(10 + i as i64, tool, args.clone()).await;
        assert_eq!(r["isError"], true, "{tool} {args}: {r}");
        let e = &raw_err(&r);
        assert_eq!(e["category"], *category, "{tool} {args}: {r}");
        assert!(e["message"].as_str().unwrap().len() > 20, "{r}");
    }
    // estimate_cost's `provider` is a plain string in its schema (the enum is create's): a wrong
    // one is still refused naming the providers there are.
    let r = p
        .call(
            90,
            "estimate_cost",
            json!({"provider": "nope", "prompt": "x"}),
        )
        .await;
    let e = &raw_err(&r);
    assert_eq!(e["category"], "invalid_input", "{r}");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("nope") && msg.contains("dashscope"), "{msg}");
    // Nothing was written to the journal, nothing reached a provider; still serving.
    let list = p.call(100, "list_tasks", json!({})).await;
    assert_eq!(list["structuredContent"]["tasks"], json!([]), "{list}");
    let ping = p.request(101, "ping", json!({})).await;
    assert!(ping.get("result").is_some());
    p.close().await;
}

#[tokio::test]
async fn an_unusable_data_dir_is_reported_to_every_call_and_the_server_keeps_serving() {
    let ws = Workspace::new();
    let blocker = ws.path("not-a-dir");
    std::fs::write(&blocker, "a file where the data dir should be").unwrap();
    let mut env = ws.env(&[]);
    env.insert(
        "I2V_MCP_DATA_DIR".into(),
        blocker.join("data").display().to_string(),
    );
    env.insert("I2V_MCP_OUTPUT_DIR".into(), ws.out().display().to_string());
    let mut p = Proc::spawn(&env);
    p.init("2025-06-18").await;
    let list = p.request(1, "tools/list", json!({})).await;
    assert_eq!(list["result"]["tools"].as_array().map(Vec::len), Some(7));
    let r = p.call(2, "list_tasks", json!({})).await;
    assert_eq!(r["isError"], true, "{r}");
    let e = &raw_err(&r);
    assert!(e["message"].as_str().unwrap().contains("data dir"), "{r}");
    assert!(
        e["next_step"]
            .as_str()
            .unwrap()
            .contains("I2V_MCP_DATA_DIR"),
        "{r}"
    );
    let ping = p.request(3, "ping", json!({})).await;
    assert!(ping.get("result").is_some());
    p.close().await;
}

/// The real rmcp client spawning the built binary (what rmcp-based hosts do).
#[tokio::test]
async fn rmcp_client_against_the_binary() {
    use rmcp::ServiceExt;
    let ws = Workspace::new();
    let img = ws.png("a.png", 640, 360);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_i2v-mcp"));
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(ws.env(&[]));
    let transport = rmcp::transport::TokioChildProcess::new(cmd).unwrap();
    let client = crate::support::Client::default();
    let session = within(20, "initialize", client.clone().serve(transport))
        .await
        .unwrap();
    let tools = within(10, "tools/list", session.list_all_tools())
        .await
        .unwrap();
    assert_eq!(tools.len(), 7);
    let r = crate::support::call(
        &session,
        "create_i2v_task",
        json!({"image": img, "prompt": "tilt up", "provider": "local", "wait_seconds": 60}),
    )
    .await;
    let t = crate::support::ok(&r);
    assert_eq!(t["status"], "succeeded", "{t}");
    assert!(std::path::Path::new(t["video"]["local_path"].as_str().unwrap()).is_file());
    let progress = client.progress.lock().unwrap().clone();
    assert!(
        progress.windows(2).all(|w| w[1].progress > w[0].progress),
        "{progress:?}"
    );
    within(10, "close", session.cancel()).await.unwrap();
}

/// Defect 7 and the malformed-request weak spot: every line that carries an id gets an answer
/// (over-long lines, broken requests, batches), unparseable JSON gets -32700, and the server
/// keeps serving. One row per hostile input: (what, line, expected id, expected code).
#[tokio::test]
async fn every_line_with_an_id_is_answered_and_the_server_keeps_serving() {
    let ws = Workspace::new();
    let mut p = Proc::spawn(&ws.env(&[]));
    p.init("2025-06-18").await;

    // Over the 32 MiB line limit, with the id near the start as clients write it.
    let huge = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{{\"name\":\"create_i2v_task\",\"arguments\":{{\"provider\":\"local\",\"prompt\":\"x\",\"image\":\"data:image/png;base64,{}\"}}}}}}",
        "A".repeat(33 << 20)
    );
    let started = std::time::Instant::now();
    p.send_raw(huge.as_bytes()).await;
    drop(huge);
    let r = p.response(7).await;
    let msg = r["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert!(msg.contains("32 MiB"), "names the limit: {msg}");
    assert!(
        msg.contains("path") && msg.contains("https"),
        "names the alternative: {msg}"
    );
    eprintln!("33 MiB line answered in {:?}", started.elapsed());

    // A 17 MiB line (over rmcp's own 16 MiB cap, under ours) reaches the tool and is answered.
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{{\"name\":\"create_i2v_task\",\"arguments\":{{\"provider\":\"local\",\"prompt\":\"x\",\"image\":\"data:image/png;base64,{}\"}}}}}}",
        "A".repeat(17 << 20)
    );
    p.send_raw(big.as_bytes()).await;
    drop(big);
    let r = p.response(8).await;
    assert_eq!(
        r["result"]["isError"], true,
        "a tool error about the image: {r}"
    );

    let cases: Vec<(&str, &str, Value, i64)> = vec![
        ("garbage", "{not json", Value::Null, -32700),
        (
            "truncated",
            "{\"jsonrpc\":\"2.0\",\"id\":30,",
            Value::Null,
            -32700,
        ),
        (
            "no jsonrpc",
            r#"{"id":31,"method":"tools/list"}"#,
            json!(31),
            -32600,
        ),
        (
            "wrong version",
            r#"{"jsonrpc":"1.0","id":32,"method":"tools/list"}"#,
            json!(32),
            -32600,
        ),
        (
            "method not a string",
            r#"{"jsonrpc":"2.0","id":"s33","method":5}"#,
            json!("s33"),
            -32600,
        ),
        (
            "params not structured",
            r#"{"jsonrpc":"2.0","id":34,"method":"tools/list","params":5}"#,
            json!(34),
            -32600,
        ),
        (
            "batch",
            r#"[{"jsonrpc":"2.0","id":35,"method":"tools/list"}]"#,
            json!(35),
            -32600,
        ),
        ("empty batch", "[]", Value::Null, -32600),
        ("not an object", "42", Value::Null, -32600),
        (
            "bad id type",
            r#"{"jsonrpc":"2.0","id":{},"method":"tools/list"}"#,
            Value::Null,
            -32600,
        ),
    ];
    for (what, line, id, code) in cases {
        p.send_raw(line.as_bytes()).await;
        let r = p.next(what).await;
        assert_eq!(r["id"], id, "{what}: {r}");
        assert_eq!(r["error"]["code"], code, "{what}: {r}");
        assert!(
            !r["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{what}: {r}"
        );
    }

    let list = p.request(40, "tools/list", json!({})).await;
    assert!(
        list["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{list}"
    );
    p.close().await;
}
