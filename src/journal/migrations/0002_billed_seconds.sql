-- Version 2: the seconds the provider billed for a task, when its poll answer says (DashScope's
-- usage.duration).
ALTER TABLE tasks ADD COLUMN billed_seconds REAL;
