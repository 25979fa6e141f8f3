//! What strict hosts require, checked against the built binary over stdio with raw JSON-RPC (the
//! TypeScript SDK and the hosts on it are checked in tests/interop/): errors readable without
//! structured content, integers sent as `5.0`, roots offered at connect used by the first call,
//! 2026-07-28 subscriptions, resource links that read back, -32602 for malformed params, and
//! the schema rules of VS Code, OpenAI function calling and Gemini.

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::mcp_flow::env_for;
use crate::mcp_stdio::Proc;
use crate::support::fakes::{FakeProvider, Kind, Outcome, TaskPlan};
use crate::support::{Workspace, raw_err, within};

const META_2026: &str = r#"{
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}
}"#;

fn meta_2026() -> Value {
    serde_json::from_str(META_2026).unwrap()
}

#[tokio::test]
async fn integers_sent_as_floats_are_integers() {
    let ws = Workspace::new();
    let img = ws.png("a.png", 640, 360);
    let mut p = Proc::spawn(&ws.env(&[]));
    p.init("2025-11-25").await;
    // serde_json writes 5.0 as `5.0`, exactly what the hosts in question send.
    let created = p
        .call(
            1,
            "create_i2v_task",
            json!({"image": img, "prompt": "", "provider": "local", "duration_seconds": 5.0, "wait_seconds": 0.0}),
        )
        .await;
    assert_ne!(created["isError"], true, "{created}");
    let id = created["structuredContent"]["task_id"].as_str().unwrap();
    let got = p
        .call(2, "get_task", json!({"task_id": id, "wait_seconds": 5.0}))
        .await;
    assert_ne!(got["isError"], true, "{got}");
    // A real fraction is still refused, clearly.
    let bad = p
        .call(3, "get_task", json!({"task_id": id, "wait_seconds": 2.5}))
        .await;
    assert_eq!(raw_err(&bad)["category"], "invalid_input", "{bad}");
    p.close().await;
}

#[tokio::test]
async fn roots_offered_at_connect_are_used_by_the_first_call() {
    let ws = Workspace::new();
    // The image is under the client's root only, not under the allowed dirs.
    let root = ws.path("project");
    std::fs::create_dir_all(&root).unwrap();
    let img = root.join("still.png");
    crate::support::write_png(&img, 640, 360);
    let mut p = Proc::spawn(&ws.env(&[]));
    p.send(
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{"roots":{"listChanged":true}},
        "clientInfo":{"name":"raw","version":"1"}}}),
    )
    .await;
    p.response(0).await;
    // As the TypeScript SDK does: `initialized` and the call back to back, the roots answered
    // only when asked, and here late.
    p.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    p.send(
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
        "name":"create_i2v_task","arguments":{"image": img, "prompt": "", "provider": "local"}}}),
    )
    .await;
    let root_uri = url::Url::from_directory_path(&root).unwrap().to_string();
    let result = within(30, "the create", async {
        loop {
            let msg = p.next("a message").await;
            if msg["method"] == "roots/list" {
                // A client busy elsewhere answers late; the call must wait for it.
                tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
                p.send(json!({"jsonrpc":"2.0","id":msg["id"],"result":{"roots":[{"uri": root_uri, "name":"project"}]}}))
                    .await;
            } else if msg["id"] == 1 {
                return msg["result"].clone();
            }
        }
    })
    .await;
    assert_ne!(result["isError"], true, "{result}");
    assert_eq!(result["structuredContent"]["provider"], "local", "{result}");
    p.close().await;
}

