//! Many servers on one journal: replicas on PostgreSQL (issue 16) and servers on one SQLite data
//! dir (issue 26). The journal's guarantees on both backends, PostgreSQL's migrations,
//! and a whole server on PostgreSQL through a fake provider (create, poll, download, restart).

use i2v_mcp::error::{Category, Error};
use i2v_mcp::journal::{Inserted, Journal, NewTask, State, Update};
use i2v_mcp::model::{ProviderId, Status};
use serde_json::json;

use crate::mcp_flow::{assert_downloaded, core_for, env_for};
use crate::mcp_stdio::Proc;
use crate::support::fakes::{FakeProvider, Kind, Outcome, TaskPlan};
use crate::support::postgres;
use crate::support::{Workspace, call, connect, ok, within};

/// The journal a test runs on: servers on one SQLite data dir, or replicas on one database.
#[derive(Clone, Copy)]
enum Db {
    Sqlite,
    Postgres(&'static postgres::PgServer),
}

impl Db {
    /// A workspace on this journal (a fresh database each time).
    fn workspace(self) -> Workspace {
        match self {
            Db::Sqlite => Workspace::new(),
            Db::Postgres(server) => Workspace::new().with_database(Some(server.database())),
        }
    }
}

fn new_task(id: &str, key: Option<&str>) -> NewTask {
    NewTask {
        id: id.into(),
        provider: ProviderId::Piapi,
        model: "wan2.1-i2v-14b".into(),
        request: "{}".into(),
        fingerprint: "fp".into(),
        idempotency_key: key.map(String::from),
        estimated_cost: Some(0.28),
        webhook_secret: None,
        created_at: 1_000,
        daily_budget: None,
        owner: String::new(),
        owner_budget: None,
    }
}

/// Two handles on one journal (as two processes would have), on SQLite and on PostgreSQL.
fn journals(ws: &Workspace, test: &str) -> Vec<(Journal, Journal)> {
    let path = ws.data().join("journal.sqlite");
    let mut all = vec![(Journal::open(&path).unwrap(), Journal::open(&path).unwrap())];
    if let Some(url) = postgres::database(test) {
        all.push((
            Journal::open_postgres(&url).unwrap(),
            Journal::open_postgres(&url).unwrap(),
        ));
    }
    all
}

#[tokio::test]
async fn the_journal_guards_hold_on_both_backends() {
    let ws = Workspace::new();
    for (j, other) in journals(&ws, "the_journal_guards_hold_on_both_backends") {
        lifecycle_and_guards(&j).await;
        refused_keys_are_taken_over_once(&j, &other).await;
        late_success_after_timeout_is_kept(&j).await;
    }
}

/// The daily budget is checked again inside the insert's transaction: eight creates at once over
/// two handles (two processes, or two replicas) with room for three: three are journaled.
#[tokio::test]
async fn the_daily_budget_holds_for_concurrent_inserts_on_both_backends() {
    let ws = Workspace::new();
    for (j, other) in journals(&ws, "the_daily_budget_holds_for_concurrent_inserts") {
        let inserts = (0..8).map(|i| {
            let j = if i % 2 == 0 { j.clone() } else { other.clone() };
            let mut t = new_task(&format!("budget-{i}"), None);
            t.daily_budget = Some(i2v_mcp::journal::DailyBudget {
                since_ms: 0,
                limit_usd: 1.0,
            });
            async move { j.insert(t).await }
        });
        let results = futures::future::join_all(inserts).await;
        let journaled = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(journaled, 3, "$0.28 each within $1.00");
        for e in results.into_iter().filter_map(|r| r.err()) {
            assert_eq!(e.category, Category::Budget, "{e:?}");
            assert!(e.message.contains("daily_usd"), "{}", e.message);
        }
    }
}

async fn lifecycle_and_guards(j: &Journal) {
    assert!(matches!(
        j.insert(new_task("t1", Some("k"))).await.unwrap(),
        Inserted::New
    ));
    match j.insert(new_task("t2", Some("k"))).await.unwrap() {
        Inserted::Existing(row) => assert_eq!(row.id, "t1"),
        Inserted::New => panic!("same key inserted twice"),
    }
    let row = j.get("t1").await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.request.as_deref()),
        (State::Submitting, Some("{}"))
    );
    assert!(j.mark_submitted("t1", "up-1", 2_000).await.unwrap());
    assert!(!j.mark_submitted("t1", "up-2", 2_000).await.unwrap());
    let found = j
        .find_by_provider_id(&[ProviderId::Piapi], "up-1")
        .await
        .unwrap();
    assert_eq!(found.unwrap().id, "t1");
    let run = Update {
        status: Some(Status::Running),
        progress: Some(40),
        ..Update::default()
    };
    assert!(j.apply("t1", &run, 3_000).await.unwrap());
    assert!(!j.apply("t1", &run, 3_100).await.unwrap(), "no change");
    let done = Update {
        status: Some(Status::Succeeded),
        video_url: Some("http://x/v.mp4".into()),
        ..Update::default()
    };
    assert!(j.apply("t1", &done, 4_000).await.unwrap());
    let t = j.get("t1").await.unwrap().unwrap().to_task();
    assert!(t.download_pending && !t.is_settled());
    assert_eq!(j.unfinished().await.unwrap().len(), 1);
    assert!(!j.cancel("t1", "x", 5_000).await.unwrap());
    assert!(!j.apply("t1", &run, 5_000).await.unwrap());
    j.set_downloaded("t1", "/v.mp4", 10, "abc", Some("n"), 6_000)
        .await
        .unwrap();
    let t = j.get("t1").await.unwrap().unwrap().to_task();
    assert!(t.is_settled());
    assert_eq!(t.video.unwrap().bytes, Some(10));
    assert_eq!(j.unfinished().await.unwrap().len(), 0);
    assert!((j.spent_since(0).await.unwrap() - 0.28).abs() < 1e-9);
    let listed = j
        .list(&i2v_mcp::journal::ListFilter {
            status: Some(Status::Succeeded),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.rows.len(), 1);
    j.upload_put(ProviderId::Piapi, "sha", "http://u", 9_000)
        .await
        .unwrap();
    j.upload_put(ProviderId::Piapi, "sha", "http://u2", 9_000)
        .await
        .unwrap();
    let url = j.upload_get(ProviderId::Piapi, "sha", 8_000).await.unwrap();
    assert_eq!(url.as_deref(), Some("http://u2"));
    assert_eq!(
        j.upload_get(ProviderId::Piapi, "sha", 9_500).await.unwrap(),
        None
    );
}

