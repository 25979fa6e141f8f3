//! One server per data dir.

use std::path::Path;

use crate::error::{Error, Result};

/// One server per data dir: held by `serve` for its lifetime (an OS file lock, so a crash or a
/// SIGKILL releases it). Two servers on one journal would poll every task twice and download
/// every video twice. One-shot CLI commands take no lock: they watch only the task they touch.
#[derive(Debug)]
pub struct ServeLock {
    _file: std::fs::File,
}

impl ServeLock {
    /// Take the lock, or fail naming the server that holds it. A data dir where no lock file can
    /// be made gives `Ok(None)` with a warning: the server still starts and reports the unusable
    /// data dir to every call that needs it.
    pub fn acquire(data_dir: &Path) -> Result<Option<ServeLock>> {
        use std::io::{Read, Seek, Write};
        let path = data_dir.join("serve.lock");
        let unlocked = |e: std::io::Error| {
            tracing::warn!(lock = %path.display(), error = %e, "cannot take the data dir lock; serving without it");
            Ok(None)
        };
        if let Err(e) = std::fs::create_dir_all(data_dir) {
            return unlocked(e);
        }
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => return unlocked(e),
        };
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the message a second server shows.
                let written = file
                    .set_len(0)
                    .and_then(|()| file.rewind())
                    .and_then(|()| writeln!(file, "{}", std::process::id()));
                if let Err(e) = written {
                    tracing::warn!(lock = %path.display(), error = %e, "cannot write the pid into the lock file");
                }
                Ok(Some(ServeLock { _file: file }))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "unknown pid".to_string(),
                    pid => format!("pid {pid}"),
                };
                Err(Error::internal(format!(
                    "another i2v-mcp server ({holder}) already serves the data dir '{}'",
                    data_dir.display()
                ))
                .with_next_step(
                    "use that server, stop it first, or give this one its own I2V_MCP_DATA_DIR; one-shot commands (create, get, tasks) work beside it",
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => unlocked(e),
        }
    }
}
