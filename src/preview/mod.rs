//! Contact sheets: a few frames across a finished video in one small labelled JPEG the agent can
//! look at, and the first frame as a poster, kept beside the video as `{id}.sheet.jpg` and
//! `{id}.poster.jpg`.
//!
//! A provider's MP4 is untrusted input to C code (OpenH264), so it is decoded in a child process
//! of this same binary (`i2v-mcp __contact-sheet <mp4> <out-dir> <id>`) with a wall-clock timeout
//! and an address-space limit: a malformed or hostile file costs at most its sheet, never the
//! server. The child's stdout is a pipe read here (stdout is the protocol in stdio mode).

mod join;
mod sheet;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::PreviewConfig;

pub use join::Joined;
pub use sheet::{FRAMES, MAX_WIDTH};

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "__contact-sheet";

/// Where a task's sheet lives: beside its video.
pub fn sheet_path(video: &Path, id: &str) -> PathBuf {
    video.with_file_name(format!("{id}.sheet.jpg"))
}

/// Where a task's poster (its first frame) lives: beside its video.
pub fn poster_path(video: &Path, id: &str) -> PathBuf {
    video.with_file_name(format!("{id}.poster.jpg"))
}

/// What the child reports on success (one JSON line on its stdout).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub sheet: PathBuf,
    pub poster: PathBuf,
    pub width: u32,
    pub height: u32,
    pub sheet_bytes: u64,
    pub poster_bytes: u64,
    /// Frames on the sheet.
    pub frames: usize,
    /// Frames decoded in all.
    pub decoded: usize,
}

/// Bytes of video per step of the sheet's timeout: the whole clip is decoded, so the time grows
/// with it. Measured (`cargo run --release --example bench_sheet -- --wan3`, load 5 on 2 cores): a
/// 30 s 1080P 30 fps clip of 28 MiB took 10.2 s in the child (5.1 s CPU), peak RSS 64 MiB.
const SHEET_STEP_BYTES: u64 = 16 * 1024 * 1024;
/// At most this many times the configured timeout.
const SHEET_MAX_STEPS: u32 = 4;

/// The timeout for a video of `bytes`: the configured one per started 16 MiB, at most 4 times it
/// (a 30 s 1080P Wan 3.0 video gets two steps; every 5-15 s clip so far, one).
pub fn timeout_for(base: Duration, bytes: u64) -> Duration {
    let steps = bytes
        .div_ceil(SHEET_STEP_BYTES)
        .clamp(1, u64::from(SHEET_MAX_STEPS));
    base * steps as u32
}

/// Make the sheet and poster of `video` (task `id`) in a child process, bounded by the config's
/// timeout (scaled by the video's size, [`timeout_for`]) and memory limit. The error is one
/// sentence saying why there is no sheet.
pub async fn make(cfg: &PreviewConfig, video: &Path, id: &str) -> Result<Report, String> {
    let dir = video
        .parent()
        .ok_or("the video has no directory")?
        .to_path_buf();
    let mut args: Vec<OsString> = vec![video.into(), dir.into(), id.into()];
    if let Some(d) = cfg.child_delay {
        args.push("--delay-ms".into());
        args.push(d.as_millis().to_string().into());
    }
    let bytes = tokio::fs::metadata(video).await.map_or(0, |m| m.len());
    let started = Instant::now();
    let report: Report = run_child(cfg, &args, timeout_for(cfg.timeout, bytes)).await?;
    tracing::debug!(
        task = id,
        ms = started.elapsed().as_millis() as u64,
        bytes = report.sheet_bytes,
        "contact sheet made"
    );
    Ok(report)
}

/// What the child reports for `--last-frame`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastFrame {
    pub png: PathBuf,
    pub width: u32,
    pub height: u32,
}

/// The last frame of `video`, decoded in the child and written as a lossless PNG to `out`
/// (a storyboard's next shot starts from it).
pub async fn last_frame(
    cfg: &PreviewConfig,
    video: &Path,
    out: &Path,
) -> Result<LastFrame, String> {
    let args: Vec<OsString> = vec!["--last-frame".into(), video.into(), out.into()];
    let bytes = tokio::fs::metadata(video).await.map_or(0, |m| m.len());
    run_child(cfg, &args, timeout_for(cfg.timeout, bytes)).await
}

/// Join `shots` (label, video), in order, into one MP4 at `out` without re-encoding, in the
/// child (the videos are untrusted); the error says which shot cannot follow and why.
pub async fn join(
    cfg: &PreviewConfig,
    shots: &[(String, PathBuf)],
    out: &Path,
) -> Result<Joined, String> {
    let mut args: Vec<OsString> = vec!["--join".into(), out.into()];
    for (label, path) in shots {
        args.push(label.into());
        args.push(path.into());
    }
    // Copying is quicker than decoding, but the whole result is built in the child's memory.
    let timeout = cfg.timeout * (shots.len() as u32).clamp(1, 30);
    run_child(cfg, &args, timeout).await
}

/// Run the child with `args` under the config's limits; its one JSON line, read as `T`.
async fn run_child<T: serde::de::DeserializeOwned>(
    cfg: &PreviewConfig,
    args: &[OsString],
    timeout: Duration,
) -> Result<T, String> {
    let exe = match &cfg.helper {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?,
    };
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg(SUBCOMMAND).args(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    limit_child(&mut cmd, cfg.memory_bytes);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the decoder process: {e}"))?;
    // On timeout the future is dropped with the child in it: kill_on_drop kills it.
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(format!("the decoder process failed: {e}")),
        Err(_) => {
            return Err(format!(
                "decoding took longer than {} ms and was stopped",
                timeout.as_millis()
            ));
        }
    };
    if !out.status.success() {
        return Err(failure(&out));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).map_err(|_| "the decoder process gave no result".to_string())
}

