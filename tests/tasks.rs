//! The MCP Tasks extension (SEP-2663): a client that declares it gets a durable task handle from
//! `create_i2v_task`, polls it with `tasks/get` to the result `get_task` gives (also across a
//! crash of the server), and `tasks/cancel` cancels; a client that does not declare it sees no
//! change.

use std::time::Duration;

use rmcp::model::ProtocolVersion;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ClientCapabilities,
    ClientConfig, CreateTaskResult, GetTaskParams, GetTaskResult, Implementation, TaskPayload,
    TaskStatus, UpdateTaskParams,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::mcp_flow::{assert_downloaded, core_for, env_for};
use crate::mcp_stdio::Proc;
use crate::support::fakes::{FakeProvider, Kind, Outcome, TaskPlan};
use crate::support::{Workspace, call, ok, within};

const EXT: &str = "io.modelcontextprotocol/tasks";

/// A fake whose tasks stay queued for `pending` polls, then run two and succeed.
async fn fake_queued_for(kind: Kind, pending: u32) -> FakeProvider {
    let fake = FakeProvider::start(kind).await;
    fake.set_plan(TaskPlan::Polls {
        pending,
        processing: 2,
        outcome: Outcome::Succeed,
    });
    fake
}

/// A client that declares the tasks extension.
#[derive(Clone, Default)]
struct TasksClient;

impl ClientHandler for TasksClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_tasks().build(),
            Implementation::new("i2v-tests-tasks", "0.0.1"),
        )
    }
}

type TaskSession = RunningService<RoleClient, TasksClient>;

/// The 2026-07-28 lifecycle (`server/discover`, capabilities in every request's `_meta`): the
/// revision the extension is defined on.
fn modern() -> ClientLifecycleMode {
    ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    }
}

async fn serve_tasks<T, E, A>(transport: T) -> TaskSession
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    within(
        20,
        "server/discover",
        TasksClient.serve_with_lifecycle(transport, modern()),
    )
    .await
    .unwrap()
}

async fn connect_tasks(core: std::sync::Arc<i2v_mcp::core::Core>) -> TaskSession {
    let (a, b) = tokio::io::duplex(1 << 20);
    let server = i2v_mcp::mcp::Server::new(core);
    tokio::spawn(async move {
        if let Ok(running) = server.serve(a).await {
            let _ = running.waiting().await;
        }
    });
    serve_tasks(b).await
}

fn create_params(args: Value) -> CallToolRequestParams {
    CallToolRequestParams::new("create_i2v_task").with_arguments(args.as_object().unwrap().clone())
}

/// `create_i2v_task` answered with a handle (panics on anything else).
async fn create_handle(s: &TaskSession, args: Value) -> CreateTaskResult {
    match within(60, "create", s.call_tool_once(create_params(args)))
        .await
        .unwrap()
    {
        CallToolResponse::Task(h) => h,
        other => panic!("expected a task handle, got {other:?}"),
    }
}

/// A tool call that must answer a plain result.
async fn tool(s: &TaskSession, name: &str, args: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(name.to_string())
        .with_arguments(args.as_object().unwrap().clone());
    within(60, name, s.call_tool(params)).await.unwrap()
}

async fn get(s: &TaskSession, id: &str) -> GetTaskResult {
    within(10, "tasks/get", s.get_task(GetTaskParams::new(id)))
        .await
        .unwrap()
}

