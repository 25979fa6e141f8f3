//! The MCP face: rmcp server handler, thin over the core. It maps tool arguments to core calls,
//! forwards progress for calls that carried a progress token, ends waits on cancellation, and
//! renders results as structured content with the same data as JSON text beside it (most hosts
//! show the model only the text).

pub mod apps;
mod consent;
mod schema;
pub mod stdio;
pub mod tasks;
pub mod tools;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use rmcp::handler::server::tool::{IntoCallToolResult, ToolCallContext};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
    CustomRequest, CustomResult, DiscoverResult, GetTaskParams, GetTaskResult, Implementation,
    InitializeRequestParams, InitializeResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
    ServerCapabilities, ServerConfig, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, tool_handler};
use serde::Serialize;
use serde_json::Value;

use crate::core::{CallCtx, Core};
use crate::error::Error;
use crate::model::{Status, Task};

pub const INSTRUCTIONS: &str = "Turns a still image into a video with Wan 2.x providers. Flow: create_i2v_task (image = https URL, data: URI or local path; returns a task at once), then get_task with wait_seconds (e.g. 50) until status is succeeded, failed or cancelled; the video is then on disk at video.local_path. When retrying a create, reuse the same idempotency_key so nothing is paid twice. estimate_cost before paying; provider \"local\" is a free offline camera-motion preview.";

/// The core, ready or still starting (journal opening, restart recovery) in the background.
type CoreFuture = Shared<BoxFuture<'static, Result<Arc<Core>, Error>>>;