async fn refused_keys_are_taken_over_once(j: &Journal, other: &Journal) {
    j.insert(new_task("r0", Some("rk"))).await.unwrap();
    let refused = Error::new(Category::ProviderUnavailable, "cannot connect");
    assert!(j.fail("r0", &refused, 1_500).await.unwrap());
    // Two "processes" retry the key at once, a few times: exactly one new task.
    let mut news = 0;
    for round in 0..3 {
        let (a, b) = tokio::join!(
            j.insert(new_task(&format!("r{round}a"), Some("rk"))),
            other.insert(new_task(&format!("r{round}b"), Some("rk")))
        );
        news += [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|i| matches!(i, Inserted::New))
            .count();
    }
    assert_eq!(news, 1);
    let holder = j.find_by_key("rk").await.unwrap().unwrap();
    let old = j.get("r0").await.unwrap().unwrap();
    assert_eq!(old.idempotency_key, None);
    assert!(old.note.unwrap().contains(&holder.id));
    // An unknown outcome keeps its key; a late provider id resolves it.
    j.insert(new_task("u0", Some("u"))).await.unwrap();
    j.fail("u0", &Error::new(Category::SubmitUnknown, "?"), 2_000)
        .await
        .unwrap();
    assert!(matches!(
        other.insert(new_task("u1", Some("u"))).await.unwrap(),
        Inserted::Existing(_)
    ));
    assert!(j.mark_submitted("u0", "up-u", 2_500).await.unwrap());
    let u0 = j.get("u0").await.unwrap().unwrap();
    assert_eq!((u0.status, u0.error), (State::Queued, None));
}

async fn late_success_after_timeout_is_kept(j: &Journal) {
    j.insert(new_task("l1", None)).await.unwrap();
    j.mark_submitted("l1", "up-l", 1).await.unwrap();
    j.fail("l1", &Error::new(Category::Timeout, "gave up"), 2)
        .await
        .unwrap();
    let done = Update {
        status: Some(Status::Succeeded),
        video_url: Some("http://x".into()),
        ..Update::default()
    };
    assert!(j.apply("l1", &done, 3).await.unwrap());
    let t = j.get("l1").await.unwrap().unwrap().to_task();
    assert_eq!((t.status, t.error.is_none()), (Status::Succeeded, true));
}

