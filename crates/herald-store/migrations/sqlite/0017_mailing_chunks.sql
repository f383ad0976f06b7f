-- A started mailing's messages are created in chunks of clients by id: `materializing` while
-- some are left, `materialized_through` the last client id done, `materialize_high` the highest
-- client id at the start (clients added later are not in the mailing). A mailing still
-- materializing is never finished.
ALTER TABLE mailings ADD COLUMN materializing INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailings ADD COLUMN materialized_through BLOB;
ALTER TABLE mailings ADD COLUMN materialize_high BLOB;
CREATE INDEX mailings_materializing ON mailings (id) WHERE materializing;