#[tokio::test]
async fn subscriptions_listen_streams_task_updates_on_2026_07_28() {
    // A paid task that runs for a while (the fake answers queued, then running with progress).
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_plan(TaskPlan::Polls {
        pending: 3,
        processing: 10,
        outcome: Outcome::Succeed,
    });
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let mut env = ws.env(&[
        ("I2V_MCP_POLL_FIRST_MS", "30"),
        ("I2V_MCP_POLL_MAX_MS", "100"),
    ]);
    env.extend(env_for(&fake, "piapi"));
    let mut p = Proc::spawn(&env);
    let meta = meta_2026();
    let d = p
        .request(1, "server/discover", json!({"_meta": meta}))
        .await;
    assert_eq!(
        d["result"]["capabilities"]["resources"]["subscribe"], true,
        "{d}"
    );
    let created = p
        .request(
            2,
            "tools/call",
            json!({"_meta": meta, "name": "create_i2v_task", "arguments": {"image": img, "prompt": "p"}}),
        )
        .await;
    let id = created["result"]["structuredContent"]["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    let uri = format!("i2v://tasks/{id}");
    p.send(
        json!({"jsonrpc":"2.0","id":3,"method":"subscriptions/listen","params":{
        "_meta": meta, "notifications": {"resourceSubscriptions": [uri]}}}),
    )
    .await;
    let (mut acknowledged, mut updated) = (false, false);
    within(60, "an update of the task", async {
        while !(acknowledged && updated) {
            let msg = p.next("a message").await;
            assert!(msg.get("error").is_none(), "{msg}");
            match msg["method"].as_str() {
                Some("notifications/subscriptions/acknowledged") => {
                    let accepted = &msg["params"]["notifications"]["resourceSubscriptions"];
                    assert_eq!(accepted, &json!([uri]), "{msg}");
                    acknowledged = true;
                }
                Some("notifications/resources/updated") => {
                    assert_eq!(msg["params"]["uri"], uri, "{msg}");
                    updated = true;
                }
                _ => {}
            }
        }
    })
    .await;
    p.send(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}))
        .await;
    p.close().await;
}

