//! PostgreSQL's statements for the operations of [`crate::SqlStore`] that
//! MySQL spells differently: the `Dialect` impl of [`Pg`], on a connection
//! (inside the caller's transaction where the store opened one), with the
//! hot paths batched into few statements through array binds (`unnest`).
//! The append is in `append.rs`; the statements both servers accept are in
//! [`crate::shared`].

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, Row};
use tern_core::rules;
use tern_core::store::{
    AckMark, Appended, FriendLists, FriendStatus, NewMessage, StoreError, StoreResult,
    StoredMessage, UserRecord,
};

use super::{append, Pg};
use crate::common::{be, msg_cols, sql_seq, PageFetch};
use crate::shared::Shared;
use crate::Dialect;

/// A seq column (BIGINT) at `i`.
pub(super) fn seq_at(r: &PgRow, i: usize) -> StoreResult<u64> {
    Ok(r.try_get::<i64, _>(i).map_err(be)?.max(0) as u64)
}

/// Serializes changes of the relation between two users (whichever side
/// asks), until the transaction ends.
async fn lock_pair(c: &mut PgConnection, a: &str, b: &str) -> StoreResult<()> {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('tern.friends'), hashtext($1 || chr(10) || $2))",
    )
    .bind(lo)
    .bind(hi)
    .execute(&mut *c)
    .await
    .map_err(be)?;
    Ok(())
}

/// A user's row in a conversation, as acks see it.
struct AckRow {
    pos: rules::Positions,
    max: u64,
    changed: bool,
}

/// Receipts to check after a batch of acks: whether `peer` sent a message
/// of `conv` in `lo+1 ..= hi`, for answer `index`.
#[derive(Default)]
struct ReceiptChecks {
    index: Vec<i64>,
    conv: Vec<String>,
    lo: Vec<i64>,
    hi: Vec<i64>,
    peer: Vec<String>,
}

