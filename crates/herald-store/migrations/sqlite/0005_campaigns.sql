-- Campaigns: clients, mailings, and the link from a delivery to what it belongs to (a mailing's
-- messages carry the mailing as source_id and the client as recipient_id).

-- Clients. The phone is unique (the index is named as PostgreSQL names its constraint); timezone
-- is an IANA name.
CREATE TABLE clients (
    id            BLOB    NOT NULL PRIMARY KEY,
    phone         TEXT    NOT NULL,
    operator_code TEXT    NOT NULL,
    tag           TEXT    NOT NULL,
    timezone      TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX clients_phone_key ON clients (phone);
CREATE INDEX clients_by_operator_code ON clients (operator_code);
CREATE INDEX clients_by_tag ON clients (tag);

-- Mailings. Filter parts are JSON arrays of strings, NULL matching every client; the send window
-- is local time, HH:MM.
CREATE TABLE mailings (
    id             BLOB    NOT NULL PRIMARY KEY,
    start_at       INTEGER NOT NULL,
    end_at         INTEGER NOT NULL,
    text           TEXT    NOT NULL,
    operator_codes TEXT CHECK (operator_codes IS NULL OR json_type(operator_codes) = 'array'),
    tags           TEXT CHECK (tags IS NULL OR json_type(tags) = 'array'),
    window_from    TEXT,
    window_to      TEXT,
    status         TEXT    NOT NULL CHECK (status IN ('scheduled', 'running', 'finished', 'cancelled')),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    CHECK ((window_from IS NULL) = (window_to IS NULL))
) STRICT;

CREATE INDEX mailings_due ON mailings (status, start_at);
CREATE INDEX mailings_by_status ON mailings (status, id);

-- The first-attempt plan of a mailing being started: written, joined and deleted inside the
-- transaction that starts it, so it is empty outside one. SQLite has no hash join; this primary key
-- lets the message insert find each client's zone by index instead of scanning the plan per client.
CREATE TABLE mailing_start_plans (
    mailing_id BLOB    NOT NULL,
    zone       TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (mailing_id, zone)
) STRICT, WITHOUT ROWID;

ALTER TABLE deliveries ADD COLUMN source_id BLOB;
ALTER TABLE deliveries ADD COLUMN recipient_id BLOB;

-- A mailing's messages: counted, checked for live ones and listed by status, and listed by id.
-- The id in the first key keeps a page of one status an index range however little the planner
-- knows of the data (next to nothing, right after a mailing wrote a million rows).
CREATE INDEX deliveries_by_source_status ON deliveries (source_id, status, id) WHERE source_id IS NOT NULL;
CREATE INDEX deliveries_by_source ON deliveries (source_id, id) WHERE source_id IS NOT NULL;
-- A client's pending messages, cancelled when the client is deleted.
CREATE INDEX deliveries_by_recipient ON deliveries (recipient_id, status) WHERE recipient_id IS NOT NULL;