/// One MCP session's view of the shared core.
#[derive(Clone)]
pub struct Server {
    core: CoreFuture,
    /// Directories the client offered as MCP roots: `None` until fetched. A call that needs them
    /// fetches them itself (or waits for the fetch under way), so a create sent right after the
    /// handshake, racing the `initialized` notification, still sees the client's roots.
    roots: Arc<tokio::sync::Mutex<Option<Vec<PathBuf>>>>,
    subscriptions: Arc<RwLock<HashSet<String>>>,
    /// Whether resource subscriptions are offered: not in stateless HTTP, where no stream
    /// outlives a request to carry `notifications/resources/updated`.
    subscribe: bool,
    /// Whether the client's MCP roots widen the directories local images may come from. True for
    /// stdio (the client runs on this machine as this user); false over HTTP, where a remote
    /// client has no say over the server's disk beyond the configured allowed dirs.
    trust_roots: bool,
    /// Base URL under which `/videos/{task_id}` serves results (HTTP mode); without it the
    /// resource_link is the file's local `file://` URI.
    video_base: Option<Arc<str>>,
    /// On whose behalf calls run when the request does not say (stdio: the operator; legacy
    /// SSE: who opened the stream). `None`: each request must carry it (streamable HTTP puts the
    /// auth layer's `Principal` in the request's extensions); one that does not sees nothing.
    caller: Option<crate::oauth::Principal>,
    /// Signs the `/videos` links (HTTP mode), so a `<video>` tag opens them without a header.
    links: Option<Arc<crate::links::LinkSigner>>,
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
        tokio::task::spawn_blocking(|| {
            tools::router();
        });
        Server::with_core(start)
    }

    fn with_core(core: CoreFuture) -> Self {
        Server {
            core,
            roots: Arc::default(),
            subscriptions: Arc::default(),
            trust_roots: true,
            subscribe: true,
            video_base: None,
            caller: Some(crate::oauth::Principal::operator()),
            links: None,
        }
    }

    /// Calls run on behalf of `who` whatever the request (legacy SSE: who opened the stream).
    pub fn caller(mut self, who: crate::oauth::Principal) -> Self {
        self.caller = Some(who);
        self
    }

    /// Each request names its principal (streamable HTTP); one that does not sees nothing.
    pub fn caller_per_request(mut self) -> Self {
        self.caller = None;
        self
    }

    /// Who this request is on behalf of.
    pub(crate) fn who(&self, rc: &RequestContext<RoleServer>) -> crate::oauth::Principal {
        rc.extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<crate::oauth::Principal>())
            .cloned()
            .or_else(|| self.caller.clone())
            .unwrap_or_else(crate::oauth::Principal::nobody)
    }

    /// The core, once started (immediately, unless it is still starting).
    pub async fn core(&self) -> Result<Arc<Core>, Error> {
        self.core.clone().await
    }

    /// Where `/videos` links point and the signer, in HTTP mode.
    fn video_link_base(&self) -> LinkBase<'_> {
        match (&self.video_base, &self.links) {
            (Some(b), Some(l)) => Some((b.as_ref(), l.as_ref())),
            _ => None,
        }
    }

    /// Link results as `<base>/videos/{task_id}.mp4` (a remote client cannot open the server's files).
    pub fn video_links(mut self, base: &str, signer: Arc<crate::links::LinkSigner>) -> Self {
        self.video_base = Some(Arc::from(base.trim_end_matches('/')));
        self.links = Some(signer);
        self
    }

    /// A task's result; a succeeded task's contact sheet rides along as an image block.
    async fn task_result(&self, core: &Core, task: Task) -> CallToolResult {
        let sheet = match contact_sheet(core, &task) {
            Some(path) => tokio::fs::read(path).await.ok(),
            None => None,
        };
        // The poster (first frame) is made with the sheet; linked, the MCP Apps player shows it
        // while the video loads.
        let poster = match (
            &sheet,
            task.video.as_ref().and_then(|v| v.local_path.as_deref()),
        ) {
            (Some(_), Some(video)) => {
                let path = crate::preview::poster_path(std::path::Path::new(video), &task.task_id);
                tokio::fs::try_exists(path).await.unwrap_or(false)
            }
            _ => false,
        };
        task_result(task, self.video_link_base(), sheet, poster)
    }

    /// Whether to offer resource subscriptions (default: yes; stateless HTTP cannot deliver them).
    pub fn subscriptions(mut self, on: bool) -> Self {
        self.subscribe = on;
        self
    }

    /// Whether to let the client's MCP roots extend the allowed directories (default: yes).
    pub fn trust_roots(mut self, on: bool) -> Self {
        self.trust_roots = on;
        self
    }

    /// The call's context. `with_roots`: the call may read local images, so it needs the
    /// client's roots (fetched now if the client offers them and they are not known yet).
    async fn ctx(&self, rc: &RequestContext<RoleServer>, with_roots: bool) -> (CallCtx, Progress) {
        let roots = if with_roots {
            self.roots(&rc.peer).await
        } else {
            Vec::new()
        };
        let mut ctx = CallCtx {
            progress: None,
            cancel: rc.ct.clone(),
            roots,
            consent: None,
            caller: self.who(rc),
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
        (ctx, Progress(forwarder))
    }

    /// Runs `call` with the call's context and forwards its progress: every notification goes
    /// out before this returns (so before the result); a call dropped midway stops the forwarder.
    async fn with_ctx<T, F, Fut>(
        &self,
        rc: &RequestContext<RoleServer>,
        with_roots: bool,
        call: F,
    ) -> T
    where
        F: FnOnce(CallCtx) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let (ctx, progress) = self.ctx(rc, with_roots).await;
        let out = call(ctx).await;
        progress.finish().await;
        out
    }
}

/// Progress forwarding for one call, only through [`Server::with_ctx`]: [`Progress::finish`]
/// lets every notification go out before the result; dropped unfinished (the call's future
/// dropped), it stops the forwarder.
struct Progress(Option<tokio::task::JoinHandle<()>>);

impl Progress {
    async fn finish(mut self) {
        // The sender is gone with the call's context; let the forwarder drain.
        if let Some(f) = self.0.take() {
            let _ = f.await;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f.abort();
        }
    }
}

