-- Version 3: many servers on one data dir (two hosts at once, frameworks that start a server per
-- call). As on PostgreSQL, the process watching a task holds a lease on it (renewed while it lives,
-- handed back when it exits, taken over when it lapses); client-side rate limits are counted here
-- so they hold across processes; and every change is appended to `events`, which each process
-- tails (SQLite has no LISTEN/NOTIFY). The triggers that fill `events` are TEMP triggers made by
-- each connection (they name the process that wrote), so a process skips its own news.
ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_until INTEGER;
CREATE TABLE rate_events (
    provider TEXT NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX rate_events_provider_at ON rate_events(provider, at);
-- kind: 'changed' (task_id changed), 'wake' (whoever watches task_id should poll it now),
-- 'released' (a process exited and handed its leases back: take them over now).
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind    TEXT NOT NULL,
    task_id TEXT NOT NULL,
    origin  TEXT NOT NULL,
    at      INTEGER NOT NULL
);
