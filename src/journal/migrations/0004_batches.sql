-- Batches (`i2v-mcp batch run`): one row per manifest row, so a rerun of the same file continues
-- where it stopped. `row_hash` is the sha256 of the row's normalized fields: a changed row with
-- the same id is refused. A row's create carries the idempotency key `batch:<batch>:<row>`, so
-- the task of a row created before a crash is found again, never created twice.
CREATE TABLE IF NOT EXISTS batches (
    id         TEXT PRIMARY KEY,
    source     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_rows (
    batch_id   TEXT NOT NULL REFERENCES batches(id),
    row_id     TEXT NOT NULL,
    line       INTEGER NOT NULL,
    row_hash   TEXT NOT NULL,
    task_id    TEXT,
    status     TEXT NOT NULL,
    error      TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (batch_id, row_id)
);
