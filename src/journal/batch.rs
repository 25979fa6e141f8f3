//! Batches in the journal (`i2v-mcp batch run`): one row per manifest row, keyed by batch and row
//! id, with the hash of the row's normalized fields, its task once created, and its outcome. The
//! tasks themselves are ordinary journal tasks; a row's create carries an idempotency key derived
//! from batch and row, so a rerun finds a row's task again instead of creating it twice.

use rusqlite::{OptionalExtension, params};

use super::{Backend, Journal};
use crate::error::{Error, Result};

/// A manifest row as the batch is about to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatchRow {
    pub row_id: String,
    /// 1-based line of the row in its file.
    pub line: i64,
    /// Hex sha256 of the row's normalized fields.
    pub hash: String,
}

/// A row as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    pub row_id: String,
    pub line: i64,
    pub hash: String,
    pub task_id: Option<String>,
    /// `pending`, `created`, `succeeded`, `failed` or `skipped`.
    pub status: String,
    pub error: Option<String>,
}

/// A row already journaled whose fields changed since (same id, another hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedRow {
    pub row_id: String,
    /// Its line in the file run now, and the line it had then.
    pub line: i64,
    pub was_line: i64,
}

const SELECT: &str =
    "SELECT row_id, line, row_hash, task_id, status, error FROM batch_rows WHERE batch_id = ";

impl Journal {
    /// Open batch `id` (read from `source`) and register `rows`, in one transaction: rows new to
    /// the batch are added as `pending`, known rows must keep their hash. When any changed,
    /// nothing is written and they are returned (`Err`); else every row of the batch, in file
    /// order.
    pub async fn batch_register(
        &self,
        id: &str,
        source: &str,
        rows: Vec<NewBatchRow>,
        now: i64,
    ) -> Result<std::result::Result<Vec<BatchRow>, Vec<ChangedRow>>> {
        let (id, source) = (id.to_string(), source.to_string());
        match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    let mut conn = db.conn();
                    let tx =
                        conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    let known = sqlite_rows(&tx, &id)?;
                    let changed = changed(&known, &rows);
                    if !changed.is_empty() {
                        return Ok(Err(changed));
                    }
                    tx.execute(
                        "INSERT INTO batches (id, source, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
                         ON CONFLICT (id) DO UPDATE SET source = ?2, updated_at = ?3",
                        params![id, source, now],
                    )?;
                    for r in &rows {
                        tx.execute(
                            "INSERT INTO batch_rows (batch_id, row_id, line, row_hash, status, updated_at)
                             VALUES (?1, ?2, ?3, ?4, 'pending', ?5)
                             ON CONFLICT (batch_id, row_id) DO UPDATE SET line = ?3",
                            params![id, r.row_id, r.line, r.hash, now],
                        )?;
                    }
                    let all = sqlite_rows(&tx, &id)?;
                    tx.commit()?;
                    Ok(Ok(all))
                })
                .await
                .map_err(|e| Error::internal(format!("journal call did not finish: {e}")))?
            }
            Backend::Postgres(pg) => {
                let mut c = pg.client().await?;
                let tx = c.transaction().await?;
                // One batch registers at a time (two runs of one file at once).
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    &[&format!("i2v:batch:{id}")],
                )
                .await?;
                let known = pg_rows(&tx, &id).await?;
                let changed = changed(&known, &rows);
                if !changed.is_empty() {
                    return Ok(Err(changed));
                }
                tx.execute(
                    "INSERT INTO batches (id, source, created_at, updated_at) VALUES ($1, $2, $3, $3)
                     ON CONFLICT (id) DO UPDATE SET source = $2, updated_at = $3",
                    &[&id, &source, &now],
                )
                .await?;
                for r in &rows {
                    tx.execute(
                        "INSERT INTO batch_rows (batch_id, row_id, line, row_hash, status, updated_at)
                         VALUES ($1, $2, $3, $4, 'pending', $5)
                         ON CONFLICT (batch_id, row_id) DO UPDATE SET line = $3",
                        &[&id, &r.row_id, &r.line, &r.hash, &now],
                    )
                    .await?;
                }
                let all = pg_rows(&tx, &id).await?;
                tx.commit().await?;
                Ok(Ok(all))
            }
        }
    }

    /// Every row of batch `id`, in file order (empty for an unknown batch).
    pub async fn batch_rows(&self, id: &str) -> Result<Vec<BatchRow>> {
        let id = id.to_string();
        match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || sqlite_rows(&db.conn(), &id))
                    .await
                    .map_err(|e| Error::internal(format!("journal call did not finish: {e}")))?
            }
            Backend::Postgres(pg) => pg_rows(&pg.client().await?, &id).await,
        }
    }

    /// Record row `row_id`'s outcome: its task (once created), status and error.
    pub async fn batch_row_update(
        &self,
        id: &str,
        row_id: &str,
        task_id: Option<&str>,
        status: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let (id, row_id, status) = (id.to_string(), row_id.to_string(), status.to_string());
        let (task_id, error) = (task_id.map(str::to_string), error.map(str::to_string));
        match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    db.conn().execute(
                        "UPDATE batch_rows SET task_id = COALESCE(?3, task_id), status = ?4,
                         error = ?5, updated_at = ?6 WHERE batch_id = ?1 AND row_id = ?2",
                        params![id, row_id, task_id, status, error, now],
                    )?;
                    Ok(())
                })
                .await
                .map_err(|e| Error::internal(format!("journal call did not finish: {e}")))?
            }
            Backend::Postgres(pg) => {
                pg.client()
                    .await?
                    .execute(
                        "UPDATE batch_rows SET task_id = COALESCE($3, task_id), status = $4,
                         error = $5, updated_at = $6 WHERE batch_id = $1 AND row_id = $2",
                        &[&id, &row_id, &task_id, &status, &error, &now],
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// The file batch `id` was last read from, if the journal knows the batch.
    pub async fn batch_source(&self, id: &str) -> Result<Option<String>> {
        let id = id.to_string();
        match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    Ok(db
                        .conn()
                        .query_row("SELECT source FROM batches WHERE id = ?1", [&id], |r| {
                            r.get(0)
                        })
                        .optional()?)
                })
                .await
                .map_err(|e| Error::internal(format!("journal call did not finish: {e}")))?
            }
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query_opt("SELECT source FROM batches WHERE id = $1", &[&id])
                .await?
                .map(|r| r.try_get::<_, String>(0))
                .transpose()?),
        }
    }
}

