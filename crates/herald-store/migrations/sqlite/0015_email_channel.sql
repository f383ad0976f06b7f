-- The `email` channel: a delivery sent through the configured SMTP server. SQLite cannot change
-- a CHECK constraint in place, so the table is rebuilt with its rows, numbers and indexes, as
-- for the `queue` channel.
CREATE TABLE deliveries_rebuilt (
    number          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    id              BLOB    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL,
    source_key      TEXT    NOT NULL UNIQUE,
    recipient       TEXT    NOT NULL,
    channel         TEXT    NOT NULL CHECK (channel IN ('log', 'provider', 'webhook', 'realtime', 'queue', 'email')),
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'expired', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    deadline        INTEGER,
    last_error      TEXT,
    lease_until     INTEGER,
    sent_at         INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    source_id       BLOB,
    recipient_id    BLOB,
    trace_context   TEXT
) STRICT;

INSERT INTO deliveries_rebuilt SELECT * FROM deliveries;
-- Numbers are never handed out twice (providers drop duplicates by them): the new table goes on
-- from the old one's sequence, not from its largest surviving number.
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'deliveries_rebuilt', seq FROM sqlite_sequence WHERE name = 'deliveries'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'deliveries_rebuilt');
UPDATE sqlite_sequence SET seq = max(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'))
    WHERE name = 'deliveries_rebuilt' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'deliveries');
DROP TABLE deliveries;
ALTER TABLE deliveries_rebuilt RENAME TO deliveries;

CREATE INDEX deliveries_due ON deliveries (next_attempt_at, number) WHERE status = 'pending';
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_by_source_status ON deliveries (source_id, status, id) WHERE source_id IS NOT NULL;
CREATE INDEX deliveries_by_source ON deliveries (source_id, id) WHERE source_id IS NOT NULL;
CREATE INDEX deliveries_pending_by_recipient ON deliveries (recipient_id)
    WHERE recipient_id IS NOT NULL AND status = 'pending';
