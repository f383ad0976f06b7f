-- A mailing's timeline: counters per ten-second bucket (`bucket`, Unix seconds, a multiple of
-- 10), added to in the transaction that changes a message, so progress, charts and the daily
-- report sum a few rows instead of counting messages. `calls_*` is the provider call-time
-- histogram: calls that took at most 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000 ms, and
-- longer (`calls_over`).
CREATE TABLE mailing_timeline (
    mailing_id  BLOB    NOT NULL,
    bucket      INTEGER NOT NULL,
    created     INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    sent        INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    expired     INTEGER NOT NULL DEFAULT 0,
    cancelled   INTEGER NOT NULL DEFAULT 0,
    retried     INTEGER NOT NULL DEFAULT 0,
    calls_5     INTEGER NOT NULL DEFAULT 0,
    calls_10    INTEGER NOT NULL DEFAULT 0,
    calls_25    INTEGER NOT NULL DEFAULT 0,
    calls_50    INTEGER NOT NULL DEFAULT 0,
    calls_100   INTEGER NOT NULL DEFAULT 0,
    calls_250   INTEGER NOT NULL DEFAULT 0,
    calls_500   INTEGER NOT NULL DEFAULT 0,
    calls_1000  INTEGER NOT NULL DEFAULT 0,
    calls_2500  INTEGER NOT NULL DEFAULT 0,
    calls_5000  INTEGER NOT NULL DEFAULT 0,
    calls_over  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (mailing_id, bucket)
) WITHOUT ROWID;
-- The daily report sums every mailing's buckets of one day.
CREATE INDEX mailing_timeline_by_bucket ON mailing_timeline (bucket);

-- Mailings that ran before the timeline existed: each message counted as made when it was
-- created, and as settled (with its attempts, without call times) when it last changed. Times
-- are microseconds since the Unix epoch.
INSERT INTO mailing_timeline (mailing_id, bucket, created)
SELECT source_id, created_at / 10000000 * 10, count(*)
FROM deliveries WHERE kind = 'mailing.message' AND source_id IS NOT NULL GROUP BY 1, 2;
INSERT INTO mailing_timeline AS t (mailing_id, bucket, attempts, sent, failed, expired, cancelled)
SELECT source_id, COALESCE(sent_at, updated_at) / 10000000 * 10, sum(attempts), sum(status = 'sent'),
    sum(status = 'failed'), sum(status = 'expired'), sum(status = 'cancelled')
FROM deliveries WHERE kind = 'mailing.message' AND source_id IS NOT NULL
    AND status IN ('sent', 'failed', 'expired', 'cancelled') GROUP BY 1, 2
ON CONFLICT (mailing_id, bucket) DO UPDATE SET attempts = t.attempts + excluded.attempts,
    sent = t.sent + excluded.sent, failed = t.failed + excluded.failed, expired = t.expired + excluded.expired,
    cancelled = t.cancelled + excluded.cancelled;
