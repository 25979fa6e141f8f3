//! Provider webhooks end to end: a server with webhooks on and one task created through it, and
//! a way to post callbacks to it as a provider would.

use std::sync::Arc;
use std::time::Duration;

use i2v_mcp::core::{CallCtx, Core};
use i2v_mcp::model::{CreateRequest, ProviderId, Task};

use super::fakes::FakeProvider;
use super::{Workspace, within};

/// An HTTP server whose public URL is its own address (so creates ask for callbacks), with one
/// image-to-video task created through it; polling so slow that only a webhook can explain a
/// prompt completion.
pub struct Hooked {
    pub core: Arc<Core>,
    pub addr: std::net::SocketAddr,
    pub handle: i2v_mcp::http::ServerHandle,
    pub ws: Workspace,
    /// The task as the create answered it.
    pub task: Task,
    /// The fake's id for it (the provider's request or prediction id).
    pub upstream_id: String,
    /// The callback URL the provider was given.
    pub hook_url: String,
}

/// [`Hooked`] on `provider`, with `env` pointing the server at `fake`.
pub async fn hooked(
    fake: &FakeProvider,
    env: &[(String, String)],
    provider: ProviderId,
    prompt: &str,
) -> Hooked {
    let ws = Workspace::new();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cfg = ws
        .config(&pairs)
        .with_fast_polling(Duration::from_secs(600), Duration::from_secs(600));
    let core = Core::start(cfg).unwrap();
    let (addr, handle) = crate::http::start(core.clone(), |o, addr| {
        o.public_url = Some(format!("http://{addr}"));
    })
    .await;
    let task = core
        .create(
            CreateRequest {
                image: Some("https://example.com/cat.png".into()),
                prompt: prompt.into(),
                provider: Some(provider),
                ..CreateRequest::default()
            },
            CallCtx::default(),
        )
        .await
        .unwrap();
    let upstream = &fake.tasks()[0];
    Hooked {
        core,
        addr,
        handle,
        ws,
        task,
        upstream_id: upstream.id.clone(),
        hook_url: upstream.webhook_url.clone().unwrap(),
    }
}

/// POST a webhook body with these headers to `url`, as a provider would; the HTTP status.
pub async fn post_hook(url: &str, headers: Vec<(String, String)>, body: String) -> u16 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    within(10, "webhook", req.send())
        .await
        .unwrap()
        .status()
        .as_u16()
}
