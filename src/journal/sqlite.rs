//! The SQLite backend: blocking calls on one connection, run off the async workers by `Journal`.
//! State transitions are guarded in SQL (`UPDATE .. WHERE status IN (..)`) so the watcher, a
//! webhook and a cancel can race safely, across processes too.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::migrate;
use super::row::{Inserted, ListFilter, Listed, NewTask, State, TaskRow, Update, checked, decode};
use crate::error::{Error, Result};
use crate::model::ProviderId;

/// The columns a `TaskRow` is read from, all but `request`: that one is read only where it is
/// needed (`get`), so listing tasks never loads what was sent.
pub(super) const ROW: &str =
    "id, provider, model, provider_task_id, status, fingerprint, idempotency_key,
    progress, eta, estimated_cost, video_url, url_expires_at, local_path, bytes, sha256, download,
    error_category, error_message, error_retryable, error_next_step, note, webhook_secret, polls,
    created_at, updated_at, finished_at, billed_seconds, owner";

pub(super) const OPEN: &str = "('submitting','queued','running')";
/// A failed task that surely reached no provider: it has no provider id and its create was refused
/// (not `submit_unknown`). Nothing was created upstream or charged, so its idempotency key is free
/// again, and spend counting leaves it out.
/// `mark_submitted`'s new values (`?2` the provider's id, `?3` now) and guard.
pub(super) const SUBMITTED: &str = "status = 'queued', provider_task_id = ?2, updated_at = ?3,
    error_category = NULL, error_message = NULL, error_retryable = NULL, error_next_step = NULL,
    finished_at = NULL";
pub(super) const SUBMITTABLE: &str = "(status = 'submitting'
    OR (status = 'failed' AND error_category = 'submit_unknown' AND provider_task_id IS NULL))";
/// Today's spend: the estimates of every task since `since` (a placeholder), refused ones left out.
pub(super) fn spent_sql(since: &str) -> String {
    format!("SELECT SUM(estimated_cost) FROM tasks WHERE created_at >= {since} AND NOT {REFUSED}")
}

/// One owner's spend today (placeholders: since, owner).
pub(super) fn spent_by_owner_sql(since: &str, owner: &str) -> String {
    format!("{} AND owner = {owner}", spent_sql(since))
}

pub(super) const REFUSED: &str = "(status = 'failed' AND provider_task_id IS NULL
    AND error_category IS NOT NULL AND error_category <> 'submit_unknown')";

/// A new task's row (`?1`..`?10`: id, provider, model, request, fingerprint, key, cost, webhook
/// secret, now, owner).
pub(super) const INSERT: &str = "INSERT INTO tasks (id, provider, model, status, request,
    fingerprint, idempotency_key, estimated_cost, webhook_secret, created_at, updated_at, owner)
    VALUES (?1, ?2, ?3, 'submitting', ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)";

/// A refused task gives up its idempotency key (`?1` id, `?2` note, `?3` now).
pub(super) fn release_key() -> String {
    format!(
        "UPDATE tasks SET idempotency_key = NULL, note = ?2, updated_at = ?3
         WHERE id = ?1 AND {REFUSED}"
    )
}

/// The note a refused task keeps when task `successor` takes its key over.
pub(super) fn takeover_note(successor: &str) -> String {
    format!("refused, nothing was charged; idempotency key retried as task {successor}")
}

/// After `release_key` changed `n` rows: the takeover went through, or an error to retry.
pub(super) fn key_taken_over(previous: &str, successor: &str, n: u64) -> Result<()> {
    if n != 1 {
        return Err(Error::internal(format!(
            "task {previous} changed while its idempotency key was being retried: try again"
        )));
    }
    tracing::info!(previous = %previous, task = %successor, "idempotency key of a refused create retried");
    Ok(())
}

/// Tasks the watcher must follow: open ones and unfinished downloads.
const NEEDS_WORK: &str =
    "(status IN ('queued','running') OR (status = 'succeeded' AND download = 'pending'))";

/// Tasks one sweep takes over at most (the next sweep takes more).
const ORPHANS_PER_SWEEP: i64 = 100;

/// How long a line of `events` is kept: longer than any tail stays behind (it reads every 200 ms).
const EVENTS_KEPT_MS: i64 = 60_000;

/// A kind of line in `events` (see migration 3).
pub(super) const CHANGED: &str = "changed";
pub(super) const WAKE: &str = "wake";
pub(super) const RELEASED: &str = "released";

