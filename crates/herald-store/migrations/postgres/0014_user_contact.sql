-- A person's contact points and zone (for notifications and their quiet hours), and their
-- notification preferences as a JSON document (NULL: the defaults).
ALTER TABLE users ADD COLUMN phone TEXT;
ALTER TABLE users ADD COLUMN timezone TEXT;
ALTER TABLE users ADD COLUMN preferences TEXT;
