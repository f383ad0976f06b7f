-- Records a worker could not handle: failures in a row, when the worker takes the record again,
-- and whether it is quarantined (left alone until an administrator retries it). One entry per
-- worker and record; `record` is a UUID or, for the relay, a stream's name.
CREATE TABLE held_records (
    id              uuid        NOT NULL PRIMARY KEY,
    worker          text        NOT NULL,
    record          text        NOT NULL,
    reason          text        NOT NULL,
    error           text        NOT NULL,
    failures        integer     NOT NULL,
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL,
    retry_at        timestamptz NOT NULL,
    quarantined_at  timestamptz
);
CREATE UNIQUE INDEX held_records_key ON held_records (worker, record);
CREATE INDEX held_records_quarantined ON held_records (id) WHERE quarantined_at IS NOT NULL;
