//! PostgreSQL's append of a batch of messages (`Dialect::append_messages`):
//! the counters and user rows it locks, the membership changes of group
//! messages, and the user rows it writes, in a handful of bulk statements.

use std::collections::{BTreeMap, HashMap};

use sqlx::{PgConnection, Row};
use tern_core::rules;
use tern_core::store::{Appended, MemberChange, NewMessage, Refusal, StoreResult, StoredMessage};

use super::ops::seq_at;
use super::Pg;
use crate::common::{be, msg_cols, sql_seq};
use crate::moderation::Moderation;
use crate::shared::Shared;

/// Adds `user` to group `gid` (conversation `conv`) at message `seq`; the
/// user's row changes in `rows`.
async fn add_member(
    c: &mut PgConnection,
    rows: &mut UserRows,
    gid: &str,
    conv: &str,
    user: &str,
    seq: i64,
) -> StoreResult<()> {
    if Pg::is_member(c, gid, user).await? {
        return Ok(());
    }
    sqlx::query(
        "WITH g AS (UPDATE groups SET next_order = next_order + 1 WHERE gid = $1 \
                    RETURNING next_order - 1 AS o) \
         INSERT INTO group_members (gid, user_id, join_order) SELECT $1, $2, o FROM g",
    )
    .bind(gid)
    .bind(user)
    .execute(&mut *c)
    .await
    .map_err(be)?;
    // A new member's unread count and offline queue start at their own
    // join message; a returning member keeps what they had read, and their
    // queue resumes at the join (what came while they were away was never
    // theirs).
    let start = (seq - 1).max(0) as u64;
    let r = rows
        .entry((user.to_owned(), conv.to_owned()))
        .or_insert_with(|| UserRow::new(None, Some(gid.to_owned()), start));
    r.pos.until = None;
    r.until_ts = None;
    r.pos.read = r.pos.read.max(start);
    r.pos.delivered = r.pos.delivered.max(start);
    r.pos.inbox = r.pos.inbox.max(start);
    r.changed = true;
    Ok(())
}

/// Removes `user` from group `gid` after message `seq` (at `ts`); hands
/// ownership to the longest-standing remaining member if the owner left.
/// The user's row changes in `rows`.
async fn remove_member(
    c: &mut PgConnection,
    rows: &mut UserRows,
    gid: &str,
    conv: &str,
    user: &str,
    seq: i64,
    ts: i64,
) -> StoreResult<()> {
    if !Pg::drop_member(c, gid, user).await? {
        return Ok(());
    }
    if let Some(r) = rows.get_mut(&(user.to_owned(), conv.to_owned())) {
        r.pos.until = Some(seq as u64);
        r.until_ts = Some(ts);
        r.changed = true;
    }
    Pg::hand_over(c, gid, user).await
}

/// Checks a group message before it gets a seq: `Err(refusal)` when it
/// must not be stored. Creates the group for `MemberChange::Create`. For a
/// message without a membership change that may be write-diffused, also
/// counts the members (the count it is stored with).
async fn group_gate(
    c: &mut PgConnection,
    m: &NewMessage,
    gid: &str,
) -> StoreResult<Result<Option<u64>, Refusal>> {
    if let Some(MemberChange::Create { name }) = &m.change {
        let n = sqlx::query(
            "INSERT INTO groups (gid, name, owner, created_at, next_order, version) \
             VALUES ($1, $2, $3, $4, 0, 0) ON CONFLICT (gid) DO NOTHING",
        )
        .bind(gid)
        .bind(name)
        .bind(&m.from)
        .bind(m.ts)
        .execute(&mut *c)
        .await
        .map_err(be)?
        .rows_affected();
        // The insert reads whether the group existed.
        return Ok(rules::gate(m.change.as_ref(), n == 0, false)?.map(|()| None));
    }
    let count_limit = rules::members_to_count(m.inbox_members_up_to);
    let count_now = m.change.is_none() && count_limit.is_some();
    let (exists, member, count): (bool, bool, Option<i64>) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM groups WHERE gid = $1), \
                EXISTS (SELECT 1 FROM group_members WHERE gid = $1 AND user_id = $2), \
                CASE WHEN $3 THEN (SELECT count(*) FROM \
                    (SELECT 1 FROM group_members WHERE gid = $1 LIMIT $4) t) END",
    )
    .bind(gid)
    .bind(&m.from)
    .bind(count_now)
    .bind(sql_seq(count_limit.unwrap_or(0)))
    .fetch_one(&mut *c)
    .await
    .map_err(be)?;
    if let Err(refusal) = rules::gate(m.change.as_ref(), exists, member)? {
        return Ok(Err(refusal));
    }
    if let Some(refusal) = Pg::role_gate(c, m, gid).await? {
        return Ok(Err(refusal));
    }
    Ok(Ok(count.map(|n| n as u64)))
}

