//! The MCP Apps player (GitHub issue 14, part 2): offered only to hosts that declare
//! `io.modelcontextprotocol/ui`; everyone else sees tools/list and resources/list as before.

use std::sync::Arc;

use i2v_mcp::core::Core;
use i2v_mcp::mcp::{Server, apps, tools};
use rmcp::model::{
    ClientCapabilities, ClientConfig, ExtensionCapabilities, Implementation,
    ReadResourceRequestParams, ResourceContents,
};
use rmcp::service::RunningService;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::support::{Workspace, within};

/// A client whose capabilities carry the given extensions.
#[derive(Clone)]
struct Host(Option<ExtensionCapabilities>);

impl ClientHandler for Host {
    fn get_info(&self) -> ClientConfig {
        let mut caps = ClientCapabilities::default();
        caps.extensions = self.0.clone();
        ClientConfig::new(caps, Implementation::new("i2v-apps-test", "0.0.1"))
    }
}

fn ui_host() -> Host {
    let mut ext = ExtensionCapabilities::new();
    ext.insert(
        apps::EXTENSION.to_string(),
        json!({ "mimeTypes": [apps::MIME] })
            .as_object()
            .cloned()
            .unwrap(),
    );
    Host(Some(ext))
}

async fn connect(core: Arc<Core>, host: Host) -> RunningService<RoleClient, Host> {
    let (a, b) = tokio::io::duplex(1 << 20);
    let server = Server::new(core);
    tokio::spawn(async move {
        if let Ok(running) = server.serve(a).await {
            let _ = running.waiting().await;
        }
    });
    within(10, "initialize", host.serve(b)).await.unwrap()
}

async fn tools_list(s: &RunningService<RoleClient, Host>) -> String {
    let r = within(10, "tools/list", s.list_tools(Default::default()))
        .await
        .unwrap();
    serde_json::to_string(&r.tools).unwrap()
}

async fn resources(s: &RunningService<RoleClient, Host>) -> Vec<Value> {
    let r = within(10, "resources/list", s.list_all_resources())
        .await
        .unwrap();
    r.iter().map(|r| serde_json::to_value(r).unwrap()).collect()
}

#[tokio::test]
async fn a_host_without_the_extension_sees_no_change() {
    let ws = Workspace::new();
    let core = Core::start(ws.config(&[])).unwrap();
    for host in [Host(None), Host(Some(ExtensionCapabilities::new()))] {
        let s = connect(core.clone(), host).await;
        let listed = tools_list(&s).await;
        let before = serde_json::to_string(&tools::all()).unwrap();
        assert_eq!(
            listed, before,
            "tools/list changed for a host without MCP Apps"
        );
        assert!(!listed.contains("ui://"), "{listed}");
        let res = resources(&s).await;
        assert!(
            res.iter().all(|r| r["uri"] != apps::PLAYER_URI),
            "player listed for a host without MCP Apps: {res:?}"
        );
        let _ = s.cancel().await;
    }
}

#[tokio::test]
async fn a_host_with_the_extension_gets_the_player() {
    let ws = Workspace::new();
    let core = Core::start(ws.config(&[])).unwrap();
    let plain = connect(core.clone(), Host(None)).await;
    let plain_bytes = tools_list(&plain).await.len();
    let s = connect(core, ui_host()).await;
    let listed: Value = serde_json::from_str(&tools_list(&s).await).unwrap();
    for tool in listed.as_array().unwrap() {
        let linked = tool["_meta"]["ui"]["resourceUri"].as_str();
        match tool["name"].as_str().unwrap() {
            "create_i2v_task" | "get_task" => {
                assert_eq!(linked, Some(apps::PLAYER_URI), "{tool}")
            }
            _ => assert!(tool.get("_meta").is_none(), "{tool}"),
        }
    }
    let ui_bytes = listed.to_string().len();
    eprintln!("tools/list: {plain_bytes} bytes without MCP Apps, {ui_bytes} with");
    assert!(ui_bytes - plain_bytes < 200, "{plain_bytes} -> {ui_bytes}");

    let res = resources(&s).await;
    let player = res
        .iter()
        .find(|r| r["uri"] == apps::PLAYER_URI)
        .unwrap_or_else(|| panic!("player not listed: {res:?}"));
    assert_eq!(player["mimeType"], apps::MIME);

    let read = within(
        10,
        "resources/read player",
        s.read_resource(ReadResourceRequestParams::new(apps::PLAYER_URI)),
    )
    .await
    .unwrap();
    match &read.contents[..] {
        [
            ResourceContents::TextResourceContents {
                mime_type, text, ..
            },
        ] => {
            assert_eq!(mime_type.as_deref(), Some(apps::MIME));
            assert!(text.starts_with("<!doctype html>"), "{}", &text[..40]);
            assert_eq!(text, apps::PLAYER_HTML);
        }
        other => panic!("expected one text content: {other:?}"),
    }
    let _ = s.cancel().await;
    let _ = plain.cancel().await;
}

/// A 2026-07-28 client has no `initialize`: its capabilities come in every request's `_meta`.
#[tokio::test]
async fn a_2026_07_28_host_declares_it_per_request() {
    let ws = Workspace::new();
    let core = Core::start(ws.config(&[])).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = i2v_mcp::http::HttpOptions::from_config(&core.cfg, addr.to_string());
    let (_, handle) = i2v_mcp::http::serve(listener, core, opts).unwrap();
    let tools_list = |caps: Value| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "host-2026", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": caps,
        }}});
        async move {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let r = reqwest::Client::new()
                .post(format!("http://{addr}/mcp"))
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/list")
                .json(&body)
                .send()
                .await
                .unwrap();
            let text = r.text().await.unwrap();
            let json = text
                .lines()
                .map(|l| l.strip_prefix("data:").unwrap_or(l).trim())
                .find(|l| l.starts_with('{'))
                .unwrap_or_else(|| panic!("no JSON in {text}"))
                .to_string();
            serde_json::from_str::<Value>(&json).unwrap()
        }
    };
    let with = within(
        10,
        "tools/list with the extension",
        tools_list(json!({"extensions": {apps::EXTENSION: {"mimeTypes": [apps::MIME]}}})),
    )
    .await;
    let tools = with["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{with}"));
    let get = tools.iter().find(|t| t["name"] == "get_task").unwrap();
    assert_eq!(get["_meta"]["ui"]["resourceUri"], apps::PLAYER_URI, "{get}");
    let without = within(10, "tools/list without", tools_list(json!({}))).await;
    assert_eq!(
        without["result"]["tools"],
        serde_json::to_value(tools::all()).unwrap(),
        "tools/list changed for a 2026-07-28 host without MCP Apps"
    );
    within(15, "shutdown", handle.shutdown()).await;
}
