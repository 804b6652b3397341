//! MySQL's statements for the operations of [`crate::SqlStore`] that
//! PostgreSQL spells differently: the `Dialect` impl of [`MySqlDialect`],
//! on a connection (inside the caller's transaction where the store opened
//! one), batched into multi-row statements of at most [`CHUNK`] rows. The
//! append is in `append.rs`; the statements both servers accept are in
//! [`crate::shared`].

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, MySqlConnection, QueryBuilder, Row};
use tern_core::rules;
use tern_core::store::{
    AckMark, Appended, FriendLists, FriendStatus, NewMessage, StoreError, StoreResult,
    StoredMessage, UserRecord,
};

use super::{append, MySqlDialect};
use crate::common::{be, msg_cols, sql_seq, PageFetch};
use crate::shared::Shared;
use crate::Dialect;

/// The server's error number, for database errors.
pub fn error_number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|d| d.number())
}

/// ER_DUP_ENTRY.
pub const DUP_ENTRY: u16 = 1062;
/// ER_LOCK_WAIT_TIMEOUT.
pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
/// ER_LOCK_DEADLOCK.
pub const DEADLOCK: u16 = 1213;

/// Most rows per multi-row statement (keeps well below the 65,535
/// placeholders of a prepared statement).
pub(super) const CHUNK: usize = 256;

pub(super) async fn exists(
    c: &mut MySqlConnection,
    q: sqlx::query::Query<'_, MySql, sqlx::mysql::MySqlArguments>,
) -> StoreResult<bool> {
    Ok(q.fetch_optional(&mut *c).await.map_err(be)?.is_some())
}

async fn strings(
    c: &mut MySqlConnection,
    sql: &'static str,
    arg: &str,
) -> StoreResult<Vec<String>> {
    sqlx::query_scalar(sql)
        .bind(arg)
        .fetch_all(&mut *c)
        .await
        .map_err(be)
}

/// The positions of users in conversations (`pairs` sorted), their rows
/// locked in primary key order (the order appends and acks lock them in).
pub(super) async fn lock_positions(
    c: &mut MySqlConnection,
    pairs: &[(&str, &str)],
) -> StoreResult<HashMap<(String, String), rules::Positions>> {
    let mut out = HashMap::new();
    for chunk in pairs.chunks(CHUNK) {
        let mut qb: QueryBuilder<MySql> = QueryBuilder::new(
            "SELECT user_id, conv, read_seq, delivered_seq, read_updated_at, inbox_seq, until_seq \
             FROM user_convs FORCE INDEX (PRIMARY) WHERE ",
        );
        for (i, (user, conv)) in chunk.iter().enumerate() {
            if i > 0 {
                qb.push(" OR ");
            }
            qb.push("(user_id = ")
                .push_bind(*user)
                .push(" AND conv = ")
                .push_bind(*conv)
                .push(")");
        }
        qb.push(" ORDER BY user_id, conv FOR UPDATE");
        for r in qb.build().fetch_all(&mut *c).await.map_err(be)? {
            let seq = |i: usize| -> StoreResult<u64> {
                Ok(r.try_get::<i64, _>(i).map_err(be)?.max(0) as u64)
            };
            let p = rules::Positions {
                read: seq(2)?,
                delivered: seq(3)?,
                read_at: r.try_get(4).map_err(be)?,
                inbox: seq(5)?,
                until: r
                    .try_get::<Option<i64>, _>(6)
                    .map_err(be)?
                    .map(|v| v.max(0) as u64),
            };
            let key = (
                r.try_get::<String, _>(0).map_err(be)?,
                r.try_get::<String, _>(1).map_err(be)?,
            );
            out.insert(key, p);
        }
    }
    Ok(out)
}

/// Conversations fetched together in one `UNION ALL` query.
const SPANS_PER_QUERY: usize = 64;