/// A user's row in a conversation while a batch is appended: the rows are
/// locked and read first, the batch's changes are made here, message after
/// message as the embedded store makes them in its database, and the rows
/// are written once at the end.
struct UserRow {
    peer: Option<String>,
    group: Option<String>,
    pos: rules::Positions,
    until_ts: Option<i64>,
    /// Not in the database yet.
    new: bool,
    changed: bool,
}

impl UserRow {
    /// A row the batch creates, with its positions at `start`.
    fn new(peer: Option<String>, group: Option<String>, start: u64) -> UserRow {
        UserRow {
            peer,
            group,
            pos: rules::Positions {
                read: start,
                delivered: start,
                read_at: 0,
                inbox: start,
                until: None,
            },
            until_ts: None,
            new: true,
            changed: true,
        }
    }
}

/// User rows by (user, conversation).
type UserRows = BTreeMap<(String, String), UserRow>;

/// Columns of `messages` for one bulk insert.
#[derive(Default)]
struct MessageRows {
    conv: Vec<String>,
    seq: Vec<i64>,
    msg_id: Vec<i64>,
    from: Vec<String>,
    to: Vec<Option<String>>,
    group: Vec<Option<String>>,
    kind: Vec<String>,
    content: Vec<String>,
    ts: Vec<i64>,
    cmid: Vec<Option<String>>,
    inboxed: Vec<bool>,
}

impl MessageRows {
    fn push(&mut self, m: &StoredMessage, content: &str, inboxed: bool) {
        self.conv.push(m.conv.clone());
        self.seq.push(sql_seq(m.seq));
        self.msg_id.push(m.msg_id as i64);
        self.from.push(m.from.clone());
        self.to.push(m.to.clone());
        self.group.push(m.group.clone());
        self.kind.push(m.kind.clone());
        self.content.push(content.to_owned());
        self.ts.push(m.ts);
        self.cmid.push(m.client_msg_id.clone());
        self.inboxed.push(inboxed);
    }
}

/// A stored message's conversation list entries and the sender's
/// positions, made in `rows`.
fn user_effects(rows: &mut UserRows, m: &NewMessage, seq: i64) {
    // Conversation list entries.
    for p in &m.participants {
        let peer = if m.group.is_some() {
            None
        } else if *p == m.from {
            m.to.clone()
        } else {
            Some(m.from.clone())
        };
        rows.entry((p.clone(), m.conv.clone()))
            .or_insert_with(|| UserRow::new(peer, m.group.clone(), 0));
    }
    // The sender has read their own message, and their queue position may
    // follow (`rules::own_message`).
    let follows = rules::queue_follows(&m.from, m.to.as_deref());
    if let Some(r) = rows.get_mut(&(m.from.clone(), m.conv.clone())) {
        if rules::own_message(&mut r.pos, seq as u64, m.ts, follows) {
            r.changed = true;
        }
    }
}

/// Columns of user rows a batch creates or changes.
#[derive(Default)]
struct UserCols {
    user: Vec<String>,
    conv: Vec<String>,
    peer: Vec<Option<String>>,
    group: Vec<Option<String>>,
    read: Vec<i64>,
    delivered: Vec<i64>,
    read_at: Vec<i64>,
    inbox: Vec<i64>,
    until: Vec<Option<i64>>,
    until_ts: Vec<Option<i64>>,
}