/// Poll `tasks/get` until the task is terminal.
async fn poll_until_terminal(s: &TaskSession, id: &str) -> GetTaskResult {
    within(60, "a terminal tasks/get", async {
        loop {
            let r = get(s, id).await;
            if r.task.status().is_terminal() {
                return r;
            }
            assert_eq!(r.task.status(), TaskStatus::Working, "{r:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn completed(r: &GetTaskResult) -> Value {
    match &r.task.payload {
        TaskPayload::Completed { result } => Value::Object(result.clone()),
        other => panic!("expected completed, got {other:?}"),
    }
}

/// The JSON-RPC error code of a failed request.
fn code<T: std::fmt::Debug>(r: Result<T, rmcp::ServiceError>) -> i32 {
    match r {
        Err(rmcp::ServiceError::McpError(e)) => e.code.0,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_declaring_client_gets_a_journaled_handle_and_polls_it_to_get_tasks_result() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let core = core_for(&ws, &fake, "piapi");
    let s = connect_tasks(core.clone()).await;

    // A wait asked for is not waited: the handle comes back at once, still working.
    let h = create_handle(
        &s,
        json!({"image": img, "prompt": "p", "provider": "piapi", "wait_seconds": 30}),
    )
    .await;
    let id = h.task.task_id.clone();
    assert!(id.starts_with("tsk_"), "{h:?}");
    assert_eq!(h.task.status, TaskStatus::Working, "{h:?}");
    assert_eq!(h.task.ttl_ms, None);
    assert!(h.task.poll_interval_ms.is_some());
    // The handle is the journal's task id, sent upstream before it was returned.
    let journaled = core.task(&id).await.unwrap();
    assert!(journaled.provider_task_id.is_some(), "{journaled:?}");
    assert_eq!(fake.accepted_creates(), 1);

    let done = poll_until_terminal(&s, &id).await;
    assert_eq!(done.task.status(), TaskStatus::Completed);
    let mut result = completed(&done);
    assert_downloaded(&result["structuredContent"]);
    // The same result get_task gives, block for block (`resultType` aside: rmcp sets it on one
    // side of the wire only).
    let tool = tool(&s, "get_task", json!({"task_id": id})).await;
    let mut tool = serde_json::to_value(&tool).unwrap();
    for v in [&mut result, &mut tool] {
        v.as_object_mut().unwrap().remove("resultType");
    }
    assert_eq!(result, tool);
    assert!(
        done.task
            .task
            .status_message
            .as_deref()
            .is_some_and(|m| m.contains(&id) && m.contains("succeeded")),
        "{done:?}"
    );

    // tasks/update: nothing is outstanding, so an ack; unknown ids are -32602 everywhere.
    let update = UpdateTaskParams::new(&id, Default::default());
    within(10, "tasks/update", s.update_task(update))
        .await
        .unwrap();
    let unknown = "tsk_00000000000000000000000000000000";
    assert_eq!(code(s.get_task(GetTaskParams::new(unknown)).await), -32602);
    assert_eq!(
        code(s.cancel_task(CancelTaskParams::new(unknown)).await),
        -32602
    );
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn tasks_cancel_cancels_upstream_and_tasks_get_says_cancelled() {
    let fake = fake_queued_for(Kind::Piapi, 1000).await;
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let s = connect_tasks(core_for(&ws, &fake, "piapi")).await;
    let h = create_handle(
        &s,
        json!({"image": img, "prompt": "p", "provider": "piapi"}),
    )
    .await;
    let id = h.task.task_id;
    assert_eq!(get(&s, &id).await.task.status(), TaskStatus::Working);

    within(
        10,
        "tasks/cancel",
        s.cancel_task(CancelTaskParams::new(&id)),
    )
    .await
    .unwrap();
    let r = get(&s, &id).await;
    assert_eq!(r.task.status(), TaskStatus::Cancelled, "{r:?}");
    assert_eq!(r.task.payload, TaskPayload::Cancelled);
    let deletes = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deletes, 1, "cancelled at the provider, as cancel_task does");
    // The tool sees the same task cancelled.
    let t = ok(&tool(&s, "get_task", json!({"task_id": id})).await);
    assert_eq!(t["status"], "cancelled", "{t}");
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn an_error_before_the_journal_stays_a_plain_tool_error_for_a_declaring_client() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let s = connect_tasks(core_for(&ws, &fake, "piapi")).await;
    let r = within(
        60,
        "create",
        s.call_tool_once(create_params(
            json!({"image": "/nowhere/a.png", "prompt": "p", "provider": "piapi"}),
        )),
    )
    .await
    .unwrap();
    match r {
        CallToolResponse::Complete(r) => {
            assert_eq!(r.is_error, Some(true), "{r:?}");
        }
        other => panic!("expected a tool error, got {other:?}"),
    }
    assert_eq!(fake.creates(), 0);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn a_client_not_declaring_tasks_sees_no_change() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let core = core_for(&ws, &fake, "piapi");
    let (plain, _) = crate::support::connect(core.clone()).await;
    let tasks = connect_tasks(core.clone()).await;

    // tools/list: the same list for both, the one the drift test pins.
    let a = plain.list_all_tools().await.unwrap();
    let b = tasks.list_all_tools().await.unwrap();
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        serde_json::to_value(&b).unwrap()
    );
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        serde_json::to_value(i2v_mcp::mcp::tools::all()).unwrap()
    );
    // The create answers the task itself, as before.
    let t = ok(&call(
        &plain,
        "create_i2v_task",
        json!({"image": img, "prompt": "p", "provider": "piapi"}),
    )
    .await);
    let id = t["task_id"].as_str().unwrap().to_string();
    assert_eq!(t["status"], "queued", "{t}");
    // tasks/get is refused with the capability it needs (-32021), not served.
    assert_eq!(code(plain.get_task(GetTaskParams::new(&id)).await), -32021);
    // The declaring client can poll the same task: handles and task_ids are one id space.
    assert_eq!(get(&tasks, &id).await.task.task.task_id, id);
    // A 2025 session that declared it at `initialize` (as the MCP Inspector does) gets the task.
    let (a, b) = tokio::io::duplex(1 << 20);
    let server = i2v_mcp::mcp::Server::new(core.clone());
    tokio::spawn(async move {
        if let Ok(running) = server.serve(a).await {
            let _ = running.waiting().await;
        }
    });
    let legacy = within(10, "initialize", TasksClient.serve(b))
        .await
        .unwrap();
    let args = json!({"image": img, "prompt": "p", "provider": "piapi"});
    let t = ok(&tool(&legacy, "create_i2v_task", args).await);
    assert_eq!(t["status"], "queued", "{t}");
    legacy.cancel().await.unwrap();
    plain.cancel().await.unwrap();
    tasks.cancel().await.unwrap();
}

/// The capabilities the server announces on the wire, to a raw `initialize`.
async fn announced(env: &std::collections::BTreeMap<String, String>, caps: Value) -> Value {
    let mut p = Proc::spawn(env);
    let r = p
        .request(
            0,
            "initialize",
            json!({"protocolVersion":"2025-11-25","capabilities":caps,"clientInfo":{"name":"raw","version":"1"}}),
        )
        .await;
    let discover = |caps: Value| {
        json!({"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": caps,
        }})
    };
    let d = p.request(1, "server/discover", discover(caps)).await;
    p.close().await;
    json!({"initialize": r["result"]["capabilities"], "discover": d["result"]["capabilities"]})
}

#[tokio::test]
async fn initialize_and_discover_announce_the_extension_only_to_declaring_clients() {
    let ws = Workspace::new();
    let env = ws.env(&[]);
    let today = json!({"resources": {"subscribe": true}, "tools": {}});
    let plain = announced(&env, json!({})).await;
    assert_eq!(plain["initialize"], today, "{plain}");
    assert_eq!(plain["discover"], today, "{plain}");
    let other_ext = announced(
        &env,
        json!({"extensions": {"io.modelcontextprotocol/ui": {}}}),
    )
    .await;
    assert_eq!(other_ext["initialize"], today, "{other_ext}");
    // Declared: announced on discover (2026-07-28); a 2025 `initialize` never gets it (no handles
    // on 2025 sessions; the Inspector declares it there while expecting nothing).
    let declaring = announced(&env, json!({"extensions": {EXT: {}}})).await;
    let mut with_ext = today.clone();
    with_ext["extensions"] = json!({EXT: {}});
    assert_eq!(declaring["initialize"], today, "{declaring}");
    assert_eq!(declaring["discover"], with_ext, "{declaring}");
}

#[tokio::test]
async fn the_handle_survives_a_server_crash_with_rmcps_client() {
    let fake = fake_queued_for(Kind::Piapi, 20).await;
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let mut env = ws.env(&[
        ("I2V_MCP_POLL_FIRST_MS", "30"),
        ("I2V_MCP_POLL_MAX_MS", "60"),
    ]);
    env.extend(env_for(&fake, "piapi"));
    let spawn = || {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_i2v-mcp"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&env);
        rmcp::transport::TokioChildProcess::new(cmd).unwrap()
    };

    let transport = spawn();
    let pid = transport.id().unwrap();
    let s = serve_tasks(transport).await;
    let h = create_handle(
        &s,
        json!({"image": img, "prompt": "p", "provider": "piapi"}),
    )
    .await;
    let id = h.task.task_id;
    // SIGKILL: the handle must already be durable.
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = within(20, "the killed session to end", s.cancel()).await;
    assert_eq!(fake.downloads(), 0, "killed before the result");

    let s = serve_tasks(spawn()).await;
    let done = poll_until_terminal(&s, &id).await;
    assert_eq!(done.task.status(), TaskStatus::Completed, "{done:?}");
    assert_downloaded(&completed(&done)["structuredContent"]);
    assert_eq!(fake.creates(), 1, "no create repeated after the crash");
    within(20, "close", s.cancel()).await.unwrap();
}

/// The official Python SDK (mcp 2.x, tests/interop/.venv from setup.sh) declaring the extension
/// through its generic client extension API: handle, restart, tasks/get, tasks/cancel, and a
/// client that does not declare it (tests/interop/python_tasks.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_tasks_extension() {
    let done = fake_queued_for(Kind::Piapi, 20).await;
    let never = fake_queued_for(Kind::Qubico, 1_000_000).await;
    let mut env = env_for(&done, "piapi");
    env.extend(env_for(&never, "qubico"));
    let ran = crate::support::run_interop_python("python_tasks.py", env).await;
    if ran {
        // One create per tools/call: the restart did not send the first one again.
        assert_eq!(done.creates(), 2);
        assert_eq!(never.creates(), 2);
        let deletes = never
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .count();
        assert_eq!(deletes, 1, "tasks/cancel cancelled upstream");
    }
}

/// Over HTTP with rmcp's streamable HTTP client, stateful and `--stateless`: a 2026-07-28 client
/// gets handles; a 2025 one that declared the extension at `initialize` gets plain results.
#[tokio::test]
async fn over_http_a_handle_polls_to_the_result() {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let cases = [
        (false, modern(), true),
        (true, modern(), true),
        (false, ClientLifecycleMode::Initialize, false),
        (true, ClientLifecycleMode::Initialize, false),
    ];
    for (stateless, lifecycle, handle_expected) in cases {
        let what = format!("stateless {stateless}, {lifecycle:?}");
        let fake = FakeProvider::start(Kind::Piapi).await;
        let ws = Workspace::new();
        let img = ws.png("a.png", 64, 64);
        let core = i2v_mcp::core::Core::start(crate::http::config(&ws, &fake, "piapi")).unwrap();
        let (addr, server) = crate::http::start(core, |o, _| o.stateless = stateless).await;
        let cfg = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"))
            .auth_header(crate::http::TOKEN);
        let transport = StreamableHttpClientTransport::from_config(cfg);
        let s = within(
            10,
            "connect over HTTP",
            TasksClient.serve_with_lifecycle(transport, lifecycle),
        )
        .await
        .unwrap();
        let args = json!({"image": img, "prompt": "p", "provider": "piapi"});
        let r = within(60, "create", s.call_tool_once(create_params(args)))
            .await
            .unwrap();
        match (r, handle_expected) {
            (CallToolResponse::Task(h), true) => {
                let done = poll_until_terminal(&s, &h.task.task_id).await;
                assert_downloaded(&completed(&done)["structuredContent"]);
            }
            (CallToolResponse::Complete(r), false) => {
                assert_eq!(r.structured_content.unwrap()["status"], "queued", "{what}");
            }
            (other, _) => panic!("{what}: unexpected {other:?}"),
        }
        s.cancel().await.unwrap();
        within(15, "shutdown", server.shutdown()).await;
    }
}