#[tokio::test]
async fn a_postgres_journal_migrates_once_and_a_newer_one_is_refused_untouched() {
    let test = "a_postgres_journal_migrates_once";
    let Some(server) = postgres::server(test) else {
        return;
    };
    let url = server.database();
    // Replicas starting at once: one migrates, the others find it done.
    let opens: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Journal::open_postgres(&url).map(|_| ()))
        })
        .collect();
    for o in opens {
        o.join().unwrap().unwrap();
    }
    let newest = i2v_mcp::journal::POSTGRES_MIGRATIONS.len();
    let version = server.psql(&url, "SELECT version FROM schema_version");
    assert_eq!(version, newest.to_string());
    server.psql(&url, "UPDATE schema_version SET version = version + 1");
    let e = match Journal::open_postgres(&url) {
        Ok(_) => panic!("a journal from a newer version was opened"),
        Err(e) => e,
    };
    assert!(e.message.contains("newer"), "{e:?}");
    let version = server.psql(&url, "SELECT version FROM schema_version");
    assert_eq!(version, (newest + 1).to_string());
    // A URL that is not PostgreSQL's is refused when the config is read.
    let ws = Workspace::new();
    let env = ws.env(&[("I2V_MCP_DATABASE_URL", "mysql://x")]);
    let bad = i2v_mcp::config::Config::resolve(&Default::default(), &env).unwrap_err();
    assert!(bad.message.contains("postgres://"), "{bad:?}");
}

#[tokio::test]
async fn a_server_on_postgres_creates_polls_downloads_and_resumes_after_sigkill() {
    let test = "a_server_on_postgres_creates_polls_downloads";
    let Some(url) = postgres::database(test) else {
        return;
    };
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new().with_database(Some(url.clone()));
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let args = json!({"image": img, "prompt": "p", "provider": "piapi", "wait_seconds": 60});
    let first = ok(&call(&s, "create_i2v_task", args).await);
    assert_downloaded(&first);
    s.cancel().await.unwrap();
    assert!(
        !ws.data().join("journal.sqlite").exists(),
        "SQLite was used"
    );
    // The binary on the same database, killed while its task is open, then started again.
    fake.set_plan(TaskPlan::Polls {
        pending: 15,
        processing: 3,
        outcome: Outcome::Succeed,
    });
    let mut env = ws.env(&[
        ("I2V_MCP_POLL_FIRST_MS", "30"),
        ("I2V_MCP_POLL_MAX_MS", "100"),
    ]);
    env.extend(env_for(&fake, "piapi"));
    let mut p = Proc::spawn(&env);
    p.init("2025-06-18").await;
    let t = p
        .call(1, "create_i2v_task", json!({"image": img, "prompt": "q"}))
        .await;
    let id = t["structuredContent"]["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{t}"))
        .to_string();
    p.kill().await;
    let mut p = Proc::spawn(&env);
    p.init("2025-06-18").await;
    let done = p
        .call(2, "get_task", json!({"task_id": id, "wait_seconds": 60}))
        .await;
    assert_downloaded(&done["structuredContent"]);
    p.close().await;
    assert_eq!(
        fake.accepted_creates(),
        2,
        "no create repeated after the kill"
    );
    assert_eq!(fake.downloads(), 2);
    // The CLI reads the same journal with --database.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_i2v-mcp"))
        .args(["--json", "--database", &url, "tasks"])
        .env_clear()
        .envs(
            ws.env(&[])
                .into_iter()
                .filter(|(k, _)| k != "I2V_MCP_DATABASE_URL"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&id) && stdout.contains(first["task_id"].as_str().unwrap()),
        "{stdout}"
    );
}

/// Environment for replicas on database `url` and `fake`: fast polls, 2 s leases.
fn replica_env(ws: &Workspace, fake: &FakeProvider) -> std::collections::BTreeMap<String, String> {
    let mut env = ws.env(&[
        ("I2V_MCP_POLL_FIRST_MS", "30"),
        ("I2V_MCP_POLL_MAX_MS", "150"),
        ("I2V_MCP_LEASE_MS", "2000"),
    ]);
    env.extend(env_for(fake, "piapi"));
    env
}

/// Three `serve` processes on one SQLite data dir (issue 26): 30 tasks, one process killed
/// mid-way: every task succeeds with one upstream create and one download.
#[tokio::test]
async fn three_servers_on_one_data_dir_finish_thirty_tasks_when_one_is_killed_mid_way() {
    three_servers_one_killed(Db::Sqlite, 30).await;
}

#[tokio::test]
async fn three_replicas_finish_sixty_tasks_when_one_is_killed_mid_way() {
    let Some(server) = postgres::server("three_replicas_finish_sixty_tasks") else {
        return;
    };
    three_servers_one_killed(Db::Postgres(server), 60).await;
}

