-- Records a worker could not handle: failures in a row, when the worker takes the record again,
-- and whether it is quarantined (left alone until an administrator retries it). One entry per
-- worker and record; `record` is a UUID or, for the relay, a stream's name.
CREATE TABLE held_records (
    id              BLOB    NOT NULL PRIMARY KEY,
    worker          TEXT    NOT NULL,
    record          TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    error           TEXT    NOT NULL,
    failures        INTEGER NOT NULL,
    first_failed_at INTEGER NOT NULL,
    last_failed_at  INTEGER NOT NULL,
    retry_at        INTEGER NOT NULL,
    quarantined_at  INTEGER
) STRICT;
CREATE UNIQUE INDEX held_records_key ON held_records (worker, record);
CREATE INDEX held_records_quarantined ON held_records (id) WHERE quarantined_at IS NOT NULL;
