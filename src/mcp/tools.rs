//! The seven tools: each one handler with its name, title, description, annotations and inline
//! input and output schemas (see [`super::schema`]), gathered by rmcp's `#[tool_router]`.
//! `export-tools` writes their definitions to `tools/`, and a test fails when the files drift
//! from the code.

use rmcp::handler::server::common::FromContextPart;
use rmcp::handler::server::router::tool::ToolRouter;
use std::sync::Arc;

use rmcp::handler::server::tool::{InputResponses, RequestState, ToolCallContext};
use rmcp::model::{CallToolResponse, CallToolResult, Tool};
use rmcp::schemars::{self, JsonSchema};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, tool, tool_router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::consent::CallConsent;
use super::schema::{input, output, without_nested_descriptions};
use super::{Server, structured, task_result};
use crate::core::{CallCtx, Consent, Estimate, EstimateRequest, LoraList, ModelList, TaskList};
use crate::error::Error;
use crate::model::{CreateRequest, ProviderId, Status, Task};

/// The longest wait one tool call asks for: under the 60 s request timeout of the TypeScript
/// SDK (Claude Code, Cursor, the MCP Inspector), which progress does not reset unless the host
/// opts in. A longer wait is one more `get_task` call.
pub const MAX_WAIT_SECONDS: u32 = crate::config::DEFAULT_MAX_WAIT_SECONDS;

/// `get_task` arguments.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetArgs {
    pub task_id: String,
    /// 0 = refresh and return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = MAX_WAIT_SECONDS))]
    pub wait_seconds: Option<u32>,
}

// The list tools take `provider` as a plain string in their schemas: its values are listed once,
// in create_i2v_task's enum (about 22 tokens each time), and a wrong one is still refused by name.

/// `list_tasks` arguments.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub provider: Option<ProviderId>,
    /// Default 20, max 500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `cancel_task` arguments.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelArgs {
    pub task_id: String,
}

/// `list_loras` arguments.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub provider: Option<ProviderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// `list_models` arguments.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub provider: Option<ProviderId>,
}

/// The fields of a task an agent acts on.
const TASK_FIELDS: &[&str] = &["task_id", "status", "video", "error"];

// Annotations carry only hints that differ from the spec's defaults (readOnly false,
// destructive true, idempotent false, openWorld true); destructive/idempotent only matter for
// tools that write. A handler's `Err` is a tool error (`isError`), see `super::error_result`.
#[tool_router(vis = "pub(crate)")]
impl Server {
    #[tool(
        title = "Create image-to-video task",
        description = "Make a video from an image, or from the prompt alone with a text_to_video model (omit image). Returns a task at once; call get_task with wait_seconds until succeeded/failed/cancelled. Paid unless provider is local (free camera-motion preview).",
        input_schema = input::<CreateRequest>(),
        output_schema = output::<Task>(TASK_FIELDS),
        annotations(destructive_hint = false)
    )]
    async fn create_i2v_task(
        &self,
        Args(req): Args<CreateRequest>,
        RequestState(state): RequestState,
        InputResponses(responses): InputResponses,
        rc: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, Error> {
        let core = self.core().await?;
        let req = req?;
        // Stateless HTTP (no subscriptions) has no way back for a 2025 client's answer.
        let consent = CallConsent::new(&rc, req.fingerprint(), responses, state, !self.subscribe);
        let asker: Arc<dyn Consent> = consent.clone();
        let create = |mut ctx: CallCtx| {
            ctx.consent = Some(asker);
            core.create(req, ctx)
        };
        match self.with_ctx(&rc, true, create).await {
            Ok(task) => Ok(self.task_result(&core, task).await.into()),
            // 2026-07-28: the question goes back as the result; the retry carries the answer.
            Err(e) => consent.input_required().map(Into::into).ok_or(e),
        }
    }

    #[tool(
        title = "Get task",
        description = "Get a task, refreshed from its provider; wait_seconds (max 50; call again to wait longer) waits with progress. A succeeded task has video.local_path and sha256.",
        input_schema = input::<GetArgs>(),
        output_schema = output::<Task>(TASK_FIELDS),
        annotations(read_only_hint = true)
    )]
    async fn get_task(
        &self,
        Args(a): Args<GetArgs>,
        rc: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, Error> {
        let core = self.core().await?;
        let a = a?;
        let get = |ctx| core.get(&a.task_id, a.wait_seconds, ctx);
        let task = self.with_ctx(&rc, false, get).await?;
        Ok(self.task_result(&core, task).await)
    }

    #[tool(
        title = "List tasks",
        description = "List tasks from the journal, newest first.",
        input_schema = input::<ListArgs>(),
        output_schema = output::<TaskList>(&[]),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_tasks(
        &self,
        Args(a): Args<ListArgs>,
        rc: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, Error> {
        let core = self.core().await?;
        let a = a?;
        let who = self.who(&rc);
        Ok(structured(
            &core.list_as(&who, a.status, a.provider, a.limit).await?,
        ))
    }

    #[tool(
        title = "Cancel task",
        description = "Cancel a task upstream where the provider allows it, else stop watching it (the note says which).",
        input_schema = input::<CancelArgs>(),
        output_schema = output::<Task>(TASK_FIELDS),
        annotations(idempotent_hint = true)
    )]
    async fn cancel_task(
        &self,
        Args(a): Args<CancelArgs>,
        rc: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, Error> {
        let core = self.core().await?;
        let task = core.cancel_as(&a?.task_id, &self.who(&rc)).await?;
        Ok(task_result(task, self.video_link_base(), None, false))
    }

    #[tool(
        title = "List LoRAs",
        description = "List known LoRAs per provider and model.",
        input_schema = input::<LoraArgs>(),
        output_schema = output::<LoraList>(&[]),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_loras(&self, Args(a): Args<LoraArgs>) -> Result<CallToolResult, Error> {
        let core = self.core().await?;
        let a = a?;
        Ok(structured(
            &core.list_loras(a.provider, a.model.as_deref())?,
        ))
    }

    #[tool(
        title = "List models",
        description = "List providers x models: capabilities, limits, prices (null = unpublished) and whether each is configured.",
        input_schema = input::<ModelArgs>(),
        output_schema = output::<ModelList>(&[]),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_models(&self, Args(a): Args<ModelArgs>) -> Result<CallToolResult, Error> {
        let core = self.core().await?;
        Ok(structured(&core.list_models(a?.provider)))
    }

    #[tool(
        title = "Estimate cost",
        description = "Estimate the USD cost of a create before paying; compare=true quotes every model that can do it.",
        input_schema = without_nested_descriptions(input::<EstimateRequest>()),
        output_schema = output::<Estimate>(&[]),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn estimate_cost(
        &self,
        Args(a): Args<EstimateRequest>,
        rc: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, Error> {
        let core = self.core().await?;
        let a = a?;
        // The image is checked like create's, so the client's roots count here too.
        let estimate = |ctx| async move { core.estimate(&a, &ctx).await };
        Ok(structured(&self.with_ctx(&rc, true, estimate).await?))
    }
}

/// The tools, built once per process (sessions share them).
pub(crate) fn router() -> &'static ToolRouter<Server> {
    static ROUTER: std::sync::OnceLock<ToolRouter<Server>> = std::sync::OnceLock::new();
    ROUTER.get_or_init(Server::tool_router)
}

