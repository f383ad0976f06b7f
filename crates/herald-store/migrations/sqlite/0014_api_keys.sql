-- API keys: only the SHA-256 of each secret is kept, looked up by its unique index. `scopes` is
-- a JSON array of texts.
CREATE TABLE api_keys (
    id         BLOB    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    key_hash   TEXT    NOT NULL UNIQUE,
    scopes     TEXT    NOT NULL,
    created_by BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
