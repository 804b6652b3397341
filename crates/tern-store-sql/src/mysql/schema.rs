//! The schema, as idempotent steps run at start-up under a server-wide
//! advisory lock (`GET_LOCK('tern_migrate', 30)`): MySQL DDL commits by
//! itself, so every step must be safe to run again.

use sqlx::MySqlConnection;
use tern_core::store::{StoreError, StoreResult};

use crate::common::be;

/// Bumped with every change of [`STEPS`]; kept in `tern_schema`.
pub const VERSION: i64 = 12;

/// Every table is InnoDB, utf8mb4 with the binary collation (ids compare
/// by bytes, as in SQLite). User and group ids are at most 64 characters;
/// conversation ids (`dm:<a>:<b>`, `group:<g>`) at most 3 + 64 + 1 + 64.
const STEPS: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS tern_schema (
        id      TINYINT NOT NULL PRIMARY KEY,
        version BIGINT NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // Shard key: user_id.
    r#"CREATE TABLE IF NOT EXISTS users (
        user_id       VARCHAR(64) NOT NULL,
        name          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at    BIGINT NOT NULL,
        avatar        VARCHAR(255) NOT NULL DEFAULT '',
        PRIMARY KEY (user_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // An unanswered friend request. Shard key: from_user (the `to` index
    // answers "who asked me" and would become a per-user copy).
    r#"CREATE TABLE IF NOT EXISTS friend_requests (
        from_user  VARCHAR(64) NOT NULL,
        to_user    VARCHAR(64) NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (from_user, to_user),
        KEY friend_requests_to (to_user, from_user)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // A friendship, stored in both directions. Shard key: user_id.
    r#"CREATE TABLE IF NOT EXISTS friends (
        user_id VARCHAR(64) NOT NULL,
        friend  VARCHAR(64) NOT NULL,
        since   BIGINT NOT NULL,
        PRIMARY KEY (user_id, friend)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // One row per conversation: the seq counter (its row lock serializes
    // the conversation's writers) and the last activity. Shard key: conv.
    r#"CREATE TABLE IF NOT EXISTS convs (
        conv       VARCHAR(140) NOT NULL,
        max_seq    BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (conv)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // Shard key: conv. `inboxed` is 1 when the message enters its
    // recipients' offline queues (every 1:1 message, group messages while
    // the group is write-diffused). The unique dedup index allows many
    // NULL client_msg_ids (server-written messages); once sharded by conv
    // it would become a table of its own keyed by from_user.
    // client_msg_id is VARBINARY: every byte counts (utf8mb4_bin pads, so
    // 'k' and 'k ' would collide).
    r#"CREATE TABLE IF NOT EXISTS messages (
        conv          VARCHAR(140) NOT NULL,
        seq           BIGINT NOT NULL,
        msg_id        BIGINT UNSIGNED NOT NULL,
        from_user     VARCHAR(64) NOT NULL,
        to_user       VARCHAR(64) NULL,
        group_id      VARCHAR(64) NULL,
        kind          VARCHAR(64) NOT NULL,
        content       MEDIUMTEXT NULL,
        ts            BIGINT NOT NULL,
        client_msg_id VARBINARY(256) NULL,
        recalled      BOOLEAN NOT NULL DEFAULT FALSE,
        inboxed       BOOLEAN NOT NULL DEFAULT TRUE,
        reply_to      BIGINT NULL,
        mentions      TEXT NULL,
        edited_at     BIGINT NULL,
        PRIMARY KEY (conv, seq),
        UNIQUE KEY messages_dedup (from_user, client_msg_id),
        UNIQUE KEY messages_msg_id (msg_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // A user's place in a conversation (read, delivered and queue
    // positions). For a former group member, until_seq and until_ts bound
    // what they see. The offline queue is derived: the inboxed messages
    // above inbox_seq that others sent. Shard key: user_id (the conv index
    // serves `read_positions`, off the hot path).
    r#"CREATE TABLE IF NOT EXISTS user_convs (
        user_id         VARCHAR(64) NOT NULL,
        conv            VARCHAR(140) NOT NULL,
        peer            VARCHAR(64) NULL,
        group_id        VARCHAR(64) NULL,
        read_seq        BIGINT NOT NULL DEFAULT 0,
        delivered_seq   BIGINT NOT NULL DEFAULT 0,
        read_updated_at BIGINT NOT NULL DEFAULT 0,
        until_seq       BIGINT NULL,
        until_ts        BIGINT NULL,
        inbox_seq       BIGINT NOT NULL DEFAULT 0,
        mention_seq     BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, conv),
        KEY user_convs_conv (conv, user_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // Messages a user deleted for themself. Shard key: user_id.
    r#"CREATE TABLE IF NOT EXISTS hidden (
        user_id VARCHAR(64) NOT NULL,
        conv    VARCHAR(140) NOT NULL,
        seq     BIGINT NOT NULL,
        PRIMARY KEY (user_id, conv, seq)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // `groups` is a reserved word in MySQL 8. `version` is the seq of the
    // newest membership change (`system` message). Shard key: gid (the
    // group's conversation).
    r#"CREATE TABLE IF NOT EXISTS chat_groups (
        gid        VARCHAR(64) NOT NULL,
        name       TEXT NOT NULL,
        owner_id   VARCHAR(64) NOT NULL,
        created_at BIGINT NOT NULL,
        next_order BIGINT NOT NULL DEFAULT 0,
        version    BIGINT NOT NULL DEFAULT 0,
        announcement TEXT NULL,
        muted_all    BOOLEAN NOT NULL DEFAULT FALSE,
        dissolved    BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (gid)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // Shard key: gid.
    r#"CREATE TABLE IF NOT EXISTS group_members (
        gid        VARCHAR(64) NOT NULL,
        user_id    VARCHAR(64) NOT NULL,
        join_order BIGINT NOT NULL,
        admin       BOOLEAN NOT NULL DEFAULT FALSE,
        muted_until BIGINT NULL,
        PRIMARY KEY (gid, user_id),
        KEY group_members_order (gid, join_order)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // The keys that sign session tokens (version 3): the newest signs,
    // every one verifies the tokens that name its kid. A reference table
    // when sharded.
    r#"CREATE TABLE IF NOT EXISTS signing_keys (
        kid        VARCHAR(64) NOT NULL,
        secret     BLOB NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (kid)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // 5.4 and blocks (version 4): user_id blocked blocked. Shard key:
    // user_id; the index answers "who blocked me".
    r#"CREATE TABLE IF NOT EXISTS blocks (
        user_id    VARCHAR(64) NOT NULL,
        blocked    VARCHAR(64) NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, blocked),
        KEY blocks_blocked (blocked, user_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // 5.1 (version 5): one row per user and emoji on a message. Shard key:
    // conv. The emoji is VARBINARY: every byte counts (utf8mb4_bin pads).
    r#"CREATE TABLE IF NOT EXISTS reactions (
        conv    VARCHAR(140) NOT NULL,
        seq     BIGINT NOT NULL,
        emoji   VARBINARY(32) NOT NULL,
        user_id VARCHAR(64) NOT NULL,
        ts      BIGINT NOT NULL,
        PRIMARY KEY (conv, seq, emoji, user_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // 5.3 (version 6): a user's settings of a conversation, a row only
    // while they differ from the defaults. Shard key: user_id.
    r#"CREATE TABLE IF NOT EXISTS conv_settings (
        user_id     VARCHAR(64) NOT NULL,
        conv        VARCHAR(132) NOT NULL,
        muted_until BIGINT NOT NULL DEFAULT 0,
        pinned      BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (user_id, conv)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // 5.3 (version 6): one row per session token (its id). Shard key:
    // session (the index answers "my sessions").
    r#"CREATE TABLE IF NOT EXISTS sessions (
        session    CHAR(32) NOT NULL,
        user_id    VARCHAR(64) NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        last_seen  BIGINT NOT NULL,
        PRIMARY KEY (session),
        KEY sessions_user (user_id, expires_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
    // 5.6 scheduled messages (version 9): a send kept until at_ms. peer:
    // the recipient of a 1:1 message or the group id; reply_to 0 for
    // none; mentions a JSON array, '' for none; lease_until: a node
    // claimed the row until then. Shard key: id.
    r#"CREATE TABLE IF NOT EXISTS scheduled (
        id            CHAR(32) NOT NULL,
        user_id       VARCHAR(64) NOT NULL,
        conv          VARCHAR(132) NOT NULL,
        peer          VARCHAR(64) NOT NULL,
        at_ms         BIGINT NOT NULL,
        kind          VARCHAR(64) NOT NULL,
        content       MEDIUMTEXT NOT NULL,
        client_msg_id VARCHAR(64) NOT NULL,
        reply_to      BIGINT NOT NULL DEFAULT 0,
        mentions      MEDIUMTEXT NOT NULL,
        created_at    BIGINT NOT NULL,
        lease_until   BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (id),
        KEY scheduled_user (user_id, at_ms),
        KEY scheduled_due (at_ms)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#,
];

/// Version 10 (5.5 media): the uploads' metadata (shard key id).
/// `referenced` is set once a message or a profile names the media; the
/// sweep removes those still unset after the grace period. Stands alone
/// and may run again.
const MEDIA_TABLE: &str = r#"CREATE TABLE IF NOT EXISTS media (
    id         CHAR(32) NOT NULL,
    owner      VARCHAR(64) NOT NULL,
    size       BIGINT NOT NULL,
    mime       VARCHAR(255) NOT NULL,
    sha256     CHAR(64) NOT NULL,
    w          BIGINT NULL,
    h          BIGINT NULL,
    filename   VARCHAR(1024) NOT NULL,
    created_at BIGINT NOT NULL,
    referenced BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (id),
    KEY media_unreferenced (referenced, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#;

/// Version 11 (5.5 offline push): each device's registration with its
/// provider and the session that made it. Stands alone and may run again.
const PUSH_TABLE: &str = r#"CREATE TABLE IF NOT EXISTS push_devices (
    user_id    VARCHAR(64) NOT NULL,
    device     VARCHAR(64) NOT NULL,
    provider   VARCHAR(16) NOT NULL,
    token      VARCHAR(4096) NOT NULL,
    endpoint   VARCHAR(2048) NOT NULL,
    p256dh     VARCHAR(255) NOT NULL,
    auth       VARCHAR(255) NOT NULL,
    session    VARCHAR(64) NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, device)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#;

/// Version 12 (5.6 retention): a conversation's own retention in days, a
/// row only while one is set (shard key conv). Stands alone and may run
/// again.
const RETENTION_TABLE: &str = r#"CREATE TABLE IF NOT EXISTS conv_retention (
    conv       VARCHAR(140) NOT NULL,
    days       BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (conv)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"#;

/// Version 6 (5.3 profiles, conversation settings, sessions): the users'
/// avatar, added to a table of an older version with its default (none).
/// Stands alone and is safe to run again: added only when missing.
async fn migrate_to_6(conn: &mut MySqlConnection) -> StoreResult<()> {
    add_missing(
        conn,
        &[("users", "avatar", "VARCHAR(255) NOT NULL DEFAULT ''")],
    )
    .await
}

/// Version 8 (5.6): the users' bot flag (every existing user a person)
/// and the durable jobs (webhook deliveries). Stands alone and is safe to
/// run again.
async fn migrate_to_8(conn: &mut MySqlConnection) -> StoreResult<()> {
    add_missing(conn, &[("users", "bot", "BOOLEAN NOT NULL DEFAULT FALSE")]).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS jobs (
            id            BIGINT NOT NULL AUTO_INCREMENT,
            kind          VARCHAR(64) NOT NULL,
            job_key       VARCHAR(255) NOT NULL,
            payload       MEDIUMTEXT NOT NULL,
            created_at    BIGINT NOT NULL,
            due_at        BIGINT NOT NULL,
            claimed_until BIGINT NOT NULL DEFAULT 0,
            attempts      BIGINT NOT NULL DEFAULT 0,
            last_error    TEXT NULL,
            PRIMARY KEY (id),
            UNIQUE KEY jobs_key (job_key),
            KEY jobs_due (kind, due_at)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    )
    .execute(&mut *conn)
    .await
    .map_err(be)?;
    Ok(())
}

/// Version 4 (5.4 and blocks): the groups' settings and the members'
/// roles, added to tables of an older version (`CREATE TABLE IF NOT
/// EXISTS` left them as they were) with defaults: every group open, every
/// member plain and unmuted. Safe to run again: each column is added only
/// when missing.
async fn moderation_columns(conn: &mut MySqlConnection) -> StoreResult<()> {
    const COLUMNS: [(&str, &str, &str); 5] = [
        ("chat_groups", "announcement", "TEXT NULL"),
        ("chat_groups", "muted_all", "BOOLEAN NOT NULL DEFAULT FALSE"),
        ("chat_groups", "dissolved", "BOOLEAN NOT NULL DEFAULT FALSE"),
        ("group_members", "admin", "BOOLEAN NOT NULL DEFAULT FALSE"),
        ("group_members", "muted_until", "BIGINT NULL"),
    ];
    add_missing(conn, &COLUMNS).await
}

/// Version 5 (5.1) adds a message's reply, mentions and edit time, and a
/// user's mention position, to tables of older versions (`CREATE TABLE IF
/// NOT EXISTS` left them as they were), empty for what exists. Safe to run
/// again: each column is added only when missing.
async fn migrate_to_5(conn: &mut MySqlConnection) -> StoreResult<()> {
    const COLUMNS: [(&str, &str, &str); 4] = [
        ("messages", "reply_to", "BIGINT NULL"),
        ("messages", "mentions", "TEXT NULL"),
        ("messages", "edited_at", "BIGINT NULL"),
        ("user_convs", "mention_seq", "BIGINT NOT NULL DEFAULT 0"),
    ];
    add_missing(conn, &COLUMNS).await
}

/// Adds each `(table, column, type)` a table lacks.
async fn add_missing(
    conn: &mut MySqlConnection,
    columns: &[(&str, &str, &str)],
) -> StoreResult<()> {
    for (table, column, ty) in columns {
        let has: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?",
        )
        .bind(table)
        .bind(column)
        .fetch_one(&mut *conn)
        .await
        .map_err(be)?;
        if has == 0 {
            let ddl = format!("ALTER TABLE {table} ADD COLUMN {column} {ty}");
            sqlx::query(sqlx::AssertSqlSafe(ddl))
                .execute(&mut *conn)
                .await
                .map_err(be)?;
        }
    }
    Ok(())
}

/// Version 7 (5.2 search): each message's mark `indexed` (0 for every
/// existing message, so the indexers take them all, and for every new one
/// by default), the index that finds those not yet indexed, and the terms
/// of the indexed ones (`search_docs`) under a FULLTEXT index. The terms
/// are `tern_core::search`'s encoded words (`x` and hex: at least three
/// characters, never a stop word), which the default parser keeps whole.
/// Safe to run again: each part is added only when missing.
async fn search_index(conn: &mut MySqlConnection) -> StoreResult<()> {
    let has: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.columns \
         WHERE table_schema = DATABASE() AND table_name = 'messages' AND column_name = 'indexed'",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(be)?;
    if has == 0 {
        sqlx::query(
            "ALTER TABLE messages ADD COLUMN indexed BOOLEAN NOT NULL DEFAULT FALSE, \
             ADD INDEX messages_unindexed (indexed, msg_id)",
        )
        .execute(&mut *conn)
        .await
        .map_err(be)?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS search_docs (
            conv  VARCHAR(140) NOT NULL,
            seq   BIGINT NOT NULL,
            terms MEDIUMTEXT NOT NULL,
            PRIMARY KEY (conv, seq),
            FULLTEXT KEY search_docs_terms (terms)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    )
    .execute(&mut *conn)
    .await
    .map_err(be)?;
    Ok(())
}

/// Creates or checks the schema. Holds the advisory lock on `conn` while
/// it works, so nodes starting together migrate one after the other.
pub async fn migrate(conn: &mut MySqlConnection) -> StoreResult<()> {
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK('tern_migrate', 30)")
        .fetch_one(&mut *conn)
        .await
        .map_err(be)?;
    if got != Some(1) {
        return Err(StoreError::backend(std::io::Error::other(
            "timed out waiting for the migration lock 'tern_migrate'",
        )));
    }
    let result = migrate_locked(conn).await;
    let released = sqlx::query("DO RELEASE_LOCK('tern_migrate')")
        .execute(&mut *conn)
        .await
        .map_err(be);
    result.and(released.map(|_| ()))
}

/// Version 2 makes `msg_id` unique; a table of version 1 gets the index
/// here (`CREATE TABLE IF NOT EXISTS` left it as it was). A clock that
/// stepped back across a restart may have repeated ids before: each later
/// copy gets a fresh id above every stored one, the oldest keeps its own.
async fn unique_msg_ids(conn: &mut MySqlConnection) -> StoreResult<()> {
    let has: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.statistics \
         WHERE table_schema = DATABASE() AND table_name = 'messages' \
           AND index_name = 'messages_msg_id'",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(be)?;
    if has > 0 {
        return Ok(());
    }
    sqlx::query(
        "UPDATE messages m \
         JOIN (SELECT conv, seq, ROW_NUMBER() OVER (ORDER BY conv, seq) AS n \
               FROM (SELECT conv, seq, \
                            ROW_NUMBER() OVER (PARTITION BY msg_id ORDER BY ts, conv, seq) AS k \
                     FROM messages) x \
               WHERE k > 1) later ON m.conv = later.conv AND m.seq = later.seq \
         CROSS JOIN (SELECT MAX(msg_id) AS id FROM messages) top \
         SET m.msg_id = top.id + later.n",
    )
    .execute(&mut *conn)
    .await
    .map_err(be)?;
    sqlx::query("ALTER TABLE messages ADD UNIQUE KEY messages_msg_id (msg_id)")
        .execute(&mut *conn)
        .await
        .map_err(be)?;
    Ok(())
}

async fn migrate_locked(conn: &mut MySqlConnection) -> StoreResult<()> {
    let exists: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_name = 'tern_schema'",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(be)?;
    if exists > 0 {
        let found: Option<i64> = sqlx::query_scalar("SELECT version FROM tern_schema WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(be)?;
        match found {
            Some(v) if v == VERSION => return Ok(()),
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
            _ => {}
        }
    }
    for step in STEPS {
        sqlx::query(*step).execute(&mut *conn).await.map_err(be)?;
    }
    unique_msg_ids(conn).await?;
    // 5.4 and blocks
    moderation_columns(conn).await?;
    // 5.1
    migrate_to_5(conn).await?;
    // 5.3 profiles, conversation settings, sessions
    migrate_to_6(conn).await?;
    // 5.2 search
    search_index(conn).await?;
    // 5.6 integrations
    migrate_to_8(conn).await?;
    // 5.5 media
    sqlx::query(MEDIA_TABLE)
        .execute(&mut *conn)
        .await
        .map_err(be)?;
    // 5.5 offline push
    sqlx::query(PUSH_TABLE)
        .execute(&mut *conn)
        .await
        .map_err(be)?;
    // 5.6 retention
    sqlx::query(RETENTION_TABLE)
        .execute(&mut *conn)
        .await
        .map_err(be)?;
    sqlx::query(
        "INSERT INTO tern_schema (id, version) VALUES (1, ?) \
         ON DUPLICATE KEY UPDATE version = VALUES(version)",
    )
    .bind(VERSION)
    .execute(&mut *conn)
    .await
    .map_err(be)?;
    Ok(())
}
