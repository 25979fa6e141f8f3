//! Integration tests, one binary (faster to build): MCP through a real rmcp client in-process and
//! against the built binary over stdio, the CLI, and the generated tool definitions. Providers are
//! fake servers on 127.0.0.1 that follow `shared/providers/CONTRACTS.md`.
// A failed unwrap in a test is a failed test with its message; that is what we want here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod apps;
mod batch;
mod browser;
mod cli;
mod consent;
mod fal;
mod host_rules;
mod hostile;
mod http;
mod http_2026;
mod interop;
mod journal;
mod layers;
mod lifecycle;
mod local;
mod mcp_flow;
mod mcp_stdio;
mod oauth;
mod piapi_t2v;
mod preview;
mod providers;
mod reference;
mod reference_fal;
mod reference_replicate;
mod replicas;
mod replicate;
mod tasks;
mod tools_drift;
mod wan3;
