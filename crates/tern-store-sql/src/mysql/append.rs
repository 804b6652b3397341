//! MySQL's append of a batch of messages (`Dialect::append_messages`): the
//! counters it locks, the dedup lookup, the membership changes of group
//! messages, and the rows it writes in multi-row statements of at most
//! [`CHUNK`] rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::{MySql, MySqlConnection, QueryBuilder, Row};
use tern_core::rules;
use tern_core::store::{Appended, MemberChange, NewMessage, Refusal, StoreResult, StoredMessage};

use super::ops::{exists, lock_positions, CHUNK};
use super::MySqlDialect;
use crate::common::{be, msg_cols, sql_seq};
use crate::moderation::Moderation;
use crate::shared::Shared;

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
    let mut out = select_counters(c, &convs, true).await?;
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
    out.extend(select_counters(c, &missing, true).await?);
    Ok(out)
}

/// The counter rows (`max_seq`) of `convs`; with `lock`, `SELECT .. FOR
/// UPDATE` in `conv` order (pass them sorted).
pub(super) async fn select_counters(
    c: &mut MySqlConnection,
    convs: &[&str],
    lock: bool,
) -> StoreResult<HashMap<String, i64>> {
    let mut out = HashMap::new();
    for chunk in convs.chunks(CHUNK) {
        let mut qb: QueryBuilder<MySql> =
            QueryBuilder::new("SELECT conv, max_seq FROM convs WHERE conv IN (");
        let mut sep = qb.separated(", ");
        for conv in chunk {
            sep.push_bind(*conv);
        }
        qb.push(if lock {
            ") ORDER BY conv FOR UPDATE"
        } else {
            ")"
        });
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
    if let Some(refusal) = MySqlDialect::role_gate(c, m, gid).await? {
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
    if let Some(change) = &m.change {
        MySqlDialect::apply_change(c, gid, change).await?;
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

/// Appends a batch in the caller's transaction (READ COMMITTED): the
/// originals of duplicates first, then the counters of the batch's
/// conversations, locked in order; seqs are counted under those locks.
pub(super) async fn append(
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
