-- Version 5: batches (`i2v-mcp batch run`), SQLite's 0004_batches.sql with PostgreSQL types. One
-- row per manifest row; `row_hash` refuses a changed row with the same id; the row's create
-- carries the idempotency key `batch:<batch>:<row>`. IF NOT EXISTS: a journal rolled back to an
-- older version by hand (tests do) keeps these tables and migrates forward again.
CREATE TABLE IF NOT EXISTS batches (
    id         TEXT PRIMARY KEY,
    source     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_rows (
    batch_id   TEXT NOT NULL REFERENCES batches(id),
    row_id     TEXT NOT NULL,
    line       BIGINT NOT NULL,
    row_hash   TEXT NOT NULL,
    task_id    TEXT,
    status     TEXT NOT NULL,
    error      TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (batch_id, row_id)
);