#[tokio::test]
async fn resource_links_read_back_as_the_video() {
    let ws = Workspace::new();
    let img = ws.png("a.png", 640, 360);
    let mut p = Proc::spawn(&ws.env(&[]));
    p.init("2025-06-18").await;
    let done = p
        .call(
            1,
            "create_i2v_task",
            json!({"image": img, "prompt": "", "provider": "local", "wait_seconds": 50}),
        )
        .await;
    assert_eq!(done["structuredContent"]["status"], "succeeded", "{done}");
    let link = done["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "resource_link")
        .unwrap_or_else(|| panic!("no resource_link: {done}"))
        .clone();
    let uri = link["uri"].as_str().unwrap();
    assert!(uri.starts_with("file://"), "{uri}");
    // The built binary decodes its own video in a child process (its stdout a pipe, never ours):
    // the contact sheet comes last, as an image block.
    let sheet = done["content"].as_array().unwrap().last().unwrap();
    assert_eq!(sheet["type"], "image", "{done}");
    assert_eq!(sheet["mimeType"], "image/jpeg");
    let read = p.request(2, "resources/read", json!({"uri": uri})).await;
    let contents = &read["result"]["contents"][0];
    assert_eq!(contents["mimeType"], "video/mp4", "{read}");
    assert_eq!(contents["uri"], uri);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(contents["blob"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        done["structuredContent"]["video"]["sha256"]
    );
    // A file:// URI of another file is not a way to read the disk.
    let other = url::Url::from_file_path(&img).unwrap().to_string();
    let refused = p.request(3, "resources/read", json!({"uri": other})).await;
    assert!(refused.get("error").is_some(), "{refused}");
    let forged = uri.rsplit_once('/').unwrap().0.to_string() + "/../a.png/../x.mp4";
    let refused = p.request(4, "resources/read", json!({"uri": forged})).await;
    assert!(refused.get("error").is_some(), "{refused}");
    // The task's own file, swapped for a link out of the output dir, is not served either.
    let path = url::Url::parse(uri).unwrap().to_file_path().unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&img, &path).unwrap();
    let refused = p.request(5, "resources/read", json!({"uri": uri})).await;
    assert!(refused.get("error").is_some(), "{refused}");
    p.close().await;
}

#[tokio::test]
async fn malformed_params_of_known_methods_are_invalid_params() {
    let ws = Workspace::new();
    let mut p = Proc::spawn(&ws.env(&[]));
    p.init("2025-11-25").await;
    for (id, params) in [
        (1, json!({"name": "list_models", "arguments": []})),
        (
            2,
            json!({"name": "list_models", "arguments": "provider=local"}),
        ),
        (3, json!({"arguments": {}})),
    ] {
        let r = p.request(id, "tools/call", params.clone()).await;
        assert_eq!(r["error"]["code"], -32602, "{params}: {r}");
    }
    let r = p.request(4, "no/such/method", json!({})).await;
    assert_eq!(r["error"]["code"], -32601, "{r}");
    let ok = p.call(5, "list_models", json!({})).await;
    assert_ne!(ok["isError"], true);
    p.close().await;
}

/// The server advertises what it serves and nothing more; since rmcp 3.11 a method of a
/// capability it does not advertise is -32601 (before, prompts/list answered an empty list).
#[tokio::test]
async fn advertised_capabilities_are_the_served_ones() {
    let ws = Workspace::new();
    let mut p = Proc::spawn(&ws.env(&[]));
    let init = p.init("2025-11-25").await;
    let caps = &init["result"]["capabilities"];
    assert_eq!(
        caps,
        &json!({"tools": {}, "resources": {"subscribe": true}}),
        "{init}"
    );
    for (id, method, params) in [
        (1, "tools/list", json!({})),
        (2, "resources/list", json!({})),
        (3, "resources/templates/list", json!({})),
    ] {
        let r = p.request(id, method, params).await;
        assert!(r.get("result").is_some(), "{method}: {r}");
    }
    for (id, method, params) in [
        (4, "prompts/list", json!({})),
        (
            5,
            "completion/complete",
            json!({"ref": {"type": "ref/resource", "uri": "i2v://tasks/{task_id}"},
                   "argument": {"name": "task_id", "value": "a"}}),
        ),
        (6, "logging/setLevel", json!({"level": "info"})),
    ] {
        let r = p.request(id, method, params).await;
        assert_eq!(r["error"]["code"], -32601, "{method}: {r}");
    }
    p.close().await;
}

// ------------------------------------------------------------------------------------------------
// Schema rules of the hosts. Each rule names its source; a tool list that breaks one is refused by
// that host as a whole (or its model never sees the tool).

/// Every schema node of a tool's input schema, with its JSON path.
fn nodes<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    if let Value::Object(m) = v {
        out.push((path.clone(), v));
        if let Some(Value::Object(props)) = m.get("properties") {
            for (k, p) in props {
                nodes(p, format!("{path}.{k}"), out);
            }
        }
        if let Some(items) = m.get("items") {
            nodes(items, format!("{path}[]"), out);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(Value::Array(arms)) = m.get(key) {
                for (i, a) in arms.iter().enumerate() {
                    nodes(a, format!("{path}.{key}[{i}]"), out);
                }
            }
        }
    }
}

fn violations(schema: &Value) -> Vec<String> {
    let mut all = Vec::new();
    nodes(schema, "$".into(), &mut all);
    let mut bad = Vec::new();
    for (path, node) in all {
        let ty = node.get("type").and_then(Value::as_str);
        // VS Code (Copilot chat): "tool parameters array type must have items"; also OpenAI
        // function calling ("array schema missing items").
        if ty == Some("array") && node.get("items").is_none() {
            bad.push(format!("{path}: array without items (VS Code, OpenAI)"));
        }
        // Gemini function declarations: every property has a type (OpenAPI subset; an enum
        // alone is refused), an enum only on a string, an object lists its properties.
        if ty.is_none() {
            bad.push(format!("{path}: no type (Gemini)"));
        }
        if node.get("enum").is_some() && ty != Some("string") {
            bad.push(format!("{path}: enum on a non-string (Gemini)"));
        }
        if ty == Some("object") {
            match node.get("properties").and_then(Value::as_object) {
                Some(p) if !p.is_empty() => {}
                _ => bad.push(format!("{path}: object without properties (Gemini)")),
            }
            // OpenAI strict mode: every object closed. Unknown fields are refused by the server
            // anyway; saying so lets hosts and models know before calling.
            if node.get("additionalProperties") != Some(&Value::Bool(false)) {
                bad.push(format!(
                    "{path}: additionalProperties is not false (OpenAI strict)"
                ));
            }
        }
        // Keywords outside the subset Gemini and OpenAI strict accept; `$ref`/`$defs` also break
        // VS Code, Cursor and others (rmcp notes §7.5).
        for key in [
            "$ref",
            "$defs",
            "$schema",
            "format",
            "oneOf",
            "allOf",
            "not",
            "if",
            "patternProperties",
        ] {
            if node.get(key).is_some() {
                bad.push(format!("{path}: uses {key}"));
            }
        }
        if let Some(Value::Array(types)) = node.get("type") {
            bad.push(format!("{path}: type array {types:?} (Gemini)"));
        }
    }
    bad
}

