//! MySQL's statements for each operation of [`crate::SqlStore`]: the
//! `Dialect` impl of [`MySqlDialect`], on a connection (inside the
//! caller's transaction where the store opened one), batched into
//! multi-row statements of at most [`CHUNK`] rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::MySqlRow;
use sqlx::{MySql, MySqlConnection, QueryBuilder, Row};
use tern_core::rules;
use tern_core::store::{
    AckMark, Appended, FriendLists, FriendStatus, MemberChange, NewMessage, Refusal, StoreError,
    StoreResult, StoredMessage, UserRecord,
};

use super::MySqlDialect;
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
const CHUNK: usize = 256;

async fn exists(
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

/// The stored originals of the batch's `(from, client_msg_id)` keys.
async fn find_duplicates(
    c: &mut MySqlConnection,
    batch: &[NewMessage],
) -> StoreResult<HashMap<(String, String), StoredMessage>> {
    let keys: BTreeSet<(&str, &str)> = batch
        .iter()
        .filter_map(|m| Some((m.from.as_str(), m.client_msg_id.as_deref()?)))
        .collect();
    let keys: Vec<(&str, &str)> = keys.into_iter().collect();
    let mut found = HashMap::new();
    for chunk in keys.chunks(CHUNK) {
        let mut qb: QueryBuilder<MySql> =
            QueryBuilder::new(concat!("SELECT ", msg_cols!(), " FROM messages m WHERE "));
        for (i, (from, cmid)) in chunk.iter().enumerate() {
            if i > 0 {
                qb.push(" OR ");
            }
            qb.push("(m.from_user = ")
                .push_bind(*from)
                .push(" AND m.client_msg_id = ")
                .push_bind(cmid.as_bytes())
                .push(")");
        }
        let rows = qb.build().fetch_all(&mut *c).await.map_err(be)?;
        for m in MySqlDialect::messages_at(&rows, 0)? {
            if let Some(cmid) = m.client_msg_id.clone() {
                found.insert((m.from.clone(), cmid), m);
            }
        }
    }
    Ok(found)
}

/// Takes the row lock of every conversation's counter, in conversation
/// order, and returns the counters. Rows that do not exist yet are created
/// (and locked) afterwards, also in order: only two nodes creating the
/// same conversations at once can then deadlock, and that is retried.
async fn lock_counters(
    c: &mut MySqlConnection,
    convs: &BTreeSet<&str>,
) -> StoreResult<HashMap<String, i64>> {
    let convs: Vec<&str> = convs.iter().copied().collect();
    let mut out = select_counters(c, &convs).await?;
    let missing: Vec<&str> = convs
        .iter()
        .copied()
        .filter(|conv| !out.contains_key(*conv))
        .collect();
    if missing.is_empty() {
        return Ok(out);
    }
    for chunk in missing.chunks(CHUNK) {
        let mut qb: QueryBuilder<MySql> =
            QueryBuilder::new("INSERT INTO convs (conv, max_seq, updated_at) ");
        qb.push_values(chunk, |mut b, conv| {
            b.push_bind(*conv).push("0").push("0");
        });
        qb.push(" ON DUPLICATE KEY UPDATE max_seq = max_seq");
        qb.build().execute(&mut *c).await.map_err(be)?;
    }
    out.extend(select_counters(c, &missing).await?);
    Ok(out)
}

/// `SELECT .. FOR UPDATE` of counter rows (sorted `convs`).
async fn select_counters(
    c: &mut MySqlConnection,
    convs: &[&str],
) -> StoreResult<HashMap<String, i64>> {
    let mut out = HashMap::new();
    for chunk in convs.chunks(CHUNK) {
        let mut qb: QueryBuilder<MySql> =
            QueryBuilder::new("SELECT conv, max_seq FROM convs WHERE conv IN (");
        let mut sep = qb.separated(", ");
        for conv in chunk {
            sep.push_bind(*conv);
        }
        qb.push(") ORDER BY conv FOR UPDATE");
        let rows = qb.build().fetch_all(&mut *c).await.map_err(be)?;
        for r in rows {
            out.insert(
                r.try_get::<String, _>(0).map_err(be)?,
                r.try_get::<i64, _>(1).map_err(be)?,
            );
        }
    }
    Ok(out)
}

async fn group_exists(c: &mut MySqlConnection, gid: &str) -> StoreResult<bool> {
    exists(
        c,
        sqlx::query("SELECT 1 FROM chat_groups WHERE gid = ?").bind(gid),
    )
    .await
}

/// Adds `user` to group `gid` (conversation `conv`) at message `seq`.
async fn add_member(
    c: &mut MySqlConnection,
    gid: &str,
    conv: &str,
    user: &str,
    seq: i64,
) -> StoreResult<()> {
    if MySqlDialect::is_member(c, gid, user).await? {
        return Ok(());
    }
    let order: Option<i64> =
        sqlx::query_scalar("SELECT next_order FROM chat_groups WHERE gid = ? FOR UPDATE")
            .bind(gid)
            .fetch_optional(&mut *c)
            .await
            .map_err(be)?;
    let Some(order) = order else { return Ok(()) };
    sqlx::query("INSERT INTO group_members (gid, user_id, join_order) VALUES (?, ?, ?)")
        .bind(gid)
        .bind(user)
        .bind(order)
        .execute(&mut *c)
        .await
        .map_err(be)?;
    sqlx::query("UPDATE chat_groups SET next_order = next_order + 1 WHERE gid = ?")
        .bind(gid)
        .execute(&mut *c)
        .await
        .map_err(be)?;
    // A new member's unread count and offline queue start at their own
    // join message; a returning member keeps what they had read, and their
    // queue resumes at the join.
    let start = (seq - 1).max(0);
    sqlx::query(
        "INSERT INTO user_convs (user_id, conv, group_id, read_seq, delivered_seq, inbox_seq) \
         VALUES (?, ?, ?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE until_seq = NULL, until_ts = NULL, \
             read_seq = GREATEST(read_seq, VALUES(read_seq)), \
             delivered_seq = GREATEST(delivered_seq, VALUES(delivered_seq)), \
             inbox_seq = GREATEST(inbox_seq, VALUES(inbox_seq))",
    )
    .bind(user)
    .bind(conv)
    .bind(gid)
    .bind(start)
    .bind(start)
    .bind(start)
    .execute(&mut *c)
    .await
    .map_err(be)?;
    Ok(())
}

/// Removes `user` from group `gid` after message `seq` (at `ts`).
async fn remove_member(
    c: &mut MySqlConnection,
    gid: &str,
    conv: &str,
    user: &str,
    seq: i64,
    ts: i64,
) -> StoreResult<()> {
    if !MySqlDialect::drop_member(c, gid, user).await? {
        return Ok(());
    }
    sqlx::query("UPDATE user_convs SET until_seq = ?, until_ts = ? WHERE user_id = ? AND conv = ?")
        .bind(seq)
        .bind(ts)
        .bind(user)
        .bind(conv)
        .execute(&mut *c)
        .await
        .map_err(be)?;
    MySqlDialect::hand_over(c, gid, user).await
}

/// Checks a group message before it gets a seq: `Some(refusal)` when it
/// must not be stored. Creates the group for `MemberChange::Create`. The
/// caller holds the group conversation's counter lock, which every
/// membership change takes too, so the answer stays true until commit.
async fn group_gate(
    c: &mut MySqlConnection,
    m: &NewMessage,
    gid: &str,
) -> StoreResult<Option<Refusal>> {
    let exists = group_exists(c, gid).await?;
    let member = m.change.is_none() && exists && MySqlDialect::is_member(c, gid, &m.from).await?;
    if let Err(refusal) = rules::gate(m.change.as_ref(), exists, member)? {
        return Ok(Some(refusal));
    }
    if let Some(MemberChange::Create { name }) = &m.change {
        sqlx::query(
            "INSERT INTO chat_groups (gid, name, owner_id, created_at, next_order, version) \
             VALUES (?, ?, ?, ?, 0, 0)",
        )
        .bind(gid)
        .bind(name)
        .bind(&m.from)
        .bind(m.ts)
        .execute(&mut *c)
        .await
        .map_err(be)?;
    }
    Ok(None)
}

/// A sender's message in a batch: its seq, time, and whether their queue
/// position follows ([`rules::queue_follows`]).
type Sent = (i64, i64, bool);

/// A message row to insert.
struct MsgRow<'a> {
    m: &'a NewMessage,
    seq: i64,
    inboxed: bool,
}

