//! The embedded store's schema and connection settings.

use rusqlite::Connection;

/// Bumped with every change of [`SCHEMA`]; kept in `PRAGMA user_version`.
pub const VERSION: i64 = 15;

pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS users (
    user          TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    -- A media id, '' for none (since version 8).
    avatar        TEXT NOT NULL DEFAULT '',
    -- 5.6 (since version 11): 1 for a bot (no password login).
    bot           INTEGER NOT NULL DEFAULT 0
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
    -- 1 when the message enters its recipients' offline queues: every 1:1
    -- message, group messages while the group is write-diffused.
    inboxed       INTEGER NOT NULL DEFAULT 1,
    -- 5.1 (since version 7): see migrate_to_7.
    reply_to      INTEGER,
    mentions      TEXT,
    edited_at     INTEGER,
    UNIQUE (conv, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_dedup
    ON messages (from_user, client_msg_id) WHERE client_msg_id IS NOT NULL;
-- Message ids are unique (since version 3); a starting node reads its
-- newest one here.
CREATE UNIQUE INDEX IF NOT EXISTS messages_msg_id ON messages (msg_id);

-- A user's place in a conversation. For a former group member, until_seq
-- and until_ts bound what they see. The user's offline queue is derived:
-- the inboxed messages above inbox_seq (acknowledged up to there) that
-- others sent, in every conversation of the user.
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
    inbox_seq       INTEGER NOT NULL DEFAULT 0,
    -- 5.1 (since version 7): the newest seq that mentions the user.
    mention_seq     INTEGER NOT NULL DEFAULT 0,
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

CREATE TABLE IF NOT EXISTS groups (
    gid        TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    owner      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    next_order INTEGER NOT NULL DEFAULT 0,
    -- Settings (since version 6): see MIGRATE_5_6.
    announcement TEXT NOT NULL DEFAULT '',
    muted_all    INTEGER NOT NULL DEFAULT 0,
    dissolved    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS group_members (
    gid        TEXT NOT NULL,
    user       TEXT NOT NULL,
    join_order INTEGER NOT NULL,
    -- Roles (since version 6): 1 for an admin; muted until then (ms).
    admin       INTEGER NOT NULL DEFAULT 0,
    muted_until INTEGER,
    PRIMARY KEY (gid, user)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS group_members_order ON group_members (gid, join_order);

-- The keys that sign session tokens (since version 4); the newest signs,
-- every one verifies the tokens that name its kid.
CREATE TABLE IF NOT EXISTS signing_keys (
    kid        TEXT PRIMARY KEY,
    secret     BLOB NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- 5.4 and blocks (since version 6): user blocked blocked.
CREATE TABLE IF NOT EXISTS blocks (
    user       TEXT NOT NULL,
    blocked    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user, blocked)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blocks_blocked ON blocks (blocked, user);

-- 5.1 (since version 7): one row per user and emoji on a message.
CREATE TABLE IF NOT EXISTS reactions (
    conv  TEXT NOT NULL,
    seq   INTEGER NOT NULL,
    emoji TEXT NOT NULL,
    user  TEXT NOT NULL,
    ts    INTEGER NOT NULL,
    PRIMARY KEY (conv, seq, emoji, user)
) WITHOUT ROWID;

-- 5.3 (since version 8): a user's settings of a conversation, a row only
-- while they differ from the defaults (not muted, not pinned).
CREATE TABLE IF NOT EXISTS conv_settings (
    user        TEXT NOT NULL,
    conv        TEXT NOT NULL,
    muted_until INTEGER NOT NULL DEFAULT 0,
    pinned      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user, conv)
) WITHOUT ROWID;

-- 5.3 (since version 8): one row per session token (its id), until it is
-- revoked or the user's next session finds it expired.
CREATE TABLE IF NOT EXISTS sessions (
    session    TEXT PRIMARY KEY,
    user       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user, expires_at);

-- 5.6 (since version 11): durable jobs (webhook deliveries). A job is
-- claimed while claimed_until > now; done jobs are deleted.
CREATE TABLE IF NOT EXISTS jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    job_key       TEXT NOT NULL UNIQUE,
    payload       TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    due_at        INTEGER NOT NULL,
    claimed_until INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (kind, due_at);

-- 5.6 retention (since version 15): a conversation's own retention in
-- days (a row only while one is set), shared by its members.
CREATE TABLE IF NOT EXISTS conv_retention (
    conv       TEXT PRIMARY KEY,
    days       INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- 5.6 scheduled messages (since version 12): a send kept until `at`.
-- `peer`: the recipient of a 1:1 message or the group id; `reply_to` 0
-- for none; `mentions` a JSON array, '' for none; `lease_until`: a
-- scheduler claimed the row until then.
CREATE TABLE IF NOT EXISTS scheduled (
    id            TEXT PRIMARY KEY,
    user          TEXT NOT NULL,
    conv          TEXT NOT NULL,
    peer          TEXT NOT NULL,
    at            INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    content       TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    reply_to      INTEGER NOT NULL DEFAULT 0,
    mentions      TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    lease_until   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS scheduled_user ON scheduled (user, at);
CREATE INDEX IF NOT EXISTS scheduled_due ON scheduled (at);
"#;

/// Settings of every connection. `synchronous = FULL` in WAL mode makes a
/// commit durable (fsync of the log) before it returns.
pub fn configure(conn: &Connection, read_only: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.pragma_update(None, "cache_size", -16_000)?;
    // Savepoint (per-job) journals in memory rather than in a temp file:
    // they only matter until the transaction commits, and the WAL holds
    // what must survive a crash.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    if read_only {
        conn.pragma_update(None, "query_only", true)?;
    }
    Ok(())
}

/// Version 1 kept offline queues as rows (`offline`, `offline_state`).
/// Version 2 derives them from a queue position per user and conversation:
/// where a user had queued entries, the position goes just below the
/// oldest; elsewhere, to the end of what the user can see. (A group that
/// crossed the write-diffusion limit while a user had entries queued may
/// return that user a few read-diffused messages once: clients drop
/// duplicates by `msg_id`.)
const MIGRATE_1_2: &str = r#"
ALTER TABLE messages ADD COLUMN inboxed INTEGER NOT NULL DEFAULT 1;
ALTER TABLE user_convs ADD COLUMN inbox_seq INTEGER NOT NULL DEFAULT 0;
UPDATE user_convs SET inbox_seq = coalesce(
    (SELECT min(o.seq) - 1 FROM offline o WHERE o.user = user_convs.user AND o.conv = user_convs.conv),
    min((SELECT max_seq FROM convs c WHERE c.conv = user_convs.conv), coalesce(until_seq, 9223372036854775807)),
    0);
DROP TABLE offline;
DROP TABLE offline_state;
"#;

/// Version 3 makes `msg_id` unique. A clock that stepped back across a
/// restart may have repeated ids before: each later copy gets a fresh id
/// above every stored one (its rowid added to the highest id), the oldest
/// keeps its own. `SCHEMA` then creates the index.
const MIGRATE_2_3: &str = r#"
UPDATE messages SET msg_id = (SELECT max(msg_id) FROM messages) + rowid
WHERE rowid NOT IN (SELECT min(rowid) FROM messages GROUP BY msg_id);
"#;

/// Adds each `(table, column, type)` a table lacks; a table that is not
/// there yet gets its columns from `SCHEMA`.
fn add_missing(c: &Connection, columns: &[(&str, &str, &str)]) -> rusqlite::Result<()> {
    for (table, column, ty) in columns {
        let table_exists: bool = c
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
            .exists([table])?;
        if !table_exists {
            continue;
        }
        let has: bool = c
            .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
            .exists([table, column])?;
        if !has {
            c.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty};"))?;
        }
    }
    Ok(())
}

/// Version 6 (5.4 and blocks) adds the groups' settings and the members'
/// roles as columns with defaults (every existing group open, every
/// member plain and unmuted); `SCHEMA` then creates `blocks`. The step
/// stands alone: it runs for any older version, whatever came between,
/// and adds only the columns a table lacks.
fn migrate_to_6(c: &Connection) -> rusqlite::Result<()> {
    const COLUMNS: [(&str, &str, &str); 5] = [
        ("groups", "announcement", "TEXT NOT NULL DEFAULT ''"),
        ("groups", "muted_all", "INTEGER NOT NULL DEFAULT 0"),
        ("groups", "dissolved", "INTEGER NOT NULL DEFAULT 0"),
        ("group_members", "admin", "INTEGER NOT NULL DEFAULT 0"),
        ("group_members", "muted_until", "INTEGER"),
    ];
    add_missing(c, &COLUMNS)
}

/// Version 7 (5.1) adds a message's reply, mentions and edit time, and a
/// user's mention position, as columns (empty for what exists); `SCHEMA`
/// then creates `reactions`. Like `migrate_to_6` it stands alone and adds
/// only the columns a table lacks.
fn migrate_to_7(c: &Connection) -> rusqlite::Result<()> {
    const COLUMNS: [(&str, &str, &str); 4] = [
        ("messages", "reply_to", "INTEGER"),
        ("messages", "mentions", "TEXT"),
        ("messages", "edited_at", "INTEGER"),
        ("user_convs", "mention_seq", "INTEGER NOT NULL DEFAULT 0"),
    ];
    add_missing(c, &COLUMNS)
}

/// Version 9 (5.2 search) adds the full-text index of messages and the
/// indexer's position, which starts at 0: the indexer then takes every
/// existing message. Terms are `tern_core::search`'s encoded words, which
/// `unicode61` keeps whole. The step stands alone and may run again.
fn migrate_to_9(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(
             terms, content = '', contentless_delete = 1, tokenize = 'unicode61');
         CREATE TABLE IF NOT EXISTS search_cursor (
             id         INTEGER PRIMARY KEY CHECK (id = 1),
             last_rowid INTEGER NOT NULL
         );
         INSERT OR IGNORE INTO search_cursor (id, last_rowid) VALUES (1, 0);",
    )
}

/// Version 10 indexes each message's conversation term
/// (`tern_core::search::conv_term`) with its words, which searches name:
/// the index starts again from the first message (emptied, the indexer's
/// position back at 0) and the indexer rebuilds it. Stands alone (after
/// `migrate_to_9`) and may run again.
fn migrate_to_10(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "INSERT INTO search_fts (search_fts) VALUES ('delete-all');
         UPDATE search_cursor SET last_rowid = 0 WHERE id = 1;",
    )
}

/// Version 8 (5.3 profiles, conversation settings, sessions): the
/// users' avatar column; `SCHEMA` then creates `conv_settings` and
/// `sessions`. Stands alone and is safe to run again: it runs for any
/// older version, whatever came between.
fn migrate_to_8(c: &Connection) -> rusqlite::Result<()> {
    let table: bool = c
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'users'")?
        .exists([])?;
    let has: bool = c
        .prepare("SELECT 1 FROM pragma_table_info('users') WHERE name = 'avatar'")?
        .exists([])?;
    // No table yet: `SCHEMA` creates it with the column.
    if table && !has {
        c.execute_batch("ALTER TABLE users ADD COLUMN avatar TEXT NOT NULL DEFAULT '';")?;
    }
    Ok(())
}

/// Version 11 (5.6): the users' bot flag (every existing user a person);
/// `SCHEMA` then creates `jobs`. Stands alone and may run again.
fn migrate_to_11(c: &Connection) -> rusqlite::Result<()> {
    add_missing(c, &[("users", "bot", "INTEGER NOT NULL DEFAULT 0")])
}

/// Version 13 (5.5 media): the uploads' metadata. `referenced` is set
/// once a message or a profile names the media; the sweep removes those
/// still unset after the grace period. Stands alone and may run again.
fn migrate_to_13(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS media (
            id         TEXT PRIMARY KEY,
            owner      TEXT NOT NULL,
            size       INTEGER NOT NULL,
            mime       TEXT NOT NULL,
            sha256     TEXT NOT NULL,
            w          INTEGER,
            h          INTEGER,
            filename   TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            referenced INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS media_unreferenced ON media (created_at) WHERE referenced = 0;",
    )
}

/// Version 14 (5.5 offline push): each device's registration with its
/// provider, and the session that made it. Stands alone and may run
/// again.
fn migrate_to_14(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS push_devices (
            user       TEXT NOT NULL,
            device     TEXT NOT NULL,
            provider   TEXT NOT NULL,
            token      TEXT NOT NULL,
            endpoint   TEXT NOT NULL,
            p256dh     TEXT NOT NULL,
            auth       TEXT NOT NULL,
            session    TEXT NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (user, device)
        ) WITHOUT ROWID;",
    )
}

/// Creates, upgrades or checks the schema, in one transaction.
pub fn migrate(conn: &Connection) -> rusqlite::Result<Result<(), i64>> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > VERSION {
        return Ok(Err(version));
    }
    if version == VERSION {
        return Ok(Ok(()));
    }
    let tx = conn.unchecked_transaction()?;
    if version == 1 {
        tx.execute_batch(MIGRATE_1_2)?;
    }
    if (1..=2).contains(&version) {
        tx.execute_batch(MIGRATE_2_3)?;
    }
    // 5.4 and blocks
    if (1..6).contains(&version) {
        migrate_to_6(&tx)?;
    }
    // 5.1
    if (1..7).contains(&version) {
        migrate_to_7(&tx)?;
    }
    // 5.3 profiles, conversation settings, sessions
    if (1..8).contains(&version) {
        migrate_to_8(&tx)?;
    }
    // 5.6 integrations
    if (1..11).contains(&version) {
        migrate_to_11(&tx)?;
    }
    tx.execute_batch(SCHEMA)?;
    // 5.2 search
    if version < 9 {
        migrate_to_9(&tx)?;
    }
    if version < 10 {
        migrate_to_10(&tx)?;
    }
    // 5.5 media
    if version < 13 {
        migrate_to_13(&tx)?;
    }
    // 5.5 offline push
    if version < 14 {
        migrate_to_14(&tx)?;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_positions(c: &Connection) -> Vec<(String, String, i64)> {
        let mut st = c
            .prepare("SELECT user, conv, inbox_seq FROM user_convs ORDER BY user, conv")
            .unwrap();
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    /// A version 1 database keeps its queued messages queued: each queue
    /// position lands just below the user's oldest entry, or at the end.
    #[test]
    fn upgrade_from_version_1_keeps_queues() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(include_str!("schema_v1.sql")).unwrap();
        c.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO convs VALUES ('dm:ann:bob', 5, 1), ('group:g', 9, 1);
             INSERT INTO messages (conv, seq, msg_id, from_user, to_user, kind, content, ts)
                 VALUES ('dm:ann:bob', 5, 1, 'ann', 'bob', 'text', '\"x\"', 1);
             INSERT INTO user_convs (user, conv, read_seq, delivered_seq, until_seq)
                 VALUES ('ann', 'dm:ann:bob', 5, 5, NULL), ('bob', 'dm:ann:bob', 2, 2, NULL),
                        ('ann', 'group:g', 0, 0, NULL), ('cat', 'group:g', 0, 0, 4);
             INSERT INTO offline (user, conv, seq) VALUES ('bob', 'dm:ann:bob', 4), ('bob', 'dm:ann:bob', 5);
             INSERT INTO offline_state VALUES ('bob', 2, 0);",
        )
        .unwrap();
        assert_eq!(migrate(&c).unwrap(), Ok(()));
        assert_eq!(
            queue_positions(&c),
            vec![
                ("ann".into(), "dm:ann:bob".into(), 5),
                ("ann".into(), "group:g".into(), 9),
                ("bob".into(), "dm:ann:bob".into(), 3),
                ("cat".into(), "group:g".into(), 4),
            ]
        );
        let inboxed: i64 = c
            .query_row("SELECT inboxed FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(inboxed, 1);
        let version: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, VERSION);
        let gone: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('offline', 'offline_state')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(gone, 0);
        // Opening again is a no-op.
        assert_eq!(migrate(&c).unwrap(), Ok(()));
    }

    /// A version 2 database whose ids repeat (a clock stepped back across a
    /// restart) gets unique ids: the oldest copy keeps its id, later ones
    /// move above every stored id; then the index refuses repeats.
    #[test]
    fn upgrade_from_version_2_makes_ids_unique() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c.execute_batch(
            "DROP INDEX messages_msg_id;
             PRAGMA user_version = 2;
             INSERT INTO messages (conv, seq, msg_id, from_user, kind, content, ts) VALUES
                 ('dm:a:b', 1, 500, 'a', 'text', '\"x\"', 1),
                 ('dm:a:b', 2, 900, 'a', 'text', '\"x\"', 1),
                 ('dm:a:b', 3, 500, 'b', 'text', '\"x\"', 1),
                 ('dm:a:c', 1, 500, 'a', 'text', '\"x\"', 1);",
        )
        .unwrap();
        assert_eq!(migrate(&c).unwrap(), Ok(()));
        let ids: Vec<(String, i64, i64)> = {
            let mut st = c
                .prepare("SELECT conv, seq, msg_id FROM messages ORDER BY rowid")
                .unwrap();
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        assert_eq!(ids[0].2, 500);
        assert_eq!(ids[1].2, 900);
        assert!(ids[2].2 > 900 && ids[3].2 > 900 && ids[2].2 != ids[3].2);
        let version: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, VERSION);
        let repeat = c.execute(
            "INSERT INTO messages (conv, seq, msg_id, from_user, kind, content, ts) \
             VALUES ('dm:a:b', 4, 900, 'a', 'text', '1', 1)",
            [],
        );
        assert!(repeat.is_err(), "a repeated msg_id was stored");
    }

    /// 5.4 and blocks: a version 4 database (groups without settings,
    /// members without roles, no blocks) keeps its groups and members, and
    /// they start open and plain.
    #[test]
    fn upgrade_to_version_6_keeps_groups() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE groups (gid TEXT PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL,
                 created_at INTEGER NOT NULL, next_order INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
             CREATE TABLE group_members (gid TEXT NOT NULL, user TEXT NOT NULL,
                 join_order INTEGER NOT NULL, PRIMARY KEY (gid, user)) WITHOUT ROWID;
             INSERT INTO groups VALUES ('g', 'team', 'ann', 5, 2);
             INSERT INTO group_members VALUES ('g', 'ann', 0), ('g', 'bob', 1);
             PRAGMA user_version = 4;",
        )
        .unwrap();
        assert_eq!(migrate(&c).unwrap(), Ok(()));
        let g: (String, String, String, i64, i64) = c
            .query_row(
                "SELECT name, owner, announcement, muted_all, dissolved FROM groups WHERE gid = 'g'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(g, ("team".into(), "ann".into(), String::new(), 0, 0));
        let members: Vec<(String, i64, Option<i64>)> = {
            let mut st = c
                .prepare("SELECT user, admin, muted_until FROM group_members ORDER BY join_order")
                .unwrap();
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        assert_eq!(
            members,
            vec![("ann".into(), 0, None), ("bob".into(), 0, None)]
        );
        let blocks: i64 = c
            .query_row("SELECT count(*) FROM blocks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(blocks, 0);
        let version: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, VERSION);
        assert_eq!(migrate(&c).unwrap(), Ok(()));
    }

    /// 5.1: a version 6 database keeps its messages, which carry no
    /// reply, mention or edit; opening again changes nothing.
    #[test]
    fn upgrade_to_version_7_keeps_messages() {
        let c = Connection::open_in_memory().unwrap();
        let v6 = SCHEMA
            .replace("    reply_to      INTEGER,\n", "")
            .replace("    mentions      TEXT,\n", "")
            .replace("    edited_at     INTEGER,\n", "")
            .replace("    mention_seq     INTEGER NOT NULL DEFAULT 0,\n", "");
        let v6 = &v6[..v6.find("-- 5.1 (since version 7): one row").unwrap()];
        c.execute_batch(v6).unwrap();
        c.execute_batch(
            "INSERT INTO messages (conv, seq, msg_id, from_user, kind, content, ts)
                 VALUES ('dm:a:b', 1, 5, 'a', 'text', '\"x\"', 1);
             INSERT INTO user_convs (user, conv, read_seq) VALUES ('b', 'dm:a:b', 0);
             PRAGMA user_version = 6;",
        )
        .unwrap();
        assert!(c.prepare("SELECT reply_to FROM messages").is_err());
        assert_eq!(migrate(&c).unwrap(), Ok(()));
        let row: (Option<i64>, Option<String>, Option<i64>) = c
            .query_row(
                "SELECT reply_to, mentions, edited_at FROM messages",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(row, (None, None, None));
        let mention: i64 = c
            .query_row("SELECT mention_seq FROM user_convs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mention, 0);
        let reactions: i64 = c
            .query_row("SELECT count(*) FROM reactions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(reactions, 0);
        assert_eq!(migrate(&c).unwrap(), Ok(()));
        // The step alone runs again without harm.
        migrate_to_7(&c).unwrap();
    }

    #[test]
    fn upgrade_to_version_8_keeps_users() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE users (user TEXT PRIMARY KEY, name TEXT NOT NULL,
                 password_hash TEXT NOT NULL, created_at INTEGER NOT NULL);
             INSERT INTO users VALUES ('ann', 'Ann', 'h', 5);
             PRAGMA user_version = 6;",
        )
        .unwrap();
        assert_eq!(migrate(&c).unwrap(), Ok(()));
        let u: (String, String, String) = c
            .query_row("SELECT user, name, avatar FROM users", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(u, ("ann".into(), "Ann".into(), String::new()));
        for table in ["conv_settings", "sessions"] {
            let n: i64 = c
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "{table}");
        }
        // The step alone, again: nothing to do.
        migrate_to_8(&c).unwrap();
        let version: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, VERSION);
        assert_eq!(migrate(&c).unwrap(), Ok(()));
    }

    /// 5.2: a version 6 database gets the search index, empty, with the
    /// indexer's position at 0 (it then takes every existing message).
    #[test]
    fn upgrade_to_version_9_starts_the_index_at_0() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c.execute_batch(
            "INSERT INTO messages (conv, seq, msg_id, from_user, kind, content, ts)
                 VALUES ('dm:a:b', 1, 1, 'a', 'text', '\"hello\"', 1);
             PRAGMA user_version = 6;",
        )
        .unwrap();
        assert_eq!(migrate(&c).unwrap(), Ok(()));
        let pos: i64 = c
            .query_row("SELECT last_rowid FROM search_cursor", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pos, 0);
        crate::ops::index_pending(&c, 10).unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM search_fts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        migrate_to_9(&c).unwrap();
        let pos: i64 = c
            .query_row("SELECT last_rowid FROM search_cursor", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pos, 1, "running the step again keeps the position");
    }

    /// A version 9 database indexed messages without their conversation:
    /// version 10 empties the index and the indexer takes every message
    /// again, each found by its words in its conversation.
    #[test]
    fn upgrade_to_version_10_reindexes() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA).unwrap();
        migrate_to_9(&c).unwrap();
        c.execute_batch(
            "INSERT INTO messages (conv, seq, msg_id, from_user, kind, content, ts)
                 VALUES ('dm:a:b', 1, 1, 'a', 'text', '\"hello\"', 1);
             INSERT INTO user_convs (user, conv) VALUES ('b', 'dm:a:b');
             INSERT INTO convs (conv, max_seq, updated_at) VALUES ('dm:a:b', 1, 1);
             INSERT INTO search_fts (rowid, terms) VALUES (1, 'x68656c6c6f');
             UPDATE search_cursor SET last_rowid = 1;
             PRAGMA user_version = 9;",
        )
        .unwrap();
        assert_eq!(migrate(&c).unwrap(), Ok(()));
        let pos: i64 = c
            .query_row("SELECT last_rowid FROM search_cursor", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pos, 0);
        let n: i64 = c
            .query_row("SELECT count(*) FROM search_fts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        assert_eq!(crate::ops::index_pending(&c, 10).unwrap(), 1);
        let q = tern_core::search::SearchQuery {
            terms: tern_core::search::query_terms("hell").unwrap(),
            conv: None,
            before_ts: None,
            limit: 10,
        };
        let hits = crate::ops::search(&c, "b", &q).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].msg_id, 1);
        let version: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", VERSION + 1).unwrap();
        assert_eq!(migrate(&c).unwrap(), Err(VERSION + 1));
    }
}
