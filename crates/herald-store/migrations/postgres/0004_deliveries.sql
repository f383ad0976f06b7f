-- Deliveries: durable jobs. `number` is the 64-bit id sent to providers that want a number.
CREATE TABLE deliveries (
    number          BIGSERIAL   NOT NULL PRIMARY KEY,
    id              UUID        NOT NULL CONSTRAINT deliveries_id_key UNIQUE,
    kind            TEXT        NOT NULL,
    source_key      TEXT        NOT NULL CONSTRAINT deliveries_source_key_key UNIQUE,
    recipient       TEXT        NOT NULL,
    channel         TEXT        NOT NULL CHECK (channel IN ('log', 'provider', 'webhook', 'realtime')),
    payload         JSONB       NOT NULL,
    status          TEXT        NOT NULL
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'expired', 'cancelled')),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    deadline        TIMESTAMPTZ,
    last_error      TEXT,
    lease_until     TIMESTAMPTZ,
    sent_at         TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at, number) WHERE status = 'pending';
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending';