/// The membership and position changes of a stored group message, in the
/// embedded store's order; returns whether it enters offline queues.
async fn group_message(
    c: &mut MySqlConnection,
    m: &NewMessage,
    gid: &str,
    seq: i64,
    queue_follows: bool,
) -> StoreResult<bool> {
    // Joining first: a new member gets their own join message.
    match &m.change {
        Some(MemberChange::Create { .. }) => add_member(c, gid, &m.conv, &m.from, seq).await?,
        Some(MemberChange::Join(u)) => add_member(c, gid, &m.conv, u, seq).await?,
        _ => {}
    }
    let inboxed = match rules::members_to_count(m.inbox_members_up_to) {
        Some(limit) => {
            let n = MySqlDialect::member_count_up_to(c, gid, limit).await?;
            rules::enters_queues(n, m.inbox_members_up_to)
        }
        None => false,
    };
    for p in &m.participants {
        sqlx::query(
            "INSERT INTO user_convs (user_id, conv, peer, group_id) VALUES (?, ?, NULL, ?) \
             ON DUPLICATE KEY UPDATE user_id = user_id",
        )
        .bind(p)
        .bind(&m.conv)
        .bind(gid)
        .execute(&mut *c)
        .await
        .map_err(be)?;
    }
    let mut sent = BTreeMap::new();
    sent.insert(
        (m.from.as_str(), m.conv.as_str()),
        vec![(seq, m.ts, queue_follows)],
    );
    own_messages(c, &sent).await?;
    if let Some(MemberChange::Leave(u)) = &m.change {
        remove_member(c, gid, &m.conv, u, seq, m.ts).await?;
    }
    if m.kind == "system" {
        sqlx::query("UPDATE chat_groups SET version = GREATEST(version, ?) WHERE gid = ?")
            .bind(seq)
            .bind(gid)
            .execute(&mut *c)
            .await
            .map_err(be)?;
    }
    Ok(inboxed)
}

