-- Users. Ids are UUIDv7 as 16-byte blobs (byte order is creation order); times are Unix microseconds.
CREATE TABLE users (
    id            BLOB    NOT NULL PRIMARY KEY,
    email         TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('user', 'admin')),
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX users_email_key ON users (email);
