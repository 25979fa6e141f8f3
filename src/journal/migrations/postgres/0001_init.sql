-- Version 1 of the PostgreSQL journal: the columns of SQLite's version 1, with PostgreSQL types.
CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    provider         TEXT NOT NULL,
    model            TEXT NOT NULL,
    provider_task_id TEXT,
    status           TEXT NOT NULL,
    request          TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    idempotency_key  TEXT UNIQUE,
    progress         BIGINT,
    eta              BIGINT,
    estimated_cost   DOUBLE PRECISION,
    video_url        TEXT,
    url_expires_at   BIGINT,
    local_path       TEXT,
    bytes            BIGINT,
    sha256           TEXT,
    download         TEXT,
    error_category   TEXT,
    error_message    TEXT,
    error_retryable  BOOLEAN,
    error_next_step  TEXT,
    note             TEXT,
    webhook_secret   TEXT,
    polls            BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX tasks_status ON tasks(status);
CREATE INDEX tasks_created ON tasks(created_at);
CREATE INDEX tasks_provider_task ON tasks(provider, provider_task_id);
CREATE TABLE uploads (
    provider   TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    url        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (provider, sha256)
);
