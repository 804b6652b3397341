-- The schema of version 1, kept to test the upgrade from it.
CREATE TABLE IF NOT EXISTS users (
    user          TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

-- An unanswered friend request.
CREATE TABLE IF NOT EXISTS friend_requests (
    from_user  TEXT NOT NULL,
    to_user    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (from_user, to_user)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS friend_requests_to ON friend_requests (to_user, from_user);

-- A friendship, stored in both directions.
CREATE TABLE IF NOT EXISTS friends (
    user   TEXT NOT NULL,
    friend TEXT NOT NULL,
    since  INTEGER NOT NULL,
    PRIMARY KEY (user, friend)
) WITHOUT ROWID;

-- One row per conversation: the seq counter and the last activity.
CREATE TABLE IF NOT EXISTS convs (
    conv       TEXT PRIMARY KEY,
    max_seq    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS messages (
    conv          TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    msg_id        INTEGER NOT NULL,
    from_user     TEXT NOT NULL,
    to_user       TEXT,
    group_id      TEXT,
    kind          TEXT NOT NULL,
    content       TEXT,
    ts            INTEGER NOT NULL,
    client_msg_id TEXT,
    recalled      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (conv, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_dedup
    ON messages (from_user, client_msg_id) WHERE client_msg_id IS NOT NULL;

-- A user's place in a conversation. For a former group member, until_seq
-- and until_ts bound what they see.
CREATE TABLE IF NOT EXISTS user_convs (
    user            TEXT NOT NULL,
    conv            TEXT NOT NULL,
    peer            TEXT,
    group_id        TEXT,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    delivered_seq   INTEGER NOT NULL DEFAULT 0,
    read_updated_at INTEGER NOT NULL DEFAULT 0,
    until_seq       INTEGER,
    until_ts        INTEGER,
    PRIMARY KEY (user, conv)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS user_convs_conv ON user_convs (conv, user);

-- Messages a user deleted for themself.
CREATE TABLE IF NOT EXISTS hidden (
    user TEXT NOT NULL,
    conv TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    PRIMARY KEY (user, conv, seq)
) WITHOUT ROWID;

-- Offline queues: entries in arrival order, until acknowledged.
CREATE TABLE IF NOT EXISTS offline (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    conv TEXT NOT NULL,
    seq  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS offline_user ON offline (user, id);
CREATE INDEX IF NOT EXISTS offline_user_conv ON offline (user, conv, seq);

CREATE TABLE IF NOT EXISTS offline_state (
    user      TEXT PRIMARY KEY,
    queued    INTEGER NOT NULL DEFAULT 0,
    truncated INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS groups (
    gid        TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    owner      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    next_order INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS group_members (
    gid        TEXT NOT NULL,
    user       TEXT NOT NULL,
    join_order INTEGER NOT NULL,
    PRIMARY KEY (gid, user)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS group_members_order ON group_members (gid, join_order);
