-- A client's messages are looked up only to cancel the pending ones (when the client is deleted).
-- Indexing just those keeps the index out of every claim and every report: a message enters it
-- once, when it is created, instead of on each of its status changes.
DROP INDEX deliveries_by_recipient;
CREATE INDEX deliveries_pending_by_recipient ON deliveries (recipient_id)
    WHERE recipient_id IS NOT NULL AND status = 'pending';
