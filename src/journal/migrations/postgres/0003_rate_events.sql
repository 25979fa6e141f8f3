-- Version 3: client-side rate limits shared by replicas. One row per create admitted by any
-- replica (database clock, ms); rows older than the longest window are deleted as slots are taken.
CREATE TABLE rate_events (
    provider TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX rate_events_provider_at ON rate_events(provider, at);