async fn insert_messages(c: &mut MySqlConnection, rows: &[MsgRow<'_>]) -> StoreResult<()> {
    for chunk in rows.chunks(CHUNK) {
        let mut qb: QueryBuilder<MySql> = QueryBuilder::new(
            "INSERT INTO messages (conv, seq, msg_id, from_user, to_user, group_id, kind, \
             content, ts, client_msg_id, inboxed) ",
        );
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(&r.m.conv)
                .push_bind(r.seq)
                .push_bind(r.m.msg_id)
                .push_bind(&r.m.from)
                .push_bind(r.m.to.as_deref())
                .push_bind(r.m.group.as_deref())
                .push_bind(&r.m.kind)
                .push_bind(&r.m.content)
                .push_bind(r.m.ts)
                .push_bind(r.m.client_msg_id.as_deref().map(str::as_bytes))
                .push_bind(r.inboxed);
        });
        qb.build().execute(&mut *c).await.map_err(be)?;
    }
    Ok(())
}

async fn insert_dm_entries(
    c: &mut MySqlConnection,
    entries: &BTreeMap<(&str, &str), Option<&str>>,
) -> StoreResult<()> {
    let entries: Vec<(&(&str, &str), &Option<&str>)> = entries.iter().collect();
    for chunk in entries.chunks(CHUNK) {
        let mut qb: QueryBuilder<MySql> =
            QueryBuilder::new("INSERT INTO user_convs (user_id, conv, peer, group_id) ");
        qb.push_values(chunk, |mut b, ((user, conv), peer)| {
            b.push_bind(*user)
                .push_bind(*conv)
                .push_bind(**peer)
                .push("NULL");
        });
        qb.push(" ON DUPLICATE KEY UPDATE user_id = user_id");
        qb.build().execute(&mut *c).await.map_err(be)?;
    }
    Ok(())
}

/// The senders have read their own messages, and their queue positions may
/// follow ([`rules::own_message`], applied message after message): the
/// senders' rows are locked and read in primary key order, and the ones
/// that move are written in one statement.
async fn own_messages(
    c: &mut MySqlConnection,
    sent: &BTreeMap<(&str, &str), Vec<Sent>>,
) -> StoreResult<()> {
    if sent.is_empty() {
        return Ok(());
    }
    let keys: Vec<(&str, &str)> = sent.keys().copied().collect();
    let mut rows = lock_positions(c, &keys).await?;
    let mut moved = Vec::new();
    for ((user, conv), msgs) in sent {
        let key = ((*user).to_owned(), (*conv).to_owned());
        let Some(p) = rows.get_mut(&key) else {
            continue;
        };
        let mut changed = false;
        for &(seq, ts, follows) in msgs {
            changed |= rules::own_message(p, seq.max(0) as u64, ts, follows);
        }
        if changed {
            moved.push((*user, *conv, *p));
        }
    }
    for chunk in moved.chunks(CHUNK) {
        let mut qb: QueryBuilder<MySql> = QueryBuilder::new(
            "INSERT INTO user_convs (user_id, conv, read_seq, delivered_seq, read_updated_at, \
             inbox_seq) ",
        );
        qb.push_values(chunk, |mut b, (user, conv, p)| {
            b.push_bind(*user)
                .push_bind(*conv)
                .push_bind(sql_seq(p.read))
                .push_bind(sql_seq(p.delivered))
                .push_bind(p.read_at)
                .push_bind(sql_seq(p.inbox));
        });
        qb.push(
            " ON DUPLICATE KEY UPDATE read_seq = VALUES(read_seq), \
             delivered_seq = VALUES(delivered_seq), read_updated_at = VALUES(read_updated_at), \
             inbox_seq = VALUES(inbox_seq)",
        );
        qb.build().execute(&mut *c).await.map_err(be)?;
    }
    Ok(())
}

