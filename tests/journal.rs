//! The journal under stress: idempotent retries after refusals, a journal write failing after the
//! provider accepted, large inputs, undecodable rows, orphan temp files and two servers on one data dir.

use std::sync::Arc;

use i2v_mcp::core::Core;
use serde_json::json;

use crate::mcp_flow::{assert_downloaded, core_for};
use crate::support::fakes::{FakeProvider, Fault, Kind};
use crate::support::{Workspace, call, connect, err, ok, within};

/// A core whose piapi base URL is a port nobody listens on: every create is refused at connect.
fn unreachable_core(ws: &Workspace, fake: &FakeProvider) -> Arc<Core> {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1", dead.local_addr().unwrap());
    drop(dead);
    Core::start(ws.config(&[
        ("PIAPI_API_KEY", fake.api_key()),
        ("I2V_MCP_PIAPI_BASE_URL", &url),
    ]))
    .unwrap()
}

/// The journals a test runs on: SQLite, then PostgreSQL (a fresh database; SKIPPED when the
/// package is not installed, outside CI).
fn backends(test: &str) -> Vec<Option<String>> {
    let mut all = vec![None];
    all.extend(crate::support::postgres::database(test).map(Some));
    all
}

#[tokio::test]
async fn a_key_refused_while_the_provider_was_unreachable_makes_a_new_attempt() {
    for db in backends("a_key_refused_while_the_provider_was_unreachable") {
        a_key_refused_while_unreachable_makes_a_new_attempt(Workspace::new().with_database(db))
            .await;
    }
}

