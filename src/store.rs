//! The SQLite journal. A task is written here before its provider is called, so nothing paid is
//! ever lost: provider ids, progress, results and downloads survive a crash or restart. State
//! transitions are guarded in SQL (`UPDATE .. WHERE status IN (..)`) so the watcher, a webhook and
//! a cancel can race safely. Rows and domain types are kept apart: a `TaskRow` becomes a `Task`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{Category, Error, Result};
use crate::model::{ProviderId, Status, Task, Video, rfc3339};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tasks (
    id               TEXT PRIMARY KEY,
    provider         TEXT NOT NULL,
    model            TEXT NOT NULL,
    provider_task_id TEXT,
    status           TEXT NOT NULL,
    request          TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    idempotency_key  TEXT UNIQUE,
    progress         INTEGER,
    eta              INTEGER,
    estimated_cost   REAL,
    video_url        TEXT,
    url_expires_at   INTEGER,
    local_path       TEXT,
    bytes            INTEGER,
    sha256           TEXT,
    download         TEXT,
    error_category   TEXT,
    error_message    TEXT,
    error_retryable  INTEGER,
    error_next_step  TEXT,
    note             TEXT,
    webhook_secret   TEXT,
    polls            INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks(status);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at);
CREATE TABLE IF NOT EXISTS uploads (
    provider   TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    url        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (provider, sha256)
);
"#;

/// Journal status: the public five plus `submitting` (written before the provider is called).
pub const SUBMITTING: &str = "submitting";
const OPEN: &str = "('submitting','queued','running')";

/// Download state of a succeeded task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Download {
    Pending,
    Done,
    Failed,
}

impl Download {
    fn as_str(self) -> &'static str {
        match self {
            Download::Pending => "pending",
            Download::Done => "done",
            Download::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Option<Download> {
        match s {
            "pending" => Some(Download::Pending),
            "done" => Some(Download::Done),
            "failed" => Some(Download::Failed),
            _ => None,
        }
    }
}

/// One journal row.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: String,
    pub provider: ProviderId,
    pub model: String,
    pub provider_task_id: Option<String>,
    /// `submitting` or one of the public statuses.
    pub status: String,
    pub request: String,
    pub fingerprint: String,
    pub idempotency_key: Option<String>,
    pub progress: Option<u8>,
    pub eta: Option<u32>,
    pub estimated_cost: Option<f64>,
    pub video_url: Option<String>,
    pub url_expires_at: Option<i64>,
    pub local_path: Option<String>,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    pub download: Option<Download>,
    pub error: Option<Error>,
    pub note: Option<String>,
    pub webhook_secret: Option<String>,
    pub polls: u32,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

impl TryFrom<&Row<'_>> for TaskRow {
    type Error = rusqlite::Error;
    fn try_from(r: &Row<'_>) -> rusqlite::Result<TaskRow> {
        let provider: String = r.get("provider")?;
        let provider = provider.parse().map_err(|_| {
            rusqlite::Error::InvalidColumnType(0, "provider".into(), rusqlite::types::Type::Text)
        })?;
        let category: Option<String> = r.get("error_category")?;
        let error = category.map(|c| Error {
            category: Category::parse(&c).unwrap_or(Category::Internal),
            message: r
                .get::<_, Option<String>>("error_message")
                .ok()
                .flatten()
                .unwrap_or_default(),
            retryable: r
                .get::<_, Option<bool>>("error_retryable")
                .ok()
                .flatten()
                .unwrap_or(false),
            next_step: r.get("error_next_step").ok().flatten(),
        });
        let download: Option<String> = r.get("download")?;
        Ok(TaskRow {
            id: r.get("id")?,
            provider,
            model: r.get("model")?,
            provider_task_id: r.get("provider_task_id")?,
            status: r.get("status")?,
            request: r.get("request")?,
            fingerprint: r.get("fingerprint")?,
            idempotency_key: r.get("idempotency_key")?,
            progress: r
                .get::<_, Option<i64>>("progress")?
                .map(|v| v.clamp(0, 100) as u8),
            eta: r.get::<_, Option<i64>>("eta")?.map(|v| v.max(0) as u32),
            estimated_cost: r.get("estimated_cost")?,
            video_url: r.get("video_url")?,
            url_expires_at: r.get("url_expires_at")?,
            local_path: r.get("local_path")?,
            bytes: r.get::<_, Option<i64>>("bytes")?.map(|v| v.max(0) as u64),
            sha256: r.get("sha256")?,
            download: download.as_deref().and_then(Download::parse),
            error,
            note: r.get("note")?,
            webhook_secret: r.get("webhook_secret")?,
            polls: r.get::<_, i64>("polls")?.max(0) as u32,
            created_at: r.get("created_at")?,
            updated_at: r.get("updated_at")?,
            finished_at: r.get("finished_at")?,
        })
    }
}