/// The user rows a batch created and those it changed.
fn user_row_changes(rows: UserRows) -> (UserCols, UserCols) {
    let (mut ins, mut upd) = (UserCols::default(), UserCols::default());
    for ((user, conv), r) in rows {
        if !r.changed {
            continue;
        }
        let cols = if r.new { &mut ins } else { &mut upd };
        cols.user.push(user);
        cols.conv.push(conv);
        cols.peer.push(r.peer);
        cols.group.push(r.group);
        cols.read.push(sql_seq(r.pos.read));
        cols.delivered.push(sql_seq(r.pos.delivered));
        cols.read_at.push(r.pos.read_at);
        cols.inbox.push(sql_seq(r.pos.inbox));
        cols.until.push(r.pos.until.map(sql_seq));
        cols.until_ts.push(r.until_ts);
    }
    (ins, upd)
}

/// A stored group message's membership change (in the database) and user
/// rows (in `rows`), in the embedded store's order. Returns whether the
/// message enters queues.
async fn group_effects(
    c: &mut PgConnection,
    rows: &mut UserRows,
    m: &NewMessage,
    gid: &str,
    seq: i64,
    members: Option<u64>,
) -> StoreResult<bool> {
    // Joining first: a new member gets their own join message.
    match &m.change {
        Some(MemberChange::Create { .. }) => {
            add_member(c, rows, gid, &m.conv, &m.from, seq).await?
        }
        Some(MemberChange::Join(u)) => add_member(c, rows, gid, &m.conv, u, seq).await?,
        _ => {}
    }
    // Counting first spares loading a large (read-diffused) group's member
    // list for every message.
    let inboxed = match (rules::members_to_count(m.inbox_members_up_to), members) {
        (None, _) => false,
        (Some(_), Some(n)) => rules::enters_queues(n, m.inbox_members_up_to),
        (Some(limit), None) => {
            let n = Pg::member_count_up_to(c, gid, limit).await?;
            rules::enters_queues(n, m.inbox_members_up_to)
        }
    };
    user_effects(rows, m, seq);
    if let Some(MemberChange::Leave(u)) = &m.change {
        remove_member(c, rows, gid, &m.conv, u, seq, m.ts).await?;
    }
    if let Some(change) = &m.change {
        Pg::apply_change(c, gid, change).await?;
    }
    Ok(inboxed)
}