#[async_trait]
impl Dialect for MySqlDialect {
    type DB = MySql;
    const NAME: &'static str = "mysql";
    const SLOT: usize = 1;
    const NUMBERED: bool = false;
    const GROUPS: &'static str = "chat_groups";
    const OWNER: &'static str = "owner_id";
    const SEARCH_MATCH: &'static str = "MATCH (d.terms) AGAINST (? IN BOOLEAN MODE)";
    const UPSERT_REVOKED: &'static str =
        "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) \
         ON DUPLICATE KEY UPDATE expires_at = GREATEST(expires_at, VALUES(expires_at))";
    const UPSERT_REVOKED_USER: &'static str =
        "INSERT INTO revoked_users (user_id, before_ms, expires_at) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE before_ms = GREATEST(before_ms, VALUES(before_ms)), \
         expires_at = GREATEST(expires_at, VALUES(expires_at))";
    const INSERT_SIGNING_KEY: &'static str =
        "INSERT IGNORE INTO signing_keys (kid, secret, created_at) VALUES (?, ?, ?)";
    // 5.4 and blocks
    const INSERT_BLOCK: &'static str =
        "INSERT IGNORE INTO blocks (user_id, blocked, created_at) VALUES (?, ?, ?)";
    const INSERT_JOB: &'static str =
        "INSERT IGNORE INTO jobs (kind, job_key, payload, created_at, due_at) VALUES (?, ?, ?, ?, ?)";
    const PUT_JOB: &'static str =
        "INSERT INTO jobs (kind, job_key, payload, created_at, due_at) VALUES (?, ?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE payload = VALUES(payload)";
    const UPSERT_PUSH_DEVICE: &'static str =
        "INSERT INTO push_devices (user_id, device, provider, token, endpoint, p256dh, auth, \
         session, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE provider = VALUES(provider), token = VALUES(token), \
         endpoint = VALUES(endpoint), p256dh = VALUES(p256dh), auth = VALUES(auth), \
         session = VALUES(session), updated_at = VALUES(updated_at)";
    const ERASE_FRIENDS: &'static [&'static str] = &[
        "DELETE FROM friends WHERE user_id = ? OR friend = ?",
        "DELETE FROM friend_requests WHERE from_user = ? OR to_user = ?",
    ];
    const SENT_LIKE: &'static str =
        "SELECT 1 FROM messages WHERE from_user = ? AND content LIKE ? LIMIT 1";
    const UPSERT_RETENTION: &'static str =
        "INSERT INTO conv_retention (conv, days, updated_at) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE days = VALUES(days), updated_at = VALUES(updated_at)";

    fn msg_id_at(r: &MySqlRow, i: usize) -> Result<u64, sqlx::Error> {
        r.try_get::<u64, _>(i)
    }

    /// VARBINARY: every byte counts (see the schema).
    fn client_msg_id_at(r: &MySqlRow, i: usize) -> Result<Option<String>, sqlx::Error> {
        r.try_get::<Option<Vec<u8>>, _>(i)?
            .map(|b| String::from_utf8(b).map_err(|e| sqlx::Error::Decode(Box::new(e))))
            .transpose()
    }

    /// MySQL has no boolean type: a comparison is an integer.
    fn flag_at(r: &MySqlRow, i: usize) -> Result<bool, sqlx::Error> {
        Ok(r.try_get::<i64, _>(i)? != 0)
    }

    fn rows_affected(r: &sqlx::mysql::MySqlQueryResult) -> u64 {
        r.rows_affected()
    }

    fn retryable(e: &sqlx::Error) -> bool {
        error_number(e).is_some_and(|n| matches!(n, DEADLOCK | LOCK_WAIT_TIMEOUT | DUP_ENTRY))
    }

    fn backoff(attempt: u32, jitter: u32) -> Duration {
        let base = 2u64 << attempt.min(6);
        Duration::from_millis(base + u64::from(jitter) % base.max(1))
    }

    async fn create_user(c: &mut MySqlConnection, u: &UserRecord) -> StoreResult<()> {
        let r = sqlx::query(
            "INSERT INTO users (user_id, name, password_hash, created_at, bot) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&u.user)
        .bind(&u.name)
        .bind(&u.password_hash)
        .bind(u.created_at)
        .bind(u.bot)
        .execute(&mut *c)
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if error_number(&e) == Some(DUP_ENTRY) => Err(StoreError::Conflict),
            Err(e) => Err(be(e)),
        }
    }

    async fn friend_request(
        c: &mut MySqlConnection,
        from: &str,
        to: &str,
        now: i64,
    ) -> StoreResult<FriendStatus> {
        // Both users' rows, locked in id order, serialize requests between the
        // pair: two nodes asking each other at once end as friends.
        let (lo, hi) = if from <= to { (from, to) } else { (to, from) };
        sqlx::query(
            "SELECT user_id FROM users WHERE user_id IN (?, ?) ORDER BY user_id FOR UPDATE",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        let friends = exists(
            c,
            sqlx::query("SELECT 1 FROM friends WHERE user_id = ? AND friend = ?")
                .bind(from)
                .bind(to),
        )
        .await?;
        if friends {
            return Ok(FriendStatus::Friends);
        }
        let answered =
            sqlx::query("DELETE FROM friend_requests WHERE from_user = ? AND to_user = ?")
                .bind(to)
                .bind(from)
                .execute(&mut *c)
                .await
                .map_err(be)?
                .rows_affected();
        if answered > 0 {
            sqlx::query(
                "INSERT INTO friends (user_id, friend, since) VALUES (?, ?, ?), (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE since = since",
            )
            .bind(from)
            .bind(to)
            .bind(now)
            .bind(to)
            .bind(from)
            .bind(now)
            .execute(&mut *c)
            .await
            .map_err(be)?;
            return Ok(FriendStatus::Friends);
        }
        sqlx::query(
            "INSERT INTO friend_requests (from_user, to_user, created_at) VALUES (?, ?, ?) \
             ON DUPLICATE KEY UPDATE created_at = created_at",
        )
        .bind(from)
        .bind(to)
        .bind(now)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(FriendStatus::Requested)
    }

    async fn friend_delete(c: &mut MySqlConnection, a: &str, b: &str) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM friends WHERE (user_id = ? AND friend = ?) OR (user_id = ? AND friend = ?)",
        )
        .bind(a)
        .bind(b)
        .bind(b)
        .bind(a)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        sqlx::query(
            "DELETE FROM friend_requests \
             WHERE (from_user = ? AND to_user = ?) OR (from_user = ? AND to_user = ?)",
        )
        .bind(a)
        .bind(b)
        .bind(b)
        .bind(a)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(())
    }

    async fn friends(c: &mut MySqlConnection, user: &str) -> StoreResult<FriendLists> {
        Ok(FriendLists {
            friends: strings(
                c,
                "SELECT friend FROM friends WHERE user_id = ? ORDER BY friend",
                user,
            )
            .await?,
            incoming: strings(
                c,
                "SELECT from_user FROM friend_requests WHERE to_user = ? ORDER BY from_user",
                user,
            )
            .await?,
            outgoing: strings(
                c,
                "SELECT to_user FROM friend_requests WHERE from_user = ? ORDER BY to_user",
                user,
            )
            .await?,
        })
    }

    async fn count_users(c: &mut MySqlConnection, users: &[String]) -> StoreResult<u64> {
        let mut found = 0;
        for chunk in users.chunks(CHUNK) {
            let mut qb: QueryBuilder<MySql> =
                QueryBuilder::new("SELECT COUNT(*) FROM users WHERE user_id IN (");
            let mut list = qb.separated(", ");
            for u in chunk {
                list.push_bind(u.as_str());
            }
            list.push_unseparated(")");
            let n: i64 = qb
                .build_query_scalar()
                .fetch_one(&mut *c)
                .await
                .map_err(be)?;
            found += n.max(0) as u64;
        }
        Ok(found)
    }

    async fn append_messages(
        c: &mut MySqlConnection,
        batch: &[NewMessage],
    ) -> StoreResult<Vec<Appended>> {
        append::append(c, batch).await
    }

    /// Acks in one transaction: two reads (the rows, locked in primary key
    /// order like the appends lock them, and the conversations' max seqs), one
    /// for receipts, one write.
    async fn ack_many(c: &mut MySqlConnection, acks: &[AckMark]) -> StoreResult<Vec<Option<u64>>> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        let pairs: BTreeSet<(&str, &str)> = acks
            .iter()
            .map(|a| (a.user.as_str(), a.conv.as_str()))
            .collect();
        let pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
        let mut state: HashMap<(String, String), (rules::Positions, bool)> =
            lock_positions(c, &pairs)
                .await?
                .into_iter()
                .map(|(k, p)| (k, (p, false)))
                .collect();
        if state.is_empty() {
            return Ok(vec![None; acks.len()]);
        }
        let convs: BTreeSet<&str> = state.keys().map(|(_, conv)| conv.as_str()).collect();
        let convs: Vec<&str> = convs.into_iter().collect();
        let maxes: HashMap<String, u64> = append::select_counters(c, &convs, false)
            .await?
            .into_iter()
            .map(|(conv, max)| (conv, max.max(0) as u64))
            .collect();

        let mut out = vec![None; acks.len()];
        // (answer index, conv, delivered before, delivered after, peer)
        let mut receipts: Vec<(usize, &str, u64, u64, &str)> = Vec::new();
        for (i, a) in acks.iter().enumerate() {
            let Some(st) = state.get_mut(&(a.user.clone(), a.conv.clone())) else {
                continue;
            };
            let max = maxes.get(&a.conv).copied().unwrap_or(0);
            let Some(mv) = rules::ack(&st.0, max, a.seq, a.receipt_for.is_some()) else {
                continue;
            };
            st.0.inbox = mv.inbox;
            st.0.delivered = mv.delivered;
            st.1 = true;
            if let (Some(peer), Some((before, top))) = (a.receipt_for.as_deref(), mv.receipt) {
                receipts.push((i, a.conv.as_str(), before, top, peer));
            }
        }

        for chunk in receipts.chunks(CHUNK) {
            let mut qb: QueryBuilder<MySql> = QueryBuilder::new("");
            for (n, (i, conv, before, top, peer)) in chunk.iter().enumerate() {
                if n > 0 {
                    qb.push(" UNION ALL ");
                }
                qb.push("SELECT ")
                    .push_bind(*i as i64)
                    .push(
                        " FROM DUAL WHERE EXISTS (SELECT 1 FROM messages \
                         WHERE conv = ",
                    )
                    .push_bind(*conv)
                    .push(" AND seq > ")
                    .push_bind(sql_seq(*before))
                    .push(" AND seq <= ")
                    .push_bind(sql_seq(*top))
                    .push(" AND from_user = ")
                    .push_bind(*peer)
                    .push(")");
            }
            for r in qb.build().fetch_all(&mut *c).await.map_err(be)? {
                let i = usize::try_from(r.try_get::<i64, _>(0).map_err(be)?).unwrap_or(usize::MAX);
                if let Some((_, _, _, top, _)) = chunk.iter().find(|(j, ..)| *j == i) {
                    if let Some(slot) = out.get_mut(i) {
                        *slot = Some(*top);
                    }
                }
            }
        }

        let mut dirty: Vec<(&(String, String), &rules::Positions)> = state
            .iter()
            .filter(|(_, (_, dirty))| *dirty)
            .map(|(k, (p, _))| (k, p))
            .collect();
        dirty.sort_by(|a, b| a.0.cmp(b.0));
        for chunk in dirty.chunks(CHUNK) {
            let mut qb: QueryBuilder<MySql> = QueryBuilder::new(
                "INSERT INTO user_convs (user_id, conv, inbox_seq, delivered_seq) ",
            );
            qb.push_values(chunk, |mut b, ((user, conv), s)| {
                b.push_bind(user.as_str())
                    .push_bind(conv.as_str())
                    .push_bind(sql_seq(s.inbox))
                    .push_bind(sql_seq(s.delivered));
            });
            qb.push(
                " ON DUPLICATE KEY UPDATE inbox_seq = GREATEST(inbox_seq, VALUES(inbox_seq)), \
                 delivered_seq = VALUES(delivered_seq)",
            );
            qb.build().execute(&mut *c).await.map_err(be)?;
        }
        Ok(out)
    }

    /// Queue-only acks in a transaction of their own: [`ack_many`] reads and
    /// locks the rows first, and writes them with their delivered positions.
    async fn ack_queue_only(
        c: &mut MySqlConnection,
        marks: &[(String, String, i64)],
    ) -> StoreResult<()> {
        let acks: Vec<AckMark> = marks
            .iter()
            .map(|(user, conv, seq)| AckMark {
                user: user.clone(),
                conv: conv.clone(),
                seq: (*seq).max(0) as u64,
                receipt_for: None,
            })
            .collect();
        let mut tx = sqlx::Connection::begin(&mut *c).await.map_err(be)?;
        Self::ack_many(&mut tx, &acks).await?;
        tx.commit().await.map_err(be)
    }

    async fn count_messages(c: &mut MySqlConnection, conv: &str, seqs: &[i64]) -> StoreResult<u64> {
        let mut found = 0;
        for chunk in seqs.chunks(CHUNK) {
            let mut qb: QueryBuilder<MySql> =
                QueryBuilder::new("SELECT COUNT(*) FROM messages WHERE conv = ");
            qb.push_bind(conv).push(" AND seq IN (");
            let mut sep = qb.separated(", ");
            for s in chunk {
                sep.push_bind(*s);
            }
            qb.push(")");
            let n: i64 = qb
                .build_query_scalar()
                .fetch_one(&mut *c)
                .await
                .map_err(be)?;
            found += n.max(0) as u64;
        }
        Ok(found)
    }

    async fn hide(
        c: &mut MySqlConnection,
        user: &str,
        conv: &str,
        seqs: &[i64],
    ) -> StoreResult<()> {
        for chunk in seqs.chunks(CHUNK) {
            let mut qb: QueryBuilder<MySql> =
                QueryBuilder::new("INSERT INTO hidden (user_id, conv, seq) ");
            qb.push_values(chunk, |mut b, s| {
                b.push_bind(user).push_bind(conv).push_bind(*s);
            });
            qb.push(" ON DUPLICATE KEY UPDATE seq = seq");
            qb.build().execute(&mut *c).await.map_err(be)?;
        }
        Ok(())
    }

    /// One query per conversation.
    async fn last_messages(
        c: &mut MySqlConnection,
        user: &str,
        convs: &[(String, u64)],
    ) -> StoreResult<Vec<Option<StoredMessage>>> {
        let mut out = Vec::with_capacity(convs.len());
        for (conv, upper) in convs {
            let row = sqlx::query(concat!(
                "SELECT ",
                msg_cols!(),
                " FROM messages m WHERE m.conv = ? AND m.seq <= ? \
                 AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = ? AND h.conv = m.conv AND h.seq = m.seq) \
                 ORDER BY m.seq DESC LIMIT 1"
            ))
            .bind(conv)
            .bind(sql_seq(*upper))
            .bind(user)
            .fetch_optional(&mut *c)
            .await
            .map_err(be)?;
            out.push(
                row.as_ref()
                    .map(|r| MySqlDialect::message_at(r, 0))
                    .transpose()
                    .map_err(be)?,
            );
        }
        Ok(out)
    }

    async fn queue_pages(
        c: &mut MySqlConnection,
        user: &str,
        fetches: &[PageFetch],
    ) -> StoreResult<Vec<Vec<StoredMessage>>> {
        let mut out = Vec::with_capacity(fetches.len());
        for chunk in fetches.chunks(SPANS_PER_QUERY) {
            let mut qb: QueryBuilder<MySql> = QueryBuilder::new("");
            for (i, f) in chunk.iter().enumerate() {
                if i > 0 {
                    qb.push(" UNION ALL ");
                }
                qb.push(concat!(
                    "(SELECT ",
                    msg_cols!(),
                    " FROM messages m WHERE m.conv = "
                ))
                .push_bind(f.conv.as_str())
                .push(" AND m.seq > ")
                .push_bind(f.lo)
                .push(" AND m.seq < ")
                .push_bind(f.below)
                .push(" AND m.inboxed AND (m.from_user <> ")
                .push_bind(user)
                .push(" OR ")
                .push_bind(f.own_too)
                .push(") ORDER BY m.seq DESC LIMIT ")
                .push_bind(i64::from(f.limit))
                .push(")");
            }
            let rows = qb.build().fetch_all(&mut *c).await.map_err(be)?;
            let mut pages: HashMap<String, Vec<StoredMessage>> = HashMap::new();
            for m in MySqlDialect::messages_at(&rows, 0)? {
                pages.entry(m.conv.clone()).or_default().push(m);
            }
            for f in chunk {
                out.push(pages.remove(&f.conv).unwrap_or_default());
            }
        }
        Ok(out)
    }

    async fn move_queues(
        c: &mut MySqlConnection,
        user: &str,
        moves: &[(String, u64)],
    ) -> StoreResult<()> {
        for chunk in moves.chunks(CHUNK) {
            let mut qb: QueryBuilder<MySql> =
                QueryBuilder::new("INSERT INTO user_convs (user_id, conv, inbox_seq) ");
            qb.push_values(chunk, |mut b, (conv, seq)| {
                b.push_bind(user)
                    .push_bind(conv.as_str())
                    .push_bind(sql_seq(*seq));
            });
            qb.push(" ON DUPLICATE KEY UPDATE inbox_seq = GREATEST(inbox_seq, VALUES(inbox_seq))");
            qb.build().execute(&mut *c).await.map_err(be)?;
        }
        Ok(())
    }

    /// Unanswered requests `user` sent (primary key prefix).
    async fn outgoing_request_count(c: &mut MySqlConnection, user: &str) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM friend_requests WHERE from_user = ?")
            .bind(user)
            .fetch_one(&mut *c)
            .await
            .map_err(be)?;
        Ok(n.max(0) as u64)
    }
}
