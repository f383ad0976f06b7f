-- Calendar events. An owner's events never overlap: writers lock the owner's row, check, then
-- write (an exclusion constraint would need the btree_gist extension, which needs a superuser).
CREATE TABLE calendar_events (
    id            UUID        NOT NULL PRIMARY KEY,
    owner_id      UUID        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title         TEXT        NOT NULL,
    description   TEXT        NOT NULL,
    starts_at     TIMESTAMPTZ NOT NULL,
    ends_at       TIMESTAMPTZ NOT NULL,
    remind_before BIGINT,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    CHECK (ends_at > starts_at),
    CHECK (remind_before IS NULL OR remind_before >= 0)
);

-- Period lists and the overlap check: an owner's events by start.
CREATE INDEX calendar_events_by_owner ON calendar_events (owner_id, starts_at);
-- Retention: events by end.
CREATE INDEX calendar_events_by_end ON calendar_events (ends_at);
