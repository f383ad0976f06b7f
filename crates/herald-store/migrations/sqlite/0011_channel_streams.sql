-- Channel streams and session cursors for real-time sessions.
-- The outbox is each channel's stream: read by (channel, channel_offset) when a session resumes.
CREATE INDEX outbox_channel_offset ON outbox (channel, channel_offset);

-- The store's epoch: a new database is a new history, where old offsets mean nothing.
CREATE TABLE store_meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
INSERT INTO store_meta (key, value) VALUES ('epoch', lower(hex(randomblob(16))));

-- A session's cursor per channel: the highest offset its client acknowledged.
CREATE TABLE session_cursors (
    user_id    BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id TEXT    NOT NULL,
    channel    TEXT    NOT NULL,
    acked      INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, session_id, channel)
) STRICT;
CREATE INDEX session_cursors_idle ON session_cursors (updated_at);
