-- Version 4: the seconds the provider billed for a task, when its poll answer says (DashScope's
-- usage.duration); SQLite's version 2.
ALTER TABLE tasks ADD COLUMN billed_seconds DOUBLE PRECISION;