async fn a_key_refused_while_unreachable_makes_a_new_attempt(ws: Workspace) {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let img = ws.png("a.png", 64, 64);
    let args = json!({"image": img, "prompt": "p", "provider": "piapi", "idempotency_key": "k1", "wait_seconds": 60});
    let refused = {
        let (s, _) = connect(unreachable_core(&ws, &fake)).await;
        let e = err(&call(&s, "create_i2v_task", args.clone()).await);
        assert_eq!(e["category"], "provider_unavailable", "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("nothing was"),
            "{e}"
        );
        s.cancel().await.unwrap();
        let rows = ws.data().join("journal.sqlite");
        assert_eq!(rows.exists(), ws.database.is_none());
        e
    };
    // The provider is back (same journal): the same key is a new attempt that reaches it.
    let core = core_for(&ws, &fake, "piapi");
    let (s, _) = connect(core.clone()).await;
    let t = ok(&call(&s, "create_i2v_task", args.clone()).await);
    assert_ne!(t["deduplicated"], true, "{t}");
    assert_downloaded(&t);
    assert_eq!(fake.accepted_creates(), 1, "{refused}");
    // From now on the key holds an accepted task: no second create.
    let again = ok(&call(&s, "create_i2v_task", args).await);
    assert_eq!(again["task_id"], t["task_id"]);
    assert_eq!(again["deduplicated"], true);
    assert_eq!(fake.creates(), 1);
    // The refused attempt is still readable, as it was, and says what replaced it.
    let failed = ok(&call(&s, "list_tasks", json!({"status": "failed"})).await);
    let old = &failed["tasks"][0];
    assert_eq!(old["error"]["category"], "provider_unavailable", "{failed}");
    assert_ne!(old["task_id"], t["task_id"]);
    assert!(
        old["note"]
            .as_str()
            .unwrap_or_default()
            .contains(t["task_id"].as_str().unwrap()),
        "{old}"
    );
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn keys_refused_by_the_provider_retry_and_concurrent_retries_create_once() {
    for db in backends("keys_refused_by_the_provider_retry_and_concurrent_retries_create_once") {
        refused_keys_retry_and_concurrent_retries_create_once(Workspace::new().with_database(db))
            .await;
    }
}

async fn refused_keys_retry_and_concurrent_retries_create_once(ws: Workspace) {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;

    // 429 on every attempt: refused after the retries.
    for _ in 0..3 {
        fake.push_create_fault(Fault::rate_limited(0));
    }
    let args =
        json!({"image": img, "prompt": "p", "provider": "piapi", "idempotency_key": "k-429"});
    let e = err(&call(&s, "create_i2v_task", args.clone()).await);
    assert_eq!(e["category"], "rate_limited", "{e}");
    let (a, b, c) = tokio::join!(
        call(&s, "create_i2v_task", args.clone()),
        call(&s, "create_i2v_task", args.clone()),
        call(&s, "create_i2v_task", args.clone())
    );
    let ids: Vec<_> = [a, b, c].iter().map(|r| ok(r)["task_id"].clone()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert_eq!(fake.accepted_creates(), 1, "one upstream create per key");

    // Auth refused; after the key is fixed the same idempotency key goes through.
    fake.fail_auth(true);
    let args =
        json!({"image": img, "prompt": "q", "provider": "piapi", "idempotency_key": "k-auth"});
    let e = err(&call(&s, "create_i2v_task", args.clone()).await);
    assert_eq!(e["category"], "auth", "{e}");
    fake.fail_auth(false);
    let t = ok(&call(&s, "create_i2v_task", args).await);
    assert_ne!(t["deduplicated"], true, "{t}");
    assert_eq!(fake.accepted_creates(), 2);
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn a_key_whose_outcome_is_unknown_is_never_resubmitted() {
    for db in backends("a_key_whose_outcome_is_unknown_is_never_resubmitted") {
        an_unknown_outcome_is_never_resubmitted(Workspace::new().with_database(db)).await;
    }
}

async fn an_unknown_outcome_is_never_resubmitted(ws: Workspace) {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.push_create_fault(Fault::AcceptThenServerError);
    let img = ws.png("a.png", 64, 64);
    let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
    let args =
        json!({"image": img, "prompt": "p", "provider": "piapi", "idempotency_key": "k-unknown"});
    let e = err(&call(&s, "create_i2v_task", args.clone()).await);
    assert_eq!(e["category"], "submit_unknown", "{e}");
    for _ in 0..2 {
        let again = call(&s, "create_i2v_task", args.clone()).await;
        let t = again.structured_content.clone().unwrap();
        assert_eq!(t["deduplicated"], true, "{t}");
        assert_eq!(t["error"]["category"], "submit_unknown", "{t}");
    }
    assert_eq!(fake.creates(), 1, "never sent again");
    s.cancel().await.unwrap();
}

/// Collects what the code logs through `tracing` on this thread (a current-thread runtime runs
/// the spawned tasks here too).
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let w = self.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(sub)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).to_string()
    }
}

#[tokio::test]
async fn a_journal_write_failing_after_the_provider_accepted_keeps_the_provider_id() {
    for db in backends("a_journal_write_failing_after_the_provider_accepted_keeps_the_provider_id")
    {
        a_failed_submit_write_keeps_the_provider_id(Workspace::new().with_database(db)).await;
    }
}

