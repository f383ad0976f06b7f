-- Chat rooms, their members and their messages. The owner is a room's first member; rooms are
-- never deleted (they go with their owner).
CREATE TABLE rooms (
    id         BLOB    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    owner_id   BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE room_members (
    room_id   BLOB    NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) STRICT;

-- A user's rooms, by id.
CREATE INDEX room_members_by_user ON room_members (user_id, room_id);

CREATE TABLE room_messages (
    id         BLOB    NOT NULL PRIMARY KEY,
    room_id    BLOB    NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    author_id  BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- A room's messages by id (newest first is this index read backwards).
CREATE INDEX room_messages_by_room ON room_messages (room_id, id);
