-- A started mailing's messages are created in chunks of clients by id: `materializing` while
-- some are left, `materialized_through` the last client id done, `materialize_high` the highest
-- client id at the start (clients added later are not in the mailing). A mailing still
-- materializing is never finished.
ALTER TABLE mailings ADD COLUMN materializing BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE mailings ADD COLUMN materialized_through UUID;
ALTER TABLE mailings ADD COLUMN materialize_high UUID;
CREATE INDEX mailings_materializing ON mailings (id) WHERE materializing;