/// A result with structured content and, for the many hosts that show the model only
/// `content`, the same data serialised as compact JSON in the text block (the spec's SHOULD).
fn structured<T: Serialize>(value: &T) -> CallToolResult {
    let data = serde_json::to_value(value).unwrap_or(Value::Null);
    let mut r = CallToolResult::success(vec![ContentBlock::text(data.to_string())]);
    r.structured_content = Some(data);
    r
}

/// Where a succeeded task's contact sheet is, when sheets are on (the file may not exist: the
/// video could not be decoded, or the task finished before sheets were made).
fn contact_sheet(core: &Core, task: &Task) -> Option<PathBuf> {
    if !core.cfg.preview.contact_sheet || task.status != Status::Succeeded {
        return None;
    }
    let video = task.video.as_ref()?.local_path.as_deref()?;
    Some(crate::preview::sheet_path(
        std::path::Path::new(video),
        &task.task_id,
    ))
}

/// Where `/videos` links point and who signs them (HTTP mode).
type LinkBase<'a> = Option<(&'a str, &'a crate::links::LinkSigner)>;

fn task_result(
    task: Task,
    video_base: LinkBase<'_>,
    sheet: Option<Vec<u8>>,
    poster: bool,
) -> CallToolResult {
    let mut r = structured(&task);
    if task.status == Status::Succeeded
        && let Some(path) = task.video.as_ref().and_then(|v| v.local_path.clone())
    {
        let uri = match video_base {
            Some((base, signer)) => {
                format!("{base}{}", signer.path(&format!("{}.mp4", task.task_id)))
            }
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
        if poster {
            r.content.push(ContentBlock::resource_link(
                Resource::new(
                    format!("i2v://tasks/{}/poster.jpg", task.task_id),
                    format!("{}.poster.jpg", task.task_id),
                )
                .with_mime_type("image/jpeg"),
            ));
        }
        if let Some(jpeg) = sheet {
            let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, jpeg);
            r.content.push(ContentBlock::image(data, "image/jpeg"));
        }
    }
    r
}

/// A tool-level error: `isError: true` and one text block holding the error as compact JSON
/// (`{"error":{"category":..,"message":..,"retryable":..,"next_step":..}}`). No structured
/// content: it would have to match the tool's output schema, and the TypeScript SDK validates it
/// even on errors, replacing the whole error with a schema complaint.
pub fn error_result(e: &Error) -> CallToolResult {
    let text = serde_json::json!({ "error": e }).to_string();
    CallToolResult::error(vec![ContentBlock::text(text)])
}

/// A tool handler's `Err`: a tool error the model can read and act on, never a protocol error.
impl IntoCallToolResult for Error {
    fn into_call_tool_result(self) -> Result<CallToolResponse, McpError> {
        Ok(error_result(&self).into())
    }
}

