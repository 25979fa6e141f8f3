//! The PostgreSQL backend, for replicas that share one journal: async calls on a small pool
//! (tokio-postgres + deadpool, TLS through rustls with the platform's roots). The same guarantees
//! as SQLite: a task is committed before its provider is called, state changes are guarded in
//! SQL, idempotency keys are UNIQUE, and a refused key is taken over in one transaction.
//! Statements shared with SQLite are written once there (`?N`) and renumbered here (`$N`).

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};

use super::row::{
    Cols, Inserted, ListFilter, Listed, NewTask, State, TaskRow, Update, checked, decode_cols,
};
use super::sqlite::{
    INSERT, OPEN, ROW, SUBMITTABLE, SUBMITTED, key_taken_over, release_key, spent_by_owner_sql,
    spent_sql, takeover_note,
};
use crate::error::{Error, Result};
use crate::model::ProviderId;

/// Every PostgreSQL migration, in order; tracked in the `schema_version` table. Append only.
pub const MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/0001_init.sql"),
    include_str!("migrations/postgres/0002_leases.sql"),
    include_str!("migrations/postgres/0003_rate_events.sql"),
    include_str!("migrations/postgres/0004_billed_seconds.sql"),
    include_str!("migrations/postgres/0005_batches.sql"),
    include_str!("migrations/postgres/0006_owner.sql"),
];

/// Channels: every task change (payload: the task id), and "poll this task now" for the replica
/// that holds its lease (a webhook or a waiter on another replica).
pub const CHANGED: &str = "i2v_tasks";
pub const WAKE: &str = "i2v_wake";
/// A replica exited and handed its leases back (payload: its owner name).
pub const RELEASED: &str = "i2v_released";

/// Tasks the watcher must follow: open ones and unfinished downloads.
const NEEDS_WORK: &str =
    "(status IN ('queued','running') OR (status = 'succeeded' AND download = 'pending'))";

/// Of replicas starting at once, one migrates (under this advisory lock) and the others wait.
const MIGRATION_LOCK: i64 = 0x6932_765f_6d63_7001;

/// Tasks one sweep takes over at most (the next sweep takes more).
const ORPHANS_PER_SWEEP: i64 = 100;

