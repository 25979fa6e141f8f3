//! Shared test helpers: temp dirs, configs pointed at fakes, images, MCP clients.
#![allow(dead_code)] // each test module uses a subset

pub mod fakes;
pub mod hooks;
pub mod postgres;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use i2v_mcp::config::{Config, Overrides};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    ProgressNotificationParam,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::Value;

/// Every await in a test is bounded; a timeout fails with what was awaited.
pub async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s waiting for {what}"),
    }
}

/// A temp workspace: data dir, output dir, and an allowed dir with images.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    /// The PostgreSQL journal's URL (`with_database`); `None`: SQLite in the data dir.
    pub database: Option<String>,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["data", "out", "images"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        // An empty config file, so no user config leaks into a test.
        std::fs::write(dir.path().join("no-config.toml"), "").unwrap();
        Workspace {
            dir,
            database: None,
        }
    }
    /// The same workspace with its journal in PostgreSQL at `url` (None: SQLite).
    pub fn with_database(mut self, url: Option<String>) -> Self {
        self.database = url;
        self
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn data(&self) -> PathBuf {
        self.path("data")
    }
    pub fn out(&self) -> PathBuf {
        self.path("out")
    }
    pub fn images(&self) -> PathBuf {
        self.path("images")
    }
    /// A PNG of the given size in the allowed dir.
    pub fn png(&self, name: &str, w: u32, h: u32) -> PathBuf {
        let p = self.images().join(name);
        write_png(&p, w, h);
        p
    }
    /// Environment for the binary / config resolution, with no user config file leaking in.
    pub fn env(&self, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = [
            ("I2V_MCP_DATA_DIR", self.data().display().to_string()),
            ("I2V_MCP_OUTPUT_DIR", self.out().display().to_string()),
            ("I2V_MCP_ALLOWED_DIRS", self.images().display().to_string()),
            (
                "I2V_MCP_CONFIG",
                self.path("no-config.toml").display().to_string(),
            ),
            // Existing tests create on Novita's retired models; a test of the refusal sets "false".
            ("I2V_MCP_NOVITA_ALLOW_RETIRED", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(url) = &self.database {
            m.insert("I2V_MCP_DATABASE_URL".into(), url.clone());
        }
        for (k, v) in extra {
            m.insert(k.to_string(), v.to_string());
        }
        m
    }
    /// A resolved config from `env` (no process environment involved), with fast polling. The
    /// contact-sheet child is the built binary (this test binary is not `i2v-mcp`).
    pub fn config(&self, extra: &[(&str, &str)]) -> Config {
        let env = self.env(extra);
        let mut cfg = Config::resolve(&Overrides::default(), &env)
            .unwrap()
            .with_fast_polling(Duration::from_millis(30), Duration::from_millis(150));
        cfg.preview.helper = Some(PathBuf::from(env!("CARGO_BIN_EXE_i2v-mcp")));
        cfg
    }
}

pub fn write_png(path: &Path, w: u32, h: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 255 / w.max(1)) as u8,
            (y * 255 / h.max(1)) as u8,
            ((x + y) % 251) as u8,
        ])
    });
    img.save_with_format(path, image::ImageFormat::Png).unwrap();
}

/// A test MCP client that records progress notifications.
#[derive(Clone, Default)]
pub struct Client {
    pub progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    pub updated: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Client {
    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.progress.lock().unwrap().push(p);
    }
    async fn on_resource_updated(
        &self,
        p: rmcp::model::ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.updated.lock().unwrap().push(p.uri);
    }
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("i2v-tests", "0.0.1"),
        )
    }
}

pub type Session = RunningService<RoleClient, Client>;

/// Connect a client to an in-process server over a duplex pipe.
pub async fn connect(core: Arc<i2v_mcp::core::Core>) -> (Session, Client) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let server = i2v_mcp::mcp::Server::new(core);
    tokio::spawn(async move {
        if let Ok(running) = server.serve(a).await {
            let _ = running.waiting().await;
        }
    });
    let handler = Client::default();
    let session = within(10, "initialize", handler.clone().serve(b))
        .await
        .unwrap();
    (session, handler)
}

/// Call a tool and return the raw result.
pub async fn call(s: &Session, tool: &str, args: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(tool.to_string())
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    within(60, tool, s.call_tool(params)).await.unwrap()
}

/// The structured content of a successful call, or a panic with the error text. The text block
/// must carry the same data (hosts that show the model only `content` rely on it).
pub fn ok(r: &CallToolResult) -> Value {
    assert_ne!(r.is_error, Some(true), "tool failed: {:?}", r.content);
    let data = r.structured_content.clone().expect("structured content");
    let text = r.content[0]
        .as_text()
        .expect("a text block first")
        .text
        .clone();
    let from_text: Value = serde_json::from_str(&text).expect("the text block is JSON");
    assert_eq!(from_text, data, "text and structured content differ");
    data
}

/// The error object of a failed call: read from the text block, as every host can. An error
/// carries no structured content (it would not match the tool's output schema).
pub fn err(r: &CallToolResult) -> Value {
    assert_eq!(
        r.is_error,
        Some(true),
        "expected an error, got {:?}",
        r.content
    );
    assert_eq!(
        r.structured_content, None,
        "an error with structured content"
    );
    let text = r.content[0].as_text().expect("a text block").text.clone();
    let v: Value = serde_json::from_str(&text).expect("the error text is JSON");
    v["error"].clone()
}

