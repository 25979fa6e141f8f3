//! The MCP face: rmcp server handler, thin over the core. It maps tool arguments to core calls,
//! forwards progress for calls that carried a progress token, ends waits on cancellation, and
//! renders results as structured content with a short text beside it.

pub mod tools;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
    SubscribeRequestParams, Tool, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::core::{CallCtx, Core, EstimateRequest};
use crate::error::Error;
use crate::model::{CreateRequest, Status, Task};
use tools::{CancelArgs, GetArgs, ListArgs, LoraArgs, ModelArgs};

pub const INSTRUCTIONS: &str = "Turns a still image into a video with Wan 2.x providers. Flow: create_i2v_task (image = https URL, data: URI or local path; returns a task at once), then get_task with wait_seconds (e.g. 50) until status is succeeded, failed or cancelled; the video is then on disk at video.local_path. When retrying a create, reuse the same idempotency_key so nothing is paid twice. estimate_cost before paying; provider \"local\" is a free offline camera-motion preview.";

/// The core, ready or still starting (journal opening, restart recovery) in the background.
type CoreFuture = Shared<BoxFuture<'static, Result<Arc<Core>, Error>>>;

/// One MCP session's view of the shared core.
#[derive(Clone)]
pub struct Server {
    core: CoreFuture,
    /// Directories the client offered as MCP roots.
    roots: Arc<RwLock<Vec<PathBuf>>>,
    subscriptions: Arc<RwLock<HashSet<String>>>,
    /// Whether the client's MCP roots widen the directories local images may come from. True for
    /// stdio (the client runs on this machine as this user); false over HTTP, where a remote
    /// client has no say over the server's disk beyond the configured allowed dirs.
    trust_roots: bool,
    /// Base URL under which `/videos/{task_id}` serves results (HTTP mode); without it the
    /// resource_link is the file's local `file://` URI.
    video_base: Option<Arc<str>>,
}

impl Server {
    pub fn new(core: Arc<Core>) -> Self {
        Server::with_core(futures::future::ready(Ok(core)).boxed().shared())
    }

    /// A server whose core starts in the background: the MCP handshake and `tools/list` do not
    /// wait for the journal (opening a new one costs fsyncs) or for restart recovery; the first
    /// call that needs the core awaits it. The tool list is built meanwhile, off the critical path.
    pub fn starting(cfg: crate::config::Config) -> Self {
        let start = async move {
            tokio::task::spawn_blocking(move || Core::start(cfg))
                .await
                .map_err(|e| Error::internal(format!("the core did not start: {e}")))?
        }
        .boxed()
        .shared();
        // Drive it now, so open tasks resume at once even if no call comes. A failure (say, an
        // unwritable data dir) is logged here and answered to every call that needs the core.
        let driver = start.clone();
        tokio::spawn(async move {
            if let Err(e) = driver.await {
                tracing::error!(error = %e.message, "the core could not start");
            }
        });
        tokio::task::spawn_blocking(tools::all);
        Server::with_core(start)
    }

    fn with_core(core: CoreFuture) -> Self {
        Server {
            core,
            roots: Arc::default(),
            subscriptions: Arc::default(),
            trust_roots: true,
            video_base: None,
        }
    }

    /// The core, once started (immediately, unless it is still starting).
    pub async fn core(&self) -> Result<Arc<Core>, Error> {
        self.core.clone().await
    }

    /// Link results as `<base>/videos/{task_id}.mp4` (a remote client cannot open the server's files).
    pub fn video_links(mut self, base: &str) -> Self {
        self.video_base = Some(Arc::from(base.trim_end_matches('/')));
        self
    }

    fn task_result(&self, task: Task) -> CallToolResult {
        task_result(task, self.video_base.as_deref())
    }

    /// Whether to let the client's MCP roots extend the allowed directories (default: yes).
    pub fn trust_roots(mut self, on: bool) -> Self {
        self.trust_roots = on;
        self
    }