/// Appends a batch in the caller's transaction. Locks the batch's
/// conversations (in sorted order) first: that serializes appends to a
/// conversation across connections and nodes, and makes the seq counter
/// and the dedup lookup exact. The batch is written with a handful of bulk
/// statements whatever its size; only group messages add statements of
/// their own (the membership check, and membership changes).
pub(super) async fn append(
    c: &mut PgConnection,
    batch: &[NewMessage],
) -> StoreResult<Vec<Appended>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut convs: Vec<String> = batch.iter().map(|m| m.conv.clone()).collect();
    convs.sort_unstable();
    convs.dedup();
    // Creates missing counters and locks every row, in the array's order;
    // the no-op update takes the lock on existing rows.
    let locked: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO convs (conv, max_seq, updated_at) \
         SELECT c, 0, 0 FROM unnest($1::text[]) WITH ORDINALITY AS t(c, i) ORDER BY i \
         ON CONFLICT (conv) DO UPDATE SET max_seq = convs.max_seq \
         RETURNING conv, max_seq",
    )
    .bind(&convs)
    .fetch_all(&mut *c)
    .await
    .map_err(be)?;
    let mut next: HashMap<String, i64> = locked.into_iter().collect();
    let mut activity: HashMap<String, i64> = HashMap::new();

    // Stored before: answered as duplicates. A concurrent duplicate in
    // another conversation, not yet committed, makes the insert into
    // `client_ids` fail; the caller retries and finds it here.
    let mut seen: HashMap<(String, String), StoredMessage> = HashMap::new();
    {
        let (froms, cmids): (Vec<String>, Vec<String>) = batch
            .iter()
            .filter_map(|m| Some((m.from.clone(), m.client_msg_id.clone()?)))
            .unzip();
        if !froms.is_empty() {
            let rows = sqlx::query(concat!(
                "SELECT k.from_user, k.client_msg_id, ",
                msg_cols!(),
                " FROM unnest($1::text[], $2::text[]) AS q(f, k) \
                 JOIN client_ids k ON k.from_user = q.f AND k.client_msg_id = q.k \
                 JOIN messages m ON m.conv = k.conv AND m.seq = k.seq"
            ))
            .bind(&froms)
            .bind(&cmids)
            .fetch_all(&mut *c)
            .await
            .map_err(be)?;
            for r in rows {
                let key: (String, String) = (r.try_get(0).map_err(be)?, r.try_get(1).map_err(be)?);
                seen.insert(key, Pg::message_at(&r, 2).map_err(be)?);
            }
        }
    }

    // Every existing user row the batch may change, locked in one sorted
    // pass (the order acks and offline fetches lock in too), so that no
    // statement below waits for a row lock, and read into `user_rows`.
    let mut user_rows = UserRows::new();
    {
        let mut keys: Vec<(String, String)> = Vec::new();
        for m in batch {
            keys.push((m.from.clone(), m.conv.clone()));
            keys.extend(m.participants.iter().map(|p| (p.clone(), m.conv.clone())));
            if let Some(MemberChange::Join(u) | MemberChange::Leave(u)) = &m.change {
                keys.push((u.clone(), m.conv.clone()));
            }
        }
        keys.sort_unstable();
        keys.dedup();
        let (users, cs): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
        let rows = sqlx::query(
            "SELECT uc.user_id, uc.conv, uc.peer, uc.group_id, uc.read_seq, uc.delivered_seq, \
                    uc.read_updated_at, uc.inbox_seq, uc.until_seq, uc.until_ts \
             FROM user_convs uc JOIN unnest($1::text[], $2::text[]) AS q(u, c) \
                 ON uc.user_id = q.u AND uc.conv = q.c \
             ORDER BY uc.user_id, uc.conv FOR UPDATE OF uc",
        )
        .bind(&users)
        .bind(&cs)
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        for r in rows {
            let key = (r.try_get(0).map_err(be)?, r.try_get(1).map_err(be)?);
            let row = UserRow {
                peer: r.try_get(2).map_err(be)?,
                group: r.try_get(3).map_err(be)?,
                pos: rules::Positions {
                    read: seq_at(&r, 4)?,
                    delivered: seq_at(&r, 5)?,
                    read_at: r.try_get(6).map_err(be)?,
                    inbox: seq_at(&r, 7)?,
                    until: r
                        .try_get::<Option<i64>, _>(8)
                        .map_err(be)?
                        .map(|u| u.max(0) as u64),
                },
                until_ts: r.try_get(9).map_err(be)?,
                new: false,
                changed: false,
            };
            user_rows.insert(key, row);
        }
    }

    let mut out = Vec::with_capacity(batch.len());
    let mut rows = MessageRows::default();
    let mut group_versions: Vec<(String, i64)> = Vec::new();
    for m in batch {
        // Members counted by the gate, for a write-diffusion decision.
        let mut members = None;
        if let Some(cmid) = &m.client_msg_id {
            if let Some(orig) = seen.get(&(m.from.clone(), cmid.clone())) {
                out.push(Appended::Duplicate(orig.clone()));
                continue;
            }
        }
        if let Some(gid) = &m.group {
            match group_gate(c, m, gid).await? {
                Ok(count) => members = count,
                Err(refusal) => {
                    out.push(Appended::Refused(refusal));
                    continue;
                }
            }
        }
        let counter = next.entry(m.conv.clone()).or_insert(0);
        *counter += 1;
        let seq = *counter;
        let at = activity.entry(m.conv.clone()).or_insert(m.ts);
        *at = (*at).max(m.ts);
        let stored = m.stored(seq as u64);
        if let Some(cmid) = &m.client_msg_id {
            seen.insert((m.from.clone(), cmid.clone()), stored.clone());
        }
        let inboxed = match &m.group {
            None => {
                user_effects(&mut user_rows, m, seq);
                true
            }
            Some(gid) => {
                let inboxed = group_effects(c, &mut user_rows, m, gid, seq, members).await?;
                if m.kind == "system" {
                    group_versions.push((gid.clone(), seq));
                }
                inboxed
            }
        };
        rows.push(&stored, &m.content, inboxed);
        out.push(Appended::New(stored));
    }

    if !rows.seq.is_empty() {
        let (cs, (tops, ats)): (Vec<String>, (Vec<i64>, Vec<i64>)) = activity
            .into_iter()
            .map(|(conv, at)| {
                let top = next.get(&conv).copied().unwrap_or(0);
                (conv, (top, at))
            })
            .unzip();
        let (ins, upd) = user_row_changes(user_rows);
        // Everything in one statement. The insert into `client_ids` is a
        // plain one: a concurrent duplicate fails it (unique violation) and
        // the whole transaction is retried. The `user_convs` rows are
        // locked, so the values computed from them are current; the new
        // ones are new (their conversation is locked).
        sqlx::query(
            "WITH m AS ( \
                 INSERT INTO messages (conv, seq, msg_id, from_user, to_user, group_id, kind, \
                                       content, ts, client_msg_id, inboxed) \
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], \
                     $5::text[], $6::text[], $7::text[], $8::text[], $9::int8[], $10::text[], \
                     $11::bool[])), \
             k AS ( \
                 INSERT INTO client_ids (from_user, client_msg_id, conv, seq) \
                 SELECT f, k, c, s FROM unnest($4::text[], $10::text[], $1::text[], $2::int8[]) \
                     AS t(f, k, c, s) WHERE k IS NOT NULL), \
             cv AS ( \
                 UPDATE convs SET max_seq = v.top, updated_at = GREATEST(convs.updated_at, v.at) \
                 FROM unnest($12::text[], $13::int8[], $14::int8[]) AS v(c, top, at) \
                 WHERE convs.conv = v.c), \
             ui AS ( \
                 INSERT INTO user_convs (user_id, conv, peer, group_id, read_seq, delivered_seq, \
                                         read_updated_at, inbox_seq, until_seq, until_ts) \
                 SELECT * FROM unnest($15::text[], $16::text[], $17::text[], $18::text[], \
                     $19::int8[], $20::int8[], $21::int8[], $22::int8[], $23::int8[], \
                     $24::int8[])), \
             uu AS ( \
                 UPDATE user_convs uc SET read_seq = v.r, delivered_seq = v.d, \
                     read_updated_at = v.ra, inbox_seq = v.i, until_seq = v.us, \
                     until_ts = v.ut \
                 FROM unnest($25::text[], $26::text[], $27::int8[], $28::int8[], $29::int8[], \
                     $30::int8[], $31::int8[], $32::int8[]) AS v(u, c, r, d, ra, i, us, ut) \
                 WHERE uc.user_id = v.u AND uc.conv = v.c) \
             SELECT 1",
        )
        .bind(&rows.conv)
        .bind(&rows.seq)
        .bind(&rows.msg_id)
        .bind(&rows.from)
        .bind(&rows.to)
        .bind(&rows.group)
        .bind(&rows.kind)
        .bind(&rows.content)
        .bind(&rows.ts)
        .bind(&rows.cmid)
        .bind(&rows.inboxed)
        .bind(&cs)
        .bind(&tops)
        .bind(&ats)
        .bind(&ins.user)
        .bind(&ins.conv)
        .bind(&ins.peer)
        .bind(&ins.group)
        .bind(&ins.read)
        .bind(&ins.delivered)
        .bind(&ins.read_at)
        .bind(&ins.inbox)
        .bind(&ins.until)
        .bind(&ins.until_ts)
        .bind(&upd.user)
        .bind(&upd.conv)
        .bind(&upd.read)
        .bind(&upd.delivered)
        .bind(&upd.read_at)
        .bind(&upd.inbox)
        .bind(&upd.until)
        .bind(&upd.until_ts)
        .execute(&mut *c)
        .await
        .map_err(be)?;
    }
    if !group_versions.is_empty() {
        let (gids, vs): (Vec<String>, Vec<i64>) = group_versions.into_iter().unzip();
        sqlx::query(
            "UPDATE groups SET version = GREATEST(groups.version, v.s) \
             FROM (SELECT g, max(s) AS s FROM unnest($1::text[], $2::int8[]) AS t(g, s) GROUP BY g) v \
             WHERE groups.gid = v.g",
        )
        .bind(&gids)
        .bind(&vs)
        .execute(&mut *c)
        .await
        .map_err(be)?;
    }
    Ok(out)
}
