//! In-process figures for the server's own hot paths, each beside a baseline that does the
//! irreducible part of the same work:
//! - preparing a ~10 MB local image for a provider (confinement, sniffing, a full decode check, sha256,
//!   base64) vs. just reading the file and base64-encoding it;
//! - `estimate_cost` vs. parsing its JSON arguments;
//! - a `get_task` answered from the journal vs. a bare SQLite primary-key SELECT.
//!
//! Run: `cargo run --release --example bench_hotpaths`
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: failing loudly is right

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
use i2v_mcp::catalog;
use i2v_mcp::config::{Config, Overrides};
use i2v_mcp::core::{CallCtx, Core, EstimateRequest};
use i2v_mcp::media;
use i2v_mcp::model::{CreateRequest, ProviderId};

/// Median time per call of `f` over `n` calls after a warm-up.
fn time<T>(n: usize, mut f: impl FnMut() -> T) -> Duration {
    for _ in 0..n.min(3) {
        black_box(f());
    }
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn show(what: &str, ours: Duration, base_name: &str, base: Duration) {
    println!(
        "{what:<44} {:>10.1} µs   baseline ({base_name}) {:>9.1} µs   ratio {:.2}x",
        ours.as_secs_f64() * 1e6,
        base.as_secs_f64() * 1e6,
        ours.as_secs_f64() / base.as_secs_f64().max(1e-12)
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    // ~9.4 MB of PNG: noise does not compress.
    let mut seed: u32 = 0x9e37_79b9;
    let img = image::RgbImage::from_fn(1800, 1740, |_, _| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        image::Rgb([seed as u8, (seed >> 8) as u8, (seed >> 16) as u8])
    });
    let path = images.join("big.png");
    img.save(&path).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert(
        "I2V_MCP_DATA_DIR".into(),
        dir.path().join("data").display().to_string(),
    );
    env.insert(
        "I2V_MCP_OUTPUT_DIR".into(),
        dir.path().join("out").display().to_string(),
    );
    env.insert("I2V_MCP_ALLOWED_DIRS".into(), images.display().to_string());
    env.insert(
        "I2V_MCP_CONFIG".into(),
        dir.path().join("none.toml").display().to_string(),
    );
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let cfg = Config::resolve(&Overrides::default(), &env).unwrap();
    let allowed = cfg.allowed_dirs.clone();
    println!(
        "machine: {} cores; image {:.1} MB PNG",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        size as f64 / 1e6
    );

    // 1. A 10 MB local image, prepared for PiAPI (inline base64) and Novita 2.6 (data URI).
    let p = path.display().to_string();
    let piapi = catalog::find_key("piapi/wan2.1-i2v-14b").unwrap();
    let ours = time(15, || {
        let i = media::resolve(&p, "image", piapi, &allowed, catalog::models()).unwrap();
        i.as_local().unwrap().base64().len()
    });
    let base = time(15, || {
        let b = std::fs::read(&path).unwrap();
        base64::engine::general_purpose::STANDARD.encode(&b).len()
    });
    show(
        "prepare 10 MB image for piapi (base64)",
        ours,
        "read + base64",
        base,
    );
    let wan26 = catalog::find_key("novita/wan2.6-i2v").unwrap();
    let ours = time(15, || {
        let i = media::resolve(&p, "image", wan26, &allowed, catalog::models()).unwrap();
        i.as_local().unwrap().data_uri().len()
    });
    show(
        "prepare 10 MB image for novita 2.6 (data URI)",
        ours,
        "read + base64",
        base,
    );
    let small = images.join("small.png");
    image::RgbImage::from_pixel(1280, 720, image::Rgb([10, 20, 30]))
        .save(&small)
        .unwrap();

    // 2. estimate_cost.
    let core = Core::start(cfg).unwrap();
    let args =
        r#"{"provider":"novita","model":"wan2.6-i2v","resolution":"1080p","duration_seconds":10}"#;
    let req: EstimateRequest = serde_json::from_str(args).unwrap();
    // Without an image, estimate never waits on anything: poll it to completion in place.
    let ctx = CallCtx::default();
    let estimate = |r: &EstimateRequest| futures::executor::block_on(core.estimate(r, &ctx));
    let ours = time(20_000, || estimate(&req).unwrap().quotes.len());
    let base = time(20_000, || {
        serde_json::from_str::<EstimateRequest>(args)
            .unwrap()
            .compare
    });
    show(
        "estimate_cost (one model)",
        ours,
        "parse its arguments",
        base,
    );
    let cmp = EstimateRequest {
        compare: true,
        ..EstimateRequest::default()
    };
    let ours = time(5_000, || estimate(&cmp).unwrap().quotes.len());
    show(
        "estimate_cost (compare all models)",
        ours,
        "parse its arguments",
        base,
    );

    // 3. get_task from the journal (a finished local task: no provider call).
    let small_s = small.display().to_string();
    let t = core
        .create(
            CreateRequest {
                image: Some(small_s),
                prompt: "zoom in".into(),
                provider: Some(ProviderId::Local),
                wait_seconds: Some(60),
                ..CreateRequest::default()
            },
            CallCtx::default(),
        )
        .await
        .unwrap();
    assert!(t.is_settled(), "{}", t.summary());
    let id = t.task_id.clone();
    let mut total = Duration::ZERO;
    let n = 20_000;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        black_box(core.get(&id, None, CallCtx::default()).await.unwrap());
        let e = s.elapsed();
        total += e;
        samples.push(e);
    }
    samples.sort();
    let ours = samples[n / 2];
    let conn = rusqlite::Connection::open(dir.path().join("data/journal.sqlite")).unwrap();
    let base = time(n, || {
        conn.query_row(
            "SELECT status, sha256 FROM tasks WHERE id = ?1",
            [&id],
            |r| r.get::<_, String>(0),
        )
        .unwrap()
    });
    show(
        "get_task answered from the journal",
        ours,
        "bare SQLite SELECT",
        base,
    );
    println!(
        "get_task from the journal: {:.0} calls/s on one task (p99 {:.1} µs)",
        n as f64 / total.as_secs_f64(),
        samples[n * 99 / 100].as_secs_f64() * 1e6
    );
}