/// The tool list, sorted by name.
pub fn all() -> Vec<Tool> {
    router().list_all()
}

/// One tool by name, without copying the list (looked up on every call).
pub fn get(name: &str) -> Option<&'static Tool> {
    router().get(name)
}

/// A tool's arguments as serde reads them (after [`integral_floats`]). A failure is kept for the
/// handler, which answers it as an `invalid_input` tool error after any failure to start the
/// core; `Parameters<T>` would answer it in rmcp's words instead.
pub(crate) struct Args<T>(pub Result<T, Error>);

impl<S, T: DeserializeOwned> FromContextPart<ToolCallContext<'_, S>> for Args<T> {
    fn from_context_part(cx: &mut ToolCallContext<'_, S>) -> Result<Self, McpError> {
        let mut args = Value::Object(cx.arguments.take().unwrap_or_default());
        integral_floats(&mut args);
        Ok(Args(serde_json::from_value(args).map_err(|e| {
            Error::invalid_input(format!(
                "invalid arguments for {}: {e}; see the tool's inputSchema",
                cx.name
            ))
        })))
    }
}

/// `5.0` -> `5`: JSON Schema's `integer` accepts a number with a zero fraction, and some
/// model/host pairs send integers that way; serde would refuse it for an integer field. Float
/// fields take the integer back unchanged.
fn integral_floats(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            // 2^53: beyond it an f64 no longer holds every integer exactly.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() <= EXACT
            {
                *v = if f >= 0.0 {
                    Value::from(f as u64)
                } else {
                    Value::from(f as i64)
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats),
        Value::Object(fields) => fields.values_mut().for_each(integral_floats),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_inline_objects() {
        for t in all() {
            let text = serde_json::to_string(&t).unwrap();
            assert!(!text.contains("$ref"), "{} has a $ref", t.name);
            assert!(!text.contains("$defs"), "{} has $defs", t.name);
            assert_eq!(
                t.input_schema.get("type"),
                Some(&Value::String("object".into())),
                "{}",
                t.name
            );
            assert!(t.output_schema.is_some(), "{} has no output schema", t.name);
            assert!(t.annotations.is_some() && t.title.is_some(), "{}", t.name);
        }
        let create = all()
            .into_iter()
            .find(|t| t.name == "create_i2v_task")
            .unwrap();
        let req = create.input_schema.get("required").unwrap();
        // image is optional since text-to-video models take none.
        assert_eq!(req, &serde_json::json!(["prompt"]));
    }
}
