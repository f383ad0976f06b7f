-- Per-channel, gap-free offsets for outbox events, and leases for single-active workers.
CREATE TABLE channel_offsets (
    channel     TEXT    NOT NULL PRIMARY KEY,
    last_offset INTEGER NOT NULL
) STRICT;

ALTER TABLE outbox ADD COLUMN channel_offset INTEGER NOT NULL DEFAULT 0;

CREATE TABLE leases (
    name       TEXT    NOT NULL PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
