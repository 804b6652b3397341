//! The PostgreSQL schema and its migration, run at start-up.
//!
//! Every table is keyed first by the key it would be sharded on: the
//! conversation (`convs`, `messages`, `groups` and `group_members`, whose
//! `gid` is the conversation `group:<gid>`) or the user (`users`,
//! `friends`, `client_ids`, `user_convs`, `hidden`). `tern_meta` (settings)
//! and `signing_keys` are tiny tables (reference tables when sharded). Text columns
//! are never sorted by the database (its collation may differ from byte
//! order): the store sorts in Rust where order matters.

use sqlx::PgConnection;
use tern_core::store::{StoreError, StoreResult};

use crate::common::be;

/// Bumped with every change of [`SCHEMA`]; kept in `tern_meta`.
pub const VERSION: i64 = 12;

/// Key of the advisory lock that serializes migrations of nodes starting at
/// the same time (ASCII "tern-mig").
pub(crate) const MIGRATION_LOCK: i64 = 0x7465_726e_2d6d_6967;

const META: &str = r#"
CREATE TABLE IF NOT EXISTS tern_meta (
    key   TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
"#;

pub const SCHEMA: &str = r#"
-- Shard key: user_id.
CREATE TABLE IF NOT EXISTS users (
    user_id       TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    -- A media id, '' for none (version 6): see MIGRATE_TO_6.
    avatar        TEXT NOT NULL DEFAULT ''
);

-- Shard key: user_id. One row per side of a relation: 'friend' (both
-- asked), 'out' (user_id asked other), 'in' (other asked user_id).
CREATE TABLE IF NOT EXISTS friends (
    user_id TEXT NOT NULL,
    other   TEXT NOT NULL,
    state   TEXT NOT NULL CHECK (state IN ('friend', 'out', 'in')),
    since   BIGINT NOT NULL,
    PRIMARY KEY (user_id, other)
);

-- Shard key: conv. The seq counter (its row lock serializes appends to the
-- conversation) and the last activity.
CREATE TABLE IF NOT EXISTS convs (
    conv       TEXT PRIMARY KEY,
    max_seq    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Shard key: conv.
CREATE TABLE IF NOT EXISTS messages (
    conv          TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    msg_id        BIGINT NOT NULL,
    from_user     TEXT NOT NULL,
    to_user       TEXT,
    group_id      TEXT,
    kind          TEXT NOT NULL,
    content       TEXT,
    ts            BIGINT NOT NULL,
    client_msg_id TEXT,
    recalled      BOOLEAN NOT NULL DEFAULT false,
    -- Whether the message enters its recipients' offline queues: every 1:1
    -- message, group messages while the group is write-diffused.
    inboxed       BOOLEAN NOT NULL DEFAULT true,
    -- 5.1 (version 5): see MIGRATE_TO_5.
    reply_to      BIGINT,
    mentions      TEXT,
    edited_at     BIGINT,
    PRIMARY KEY (conv, seq)
);
-- Message ids are unique (version 2); a starting node reads its newest one
-- here. (Sharded by conv, this would become a table keyed by msg_id.)
CREATE UNIQUE INDEX IF NOT EXISTS messages_msg_id ON messages (msg_id);

-- Shard key: from_user. Deduplication: a sender's client_msg_id names one
-- message; the primary key makes a concurrent duplicate fail to commit.
CREATE TABLE IF NOT EXISTS client_ids (
    from_user     TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    conv          TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    PRIMARY KEY (from_user, client_msg_id)
);

-- Shard key: user_id. A user's place in a conversation. For a former group
-- member, until_seq and until_ts bound what they see. The offline queue is
-- derived: the inboxed messages above inbox_seq that others sent.
CREATE TABLE IF NOT EXISTS user_convs (
    user_id         TEXT NOT NULL,
    conv            TEXT NOT NULL,
    peer            TEXT,
    group_id        TEXT,
    read_seq        BIGINT NOT NULL DEFAULT 0,
    delivered_seq   BIGINT NOT NULL DEFAULT 0,
    read_updated_at BIGINT NOT NULL DEFAULT 0,
    until_seq       BIGINT,
    until_ts        BIGINT,
    inbox_seq       BIGINT NOT NULL DEFAULT 0,
    -- 5.1 (version 5): the newest seq that mentions the user.
    mention_seq     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, conv)
);

-- Shard key: user_id. Messages a user deleted for themself.
CREATE TABLE IF NOT EXISTS hidden (
    user_id TEXT NOT NULL,
    conv    TEXT NOT NULL,
    seq     BIGINT NOT NULL,
    PRIMARY KEY (user_id, conv, seq)
);

-- Shard key: gid (with the conversation group:<gid>). version: the seq of
-- the newest membership change (system message).
CREATE TABLE IF NOT EXISTS groups (
    gid        TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    owner      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    next_order BIGINT NOT NULL DEFAULT 0,
    version    BIGINT NOT NULL DEFAULT 0,
    -- Settings (version 4): see MIGRATE_TO_4.
    announcement TEXT NOT NULL DEFAULT '',
    muted_all    BOOLEAN NOT NULL DEFAULT false,
    dissolved    BOOLEAN NOT NULL DEFAULT false
);

-- Shard key: gid.
CREATE TABLE IF NOT EXISTS group_members (
    gid        TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    join_order BIGINT NOT NULL,
    -- Roles (version 4): an admin; muted until then (ms).
    admin       BOOLEAN NOT NULL DEFAULT false,
    muted_until BIGINT,
    PRIMARY KEY (gid, user_id)
);
CREATE INDEX IF NOT EXISTS group_members_order ON group_members (gid, join_order);

-- The keys that sign session tokens (version 3): the newest signs, every
-- one verifies the tokens that name its kid. A reference table when
-- sharded (a handful of rows, read by every node).
CREATE TABLE IF NOT EXISTS signing_keys (
    kid        TEXT PRIMARY KEY,
    secret     BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- 5.4 and blocks (version 4). Shard key: user_id (user_id blocked
-- blocked); the index answers "who blocked me".
CREATE TABLE IF NOT EXISTS blocks (
    user_id    TEXT NOT NULL,
    blocked    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, blocked)
);
CREATE INDEX IF NOT EXISTS blocks_blocked ON blocks (blocked, user_id);

-- 5.1 (version 5). Shard key: conv. One row per user and emoji on a
-- message.
CREATE TABLE IF NOT EXISTS reactions (
    conv    TEXT NOT NULL,
    seq     BIGINT NOT NULL,
    emoji   TEXT NOT NULL,
    user_id TEXT NOT NULL,
    ts      BIGINT NOT NULL,
    PRIMARY KEY (conv, seq, emoji, user_id)
);

-- 5.3 (version 6): a user's settings of a conversation, a row only while
-- they differ from the defaults. Shard key: user_id.
CREATE TABLE IF NOT EXISTS conv_settings (
    user_id     TEXT NOT NULL,
    conv        TEXT NOT NULL,
    muted_until BIGINT NOT NULL DEFAULT 0,
    pinned      BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (user_id, conv)
);

-- 5.3 (version 6): one row per session token (its id), until it is
-- revoked or the user's next session finds it expired. Shard key:
-- session (the index answers "my sessions").
CREATE TABLE IF NOT EXISTS sessions (
    session    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id, expires_at);

-- 5.6 scheduled messages (version 9): a send kept until at_ms. peer: the
-- recipient of a 1:1 message or the group id; reply_to 0 for none;
-- mentions a JSON array, '' for none; lease_until: a node claimed the row
-- until then. Shard key: id.
CREATE TABLE IF NOT EXISTS scheduled (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    conv          TEXT NOT NULL,
    peer          TEXT NOT NULL,
    at_ms         BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    content       TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    reply_to      BIGINT NOT NULL DEFAULT 0,
    mentions      TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    lease_until   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS scheduled_user ON scheduled (user_id, at_ms);
CREATE INDEX IF NOT EXISTS scheduled_due ON scheduled (at_ms);
"#;

/// Version 5 (5.1) adds a message's reply, mentions and edit time, and a
/// user's mention position (the newest seq that mentions them), empty for
/// what exists; `SCHEMA` then creates `reactions`. The step stands alone:
/// it runs for any older version, whatever came between.
const MIGRATE_TO_5: &str = r#"
ALTER TABLE messages ADD COLUMN IF NOT EXISTS reply_to BIGINT;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS mentions TEXT;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS edited_at BIGINT;
ALTER TABLE user_convs ADD COLUMN IF NOT EXISTS mention_seq BIGINT NOT NULL DEFAULT 0;
"#;

/// Version 6 (5.3 profiles, conversation settings, sessions) adds the
/// users' avatar; `SCHEMA` then creates `conv_settings` and `sessions`.
/// The step stands alone: it runs for any older version, whatever came
/// between.
const MIGRATE_TO_6: &str = r#"
ALTER TABLE users ADD COLUMN IF NOT EXISTS avatar TEXT NOT NULL DEFAULT '';
"#;

/// Version 4 (5.4 and blocks) adds the groups' settings and the members'
/// roles, with defaults (every group open, every member plain and
/// unmuted); `SCHEMA` then creates `blocks`. The step stands alone: it
/// runs for any older version, whatever came between.
const MIGRATE_TO_4: &str = r#"
ALTER TABLE groups ADD COLUMN IF NOT EXISTS announcement TEXT NOT NULL DEFAULT '';
ALTER TABLE groups ADD COLUMN IF NOT EXISTS muted_all BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE groups ADD COLUMN IF NOT EXISTS dissolved BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE group_members ADD COLUMN IF NOT EXISTS admin BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE group_members ADD COLUMN IF NOT EXISTS muted_until BIGINT;
"#;

/// Version 7 (5.2 search): each message's mark `indexed` (false for every
/// existing message, so the indexers take them all, and for every new one
/// by default: nothing more is written when a message is stored), the
/// index of those not yet indexed, and the terms of the indexed ones
/// (`search_docs`, shard key conv) under a GIN index. The step stands
/// alone and may run again.
const MIGRATE_TO_7: &str = r#"
ALTER TABLE messages ADD COLUMN IF NOT EXISTS indexed BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS messages_unindexed ON messages (msg_id) WHERE NOT indexed;
CREATE TABLE IF NOT EXISTS search_docs (
    conv  TEXT NOT NULL,
    seq   BIGINT NOT NULL,
    terms tsvector NOT NULL,
    PRIMARY KEY (conv, seq)
);
CREATE INDEX IF NOT EXISTS search_docs_terms ON search_docs USING GIN (terms);
"#;

/// Version 8 (5.6): the users' bot flag (every existing user a person)
/// and the durable jobs (webhook deliveries; shard key: none, a small
/// table of work in flight). Stands alone and may run again.
const MIGRATE_TO_8: &str = r#"
ALTER TABLE users ADD COLUMN IF NOT EXISTS bot BOOLEAN NOT NULL DEFAULT false;
CREATE TABLE IF NOT EXISTS jobs (
    id            BIGSERIAL PRIMARY KEY,
    kind          TEXT NOT NULL,
    job_key       TEXT NOT NULL UNIQUE,
    payload       TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    due_at        BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    attempts      BIGINT NOT NULL DEFAULT 0,
    last_error    TEXT
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (kind, due_at);
"#;

/// Version 10 (5.5 media): the uploads' metadata (shard key id).
/// `referenced` is set once a message or a profile names the media; the
/// sweep removes those still unset after the grace period. The step
/// stands alone and may run again.
const MIGRATE_TO_10: &str = r#"
CREATE TABLE IF NOT EXISTS media (
    id         TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    size       BIGINT NOT NULL,
    mime       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    w          BIGINT,
    h          BIGINT,
    filename   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    referenced BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS media_unreferenced ON media (created_at) WHERE NOT referenced;
"#;

/// Version 11 (5.5 offline push): each device's registration with its
/// provider and the session that made it (shard key user_id). Stands
/// alone and may run again.
const MIGRATE_TO_11: &str = r#"
CREATE TABLE IF NOT EXISTS push_devices (
    user_id    TEXT NOT NULL,
    device     TEXT NOT NULL,
    provider   TEXT NOT NULL,
    token      TEXT NOT NULL,
    endpoint   TEXT NOT NULL,
    p256dh     TEXT NOT NULL,
    auth       TEXT NOT NULL,
    session    TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, device)
);
"#;

/// Version 12 (5.6 retention): a conversation's own retention in days, a
/// row only while one is set (shard key conv). Stands alone and may run
/// again.
const MIGRATE_TO_12: &str = r#"
CREATE TABLE IF NOT EXISTS conv_retention (
    conv       TEXT PRIMARY KEY,
    days       BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
"#;

/// Version 2 makes `msg_id` unique. A clock that stepped back across a
/// restart may have repeated ids before: each later copy gets a fresh id
/// above every stored one, the oldest keeps its own. `SCHEMA` then
/// creates the index.
const MIGRATE_1_2: &str = r#"
WITH top AS (SELECT max(msg_id) AS id FROM messages),
     later AS (SELECT conv, seq, row_number() OVER (ORDER BY conv, seq) AS n
               FROM (SELECT conv, seq,
                            row_number() OVER (PARTITION BY msg_id ORDER BY ts, conv, seq) AS k
                     FROM messages) x
               WHERE k > 1)
UPDATE messages m SET msg_id = top.id + later.n
FROM top, later WHERE m.conv = later.conv AND m.seq = later.seq;
"#;

/// Creates or checks the schema in the connection's `search_path`, in one
/// transaction holding an advisory lock, so that nodes starting at once
/// migrate one after the other.
pub async fn migrate(conn: &mut PgConnection) -> StoreResult<()> {
    use sqlx::Connection;
    let mut tx = conn.begin().await.map_err(be)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(be)?;
    sqlx::raw_sql(META).execute(&mut *tx).await.map_err(be)?;
    let found: Option<i64> =
        sqlx::query_scalar("SELECT value FROM tern_meta WHERE key = 'schema_version'")
            .fetch_optional(&mut *tx)
            .await
            .map_err(be)?;
    match found {
        Some(v) if v > VERSION => {
            tracing::error!(
                found = v,
                supported = VERSION,
                "database schema is newer than this binary"
            );
            return Err(StoreError::Invalid(
                "database schema is newer than this binary",
            ));
        }
        Some(v) if v == VERSION => {}
        found => {
            if found == Some(1) {
                sqlx::raw_sql(MIGRATE_1_2)
                    .execute(&mut *tx)
                    .await
                    .map_err(be)?;
            }
            // 5.4 and blocks
            if found.is_some_and(|v| v < 4) {
                sqlx::raw_sql(MIGRATE_TO_4)
                    .execute(&mut *tx)
                    .await
                    .map_err(be)?;
            }
            // 5.1
            if found.is_some_and(|v| v < 5) {
                sqlx::raw_sql(MIGRATE_TO_5)
                    .execute(&mut *tx)
                    .await
                    .map_err(be)?;
            }
            // 5.3 profiles, conversation settings, sessions
            if found.is_some_and(|v| v < 6) {
                sqlx::raw_sql(MIGRATE_TO_6)
                    .execute(&mut *tx)
                    .await
                    .map_err(be)?;
            }
            sqlx::raw_sql(SCHEMA).execute(&mut *tx).await.map_err(be)?;
            // 5.2 search (a new database too)
            sqlx::raw_sql(MIGRATE_TO_7)
                .execute(&mut *tx)
                .await
                .map_err(be)?;
            // 5.6 integrations (a new database too)
            sqlx::raw_sql(MIGRATE_TO_8)
                .execute(&mut *tx)
                .await
                .map_err(be)?;
            // 5.5 media (a new database too)
            sqlx::raw_sql(MIGRATE_TO_10)
                .execute(&mut *tx)
                .await
                .map_err(be)?;
            // 5.5 offline push (a new database too)
            sqlx::raw_sql(MIGRATE_TO_11)
                .execute(&mut *tx)
                .await
                .map_err(be)?;
            // 5.6 retention (a new database too)
            sqlx::raw_sql(MIGRATE_TO_12)
                .execute(&mut *tx)
                .await
                .map_err(be)?;
            sqlx::query(
                "INSERT INTO tern_meta (key, value) VALUES ('schema_version', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            )
            .bind(VERSION)
            .execute(&mut *tx)
            .await
            .map_err(be)?;
        }
    }
    tx.commit().await.map_err(be)?;
    Ok(())
}
