-- The roster of a live meeting room, saved after every change so that a room rebuilt on
-- another node starts from it (used when no Redis is configured).
CREATE TABLE meeting_rooms (
    meeting_id  TEXT PRIMARY KEY REFERENCES meetings (id) ON DELETE CASCADE,
    record      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);
