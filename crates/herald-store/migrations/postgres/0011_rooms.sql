-- Chat rooms, their members and their messages. The owner is a room's first member; rooms are
-- never deleted (they go with their owner).
CREATE TABLE rooms (
    id         UUID        NOT NULL PRIMARY KEY,
    name       TEXT        NOT NULL,
    owner_id   UUID        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE room_members (
    room_id   UUID        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   UUID        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- A user's rooms, by id.
CREATE INDEX room_members_by_user ON room_members (user_id, room_id);

CREATE TABLE room_messages (
    id         UUID        NOT NULL PRIMARY KEY,
    room_id    UUID        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    author_id  UUID        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    body       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- A room's messages by id (newest first is this index read backwards).
CREATE INDEX room_messages_by_room ON room_messages (room_id, id);
