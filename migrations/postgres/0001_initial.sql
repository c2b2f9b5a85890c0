-- Initial schema (PostgreSQL dialect). Never edit once landed: add a new migration.
-- Ids are UUID text, times are milliseconds since the Unix epoch, flags are 0/1.

CREATE TABLE companies (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    company_id     TEXT NOT NULL REFERENCES companies(id),
    username       TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    is_admin       BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    UNIQUE (company_id, username)
);
CREATE INDEX users_company ON users (company_id);

CREATE TABLE channels (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL REFERENCES companies(id),
    kind        TEXT NOT NULL CHECK (kind IN ('public', 'private', 'dm')),
    name        TEXT NOT NULL,
    dm_key      TEXT,
    created_by  TEXT NOT NULL REFERENCES users(id),
    created_at  BIGINT NOT NULL,
    UNIQUE (company_id, dm_key)
);
CREATE INDEX channels_company ON channels (company_id);

CREATE TABLE channel_members (
    channel_id  TEXT NOT NULL REFERENCES channels(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    company_id  TEXT NOT NULL REFERENCES companies(id),
    joined_at   BIGINT NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX channel_members_user ON channel_members (user_id);
CREATE INDEX channel_members_company ON channel_members (company_id);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    channel_id      TEXT NOT NULL REFERENCES channels(id),
    company_id      TEXT NOT NULL REFERENCES companies(id),
    seq             BIGINT NOT NULL,
    sender_id       TEXT NOT NULL REFERENCES users(id),
    client_msg_id   TEXT NOT NULL,
    parent_id       TEXT REFERENCES messages(id),
    body            TEXT NOT NULL,
    mentions        TEXT NOT NULL DEFAULT '[]',
    attachment_ids  TEXT NOT NULL DEFAULT '[]',
    created_at      BIGINT NOT NULL,
    edited_at       BIGINT,
    deleted_at      BIGINT,
    UNIQUE (channel_id, seq),
    UNIQUE (channel_id, client_msg_id)
);
CREATE INDEX messages_company ON messages (company_id);
CREATE INDEX messages_thread ON messages (channel_id, parent_id, seq);

-- The channel's durable event log: one row per seq, written in the same transaction as the change.
CREATE TABLE channel_events (
    channel_id  TEXT NOT NULL REFERENCES channels(id),
    seq         BIGINT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (channel_id, seq)
);

CREATE TABLE reactions (
    message_id  TEXT NOT NULL REFERENCES messages(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    emoji       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (message_id, user_id, emoji)
);

CREATE TABLE read_cursors (
    channel_id  TEXT NOT NULL REFERENCES channels(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    seq         BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);

CREATE TABLE attachments (
    id            TEXT PRIMARY KEY,
    company_id    TEXT NOT NULL REFERENCES companies(id),
    channel_id    TEXT NOT NULL REFERENCES channels(id),
    uploader_id   TEXT NOT NULL REFERENCES users(id),
    filename      TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          BIGINT NOT NULL,
    data          BYTEA NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX attachments_company ON attachments (company_id);
CREATE INDEX attachments_channel ON attachments (channel_id);

CREATE TABLE meetings (
    id            TEXT PRIMARY KEY,
    company_id    TEXT NOT NULL REFERENCES companies(id),
    channel_id    TEXT REFERENCES channels(id),
    title         TEXT NOT NULL,
    host_id       TEXT NOT NULL REFERENCES users(id),
    scheduled_at  BIGINT,
    lobby         BIGINT NOT NULL DEFAULT 0,
    status        TEXT NOT NULL DEFAULT 'scheduled',
    created_at    BIGINT NOT NULL,
    ended_at      BIGINT
);
CREATE INDEX meetings_company ON meetings (company_id);

CREATE TABLE meeting_invitees (
    meeting_id  TEXT NOT NULL REFERENCES meetings(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    PRIMARY KEY (meeting_id, user_id)
);
CREATE INDEX meeting_invitees_user ON meeting_invitees (user_id);

CREATE TABLE device_tokens (
    token       TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    company_id  TEXT NOT NULL REFERENCES companies(id),
    platform    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX device_tokens_user ON device_tokens (user_id);
