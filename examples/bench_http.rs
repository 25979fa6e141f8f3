//! HTTP face benchmark: `get_task` on a finished task (answered from the journal, no provider
//! call) over streamable HTTP on loopback, through the rmcp client, at 1, 16 and 64 concurrent
//! sessions. Each session sends one request at a time; prints requests per second and latency
//! percentiles per level, with the machine's core count.
//!
//! Run: `cargo run --release --example bench_http [-- SECONDS_PER_LEVEL]` (default 3).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: failing loudly is right

#[path = "../tests/support"]
mod support {
    pub mod fakes;
}

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use i2v_mcp::config::{Config, Overrides};
use i2v_mcp::core::{CallCtx, Core};
use i2v_mcp::http::HttpOptions;
use i2v_mcp::model::{CreateRequest, ProviderId, Status};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use support::fakes::{FakeProvider, Kind};

const TOKEN: &str = "bench-token-0123456789abcdef";

fn config(dir: &std::path::Path, fake: &FakeProvider) -> Config {
    std::fs::write(dir.join("none.toml"), "").unwrap();
    let env: BTreeMap<String, String> = [
        ("I2V_MCP_DATA_DIR", dir.join("data").display().to_string()),
        ("I2V_MCP_OUTPUT_DIR", dir.join("out").display().to_string()),
        ("I2V_MCP_ALLOWED_DIRS", dir.display().to_string()),
        (
            "I2V_MCP_CONFIG",
            dir.join("none.toml").display().to_string(),
        ),
        ("I2V_MCP_POLL_FIRST_MS", "30".into()),
        ("I2V_MCP_POLL_MAX_MS", "150".into()),
        ("PIAPI_API_KEY", fake.api_key().into()),
        ("I2V_MCP_PIAPI_BASE_URL", fake.base_url().into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Config::resolve(&Overrides::default(), &env).unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One level: `sessions` clients each calling get_task back to back for `run`.
async fn level(
    addr: std::net::SocketAddr,
    http: &reqwest::Client,
    task_id: &str,
    sessions: usize,
    run: Duration,
) -> (usize, f64, Vec<f64>) {
    let mut clients = Vec::new();
    for _ in 0..sessions {
        let cfg = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"))
            .auth_header(TOKEN);
        let transport = StreamableHttpClientTransport::with_client(http.clone(), cfg);
        clients.push(().serve(transport).await.unwrap());
    }
    let args = serde_json::json!({ "task_id": task_id });
    let params =
        CallToolRequestParams::new("get_task").with_arguments(args.as_object().cloned().unwrap());
    // Warm up every session once, then run together until the deadline.
    for c in &clients {
        let r = c.call_tool(params.clone()).await.unwrap();
        assert_ne!(r.is_error, Some(true), "{:?}", r.content);
    }
    let start = Instant::now();
    let deadline = start + run;
    let workers: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let params = params.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let r = c.call_tool(params.clone()).await.unwrap();
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    assert_ne!(r.is_error, Some(true));
                }
                let _ = c.cancel().await;
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    (all.len(), elapsed, all)
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeProvider::start(Kind::Piapi).await;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("in.png");
    image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8, y as u8, 0]))
        .save_with_format(&img, image::ImageFormat::Png)
        .unwrap();
    let core: Arc<Core> = Core::start(config(dir.path(), &fake)).unwrap();
    let task = core
        .create(
            CreateRequest {
                image: Some(img.display().to_string()),
                prompt: "bench".into(),
                provider: Some(ProviderId::Piapi),
                wait_seconds: Some(30),
                ..CreateRequest::default()
            },
            CallCtx::default(),
        )
        .await
        .unwrap();
    assert_eq!(task.status, Status::Succeeded, "{task:?}");
    let upstream_before = fake.requests().len();

    let mut opts = HttpOptions::from_config(&core.cfg, "127.0.0.1:0");
    opts.auth_token = Some(TOKEN.to_string().into());
    let (addr, handle) = i2v_mcp::http::bind(core.clone(), opts).await.unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap();

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "bench_http: get_task on a finished task over streamable HTTP (stateful sessions, bearer token), loopback, in-process server and clients; {cores} cores ({} {}), {secs} s per level",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    println!(
        "{:>8} {:>10} {:>10} {:>9} {:>9} {:>9}",
        "sessions", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms"
    );
    for n in [1usize, 16, 64] {
        let (count, elapsed, lat) =
            level(addr, &http, &task.task_id, n, Duration::from_secs(secs)).await;
        println!(
            "{:>8} {:>10} {:>10.0} {:>9.2} {:>9.2} {:>9.2}",
            n,
            count,
            count as f64 / elapsed,
            percentile(&lat, 0.50),
            percentile(&lat, 0.95),
            percentile(&lat, 0.99)
        );
    }
    println!(
        "upstream requests during the run: {} (answered from the journal)",
        fake.requests().len() - upstream_before
    );
    handle.shutdown().await;
}