/// The positions of users in conversations (`pairs` sorted), their rows
/// locked in primary key order (the order appends and acks lock them in).
async fn lock_positions(
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
    const UPSERT_REVOKED: &'static str =
        "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) \
         ON DUPLICATE KEY UPDATE expires_at = GREATEST(expires_at, VALUES(expires_at))";

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
            "INSERT INTO users (user_id, name, password_hash, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&u.user)
        .bind(&u.name)
        .bind(&u.password_hash)
        .bind(u.created_at)
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
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut originals = find_duplicates(c, batch).await?;
        let convs: BTreeSet<&str> = batch.iter().map(|m| m.conv.as_str()).collect();
        let mut counters = lock_counters(c, &convs).await?;
        // Latest activity per conversation written to.
        let mut touched: BTreeMap<&str, i64> = BTreeMap::new();
        let mut rows: Vec<MsgRow<'_>> = Vec::with_capacity(batch.len());
        // 1:1 conversation list entries, (user, conv) -> peer; first one wins.
        let mut dm_entries: BTreeMap<(&str, &str), Option<&str>> = BTreeMap::new();
        let mut dm_sent: BTreeMap<(&str, &str), Vec<Sent>> = BTreeMap::new();
        let mut out = Vec::with_capacity(batch.len());

        for m in batch {
            if let Some(cmid) = &m.client_msg_id {
                if let Some(orig) = originals.get(&(m.from.clone(), cmid.clone())) {
                    out.push(Appended::Duplicate(orig.clone()));
                    continue;
                }
            }
            if let Some(gid) = &m.group {
                if let Some(refusal) = group_gate(c, m, gid).await? {
                    out.push(Appended::Refused(refusal));
                    continue;
                }
            }
            let counter = counters.entry(m.conv.clone()).or_insert(0);
            *counter += 1;
            let seq = *counter;
            let at = touched.entry(m.conv.as_str()).or_insert(m.ts);
            *at = (*at).max(m.ts);
            let stored = m.stored(seq as u64);
            let queue_follows = rules::queue_follows(&m.from, m.to.as_deref());
            let inboxed = match &m.group {
                None => {
                    for p in &m.participants {
                        let peer = if *p == m.from {
                            m.to.as_deref()
                        } else {
                            Some(m.from.as_str())
                        };
                        dm_entries
                            .entry((p.as_str(), m.conv.as_str()))
                            .or_insert(peer);
                    }
                    dm_sent
                        .entry((m.from.as_str(), m.conv.as_str()))
                        .or_default()
                        .push((seq, m.ts, queue_follows));
                    true
                }
                Some(gid) => group_message(c, m, gid, seq, queue_follows).await?,
            };
            rows.push(MsgRow { m, seq, inboxed });
            if let Some(cmid) = &m.client_msg_id {
                originals.insert((m.from.clone(), cmid.clone()), stored.clone());
            }
            out.push(Appended::New(stored));
        }

        insert_messages(c, &rows).await?;
        insert_dm_entries(c, &dm_entries).await?;
        own_messages(c, &dm_sent).await?;
        let finals: Vec<(&str, i64, i64)> = touched
            .iter()
            .map(|(conv, at)| (*conv, counters.get(*conv).copied().unwrap_or(0), *at))
            .collect();
        for chunk in finals.chunks(CHUNK) {
            let mut qb: QueryBuilder<MySql> =
                QueryBuilder::new("INSERT INTO convs (conv, max_seq, updated_at) ");
            qb.push_values(chunk, |mut b, (conv, max, at)| {
                b.push_bind(*conv).push_bind(*max).push_bind(*at);
            });
            qb.push(
                " ON DUPLICATE KEY UPDATE max_seq = VALUES(max_seq), \
                 updated_at = GREATEST(updated_at, VALUES(updated_at))",
            );
            qb.build().execute(&mut *c).await.map_err(be)?;
        }
        Ok(out)
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
        let mut maxes: HashMap<String, u64> = HashMap::new();
        for chunk in convs.chunks(CHUNK) {
            let mut qb: QueryBuilder<MySql> =
                QueryBuilder::new("SELECT conv, max_seq FROM convs WHERE conv IN (");
            let mut sep = qb.separated(", ");
            for conv in chunk {
                sep.push_bind(*conv);
            }
            qb.push(")");
            for r in qb.build().fetch_all(&mut *c).await.map_err(be)? {
                maxes.insert(
                    r.try_get::<String, _>(0).map_err(be)?,
                    r.try_get::<i64, _>(1).map_err(be)?.max(0) as u64,
                );
            }
        }

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
