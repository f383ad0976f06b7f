-- The `email` channel: a delivery sent through the configured SMTP server.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_channel_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_channel_check
    CHECK (channel IN ('log', 'provider', 'webhook', 'realtime', 'queue', 'email'));
