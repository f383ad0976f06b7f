-- A user's own webhook: where their calendar reminders are POSTed, besides the log and their channel.
ALTER TABLE users ADD COLUMN webhook_url TEXT;
