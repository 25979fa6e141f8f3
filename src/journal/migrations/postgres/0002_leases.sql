-- Version 2: replicas. The replica watching a task holds a lease on it (renewed while it lives,
-- taken over when it lapses), and every change to a task is announced on channel i2v_tasks so a
-- caller waiting on any replica hears of it at once. Lease renewals leave updated_at alone and
-- announce nothing.
ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_until BIGINT;
CREATE FUNCTION i2v_task_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('i2v_tasks', NEW.id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER tasks_changed AFTER UPDATE ON tasks FOR EACH ROW
    WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION i2v_task_changed();