async fn a_failed_submit_write_keeps_the_provider_id(ws: Workspace) {
    let logs = Logs::default();
    let _log = logs.capture();
    let fake = FakeProvider::start(Kind::Piapi).await;
    let img = ws.png("a.png", 64, 64);
    let core = core_for(&ws, &fake, "piapi");
    // The disk is full for the create's write and two retries.
    core.journal().inject_submit_write_failures(3);
    let (s, _) = connect(core.clone()).await;
    let e = err(&call(
        &s,
        "create_i2v_task",
        json!({"image": img, "prompt": "p", "provider": "piapi"}),
    )
    .await);
    let upstream = fake.tasks();
    assert_eq!(upstream.len(), 1);
    let ptid = upstream[0].id.clone();
    let message = e["message"].as_str().unwrap();
    assert!(message.contains(&ptid), "{e}");
    assert!(message.contains("being recorded"), "{e}");
    let id = message
        .split_whitespace()
        .find(|w| w.starts_with("tsk_"))
        .unwrap_or_else(|| panic!("no task id in {e}"))
        .trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .to_string();
    let log = logs.text();
    assert!(
        log.lines().any(|l| l.contains(&ptid)
            && l.contains(&id)
            && (l.contains("ERROR") || l.contains("WARN"))),
        "the provider id is not logged with ours: {log}"
    );
    // Known at once from memory, then recorded, watched and downloaded.
    let t = core.journal().get(&id).await.unwrap().unwrap().to_task();
    assert_eq!(t.provider_task_id.as_deref(), Some(ptid.as_str()));
    let done = ok(&call(&s, "get_task", json!({"task_id": id, "wait_seconds": 60})).await);
    assert_downloaded(&done);
    assert_eq!(done["provider_task_id"], ptid.as_str());
    s.cancel().await.unwrap();
    assert_eq!(fake.creates(), 1);
    // It is in the journal for good: a restart finds it recorded, not `submit_unknown`.
    drop(core);
    let again = core_for(&ws, &fake, "piapi");
    let row = again.journal().get(&id).await.unwrap().unwrap();
    assert_eq!(row.provider_task_id.as_deref(), Some(ptid.as_str()));
    assert_eq!(row.status, i2v_mcp::journal::State::Succeeded);
}

/// A PNG of noise (incompressible) as a data URI of about `mib` MiB.
fn noise_data_uri(mib: f64) -> String {
    use base64::Engine;
    let side = ((mib * 1024.0 * 1024.0 * 0.75 / 3.0).sqrt()) as u32;
    let mut x: u32 = 0x1234_5678;
    let img = image::RgbImage::from_fn(side, side, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        image::Rgb([x as u8, (x >> 8) as u8, (x >> 16) as u8])
    });
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    )
}

