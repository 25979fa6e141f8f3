//! Numbered schema migrations, tracked in `PRAGMA user_version`. Migration `n` (1-based) takes a
//! journal from version `n - 1` to `n`. A journal written before versions were numbered (version 0
//! with its tables present) is version 1; an empty file is built at the newest version.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

/// Every migration, in order. Append only: a released migration is never edited.
pub const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_billed_seconds.sql"),
    include_str!("migrations/0003_shared.sql"),
    include_str!("migrations/0004_batches.sql"),
    include_str!("migrations/0005_owner.sql"),
];

fn version(conn: &Connection) -> Result<usize> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok(v.max(0) as usize)
}

/// The journal's version, or an error if it is newer than `migrations` know.
pub fn check_known(conn: &Connection, migrations: &[&str]) -> Result<usize> {
    let v = version(conn)?;
    if v > migrations.len() {
        return Err(too_new(v, migrations.len()));
    }
    Ok(v)
}

/// A journal at version `v`, newer than the `known` this i2v-mcp has: refused untouched.
pub fn too_new(v: usize, known: usize) -> Error {
    Error::internal(format!(
        "the journal is at version {v}, newer than this i2v-mcp knows (version {known}): a newer i2v-mcp wrote it; it was left untouched"
    ))
    .with_next_step(
        "use the newer i2v-mcp with this journal, or give this one its own I2V_MCP_DATA_DIR or database",
    )
}

/// Bring the journal to the newest version, in one IMMEDIATE transaction: of processes opening
/// one journal at once, one migrates and the others find it done.
pub fn run(conn: &mut Connection, migrations: &[&str]) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut v = check_known(&tx, migrations)?;
    if v == 0 && has_tasks_table(&tx)? {
        tracing::info!("journal from before numbered migrations: taken as version 1");
        v = 1;
    }
    let from = v;
    for (i, sql) in migrations.iter().enumerate().skip(v) {
        tx.execute_batch(sql)?;
        v = i + 1;
    }
    if v != version(&tx)? {
        tx.pragma_update(None, "user_version", v as i64)?;
    }
    tx.commit()?;
    if from != v && from > 0 {
        tracing::info!(from, to = v, "journal migrated");
    }
    Ok(())
}

fn has_tasks_table(conn: &Connection) -> Result<bool> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'tasks'",
        [],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = "ALTER TABLE tasks ADD COLUMN added_in_v2 TEXT;";

    fn columns(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info('tasks')")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(|c| c.unwrap())
            .collect()
    }

    #[test]
    fn an_empty_journal_is_built_at_the_newest_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        run(&mut conn, &[MIGRATIONS[0], V2]).unwrap();
        assert_eq!(version(&conn).unwrap(), 2);
        assert!(columns(&conn).contains(&"added_in_v2".to_string()));
        // Again: nothing to do.
        run(&mut conn, &[MIGRATIONS[0], V2]).unwrap();
        assert_eq!(version(&conn).unwrap(), 2);
    }

    #[test]
    fn an_unversioned_journal_is_version_1_and_moves_forward() {
        let mut conn = Connection::open_in_memory().unwrap();
        // What main wrote before versions: the schema, user_version 0, a task.
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute(
            "INSERT INTO tasks (id, provider, model, status, request, fingerprint, created_at, updated_at)
             VALUES ('t1', 'local', 'm', 'queued', '{}', 'fp', 1, 1)",
            [],
        )
        .unwrap();
        assert_eq!(version(&conn).unwrap(), 0);
        run(&mut conn, &MIGRATIONS[..1]).unwrap();
        assert_eq!(version(&conn).unwrap(), 1);
        // Migration 1 is not run again (it would fail on a non-idempotent schema); 2 is.
        run(&mut conn, &["CREATE TABLE tasks (x);", V2]).unwrap();
        assert_eq!(version(&conn).unwrap(), 2);
        assert!(columns(&conn).contains(&"added_in_v2".to_string()));
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_version_1_journal_gains_billed_seconds_and_keeps_its_tasks() {
        let mut conn = Connection::open_in_memory().unwrap();
        run(&mut conn, &MIGRATIONS[..1]).unwrap();
        conn.execute(
            "INSERT INTO tasks (id, provider, model, status, request, fingerprint, created_at, updated_at)
             VALUES ('t1', 'local', 'm', 'queued', '{}', 'fp', 1, 1)",
            [],
        )
        .unwrap();
        run(&mut conn, MIGRATIONS).unwrap();
        assert_eq!(version(&conn).unwrap(), MIGRATIONS.len());
        let billed: Option<f64> = conn
            .query_row(
                "SELECT billed_seconds FROM tasks WHERE id = 't1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(billed, None);
    }

    #[test]
    fn a_newer_journal_is_refused_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        run(&mut conn, &[MIGRATIONS[0], V2]).unwrap();
        let e = run(&mut conn, &MIGRATIONS[..1]).unwrap_err();
        assert!(e.message.contains("version 2"), "{e:?}");
        assert!(e.message.contains("newer"), "{e:?}");
        assert_eq!(version(&conn).unwrap(), 2);
        assert!(columns(&conn).contains(&"added_in_v2".to_string()));
    }
}