#[test]
fn input_schemas_pass_vs_code_openai_and_gemini_rules() {
    let mut bad = Vec::new();
    for tool in i2v_mcp::mcp::tools::all() {
        let schema = Value::Object(tool.input_schema.as_ref().clone());
        for v in violations(&schema) {
            bad.push(format!("{}: {v}", tool.name));
        }
        // Output schemas are validated by the TypeScript SDK (Ajv): arrays with items there too.
        if let Some(out) = &tool.output_schema {
            let mut all = Vec::new();
            let out = Value::Object(out.as_ref().clone());
            nodes(&out, "$out".into(), &mut all);
            for (path, node) in all {
                if node.get("type") == Some(&json!("array")) && node.get("items").is_none() {
                    bad.push(format!("{}: {path}: array without items", tool.name));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "schema rule violations:\n{}",
        bad.join("\n")
    );
    // The linter itself catches each rule.
    let broken = json!({"type": "object", "properties": {
        "a": {"type": "array"}, "b": {"enum": ["x"]}, "c": {"type": "object"},
        "d": {"type": ["string", "null"]}}});
    let found = violations(&broken).join("\n");
    for what in [
        "$.a: array without items",
        "$.b: no type",
        "$.c: object without properties",
        "$: additionalProperties",
        "$.d: type array",
    ] {
        assert!(found.contains(what), "linter missed {what}: {found}");
    }
}

#[test]
fn waits_stay_under_the_hosts_request_timeout() {
    for name in ["get_task", "create_i2v_task"] {
        let tool = i2v_mcp::mcp::tools::all()
            .into_iter()
            .find(|t| t.name == name)
            .unwrap();
        let max = tool.input_schema["properties"]["wait_seconds"]["maximum"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: wait_seconds has no maximum"));
        assert!(max < 60, "{name}: wait_seconds maximum {max} >= 60 s");
    }
}

#[tokio::test]
async fn unknown_tools_are_protocol_errors() {
    let ws = Workspace::new();
    let mut p = Proc::spawn(&ws.env(&[]));
    p.init("2025-11-25").await;
    let r = p
        .request(
            1,
            "tools/call",
            json!({"name": "make_video", "arguments": {}}),
        )
        .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("tools/list"),
        "{r}"
    );
    p.close().await;
}

#[tokio::test]
async fn a_client_that_only_discovers_leaves_a_clean_exit() {
    // The TypeScript SDK 2.x in `auto` mode probes with server/discover in a process of its own,
    // then closes it: that is no failure (exit 0, nothing but JSON-RPC on stdout).
    let ws = Workspace::new();
    let mut p = Proc::spawn(&ws.env(&[]));
    let d = p
        .request(1, "server/discover", json!({"_meta": meta_2026()}))
        .await;
    assert!(d.get("result").is_some(), "{d}");
    p.close().await;
    // And a host that starts the command and closes it at once.
    let p = Proc::spawn(&ws.env(&[]));
    p.close().await;
}
