-- Each webhook's own signing secret (Standard Webhooks: whsec_ and base64), and the secret it
-- replaced, which signs beside it until webhook_previous_until. Webhooks set before this get a
-- secret when the store migrates (herald_store fills them in code: SQL has no portable base64).
ALTER TABLE users ADD COLUMN webhook_secret TEXT;
ALTER TABLE users ADD COLUMN webhook_previous_secret TEXT;
ALTER TABLE users ADD COLUMN webhook_previous_until INTEGER;