pub struct Sqlite {
    conn: Mutex<Connection>,
    /// This connection's name in `events`: its own lines are not news to it.
    origin: String,
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Sqlite> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::internal(format!("cannot create data dir '{}': {e}", dir.display()))
                    .with_next_step("set I2V_MCP_DATA_DIR to a writable directory")
            })?;
        }
        if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
            tracing::warn!(
                journal = %path.display(),
                "the journal file is empty (0 bytes): starting a new journal. If it held tasks, it may have been truncated (a full disk, a copy cut short): restore it from a backup before creating tasks"
            );
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // A journal from a newer version is refused before anything is written to it.
        migrate::check_known(&conn, migrate::MIGRATIONS)?;
        // WAL + NORMAL: a committed transaction survives a process crash (SIGKILL); only a power
        // loss can drop the last commits.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        migrate::run(&mut conn, migrate::MIGRATIONS)?;
        let origin = uuid::Uuid::new_v4().simple().to_string();
        // Per connection (TEMP), so each line names the process that wrote it; a connection that
        // is not ours (the sqlite3 shell) announces nothing and breaks nothing. `origin` is a
        // hex uuid: safe to put in the SQL text.
        conn.execute_batch(&format!(
            "CREATE TEMP TRIGGER i2v_task_changed AFTER UPDATE ON main.tasks FOR EACH ROW
                WHEN OLD.updated_at IS NOT NEW.updated_at OR OLD.status IS NOT NEW.status
             BEGIN
                INSERT INTO events (kind, task_id, origin, at)
                    VALUES ('{CHANGED}', NEW.id, '{origin}', NEW.updated_at);
             END;"
        ))?;
        Ok(Sqlite {
            conn: Mutex::new(conn),
            origin,
        })
    }

    /// The thread a call runs on (tests check that it is not an async worker).
    #[cfg(test)]
    pub fn probe_thread(&self) -> std::thread::ThreadId {
        std::thread::current().id()
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll back),
        // so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Insert a task, or return the existing one holding the same idempotency key. A key whose task
    /// was refused (nothing accepted upstream) is taken over by the new task: the old row keeps its
    /// error, loses the key and notes its successor. The read and the takeover run in one
    /// IMMEDIATE transaction, so of concurrent retries (in any process) exactly one inserts and the
    /// others see its row.
    pub fn insert(&self, t: &NewTask) -> Result<Inserted> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let Some(key) = &t.idempotency_key {
            let existing = tx
                .query_row(
                    &format!("SELECT {ROW} FROM tasks WHERE idempotency_key = ?1"),
                    [key],
                    decode,
                )
                .optional()?;
            if let Some(row) = checked(existing)? {
                if !row.is_refused() {
                    return Ok(Inserted::Existing(Box::new(row)));
                }
                let note = takeover_note(&t.id);
                let n = tx.execute(&release_key(), params![row.id, note, t.created_at])?;
                key_taken_over(&row.id, &t.id, n as u64)?;
            }
        }
        // Under the IMMEDIATE transaction's write lock: no other insert can land in between.
        if let Some(budget) = &t.daily_budget {
            let spent: Option<f64> =
                tx.query_row(&spent_sql("?1"), [budget.since_ms], |r| r.get(0))?;
            budget.check(spent.unwrap_or(0.0), t.estimated_cost.unwrap_or(0.0))?;
        }
        if let Some(budget) = &t.owner_budget {
            let spent: Option<f64> = tx.query_row(
                &spent_by_owner_sql("?1", "?2"),
                params![budget.since_ms, t.owner],
                |r| r.get(0),
            )?;
            budget.check_user(spent.unwrap_or(0.0), t.estimated_cost.unwrap_or(0.0))?;
        }
        tx.execute(
            INSERT,
            params![
                t.id,
                t.provider.as_str(),
                t.model,
                t.request,
                t.fingerprint,
                t.idempotency_key,
                t.estimated_cost,
                t.webhook_secret,
                t.created_at,
                t.owner
            ],
        )?;
        tx.commit()?;
        Ok(Inserted::New)
    }

    pub fn get(&self, id: &str) -> Result<Option<TaskRow>> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {ROW}, request FROM tasks WHERE id = ?1"),
                [id],
                decode,
            )
            .optional()?;
        checked(row)
    }

    pub fn find_by_key(&self, key: &str) -> Result<Option<TaskRow>> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {ROW} FROM tasks WHERE idempotency_key = ?1"),
                [key],
                decode,
            )
            .optional()?;
        checked(row)
    }

    /// The task with upstream id `ptid` at the first of `providers` that has one (providers that
    /// share one upstream are passed together, in order of preference).
    pub fn find_by_provider_id(
        &self,
        providers: &[ProviderId],
        ptid: &str,
    ) -> Result<Option<TaskRow>> {
        let conn = self.conn();
        for p in providers.iter().map(|p| p.as_str()) {
            let row = conn
                .query_row(
                    &format!(
                        "SELECT {ROW} FROM tasks WHERE provider = ?1 AND provider_task_id = ?2"
                    ),
                    params![p, ptid],
                    decode,
                )
                .optional()?;
            if let Some(row) = checked(row)? {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    /// `submitting` -> `queued` with the provider's id. False if the task left `submitting`. A task
    /// another process declared `submit_unknown` meanwhile (a restart's `recover`) is now known to
    /// be accepted: it becomes `queued` too, so its provider id is never dropped.
    pub fn mark_submitted(&self, id: &str, provider_task_id: &str, now: i64) -> Result<bool> {
        let n = self.conn().execute(
            &format!("UPDATE tasks SET {SUBMITTED} WHERE id = ?1 AND {SUBMITTABLE}"),
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

    /// Apply a poll result under the guard of `Update::plan`. Returns false if nothing changed.
    pub fn apply(&self, id: &str, u: &Update, now: i64) -> Result<bool> {
        let mut conn = self.conn();
        // IMMEDIATE: a read that turns into a write while another process writes would fail at
        // once with SQLITE_BUSY (the busy timeout does not cover an upgrade); this waits instead.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let row = tx
            .query_row(
                &format!("SELECT {ROW} FROM tasks WHERE id = ?1"),
                [id],
                decode,
            )
            .optional()?;
        let Some(row) = checked(row)? else {
            return Ok(false);
        };
        let Some(a) = u.plan(&row) else {
            return Ok(false);
        };
        tx.execute(
            "UPDATE tasks SET status = ?2, progress = ?3, eta = ?4, video_url = ?5, url_expires_at = ?6,
                download = ?7, error_category = ?8, error_message = ?9, error_retryable = ?10,
                error_next_step = ?11, polls = polls + 1, updated_at = ?12,
                finished_at = CASE WHEN ?13 THEN COALESCE(finished_at, ?12) ELSE NULL END,
                billed_seconds = ?14
             WHERE id = ?1",
            params![
                id,
                a.status,
                a.progress,
                a.eta,
                a.video_url,
                a.expires,
                a.download,
                a.category,
                a.message,
                a.retryable,
                a.next_step,
                now,
                a.terminal,
                a.billed_seconds
            ],
        )?;
        tx.commit()?;
        Ok(a.changed)
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

    /// The newest tasks matching `f`. A row that cannot be decoded is skipped and named.
    pub fn list(&self, f: &ListFilter) -> Result<Listed> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {ROW} FROM tasks
             WHERE (?1 IS NULL OR status = ?1 OR (?1 = 'queued' AND status = 'submitting'))
               AND (?2 IS NULL OR provider = ?2)
               AND (?4 IS NULL OR owner = ?4)
             ORDER BY created_at DESC, id DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![
                f.status.map(State::from),
                f.provider.map(|p| p.as_str()),
                f.limit.max(1),
                f.owner
            ],
            decode,
        )?;
        let mut listed = Listed::default();
        for row in rows {
            match row? {
                Ok(row) => listed.rows.push(row),
                Err(bad) => {
                    tracing::warn!(task = %bad.id, problem = %bad.problem, "journal row cannot be decoded; skipped");
                    listed.unreadable.push(bad);
                }
            }
        }
        Ok(listed)
    }

    /// Tasks the watcher must pick up after a restart: open ones and unfinished downloads.
    pub fn unfinished(&self) -> Result<Vec<TaskRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {ROW} FROM tasks WHERE status IN {OPEN}
                OR (status = 'succeeded' AND download = 'pending') ORDER BY created_at"
        ))?;
        let rows = stmt.query_map([], decode)?;
        let mut ok = Vec::new();
        for row in rows {
            match row? {
                Ok(row) => ok.push(row),
                Err(bad) => {
                    tracing::error!(task = %bad.id, problem = %bad.problem, "journal row cannot be decoded; not resumed");
                }
            }
        }
        Ok(ok)
    }

    /// Take or keep the lease on task `id` until `until`: false while another owner's lease runs.
    pub fn claim(&self, id: &str, owner: &str, until: i64, now: i64) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE tasks SET lease_owner = ?2, lease_until = ?3
             WHERE id = ?1 AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until < ?4)",
            params![id, owner, until, now],
        )?;
        Ok(n == 1)
    }

    /// Extend every lease `owner` holds on tasks that still need work or are being submitted, and
    /// drop `events` lines every tail has read.
    pub fn renew(&self, owner: &str, until: i64, now: i64) -> Result<u64> {
        let conn = self.conn();
        let n = conn.execute(
            &format!(
                "UPDATE tasks SET lease_until = ?2
                 WHERE lease_owner = ?1 AND ({NEEDS_WORK} OR status = 'submitting')"
            ),
            params![owner, until],
        )?;
        conn.execute("DELETE FROM events WHERE at < ?1", [now - EVENTS_KEPT_MS])?;
        Ok(n as u64)
    }

    /// Hand back every lease `owner` holds (the process is exiting), and tell the others to
    /// take them over now rather than when they lapse.
    pub fn release(&self, owner: &str, now: i64) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE tasks SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = ?1",
            [owner],
        )?;
        if n > 0 {
            tx.execute(
                "INSERT INTO events (kind, task_id, origin, at) VALUES (?1, '', ?2, ?3)",
                params![RELEASED, self.origin, now],
            )?;
        }
        tx.commit()?;
        Ok(n as u64)
    }

    /// Tasks still `submitting` whose process stopped renewing their lease (it died mid-create),
    /// or that were never leased and are older than `stale`.
    pub fn cut_off_submits(&self, now: i64, stale: i64) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id FROM tasks WHERE status = 'submitting'
                AND (lease_until < ?1 OR (lease_until IS NULL AND created_at < ?2))
             ORDER BY created_at LIMIT ?3",
        )?;
        let ids = stmt
            .query_map(params![now, stale, ORPHANS_PER_SWEEP], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    /// Take over up to `ORPHANS_PER_SWEEP` tasks that need work and whose lease lapsed, or that
    /// never had one since `stale`. One statement: processes sweeping at once split the rows.
    pub fn claim_orphans(
        &self,
        owner: &str,
        until: i64,
        now: i64,
        stale: i64,
    ) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "UPDATE tasks SET lease_owner = ?1, lease_until = ?2 WHERE id IN (
                SELECT id FROM tasks WHERE {NEEDS_WORK}
                    AND (lease_until < ?3 OR (lease_until IS NULL AND updated_at < ?5))
                ORDER BY created_at LIMIT ?4)
             RETURNING id"
        ))?;
        let ids = stmt
            .query_map(params![owner, until, now, ORPHANS_PER_SWEEP, stale], |r| {
                r.get(0)
            })?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    /// Append a line to `events` for the other processes (a wake request).
    pub fn announce(&self, kind: &str, id: &str, now: i64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO events (kind, task_id, origin, at) VALUES (?1, ?2, ?3, ?4)",
            params![kind, id, self.origin, now],
        )?;
        Ok(())
    }

    /// The newest line of `events`: a tail starts after it.
    pub fn events_head(&self) -> Result<i64> {
        let head: Option<i64> = self
            .conn()
            .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))?;
        Ok(head.unwrap_or(0))
    }

    /// Other processes' lines of `events` after `after`, as (seq, kind, task id). `data_version`
    /// tells whether another connection committed anything since the last look: when not (the
    /// common case), nothing is read.
    pub fn events_after(
        &self,
        after: i64,
        seen_version: &mut i64,
    ) -> Result<Vec<(i64, String, String)>> {
        let conn = self.conn();
        let version: i64 = conn.pragma_query_value(None, "data_version", |r| r.get(0))?;
        if version == *seen_version {
            return Ok(Vec::new());
        }
        *seen_version = version;
        let mut stmt = conn.prepare_cached(
            "SELECT seq, kind, task_id FROM events WHERE seq > ?1 AND origin <> ?2 ORDER BY seq",
        )?;
        let lines = stmt
            .query_map(params![after, self.origin], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(lines)
    }

    /// Take a create slot at `provider` in every window `(max, period ms)` at `now`, or say how
    /// long until all of them admit one (ms) and which window is the reason. Processes taking slots
    /// at once are serialised by the IMMEDIATE transaction's write lock.
    /// `key`: [`super::RateKey::column`].
    pub fn take_rate_slot(
        &self,
        key: &str,
        windows: &[(i64, i64)],
        now: i64,
    ) -> Result<std::result::Result<(), (i64, usize)>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let p = key;
        let mut nths = Vec::with_capacity(windows.len());
        for (max, period) in windows {
            // The max-th newest slot still inside the window: while there is one, it is full.
            nths.push(
                tx.query_row(
                    "SELECT at FROM rate_events WHERE provider = ?1 AND at > ?2
                     ORDER BY at DESC LIMIT 1 OFFSET ?3",
                    params![p, now - period, max - 1],
                    |r| r.get(0),
                )
                .optional()?,
            );
        }
        if let Some(w) = super::row::rate_wait(windows, &nths, now) {
            return Ok(Err(w));
        }
        let longest = windows.iter().map(|w| w.1).max().unwrap_or(0);
        tx.execute(
            "DELETE FROM rate_events WHERE provider = ?1 AND at <= ?2",
            params![p, now - longest],
        )?;
        tx.execute(
            "INSERT INTO rate_events (provider, at) VALUES (?1, ?2)",
            params![p, now],
        )?;
        tx.commit()?;
        Ok(Ok(()))
    }

    /// Estimated spend of tasks created since `since_ms` that may have been charged.
    pub fn spent_since(&self, since_ms: i64) -> Result<f64> {
        let v: Option<f64> = self
            .conn()
            .query_row(&spent_sql("?1"), [since_ms], |r| r.get(0))?;
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
    use crate::error::Category;
    use crate::model::Status;

    fn new_task(id: &str, key: Option<&str>) -> NewTask {
        NewTask {
            id: id.into(),
            provider: ProviderId::ALL[0],
            model: "wan2.1-i2v-14b".into(),
            request: "{}".into(),
            fingerprint: "fp".into(),
            idempotency_key: key.map(String::from),
            estimated_cost: Some(0.28),
            webhook_secret: None,
            daily_budget: None,
            created_at: 1_000,
            owner: String::new(),
            owner_budget: None,
        }
    }

    #[test]
    fn lifecycle_and_guards() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("j.sqlite")).unwrap();
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
        let s = Sqlite::open(&dir.path().join("j.sqlite")).unwrap();
        let t = s.get("t1").unwrap().unwrap().to_task();
        assert_eq!(t.video.unwrap().sha256.as_deref(), Some("abc"));
    }

    #[test]
    fn a_refused_key_is_taken_over_once_across_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let s = Sqlite::open(&path).unwrap();
        s.insert(&new_task("t0", Some("k"))).unwrap();
        let refused = Error::new(Category::ProviderUnavailable, "cannot connect");
        s.fail("t0", &refused, 1_500).unwrap();
        assert!(s.get("t0").unwrap().unwrap().is_refused());
        // Two "processes" retry the key at once: exactly one new task.
        let handles: Vec<_> = ["t1", "t2"]
            .into_iter()
            .map(|id| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let s = Sqlite::open(&path).unwrap();
                    matches!(s.insert(&new_task(id, Some("k"))).unwrap(), Inserted::New)
                })
            })
            .collect();
        let news = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|n| *n)
            .count();
        assert_eq!(news, 1);
        let holder = s.find_by_key("k").unwrap().unwrap();
        assert!(holder.id == "t1" || holder.id == "t2");
        let old = s.get("t0").unwrap().unwrap();
        assert_eq!(old.idempotency_key, None);
        assert_eq!(old.error.unwrap().category, Category::ProviderUnavailable);
        assert!(old.note.unwrap().contains(&holder.id));
        // An unknown outcome keeps its key for good.
        s.insert(&new_task("u0", Some("u"))).unwrap();
        s.fail("u0", &Error::new(Category::SubmitUnknown, "?"), 2_000)
            .unwrap();
        match s.insert(&new_task("u1", Some("u"))).unwrap() {
            Inserted::Existing(row) => assert_eq!(row.id, "u0"),
            Inserted::New => panic!("a key with an unknown outcome was reused"),
        }
        // A provider id that arrives late resolves the unknown outcome.
        assert!(s.mark_submitted("u0", "up-u", 2_500).unwrap());
        let u0 = s.get("u0").unwrap().unwrap();
        assert_eq!((u0.status, u0.error), (State::Queued, None));
        // So does an accepted one that later failed.
        s.insert(&new_task("a0", Some("a"))).unwrap();
        s.mark_submitted("a0", "up-a", 2_000).unwrap();
        s.fail("a0", &Error::new(Category::GenerationFailed, "x"), 3_000)
            .unwrap();
        assert!(matches!(
            s.insert(&new_task("a1", Some("a"))).unwrap(),
            Inserted::Existing(_)
        ));
    }

    #[test]
    fn late_success_after_timeout_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("j.sqlite")).unwrap();
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
