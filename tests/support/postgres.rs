//! A real PostgreSQL server for the tests (Debian's `postgresql` package): one per test binary,
//! started on first use in a temporary directory, as `nobody` when the tests run as root, listening
//! only on a unix socket in that directory; one fresh database per test. It stops when the test
//! binary ends, however it ends: a shell holds the server and kills it when its stdin (a pipe
//! from this process) closes.
//!
//! Without the package installed a test prints `SKIPPED: ...` and passes, except under CI (env
//! `CI` set), where it fails: `.ci/run` installs the package.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const USER: &str = "i2v";

pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    _holder: Child,
}

impl PgServer {
    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// A URL for database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{USER}@localhost/{db}?host={}&port={}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// A new, empty database and its URL.
    pub fn database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", &self.socket_dir().display().to_string()])
            .args(["-p", &self.port.to_string(), "-U", USER, &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "createdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    /// Run SQL on database `url` with psql (for tests that tamper with rows).
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([url, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// The newest installed PostgreSQL's bin dir.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

/// The shared server, or `None` (after printing SKIPPED) when PostgreSQL is not installed.
pub fn server(test: &str) -> Option<&'static PgServer> {
    static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
    let server = SERVER.get_or_init(|| bin_dir().map(start)).as_ref();
    if server.is_none() {
        let why = "PostgreSQL is not installed (apt-get install postgresql)";
        assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
        eprintln!("SKIPPED: {test}: {why}");
    }
    server
}

/// A fresh database on the shared server, or `None` (after printing SKIPPED).
pub fn database(test: &str) -> Option<String> {
    server(test).map(PgServer::database)
}

fn as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `cmd` run as the server's OS user: `nobody` when we are root (PostgreSQL refuses root).
fn as_server_user(program: &Path) -> Command {
    if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start(bin: PathBuf) -> PgServer {
    let dir = tempfile::Builder::new().prefix("i2v-pg").tempdir().unwrap();
    let (data, run) = (dir.path().join("data"), dir.path().join("run"));
    for d in [&data, &run] {
        std::fs::create_dir(d).unwrap();
    }
    if as_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let nobody = Some(65534);
        for d in [dir.path(), &data, &run] {
            std::os::unix::fs::chown(d, nobody, nobody).unwrap();
        }
    }
    let out = as_server_user(&bin.join("initdb"))
        .args(["-D", &data.display().to_string(), "-U", USER, "-A", "trust"])
        .args(["--no-sync", "-E", "UTF8", "--locale", "C"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = 15432 + (std::process::id() % 20000) as u16;
    // The shell runs the server and stops it (fast shutdown) when its stdin closes: when this
    // test binary exits, whatever way it exits.
    let script = format!(
        "'{}' -D '{}' -k '{}' -p {port} -c listen_addresses= -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 \
         -c shared_buffers=32MB >'{}/log' 2>&1 & pid=$!; cat >/dev/null; kill -INT $pid; wait $pid; \
         rm -rf '{}'",
        bin.join("postgres").display(),
        data.display(),
        run.display(),
        run.display(),
        dir.path().display(),
    );
    let mut holder = as_server_user(Path::new("/bin/sh"))
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Keep the pipe's write end open for as long as this process lives.
    std::mem::forget(holder.stdin.take());
    let server = PgServer {
        dir,
        bin,
        port,
        _holder: holder,
    };
    wait_ready(&server);
    server
}

fn wait_ready(s: &PgServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = Command::new(s.bin.join("pg_isready"))
            .args(["-h", &s.socket_dir().display().to_string()])
            .args(["-p", &s.port.to_string(), "-U", USER, "-d", "postgres"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|st| st.success());
        if ok {
            return;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(s.socket_dir().join("log")).unwrap_or_default();
            panic!("PostgreSQL did not start within 30 s: {log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
