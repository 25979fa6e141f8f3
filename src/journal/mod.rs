//! The journal. A task is written here before its provider is called, so nothing paid is ever
//! lost: provider ids, progress, results and downloads survive a crash or restart. State
//! transitions are guarded in the backend (`UPDATE .. WHERE status IN (..)`) so the watcher, a
//! webhook and a cancel can race safely. Rows and domain types are kept apart: a `TaskRow`
//! becomes a `Task`.
//!
//! `Journal` is the interface the rest of the program uses: cheap to clone, async, and it names
//! no provider. Its backend is an enum: SQLite's calls block, so they run on tokio's blocking pool;
//! a later backend with an async client (PostgreSQL) is one more variant awaited directly.

mod lock;
mod migrate;
mod row;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

pub use lock::ServeLock;
pub use migrate::MIGRATIONS;
pub use row::{BadRow, Download, Inserted, ListFilter, Listed, NewTask, State, TaskRow, Update};

use crate::error::{Error, Result};
use crate::model::ProviderId;

/// Where images given inline are kept, by digest, so the journal holds their paths, not their
/// bytes.
pub fn inputs_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("inputs")
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<sqlite::Sqlite>),
}

/// The task journal (see the module docs).
#[derive(Clone)]
pub struct Journal {
    backend: Backend,
}

impl Journal {
    /// Open (or create) the SQLite journal at `path` and bring it to the newest version. Blocks:
    /// call it at startup, or from a blocking thread.
    pub fn open(path: &Path) -> Result<Journal> {
        Ok(Journal {
            backend: Backend::Sqlite(Arc::new(sqlite::Sqlite::open(path)?)),
        })
    }

