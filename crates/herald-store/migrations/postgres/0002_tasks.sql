-- Tasks, their attachments, and the outbox of change events written with every change.
CREATE TABLE tasks (
    id          UUID        NOT NULL PRIMARY KEY,
    owner_id    UUID        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title       TEXT        NOT NULL,
    description TEXT        NOT NULL,
    status      TEXT        NOT NULL CHECK (status IN ('todo', 'in_progress', 'done')),
    due_at      TIMESTAMPTZ,
    version     BIGINT      NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE INDEX tasks_by_owner ON tasks (owner_id, id);
CREATE INDEX tasks_by_owner_status ON tasks (owner_id, status, id);

CREATE TABLE attachments (
    id           UUID        NOT NULL PRIMARY KEY,
    task_id      UUID        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    owner_id     UUID        NOT NULL,
    file_name    TEXT        NOT NULL,
    content_type TEXT        NOT NULL,
    size         BIGINT      NOT NULL,
    sha256       TEXT        NOT NULL,
    storage_key  TEXT        NOT NULL CONSTRAINT attachments_storage_key_key UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE INDEX attachments_by_task ON attachments (task_id, id);

-- seq is insertion order; txid (the writing transaction) lets the relay read only rows below the
-- visibility horizon, so a long transaction that commits late is never overtaken.
CREATE TABLE outbox (
    seq           BIGSERIAL   NOT NULL PRIMARY KEY,
    id            UUID        NOT NULL CONSTRAINT outbox_id_key UNIQUE,
    kind          TEXT        NOT NULL,
    channel       TEXT        NOT NULL,
    payload       JSONB       NOT NULL,
    trace_context TEXT,
    txid          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    created_at    TIMESTAMPTZ NOT NULL,
    published_at  TIMESTAMPTZ
);

CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
