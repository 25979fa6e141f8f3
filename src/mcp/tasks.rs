//! The MCP Tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663, revision 2026-07-28) over
//! the journal. A client that declares the extension on a `create_i2v_task` call (in the request's
//! `_meta` client capabilities, 2026-07-28) gets a task handle instead of the task: the handle is our journal `task_id`, returned only once the create is journaled and
//! submitted, so a `tasks/get` after a server restart finds it. `tasks/get` reads the journal;
//! `tasks/cancel` is `cancel_task`; `tasks/update` acknowledges (we never ask for input).
//!
//! Spec points this relies on (ext-tasks `specification/2026-07-28/tasks.md`):
//! - A server MUST NOT return `CreateTaskResult` to a request that did not declare the extension
//!   (rmcp also guards this, `handler/server.rs` `CallToolRequest` arm); a declaring client takes
//!   either a handle or a plain result, so an error before anything is journaled stays a plain
//!   tool error.
//! - `completed` carries the final `CallToolResult`, also when the tool result says the video
//!   failed (`failed` is for JSON-RPC errors only); `cancelled` carries nothing.
//! - An unknown `taskId` is `-32602` for `tasks/get` (MUST) and `tasks/cancel` / `tasks/update`
//!   (SHOULD). `ttlMs: null`: the journal keeps tasks.
//! - rmcp answers `tasks/*` with `-32601` unless `get_info` advertises the extension, so it is
//!   advertised there and taken out again of every `initialize` answer (2025 sessions get no
//!   handles) and of the `server/discover` answers to clients that do not declare it: they see
//!   today's bytes.

use crate::oauth::Principal;
use rmcp::ErrorData as McpError;
use rmcp::RoleServer;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, CreateTaskResult, DetailedTask,
    GetTaskParams, GetTaskResult, JsonObject, ServerCapabilities, TASKS_EXTENSION_ID,
    Task as Handle, TaskPayload, TaskStatus, UpdateTaskParams,
};
use rmcp::service::RequestContext;
use serde_json::Value;

use super::Server;
use crate::core::Core;
use crate::error::{Category, Error};
use crate::model::{Status, Task};

/// The tool whose calls become tasks.
pub const TOOL: &str = "create_i2v_task";

/// Suggested `tasks/get` interval: video jobs take minutes, the watcher polls providers anyway.
pub const POLL_INTERVAL_MS: u64 = 3_000;

/// Whether this request declared the extension in its own `_meta` client capabilities (the
/// 2026-07-28 per-request capabilities the extension is defined on). A declaration at a 2025
/// `initialize` does not count: the MCP Inspector 2.12 makes one on every legacy connection
/// ("harmless on legacy") and cannot take a handle there.
pub fn declared(rc: &RequestContext<RoleServer>) -> bool {
    rc.meta
        .client_capabilities()
        .is_some_and(|c| c.supports_tasks())
}

/// Whether this call should answer with a handle.
pub fn wanted(request: &CallToolRequestParams, rc: &RequestContext<RoleServer>) -> bool {
    request.name == TOOL && declared(rc)
}

/// A task call returns at once: the client polls, so a `wait_seconds` would only delay the
/// handle (it is not part of the idempotency fingerprint).
pub fn no_wait(request: &mut CallToolRequestParams) {
    if let Some(args) = request.arguments.as_mut() {
        args.remove("wait_seconds");
    }
}

/// Advertise the extension (rmcp routes `tasks/*` only then).
pub fn advertise(caps: &mut ServerCapabilities) {
    caps.extensions
        .get_or_insert_default()
        .insert(TASKS_EXTENSION_ID.to_string(), JsonObject::new());
}

/// Take the extension out again for a client that did not declare it.
pub fn hide(caps: &mut ServerCapabilities) {
    if let Some(ext) = caps.extensions.as_mut() {
        ext.remove(TASKS_EXTENSION_ID);
        if ext.is_empty() {
            caps.extensions = None;
        }
    }
}

