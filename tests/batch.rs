//! `i2v-mcp batch`: manifests of creates run through the built binary. On the local provider the
//! videos are real; for paid providers the fake counts every create, so a rerun after a kill that
//! created a row twice, or a dry run that sent anything, fails here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::cli;
use crate::support::Workspace;
use crate::support::fakes::{FakeProvider, Kind, Outcome, TaskPlan};

fn write(ws: &Workspace, name: &str, text: &str) -> PathBuf {
    let p = ws.path(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `cli` on a blocking thread: the fakes keep serving on the test's runtime meanwhile.
async fn run(env: &BTreeMap<String, String>, args: &[&str]) -> (i32, String, String) {
    let (env, args): (BTreeMap<String, String>, Vec<String>) =
        (env.clone(), args.iter().map(|a| a.to_string()).collect());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&env, &args)
    })
    .await
    .unwrap()
}

fn report(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_rows_on_local_make_three_videos_a_report_and_a_gallery() {
    let ws = Workspace::new();
    ws.png("a.png", 832, 480);
    ws.png("b.png", 640, 360);
    ws.png("c.png", 600, 600);
    // Relative image paths are read from the manifest's directory.
    let file = write(
        &ws,
        "images/shots.jsonl",
        r#"{"id":"a","image":"a.png","prompt":"slow zoom in","provider":"local"}
{"id":"b","image":"b.png","prompt":"pan left","provider":"local","camera_motion":{"type":"pan_left"}}
{"id":"c","image":"c.png","prompt":"static","provider":"local","aspect_ratio":"1:1"}
"#,
    );
    let rep = ws.path("reports/run.jsonl");
    let joined = ws.path("all.mp4");
    let env = ws.env(&[]);
    let (code, out, err) = run(
        &env,
        &[
            "batch",
            "run",
            s(&file),
            "--report",
            s(&rep),
            "--join",
            s(&joined),
            "--json",
        ],
    )
    .await;
    let summary: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    assert_eq!(summary["succeeded"], 3, "{summary:#}\n{err}");
    // Progress went to stderr, with the counts.
    assert!(
        err.contains("batch: 3/3 done, 0 running, 0 failed"),
        "{err}"
    );
    // Shot c is square: the join says which shot and why, and the exit status says it failed.
    let why = summary["join_error"].as_str().unwrap();
    assert!(
        why.contains("cannot join without re-encoding: shot c is 480x480, shot a is 832x480"),
        "{why}"
    );
    assert!(!joined.exists());
    assert_eq!(code, 1);

    let rows = report(&rep);
    assert_eq!(rows.len(), 3);
    let mut videos = Vec::new();
    for (r, id) in rows.iter().zip(["a", "b", "c"]) {
        assert_eq!(r["row"], id);
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["cost_usd"], 0.0);
        let video = PathBuf::from(r["video"].as_str().unwrap());
        let bytes = std::fs::read(&video).unwrap();
        let mp4 =
            mp4::Mp4Reader::read_header(std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap();
        assert_eq!(mp4.tracks().values().next().unwrap().sample_count(), 80);
        assert!(Path::new(r["sheet"].as_str().unwrap()).is_file(), "{r}");
        assert!(r["task_id"].as_str().unwrap().starts_with("tsk_"));
        videos.push(video);
    }
    videos.dedup();
    assert_eq!(videos.len(), 3, "three different videos");
    // The gallery: one file beside the report, sheets inlined, videos linked relatively, no CDN.
    let html = std::fs::read_to_string(ws.path("reports/run.html")).unwrap();
    assert_eq!(html.matches("data:image/jpeg;base64,").count(), 3);
    assert!(html.contains("href=\"../out/tsk_"), "{html}");
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));

    // Run again: every row is done, nothing is rendered again.
    let (code, out, _) = run(&env, &["batch", "run", s(&file), "--json"]).await;
    assert_eq!(code, 0);
    let again: Value = serde_json::from_str(&out).unwrap();
    let tasks: Vec<&Value> = again["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["task_id"])
        .collect();
    let first: Vec<&Value> = rows.iter().map(|r| &r["task_id"]).collect();
    assert_eq!(tasks, first);
    let (_, listed, _) = run(&env, &["tasks", "--json"]).await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 3);
}