/// Connections per replica: a create holds one for a statement or two, a wait holds none.
const POOL_SIZE: usize = 16;

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        let detail = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_string());
        Error::internal(format!("journal error (PostgreSQL): {detail}"))
            .with_next_step("check that the database in I2V_MCP_DATABASE_URL is reachable")
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Error::internal(format!("journal error (PostgreSQL pool): {other}"))
                .with_next_step("check that the database in I2V_MCP_DATABASE_URL is reachable"),
        }
    }
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N` (the shared statements hold no other `?`).
fn pg(sql: &str) -> String {
    sql.replace('?', "$")
}

/// PostgreSQL's rows, read by column name.
impl Cols for Row {
    fn text(&self, name: &str) -> std::result::Result<Option<String>, String> {
        self.try_get(name).map_err(|e| problem(name, &e))
    }
    fn int(&self, name: &str) -> std::result::Result<Option<i64>, String> {
        self.try_get(name).map_err(|e| problem(name, &e))
    }
    fn real(&self, name: &str) -> std::result::Result<Option<f64>, String> {
        self.try_get(name).map_err(|e| problem(name, &e))
    }
    fn flag(&self, name: &str) -> std::result::Result<Option<bool>, String> {
        self.try_get(name).map_err(|e| problem(name, &e))
    }
    fn has(&self, name: &str) -> bool {
        self.columns().iter().any(|c| c.name() == name)
    }
}

fn problem(name: &str, e: &tokio_postgres::Error) -> String {
    format!("column {name} cannot be read by this version: {e}")
}

/// The TLS connector: rustls with the platform's verifier (the system's roots), ring as the
/// crypto provider like the HTTP client. `sslmode` in the URL decides whether it is used.
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| Error::internal(format!("cannot set up TLS to the database: {e}")))?
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

pub struct Postgres {
    pool: Pool,
    config: tokio_postgres::Config,
}

impl Postgres {
    /// Connect, check the schema version and migrate. Blocks (its own thread and runtime), like
    /// opening SQLite; the pool connects lazily afterwards.
    pub fn open(url: &str) -> Result<Postgres> {
        let config = tokio_postgres::Config::from_str(url).map_err(|e| {
            Error::invalid_input(format!("database_url cannot be read: {e}"))
                .with_next_step("use postgres://user:password@host:5432/dbname")
        })?;
        let manager = Manager::from_config(
            config.clone(),
            tls()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| Error::internal(format!("cannot build the database pool: {e}")))?;
        let pg = Postgres { pool, config };
        pg.blocking(|mut c| async move { migrate(&mut c, MIGRATIONS).await })?;
        Ok(pg)
    }

    /// Run `f` on a connection of its own, on a thread of its own: for startup code that cannot
    /// await. Pooled connections are driven by the runtime that made them, so none is used here.
    fn blocking<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(tokio_postgres::Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let config = self.config.clone();
        let run = move || -> Result<T> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let (client, conn) = config.connect(tls()?).await?;
                let driver = tokio::spawn(conn);
                let out = f(client).await;
                driver.abort();
                out
            })
        };
        std::thread::spawn(run)
            .join()
            .map_err(|_| Error::internal("the journal's startup call panicked"))?
    }

    #[cfg(test)]
    pub async fn probe_thread(&self) -> std::thread::ThreadId {
        std::thread::current().id()
    }

    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }

    /// See `Sqlite::insert`. Inserts with one key are serialised by an advisory lock on the key,
    /// so the read sees every committed insert and takeover before it.
    pub async fn insert(&self, t: &NewTask) -> Result<Inserted> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        if let Some(key) = &t.idempotency_key {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[key],
            )
            .await?;
            let row = tx
                .query_opt(
                    &format!("SELECT {ROW} FROM tasks WHERE idempotency_key = $1"),
                    &[key],
                )
                .await?;
            if let Some(row) = checked(row.map(|r| decode_cols(&r)))? {
                if !row.is_refused() {
                    return Ok(Inserted::Existing(Box::new(row)));
                }
                let note = takeover_note(&t.id);
                let n = tx
                    .execute(&pg(&release_key()), &[&row.id, &note, &t.created_at])
                    .await?;
                key_taken_over(&row.id, &t.id, n)?;
            }
        }
        // One budget lock for every replica: the spend read here cannot miss a concurrent insert.
        if let Some(budget) = &t.daily_budget {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('i2v:daily-budget', 0))",
                &[],
            )
            .await?;
            let row = tx.query_one(&spent_sql("$1"), &[&budget.since_ms]).await?;
            let spent = row.try_get::<_, Option<f64>>(0)?.unwrap_or(0.0);
            budget.check(spent, t.estimated_cost.unwrap_or(0.0))?;
        }
        if let Some(budget) = &t.owner_budget {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('i2v:user-budget:' || $1, 0))",
                &[&t.owner],
            )
            .await?;
            let row = tx
                .query_one(
                    &spent_by_owner_sql("$1", "$2"),
                    &[&budget.since_ms, &t.owner],
                )
                .await?;
            let spent = row.try_get::<_, Option<f64>>(0)?.unwrap_or(0.0);
            budget.check_user(spent, t.estimated_cost.unwrap_or(0.0))?;
        }
        tx.execute(
            &pg(INSERT),
            &[
                &t.id,
                &t.provider.as_str(),
                &t.model,
                &t.request,
                &t.fingerprint,
                &t.idempotency_key,
                &t.estimated_cost,
                &t.webhook_secret,
                &t.created_at,
                &t.owner,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Inserted::New)
    }

    async fn one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<TaskRow>> {
        let row = self.client().await?.query_opt(sql, params).await?;
        checked(row.map(|r| decode_cols(&r)))
    }

    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        Ok(self.client().await?.execute(sql, params).await?)
    }

    pub async fn get(&self, id: &str) -> Result<Option<TaskRow>> {
        self.one(
            &format!("SELECT {ROW}, request FROM tasks WHERE id = $1"),
            &[&id],
        )
        .await
    }

    pub async fn find_by_key(&self, key: &str) -> Result<Option<TaskRow>> {
        self.one(
            &format!("SELECT {ROW} FROM tasks WHERE idempotency_key = $1"),
            &[&key],
        )
        .await
    }

    pub async fn find_by_provider_id(
        &self,
        providers: &[ProviderId],
        ptid: &str,
    ) -> Result<Option<TaskRow>> {
        let sql = format!("SELECT {ROW} FROM tasks WHERE provider = $1 AND provider_task_id = $2");
        for p in providers.iter().map(|p| p.as_str()) {
            if let Some(row) = self.one(&sql, &[&p, &ptid]).await? {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    pub async fn mark_submitted(&self, id: &str, ptid: &str, now: i64) -> Result<bool> {
        let sql = pg(&format!(
            "UPDATE tasks SET {SUBMITTED} WHERE id = ?1 AND {SUBMITTABLE}"
        ));
        Ok(self.exec(&sql, &[&id, &ptid, &now]).await? == 1)
    }

    pub async fn fail(&self, id: &str, error: &Error, now: i64) -> Result<bool> {
        fail_on(&**self.client().await?, id, error, now).await
    }

    /// See `Update::plan`; the row is locked (`FOR UPDATE`) between the read and the write.
    pub async fn apply(&self, id: &str, u: &Update, now: i64) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let row = tx
            .query_opt(
                &format!("SELECT {ROW} FROM tasks WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .await?;
        let Some(row) = checked(row.map(|r| decode_cols(&r)))? else {
            return Ok(false);
        };
        let Some(a) = u.plan(&row) else {
            return Ok(false);
        };
        tx.execute(
            "UPDATE tasks SET status = $2, progress = $3, eta = $4, video_url = $5, url_expires_at = $6,
                download = $7, error_category = $8, error_message = $9, error_retryable = $10,
                error_next_step = $11, polls = polls + 1, updated_at = $12,
                finished_at = CASE WHEN $13 THEN COALESCE(finished_at, $12) ELSE NULL END,
                billed_seconds = $14
             WHERE id = $1",
            &[
                &id,
                &<&str>::from(a.status),
                &a.progress.map(i64::from),
                &a.eta.map(i64::from),
                &a.video_url,
                &a.expires,
                &a.download.map(<&str>::from),
                &a.category,
                &a.message,
                &a.retryable,
                &a.next_step,
                &now,
                &a.terminal,
                &a.billed_seconds,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(a.changed)
    }

    pub async fn refresh_url(
        &self,
        id: &str,
        url: &str,
        expires: Option<i64>,
        now: i64,
    ) -> Result<()> {
        self.exec(
            "UPDATE tasks SET video_url = $2, url_expires_at = $3, updated_at = $4 WHERE id = $1",
            &[&id, &url, &expires, &now],
        )
        .await?;
        Ok(())
    }

    pub async fn set_downloaded(
        &self,
        id: &str,
        path: &str,
        bytes: u64,
        sha256: &str,
        note: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.exec(
            "UPDATE tasks SET download = 'done', local_path = $2, bytes = $3, sha256 = $4, note = $6,
                updated_at = $5 WHERE id = $1",
            &[&id, &path, &bytes, &sha256, &now, &note],
        )
        .await?;
        Ok(())
    }

    pub async fn set_download_failed(&self, id: &str, note: &str, now: i64) -> Result<()> {
        self.exec(
            "UPDATE tasks SET download = 'failed', note = $2, updated_at = $3 WHERE id = $1",
            &[&id, &note, &now],
        )
        .await?;
        Ok(())
    }

    pub async fn retry_download(&self, id: &str, now: i64) -> Result<bool> {
        let n = self
            .exec(
                "UPDATE tasks SET download = 'pending', note = NULL, updated_at = $2
                 WHERE id = $1 AND status = 'succeeded' AND download = 'failed'",
                &[&id, &now],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn set_note(&self, id: &str, note: Option<&str>, now: i64) -> Result<()> {
        self.exec(
            "UPDATE tasks SET note = $2, updated_at = $3 WHERE id = $1",
            &[&id, &note, &now],
        )
        .await?;
        Ok(())
    }

    pub async fn cancel(&self, id: &str, note: &str, now: i64) -> Result<bool> {
        let sql = format!(
            "UPDATE tasks SET status = 'cancelled', note = $2, eta = NULL, updated_at = $3, finished_at = $3
             WHERE id = $1 AND status IN {OPEN}"
        );
        Ok(self.exec(&sql, &[&id, &note, &now]).await? == 1)
    }

    pub async fn list(&self, f: &ListFilter) -> Result<Listed> {
        let sql = format!(
            "SELECT {ROW} FROM tasks
             WHERE ($1::text IS NULL OR status = $1 OR ($1 = 'queued' AND status = 'submitting'))
               AND ($2::text IS NULL OR provider = $2)
               AND ($4::text IS NULL OR owner = $4)
             ORDER BY created_at DESC, id DESC LIMIT $3"
        );
        let status = f.status.map(|s| <&str>::from(State::from(s)));
        let provider = f.provider.map(|p| p.as_str());
        let limit = i64::from(f.limit.max(1));
        let rows = self
            .client()
            .await?
            .query(&sql, &[&status, &provider, &limit, &f.owner])
            .await?;
        let mut listed = Listed::default();
        for row in &rows {
            match decode_cols(row) {
                Ok(row) => listed.rows.push(row),
                Err(bad) => {
                    tracing::warn!(task = %bad.id, problem = %bad.problem, "journal row cannot be decoded; skipped");
                    listed.unreadable.push(bad);
                }
            }
        }
        Ok(listed)
    }

    pub async fn unfinished(&self) -> Result<Vec<TaskRow>> {
        unfinished_on(&**self.client().await?).await
    }

    pub fn unfinished_blocking(&self) -> Result<Vec<TaskRow>> {
        self.blocking(|c| async move { unfinished_on(&c).await })
    }

    pub fn fail_blocking(&self, id: &str, error: &Error, now: i64) -> Result<bool> {
        let (id, error) = (id.to_string(), error.clone());
        self.blocking(move |c| async move { fail_on(&c, &id, &error, now).await })
    }

    /// Take or keep the lease on task `id` until `until`: false while another owner's lease runs.
    pub async fn claim(&self, id: &str, owner: &str, until: i64, now: i64) -> Result<bool> {
        let n = self
            .exec(
                "UPDATE tasks SET lease_owner = $2, lease_until = $3
                 WHERE id = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < $4)",
                &[&id, &owner, &until, &now],
            )
            .await?;
        Ok(n == 1)
    }

    /// Extend every lease `owner` holds on tasks that still need work or are being submitted.
    pub async fn renew(&self, owner: &str, until: i64) -> Result<u64> {
        let sql = format!(
            "UPDATE tasks SET lease_until = $2
             WHERE lease_owner = $1 AND ({NEEDS_WORK} OR status = 'submitting')"
        );
        self.exec(&sql, &[&owner, &until]).await
    }

    /// Hand back every lease `owner` holds (its replica is exiting) and tell the others to take
    /// them over now.
    pub async fn release(&self, owner: &str, _now: i64) -> Result<u64> {
        let n = self
            .exec(
                "UPDATE tasks SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = $1",
                &[&owner],
            )
            .await?;
        if n > 0 {
            self.notify(RELEASED, owner).await?;
        }
        Ok(n)
    }

    /// Tasks still `submitting` whose replica stopped renewing their lease (it died mid-create),
    /// or never leased and created before `stale`.
    pub async fn cut_off_submits(&self, now: i64, stale: i64) -> Result<Vec<String>> {
        let c = self.client().await?;
        cut_off_on(&**c, now, stale).await
    }

    pub fn cut_off_submits_blocking(&self, now: i64, stale: i64) -> Result<Vec<String>> {
        self.blocking(move |c| async move { cut_off_on(&c, now, stale).await })
    }

    /// Take over up to `limit` tasks that need work and whose lease lapsed, or that never had one
    /// since `stale` (its creator is still about to claim a fresh one): replicas sweeping at once
    /// skip each other's rows.
    pub async fn claim_orphans(
        &self,
        owner: &str,
        until: i64,
        now: i64,
        stale: i64,
    ) -> Result<Vec<String>> {
        let sql = format!(
            "UPDATE tasks SET lease_owner = $1, lease_until = $2 WHERE id IN (
                SELECT id FROM tasks WHERE {NEEDS_WORK}
                    AND (lease_until < $3 OR (lease_until IS NULL AND updated_at < $5))
                ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED)
             RETURNING id"
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&owner, &until, &now, &ORPHANS_PER_SWEEP, &stale])
            .await?;
        Ok(rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
    }

    /// Send `payload` on `channel` to every replica.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        self.exec("SELECT pg_notify($1, $2)", &[&channel, &payload])
            .await?;
        Ok(())
    }

    /// A connection of its own that listens on `CHANGED` and `WAKE`: (channel, payload) pairs
    /// until the connection drops (the channel closes then).
    pub async fn listen(&self) -> Result<tokio::sync::mpsc::UnboundedReceiver<(String, String)>> {
        let (client, mut conn) = self.config.connect(tls()?).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let keeper = tx.clone();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(m) = futures::StreamExt::next(&mut messages).await {
                match m {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        let msg = (n.channel().to_string(), n.payload().to_string());
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the journal's notification connection dropped");
                        return;
                    }
                }
            }
        });
        client
            .batch_execute(&format!(
                "LISTEN {CHANGED}; LISTEN {WAKE}; LISTEN {RELEASED}"
            ))
            .await?;
        // The connection lives as long as its client: until the listener is dropped.
        tokio::spawn(async move {
            keeper.closed().await;
            drop(client);
        });
        Ok(rx)
    }

    /// Take a create slot at `provider` in every window `(max, period ms)` at the database's clock
    /// (replicas' clocks may differ), or say how long until all of them admit one (ms) and which
    /// window is the reason. Replicas taking slots at one provider are serialised by an advisory
    /// lock, so each counts every slot committed before its own.
    /// `key`: [`super::RateKey::column`].
    pub async fn take_rate_slot(
        &self,
        key: &str,
        windows: &[(i64, i64)],
    ) -> Result<std::result::Result<(), (i64, usize)>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let p = key;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 1))",
            &[&format!("rate:{p}")],
        )
        .await?;
        let now: i64 = tx
            .query_one(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT",
                &[],
            )
            .await?
            .try_get(0)?;
        let mut nths = Vec::with_capacity(windows.len());
        for (max, period) in windows {
            // The max-th newest slot still inside the window: while there is one, it is full.
            let nth = tx
                .query_opt(
                    "SELECT at FROM rate_events WHERE provider = $1 AND at > $2
                     ORDER BY at DESC OFFSET $3 LIMIT 1",
                    &[&p, &(now - period), &(max - 1)],
                )
                .await?;
            nths.push(nth.map(|row| row.try_get::<_, i64>(0)).transpose()?);
        }
        if let Some(w) = super::row::rate_wait(windows, &nths, now) {
            return Ok(Err(w));
        }
        let longest = windows.iter().map(|w| w.1).max().unwrap_or(0);
        tx.execute(
            "DELETE FROM rate_events WHERE provider = $1 AND at <= $2",
            &[&p, &(now - longest)],
        )
        .await?;
        tx.execute(
            "INSERT INTO rate_events (provider, at) VALUES ($1, $2)",
            &[&p, &now],
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    pub async fn spent_since(&self, since_ms: i64) -> Result<f64> {
        let row = self
            .client()
            .await?
            .query_one(&spent_sql("$1"), &[&since_ms])
            .await?;
        Ok(row.try_get::<_, Option<f64>>(0)?.unwrap_or(0.0))
    }

    pub async fn upload_get(
        &self,
        provider: ProviderId,
        sha256: &str,
        now: i64,
    ) -> Result<Option<String>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT url FROM uploads WHERE provider = $1 AND sha256 = $2 AND expires_at > $3",
                &[&provider.as_str(), &sha256, &now],
            )
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub async fn upload_put(
        &self,
        provider: ProviderId,
        sha256: &str,
        url: &str,
        expires_at: i64,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO uploads (provider, sha256, url, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (provider, sha256) DO UPDATE SET url = excluded.url, expires_at = excluded.expires_at",
            &[&provider.as_str(), &sha256, &url, &expires_at],
        )
        .await?;
        Ok(())
    }
}

/// See `Sqlite::fail`.
async fn fail_on(c: &impl GenericClient, id: &str, error: &Error, now: i64) -> Result<bool> {
    let sql = format!(
        "UPDATE tasks SET status = 'failed', error_category = $2, error_message = $3,
            error_retryable = $4, error_next_step = $5, eta = NULL, updated_at = $6, finished_at = $6
         WHERE id = $1 AND status IN {OPEN}"
    );
    let n = c
        .execute(
            &sql,
            &[
                &id,
                &error.category.as_str(),
                &error.message,
                &error.retryable,
                &error.next_step,
                &now,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// See `Sqlite::unfinished`.
async fn cut_off_on(c: &impl GenericClient, now: i64, stale: i64) -> Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT id FROM tasks WHERE status = 'submitting'
                AND (lease_until < $1 OR (lease_until IS NULL AND created_at < $2))
             ORDER BY created_at LIMIT $3",
            &[&now, &stale, &ORPHANS_PER_SWEEP],
        )
        .await?;
    Ok(rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
}

async fn unfinished_on(c: &impl GenericClient) -> Result<Vec<TaskRow>> {
    let sql = format!(
        "SELECT {ROW} FROM tasks WHERE status IN {OPEN}
            OR (status = 'succeeded' AND download = 'pending') ORDER BY created_at"
    );
    let mut ok = Vec::new();
    for row in c.query(&sql, &[]).await? {
        match decode_cols(&row) {
            Ok(row) => ok.push(row),
            Err(bad) => {
                tracing::error!(task = %bad.id, problem = %bad.problem, "journal row cannot be decoded; not resumed");
            }
        }
    }
    Ok(ok)
}

/// Bring the database to the newest version, in one transaction under an advisory lock: of
/// replicas starting at once, one migrates and the others find it done. A database from a newer
/// version is refused untouched.
pub async fn migrate(c: &mut tokio_postgres::Client, migrations: &[&str]) -> Result<()> {
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await?;
    let v: Option<i64> = tx
        .query_one("SELECT MAX(version) FROM schema_version", &[])
        .await?
        .try_get(0)?;
    let v = v.unwrap_or(0).max(0) as usize;
    if v > migrations.len() {
        return Err(super::migrate::too_new(v, migrations.len()));
    }
    for sql in &migrations[v..] {
        tx.batch_execute(sql).await?;
    }
    if v < migrations.len() {
        tx.execute("DELETE FROM schema_version", &[]).await?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(migrations.len() as i64)],
        )
        .await?;
        if v > 0 {
            tracing::info!(from = v, to = migrations.len(), "journal migrated");
        }
    }
    tx.commit().await?;
    Ok(())
}