/// The error object of a raw JSON-RPC `tools/call` response (as [`err`]).
pub fn raw_err(response: &Value) -> Value {
    let r = response.get("result").unwrap_or(response);
    assert_eq!(r["isError"], true, "expected an error: {response}");
    assert!(r.get("structuredContent").is_none(), "{response}");
    let text = r["content"][0]["text"].as_str().expect("a text block");
    serde_json::from_str::<Value>(text).expect("the error text is JSON")["error"].clone()
}

/// A PNG that claims `w`x`h` 8-bit RGB pixels, all black, with a valid but tiny zlib stream (about
/// 26 bits per 3 KB of pixels): a decompression bomb. Written by hand so a 13000x13000 one takes
/// milliseconds and no memory here. Each row is filter 0 and zeros, so the stream is one zero
/// literal then matches of 258 at distance 1 (fixed Huffman codes).
pub fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let total = u64::from(h) * (1 + 3 * u64::from(w));
    let mut bits = BitWriter::default();
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE = 01, fixed Huffman
    bits.code(0b0011_0000, 8); // literal 0
    let mut left = total - 1;
    while left >= 258 {
        bits.code(0b1100_0101, 8); // length code 285 = 258
        bits.code(0, 5); // distance code 0 = 1
        left -= 258;
    }
    for _ in 0..left {
        bits.code(0b0011_0000, 8);
    }
    bits.code(0, 7); // end of block
    let mut idat = vec![0x78, 0x01];
    idat.extend(bits.finish());
    let adler = (((total % 65521) as u32) << 16) | 1; // a stays 1 over zeros; b = n
    idat.extend(adler.to_be_bytes());

    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", &ihdr), (b"IDAT", &idat), (b"IEND", &Vec::new())] {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    out
}

#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl BitWriter {
    /// `len` bits of `v`, least significant first (deflate's header fields and extra bits).
    fn put(&mut self, v: u32, len: u32) {
        for i in 0..len {
            self.acc |= ((v >> i) & 1) << self.n;
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc as u8);
                self.acc = 0;
                self.n = 0;
            }
        }
    }
    /// A Huffman code, most significant bit first.
    fn code(&mut self, v: u32, len: u32) {
        for i in (0..len).rev() {
            self.put((v >> i) & 1, 1);
        }
    }
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A JPEG of the given size (a gradient, so it has real entropy-coded data).
pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 256) as u8])
    });
    let mut out = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut out),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    out
}

/// A named pipe at `path` (nothing ever writes to it).
pub fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Opens each FIFO for writing and closes it when dropped, so a reader stuck on one (the bug
/// these tests catch) sees end-of-file and the test can end instead of hanging.
pub struct FifoGuard(pub Vec<PathBuf>);

impl Drop for FifoGuard {
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        for p in &self.0 {
            // Non-blocking: fails at once (ENXIO) when nobody is reading, which is the good case.
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(p);
        }
    }
}

/// Peak resident memory (VmHWM) of a process, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"));
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// Run `script` in tests/interop under the pinned venv's Python (tests/interop/setup.sh) with
/// `env`, on the blocking pool, as [`run_script_env`]; `false` when the venv is missing and the
/// test is to stop there (`SKIPPED`; under CI it fails instead).
pub async fn run_interop_python(script: &'static str, env: Vec<(String, String)>) -> bool {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let python = dir.join(".venv/bin/python");
    let installed = python.exists();
    let ready = if installed {
        Ok(python)
    } else {
        Err("tests/interop/.venv/bin/python is missing".to_string())
    };
    let run = move || {
        run_script_env(
            ready,
            &dir,
            script,
            "tests/interop/setup.sh",
            Duration::from_secs(300),
            &env,
        );
    };
    tokio::task::spawn_blocking(run).await.unwrap();
    installed
}

/// Runs `program <dir>/<script> <the built binary>` in `dir` (another project's client, or a
/// browser), bounded by `limit`, and panics with its output unless it exits 0. `program` is
/// `Err(why)` when what the script needs is not installed (`setup` installs it): then the test
/// fails under CI (env `CI` set) and says `SKIPPED` elsewhere.
pub fn run_script(
    program: Result<PathBuf, String>,
    dir: &Path,
    script: &str,
    setup: &str,
    limit: Duration,
) {
    run_script_env(program, dir, script, setup, limit, &[]);
}

/// [`run_script`] with extra environment for the script (say, the base URLs of fakes).
pub fn run_script_env(
    program: Result<PathBuf, String>,
    dir: &Path,
    script: &str,
    setup: &str,
    limit: Duration,
    env: &[(String, String)],
) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let program = match program {
        Ok(p) => p,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("{why}: run {setup} before cargo test")
        }
        Err(why) => {
            // Straight to the process's stderr: libtest would swallow eprintln! of a passing test.
            let _ = writeln!(std::io::stderr(), "SKIPPED: {why}, run {setup}");
            return;
        }
    };
    // Output goes to a file: no pipe can fill up and stall the script.
    let log = tempfile::NamedTempFile::new().unwrap();
    let started = std::time::Instant::now();
    let mut child = Command::new(&program)
        .arg(dir.join(script))
        .arg(env!("CARGO_BIN_EXE_i2v-mcp"))
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(log.path()).unwrap_or_default();
    match status {
        Some(s) if s.success() => {
            eprintln!(
                "{script}: {:.1} s\n{output}",
                started.elapsed().as_secs_f64()
            );
        }
        Some(s) => panic!("{script} failed ({s}):\n{output}"),
        None => panic!("{script} ran over {limit:?} and was killed:\n{output}"),
    }
}