/// The known rows whose hash differs from the one given now.
fn changed(known: &[BatchRow], now: &[NewBatchRow]) -> Vec<ChangedRow> {
    now.iter()
        .filter_map(|r| {
            let k = known.iter().find(|k| k.row_id == r.row_id)?;
            (k.hash != r.hash).then(|| ChangedRow {
                row_id: r.row_id.clone(),
                line: r.line,
                was_line: k.line,
            })
        })
        .collect()
}

fn sqlite_rows(conn: &rusqlite::Connection, id: &str) -> Result<Vec<BatchRow>> {
    let mut stmt = conn.prepare(&format!("{SELECT}?1 ORDER BY line"))?;
    let rows = stmt.query_map([id], |r| {
        Ok(BatchRow {
            row_id: r.get(0)?,
            line: r.get(1)?,
            hash: r.get(2)?,
            task_id: r.get(3)?,
            status: r.get(4)?,
            error: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

async fn pg_rows(c: &impl deadpool_postgres::GenericClient, id: &str) -> Result<Vec<BatchRow>> {
    let rows = c
        .query(&format!("{SELECT}$1 ORDER BY line"), &[&id])
        .await?;
    rows.iter()
        .map(|r| {
            Ok(BatchRow {
                row_id: r.try_get(0)?,
                line: r.try_get(1)?,
                hash: r.try_get(2)?,
                task_id: r.try_get(3)?,
                status: r.try_get(4)?,
                error: r.try_get(5)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, line: i64, hash: &str) -> NewBatchRow {
        NewBatchRow {
            row_id: id.into(),
            line,
            hash: hash.into(),
        }
    }

    #[tokio::test]
    async fn rows_register_once_and_a_changed_row_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let all = j
            .batch_register(
                "b1",
                "/f.jsonl",
                vec![row("a", 1, "h1"), row("b", 2, "h2")],
                5,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].status, "pending");
        j.batch_row_update("b1", "a", Some("tsk_1"), "created", None, 6)
            .await
            .unwrap();
        // Again, with a row added: the known one keeps its task.
        let all = j
            .batch_register(
                "b1",
                "/f.jsonl",
                vec![row("a", 1, "h1"), row("b", 2, "h2"), row("c", 3, "h3")],
                7,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].task_id.as_deref(), Some("tsk_1"));
        assert_eq!(all[0].status, "created");
        // A changed row: refused, named, and nothing added.
        let changed = j
            .batch_register(
                "b1",
                "/f.jsonl",
                vec![row("b", 4, "hX"), row("d", 5, "h4")],
                8,
            )
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(
            changed,
            vec![ChangedRow {
                row_id: "b".into(),
                line: 4,
                was_line: 2
            }]
        );
        assert_eq!(j.batch_rows("b1").await.unwrap().len(), 3);
        assert_eq!(
            j.batch_source("b1").await.unwrap().as_deref(),
            Some("/f.jsonl")
        );
        assert!(j.batch_rows("nope").await.unwrap().is_empty());
    }
}
