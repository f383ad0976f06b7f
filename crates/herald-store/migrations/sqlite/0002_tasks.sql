-- Tasks, their attachments, and the outbox of change events written with every change.
CREATE TABLE tasks (
    id          BLOB    NOT NULL PRIMARY KEY,
    owner_id    BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title       TEXT    NOT NULL,
    description TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('todo', 'in_progress', 'done')),
    due_at      INTEGER,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX tasks_by_owner ON tasks (owner_id, id);
CREATE INDEX tasks_by_owner_status ON tasks (owner_id, status, id);

CREATE TABLE attachments (
    id           BLOB    NOT NULL PRIMARY KEY,
    task_id      BLOB    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    owner_id     BLOB    NOT NULL,
    file_name    TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    storage_key  TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX attachments_by_task ON attachments (task_id, id);

-- SQLite has one writer at a time, so seq order is commit order.
CREATE TABLE outbox (
    seq           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    id            BLOB    NOT NULL UNIQUE,
    kind          TEXT    NOT NULL,
    channel       TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    trace_context TEXT,
    created_at    INTEGER NOT NULL,
    published_at  INTEGER
) STRICT;

CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
