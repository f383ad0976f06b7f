-- Deliveries: durable jobs. `number` is the 64-bit id sent to providers that want a number.
CREATE TABLE deliveries (
    number          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    id              BLOB    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL,
    source_key      TEXT    NOT NULL UNIQUE,
    recipient       TEXT    NOT NULL,
    channel         TEXT    NOT NULL CHECK (channel IN ('log', 'provider', 'webhook', 'realtime')),
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
    updated_at      INTEGER NOT NULL
) STRICT;

CREATE INDEX deliveries_due ON deliveries (next_attempt_at, number) WHERE status = 'pending';
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending';