async fn three_servers_one_killed(db: Db, tasks: usize) {
    let fake = FakeProvider::start(Kind::Piapi).await;
    // Long enough that nothing is downloading when the replica dies.
    fake.set_plan(TaskPlan::Duration {
        total: std::time::Duration::from_secs(8),
        outcome: Outcome::Succeed,
    });
    let ws = db.workspace();
    let img = ws.png("a.png", 64, 64);
    let env = replica_env(&ws, &fake);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let mut p = Proc::spawn(&env);
        p.init("2025-06-18").await;
        replicas.push(Some(p));
    }
    let (mut ids, mut orphans) = (Vec::new(), Vec::<String>::new());
    let (mut killed_at, mut before) = (None, Vec::<usize>::new());
    for i in 0..tasks {
        if i == tasks / 2 {
            // Mid-way: replica 0 dies with its tasks open.
            replicas[0].take().unwrap().kill().await;
            killed_at = Some(std::time::Instant::now());
            before = orphans.iter().map(|p| fake.polls(p)).collect();
        }
        // A "random" live replica: a fixed scatter, so a failure replays.
        let r = if killed_at.is_some() {
            1 + (i * 7) % 2
        } else {
            (i * 7) % 3
        };
        let p = replicas[r].as_mut().unwrap();
        let t = p
            .call(
                i as i64 + 1,
                "create_i2v_task",
                json!({"image": img, "prompt": format!("t{i}")}),
            )
            .await;
        let id = t["structuredContent"]["task_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{t}"))
            .to_string();
        if r == 0 {
            let ptid = t["structuredContent"]["provider_task_id"].as_str().unwrap();
            orphans.push(ptid.to_string());
        }
        ids.push(id);
    }
    // Takeover: every task of the dead replica is polled again by a live one.
    let killed_at = killed_at.unwrap();
    let took = within(60, "the takeover", async {
        loop {
            let now: Vec<usize> = orphans.iter().map(|p| fake.polls(p)).collect();
            if now.iter().zip(&before).all(|(n, b)| n > b) {
                return killed_at.elapsed();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    eprintln!(
        "takeover: all {} tasks of the killed replica polled by another {took:?} after the kill (lease 2 s)",
        orphans.len()
    );
    for (n, id) in ids.iter().enumerate() {
        let p = replicas[1 + n % 2].as_mut().unwrap();
        let done = p
            .call(
                100 + n as i64,
                "get_task",
                json!({"task_id": id, "wait_seconds": 50}),
            )
            .await;
        assert_downloaded(&done["structuredContent"]);
    }
    assert!(orphans.len() >= 5, "the killed replica held too few tasks");
    assert_eq!(
        fake.accepted_creates(),
        tasks,
        "one upstream create per task"
    );
    assert_eq!(fake.downloads(), tasks, "no download twice");
    for p in replicas.into_iter().flatten() {
        p.close().await;
    }
}

#[tokio::test]
async fn two_servers_on_one_data_dir_racing_one_idempotency_key_create_once_and_hear_each_other() {
    racing_one_key(Db::Sqlite).await;
}

#[tokio::test]
async fn two_replicas_racing_one_idempotency_key_create_once_and_hear_each_other() {
    let Some(server) =
        postgres::server("two_replicas_racing_one_idempotency_key_create_once_and_hear_each_other")
    else {
        return;
    };
    racing_one_key(Db::Postgres(server)).await;
}

async fn racing_one_key(db: Db) {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_plan(TaskPlan::Duration {
        total: std::time::Duration::from_secs(60),
        outcome: Outcome::Succeed,
    });
    let ws = db.workspace();
    let img = ws.png("a.png", 64, 64);
    let (a, b) = (core_for(&ws, &fake, "piapi"), core_for(&ws, &fake, "piapi"));
    let ((sa, _), (sb, _)) = (connect(a.clone()).await, connect(b.clone()).await);
    for round in 0..5 {
        let args = json!({"image": img, "prompt": "p", "provider": "piapi", "idempotency_key": format!("k{round}")});
        let (ra, rb) = tokio::join!(
            call(&sa, "create_i2v_task", args.clone()),
            call(&sb, "create_i2v_task", args)
        );
        assert_eq!(ok(&ra)["task_id"], ok(&rb)["task_id"]);
        assert_eq!(
            fake.accepted_creates(),
            round + 1,
            "one upstream create per key"
        );
    }
    // A caller waiting on B hears at once of a change A makes (LISTEN/NOTIFY), not at its deadline.
    let t = ok(&call(
        &sa,
        "create_i2v_task",
        json!({"image": img, "prompt": "w", "provider": "piapi"}),
    )
    .await);
    let id = t["task_id"].as_str().unwrap().to_string();
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = call(&sb, "get_task", json!({"task_id": id, "wait_seconds": 30})).await;
        (ok(&r), started.elapsed(), sb)
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let cancelled = ok(&call(&sa, "cancel_task", json!({"task_id": t["task_id"]})).await);
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let (seen, took, sb) = waiter.await.unwrap();
    assert_eq!(seen["status"], "cancelled", "{seen}");
    eprintln!(
        "a waiter on replica B heard of A's cancel after {took:?} (waiting since 0.5 s before it)"
    );
    assert!(
        took < std::time::Duration::from_secs(10),
        "B heard only at its deadline: {took:?}"
    );
    sa.cancel().await.unwrap();
    sb.cancel().await.unwrap();
}

#[tokio::test]
async fn servers_on_one_data_dir_keep_to_one_rate_limit_and_one_daily_budget() {
    one_rate_limit_and_budget(Db::Sqlite).await;
}

#[tokio::test]
async fn replicas_keep_to_one_rate_limit_and_one_daily_budget_together() {
    let Some(server) =
        postgres::server("replicas_keep_to_one_rate_limit_and_one_daily_budget_together")
    else {
        return;
    };
    one_rate_limit_and_budget(Db::Postgres(server)).await;
}

async fn one_rate_limit_and_budget(db: Db) {
    let fake = FakeProvider::start(Kind::Qubico).await;
    fake.set_plan(TaskPlan::Polls {
        pending: 1,
        processing: 1,
        outcome: Outcome::Succeed,
    });
    let ws = db.workspace();
    // Qubico's 10 per minute, in a 10 s window so the test is quick.
    std::fs::write(
        ws.path("no-config.toml"),
        "[providers.qubico.rate_limit]\nper_10_seconds = 3\nper_minute = 10\n",
    )
    .unwrap();
    let img = ws.png("a.png", 64, 64);
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(connect(core_for(&ws, &fake, "qubico")).await.0);
    }
    // Two creates on each replica at once, none waiting: three slots in all, the others refused
    // before the provider is called (per-process windows would let all six through).
    let creates = sessions
        .iter()
        .flat_map(|s| [s, s])
        .enumerate()
        .map(|(i, s)| {
            call(
                s,
                "create_i2v_task",
                json!({"image": img, "prompt": format!("r{i}"), "provider": "qubico"}),
            )
        });
    let results = futures::future::join_all(creates).await;
    let refused: Vec<_> = results
        .iter()
        .filter(|r| r.is_error == Some(true))
        .collect();
    assert_eq!(refused.len(), 3, "{results:?}");
    for r in refused {
        assert_eq!(crate::support::err(r)["category"], "rate_limited", "{r:?}");
    }
    assert_eq!(fake.creates(), 3, "the provider saw more than the limit");
    // A create allowed to wait gets the first slot that frees, ~10 s later.
    let started = std::time::Instant::now();
    let args = json!({"image": img, "prompt": "later", "provider": "qubico", "wait_seconds": 20});
    let t = ok(&call(&sessions[2], "create_i2v_task", args).await);
    assert_eq!(t["status"], "succeeded", "{t}");
    assert!(
        started.elapsed() > std::time::Duration::from_secs(5),
        "no wait"
    );
    assert_eq!(fake.creates(), 4);
    for s in sessions {
        s.cancel().await.unwrap();
    }

    // The daily budget counts what every replica spent: $0.28 a task, $0.60 a day.
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = db.workspace();
    std::fs::write(ws.path("no-config.toml"), "[budget]\ndaily_usd = 0.6\n").unwrap();
    let img = ws.png("a.png", 64, 64);
    let (a, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let (b, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let args = json!({"image": img, "prompt": "p", "provider": "piapi"});
    ok(&call(&a, "create_i2v_task", args.clone()).await);
    ok(&call(&b, "create_i2v_task", args.clone()).await);
    let e = crate::support::err(&call(&a, "create_i2v_task", args.clone()).await);
    assert_eq!(e["category"], "budget", "{e}");
    assert!(e["message"].as_str().unwrap().contains("0.84"), "{e}");
    assert_eq!(fake.creates(), 2);

    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

/// Six creates at the very same moment over two replicas, with a daily budget that fits three:
/// three are sent and three refused (the budget is checked again inside the insert, under one
/// lock for all replicas).
#[tokio::test]
async fn concurrent_creates_over_servers_on_one_data_dir_keep_to_the_daily_budget() {
    concurrent_budget(Db::Sqlite).await;
}

#[tokio::test]
async fn concurrent_creates_over_replicas_keep_to_the_daily_budget() {
    let Some(server) =
        postgres::server("concurrent_creates_over_replicas_keep_to_the_daily_budget")
    else {
        return;
    };
    concurrent_budget(Db::Postgres(server)).await;
}

async fn concurrent_budget(db: Db) {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = db.workspace();
    std::fs::write(ws.path("no-config.toml"), "[budget]\ndaily_usd = 1.0\n").unwrap();
    let img = ws.png("a.png", 64, 64);
    let (a, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let (b, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let calls = (0..6).map(|i| {
        let s = if i % 2 == 0 { &a } else { &b };
        let args = json!({"image": img, "prompt": format!("race {i}"), "provider": "piapi"});
        async move { call(s, "create_i2v_task", args).await }
    });
    let results = futures::future::join_all(calls).await;
    let refused = results
        .iter()
        .filter(|r| r.is_error == Some(true))
        .inspect(|r| assert_eq!(crate::support::err(r)["category"], "budget"))
        .count();
    assert_eq!(refused, 3, "$0.28 each: three fit in $1.00");
    assert_eq!(fake.creates(), 3);
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

/// Version 4 adds billed seconds: a journal at version 3 with a task in it migrates, its task
/// reads back without them, and a poll that carries them stores them.
#[tokio::test]
async fn a_postgres_journal_at_version_3_gains_billed_seconds() {
    let Some(server) = postgres::server("a_postgres_journal_at_version_3") else {
        return;
    };
    let url = server.database();
    drop(Journal::open_postgres(&url).unwrap());
    // Back to version 3, with a task written at that version.
    server.psql(
        &url,
        "ALTER TABLE tasks DROP COLUMN billed_seconds; UPDATE schema_version SET version = 3;
         INSERT INTO tasks (id, provider, model, provider_task_id, status, request, fingerprint,
            created_at, updated_at) VALUES ('old', 'dashscope', 'wan2.2-i2v-flash', 'up', 'running',
            '{}', 'fp', 1, 1)",
    );
    let j = Journal::open_postgres(&url).unwrap();
    let version = server.psql(&url, "SELECT version FROM schema_version");
    assert_eq!(
        version,
        i2v_mcp::journal::POSTGRES_MIGRATIONS.len().to_string()
    );
    let t = j.get("old").await.unwrap().unwrap().to_task();
    assert_eq!((t.status, t.billed_seconds), (Status::Running, None));
    let done = Update {
        status: Some(Status::Succeeded),
        video_url: Some("http://x/v.mp4".into()),
        billed_seconds: Some(5.13),
        ..Update::default()
    };
    assert!(j.apply("old", &done, 2).await.unwrap());
    let t = j.get("old").await.unwrap().unwrap().to_task();
    assert_eq!(t.billed_seconds, Some(5.13));
}

/// A provider's webhook may reach any replica behind the load balancer: the one that gets it asks
/// the replica watching the task to poll now, and a caller waiting there hears at once (polls are
/// 10 minutes apart here, so only the webhook can explain a prompt answer).
#[tokio::test]
async fn a_webhook_on_another_server_on_one_data_dir_reaches_the_waiter_at_once() {
    webhook_elsewhere(Db::Sqlite).await;
}

#[tokio::test]
async fn a_webhook_on_another_replica_reaches_the_waiter_at_once() {
    let Some(server) = postgres::server("a_webhook_on_another_replica_reaches_the_waiter_at_once")
    else {
        return;
    };
    webhook_elsewhere(Db::Postgres(server)).await;
}

async fn webhook_elsewhere(db: Db) {
    use i2v_mcp::core::{CallCtx, Core};
    use std::time::{Duration, Instant};
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_plan(TaskPlan::Duration {
        total: Duration::from_secs(600),
        outcome: Outcome::Succeed,
    });
    let ws = db.workspace();
    let slow = |ws: &Workspace| {
        crate::http::config(ws, &fake, "piapi")
            .with_fast_polling(Duration::from_secs(600), Duration::from_secs(600))
    };
    let (a, b) = (
        Core::start(slow(&ws)).unwrap(),
        Core::start(slow(&ws)).unwrap(),
    );
    let (b_addr, b_handle) = crate::http::start(b.clone(), |_, _| {}).await;
    // A's webhooks point at B, as a load balancer may route them.
    let (_, a_handle) = crate::http::start(a.clone(), |o, _| {
        o.public_url = Some(format!("http://{b_addr}"));
    })
    .await;
    let req = i2v_mcp::model::CreateRequest {
        image: Some("https://example.com/cat.png".into()),
        prompt: "p".into(),
        provider: Some(ProviderId::Piapi),
        ..Default::default()
    };
    let task = a.create(req, CallCtx::default()).await.unwrap();
    let (id, ptid) = (task.task_id.clone(), task.provider_task_id.clone().unwrap());
    assert!(a.watcher().is_watching(&id) && !b.watcher().is_watching(&id));
    let waiter = {
        let (a, id) = (a.clone(), id.clone());
        tokio::spawn(async move { a.get(&id, Some(30), CallCtx::default()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.complete_now(&ptid));
    let delivered = Instant::now();
    let deliveries = fake.wait_webhooks(1, Duration::from_secs(10)).await;
    assert_eq!(deliveries[0].status, Some(200), "{:?}", deliveries[0]);
    assert!(deliveries[0].url.contains(&b_addr.to_string()));
    let done = within(20, "the waiter on A", waiter)
        .await
        .unwrap()
        .unwrap();
    let took = delivered.elapsed();
    assert_downloaded(&serde_json::to_value(&done).unwrap());
    eprintln!(
        "a webhook on replica B reached the waiter on A {took:?} after the provider finished"
    );
    assert!(
        took < Duration::from_secs(10),
        "heard only at a poll: {took:?}"
    );
    assert!(!b.watcher().is_watching(&id), "B took the task over");
    within(15, "shutdown", a_handle.shutdown()).await;
    within(15, "shutdown", b_handle.shutdown()).await;
}

/// A replica that dies while its provider has not yet answered a create leaves the task
/// `submitting`: another replica settles it as `submit_unknown` once the lease lapses (2 s here),
/// not only at a restart 10 minutes later, and never submits it again.
#[tokio::test]
async fn a_submit_cut_off_by_a_dead_server_on_one_data_dir_is_settled_after_its_lease() {
    cut_off_submit(Db::Sqlite).await;
}

#[tokio::test]
async fn a_submit_cut_off_by_a_dead_replica_is_settled_after_its_lease() {
    let Some(server) =
        postgres::server("a_submit_cut_off_by_a_dead_replica_is_settled_after_its_lease")
    else {
        return;
    };
    cut_off_submit(Db::Postgres(server)).await;
}

async fn cut_off_submit(db: Db) {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.push_create_fault(crate::support::fakes::Fault::Hang {
        after_accept: false,
    });
    let ws = db.workspace();
    let img = ws.png("a.png", 64, 64);
    let env = replica_env(&ws, &fake);
    let pairs: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| {
            k.starts_with("I2V_MCP_LEASE")
                || k.starts_with("PIAPI")
                || k.starts_with("I2V_MCP_PIAPI")
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let other = i2v_mcp::core::Core::start(ws.config(&pairs)).unwrap();
    let mut p = Proc::spawn(&env);
    p.init("2025-06-18").await;
    p.send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "create_i2v_task", "arguments": {"image": img, "prompt": "cut off"}}}),
    )
    .await;
    let journal = other.journal().clone();
    let submitting = |j: Journal| async move {
        let listed = j.list(&Default::default()).await.unwrap();
        listed
            .rows
            .into_iter()
            .find(|r| r.is_submitting())
            .map(|r| r.id)
    };
    let id = within(10, "the create to reach the provider", async {
        loop {
            if fake.creates() == 1
                && let Some(id) = submitting(journal.clone()).await
            {
                return id;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    p.kill().await;
    let t = within(15, "the cut-off submit to be settled", async {
        loop {
            let t = other.task(&id).await.unwrap();
            if t.status == Status::Failed {
                return t;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(t.error.unwrap().category, Category::SubmitUnknown);
    assert_eq!(fake.creates(), 1, "the cut-off create was sent again");
}

/// Behind a load balancer (issue 16 item 3): two HTTP replicas on one database, and clients whose
/// requests land on either one in turn. A 2026-07-28 client (stateless by design) creates on A,
/// waits with `get_task` on B, and fetches the video from A and B; a 2025 client on `--stateless`
/// replicas does the same with no session to stick to.
#[tokio::test]
async fn stateless_requests_round_robin_over_two_http_servers_on_one_data_dir() {
    round_robin(Db::Sqlite).await;
}

#[tokio::test]
async fn stateless_requests_round_robin_over_two_http_replicas() {
    let Some(server) = postgres::server("stateless_round_robin") else {
        return;
    };
    round_robin(Db::Postgres(server)).await;
}

async fn round_robin(db: Db) {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_plan(TaskPlan::Polls {
        pending: 2,
        processing: 4,
        outcome: Outcome::Succeed,
    });
    let ws = db.workspace();
    let img = ws.png("a.png", 64, 64);
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let core = i2v_mcp::core::Core::start(crate::http::config(&ws, &fake, "piapi")).unwrap();
        let (addr, handle) = crate::http::start(core, |o, _| o.stateless = true).await;
        replicas.push((addr, handle));
    }
    let (a, b) = (replicas[0].0, replicas[1].0);

    // 2026-07-28: every request names its revision and capabilities itself.
    let created = crate::http_2026::call26(
        a,
        1,
        "create_i2v_task",
        json!({"image": img, "prompt": "lb-2026"}),
        json!({}),
    )
    .await;
    let id = created["structuredContent"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = crate::http_2026::call26(
        b,
        2,
        "get_task",
        json!({"task_id": id, "wait_seconds": 30}),
        json!({}),
    )
    .await;
    assert_downloaded(&done["structuredContent"]);

    // 2025 over stateless replicas: a fresh connection per call, alternating.
    let mut ids = vec![id];
    for (i, addr) in [a, b].into_iter().enumerate() {
        let (s, _) = crate::http::connect_http(addr, Some(crate::http::TOKEN))
            .await
            .unwrap();
        let t = ok(&call(
            &s,
            "create_i2v_task",
            json!({"image": img, "prompt": format!("lb-2025-{i}")}),
        )
        .await);
        ids.push(t["task_id"].as_str().unwrap().to_string());
        s.cancel().await.unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        let other = [b, a][i % 2];
        let (s, _) = crate::http::connect_http(other, Some(crate::http::TOKEN))
            .await
            .unwrap();
        let done = ok(&call(&s, "get_task", json!({"task_id": id, "wait_seconds": 30})).await);
        assert_downloaded(&done);
        s.cancel().await.unwrap();
        // The shared output dir: either replica serves the file.
        for addr in [a, b] {
            let r = reqwest::Client::new()
                .get(format!("http://{addr}/videos/{id}.mp4"))
                .bearer_auth(crate::http::TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{addr} /videos/{id}.mp4");
            assert_eq!(
                r.bytes().await.unwrap().len() as u64,
                done["video"]["bytes"].as_u64().unwrap()
            );
        }
    }
    assert_eq!(fake.accepted_creates(), 3, "one upstream create per task");
    assert_eq!(fake.downloads(), 3, "no download twice");
    for (_, h) in replicas {
        drop(h);
    }
}

/// A server that exits hands its leases back (issue 26): a per-call server creates a task and
/// exits; a server beside it takes the task over at once, not when the 20 s lease would lapse.
#[tokio::test]
async fn a_server_that_exits_hands_its_tasks_over_at_once_on_one_data_dir() {
    handover(Db::Sqlite).await;
}

#[tokio::test]
async fn a_replica_that_exits_hands_its_tasks_over_at_once() {
    let Some(server) = postgres::server("a_replica_that_exits_hands_its_tasks_over") else {
        return;
    };
    handover(Db::Postgres(server)).await;
}

async fn handover(db: Db) {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_plan(TaskPlan::Duration {
        total: std::time::Duration::from_secs(600),
        outcome: Outcome::Succeed,
    });
    let ws = db.workspace();
    let img = ws.png("a.png", 64, 64);
    let mut env = replica_env(&ws, &fake);
    env.insert("I2V_MCP_LEASE_MS".into(), "20000".into());
    let mut stays = Proc::spawn(&env);
    stays.init("2025-06-18").await;
    let mut per_call = Proc::spawn(&env);
    per_call.init("2025-06-18").await;
    let t = per_call
        .call(
            2,
            "create_i2v_task",
            json!({"image": img, "prompt": "handed over"}),
        )
        .await;
    let ptid = t["structuredContent"]["provider_task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{t}"))
        .to_string();
    // The creating process watches it: the other one has not polled it.
    within(10, "the creator to poll", async {
        while fake.polls(&ptid) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let polled = fake.polls(&ptid);
    let exited = std::time::Instant::now();
    per_call.close().await;
    let took = within(15, "the other server to take the task over", async {
        while fake.polls(&ptid) <= polled {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        exited.elapsed()
    })
    .await;
    eprintln!(
        "handover: a task of an exiting server polled by the other {took:?} after the exit (lease 20 s)"
    );
    assert!(
        took < std::time::Duration::from_secs(10),
        "taken over only when the lease lapsed: {took:?}"
    );
    stays.close().await;
}