/// The journal's bytes on disk, its write-ahead log included.
fn journal_bytes(ws: &Workspace) -> u64 {
    ["journal.sqlite", "journal.sqlite-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(ws.data().join(f)).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test]
async fn large_data_uris_stay_out_of_the_journal() {
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let uri = noise_data_uri(5.0);
    assert!(uri.len() > 5_000_000, "{}", uri.len());
    let core = core_for(&ws, &fake, "piapi");
    let (s, _) = connect(core.clone()).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let t = ok(&call(
            &s,
            "create_i2v_task",
            json!({"image": uri, "prompt": format!("p{i}"), "provider": "piapi"}),
        )
        .await);
        ids.push(t["task_id"].as_str().unwrap().to_string());
    }
    let last = ok(&call(
        &s,
        "get_task",
        json!({"task_id": ids[3], "wait_seconds": 60}),
    )
    .await);
    assert_downloaded(&last);
    // The provider got the image itself.
    let body = &fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap()
        .body_text;
    assert!(
        body.contains(&uri[uri.len() - 200..]),
        "the image did not reach the provider"
    );
    let size = journal_bytes(&ws);
    assert!(
        size < 1 << 20,
        "4 creates of a 5 MB image made a {size}-byte journal"
    );
    // The journal keeps where the bytes are: one file per distinct image, found by its digest.
    let row = core.journal().get(&ids[0]).await.unwrap().unwrap();
    let request = row.request.clone().unwrap_or_default();
    assert!(
        !request.contains("base64"),
        "{}",
        &request[..request.len().min(300)]
    );
    let inputs: Vec<_> = std::fs::read_dir(ws.data().join("inputs"))
        .unwrap()
        .collect();
    assert_eq!(inputs.len(), 1);
    // Listing reads no request at all.
    let listed = core
        .journal()
        .list(&i2v_mcp::journal::ListFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .rows;
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().all(|r| r.request.is_none()));
    eprintln!(
        "journal after 4 creates of a {} MB data URI: {size} bytes",
        uri.len() / 1_000_000
    );
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn a_local_render_restarted_from_the_journal_finds_its_data_uri_image() {
    let ws = Workspace::new();
    let uri = noise_data_uri(0.3);
    let core = Core::start(ws.config(&[])).unwrap();
    let (s, _) = connect(core.clone()).await;
    let t = ok(&call(
        &s,
        "create_i2v_task",
        json!({"image": uri, "prompt": "p", "provider": "local", "wait_seconds": 60}),
    )
    .await);
    assert_eq!(t["status"], "succeeded", "{t}");
    s.cancel().await.unwrap();
    // A restarted server has no render job: it starts over from what the journal holds.
    let row = core
        .journal()
        .get(t["task_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let cfg = ws.config(&[]);
    let http = i2v_mcp::providers::http::client().unwrap();
    let fresh = i2v_mcp::providers::runtime::Providers::new(
        &cfg,
        &http,
        i2v_mcp::journal::Journal::open(&ws.data().join("journal.sqlite")).unwrap(),
    );
    let local = fresh.get(i2v_mcp::model::ProviderId::Local).unwrap();
    let status = within(60, "the restarted render", async {
        loop {
            let snap = local
                .poll(&row)
                .await
                .unwrap_or_else(|e| panic!("{:?}", e.error));
            if snap.status.is_terminal() {
                return snap;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(
        status.status,
        i2v_mcp::model::Status::Succeeded,
        "{status:?}"
    );
}

#[tokio::test]
async fn undecodable_rows_are_named_and_the_rest_is_served() {
    let logs = Logs::default();
    let _log = logs.capture();
    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    let img = ws.png("a.png", 64, 64);
    let mut ids = Vec::new();
    {
        let (s, _) = connect(core_for(&ws, &fake, "piapi")).await;
        for i in 0..3 {
            let t = ok(&call(
                &s,
                "create_i2v_task",
                json!({"image": img, "prompt": format!("p{i}"), "provider": "piapi"}),
            )
            .await);
            ids.push(t["task_id"].as_str().unwrap().to_string());
        }
        s.cancel().await.unwrap();
    }
    // A newer version's provider, and a timestamp that is not one, on open tasks.
    let db = rusqlite::Connection::open(ws.data().join("journal.sqlite")).unwrap();
    db.execute(
        "UPDATE tasks SET provider = 'sora9', status = 'queued' WHERE id = ?1",
        [&ids[0]],
    )
    .unwrap();
    db.execute(
        "UPDATE tasks SET created_at = 'yesterday', status = 'queued' WHERE id = ?1",
        [&ids[1]],
    )
    .unwrap();
    drop(db);

    let core = Core::start(ws.config(&[
        ("PIAPI_API_KEY", fake.api_key()),
        ("I2V_MCP_PIAPI_BASE_URL", fake.base_url()),
    ]))
    .unwrap_or_else(|e| panic!("one bad row stopped the core: {e:?}"));
    let (s, _) = connect(core).await;
    let listed = ok(&call(&s, "list_tasks", json!({})).await);
    let tasks = listed["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{listed}");
    assert_eq!(tasks[0]["task_id"], ids[2].as_str());
    let note = listed["note"]
        .as_str()
        .unwrap_or_else(|| panic!("no note: {listed}"));
    assert!(note.contains(&ids[0]) && note.contains(&ids[1]), "{note}");
    let e = err(&call(&s, "get_task", json!({"task_id": ids[0]})).await);
    let m = e["message"].as_str().unwrap();
    assert!(m.contains(&ids[0]) && m.contains("sora9"), "{e}");
    let e = err(&call(&s, "get_task", json!({"task_id": ids[1]})).await);
    assert!(e["message"].as_str().unwrap().contains("created_at"), "{e}");
    // Still serving: the good task completes.
    let done = ok(&call(
        &s,
        "get_task",
        json!({"task_id": ids[2], "wait_seconds": 60}),
    )
    .await);
    assert_downloaded(&done);
    s.cancel().await.unwrap();
    let log = logs.text();
    assert!(
        log.contains(&ids[0]) && log.contains(&ids[1]),
        "bad rows not logged: {log}"
    );
}

#[tokio::test]
async fn an_empty_journal_file_is_taken_as_new_with_a_warning() {
    let logs = Logs::default();
    let _log = logs.capture();
    let ws = Workspace::new();
    std::fs::write(ws.data().join("journal.sqlite"), b"").unwrap();
    let core = Core::start(ws.config(&[])).unwrap();
    assert_eq!(core.list(None, None, None).await.unwrap().tasks.len(), 0);
    let log = logs.text();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("journal.sqlite") && l.contains("truncated")),
        "{log}"
    );
    // A fresh journal (no file yet) starts quietly.
    let quiet = Logs::default();
    let _q = quiet.capture();
    let ws = Workspace::new();
    Core::start(ws.config(&[])).unwrap();
    assert!(!quiet.text().contains("truncated"), "{}", quiet.text());
}

/// Two hosts at once on the default data dir (issue 26): both servers serve, a create in one is
/// seen at once by the other, a wait there sees it finish, and one-shot commands work beside them.
#[tokio::test]
async fn two_servers_on_one_data_dir_both_serve_and_share_their_tasks() {
    let ws = Workspace::new();
    let env = ws.env(&[]);
    let img = ws.png("a.png", 320, 240);
    let mut first = crate::mcp_stdio::Proc::spawn(&env);
    first.init("2025-06-18").await;
    let mut second = crate::mcp_stdio::Proc::spawn(&env);
    second.init("2025-06-18").await;
    let created = first
        .call(
            2,
            "create_i2v_task",
            json!({"image": img, "prompt": "pan", "provider": "local"}),
        )
        .await;
    let id = created["structuredContent"]["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    // Visible at once in the other process, and its wait sees the task finish.
    let seen = second
        .call(2, "get_task", json!({"task_id": id, "wait_seconds": 60}))
        .await;
    assert_eq!(seen["structuredContent"]["status"], "succeeded", "{seen}");
    assert!(
        seen["structuredContent"]["video"]["local_path"].is_string(),
        "{seen}"
    );
    // A one-shot command beside both servers works.
    let bin = env!("CARGO_BIN_EXE_i2v-mcp");
    let tasks = within(
        20,
        "the tasks command",
        tokio::process::Command::new(bin)
            .args(["--json", "tasks"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", "/nonexistent")
            .envs(&env)
            .output(),
    )
    .await
    .unwrap();
    assert!(
        tasks.status.success() && String::from_utf8_lossy(&tasks.stdout).contains(&id),
        "{}",
        String::from_utf8_lossy(&tasks.stderr)
    );
    first.close().await;
    second.close().await;
}

#[tokio::test]
async fn stale_temp_files_are_cleaned_when_a_server_starts() {
    let ws = Workspace::new();
    let inputs = ws.data().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let make = |p: std::path::PathBuf, modified: Option<std::time::SystemTime>| {
        let f = std::fs::File::create(&p).unwrap();
        if let Some(t) = modified {
            f.set_modified(t).unwrap();
        }
        p
    };
    let stale = [
        make(ws.out().join(".tsk_a.4242-0000beef.mp4.part"), Some(old)),
        make(ws.out().join(".tsk_b.mp4.part"), Some(old)),
        make(inputs.join(".abc.4242-0000beef.part"), Some(old)),
    ];
    let live = make(ws.out().join(".tsk_c.4243-0000cafe.mp4.part"), None);
    let other = make(ws.out().join("keep.mp4"), Some(old));
    Core::start(ws.config(&[])).unwrap();
    for p in &stale {
        assert!(!p.exists(), "{} was left", p.display());
    }
    assert!(
        live.exists(),
        "a fresh temp file may belong to a live download"
    );
    assert!(other.exists(), "only temp files are cleaned");
}

/// A journal written by main at 161175c, before numbered migrations (see tests/fixtures/README.md).
const FIXTURE_161175C: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/journal-161175c.sqlite"
);

fn user_version(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_journal_written_by_main_161175c_opens_migrates_and_serves_its_tasks() {
    let ws = Workspace::new();
    let path = ws.data().join("journal.sqlite");
    std::fs::copy(FIXTURE_161175C, &path).unwrap();
    assert_eq!(user_version(&path), 0);
    let core = Core::start(ws.config(&[])).unwrap();
    assert_eq!(
        user_version(&path),
        i2v_mcp::journal::MIGRATIONS.len() as i64
    );
    let (s, _) = connect(core.clone()).await;
    let listed = ok(&call(&s, "list_tasks", json!({"limit": 50})).await);
    let tasks = listed["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 6, "{listed}");
    assert!(listed.get("note").is_none(), "{listed}");
    let video = "4e1535429de73e62f718ce87d8ba2019cb6079f94b4af5ec3590127cd41ccb74";
    for id in [
        "tsk_01a233c0571173e881ebecd54d39809d",
        "tsk_01a233c05b4c76e18aac463e2d9b0524",
    ] {
        let t = ok(&call(&s, "get_task", json!({"task_id": id})).await);
        assert_eq!(t["status"], "succeeded", "{t}");
        assert_eq!(t["video"]["sha256"], video, "{t}");
        assert_eq!(t["provider"], "local", "{t}");
        assert!(t.get("billed_seconds").is_none(), "{t}");
    }
    let t = ok(&call(
        &s,
        "get_task",
        json!({"task_id": "tsk_01a233c0641d73edbc4681274b09450d"}),
    )
    .await);
    assert_eq!(
        (t["status"].as_str(), t["note"].as_str()),
        (Some("cancelled"), Some("cancelled at local")),
        "{t}"
    );
    let refused = "tsk_01a233c073f970468a1aa06dc4f5efa7";
    let t = ok(&call(&s, "get_task", json!({"task_id": refused})).await);
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["error"]["category"], "provider_unavailable", "{t}");
    // The one cut off while submitting: the restart says its outcome is unknown.
    let t = ok(&call(
        &s,
        "get_task",
        json!({"task_id": "tsk_01a233c099fe71b3ac880b39a4ddc222"}),
    )
    .await);
    assert_eq!(t["error"]["category"], "submit_unknown", "{t}");
    // Idempotency keys still hold: the kept one answers with its task, the refused one is free.
    let journal = core.journal();
    let kept = journal.find_by_key("fixture-key").await.unwrap().unwrap();
    assert_eq!(kept.id, "tsk_01a233c05b4c76e18aac463e2d9b0524");
    let old = journal.find_by_key("refused-key").await.unwrap().unwrap();
    assert!(old.is_refused() && old.id == refused, "{old:?}");
    s.cancel().await.unwrap();
}

#[tokio::test]
async fn a_new_journal_starts_at_the_newest_version_and_a_newer_one_is_refused_untouched() {
    let ws = Workspace::new();
    let path = ws.data().join("journal.sqlite");
    drop(Core::start(ws.config(&[])).unwrap());
    let newest = i2v_mcp::journal::MIGRATIONS.len() as i64;
    assert_eq!(user_version(&path), newest);

    let ws = Workspace::new();
    let path = ws.data().join("journal.sqlite");
    std::fs::copy(FIXTURE_161175C, &path).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", newest + 1)
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let e = match Core::start(ws.config(&[])) {
        Ok(_) => panic!("a journal from a newer version was opened"),
        Err(e) => e,
    };
    assert!(
        e.message.contains("newer") && e.message.contains(&format!("{}", newest + 1)),
        "{e:?}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the journal was written"
    );
    assert_eq!(user_version(&path), newest + 1);
}
