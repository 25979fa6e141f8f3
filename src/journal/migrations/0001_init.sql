-- Version 1: the schema of every journal written before versions were numbered (user_version 0).
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
