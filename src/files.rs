//! Whole files written atomically: the bytes go to a hidden temp file beside the target
//! (`.<name>.<pid>-<random>.part`, unique per writer, which the start-up cleaner recognises when a
//! crash leaves one) and are renamed over it, so a reader sees the old file or the new one, never
//! half of one.

use std::path::Path;

/// Write `bytes` to `path` atomically; on failure the temp file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{name}.{}-{:08x}.part",
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("a.bin");
        write_atomic(&path, b"first").unwrap_or_else(|e| panic!("{e}"));
        write_atomic(&path, b"second").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&path).ok().as_deref(), Some(&b"second"[..]));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(names.len(), 1, "{names:?}");
        // A target in a missing directory fails, and leaves nothing behind.
        assert!(write_atomic(&dir.path().join("no/such/x"), b"x").is_err());
    }
}
