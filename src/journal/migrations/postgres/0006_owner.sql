-- Version 5 on this branch (issue 24; the lead renumbers at merge): who created a task; SQLite's
-- 0005_owner.sql. '' is the operator; every task from before stays theirs. IF NOT EXISTS: a
-- journal taken back to an older version by hand (tests do) migrates forward again.
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS owner TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS tasks_owner_created ON tasks(owner, created_at);
