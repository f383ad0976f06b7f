-- Calendar events. An owner's events never overlap: SQLite's single writer makes the check and
-- the write one step.
CREATE TABLE calendar_events (
    id            BLOB    NOT NULL PRIMARY KEY,
    owner_id      BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title         TEXT    NOT NULL,
    description   TEXT    NOT NULL,
    starts_at     INTEGER NOT NULL,
    ends_at       INTEGER NOT NULL,
    remind_before INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    CHECK (ends_at > starts_at),
    CHECK (remind_before IS NULL OR remind_before >= 0)
) STRICT;

-- Period lists and the overlap check: an owner's events by start.
CREATE INDEX calendar_events_by_owner ON calendar_events (owner_id, starts_at);
-- Retention: events by end.
CREATE INDEX calendar_events_by_end ON calendar_events (ends_at);
