-- Users. Ids are UUIDv7 (creation order); emails are stored normalised (lower case).
CREATE TABLE users (
    id            UUID        NOT NULL PRIMARY KEY,
    email         TEXT        NOT NULL CONSTRAINT users_email_key UNIQUE,
    name          TEXT        NOT NULL,
    role          TEXT        NOT NULL CHECK (role IN ('user', 'admin')),
    password_hash TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
