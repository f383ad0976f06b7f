-- A mailing's timeline: counters per ten-second bucket (`bucket`, Unix seconds, a multiple of
-- 10), added to in the transaction that changes a message, so progress, charts and the daily
-- report sum a few rows instead of counting messages. `calls_*` is the provider call-time
-- histogram: calls that took at most 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000 ms, and
-- longer (`calls_over`).
CREATE TABLE mailing_timeline (
    mailing_id  UUID   NOT NULL,
    bucket      BIGINT NOT NULL,
    created     BIGINT NOT NULL DEFAULT 0,
    attempts    BIGINT NOT NULL DEFAULT 0,
    sent        BIGINT NOT NULL DEFAULT 0,
    failed      BIGINT NOT NULL DEFAULT 0,
    expired     BIGINT NOT NULL DEFAULT 0,
    cancelled   BIGINT NOT NULL DEFAULT 0,
    retried     BIGINT NOT NULL DEFAULT 0,
    calls_5     BIGINT NOT NULL DEFAULT 0,
    calls_10    BIGINT NOT NULL DEFAULT 0,
    calls_25    BIGINT NOT NULL DEFAULT 0,
    calls_50    BIGINT NOT NULL DEFAULT 0,
    calls_100   BIGINT NOT NULL DEFAULT 0,
    calls_250   BIGINT NOT NULL DEFAULT 0,
    calls_500   BIGINT NOT NULL DEFAULT 0,
    calls_1000  BIGINT NOT NULL DEFAULT 0,
    calls_2500  BIGINT NOT NULL DEFAULT 0,
    calls_5000  BIGINT NOT NULL DEFAULT 0,
    calls_over  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (mailing_id, bucket)
);
-- The daily report sums every mailing's buckets of one day.
CREATE INDEX mailing_timeline_by_bucket ON mailing_timeline (bucket);

-- Mailings that ran before the timeline existed: each message counted as made when it was
-- created, and as settled (with its attempts, without call times) when it last changed.
INSERT INTO mailing_timeline (mailing_id, bucket, created)
SELECT source_id, floor(extract(epoch FROM created_at) / 10)::BIGINT * 10, count(*)
FROM deliveries WHERE kind = 'mailing.message' AND source_id IS NOT NULL GROUP BY 1, 2;
INSERT INTO mailing_timeline AS t (mailing_id, bucket, attempts, sent, failed, expired, cancelled)
SELECT source_id, floor(extract(epoch FROM COALESCE(sent_at, updated_at)) / 10)::BIGINT * 10, sum(attempts),
    count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed'),
    count(*) FILTER (WHERE status = 'expired'), count(*) FILTER (WHERE status = 'cancelled')
FROM deliveries WHERE kind = 'mailing.message' AND source_id IS NOT NULL
    AND status IN ('sent', 'failed', 'expired', 'cancelled') GROUP BY 1, 2
ON CONFLICT (mailing_id, bucket) DO UPDATE SET attempts = t.attempts + EXCLUDED.attempts,
    sent = t.sent + EXCLUDED.sent, failed = t.failed + EXCLUDED.failed, expired = t.expired + EXCLUDED.expired,
    cancelled = t.cancelled + EXCLUDED.cancelled;
