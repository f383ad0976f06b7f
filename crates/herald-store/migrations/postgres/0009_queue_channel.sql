-- The `queue` channel: a delivery whose payload is published, as it is, on a broker work queue
-- (calendar reminders go to `notifications`).
ALTER TABLE deliveries DROP CONSTRAINT deliveries_channel_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_channel_check
    CHECK (channel IN ('log', 'provider', 'webhook', 'realtime', 'queue'));