#[tool_handler(router = tools::router())]
impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = if self.subscribe {
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .build()
        } else {
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build()
        };
        tasks::advertise(&mut capabilities);
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("i2v-mcp", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut list = tools::all();
        if apps::declared(&context) {
            list = apps::with_player(list);
        }
        Ok(ListToolsResult::with_all_items(list))
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        context.peer.set_peer_info(request.clone());
        let mut result = self.negotiate_initialize(&request)?;
        // Tasks are for 2026-07-28 requests only (see `tasks::declared`).
        tasks::hide(&mut result.capabilities);
        Ok(result)
    }

    async fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, McpError> {
        let mut info = self.get_info();
        if !tasks::declared(&context) {
            tasks::hide(&mut info.capabilities);
        }
        let versions = self.supported_protocol_versions().into_owned();
        Ok(DiscoverResult::from_server_info(versions, info))
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        tasks::get(self, request, &self.who(&context)).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        tasks::cancel(self, request, &self.who(&context)).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        tasks::update(self, request, &self.who(&context)).await
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        // An unknown tool is a protocol error (-32602), as the spec lists it, told in our words
        // (the router says only "tool not found"); everything about a known tool's arguments is
        // a tool error the model can read and fix (see `tools::Args`).
        let router = tools::router();
        if !router.has_route(&request.name) {
            return Err(McpError::invalid_params(
                format!(
                    "unknown tool '{}': call tools/list for the tools this server offers",
                    request.name
                ),
                None,
            ));
        }
        let as_task = tasks::wanted(&request, &context);
        if as_task {
            tasks::no_wait(&mut request);
        }
        let who = self.who(&context);
        let response = router
            .call(ToolCallContext::new(self, request, context))
            .await?;
        if as_task {
            return tasks::handle(self, response, &who).await;
        }
        Ok(response)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let mut items =
            vec![Resource::new("i2v://models", "models").with_mime_type("application/json")];
        if apps::declared(&context) {
            items.push(apps::player_resource(self.video_base.as_deref()));
        }
        if let Ok(core) = self.core().await
            && let Ok(list) = core
                .list_as(&self.who(&context), None, None, Some(50))
                .await
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
            ResourceTemplate::new("i2v://tasks/{task_id}/contact-sheet.jpg", "contact sheet")
                .with_mime_type("image/jpeg"),
            ResourceTemplate::new("i2v://tasks/{task_id}/poster.jpg", "poster")
                .with_mime_type("image/jpeg"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri.clone();
        let who = self.who(&context);
        if uri == apps::PLAYER_URI {
            return Ok(apps::read_player(self.video_base.as_deref()).into());
        }
        let core = self
            .core()
            .await
            .map_err(|e| McpError::internal_error(e.message, None))?;
        let body = if uri == "i2v://models" {
            serde_json::to_string(&core.list_models(None))
        } else if let Some((id, file)) = task_image(&uri) {
            let (id, file) = (id.to_string(), file.to_string());
            return read_task_image(&core, &id, &file, uri, &who)
                .await
                .map(Into::into);
        } else if let Some(id) = uri.strip_prefix("i2v://tasks/") {
            let task = core
                .task_as(id, &who)
                .await
                .map_err(|e| task_error(id, e))?;
            serde_json::to_string(&task)
        } else if let Some(id) = self.video_task_id(&uri) {
            let id = id.to_string();
            return self.read_video(&core, &id, uri, &who).await.map(Into::into);
        } else {
            return Err(McpError::resource_not_found(
                format!(
                    "unknown resource '{uri}': use i2v://models, i2v://tasks/{{task_id}}, \
                     i2v://tasks/{{task_id}}/contact-sheet.jpg or a video link from a succeeded task"
                ),
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
        if !self.subscribe {
            return Err(McpError::invalid_request(
                "this server is stateless: no stream outlives a request to carry updates; poll \
                 get_task or resources/read instead",
                None,
            ));
        }
        let Some(id) = request.uri.strip_prefix("i2v://tasks/") else {
            return Err(McpError::invalid_params(
                "only i2v://tasks/{task_id} resources can be subscribed to",
                None,
            ));
        };
        // Only to a task the caller may see: another user's is as unknown as a made-up id.
        self.core()
            .await
            .map_err(|e| McpError::internal_error(e.message, None))?
            .task_as(id, &self.who(&context))
            .await
            .map_err(|e| task_error(id, e))?;
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

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // 2026-07-28: updates of tasks, one `subscriptions/listen` stream per client request.
        let tasks: Vec<String> = requested
            .resource_subscriptions
            .iter()
            .flatten()
            .filter(|uri| uri.starts_with("i2v://tasks/"))
            .cloned()
            .collect();
        Some(if tasks.is_empty() || !self.subscribe {
            SubscriptionFilter::new()
        } else {
            SubscriptionFilter::builder()
                .resource_subscriptions(tasks)
                .build()
        })
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let wanted: HashSet<String> = context
            .accepted()
            .resource_subscriptions
            .iter()
            .flatten()
            .cloned()
            .collect();
        if wanted.is_empty() {
            context.cancelled().await;
            return Ok(());
        }
        let core = self
            .core()
            .await
            .map_err(|e| McpError::internal_error(e.message, None))?;
        let who = self.who(context.request_context());
        let mut rx = core.watcher().subscribe();
        loop {
            let task = tokio::select! {
                () = context.cancelled() => return Ok(()),
                next = rx.recv() => match next {
                    Ok(task) => task,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return Ok(()),
                },
            };
            let uri = format!("i2v://tasks/{}", task.task_id);
            // Only news of tasks this caller may see: another user's id stays silent.
            if wanted.contains(&uri)
                && core.task_as(&task.task_id, &who).await.is_ok()
                && context.sink().notify_resource_updated(uri).await.is_err()
            {
                return Ok(());
            }
        }
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        // A known method lands here only when its params did not parse (say, `tools/call` with
        // `arguments: []`): that is -32602 with what is wrong, not "method not found".
        if KNOWN_METHODS.contains(&request.method.as_str()) {
            return Err(McpError::invalid_params(
                format!(
                    "invalid params for {}: see the MCP schema (tools/call takes {{\"name\": \
                     string, \"arguments\": object}})",
                    request.method
                ),
                None,
            ));
        }
        Err(McpError::new(
            rmcp::model::ErrorCode::METHOD_NOT_FOUND,
            format!("unknown method '{}'", request.method),
            None,
        ))
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.prefetch_roots(context.peer.clone());
    }

    async fn on_roots_list_changed(&self, context: NotificationContext<RoleServer>) {
        *self.roots.lock().await = None;
        self.prefetch_roots(context.peer.clone());
    }
}

/// Methods this server implements: their params failing to parse is -32602, not -32601.
const KNOWN_METHODS: &[&str] = &[
    "tools/call",
    "tools/list",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
    "initialize",
    "ping",
    "server/discover",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
];

/// `i2v://tasks/{id}/contact-sheet.jpg` or `.../poster.jpg` -> (id, which file).
fn task_image(uri: &str) -> Option<(&str, &str)> {
    let (id, file) = uri.strip_prefix("i2v://tasks/")?.split_once('/')?;
    (!id.is_empty() && matches!(file, "contact-sheet.jpg" | "poster.jpg")).then_some((id, file))
}

/// A succeeded task and the path of its downloaded video, or why there is none (resource errors).
async fn succeeded_video(
    core: &Core,
    id: &str,
    who: &crate::oauth::Principal,
) -> Result<(Task, String), McpError> {
    core.video_path_as(id, who)
        .await
        .map_err(|e| task_error(id, e))?
        .map(|(task, path)| (task, path.display().to_string()))
        .ok_or_else(|| {
            McpError::resource_not_found(format!("task {id} has no downloaded video (yet)"), None)
        })
}

/// A core error about one task as a resource error.
fn task_error(id: &str, e: Error) -> McpError {
    match e.category {
        crate::error::Category::NotFound => {
            McpError::resource_not_found(format!("unknown task '{id}'"), None)
        }
        _ => McpError::internal_error(e.message, None),
    }
}

/// A succeeded task's contact sheet or poster as an `image/jpeg` blob.
async fn read_task_image(
    core: &Core,
    id: &str,
    file: &str,
    uri: String,
    who: &crate::oauth::Principal,
) -> Result<ReadResourceResult, McpError> {
    let not_found = |why: String| McpError::resource_not_found(why, None);
    let (task, video) = succeeded_video(core, id, who).await?;
    let video = std::path::Path::new(&video);
    let path = if file == "poster.jpg" {
        crate::preview::poster_path(video, id)
    } else {
        crate::preview::sheet_path(video, id)
    };
    let bytes = tokio::fs::read(&path).await.map_err(|_| {
        not_found(format!(
            "task {id} has no {file}: {}",
            task.note.as_deref().unwrap_or("contact sheets are off")
        ))
    })?;
    let blob = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    Ok(ReadResourceResult::new(vec![
        ResourceContents::blob(blob, uri).with_mime_type("image/jpeg"),
    ]))
}

/// Largest video `resources/read` returns inline (base64 grows it by a third); larger ones are
/// opened from their path or URL.
const MAX_INLINE_VIDEO: u64 = 32 << 20;

/// How long a call waits for the client to list its roots.
const ROOTS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Server {
    /// The task id behind a video link this server hands out: `file://.../{id}.mp4` (stdio) or
    /// `<public base>/videos/{id}.mp4` (HTTP).
    fn video_task_id<'a>(&self, uri: &'a str) -> Option<&'a str> {
        let file = match &self.video_base {
            // `/videos/{id}.mp4`, or signed: `/videos/s/<exp>/<sig>/{id}.mp4`.
            Some(base) => uri
                .strip_prefix(base.as_ref())?
                .strip_prefix("/videos/")?
                .rsplit('/')
                .next()?,
            None => uri.strip_prefix("file://")?.rsplit('/').next()?,
        };
        file.strip_suffix(".mp4").filter(|id| !id.is_empty())
    }

    /// A succeeded task's video as a `video/mp4` blob, for clients that read `resource_link`s.
    async fn read_video(
        &self,
        core: &Core,
        id: &str,
        uri: String,
        who: &crate::oauth::Principal,
    ) -> Result<ReadResourceResult, McpError> {
        let not_found = |why: String| McpError::resource_not_found(why, None);
        let (_, path) = succeeded_video(core, id, who).await?;
        // Over stdio the link is the file's own URI: it must name exactly this file.
        if self.video_base.is_none() {
            let linked = url::Url::parse(&uri)
                .ok()
                .and_then(|u| u.to_file_path().ok());
            if linked.as_deref() != Some(std::path::Path::new(&path)) {
                return Err(not_found(format!("'{uri}' is not the video of task {id}")));
            }
        }
        let len = tokio::fs::metadata(&path)
            .await
            .map_err(|e| not_found(format!("the video of task {id} is gone: {e}")))?
            .len();
        if len > MAX_INLINE_VIDEO {
            return Err(McpError::invalid_request(
                format!(
                    "the video is {len} bytes, over the {MAX_INLINE_VIDEO} bytes sent inline; open \
                     it at {path}"
                ),
                None,
            ));
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| McpError::internal_error(format!("cannot read the video: {e}"), None))?;
        let blob = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
        Ok(ReadResourceResult::new(vec![
            ResourceContents::blob(blob, uri).with_mime_type("video/mp4"),
        ]))
    }

    /// The client's roots, fetched on first need when it offers them. Concurrent calls wait for
    /// one fetch; a client that does not answer in time counts as offering none (logged).
    // Roots are deprecated in the 2026-07-28 revision (SEP-2577) but are still how clients on the
    // 2025 revisions tell a server which directories are theirs.
    #[allow(deprecated)]
    async fn roots(&self, peer: &rmcp::Peer<RoleServer>) -> Vec<PathBuf> {
        let offers = peer
            .peer_info()
            .is_some_and(|i| i.capabilities.roots.is_some());
        if !self.trust_roots || !offers {
            return Vec::new();
        }
        let mut known = self.roots.lock().await;
        if let Some(dirs) = known.as_ref() {
            return dirs.clone();
        }
        let dirs = match tokio::time::timeout(ROOTS_TIMEOUT, peer.list_roots()).await {
            Ok(Ok(list)) => list
                .roots
                .iter()
                .filter_map(|r| url::Url::parse(&r.uri).ok())
                .filter_map(|u| u.to_file_path().ok())
                .collect(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the client offers roots but roots/list failed");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!("the client offers roots but did not list them within 5 s");
                Vec::new()
            }
        };
        *known = Some(dirs.clone());
        dirs
    }

    /// Fetch the roots now, so the first create need not wait for them.
    fn prefetch_roots(&self, peer: rmcp::Peer<RoleServer>) {
        if !self.trust_roots {
            return;
        }
        let server = self.clone();
        tokio::spawn(async move {
            server.roots(&peer).await;
        });
    }
}