/// A paid provider's fake whose tasks take a while, and the env that points the binary at it.
async fn slow_piapi(ws: &Workspace, task_secs: u64) -> (FakeProvider, BTreeMap<String, String>) {
    let fake = FakeProvider::start(Kind::Piapi).await;
    fake.set_plan(TaskPlan::Duration {
        total: Duration::from_secs(task_secs),
        outcome: Outcome::Succeed,
    });
    let env = ws.env(&[
        ("PIAPI_API_KEY", fake.api_key()),
        ("I2V_MCP_PIAPI_BASE_URL", fake.base_url()),
    ]);
    (fake, env)
}

fn piapi_rows(ws: &Workspace, n: usize) -> PathBuf {
    let img = ws.png("p.png", 640, 360);
    let text: String = (1..=n)
        .map(|i| {
            format!(
                "{{\"id\":\"r{i}\",\"image\":\"{}\",\"prompt\":\"shot {i}\",\"provider\":\"piapi\"}}\n",
                img.display()
            )
        })
        .collect();
    write(ws, "paid.jsonl", &text)
}

async fn until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_midway_resumes_and_creates_no_row_twice() {
    killed_midway(Workspace::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_midway_resumes_on_postgres_too() {
    let test = "a_batch_killed_midway_resumes_on_postgres_too";
    let Some(url) = crate::support::postgres::database(test) else {
        return;
    };
    killed_midway(Workspace::new().with_database(Some(url))).await;
}

async fn killed_midway(ws: Workspace) {
    let (fake, env) = slow_piapi(&ws, 3).await;
    let file = piapi_rows(&ws, 4);
    let mut child = Command::new(env!("CARGO_BIN_EXE_i2v-mcp"))
        .args(["batch", "run", s(&file), "--concurrency", "2"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .envs(&env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Two rows accepted upstream and being polled; the other two not sent yet.
    until(30, "two accepted creates", || fake.accepted_creates() == 2).await;
    // Let the journal record the provider ids (a kill in between is `submit_unknown`, tested
    // in the journal tests), then kill: SIGKILL, no cleanup.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(fake.creates(), 2, "killed before rows 3 and 4 were sent");

    let rep = ws.path("paid.report.jsonl");
    let (code, out, err) = run(&env, &["batch", "run", s(&file), "--report", s(&rep)]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(fake.creates(), 4, "each row created exactly once:\n{out}");
    assert_eq!(fake.accepted_creates(), 4);
    let rows = report(&rep);
    assert!(rows.iter().all(|r| r["status"] == "succeeded"), "{rows:?}");
    // 0.28 per video on PiAPI WanX.
    assert!(
        out.contains("4 succeeded") && out.contains("$1.12"),
        "{out}"
    );
    let bodies: Vec<String> = fake
        .tasks()
        .iter()
        .map(|t| {
            t.body["input"]["prompt"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let mut sorted = bodies.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 4, "four different rows upstream: {bodies:?}");

    // A row changed under the same id: refused, named, nothing sent.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("shot 3", "shot three");
    std::fs::write(&file, text).unwrap();
    let (code, _, err) = run(&env, &["batch", "run", s(&file)]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("row r3 (line 3) has other fields than when this batch ran it"),
        "{err}"
    );
    assert_eq!(fake.creates(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_bad_rows_and_budgets_send_nothing() {
    let ws = Workspace::new();
    let (fake, env) = slow_piapi(&ws, 1).await;
    let file = piapi_rows(&ws, 3);
    let (code, out, err) = run(&env, &["batch", "run", s(&file), "--dry-run"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("line 2 row r2: piapi/wan2.1-i2v-14b $0.28 ($0.28 per video)"),
        "{out}"
    );
    assert!(out.contains("total: $0.84 for 3 row(s)"), "{out}");
    // A dry run over the limit still lists every quote, says it would be refused, exits 1.
    let (code, out, _) = run(
        &env,
        &[
            "batch",
            "run",
            s(&file),
            "--dry-run",
            "--max-total-usd",
            "0.5",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        out.contains("line 3 row r3: piapi/wan2.1-i2v-14b $0.28"),
        "{out}"
    );
    assert!(
        out.contains("refused: the batch would cost an estimated $0.84, over --max-total-usd $0.5"),
        "{out}"
    );

    // Over --max-total-usd: refused before anything is sent.
    let (code, _, err) = run(&env, &["batch", "run", s(&file), "--max-total-usd", "0.8"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("estimated $0.84, over --max-total-usd $0.8; nothing was sent"),
        "{err}"
    );
    // Over the daily budget.
    let mut tight = env.clone();
    std::fs::write(ws.path("budget.toml"), "[budget]\ndaily_usd = 0.5\n").unwrap();
    tight.insert(
        "I2V_MCP_CONFIG".into(),
        ws.path("budget.toml").display().to_string(),
    );
    let (code, _, err) = run(&tight, &["batch", "run", s(&file)]).await;
    assert_eq!(code, 1);
    assert!(err.contains("over [budget].daily_usd $0.5"), "{err}");

    // A bad row: its line is named and the batch does not start.
    let bad = write(
        &ws,
        "bad.jsonl",
        &format!(
            "{}{{\"id\":\"x\",\"prompt\":\"p\",\"provider\":\"piapi\",\"duration_seconds\":7,\"image\":\"{}\"}}\n",
            std::fs::read_to_string(&file).unwrap(),
            ws.images().join("p.png").display()
        ),
    );
    let (code, _, err) = run(&env, &["batch", "run", s(&bad)]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("1 invalid row(s); the batch did not start"),
        "{err}"
    );
    assert!(err.contains("line 4 (row x): "), "{err}");
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());

    // With --skip-invalid the good rows run, the bad one is reported, the exit status says so.
    let rep = ws.path("skip.jsonl");
    let (code, _, err) = run(
        &env,
        &[
            "batch",
            "run",
            s(&bad),
            "--skip-invalid",
            "--report",
            s(&rep),
        ],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert_eq!(fake.creates(), 3);
    let rows = report(&rep);
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[3]["status"], "invalid");
    assert_eq!(rows[3]["line"], 4);
}

/// One decoded frame's luma plane (width x height, no padding).
struct Luma {
    w: usize,
    h: usize,
    y: Vec<u8>,
}

/// The first and last frames of an H.264 MP4, decoded with OpenH264 as the sheet child does.
fn first_and_last(path: &Path) -> (Luma, Luma) {
    use openh264::formats::YUVSource;
    let bytes = std::fs::read(path).unwrap();
    let mut mp4 =
        mp4::Mp4Reader::read_header(std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap();
    let track = mp4.tracks().values().next().unwrap();
    let (id, n) = (track.track_id(), track.sample_count());
    let avcc = track
        .trak
        .mdia
        .minf
        .stbl
        .stsd
        .avc1
        .as_ref()
        .unwrap()
        .avcc
        .clone();
    let mut dec = openh264::decoder::Decoder::new().unwrap();
    let mut headers = Vec::new();
    for nal in avcc
        .sequence_parameter_sets
        .iter()
        .chain(&avcc.picture_parameter_sets)
    {
        headers.extend_from_slice(&[0, 0, 0, 1]);
        headers.extend_from_slice(&nal.bytes);
    }
    let _ = dec.decode(&headers);
    let mut frames = Vec::new();
    for i in 1..=n {
        let sample = mp4.read_sample(id, i).unwrap().unwrap();
        let mut annex_b = Vec::new();
        let mut rest = &sample.bytes[..];
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            annex_b.extend_from_slice(&[0, 0, 0, 1]);
            annex_b.extend_from_slice(&rest[4..4 + len]);
            rest = &rest[4 + len..];
        }
        if let Some(yuv) = dec.decode(&annex_b).unwrap() {
            let (w, h) = yuv.dimensions();
            let stride = yuv.strides().0;
            let y = (0..h)
                .flat_map(|r| yuv.y()[r * stride..r * stride + w].to_vec())
                .collect();
            frames.push(Luma { w, h, y });
        }
    }
    assert_eq!(frames.len(), n as usize, "every frame of {path:?} decodes");
    let last = frames.pop().unwrap();
    (frames.swap_remove(0), last)
}

/// Mean absolute difference of two luma planes of the same size, in 8-bit levels.
fn mad(a: &Luma, b: &Luma) -> f64 {
    assert_eq!((a.w, a.h), (b.w, b.h));
    let sum: u64 =
        a.y.iter()
            .zip(&b.y)
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
    sum as f64 / a.y.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storyboard_continues_each_shot_from_the_last_frame_and_joins_them() {
    let ws = Workspace::new();
    let img = ws.png("start.png", 832, 480);
    let file = write(
        &ws,
        "board.csv",
        &format!(
            "id,image,prompt,provider,camera_motion,after,continue\n\
             one,{},zoom in,local,zoom_in,,\n\
             two,,zoom in,local,zoom_in,one,true\n\
             three,,zoom in,local,zoom_in,two,true\n",
            img.display()
        ),
    );
    let joined = ws.path("board.mp4");
    let env = ws.env(&[]);
    let (code, out, err) = run(
        &env,
        &["batch", "run", s(&file), "--join", s(&joined), "--json"],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let summary: Value = serde_json::from_str(&out).unwrap();
    let videos: Vec<PathBuf> = summary["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| PathBuf::from(r["video"].as_str().unwrap()))
        .collect();
    assert_eq!(videos.len(), 3);
    let shots: Vec<(Luma, Luma)> = videos.iter().map(|v| first_and_last(v)).collect();
    for k in 0..2 {
        let (_, last) = &shots[k];
        let (first_next, last_next) = &shots[k + 1];
        // The next shot starts from the previous shot's last frame: both went through one lossy
        // encode each (and the PNG in between is lossless), so they differ by codec noise only.
        let seam = mad(last, first_next);
        // Within one shot the zoom changes the picture: what "a different frame" looks like.
        let motion = mad(first_next, last_next);
        println!(
            "shot {k}->{}: seam {seam:.2} levels, motion {motion:.2} levels",
            k + 1
        );
        assert!(seam < 2.5, "seam {k}: mean difference {seam:.2} levels");
        assert!(motion > 4.0 * seam, "motion {motion:.2} vs seam {seam:.2}");
    }
    // Joined by copying samples: 3 x 80 frames, decoding from first to last.
    let (first, last) = first_and_last(&joined);
    assert!(
        mad(&first, &shots[0].0) < 0.01,
        "the join starts with shot one unchanged"
    );
    assert!(
        mad(&last, &shots[2].1) < 0.01,
        "and ends with shot three unchanged"
    );
    let bytes = std::fs::read(&joined).unwrap();
    let mp4 =
        mp4::Mp4Reader::read_header(std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap();
    let track = mp4.tracks().values().next().unwrap();
    assert_eq!(track.sample_count(), 240);
    assert!((track.duration().as_secs_f64() - 15.0).abs() < 0.01);

    // `batch join` does the same from the journal.
    let again = ws.path("again.mp4");
    let (code, out, err) = run(&env, &["batch", "join", s(&file), "--out", s(&again)]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("joined 3 shots (240 frames, 15.0 s)"), "{out}");
    assert_eq!(std::fs::read(&again).unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_row_dry_run_takes_seconds() {
    let ws = Workspace::new();
    let img = ws.png("k.png", 640, 360);
    let text: String = (0..1000)
        .map(|i| {
            format!(
                "{{\"id\":\"row-{i}\",\"image\":\"{}\",\"prompt\":\"zoom in {i}\",\"provider\":\"local\"}}\n",
                img.display()
            )
        })
        .collect();
    let file = write(&ws, "big.jsonl", &text);
    let env = ws.env(&[]);
    let started = Instant::now();
    let (code, out, err) = run(&env, &["batch", "run", s(&file), "--dry-run", "--json"]).await;
    let wall = started.elapsed();
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["quotes"].as_array().unwrap().len(), 1000);
    assert_eq!(v["rows"], 1000);
    println!(
        "BENCH batch dry run, 1,000 rows (each image read and checked): {} ms in the batch, {} ms wall (process start included)",
        v["elapsed_ms"],
        wall.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_refused_as_rate_limited_is_tried_again_and_paid_once() {
    use crate::support::fakes::Fault;
    let ws = Workspace::new();
    let (fake, env) = slow_piapi(&ws, 1).await;
    let file = piapi_rows(&ws, 1);
    // Every attempt of the first create is a 429: create gives up (nothing accepted, nothing
    // charged), the batch waits and sends the row again with the same key.
    for _ in 0..3 {
        fake.push_create_fault(Fault::rate_limited(1));
    }
    let (code, out, err) = run(&env, &["batch", "run", s(&file)]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("1 succeeded"), "{out}");
    assert_eq!(fake.creates(), 4, "three refused, then one accepted");
    assert_eq!(fake.accepted_creates(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_left_submitting_by_a_dead_run_is_never_sent_again() {
    use i2v_mcp::journal::{Journal, NewTask};
    use i2v_mcp::model::{CreateRequest, ProviderId};
    let ws = Workspace::new();
    let (fake, env) = slow_piapi(&ws, 1).await;
    let file = piapi_rows(&ws, 1);
    // What a run killed between the journal write and the provider's answer leaves: the row's
    // task `submitting` under the row's key, an hour ago.
    let sent = CreateRequest {
        image: Some(ws.images().join("p.png").display().to_string()),
        prompt: "shot 1".into(),
        provider: Some(ProviderId::Piapi),
        ..CreateRequest::default()
    };
    let journal = Journal::open(&ws.data().join("journal.sqlite")).unwrap();
    journal
        .insert(NewTask {
            id: "tsk_interrupted".into(),
            provider: ProviderId::Piapi,
            model: "wan2.1-i2v-14b".into(),
            request: serde_json::to_string(&sent).unwrap(),
            fingerprint: sent.fingerprint(),
            idempotency_key: Some("batch:films:r1".into()),
            estimated_cost: Some(0.28),
            webhook_secret: None,
            created_at: i2v_mcp::model::now_ms() - 3_600_000,
            daily_budget: None,
            owner: String::new(),
            owner_budget: None,
        })
        .await
        .unwrap();
    drop(journal);
    let rep = ws.path("dead.jsonl");
    let (code, out, err) = run(
        &env,
        &[
            "batch",
            "run",
            s(&file),
            "--batch",
            "films",
            "--report",
            s(&rep),
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    let rows = report(&rep);
    assert_eq!(rows[0]["task_id"], "tsk_interrupted");
    assert_eq!(rows[0]["status"], "failed");
    let why = rows[0]["error"].as_str().unwrap();
    assert!(
        why.starts_with("submit_unknown: ") && why.contains("not sent again"),
        "{why}"
    );
    assert_eq!(
        fake.creates(),
        0,
        "whether it was accepted is unknown: never resent"
    );
}
