//! Lifecycle benchmark against a fake PiAPI whose tasks take a known time.
//!
//! Prints: upstream requests per completed task, the lag between the provider finishing and the
//! waiting caller hearing of it (median, p95), and resident memory with 1,000 tasks in flight.
//! Uses the production polling schedule unless I2V_MCP_POLL_FIRST_MS / _MAX_MS are set.
//!
//! Run: `cargo run --release --example bench_lifecycle [-- TASKS SECONDS]` (default 50 tasks of 20 s).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: failing loudly is right

// The contract-following fake providers of the integration tests.
#[path = "../tests/support"]
mod support {
    pub mod fakes;
}

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use i2v_mcp::config::{Config, Overrides};
use i2v_mcp::core::{CallCtx, Core};
use i2v_mcp::model::{CreateRequest, ProviderId, Status};
use support::fakes::{FakeProvider, Kind, Outcome, TaskPlan};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn config(dir: &std::path::Path, fake: &FakeProvider) -> Config {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert(
        "I2V_MCP_DATA_DIR".into(),
        dir.join("data").display().to_string(),
    );
    env.insert(
        "I2V_MCP_OUTPUT_DIR".into(),
        dir.join("out").display().to_string(),
    );
    env.insert("I2V_MCP_ALLOWED_DIRS".into(), dir.display().to_string());
    env.insert(
        "I2V_MCP_CONFIG".into(),
        dir.join("none.toml").display().to_string(),
    );
    env.insert("PIAPI_API_KEY".into(), fake.api_key().into());
    env.insert("I2V_MCP_PIAPI_BASE_URL".into(), fake.base_url().into());
    for k in ["I2V_MCP_POLL_FIRST_MS", "I2V_MCP_POLL_MAX_MS"] {
        if let Ok(v) = std::env::var(k) {
            env.insert(k.into(), v);
        }
    }
    std::fs::write(dir.join("none.toml"), "").unwrap();
    Config::resolve(&Overrides::default(), &env).unwrap()
}

fn request(dir: &std::path::Path, i: usize) -> CreateRequest {
    CreateRequest {
        image: Some(dir.join("in.png").display().to_string()),
        prompt: format!("task {i}"),
        provider: Some(ProviderId::Piapi),
        ..CreateRequest::default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tasks: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(50);
    let secs: u64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    image::RgbImage::from_pixel(64, 64, image::Rgb([90, 120, 200]))
        .save(dir.path().join("in.png"))
        .unwrap();

    // 1. Lag and requests per task.
    let fake = FakeProvider::start(Kind::Piapi).await;
    let took = Duration::from_secs(secs);
    fake.set_plan(TaskPlan::Duration {
        total: took,
        outcome: Outcome::Succeed,
    });
    let cfg = config(dir.path(), &fake);
    let poll = cfg.poll;
    let core = Core::start(cfg).unwrap();
    let mut handles = Vec::new();
    for i in 0..tasks {
        let core = core.clone();
        let req = request(dir.path(), i);
        handles.push(tokio::spawn(async move {
            let t = core.create(req, CallCtx::default()).await.unwrap();
            // The fake starts its clock when it accepts the create.
            let provider_done = Instant::now() + took;
            let mut task = t;
            while !task.is_settled() {
                task = core
                    .get(&task.task_id, Some(600), CallCtx::default())
                    .await
                    .unwrap();
            }
            assert_eq!(task.status, Status::Succeeded);
            Instant::now()
                .saturating_duration_since(provider_done)
                .as_secs_f64()
        }));
    }
    let mut lags = Vec::new();
    for h in handles {
        lags.push(h.await.unwrap());
    }
    lags.sort_by(|a, b| a.total_cmp(b));
    let requests = fake.requests().len();
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "schedule: first {:?}, x{} up to {:?}; {tasks} tasks that take {secs} s at the provider",
        poll.first, poll.factor, poll.max
    );
    println!(
        "upstream requests per completed task: {:.2} (create + polls + download; {requests} in all)",
        requests as f64 / tasks as f64
    );
    println!(
        "lag provider done -> caller told: median {:.2} s, p95 {:.2} s, max {:.2} s",
        percentile(&lags, 0.5),
        percentile(&lags, 0.95),
        lags.last().copied().unwrap_or(f64::NAN)
    );

    // 2. Memory with 1,000 tasks in flight (tasks that take 10 minutes, so none finishes).
    let dir2 = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("in.png"), dir2.path().join("in.png")).unwrap();
    let fake2 = FakeProvider::start(Kind::Piapi).await;
    fake2.set_plan(TaskPlan::Duration {
        total: Duration::from_secs(600),
        outcome: Outcome::Succeed,
    });
    let core2 = Core::start(config(dir2.path(), &fake2)).unwrap();
    let before = rss_kib();
    let start = Instant::now();
    for i in 0..1000 {
        core2
            .create(request(dir2.path(), i), CallCtx::default())
            .await
            .unwrap();
    }
    let created = start.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await; // let every watcher poll at least once
    let after = rss_kib();
    println!(
        "1,000 tasks in flight: RSS {:.1} MiB (process incl. fake providers; +{:.1} MiB over the idle core), created in {:.2} s",
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0,
        created.as_secs_f64()
    );
}