/// The create's answer as a handle: a created (or deduplicated) task becomes its handle; an error
/// (nothing journaled, or the create failed) and an input request stay as they are.
pub async fn handle(
    server: &Server,
    response: CallToolResponse,
    who: &Principal,
) -> Result<CallToolResponse, McpError> {
    let CallToolResponse::Complete(result) = &response else {
        return Ok(response);
    };
    let id = match (&result.is_error, &result.structured_content) {
        (Some(true), _) | (_, None) => None,
        (_, Some(data)) => data.get("task_id").and_then(Value::as_str),
    };
    let Some(id) = id else {
        return Ok(response);
    };
    // Read back from the journal: the handle is durable before it is returned.
    let core = core(server).await?;
    let task = core.task_as(id, who).await.map_err(|e| task_error(id, e))?;
    Ok(CallToolResponse::Task(CreateTaskResult::new(seed(&task))))
}

/// `tasks/get`: the task from the journal; once settled, the result `get_task` gives.
pub async fn get(
    server: &Server,
    p: GetTaskParams,
    who: &Principal,
) -> Result<GetTaskResult, McpError> {
    let core = core(server).await?;
    let task = core
        .task_as(&p.task_id, who)
        .await
        .map_err(|e| task_error(&p.task_id, e))?;
    let payload = if !task.is_settled() {
        TaskPayload::Working
    } else if task.status == Status::Cancelled {
        TaskPayload::Cancelled
    } else {
        let result = server.task_result(&core, task.clone()).await;
        TaskPayload::Completed {
            result: object(serde_json::to_value(result)),
        }
    };
    Ok(GetTaskResult::new(DetailedTask::new(seed(&task), payload)))
}

/// `tasks/cancel`: what `cancel_task` does. An ack; the outcome shows on the next `tasks/get`.
pub async fn cancel(server: &Server, p: CancelTaskParams, who: &Principal) -> Result<(), McpError> {
    let core = core(server).await?;
    core.cancel_as(&p.task_id, who)
        .await
        .map(drop)
        .map_err(|e| task_error(&p.task_id, e))
}

/// `tasks/update`: our tasks never ask for input, so every response answers no outstanding
/// request and is ignored (the spec's SHOULD); an unknown task is an error.
pub async fn update(server: &Server, p: UpdateTaskParams, who: &Principal) -> Result<(), McpError> {
    let core = core(server).await?;
    core.task_as(&p.task_id, who)
        .await
        .map(drop)
        .map_err(|e| task_error(&p.task_id, e))
}

/// The extension's view of one of our tasks.
fn seed(task: &Task) -> Handle {
    let status = match task.status {
        _ if !task.is_settled() => TaskStatus::Working,
        Status::Cancelled => TaskStatus::Cancelled,
        Status::Queued | Status::Running | Status::Succeeded | Status::Failed => {
            TaskStatus::Completed
        }
    };
    let mut h = Handle::new(&task.task_id, status, &task.created_at, &task.updated_at)
        .with_poll_interval_ms(POLL_INTERVAL_MS)
        .with_status_message(match &task.note {
            Some(note) => format!("{}: {note}", task.summary()),
            None => task.summary(),
        });
    h.ttl_ms = None;
    h
}

fn object(v: Result<Value, serde_json::Error>) -> JsonObject {
    match v {
        Ok(Value::Object(map)) => map,
        _ => JsonObject::new(),
    }
}

async fn core(server: &Server) -> Result<std::sync::Arc<Core>, McpError> {
    server
        .core()
        .await
        .map_err(|e| McpError::internal_error(e.message, None))
}

/// A core error about one task: unknown is `-32602` (the spec's code); a refusal the caller can
/// act on (say, a cancel while submitting) is `-32602` with our error; the rest `-32603`.
fn task_error(id: &str, e: Error) -> McpError {
    let data = Some(serde_json::json!({ "error": &e }));
    match e.category {
        Category::NotFound => McpError::invalid_params(format!("unknown task '{id}'"), data),
        Category::InvalidInput => McpError::invalid_params(e.message.clone(), data),
        _ => McpError::internal_error(e.message.clone(), data),
    }
}
