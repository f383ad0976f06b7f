-- Per-channel, gap-free offsets for outbox events, and leases for single-active workers.
-- A writer bumps its channel's row in the same transaction as its events; the row lock orders
-- the writers of one channel, so within a channel seq order is commit order.
CREATE TABLE channel_offsets (
    channel     TEXT   NOT NULL PRIMARY KEY,
    last_offset BIGINT NOT NULL
);

ALTER TABLE outbox ADD COLUMN channel_offset BIGINT NOT NULL DEFAULT 0;

CREATE TABLE leases (
    name       TEXT        NOT NULL PRIMARY KEY,
    holder     TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