/// Why the child failed, in one short sentence.
fn failure(out: &std::process::Output) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = out.status.signal() {
        return format!("the decoder crashed (signal {sig})");
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let last: String = last.trim().chars().take(300).collect();
    if last.is_empty() {
        format!("the decoder failed ({})", out.status)
    } else {
        last
    }
}

/// Cap the child's address space (a hostile file cannot exhaust memory) and turn off core dumps.
fn limit_child(cmd: &mut tokio::process::Command, memory_bytes: u64) {
    // SAFETY: the closure runs in the forked child before exec; it calls only `setrlimit`, which
    // is async-signal-safe, allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            let mem = libc::rlimit {
                rlim_cur: memory_bytes as libc::rlim_t,
                rlim_max: memory_bytes as libc::rlim_t,
            };
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &mem) != 0
                || libc::setrlimit(libc::RLIMIT_CORE, &none) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The child: `__contact-sheet <mp4> <out-dir> <id> [--delay-ms N]`. Writes both JPEGs
/// atomically (temp file + rename) and prints one JSON [`Report`] line; on failure, one line on
/// stderr and exit status 2.
pub fn child_main(args: &[OsString]) -> ExitCode {
    // A panic on a malformed file is an answer like any other error: one line, no backtrace.
    std::panic::set_hook(Box::new(|_| {}));
    let run = || match args.first().and_then(|a| a.to_str()) {
        Some("--last-frame") => child_last_frame(&args[1..]),
        Some("--join") => child_join(&args[1..]),
        _ => child(args).and_then(|r| serde_json::to_value(r).map_err(|e| e.to_string())),
    };
    let result = std::panic::catch_unwind(run).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        Err(format!("the decoder gave up on this file ({msg})"))
    });
    match result {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot encode the report: {e}");
                ExitCode::from(2)
            }
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn child(args: &[OsString]) -> Result<Report, String> {
    let usage = || format!("usage: i2v-mcp {SUBCOMMAND} <mp4> <out-dir> <task-id>");
    let [video, dir, id, rest @ ..] = args else {
        return Err(usage());
    };
    if let [flag, ms] = rest
        && flag == "--delay-ms"
    {
        // Test seam: a decoder that hangs, to prove the parent's timeout.
        let ms: u64 = ms.to_string_lossy().parse().map_err(|_| usage())?;
        std::thread::sleep(Duration::from_millis(ms));
    }
    let id = id.to_string_lossy();
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!("bad task id '{id}'"));
    }
    let dir = Path::new(dir);
    let made = sheet::make(Path::new(video))?;
    let sheet = dir.join(format!("{id}.sheet.jpg"));
    let poster = dir.join(format!("{id}.poster.jpg"));
    write_atomic(&poster, &made.poster)?;
    write_atomic(&sheet, &made.sheet)?;
    Ok(Report {
        sheet,
        poster,
        width: made.width,
        height: made.height,
        sheet_bytes: made.sheet.len() as u64,
        poster_bytes: made.poster.len() as u64,
        frames: made.frames,
        decoded: made.decoded,
    })
}

/// `__contact-sheet --last-frame <mp4> <out.png>`.
fn child_last_frame(args: &[OsString]) -> Result<serde_json::Value, String> {
    let [video, out] = args else {
        return Err(format!(
            "usage: i2v-mcp {SUBCOMMAND} --last-frame <mp4> <out.png>"
        ));
    };
    let (png, width, height) = sheet::last_frame(Path::new(video))?;
    let png_path = PathBuf::from(out);
    write_atomic(&png_path, &png)?;
    serde_json::to_value(LastFrame {
        png: png_path,
        width,
        height,
    })
    .map_err(|e| e.to_string())
}

/// `__contact-sheet --join <out.mp4> (<label> <mp4>)...`.
fn child_join(args: &[OsString]) -> Result<serde_json::Value, String> {
    let usage = || format!("usage: i2v-mcp {SUBCOMMAND} --join <out.mp4> (<label> <mp4>)...");
    let [out, pairs @ ..] = args else {
        return Err(usage());
    };
    if pairs.is_empty() || pairs.len() % 2 != 0 {
        return Err(usage());
    }
    let shots: Vec<(String, PathBuf)> = pairs
        .chunks_exact(2)
        .map(|p| (p[0].to_string_lossy().into_owned(), PathBuf::from(&p[1])))
        .collect();
    let (bytes, joined) = join::join(&shots)?;
    write_atomic(Path::new(out), &bytes)?;
    serde_json::to_value(joined).map_err(|e| e.to_string())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    crate::files::write_atomic(path, bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Decode and compose in this process, without the child's limits: for benchmarks and tests on
/// trusted files only.
pub fn make_in_process(video: &Path) -> Result<(Vec<u8>, Vec<u8>, u32, u32), String> {
    let m = sheet::make(video)?;
    Ok((m.sheet, m.poster, m.width, m.height))
}

#[cfg(test)]
mod timeout_tests {
    use super::*;

    #[test]
    fn the_sheet_timeout_grows_with_the_video_and_is_capped() {
        let base = Duration::from_secs(20);
        assert_eq!(timeout_for(base, 0), base);
        assert_eq!(timeout_for(base, 3_000_000), base, "a 5 s 720p clip");
        // The measured 30 s 1080P 30 fps clip: 29,660,922 bytes.
        assert_eq!(timeout_for(base, 29_660_922), base * 2);
        assert_eq!(timeout_for(base, 512 << 20), base * 4, "capped");
    }
}