    /// Run `f` against the backend off the async workers.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&sqlite::Sqlite) -> Result<T> + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || f(&db))
                    .await
                    .map_err(|e| Error::internal(format!("journal call did not finish: {e}")))?
            }
        }
    }

    /// Insert a task, or return the existing one holding the same idempotency key. A key whose
    /// task was refused (nothing accepted upstream) is taken over by the new task. Of concurrent
    /// inserts with one key (in any process) exactly one inserts.
    pub async fn insert(&self, t: NewTask) -> Result<Inserted> {
        self.call(move |db| db.insert(&t)).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<TaskRow>> {
        let id = id.to_string();
        self.call(move |db| db.get(&id)).await
    }

    pub async fn find_by_key(&self, key: &str) -> Result<Option<TaskRow>> {
        let key = key.to_string();
        self.call(move |db| db.find_by_key(&key)).await
    }

    /// The task with upstream id `ptid` at the first of `providers` that has one: the caller
    /// passes every provider that shares that upstream.
    pub async fn find_by_provider_id(
        &self,
        providers: &[ProviderId],
        ptid: &str,
    ) -> Result<Option<TaskRow>> {
        let (providers, ptid) = (providers.to_vec(), ptid.to_string());
        self.call(move |db| db.find_by_provider_id(&providers, &ptid))
            .await
    }

    /// `submitting` -> `queued` with the provider's id (see `sqlite::Sqlite::mark_submitted`). If
    /// the write fails, the id is kept in memory and shown on reads until a later call lands.
    pub async fn mark_submitted(&self, id: &str, provider_task_id: &str, now: i64) -> Result<bool> {
        let (id, ptid) = (id.to_string(), provider_task_id.to_string());
        self.call(move |db| db.mark_submitted(&id, &ptid, now))
            .await
    }

    /// The provider task id accepted for `id` that the journal has not recorded yet.
    pub fn unrecorded_submit(&self, id: &str) -> Option<String> {
        match &self.backend {
            Backend::Sqlite(db) => db.unrecorded_submit(id),
        }
    }

    /// Fault injection for tests: the next `n` `mark_submitted` writes fail as if the disk were
    /// full. Not for production use.
    #[doc(hidden)]
    pub fn inject_submit_write_failures(&self, n: u32) {
        match &self.backend {
            Backend::Sqlite(db) => db.inject_submit_write_failures(n),
        }
    }

    /// End an open task as failed. False if it was no longer open.
    pub async fn fail(&self, id: &str, error: &Error, now: i64) -> Result<bool> {
        let (id, error) = (id.to_string(), error.clone());
        self.call(move |db| db.fail(&id, &error, now)).await
    }

    /// Apply a poll result under the guard; false if nothing changed.
    pub async fn apply(&self, id: &str, u: &Update, now: i64) -> Result<bool> {
        let (id, u) = (id.to_string(), u.clone());
        self.call(move |db| db.apply(&id, &u, now)).await
    }

    /// Replace an expired result URL with a fresh one from the provider.
    pub async fn refresh_url(
        &self,
        id: &str,
        url: &str,
        expires: Option<i64>,
        now: i64,
    ) -> Result<()> {
        let (id, url) = (id.to_string(), url.to_string());
        self.call(move |db| db.refresh_url(&id, &url, expires, now))
            .await
    }

    /// The video is on disk: the task settles, with `note`.
    pub async fn set_downloaded(
        &self,
        id: &str,
        path: &str,
        bytes: u64,
        sha256: &str,
        note: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let (id, path, sha) = (id.to_string(), path.to_string(), sha256.to_string());
        let note = note.map(str::to_string);
        self.call(move |db| db.set_downloaded(&id, &path, bytes, &sha, note.as_deref(), now))
            .await
    }

    pub async fn set_download_failed(&self, id: &str, note: &str, now: i64) -> Result<()> {
        let (id, note) = (id.to_string(), note.to_string());
        self.call(move |db| db.set_download_failed(&id, &note, now))
            .await
    }

    /// A download that gave up earlier is tried again.
    pub async fn retry_download(&self, id: &str, now: i64) -> Result<bool> {
        let id = id.to_string();
        self.call(move |db| db.retry_download(&id, now)).await
    }

    pub async fn set_note(&self, id: &str, note: Option<&str>, now: i64) -> Result<()> {
        let (id, note) = (id.to_string(), note.map(str::to_string));
        self.call(move |db| db.set_note(&id, note.as_deref(), now))
            .await
    }

    /// Open task -> cancelled. False if it was already terminal.
    pub async fn cancel(&self, id: &str, note: &str, now: i64) -> Result<bool> {
        let (id, note) = (id.to_string(), note.to_string());
        self.call(move |db| db.cancel(&id, &note, now)).await
    }

    /// The newest tasks matching `f`; undecodable rows are skipped and named.
    pub async fn list(&self, f: &ListFilter) -> Result<Listed> {
        let f = f.clone();
        self.call(move |db| db.list(&f)).await
    }

    /// Tasks to pick up after a restart: open ones and unfinished downloads.
    pub async fn unfinished(&self) -> Result<Vec<TaskRow>> {
        self.call(|db| db.unfinished()).await
    }

    /// `unfinished` for startup code that cannot await (`Core::start`). Blocks.
    pub fn unfinished_blocking(&self) -> Result<Vec<TaskRow>> {
        match &self.backend {
            Backend::Sqlite(db) => db.unfinished(),
        }
    }

    /// `fail` for startup code that cannot await (`Core::start`). Blocks.
    pub fn fail_blocking(&self, id: &str, error: &Error, now: i64) -> Result<bool> {
        match &self.backend {
            Backend::Sqlite(db) => db.fail(id, error, now),
        }
    }

    /// Estimated spend of tasks created since `since_ms` that may have been charged.
    pub async fn spent_since(&self, since_ms: i64) -> Result<f64> {
        self.call(move |db| db.spent_since(since_ms)).await
    }

    /// A still-valid upload URL of the image with digest `sha256` at `provider`.
    pub async fn upload_get(
        &self,
        provider: ProviderId,
        sha256: &str,
        now: i64,
    ) -> Result<Option<String>> {
        let sha = sha256.to_string();
        self.call(move |db| db.upload_get(provider, &sha, now))
            .await
    }

    pub async fn upload_put(
        &self,
        provider: ProviderId,
        sha256: &str,
        url: &str,
        expires_at: i64,
    ) -> Result<()> {
        let (sha, url) = (sha256.to_string(), url.to_string());
        self.call(move |db| db.upload_put(provider, &sha, &url, expires_at))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_run_off_the_async_workers() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let worker = std::thread::current().id();
        let seen = j
            .call(move |_| Ok(std::thread::current().id()))
            .await
            .unwrap();
        assert_ne!(seen, worker, "a journal call ran on the async worker");
    }
}
