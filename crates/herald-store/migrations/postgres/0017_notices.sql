-- Notices: one call that reaches a person and escalates step by step until someone acknowledges.
-- `event_channel`/`event_offset` locate the in-app event once it went: a cursor of that stream
-- reaching that offset acknowledges the notice. `caller` scopes idempotency keys.
CREATE TABLE notices (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    caller TEXT NOT NULL,
    type TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    data JSONB,
    urgent BOOLEAN NOT NULL,
    expires_at TIMESTAMPTZ,
    idempotency_key TEXT,
    request_hash TEXT,
    status TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    acknowledged_at TIMESTAMPTZ,
    read_at TIMESTAMPTZ,
    event_channel TEXT,
    event_offset BIGINT
);
CREATE UNIQUE INDEX notices_idempotency_key ON notices (caller, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- What an advancing cursor may acknowledge.
CREATE INDEX notices_unacknowledged ON notices (event_channel, event_offset) WHERE status = 'pending' AND event_offset IS NOT NULL;
CREATE INDEX notices_inbox ON notices (user_id, id) WHERE event_offset IS NOT NULL;
CREATE INDEX notices_by_user ON notices (user_id, id);
-- Admins' lists by status or type, newest first.
CREATE INDEX notices_by_status ON notices (status, id);
CREATE INDEX notices_by_type ON notices (type, id);

CREATE TABLE notice_steps (
    notice_id UUID NOT NULL REFERENCES notices (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    after_secs INTEGER NOT NULL,
    status TEXT NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    sent_at TIMESTAMPTZ,
    reason TEXT,
    delivery_id UUID,
    PRIMARY KEY (notice_id, idx)
);
CREATE INDEX notice_steps_due ON notice_steps (due_at) WHERE status IN ('pending', 'deferred');
CREATE INDEX notice_steps_sending ON notice_steps (delivery_id) WHERE status = 'sending';
