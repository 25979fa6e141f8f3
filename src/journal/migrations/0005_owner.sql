-- Version 4 on this branch (issue 24; the lead renumbers at merge): who created a task. '' is the
-- operator (the static bearer token, stdio, the CLI): every task from before stays theirs. An
-- OAuth subject is '<issuer>#<sub>'. Idempotency keys of subjects are stored prefixed with a
-- digest of the owner (see core::submit), so the UNIQUE key column stays as it is.
ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX tasks_owner_created ON tasks(owner, created_at);
