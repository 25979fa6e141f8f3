//! The journal. A task is written here before its provider is called, so nothing paid is ever
//! lost: provider ids, progress, results and downloads survive a crash or restart. State
//! transitions are guarded in the backend (`UPDATE .. WHERE status IN (..)`) so the watcher, a
//! webhook and a cancel can race safely. Rows and domain types are kept apart: a `TaskRow`
//! becomes a `Task`.
//!
//! `Journal` is the interface the rest of the program uses: cheap to clone, async, and it names
//! no provider. Its backend is an enum: SQLite's calls block, so they run on tokio's blocking pool;
//! PostgreSQL's (`--database`, shared by replicas) are awaited directly.

mod batch;
mod migrate;
mod postgres;
mod row;
mod sqlite;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use batch::{BatchRow, ChangedRow, NewBatchRow};
pub use migrate::MIGRATIONS;
pub use postgres::MIGRATIONS as POSTGRES_MIGRATIONS;
pub use row::{
    BadRow, DailyBudget, Download, Inserted, ListFilter, Listed, NewTask, State, TaskRow, Update,
};

use crate::error::{Error, Result};
use crate::model::ProviderId;

/// Where images given inline are kept, by digest, so the journal holds their paths, not their
/// bytes.
pub fn inputs_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("inputs")
}

/// News from other replicas (PostgreSQL's LISTEN/NOTIFY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Task `id` changed (any replica wrote it).
    Changed(String),
    /// Whoever watches task `id` should poll it now.
    Wake(String),
    /// A process exited and handed its leases back: take its tasks over now.
    Released,
}

/// How often a process tails the SQLite journal's `events` for other processes' news.
const SQLITE_TAIL_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<sqlite::Sqlite>),
    Postgres(Arc<postgres::Postgres>),
}

/// The task journal (see the module docs).
#[derive(Clone)]
pub struct Journal {
    backend: Backend,
    /// Provider task ids accepted upstream whose journal write failed (a full disk, a lost
    /// database): kept here, shown on reads of their task, until the write lands (see
    /// `Watcher::record_submitted`).
    unrecorded: Arc<Mutex<HashMap<String, String>>>,
    /// Test hook: how many `mark_submitted` writes fail next as if the disk were full.
    submit_write_failures: Arc<AtomicU32>,
}

/// Dispatch `$call` to the backend: SQLite's on the blocking pool, PostgreSQL's awaited.
macro_rules! on_backend {
    ($self:ident, |$db:ident| $call:expr) => {
        match &$self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    let $db = &*db;
                    $call
                })
                .await
                .map_err(|e| Error::internal(format!("journal call did not finish: {e}")))?
            }
            Backend::Postgres(pg) => {
                let $db = &**pg;
                $call.await
            }
        }
    };
}

/// Whose creates a rate window counts: a provider's (its client-side limits) or one OAuth
/// subject's (`[budget.per_user_rate_limit]`). Both share `rate_events`, keyed by
/// [`RateKey::column`].
#[derive(Debug, Clone, Copy)]
pub enum RateKey<'a> {
    Provider(ProviderId),
    Owner(&'a str),
}

impl RateKey<'_> {
    /// The `rate_events.provider` value: the provider id, or `owner:` and the owner string
    /// (provider ids never hold a colon, so the two never meet).
    pub fn column(self) -> String {
        match self {
            RateKey::Provider(p) => p.as_str().to_string(),
            RateKey::Owner(o) => format!("owner:{o}"),
        }
    }
}

impl Journal {
    fn with(backend: Backend) -> Journal {
        Journal {
            backend,
            unrecorded: Arc::default(),
            submit_write_failures: Arc::default(),
        }
    }

    /// Open (or create) the SQLite journal at `path` and bring it to the newest version. Blocks:
    /// call it at startup, or from a blocking thread.
    pub fn open(path: &Path) -> Result<Journal> {
        Ok(Journal::with(Backend::Sqlite(Arc::new(
            sqlite::Sqlite::open(path)?,
        ))))
    }

    /// Connect to the PostgreSQL journal at `url` and bring it to the newest version. Blocks.
    pub fn open_postgres(url: &str) -> Result<Journal> {
        Ok(Journal::with(Backend::Postgres(Arc::new(
            postgres::Postgres::open(url)?,
        ))))
    }

