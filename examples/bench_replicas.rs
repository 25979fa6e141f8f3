//! Replicas on one PostgreSQL journal (issue 16), in process: creates/s and get_task/s with 1 and 3
//! replicas, and how long the others take to poll again the tasks of a replica that dies (its
//! runtime dropped, as a SIGKILL would: no lease released). A fake PiAPI answers.
//!
//! Run: `cargo run --release --example bench_replicas [-- CREATES GETS]` (default 300 and 3000).
//! It starts a PostgreSQL of its own like the tests (Debian's `postgresql` package), one fresh
//! database per run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: failing loudly is right

// The contract-following fake providers and the throwaway PostgreSQL of the integration tests.
#[path = "../tests/support"]
mod support {
    pub mod fakes;
    // The tests' helpers this benchmark does not call (psql, database by test name).
    #[allow(dead_code)]
    pub mod postgres;
}

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use i2v_mcp::config::{Config, Overrides};
use i2v_mcp::core::{CallCtx, Core};
use i2v_mcp::model::{CreateRequest, ProviderId};
use support::fakes::{FakeProvider, Kind, Outcome, TaskPlan};

/// Concurrent callers, spread over the replicas.
const CALLERS: usize = 16;
/// The lease of the takeover run (the sweep runs every fifth of it).
const LEASE_MS: u64 = 2_000;

fn config(dir: &std::path::Path, fake: &FakeProvider, url: &str) -> Config {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let path = |p: &str| dir.join(p).display().to_string();
    env.insert("I2V_MCP_DATA_DIR".into(), path("data"));
    env.insert("I2V_MCP_OUTPUT_DIR".into(), path("out"));
    env.insert("I2V_MCP_CONFIG".into(), path("none.toml"));
    env.insert("I2V_MCP_DATABASE_URL".into(), url.into());
    env.insert("I2V_MCP_LEASE_MS".into(), LEASE_MS.to_string());
    env.insert("PIAPI_API_KEY".into(), fake.api_key().into());
    env.insert("I2V_MCP_PIAPI_BASE_URL".into(), fake.base_url().into());
    std::fs::write(dir.join("none.toml"), "").unwrap();
    Config::resolve(&Overrides::default(), &env).unwrap()
}

/// One replica: a core on a runtime of its own, so dropping it is a crash.
struct Replica {
    rt: tokio::runtime::Runtime,
    core: Arc<Core>,
}

impl Replica {
    fn start(cfg: Config) -> Replica {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let core = {
            let _in = rt.enter();
            Core::start(cfg).unwrap()
        };
        Replica { rt, core }
    }

    async fn create(&self, n: usize) -> (String, String) {
        let core = self.core.clone();
        let req = CreateRequest {
            image: Some("https://example.com/cat.png".into()),
            prompt: format!("bench {n}"),
            provider: Some(ProviderId::Piapi),
            ..CreateRequest::default()
        };
        let t = self
            .rt
            .spawn(async move { core.create(req, CallCtx::default()).await })
            .await
            .unwrap()
            .unwrap();
        (t.task_id, t.provider_task_id.unwrap_or_default())
    }

    async fn get(&self, id: String) {
        let core = self.core.clone();
        self.rt
            .spawn(async move { core.task(&id).await })
            .await
            .unwrap()
            .unwrap();
    }
}

/// `total` calls of `f` by CALLERS concurrent callers, caller c on replica c % n; calls per second.
async fn rate<F, Fut>(total: usize, f: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|c| {
            let f = f.clone();
            tokio::spawn(async move {
                for i in (c..total).step_by(CALLERS) {
                    f(i).await;
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn run(n: usize, creates: usize, gets: usize, url: &str, fake: &FakeProvider) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let replicas: Arc<Vec<Replica>> = Arc::new(
        (0..n)
            .map(|_| Replica::start(config(dir.path(), fake, url)))
            .collect(),
    );
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (r, ids2) = (replicas.clone(), ids.clone());
    let create_rate = rate(creates, move |i| {
        let (r, ids) = (r.clone(), ids2.clone());
        async move {
            let (id, _) = r[i % r.len()].create(i).await;
            ids.lock().unwrap().push(id);
        }
    })
    .await;
    let ids: Arc<Vec<String>> = Arc::new(ids.lock().unwrap().clone());
    let (r, ids2) = (replicas.clone(), ids.clone());
    let get_rate = rate(gets, move |i| {
        let (r, ids) = (r.clone(), ids2.clone());
        async move { r[i % r.len()].get(ids[i % ids.len()].clone()).await }
    })
    .await;
    let takeover = if n > 1 {
        takeover(Arc::try_unwrap(replicas).ok().unwrap(), fake).await
    } else {
        for r in Arc::try_unwrap(replicas).ok().unwrap() {
            r.rt.shutdown_background();
        }
        "-".into()
    };
    vec![
        n.to_string(),
        format!("{create_rate:.0}"),
        format!("{get_rate:.0}"),
        takeover,
    ]
}

/// Replica 0 creates 20 tasks, then dies; how long until the others have polled every one again.
async fn takeover(mut replicas: Vec<Replica>, fake: &FakeProvider) -> String {
    let dead = replicas.remove(0);
    let mut ptids = Vec::new();
    for i in 0..20 {
        ptids.push(dead.create(1_000_000 + i).await.1);
    }
    let before: Vec<usize> = ptids.iter().map(|p| fake.polls(p)).collect();
    let killed = Instant::now();
    dead.rt.shutdown_background();
    loop {
        let polled = ptids.iter().zip(&before).all(|(p, b)| fake.polls(p) > *b);
        if polled {
            break;
        }
        if killed.elapsed() > Duration::from_secs(60) {
            return "over 60 s".into();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = killed.elapsed();
    for r in replicas {
        r.rt.shutdown_background();
    }
    format!(
        "{:.2} s (lease {:.0} s)",
        took.as_secs_f64(),
        LEASE_MS as f64 / 1000.0
    )
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().unwrap());
    let creates = args.next().unwrap_or(300);
    let gets = args.next().unwrap_or(3000);
    let fake = FakeProvider::start(Kind::Piapi).await;
    // Tasks that outlast the run: polls go on, nothing is downloaded.
    fake.set_plan(TaskPlan::Duration {
        total: Duration::from_secs(3600),
        outcome: Outcome::Succeed,
    });
    let server = support::postgres::server("bench_replicas").expect("PostgreSQL is installed");
    let mut rows = Vec::new();
    for n in [1, 3] {
        rows.push(run(n, creates, gets, &server.database(), &fake).await);
    }
    println!(
        "{creates} creates and {gets} get_task by {CALLERS} callers spread over the replicas, fake PiAPI, one PostgreSQL"
    );
    println!(
        "| replicas | creates/s | get_task/s | takeover (all 20 tasks of a killed replica polled again) |"
    );
    println!("|---|---|---|---|");
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
}