    fn ctx(
        &self,
        rc: &RequestContext<RoleServer>,
    ) -> (CallCtx, Option<tokio::task::JoinHandle<()>>) {
        let roots = self.roots.read().map(|r| r.clone()).unwrap_or_default();
        let mut ctx = CallCtx {
            progress: None,
            cancel: rc.ct.clone(),
            roots,
        };
        // Only a client that sent a token gets progress: never invent one.
        let forwarder = rc.meta.get_progress_token().map(|token| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<crate::core::Progress>();
            ctx.progress = Some(tx);
            let peer = rc.peer.clone();
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    let param = ProgressNotificationParam::new(token.clone(), p.progress)
                        .with_total(100.0)
                        .with_message(p.message);
                    if peer.notify_progress(param).await.is_err() {
                        break;
                    }
                }
            })
        });
        (ctx, forwarder)
    }

    async fn dispatch(
        &self,
        name: &str,
        args: Value,
        rc: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, Error> {
        let core = &self.core().await?;
        match name {
            "create_i2v_task" => {
                let req: CreateRequest = parse(name, args)?;
                let (ctx, fwd) = self.ctx(rc);
                let r = core.create(req, ctx).await;
                finish(fwd).await;
                r.map(|t| self.task_result(t))
            }
            "get_task" => {
                let a: GetArgs = parse(name, args)?;
                let (ctx, fwd) = self.ctx(rc);
                let r = core.get(&a.task_id, a.wait_seconds, ctx).await;
                finish(fwd).await;
                r.map(|t| self.task_result(t))
            }
            "list_tasks" => {
                let a: ListArgs = parse(name, args)?;
                let list = core.list(a.status, a.provider, a.limit)?;
                let mut text = if list.tasks.is_empty() {
                    "no tasks".to_string()
                } else {
                    list.tasks
                        .iter()
                        .map(Task::summary)
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                if let Some(note) = &list.note {
                    text.push_str(&format!("\nnote: {note}"));
                }
                Ok(structured(&list, text))
            }
            "cancel_task" => {
                let a: CancelArgs = parse(name, args)?;
                core.cancel(&a.task_id).await.map(|t| self.task_result(t))
            }
            "list_loras" => {
                let a: LoraArgs = parse(name, args)?;
                let list = core.list_loras(a.provider, a.model.as_deref())?;
                let text = format!("{} LoRAs. {}", list.loras.len(), list.note);
                Ok(structured(&list, text))
            }
            "list_models" => {
                let a: ModelArgs = parse(name, args)?;
                let list = core.list_models(a.provider);
                let text = list
                    .models
                    .iter()
                    .map(|m| {
                        format!(
                            "{}{}",
                            m.spec.key(),
                            if m.configured { "" } else { " (no key)" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                Ok(structured(&list, text))
            }
            "estimate_cost" => {
                let a: EstimateRequest = parse(name, args)?;
                let est = core.estimate(&a)?;
                let text = est
                    .quotes
                    .iter()
                    .map(|q| match q.usd {
                        Some(usd) => format!("{}/{}: ${usd} ({})", q.provider, q.model, q.basis),
                        None => {
                            format!("{}/{}: unpriced ({})", q.provider, q.model, q.price_source)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                Ok(structured(&est, text))
            }
            other => Err(Error::invalid_input(format!(
                "unknown tool '{other}': call tools/list for the tools this server offers"
            ))),
        }
    }
}

async fn finish(fwd: Option<tokio::task::JoinHandle<()>>) {
    // The sender is gone with the call's context; let the forwarder drain so every progress
    // notification goes out before the result.
    if let Some(f) = fwd {
        let _ = f.await;
    }
}

fn parse<T: DeserializeOwned>(tool: &str, args: Value) -> Result<T, Error> {
    serde_json::from_value(args).map_err(|e| {
        Error::invalid_input(format!(
            "invalid arguments for {tool}: {e}; see the tool's inputSchema"
        ))
    })
}

fn structured<T: Serialize>(value: &T, text: String) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = serde_json::to_value(value).ok();
    r
}

fn task_result(task: Task, video_base: Option<&str>) -> CallToolResult {
    let mut r = structured(&task, task.summary());
    if task.status == Status::Succeeded
        && let Some(path) = task.video.as_ref().and_then(|v| v.local_path.clone())
    {
        let uri = match video_base {
            Some(base) => format!("{base}/videos/{}.mp4", task.task_id),
            None => url::Url::from_file_path(&path)
                .map(|u| u.to_string())
                .unwrap_or_else(|_| format!("file://{path}")),
        };
        let name = std::path::Path::new(&path)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| format!("{}.mp4", task.task_id));
        r.content.push(ContentBlock::resource_link(
            Resource::new(uri, name).with_mime_type("video/mp4"),
        ));
    }
    r
}

/// A tool-level error: `isError: true`, the error object as structured content, and a text
/// block saying what to do.
pub fn error_result(e: &Error) -> CallToolResult {
    let mut text = format!("{}: {}", e.category.as_str(), e.message);
    if let Some(step) = &e.next_step {
        text.push_str(&format!(" Next: {step}."));
    }
    let mut r = CallToolResult::error(vec![ContentBlock::text(text)]);
    r.structured_content = Some(serde_json::json!({ "error": e }));
    r
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .build(),
        )
        .with_server_info(Implementation::new("i2v-mcp", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools::all()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools::all().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = Value::Object(request.arguments.clone().unwrap_or_default());
        let result = match self.dispatch(&request.name, args, &context).await {
            Ok(r) => r,
            Err(e) => error_result(&e),
        };
        Ok(CallToolResponse::Complete(result))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let mut items =
            vec![Resource::new("i2v://models", "models").with_mime_type("application/json")];
        if let Ok(core) = self.core().await
            && let Ok(list) = core.list(None, None, Some(50))
        {
            for t in list.tasks {
                items.push(
                    Resource::new(format!("i2v://tasks/{}", t.task_id), t.task_id.clone())
                        .with_mime_type("application/json"),
                );
            }
        }
        Ok(ListResourcesResult::with_all_items(items))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("i2v://tasks/{task_id}", "task")
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri.clone();
        let core = self
            .core()
            .await
            .map_err(|e| McpError::internal_error(e.message, None))?;
        let body = if uri == "i2v://models" {
            serde_json::to_string(&core.list_models(None))
        } else if let Some(id) = uri.strip_prefix("i2v://tasks/") {
            let row = core
                .store()
                .get(id)
                .map_err(|e| McpError::internal_error(e.message, None))?
                .ok_or_else(|| {
                    McpError::resource_not_found(format!("unknown task '{id}'"), None)
                })?;
            serde_json::to_string(&row.to_task())
        } else {
            return Err(McpError::resource_not_found(
                format!("unknown resource '{uri}': use i2v://models or i2v://tasks/{{task_id}}"),
                None,
            ));
        };
        let body = body.map_err(|e| McpError::internal_error(e.to_string(), None))?;
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(body, uri).with_mime_type("application/json"),
        ])
        .into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let Some(id) = request.uri.strip_prefix("i2v://tasks/") else {
            return Err(McpError::invalid_params(
                "only i2v://tasks/{task_id} resources can be subscribed to",
                None,
            ));
        };
        let first = {
            let mut subs = self
                .subscriptions
                .write()
                .map_err(|_| McpError::internal_error("lock", None))?;
            let first = subs.is_empty();
            subs.insert(id.to_string());
            first
        };
        if first {
            // One listener per session forwards changes of subscribed tasks.
            let subs = self.subscriptions.clone();
            let core = self
                .core()
                .await
                .map_err(|e| McpError::internal_error(e.message, None))?;
            let mut rx = core.watcher().subscribe();
            let peer = context.peer.clone();
            tokio::spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(task) => {
                            let wanted = subs
                                .read()
                                .map(|s| s.contains(&task.task_id))
                                .unwrap_or(false);
                            if wanted
                                && peer
                                    .notify_resource_updated(
                                        rmcp::model::ResourceUpdatedNotificationParam::new(
                                            format!("i2v://tasks/{}", task.task_id),
                                        ),
                                    )
                                    .await
                                    .is_err()
                            {
                                break;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    }
                }
            });
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Some(id) = request.uri.strip_prefix("i2v://tasks/")
            && let Ok(mut subs) = self.subscriptions.write()
        {
            subs.remove(id);
        }
        Ok(())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.refresh_roots(context.peer.clone());
    }

    async fn on_roots_list_changed(&self, context: NotificationContext<RoleServer>) {
        self.refresh_roots(context.peer.clone());
    }
}

impl Server {
    /// Ask a client that offers roots for them; local image paths may then come from there.
    // Roots are deprecated in the 2026-07-28 revision (SEP-2577) but are still how clients on the
    // 2025 revisions tell a server which directories are theirs.
    #[allow(deprecated)]
    fn refresh_roots(&self, peer: rmcp::Peer<RoleServer>) {
        if !self.trust_roots {
            return;
        }
        let offers = peer
            .peer_info()
            .is_some_and(|i| i.capabilities.roots.is_some());
        if !offers {
            return;
        }
        let roots = self.roots.clone();
        tokio::spawn(async move {
            let listed = peer.list_roots().await;
            if let Ok(list) = listed {
                let dirs: Vec<PathBuf> = list
                    .roots
                    .iter()
                    .filter_map(|r| url::Url::parse(&r.uri).ok())
                    .filter_map(|u| u.to_file_path().ok())
                    .collect();
                if let Ok(mut w) = roots.write() {
                    *w = dirs;
                }
            }
        });
    }
}