#[async_trait]
impl Dialect for Pg {
    type DB = Postgres;
    const NAME: &'static str = "postgres";
    const SLOT: usize = 0;
    const NUMBERED: bool = true;
    const GROUPS: &'static str = "groups";
    const OWNER: &'static str = "owner";
    const SEARCH_MATCH: &'static str = "d.terms @@ ?::tsquery";
    const UPSERT_REVOKED: &'static str =
        "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) \
         ON CONFLICT (jti) DO UPDATE SET expires_at = \
         GREATEST(revoked_tokens.expires_at, EXCLUDED.expires_at)";
    const UPSERT_REVOKED_USER: &'static str =
        "INSERT INTO revoked_users (user_id, before_ms, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET \
         before_ms = GREATEST(revoked_users.before_ms, EXCLUDED.before_ms), \
         expires_at = GREATEST(revoked_users.expires_at, EXCLUDED.expires_at)";
    const INSERT_SIGNING_KEY: &'static str =
        "INSERT INTO signing_keys (kid, secret, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (kid) DO NOTHING";
    // 5.4 and blocks
    const INSERT_BLOCK: &'static str =
        "INSERT INTO blocks (user_id, blocked, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, blocked) DO NOTHING";
    const INSERT_JOB: &'static str =
        "INSERT INTO jobs (kind, job_key, payload, created_at, due_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (job_key) DO NOTHING";
    const PUT_JOB: &'static str =
        "INSERT INTO jobs (kind, job_key, payload, created_at, due_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (job_key) DO UPDATE SET payload = EXCLUDED.payload";
    const UPSERT_PUSH_DEVICE: &'static str =
        "INSERT INTO push_devices (user_id, device, provider, token, endpoint, p256dh, auth, \
         session, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (user_id, device) DO UPDATE SET provider = EXCLUDED.provider, \
         token = EXCLUDED.token, endpoint = EXCLUDED.endpoint, p256dh = EXCLUDED.p256dh, \
         auth = EXCLUDED.auth, session = EXCLUDED.session, updated_at = EXCLUDED.updated_at";
    const ERASE_FRIENDS: &'static [&'static str] =
        &["DELETE FROM friends WHERE user_id = ? OR other = ?"];
    const SENT_LIKE: &'static str = "SELECT 1 FROM client_ids ci \
         JOIN messages m ON m.conv = ci.conv AND m.seq = ci.seq \
         WHERE ci.from_user = ? AND m.content LIKE ? LIMIT 1";
    const UPSERT_RETENTION: &'static str =
        "INSERT INTO conv_retention (conv, days, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (conv) DO UPDATE SET days = EXCLUDED.days, updated_at = EXCLUDED.updated_at";

    fn msg_id_at(r: &PgRow, i: usize) -> Result<u64, sqlx::Error> {
        Ok(r.try_get::<i64, _>(i)? as u64)
    }

    fn client_msg_id_at(r: &PgRow, i: usize) -> Result<Option<String>, sqlx::Error> {
        r.try_get(i)
    }

    fn flag_at(r: &PgRow, i: usize) -> Result<bool, sqlx::Error> {
        r.try_get(i)
    }

    fn rows_affected(r: &sqlx::postgres::PgQueryResult) -> u64 {
        r.rows_affected()
    }

    fn retryable(e: &sqlx::Error) -> bool {
        let sqlx::Error::Database(db) = e else {
            return false;
        };
        matches!(db.code().as_deref(), Some("40001" | "40P01" | "23505"))
    }

    fn backoff(attempt: u32, jitter: u32) -> Duration {
        let jitter = u64::from(jitter % 1000);
        let base = 1000 * u64::from(attempt.min(6));
        Duration::from_micros(base + jitter * u64::from(attempt))
    }

    async fn create_user(c: &mut PgConnection, u: &UserRecord) -> StoreResult<()> {
        let n = sqlx::query(
            "INSERT INTO users (user_id, name, password_hash, created_at, bot) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(&u.user)
        .bind(&u.name)
        .bind(&u.password_hash)
        .bind(u.created_at)
        .bind(u.bot)
        .execute(&mut *c)
        .await
        .map_err(be)?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    async fn friend_request(
        c: &mut PgConnection,
        from: &str,
        to: &str,
        now: i64,
    ) -> StoreResult<FriendStatus> {
        if from == to {
            return Err(StoreError::Invalid("cannot befriend oneself"));
        }
        lock_pair(c, from, to).await?;
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM friends WHERE user_id = $1 AND other = $2")
                .bind(from)
                .bind(to)
                .fetch_optional(&mut *c)
                .await
                .map_err(be)?;
        match state.as_deref() {
            Some("friend") => Ok(FriendStatus::Friends),
            Some("in") => {
                // `to` asked before: this answers.
                sqlx::query(
                    "UPDATE friends SET state = 'friend', since = $3 \
                     WHERE (user_id = $1 AND other = $2) OR (user_id = $2 AND other = $1)",
                )
                .bind(from)
                .bind(to)
                .bind(now)
                .execute(&mut *c)
                .await
                .map_err(be)?;
                Ok(FriendStatus::Friends)
            }
            _ => {
                sqlx::query(
                    "INSERT INTO friends (user_id, other, state, since) \
                     VALUES ($1, $2, 'out', $3), ($2, $1, 'in', $3) \
                     ON CONFLICT (user_id, other) DO NOTHING",
                )
                .bind(from)
                .bind(to)
                .bind(now)
                .execute(&mut *c)
                .await
                .map_err(be)?;
                Ok(FriendStatus::Requested)
            }
        }
    }

    async fn friend_delete(c: &mut PgConnection, a: &str, b: &str) -> StoreResult<()> {
        lock_pair(c, a, b).await?;
        sqlx::query(
            "DELETE FROM friends WHERE (user_id = $1 AND other = $2) OR (user_id = $2 AND other = $1)",
        )
        .bind(a)
        .bind(b)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(())
    }

    async fn friends(c: &mut PgConnection, user: &str) -> StoreResult<FriendLists> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT other, state FROM friends WHERE user_id = $1")
                .bind(user)
                .fetch_all(&mut *c)
                .await
                .map_err(be)?;
        let mut out = FriendLists::default();
        for (other, state) in rows {
            match state.as_str() {
                "friend" => out.friends.push(other),
                "in" => out.incoming.push(other),
                _ => out.outgoing.push(other),
            }
        }
        Ok(out)
    }

    async fn count_users(c: &mut PgConnection, users: &[String]) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM users WHERE user_id = ANY($1::text[])")
                .bind(users)
                .fetch_one(&mut *c)
                .await
                .map_err(be)?;
        Ok(n.max(0) as u64)
    }

    async fn append_messages(
        c: &mut PgConnection,
        batch: &[NewMessage],
    ) -> StoreResult<Vec<Appended>> {
        append::append(c, batch).await
    }

    /// Acks that only move queue positions (no delivered receipt to compute),
    /// in one statement: each position moves to the acked seq, clamped to the
    /// conversation's max seq and to a former member's end, and never back.
    async fn ack_queue_only(
        c: &mut PgConnection,
        marks: &[(String, String, i64)],
    ) -> StoreResult<()> {
        let users: Vec<&str> = marks.iter().map(|k| k.0.as_str()).collect();
        let convs: Vec<&str> = marks.iter().map(|k| k.1.as_str()).collect();
        let seqs: Vec<i64> = marks.iter().map(|k| k.2).collect();
        sqlx::query(
            "UPDATE user_convs uc \
             SET inbox_seq = LEAST(q.s, COALESCE(uc.until_seq, q.s), COALESCE(cv.max_seq, 0)) \
             FROM unnest($1::text[], $2::text[], $3::bigint[]) AS q(u, c, s) \
             LEFT JOIN convs cv ON cv.conv = q.c \
             WHERE uc.user_id = q.u AND uc.conv = q.c \
               AND LEAST(q.s, COALESCE(uc.until_seq, q.s), COALESCE(cv.max_seq, 0)) > uc.inbox_seq",
        )
        .bind(&users)
        .bind(&convs)
        .bind(&seqs)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(())
    }

    /// Acks in order, in the caller's transaction: the rows are locked and
    /// read at once, the acks applied to them in memory ([`rules::ack`]), and
    /// the rows written and the receipts checked in one statement.
    async fn ack_many(c: &mut PgConnection, acks: &[AckMark]) -> StoreResult<Vec<Option<u64>>> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys: Vec<(String, String)> = acks
            .iter()
            .map(|a| (a.user.clone(), a.conv.clone()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let (users, convs): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
        let rows = sqlx::query(
            "SELECT uc.user_id, uc.conv, uc.delivered_seq, uc.until_seq, uc.inbox_seq, \
                    COALESCE(cv.max_seq, 0) \
             FROM user_convs uc JOIN unnest($1::text[], $2::text[]) AS q(u, c) \
                 ON uc.user_id = q.u AND uc.conv = q.c \
             LEFT JOIN convs cv ON cv.conv = uc.conv \
             ORDER BY uc.user_id, uc.conv FOR UPDATE OF uc",
        )
        .bind(&users)
        .bind(&convs)
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        let mut state: HashMap<(String, String), AckRow> = HashMap::new();
        for r in rows {
            let key = (r.try_get(0).map_err(be)?, r.try_get(1).map_err(be)?);
            state.insert(
                key,
                AckRow {
                    pos: rules::Positions {
                        delivered: seq_at(&r, 2)?,
                        until: r
                            .try_get::<Option<i64>, _>(3)
                            .map_err(be)?
                            .map(|u| u.max(0) as u64),
                        inbox: seq_at(&r, 4)?,
                        ..Default::default()
                    },
                    max: seq_at(&r, 5)?,
                    changed: false,
                },
            );
        }

        let mut out: Vec<Option<u64>> = vec![None; acks.len()];
        let mut checks = ReceiptChecks::default();
        for (i, a) in acks.iter().enumerate() {
            let Some(uc) = state.get_mut(&(a.user.clone(), a.conv.clone())) else {
                continue;
            };
            let Some(mv) = rules::ack(&uc.pos, uc.max, a.seq, a.receipt_for.is_some()) else {
                continue;
            };
            uc.pos.inbox = mv.inbox;
            uc.pos.delivered = mv.delivered;
            uc.changed = true;
            let (Some(peer), Some((lo, hi))) = (&a.receipt_for, mv.receipt) else {
                continue;
            };
            checks.index.push(i as i64);
            checks.conv.push(a.conv.clone());
            checks.lo.push(sql_seq(lo));
            checks.hi.push(sql_seq(hi));
            checks.peer.push(peer.clone());
        }
        let mut upd: (Vec<String>, Vec<String>, Vec<i64>, Vec<i64>) = Default::default();
        for ((user, conv), r) in state {
            if r.changed {
                upd.0.push(user);
                upd.1.push(conv);
                upd.2.push(sql_seq(r.pos.inbox));
                upd.3.push(sql_seq(r.pos.delivered));
            }
        }
        if upd.0.is_empty() {
            return Ok(out);
        }
        // The rows are written and the receipts checked in one statement (the
        // check reads messages only).
        let found: Vec<(i64, bool, i64)> = sqlx::query_as(
            "WITH w AS ( \
                 UPDATE user_convs uc SET inbox_seq = GREATEST(uc.inbox_seq, v.i), delivered_seq = v.d \
                 FROM unnest($6::text[], $7::text[], $8::int8[], $9::int8[]) AS v(u, c, i, d) \
                 WHERE uc.user_id = v.u AND uc.conv = v.c) \
             SELECT q.i, EXISTS (SELECT 1 FROM messages m WHERE m.conv = q.c AND m.seq > q.lo \
                                 AND m.seq <= q.hi AND m.from_user = q.p), q.hi \
             FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::text[]) \
                 AS q(i, c, lo, hi, p)",
        )
        .bind(&checks.index)
        .bind(&checks.conv)
        .bind(&checks.lo)
        .bind(&checks.hi)
        .bind(&checks.peer)
        .bind(&upd.0)
        .bind(&upd.1)
        .bind(&upd.2)
        .bind(&upd.3)
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        for (i, theirs, top) in found {
            if let (true, Some(slot)) =
                (theirs, usize::try_from(i).ok().and_then(|i| out.get_mut(i)))
            {
                *slot = Some(top as u64);
            }
        }
        Ok(out)
    }

    async fn count_messages(c: &mut PgConnection, conv: &str, seqs: &[i64]) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM messages WHERE conv = $1 AND seq = ANY($2)")
                .bind(conv)
                .bind(seqs)
                .fetch_one(&mut *c)
                .await
                .map_err(be)?;
        Ok(n.max(0) as u64)
    }

    async fn hide(c: &mut PgConnection, user: &str, conv: &str, seqs: &[i64]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO hidden (user_id, conv, seq) SELECT $1, $2, s FROM unnest($3::int8[]) AS t(s) \
             ON CONFLICT DO NOTHING",
        )
        .bind(user)
        .bind(conv)
        .bind(seqs)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(())
    }

    /// The newest message each user can see and has not deleted, for all
    /// listed conversations in one query.
    async fn last_messages(
        c: &mut PgConnection,
        user: &str,
        convs: &[(String, u64)],
    ) -> StoreResult<Vec<Option<StoredMessage>>> {
        let names: Vec<&str> = convs.iter().map(|(c, _)| c.as_str()).collect();
        let uppers: Vec<i64> = convs.iter().map(|(_, s)| sql_seq(*s)).collect();
        let rows = sqlx::query(concat!(
            "SELECT q.i, ",
            msg_cols!(),
            " FROM unnest($2::text[], $3::int8[]) WITH ORDINALITY AS q(c, up, i) \
             CROSS JOIN LATERAL (SELECT * FROM messages m WHERE m.conv = q.c AND m.seq <= q.up \
                 AND NOT EXISTS (SELECT 1 FROM hidden h \
                     WHERE h.user_id = $1 AND h.conv = m.conv AND h.seq = m.seq) \
                 ORDER BY m.seq DESC LIMIT 1) m"
        ))
        .bind(user)
        .bind(&names)
        .bind(&uppers)
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        let mut out = vec![None; convs.len()];
        for r in rows {
            let i: i64 = r.try_get(0).map_err(be)?;
            if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| out.get_mut(i)) {
                *slot = Some(Pg::message_at(&r, 1).map_err(be)?);
            }
        }
        Ok(out)
    }

    /// All pages in one query.
    async fn queue_pages(
        c: &mut PgConnection,
        user: &str,
        fetches: &[PageFetch],
    ) -> StoreResult<Vec<Vec<StoredMessage>>> {
        let convs: Vec<&str> = fetches.iter().map(|f| f.conv.as_str()).collect();
        let los: Vec<i64> = fetches.iter().map(|f| f.lo).collect();
        let belows: Vec<i64> = fetches.iter().map(|f| f.below).collect();
        let owns: Vec<bool> = fetches.iter().map(|f| f.own_too).collect();
        let limits: Vec<i64> = fetches.iter().map(|f| i64::from(f.limit)).collect();
        let rows = sqlx::query(concat!(
            "SELECT s.i, ",
            msg_cols!(),
            " FROM unnest($2::text[], $3::int8[], $4::int8[], $5::bool[], $6::int8[]) \
                 WITH ORDINALITY AS s(conv, lo, below, own_too, lim, i) \
             CROSS JOIN LATERAL ( \
                 SELECT * FROM messages m WHERE m.conv = s.conv AND m.seq > s.lo AND m.seq < s.below \
                     AND m.inboxed AND (m.from_user <> $1 OR s.own_too) \
                 ORDER BY m.seq DESC LIMIT s.lim) m"
        ))
        .bind(user)
        .bind(&convs)
        .bind(&los)
        .bind(&belows)
        .bind(&owns)
        .bind(&limits)
        .fetch_all(&mut *c)
        .await
        .map_err(be)?;
        let mut pages: Vec<Vec<StoredMessage>> = vec![Vec::new(); fetches.len()];
        for r in &rows {
            let i: i64 = r.try_get(0).map_err(be)?;
            if let Some(page) = usize::try_from(i - 1).ok().and_then(|i| pages.get_mut(i)) {
                page.push(Pg::message_at(r, 1).map_err(be)?);
            }
        }
        Ok(pages)
    }

    /// One statement; locks the rows in sorted order (as appends and acks do)
    /// before updating them.
    async fn move_queues(
        c: &mut PgConnection,
        user: &str,
        moves: &[(String, u64)],
    ) -> StoreResult<()> {
        let (cs, ss): (Vec<&str>, Vec<i64>) =
            moves.iter().map(|(c, s)| (c.as_str(), sql_seq(*s))).unzip();
        sqlx::query(
            "WITH v AS (SELECT * FROM unnest($2::text[], $3::int8[]) AS t(c, s)), \
             l AS MATERIALIZED (SELECT uc.conv FROM user_convs uc JOIN v ON uc.conv = v.c \
                 WHERE uc.user_id = $1 ORDER BY uc.conv FOR UPDATE OF uc) \
             UPDATE user_convs uc SET inbox_seq = GREATEST(uc.inbox_seq, v.s) \
             FROM l JOIN v ON v.c = l.conv \
             WHERE uc.user_id = $1 AND uc.conv = l.conv",
        )
        .bind(user)
        .bind(&cs)
        .bind(&ss)
        .execute(&mut *c)
        .await
        .map_err(be)?;
        Ok(())
    }

    /// Unanswered requests `user` sent (primary key prefix).
    async fn outgoing_request_count(c: &mut PgConnection, user: &str) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM friends WHERE user_id = $1 AND state = 'out'")
                .bind(user)
                .fetch_one(&mut *c)
                .await
                .map_err(be)?;
        Ok(n.max(0) as u64)
    }
}