    fn unrecorded(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.unrecorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A row as the application sees it: a provider id accepted but not yet written is filled in
    /// from memory.
    fn overlay(&self, mut row: TaskRow) -> TaskRow {
        if row.provider_task_id.is_none()
            && row.is_submitting()
            && let Some(ptid) = self.unrecorded().get(&row.id)
        {
            row.provider_task_id = Some(ptid.clone());
        }
        row
    }

    /// Insert a task, or return the existing one holding the same idempotency key. A key whose
    /// task was refused (nothing accepted upstream) is taken over by the new task. Of concurrent
    /// inserts with one key (in any process) exactly one inserts.
    pub async fn insert(&self, t: NewTask) -> Result<Inserted> {
        let inserted = on_backend!(self, |db| db.insert(&t))?;
        Ok(match inserted {
            Inserted::Existing(row) => Inserted::Existing(Box::new(self.overlay(*row))),
            new => new,
        })
    }

    pub async fn get(&self, id: &str) -> Result<Option<TaskRow>> {
        let id = id.to_string();
        let row = on_backend!(self, |db| db.get(&id))?;
        Ok(row.map(|r| self.overlay(r)))
    }

    pub async fn find_by_key(&self, key: &str) -> Result<Option<TaskRow>> {
        let key = key.to_string();
        let row = on_backend!(self, |db| db.find_by_key(&key))?;
        Ok(row.map(|r| self.overlay(r)))
    }

    /// The task with upstream id `ptid` at the first of `providers` that has one: the caller
    /// passes every provider that shares that upstream.
    pub async fn find_by_provider_id(
        &self,
        providers: &[ProviderId],
        ptid: &str,
    ) -> Result<Option<TaskRow>> {
        let (providers, ptid) = (providers.to_vec(), ptid.to_string());
        on_backend!(self, |db| db.find_by_provider_id(&providers, &ptid))
    }

    /// `submitting` -> `queued` with the provider's id (see `sqlite::Sqlite::mark_submitted`). If
    /// the write fails, the id is kept in memory and shown on reads until a later call lands.
    pub async fn mark_submitted(&self, id: &str, provider_task_id: &str, now: i64) -> Result<bool> {
        let written = match self.injected_failure() {
            Err(e) => Err(e),
            Ok(()) => {
                let (id, ptid) = (id.to_string(), provider_task_id.to_string());
                on_backend!(self, |db| db.mark_submitted(&id, &ptid, now))
            }
        };
        match written {
            Ok(n) => {
                self.unrecorded().remove(id);
                Ok(n)
            }
            Err(e) => {
                self.unrecorded()
                    .insert(id.to_string(), provider_task_id.to_string());
                Err(e)
            }
        }
    }

    /// The provider task id accepted for `id` that the journal has not recorded yet.
    pub fn unrecorded_submit(&self, id: &str) -> Option<String> {
        self.unrecorded().get(id).cloned()
    }

    /// Fault injection for tests: the next `n` `mark_submitted` writes fail as if the disk were
    /// full. Not for production use.
    #[doc(hidden)]
    pub fn inject_submit_write_failures(&self, n: u32) {
        self.submit_write_failures.store(n, Ordering::SeqCst);
    }

    fn injected_failure(&self) -> Result<()> {
        let take =
            self.submit_write_failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match take {
            Ok(_) => Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("database or disk is full (injected)".into()),
            )
            .into()),
            Err(_) => Ok(()),
        }
    }

    /// End an open task as failed. False if it was no longer open.
    pub async fn fail(&self, id: &str, error: &Error, now: i64) -> Result<bool> {
        let (id, error) = (id.to_string(), error.clone());
        on_backend!(self, |db| db.fail(&id, &error, now))
    }

    /// Apply a poll result under the guard; false if nothing changed.
    pub async fn apply(&self, id: &str, u: &Update, now: i64) -> Result<bool> {
        let (id, u) = (id.to_string(), u.clone());
        on_backend!(self, |db| db.apply(&id, &u, now))
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
        on_backend!(self, |db| db.refresh_url(&id, &url, expires, now))
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
        on_backend!(self, |db| db.set_downloaded(
            &id,
            &path,
            bytes,
            &sha,
            note.as_deref(),
            now
        ))
    }

    pub async fn set_download_failed(&self, id: &str, note: &str, now: i64) -> Result<()> {
        let (id, note) = (id.to_string(), note.to_string());
        on_backend!(self, |db| db.set_download_failed(&id, &note, now))
    }

    /// A download that gave up earlier is tried again.
    pub async fn retry_download(&self, id: &str, now: i64) -> Result<bool> {
        let id = id.to_string();
        on_backend!(self, |db| db.retry_download(&id, now))
    }

    pub async fn set_note(&self, id: &str, note: Option<&str>, now: i64) -> Result<()> {
        let (id, note) = (id.to_string(), note.map(str::to_string));
        on_backend!(self, |db| db.set_note(&id, note.as_deref(), now))
    }

    /// Open task -> cancelled. False if it was already terminal.
    pub async fn cancel(&self, id: &str, note: &str, now: i64) -> Result<bool> {
        let (id, note) = (id.to_string(), note.to_string());
        on_backend!(self, |db| db.cancel(&id, &note, now))
    }

    /// The newest tasks matching `f`; undecodable rows are skipped and named.
    pub async fn list(&self, f: &ListFilter) -> Result<Listed> {
        let f = f.clone();
        let mut listed = on_backend!(self, |db| db.list(&f))?;
        listed.rows = listed.rows.into_iter().map(|r| self.overlay(r)).collect();
        Ok(listed)
    }

    /// Tasks to pick up after a restart: open ones and unfinished downloads.
    pub async fn unfinished(&self) -> Result<Vec<TaskRow>> {
        on_backend!(self, |db| db.unfinished())
    }

    /// `unfinished` for startup code that cannot await (`Core::start`). Blocks.
    pub fn unfinished_blocking(&self) -> Result<Vec<TaskRow>> {
        match &self.backend {
            Backend::Sqlite(db) => db.unfinished(),
            Backend::Postgres(pg) => pg.unfinished_blocking(),
        }
    }

    /// `fail` for startup code that cannot await (`Core::start`). Blocks.
    pub fn fail_blocking(&self, id: &str, error: &Error, now: i64) -> Result<bool> {
        match &self.backend {
            Backend::Sqlite(db) => db.fail(id, error, now),
            Backend::Postgres(pg) => pg.fail_blocking(id, error, now),
        }
    }

    /// Take or keep the lease on task `id` for `owner` until `until` (ms): false while another
    /// process's lease runs (another server on the data dir, or a replica on the database).
    pub async fn claim(&self, id: &str, owner: &str, until: i64, now: i64) -> Result<bool> {
        let (id, owner) = (id.to_string(), owner.to_string());
        on_backend!(self, |db| db.claim(&id, &owner, until, now))
    }

    /// Extend the leases `owner` holds.
    pub async fn renew(&self, owner: &str, until: i64) -> Result<u64> {
        let owner = owner.to_string();
        match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || db.renew(&owner, until, crate::model::now_ms()))
                    .await
                    .map_err(|e| Error::internal(format!("journal call did not finish: {e}")))?
            }
            Backend::Postgres(pg) => pg.renew(&owner, until).await,
        }
    }

    /// Hand back every lease `owner` holds (its process is exiting), so that the other
    /// processes take those tasks over now rather than when the leases lapse.
    pub async fn release(&self, owner: &str, now: i64) -> Result<u64> {
        let owner = owner.to_string();
        on_backend!(self, |db| db.release(&owner, now))
    }

    /// Take over tasks whose process stopped renewing their lease, and tasks never leased since
    /// `stale` (ms).
    pub async fn claim_orphans(
        &self,
        owner: &str,
        until: i64,
        now: i64,
        stale: i64,
    ) -> Result<Vec<String>> {
        let owner = owner.to_string();
        on_backend!(self, |db| db.claim_orphans(&owner, until, now, stale))
    }

    /// Tasks left `submitting` by a process that died (its lease on them lapsed before `now`), or
    /// never leased and created before `stale`.
    pub async fn cut_off_submits(&self, now: i64, stale: i64) -> Result<Vec<String>> {
        on_backend!(self, |db| db.cut_off_submits(now, stale))
    }

    /// `cut_off_submits` for startup code that cannot await (`Core::start`). Blocks.
    pub fn cut_off_submits_blocking(&self, now: i64, stale: i64) -> Result<Vec<String>> {
        match &self.backend {
            Backend::Sqlite(db) => db.cut_off_submits(now, stale),
            Backend::Postgres(pg) => pg.cut_off_submits_blocking(now, stale),
        }
    }

    /// Ask the process that holds task `id`'s lease to poll it now.
    pub async fn wake_elsewhere(&self, id: &str) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let (db, id) = (db.clone(), id.to_string());
                tokio::task::spawn_blocking(move || {
                    db.announce(sqlite::WAKE, &id, crate::model::now_ms())
                })
                .await
                .map_err(|e| Error::internal(format!("journal call did not finish: {e}")))?
            }
            Backend::Postgres(pg) => pg.notify(postgres::WAKE, id).await,
        }
    }

    /// Changes made by other processes, as they commit: `Changed(id)`, `Wake(id)` and `Released`
    /// events until the connection drops. PostgreSQL pushes them (LISTEN/NOTIFY); on SQLite a
    /// tail reads the journal's `events` every `SQLITE_TAIL_EVERY`, and only when another
    /// process committed something since (`PRAGMA data_version`).
    pub async fn listen(&self) -> Result<tokio::sync::mpsc::UnboundedReceiver<Event>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        match &self.backend {
            Backend::Postgres(pg) => {
                let mut raw = pg.listen().await?;
                tokio::spawn(async move {
                    while let Some((channel, id)) = raw.recv().await {
                        let event = match channel.as_str() {
                            postgres::WAKE => Event::Wake(id),
                            postgres::RELEASED => Event::Released,
                            _ => Event::Changed(id),
                        };
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                });
            }
            Backend::Sqlite(db) => {
                let db = db.clone();
                let mut after = {
                    let db = db.clone();
                    tokio::task::spawn_blocking(move || db.events_head())
                        .await
                        .map_err(|e| {
                            Error::internal(format!("journal call did not finish: {e}"))
                        })??
                };
                tokio::spawn(async move {
                    let mut version = 0;
                    loop {
                        tokio::time::sleep(SQLITE_TAIL_EVERY).await;
                        if tx.is_closed() {
                            return;
                        }
                        let db = db.clone();
                        let read = tokio::task::spawn_blocking(move || {
                            let lines = db.events_after(after, &mut version);
                            (lines, version)
                        })
                        .await;
                        let lines = match read {
                            Ok((Ok(lines), v)) => {
                                version = v;
                                lines
                            }
                            Ok((Err(e), _)) => {
                                tracing::warn!(error = %e, "cannot read the journal's events");
                                continue;
                            }
                            Err(_) => return,
                        };
                        for (seq, kind, id) in lines {
                            after = seq;
                            let event = match kind.as_str() {
                                sqlite::WAKE => Event::Wake(id),
                                sqlite::RELEASED => Event::Released,
                                _ => Event::Changed(id),
                            };
                            if tx.send(event).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        }
        Ok(rx)
    }

    /// Take a create slot at `provider` in every window `(max, period ms)`, counted in the
    /// journal so that every process on it keeps to one limit: `Err((wait ms, window index))`
    /// when one is full.
    pub async fn take_rate_slot(
        &self,
        key: RateKey<'_>,
        windows: &[(i64, i64)],
    ) -> Result<std::result::Result<(), (i64, usize)>> {
        let key = key.column();
        match &self.backend {
            Backend::Sqlite(db) => {
                let (db, windows) = (db.clone(), windows.to_vec());
                tokio::task::spawn_blocking(move || {
                    db.take_rate_slot(&key, &windows, crate::model::now_ms())
                })
                .await
                .map_err(|e| Error::internal(format!("journal call did not finish: {e}")))?
            }
            Backend::Postgres(pg) => pg.take_rate_slot(&key, windows).await,
        }
    }

    /// Estimated spend of tasks created since `since_ms` that may have been charged.
    pub async fn spent_since(&self, since_ms: i64) -> Result<f64> {
        on_backend!(self, |db| db.spent_since(since_ms))
    }

    /// A still-valid upload URL of the image with digest `sha256` at `provider`.
    pub async fn upload_get(
        &self,
        provider: ProviderId,
        sha256: &str,
        now: i64,
    ) -> Result<Option<String>> {
        let sha = sha256.to_string();
        on_backend!(self, |db| db.upload_get(provider, &sha, now))
    }

    pub async fn upload_put(
        &self,
        provider: ProviderId,
        sha256: &str,
        url: &str,
        expires_at: i64,
    ) -> Result<()> {
        let (sha, url) = (sha256.to_string(), url.to_string());
        on_backend!(self, |db| db.upload_put(provider, &sha, &url, expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_calls_run_off_the_async_workers() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let worker = std::thread::current().id();
        let seen = async { Ok::<_, Error>(on_backend!(j, |db| db.probe_thread())) }
            .await
            .unwrap();
        assert_ne!(seen, worker, "a journal call ran on the async worker");
    }
}
