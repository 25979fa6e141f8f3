//! The MCP Apps player (extension `io.modelcontextprotocol/ui`, spec 2026-01-26): one HTML view,
//! `ui://i2v/player.html`, that a host renders in a sandboxed iframe beside a `create_i2v_task` or
//! `get_task` result and that shows the task live.
//!
//! Spec points this relies on:
//! - A host declares the extension in its client capabilities:
//!   `capabilities.extensions["io.modelcontextprotocol/ui"] = {"mimeTypes": ["text/html;profile=mcp-app"]}`
//!   (SEP-1724 extension map). rmcp keeps the `initialize` capabilities in `peer.peer_info()`; a
//!   2026-07-28 client sends them on every request as `_meta["io.modelcontextprotocol/clientCapabilities"]`,
//!   read with `RequestMetaObject::client_capabilities()`. Either declares it.
//! - Only to such hosts: tools link the view with `_meta.ui.resourceUri` (the nested form; the
//!   flat `ui/resourceUri` key is the deprecated one), and resources/list names it. Everyone else
//!   gets tools/list byte for byte as before. resources/read answers anyone who asks for the URI.
//! - The resource is `text/html;profile=mcp-app`, self-contained; `_meta.ui.csp` lists the
//!   origins it may reach: none over stdio (the video comes as a blob through `resources/read`),
//!   the public origin in HTTP mode (`resourceDomains` for `<video src>` and `connectDomains`),
//!   as fallback when the host cannot relay the read. `prefersBorder: true`.
//! - The view speaks JSON-RPC over `postMessage` to the host: `ui/initialize` (answer carries
//!   `hostContext.theme` and `hostContext.styles.variables`, applied as CSS variables),
//!   `ui/notifications/initialized`, then receives `ui/notifications/tool-input` (the call's
//!   arguments: shown as the parameters) and `ui/notifications/tool-result` (the task). It calls
//!   the server through the host with `tools/call` (`get_task` with a short wait, repeatedly, and
//!   `cancel_task`) and `resources/read` (the video link, a base64 `video/mp4` blob made into a
//!   Blob URL), and reports `ui/notifications/size-changed`. Download asks the host with
//!   `ui/download-file` (the video as an embedded `resource` blob) when `hostCapabilities.downloadFile`
//!   says it can (sandboxed iframes may not download); otherwise it is a plain `<a download>`.
//! - Poster: when the result carries an `image/*` resource_link whose URI or name says `poster`
//!   (the first frame, GitHub issue 14 part 1), the view reads it and shows it while the video
//!   loads; without one (today, or a video that could not be decoded) it shows none.

use rmcp::RoleServer;
use rmcp::model::{MetaObject, ReadResourceResult, Resource, ResourceContents, Tool};
use rmcp::service::RequestContext;
use serde_json::{Value, json};

pub const EXTENSION: &str = "io.modelcontextprotocol/ui";
pub const PLAYER_URI: &str = "ui://i2v/player.html";
pub const MIME: &str = "text/html;profile=mcp-app";
pub const PLAYER_HTML: &str = include_str!("player.html");

/// Tools whose results the player shows.
const LINKED: [&str; 2] = ["create_i2v_task", "get_task"];

/// Whether the client declared MCP Apps with HTML views: in this request's `_meta` (2026-07-28)
/// or in its `initialize` capabilities. An extension entry without `mimeTypes` counts as HTML.
pub fn declared(rc: &RequestContext<RoleServer>) -> bool {
    let per_request = rc.meta.client_capabilities();
    let session = rc.peer.peer_info().map(|i| i.capabilities.clone());
    [per_request, session]
        .into_iter()
        .flatten()
        .any(|caps| supports(caps.extensions.as_ref().and_then(|e| e.get(EXTENSION))))
}

fn supports(settings: Option<&serde_json::Map<String, Value>>) -> bool {
    match settings.map(|s| s.get("mimeTypes")) {
        None => false,
        Some(None) => true,
        Some(Some(Value::Array(types))) => types.iter().any(|t| t.as_str() == Some(MIME)),
        Some(Some(_)) => false,
    }
}

/// The tool list with the player linked from the tools whose results it shows.
pub fn with_player(mut tools: Vec<Tool>) -> Vec<Tool> {
    for t in tools
        .iter_mut()
        .filter(|t| LINKED.contains(&t.name.as_ref()))
    {
        let mut meta = t.meta.take().unwrap_or_default();
        meta.0
            .insert("ui".into(), json!({ "resourceUri": PLAYER_URI }));
        t.meta = Some(meta);
    }
    tools
}

/// `_meta.ui` of the player: its CSP (the public origin in HTTP mode) and border preference.
fn ui_meta(video_base: Option<&str>) -> MetaObject {
    let origin = video_base
        .and_then(|b| url::Url::parse(b).ok())
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null");
    let mut ui = json!({ "prefersBorder": true });
    if let Some(origin) = origin {
        ui["csp"] = json!({ "resourceDomains": [origin], "connectDomains": [origin] });
    }
    let mut meta = MetaObject::default();
    meta.0.insert("ui".into(), ui);
    meta
}

/// The player as resources/list shows it.
pub fn player_resource(video_base: Option<&str>) -> Resource {
    Resource::new(PLAYER_URI, "player")
        .with_title("Video task player")
        .with_description("MCP Apps view: a task's progress, then its video")
        .with_mime_type(MIME)
        .with_size(PLAYER_HTML.len() as u64)
        .with_meta(ui_meta(video_base))
}

/// The player as resources/read returns it.
pub fn read_player(video_base: Option<&str>) -> ReadResourceResult {
    ReadResourceResult::new(vec![
        ResourceContents::text(PLAYER_HTML, PLAYER_URI)
            .with_mime_type(MIME)
            .with_meta(ui_meta(video_base)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(v: Value) -> Option<serde_json::Map<String, Value>> {
        v.as_object().cloned()
    }

    #[test]
    fn html_views_must_be_among_the_declared_types() {
        assert!(supports(caps(json!({ "mimeTypes": [MIME] })).as_ref()));
        assert!(supports(caps(json!({})).as_ref()));
        assert!(!supports(
            caps(json!({ "mimeTypes": ["text/uri-list"] })).as_ref()
        ));
        assert!(!supports(None));
    }

    #[test]
    fn csp_names_the_public_origin_only_in_http_mode() {
        let http = serde_json::to_value(ui_meta(Some("https://mcp.example.com/i2v"))).unwrap();
        assert_eq!(
            http["ui"]["csp"]["resourceDomains"],
            json!(["https://mcp.example.com"])
        );
        let stdio = serde_json::to_value(ui_meta(None)).unwrap();
        assert!(stdio["ui"].get("csp").is_none(), "{stdio}");
    }

    #[test]
    fn the_player_is_one_small_self_contained_file() {
        assert!(PLAYER_HTML.len() < 20_000, "{} bytes", PLAYER_HTML.len());
        for external in ["<script src", "<link", "@import", "https://", "http://"] {
            assert!(
                !PLAYER_HTML.contains(external),
                "player.html has {external}"
            );
        }
    }
}