impl TaskRow {
    pub fn public_status(&self) -> Status {
        if self.status == SUBMITTING {
            Status::Queued
        } else {
            self.status.parse().unwrap_or(Status::Running)
        }
    }

    pub fn is_submitting(&self) -> bool {
        self.status == SUBMITTING
    }

    pub fn to_task(&self) -> Task {
        let status = self.public_status();
        let video = if self.video_url.is_some() || self.local_path.is_some() {
            Some(Video {
                url: self.video_url.clone(),
                url_expires_at: self.url_expires_at.map(rfc3339),
                local_path: self.local_path.clone(),
                bytes: self.bytes,
                sha256: self.sha256.clone(),
            })
        } else {
            None
        };
        Task {
            task_id: self.id.clone(),
            provider: self.provider,
            model: self.model.clone(),
            provider_task_id: self.provider_task_id.clone(),
            status,
            progress_percent: if status == Status::Succeeded {
                Some(100)
            } else {
                self.progress
            },
            eta_seconds: if status.is_terminal() { None } else { self.eta },
            estimated_cost_usd: self.estimated_cost,
            video,
            error: self.error.clone(),
            note: self.note.clone(),
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
            finished_at: self.finished_at.map(rfc3339),
            deduplicated: false,
            download_pending: status == Status::Succeeded
                && self.download == Some(Download::Pending),
        }
    }
}

/// What the watcher learned from one poll, to be applied under a guard.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub status: Option<Status>,
    pub progress: Option<u8>,
    pub eta: Option<u32>,
    pub video_url: Option<String>,
    pub url_expires_at: Option<i64>,
    pub error: Option<Error>,
}

/// A new task, before it is submitted.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub provider: ProviderId,
    pub model: String,
    pub request: String,
    pub fingerprint: String,
    pub idempotency_key: Option<String>,
    pub estimated_cost: Option<f64>,
    pub webhook_secret: Option<String>,
    pub created_at: i64,
}

pub enum Inserted {
    New,
    /// The idempotency key was already used: here is that task's row.
    Existing(Box<TaskRow>),
}

/// Filter for `list`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub provider: Option<ProviderId>,
    pub limit: u32,
}

pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::internal(format!("cannot create data dir '{}': {e}", dir.display()))
                    .with_next_step("set I2V_MCP_DATA_DIR to a writable directory")
            })?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // WAL + NORMAL: a committed transaction survives a process crash (SIGKILL); only a power
        // loss can drop the last commits.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll back),
        // so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Insert a task, or return the existing one holding the same idempotency key.
    pub fn insert(&self, t: &NewTask) -> Result<Inserted> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if let Some(key) = &t.idempotency_key {
            let existing = tx
                .query_row(
                    "SELECT * FROM tasks WHERE idempotency_key = ?1",
                    [key],
                    |r| TaskRow::try_from(r),
                )
                .optional()?;
            if let Some(row) = existing {
                return Ok(Inserted::Existing(Box::new(row)));
            }
        }
        tx.execute(
            "INSERT INTO tasks (id, provider, model, status, request, fingerprint, idempotency_key,
                estimated_cost, webhook_secret, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'submitting', ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
            params![
                t.id,
                t.provider.as_str(),
                t.model,
                t.request,
                t.fingerprint,
                t.idempotency_key,
                t.estimated_cost,
                t.webhook_secret,
                t.created_at
            ],
        )?;
        tx.commit()?;
        Ok(Inserted::New)
    }

    pub fn get(&self, id: &str) -> Result<Option<TaskRow>> {
        Ok(self
            .conn()
            .query_row("SELECT * FROM tasks WHERE id = ?1", [id], |r| {
                TaskRow::try_from(r)
            })
            .optional()?)
    }

    pub fn find_by_key(&self, key: &str) -> Result<Option<TaskRow>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT * FROM tasks WHERE idempotency_key = ?1",
                [key],
                |r| TaskRow::try_from(r),
            )
            .optional()?)
    }

    pub fn find_by_provider_id(&self, provider: ProviderId, ptid: &str) -> Result<Option<TaskRow>> {
        let ids: &[&str] = match provider {
            // Qubico and PiAPI share one upstream; a webhook for one may name the other.
            ProviderId::Piapi | ProviderId::Qubico => &["piapi", "qubico"],
            _ => &[provider.as_str()],
        };
        let conn = self.conn();
        for p in ids {
            let row = conn
                .query_row(
                    "SELECT * FROM tasks WHERE provider = ?1 AND provider_task_id = ?2",
                    params![p, ptid],
                    |r| TaskRow::try_from(r),
                )
                .optional()?;
            if row.is_some() {
                return Ok(row);
            }
        }
        Ok(None)
    }

    /// `submitting` -> `queued` with the provider's id. False if the task left `submitting`.
    pub fn mark_submitted(&self, id: &str, provider_task_id: &str, now: i64) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE tasks SET status = 'queued', provider_task_id = ?2, updated_at = ?3
             WHERE id = ?1 AND status = 'submitting'",
            params![id, provider_task_id, now],
        )?;
        Ok(n == 1)
    }

    /// End an open task as failed (submit refused, submit unknown, gave up watching).
    pub fn fail(&self, id: &str, error: &Error, now: i64) -> Result<bool> {
        let n = self.conn().execute(
            &format!(
                "UPDATE tasks SET status = 'failed', error_category = ?2, error_message = ?3,
                    error_retryable = ?4, error_next_step = ?5, eta = NULL, updated_at = ?6, finished_at = ?6
                 WHERE id = ?1 AND status IN {OPEN}"
            ),
            params![
                id,
                error.category.as_str(),
                error.message,
                error.retryable,
                error.next_step,
                now
            ],
        )?;
        Ok(n == 1)
    }

    /// Apply a poll result. Open tasks move freely between queued and running and into a
    /// terminal state; a task we stopped watching on timeout may still turn out to have succeeded
    /// (the provider finished late): that one transition out of `failed` is allowed, so a paid
    /// video is never lost. Returns false if nothing changed.
    pub fn apply(&self, id: &str, u: &Update, now: i64) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let row = tx
            .query_row("SELECT * FROM tasks WHERE id = ?1", [id], |r| {
                TaskRow::try_from(r)
            })
            .optional()?;
        let Some(row) = row else { return Ok(false) };
        let late_success = row.status == "failed"
            && row
                .error
                .as_ref()
                .is_some_and(|e| e.category == Category::Timeout)
            && u.status == Some(Status::Succeeded);
        if !(matches!(row.status.as_str(), "queued" | "running") || late_success) {
            return Ok(false);
        }
        let status = u.status.unwrap_or_else(|| row.public_status());
        let terminal = status.is_terminal();
        let progress = u.progress.or(row.progress);
        let eta = if terminal { None } else { u.eta };
        let video_url = u.video_url.clone().or(row.video_url.clone());
        let expires = u.url_expires_at.or(row.url_expires_at);
        let download = if status == Status::Succeeded && row.download != Some(Download::Done) {
            Some(Download::Pending.as_str())
        } else {
            row.download.map(Download::as_str)
        };
        let (cat, msg, retry, next) = match (&u.error, status) {
            (Some(e), _) => (
                Some(e.category.as_str()),
                Some(e.message.clone()),
                Some(e.retryable),
                e.next_step.clone(),
            ),
            (None, Status::Succeeded) => (None, None, None, None),
            (None, _) => (
                row.error.as_ref().map(|e| e.category.as_str()),
                row.error.as_ref().map(|e| e.message.clone()),
                row.error.as_ref().map(|e| e.retryable),
                row.error.as_ref().and_then(|e| e.next_step.clone()),
            ),
        };
        let changed = status != row.public_status()
            || progress != row.progress
            || eta != row.eta
            || video_url != row.video_url
            || cat != row.error.as_ref().map(|e| e.category.as_str());
        tx.execute(
            "UPDATE tasks SET status = ?2, progress = ?3, eta = ?4, video_url = ?5, url_expires_at = ?6,
                download = ?7, error_category = ?8, error_message = ?9, error_retryable = ?10,
                error_next_step = ?11, polls = polls + 1, updated_at = ?12,
                finished_at = CASE WHEN ?13 THEN COALESCE(finished_at, ?12) ELSE NULL END
             WHERE id = ?1",
            params![
                id,
                status.as_str(),
                progress,
                eta,
                video_url,
                expires,
                download,
                cat,
                msg,
                retry,
                next,
                now,
                terminal
            ],
        )?;
        tx.commit()?;
        Ok(changed)
    }

    /// Replace an expired result URL with a fresh one from the provider.
    pub fn refresh_url(&self, id: &str, url: &str, expires: Option<i64>, now: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE tasks SET video_url = ?2, url_expires_at = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, url, expires, now],
        )?;
        Ok(())
    }

    /// The video is on disk: the task settles, with `note` (say, why it has no contact sheet).
    pub fn set_downloaded(
        &self,
        id: &str,
        path: &str,
        bytes: u64,
        sha256: &str,
        note: Option<&str>,
        now: i64,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE tasks SET download = 'done', local_path = ?2, bytes = ?3, sha256 = ?4, note = ?6,
                updated_at = ?5 WHERE id = ?1",
            params![id, path, bytes as i64, sha256, now, note],
        )?;
        Ok(())
    }

    pub fn set_download_failed(&self, id: &str, note: &str, now: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE tasks SET download = 'failed', note = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, note, now],
        )?;
        Ok(())
    }

    /// A download that gave up earlier is tried again (on request or restart).
    pub fn retry_download(&self, id: &str, now: i64) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE tasks SET download = 'pending', note = NULL, updated_at = ?2
             WHERE id = ?1 AND status = 'succeeded' AND download = 'failed'",
            params![id, now],
        )?;
        Ok(n == 1)
    }

    pub fn set_note(&self, id: &str, note: Option<&str>, now: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE tasks SET note = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, note, now],
        )?;
        Ok(())
    }

    /// Open task -> cancelled. False if it was already terminal.
    pub fn cancel(&self, id: &str, note: &str, now: i64) -> Result<bool> {
        let n = self.conn().execute(
            &format!(
                "UPDATE tasks SET status = 'cancelled', note = ?2, eta = NULL, updated_at = ?3, finished_at = ?3
                 WHERE id = ?1 AND status IN {OPEN}"
            ),
            params![id, note, now],
        )?;
        Ok(n == 1)
    }

    pub fn list(&self, f: &ListFilter) -> Result<Vec<TaskRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT * FROM tasks
             WHERE (?1 IS NULL OR status = ?1 OR (?1 = 'queued' AND status = 'submitting'))
               AND (?2 IS NULL OR provider = ?2)
             ORDER BY created_at DESC, id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![
                f.status.map(|s| s.as_str()),
                f.provider.map(|p| p.as_str()),
                f.limit.max(1)
            ],
            |r| TaskRow::try_from(r),
        )?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Tasks the watcher must pick up after a restart: open ones and unfinished downloads.
    pub fn unfinished(&self) -> Result<Vec<TaskRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT * FROM tasks WHERE status IN {OPEN}
                OR (status = 'succeeded' AND download = 'pending') ORDER BY created_at"
        ))?;
        let rows = stmt.query_map([], |r| TaskRow::try_from(r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Estimated spend of tasks created since `since_ms` that may have been charged.
    pub fn spent_since(&self, since_ms: i64) -> Result<f64> {
        let v: Option<f64> = self.conn().query_row(
            "SELECT SUM(estimated_cost) FROM tasks WHERE created_at >= ?1
               AND NOT (status = 'failed' AND provider_task_id IS NULL
                        AND error_category NOT IN ('submit_unknown'))",
            [since_ms],
            |r| r.get(0),
        )?;
        Ok(v.unwrap_or(0.0))
    }

    pub fn upload_get(
        &self,
        provider: ProviderId,
        sha256: &str,
        now: i64,
    ) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT url FROM uploads WHERE provider = ?1 AND sha256 = ?2 AND expires_at > ?3",
                params![provider.as_str(), sha256, now],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn upload_put(
        &self,
        provider: ProviderId,
        sha256: &str,
        url: &str,
        expires_at: i64,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO uploads (provider, sha256, url, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(provider, sha256) DO UPDATE SET url = excluded.url, expires_at = excluded.expires_at",
            params![provider.as_str(), sha256, url, expires_at],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_task(id: &str, key: Option<&str>) -> NewTask {
        NewTask {
            id: id.into(),
            provider: ProviderId::Piapi,
            model: "wan2.1-i2v-14b".into(),
            request: "{}".into(),
            fingerprint: "fp".into(),
            idempotency_key: key.map(String::from),
            estimated_cost: Some(0.28),
            webhook_secret: None,
            created_at: 1_000,
        }
    }

    #[test]
    fn lifecycle_and_guards() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("j.sqlite")).unwrap();
        assert!(matches!(
            s.insert(&new_task("t1", Some("k"))).unwrap(),
            Inserted::New
        ));
        match s.insert(&new_task("t2", Some("k"))).unwrap() {
            Inserted::Existing(row) => assert_eq!(row.id, "t1"),
            Inserted::New => panic!("same key inserted twice"),
        }
        assert_eq!(
            s.get("t1").unwrap().unwrap().to_task().status,
            Status::Queued
        );
        assert!(s.mark_submitted("t1", "up-1", 2_000).unwrap());
        assert!(
            !s.mark_submitted("t1", "up-2", 2_000).unwrap(),
            "only from submitting"
        );
        let run = Update {
            status: Some(Status::Running),
            progress: Some(40),
            ..Update::default()
        };
        assert!(s.apply("t1", &run, 3_000).unwrap());
        let done = Update {
            status: Some(Status::Succeeded),
            video_url: Some("http://x/v.mp4".into()),
            ..Update::default()
        };
        assert!(s.apply("t1", &done, 4_000).unwrap());
        let t = s.get("t1").unwrap().unwrap().to_task();
        assert!(t.download_pending && !t.is_settled());
        assert!(
            !s.cancel("t1", "x", 5_000).unwrap(),
            "terminal tasks cannot be cancelled"
        );
        assert!(
            !s.apply("t1", &run, 5_000).unwrap(),
            "terminal tasks do not move back"
        );
        s.set_downloaded("t1", "/v.mp4", 10, "abc", None, 6_000)
            .unwrap();
        assert!(s.get("t1").unwrap().unwrap().to_task().is_settled());
        assert_eq!(s.unfinished().unwrap().len(), 0);
        // Reopen: everything survives.
        drop(s);
        let s = Store::open(&dir.path().join("j.sqlite")).unwrap();
        let t = s.get("t1").unwrap().unwrap().to_task();
        assert_eq!(t.video.unwrap().sha256.as_deref(), Some("abc"));
    }

    #[test]
    fn late_success_after_timeout_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("j.sqlite")).unwrap();
        s.insert(&new_task("t1", None)).unwrap();
        s.mark_submitted("t1", "up", 1).unwrap();
        s.fail("t1", &Error::new(Category::Timeout, "gave up"), 2)
            .unwrap();
        let done = Update {
            status: Some(Status::Succeeded),
            video_url: Some("http://x".into()),
            ..Update::default()
        };
        assert!(s.apply("t1", &done, 3).unwrap());
        let t = s.get("t1").unwrap().unwrap().to_task();
        assert_eq!(t.status, Status::Succeeded);
        assert!(t.error.is_none());
    }
}
