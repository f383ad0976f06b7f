-- Accounts at OpenID Connect providers, each linked to one Herald account: keyed by the
-- provider's issuer and its subject for the person (never by email).
CREATE TABLE user_identities (
    issuer     TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    user_id    BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
) WITHOUT ROWID;
CREATE INDEX user_identities_by_user ON user_identities (user_id);
