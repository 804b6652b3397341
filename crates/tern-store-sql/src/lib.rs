//! Tern's cluster store on SQL servers shared by every node: PostgreSQL
//! (module `postgres`, feature `postgres`) and MySQL 8 / MariaDB 10.11+
//! (module `mysql`, feature `mysql`).
//!
//! One [`SqlStore`] implements the `Store` trait for both: which calls run
//! in a transaction, the retry rule and the connection handling are
//! written once here, and the statements both servers accept as written
//! once in `shared.rs` (its `Sql` renders placeholders and the two names
//! the schemas spell differently). A [`Dialect`] supplies the rest: its
//! driver, which errors are worth a retry, and the statements the servers
//! spell differently (upserts, `RETURNING` or a follow-up select, array
//! binds or multi-row `VALUES`, row locks, the schema and its migration
//! lock). The domain rules (group gate, owner hand-over, diffusion tier,
//! recall window, offline cap, and the read and queue position rules) are
//! not here: the statements read the facts and ask `tern_core::rules` (and
//! `tern_core::offline`).
//!
//! Retry rule: a transaction that fails with an error its dialect calls
//! retryable (a serialization failure, a deadlock, a lock wait timeout, or
//! a unique violation: a concurrent duplicate) is rolled back and run again
//! from the start, a few times, after a short growing pause with jitter;
//! the retry of a concurrent duplicate then finds the original and answers
//! `Appended::Duplicate`. So is one whose `BEGIN` failed on a broken
//! pooled connection (nothing ran). Nothing else is retried (a commit whose
//! answer was lost may have committed). `Ok` means committed and durable.
//!
//! Outage: taking a connection waits at most 3 s, so calls fail fast with
//! `StoreError::Backend` while the server is down; the pool drops broken
//! connections and opens new ones once it is back.
//!
//! One concern, whatever its length: the `Store` implementation (one
//! method per trait method, each a transaction or a connection around the
//! dialect's statements); the statements themselves live elsewhere.

mod common;
mod dialect;
mod moderation;
// 5.1
mod edits;
// 5.3 profiles, conversation settings, sessions
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
mod settings;
// 5.5 media
mod media;
// 5.6 scheduled messages
mod sched;
// 5.2
mod search;
mod shared;
// 5.6 durable jobs
mod jobs;
// 5.5 offline push registrations
mod push;
// 5.6 retention and account erase
mod retention;

use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use tern_core::offline::OfflineMerge;
use tern_core::store::{
    AckMark, Appended, Blocks, ConvList, ConvSettings, ExpireRound, Expired, FriendLists,
    FriendStatus, GroupRecord, HistoryQuery, Job, MediaRecord, NewJob, NewMessage, OfflineBatch,
    Profile, PushRegistration, ReactionSummary, ReadOutcome, Scheduled, SessionRecord, SigningKey,
    Store, StoreError, StoreResult, StoredMessage, UserRecord,
};

use common::{be, sql_seq, PageFetch};
use dialect::Conn;
pub use dialect::Dialect;
use edits::Edits;
use jobs::Jobs;
use media::Media;
use moderation::Moderation;
#[cfg(feature = "mysql")]
pub use mysql::{MySqlOptions, MySqlStore};
#[cfg(feature = "postgres")]
pub use postgres::{PgOptions, PgStore};
use push::Push;
use retention::Retention;
use sched::Sched;
use search::SearchIndex;
use settings::Settings;
use shared::Shared;

/// How long a call waits for a connection before it fails: when the
/// server is down, calls fail fast; the pool reconnects by itself.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Attempts of a transaction that keeps failing with a retryable error.
const MAX_ATTEMPTS: u32 = 8;

/// The store on one SQL server; see the crate docs.
pub struct SqlStore<D: Dialect> {
    pool: sqlx::Pool<D::DB>,
    _dialect: PhantomData<D>,
}

impl<D: Dialect> std::fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL or the pool's connect options: they hold the
        // password.
        f.debug_struct("SqlStore")
            .field("dialect", &D::NAME)
            .field("connections", &self.pool.size())
            .field(
                "max_connections",
                &self.pool.options().get_max_connections(),
            )
            .finish_non_exhaustive()
    }
}

/// `BEGIN` failed: nothing of the transaction ran.
#[derive(Debug)]
struct BeginFailed(sqlx::Error);

impl std::fmt::Display for BeginFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not begin a transaction: {}", self.0)
    }
}

impl std::error::Error for BeginFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Whether a failed call may succeed when run again: what the dialect
/// calls retryable, and a pooled connection found broken at `BEGIN` (the
/// server went away while it sat idle; nothing ran, and the retry takes
/// another connection).
fn retryable<D: Dialect>(e: &StoreError) -> bool {
    let StoreError::Backend(inner) = e else {
        return false;
    };
    if let Some(BeginFailed(e)) = inner.downcast_ref::<BeginFailed>() {
        return matches!(e, sqlx::Error::Io(_));
    }
    inner
        .downcast_ref::<sqlx::Error>()
        .is_some_and(D::retryable)
}

/// The dialect's pause before attempt `attempt + 1`, with jitter so that
/// two transactions that collided do not collide again.
async fn backoff<D: Dialect>(attempt: u32) {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    tokio::time::sleep(D::backoff(attempt, jitter)).await;
}

/// Runs `$body` (an expression using the connection `$c`, giving a future
/// of `StoreResult<T>`) in a transaction; commits; retries the whole
/// transaction per the crate docs.
macro_rules! in_tx {
    ($store:expr, |$c:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result: StoreResult<_> = async {
                let mut tx = $store
                    .pool
                    .begin()
                    .await
                    .map_err(|e| StoreError::backend(BeginFailed(e)))?;
                let out = {
                    let $c: &mut Conn<D> = &mut *tx;
                    $body.await
                };
                match out {
                    Ok(v) => {
                        tx.commit().await.map_err(be)?;
                        Ok(v)
                    }
                    Err(e) => {
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                }
            }
            .await;
            match result {
                Err(e) if attempt < MAX_ATTEMPTS && retryable::<D>(&e) => {
                    tracing::debug!(attempt, error = ?e, "retrying a transaction");
                    backoff::<D>(attempt).await;
                }
                other => break other,
            }
        }
    }};
}

/// Runs `$body` on a pool connection without a transaction (reads, and
/// writes that only move positions forward); retries like [`in_tx`].
macro_rules! on_conn {
    ($store:expr, |$c:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result: StoreResult<_> = async {
                let mut conn = $store.pool.acquire().await.map_err(be)?;
                let $c: &mut Conn<D> = &mut *conn;
                $body.await
            }
            .await;
            match result {
                Err(e) if attempt < MAX_ATTEMPTS && retryable::<D>(&e) => {
                    tracing::debug!(attempt, error = ?e, "retrying a statement");
                    backoff::<D>(attempt).await;
                }
                other => break other,
            }
        }
    }};
}

impl<D: Dialect> SqlStore<D> {
    /// Wraps a pool whose schema is migrated.
    fn with_pool(pool: sqlx::Pool<D::DB>) -> SqlStore<D> {
        SqlStore {
            pool,
            _dialect: PhantomData,
        }
    }
}

#[async_trait]
impl<
        D: Shared
            + Moderation
            + Edits
            + Settings
            + SearchIndex
            + Jobs
            + Sched
            + Media
            + Push
            + Retention,
    > Store for SqlStore<D>
{
    async fn create_user(&self, user: UserRecord) -> StoreResult<()> {
        on_conn!(self, |c| D::create_user(c, &user))
    }

    async fn get_user(&self, user: &str) -> StoreResult<Option<UserRecord>> {
        on_conn!(self, |c| D::get_user(c, user))
    }

    async fn friend_request(&self, from: &str, to: &str, now: i64) -> StoreResult<FriendStatus> {
        in_tx!(self, |c| D::friend_request(c, from, to, now))
    }

    async fn friend_delete(&self, a: &str, b: &str) -> StoreResult<()> {
        in_tx!(self, |c| D::friend_delete(c, a, b))
    }

    async fn friends(&self, user: &str) -> StoreResult<FriendLists> {
        let mut out = on_conn!(self, |c| D::friends(c, user))?;
        // Byte order, whatever the database's collation.
        out.friends.sort_unstable();
        out.incoming.sort_unstable();
        out.outgoing.sort_unstable();
        Ok(out)
    }

    async fn append_messages(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<Appended>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        in_tx!(self, |c| async {
            let out = D::append_messages(c, &batch).await?;
            for (m, a) in batch.iter().zip(&out) {
                if let Appended::New(s) = a {
                    D::store_extras(c, m, s.seq).await?;
                    // 5.6: the message's jobs commit with it.
                    if !m.extras.jobs.is_empty() {
                        D::enqueue_jobs(c, &m.extras.jobs).await?;
                    }
                }
            }
            Ok(out)
        })
    }

    async fn append_unit(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<StoredMessage>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let joining = common::unit_joining(&batch)?;
        let out = in_tx!(self, |c| async {
            if D::count_users(c, &joining).await? != joining.len() as u64 {
                return Err(StoreError::NoSuchUser);
            }
            common::unit_outcome(D::append_messages(c, &batch).await?)
        })?;
        Ok(out)
    }

    async fn max_msg_id(&self, node: u16) -> StoreResult<u64> {
        on_conn!(self, |c| D::max_msg_id(c, node))
    }

    async fn max_seq(&self, conv: &str) -> StoreResult<u64> {
        on_conn!(self, |c| D::max_seq(c, conv))
    }

    async fn message(&self, conv: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
        if i64::try_from(seq).is_err() {
            return Ok(None);
        }
        on_conn!(self, |c| D::message(c, conv, seq, false))
    }

    async fn history(
        &self,
        user: &str,
        conv: &str,
        q: HistoryQuery,
    ) -> StoreResult<Vec<StoredMessage>> {
        on_conn!(self, |c| async {
            let mut upper = i64::MAX;
            if conv.starts_with("group:") {
                match D::read_position(c, user, conv, false).await? {
                    None => return Err(StoreError::NotMember),
                    Some((_, Some(until))) => upper = sql_seq(until),
                    Some(_) => {}
                }
            }
            let hi = q
                .before_seq
                .map_or(upper, |b| sql_seq(b.saturating_sub(1)).min(upper));
            let lo = q.after_seq.map_or(0, sql_seq);
            let newest = q.after_seq.is_none();
            let mut msgs = D::page(c, user, conv, lo, hi, q.limit, newest).await?;
            if newest {
                msgs.reverse();
            }
            Ok(msgs)
        })
    }

    async fn ack(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
        receipt_for: Option<&str>,
    ) -> StoreResult<Option<u64>> {
        let out = self
            .ack_many(vec![AckMark {
                user: user.to_owned(),
                conv: conv.to_owned(),
                seq,
                receipt_for: receipt_for.map(str::to_owned),
            }])
            .await?;
        Ok(out.into_iter().next().flatten())
    }

    async fn ack_many(&self, acks: Vec<AckMark>) -> StoreResult<Vec<Option<u64>>> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        // Acks without a receipt to compute (group conversations) only move
        // queue positions forward: statements of their own, outside a
        // transaction, so the rows are locked for one statement alone and a
        // send that moves one of them (the sender's read position) never
        // waits behind a whole flush.
        let (plain, receipts): (Vec<(usize, AckMark)>, Vec<(usize, AckMark)>) = acks
            .into_iter()
            .enumerate()
            .partition(|(_, a)| a.receipt_for.is_none());
        let mut out = vec![None; plain.len() + receipts.len()];
        if !plain.is_empty() {
            let marks = common::queue_marks(plain.into_iter().map(|(_, a)| a));
            on_conn!(self, |c| D::ack_queue_only(c, &marks))?;
        }
        if !receipts.is_empty() {
            let (index, marks): (Vec<usize>, Vec<AckMark>) = receipts.into_iter().unzip();
            let got = in_tx!(self, |c| D::ack_many(c, &marks))?;
            for (i, r) in index.into_iter().zip(got) {
                out[i] = r;
            }
        }
        Ok(out)
    }

    async fn mark_read(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
        now: i64,
    ) -> StoreResult<ReadOutcome> {
        in_tx!(self, |c| async {
            let max = D::max_seq(c, conv).await?;
            if seq == 0 || seq > max {
                return Err(common::no_such_seq());
            }
            let Some((read, until)) = D::read_position(c, user, conv, true).await? else {
                return Err(StoreError::NotMember);
            };
            let at = tern_core::rules::Positions {
                read,
                until,
                ..Default::default()
            };
            let Some(target) = tern_core::rules::read_to(&at, seq) else {
                return Ok(ReadOutcome {
                    advanced: false,
                    read_seq: read,
                });
            };
            D::set_read(c, user, conv, target, now).await?;
            Ok(ReadOutcome {
                advanced: true,
                read_seq: target,
            })
        })
    }

    async fn recall(
        &self,
        conv: &str,
        seq: u64,
        by: &str,
        window_ms: i64,
        now: i64,
    ) -> StoreResult<StoredMessage> {
        if i64::try_from(seq).is_err() {
            return Err(common::no_such_seq());
        }
        in_tx!(self, |c| async {
            // Locked until commit: the check holds for the write.
            let Some(mut m) = D::message(c, conv, seq, true).await? else {
                return Err(common::no_such_seq());
            };
            if tern_core::rules::may_recall(&m, by, window_ms, now)?
                == tern_core::rules::Recall::AlreadyDone
            {
                return Ok(m);
            }
            D::clear(c, conv, seq, now).await?;
            m.content = None;
            m.recalled = true;
            Ok(m)
        })
    }

    async fn delete_for_user(&self, user: &str, conv: &str, seqs: &[u64]) -> StoreResult<()> {
        let wanted = common::seqs_to_hide(seqs)?;
        if wanted.is_empty() {
            return Ok(());
        }
        in_tx!(self, |c| async {
            // Messages are never deleted, so the check holds for the write.
            if D::count_messages(c, conv, &wanted).await? != wanted.len() as u64 {
                return Err(common::no_such_seq());
            }
            D::hide(c, user, conv, &wanted).await
        })
    }

    async fn conversations(&self, user: &str, since: i64, limit: u32) -> StoreResult<ConvList> {
        on_conn!(self, |c| async {
            let all = D::conv_rows(c, user).await?;
            let (mut list, listed) = common::conv_list(all, since, limit);
            if !listed.is_empty() {
                let lasts = D::last_messages(c, user, &listed).await?;
                for (s, last) in list.convs.iter_mut().zip(lasts) {
                    s.last = last;
                }
            }
            Ok(list)
        })
    }

    async fn offline_fetch(&self, user: &str, cap: u32) -> StoreResult<OfflineBatch> {
        // Reads, then statements that only move queue positions forward,
        // to seqs read in one snapshot: no transaction needed.
        on_conn!(self, |c| async {
            let spans = D::queue_spans(c, user).await?;
            // Pages of each conversation's queue, newest first, merged so
            // that about `cap` messages are read in all (see
            // `OfflineMerge`); the pages asked for together are read
            // together.
            let mut merge = OfflineMerge::new(spans, cap);
            loop {
                let fetches = merge.next_fetches();
                if fetches.is_empty() {
                    break;
                }
                let asks: Vec<PageFetch> = fetches
                    .iter()
                    .map(|f| {
                        let span = merge.span(f.span);
                        PageFetch {
                            conv: span.conv.clone(),
                            lo: sql_seq(span.from),
                            below: sql_seq(f.below),
                            own_too: span.own_too,
                            limit: f.limit,
                        }
                    })
                    .collect();
                let pages = D::queue_pages(c, user, &asks).await?;
                for (f, mut page) in fetches.into_iter().zip(pages) {
                    page.sort_by_key(|m| std::cmp::Reverse(m.seq));
                    merge.feed(f, page);
                }
            }
            let (batch, moves) = merge.finish();
            if !moves.is_empty() {
                D::move_queues(c, user, &moves).await?;
            }
            Ok(batch)
        })
    }

    async fn get_group(&self, gid: &str) -> StoreResult<Option<GroupRecord>> {
        // Two reads: a change landing between them leaves a view newer
        // than the version it is later compared with, which only costs
        // another load.
        on_conn!(self, |c| async {
            let Some(mut rec) = D::get_group(c, gid).await? else {
                return Ok(None);
            };
            D::fill_roles(c, &mut rec).await?;
            Ok(Some(rec))
        })
    }

    async fn group_version(&self, gid: &str) -> StoreResult<Option<u64>> {
        on_conn!(self, |c| D::group_version(c, gid))
    }

    async fn read_positions(&self, conv: &str) -> StoreResult<Vec<(String, u64)>> {
        let Some(gid) = conv.strip_prefix("group:") else {
            return Ok(Vec::new());
        };
        on_conn!(self, |c| D::read_positions(c, gid, conv))
    }

    async fn health(&self) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(be)?;
        sqlx::Connection::ping(&mut *conn).await.map_err(be)
    }

    // ----- revoked session tokens -----

    async fn revoke_token(&self, jti: &str, expires_at: i64, now: i64) -> StoreResult<()> {
        in_tx!(self, |c| D::revoke_token(c, jti, expires_at, now))
    }

    async fn revoked_tokens(&self, now: i64) -> StoreResult<Vec<(String, i64)>> {
        on_conn!(self, |c| D::revoked_tokens(c, now))
    }

    async fn revoke_user_tokens(
        &self,
        user: &str,
        before: i64,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        in_tx!(self, |c| D::revoke_user_tokens(
            c, user, before, expires_at, now
        ))
    }

    async fn revoked_users(&self, now: i64) -> StoreResult<Vec<(String, i64, i64)>> {
        on_conn!(self, |c| D::revoked_users(c, now))
    }

    // ----- token signing keys -----

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        on_conn!(self, |c| D::signing_keys(c))
    }

    async fn add_signing_key(&self, key: &SigningKey) -> StoreResult<bool> {
        on_conn!(self, |c| D::add_signing_key(c, key))
    }

    // ----- per-user counts (limits) -----

    async fn group_count(&self, user: &str) -> StoreResult<u64> {
        on_conn!(self, |c| D::group_count(c, user))
    }

    async fn outgoing_request_count(&self, user: &str) -> StoreResult<u64> {
        on_conn!(self, |c| D::outgoing_request_count(c, user))
    }

    // ----- 5.4 and blocks -----

    async fn block(&self, blocker: &str, blocked: &str, now: i64) -> StoreResult<()> {
        on_conn!(self, |c| D::block(c, blocker, blocked, now))
    }

    async fn unblock(&self, blocker: &str, blocked: &str) -> StoreResult<()> {
        on_conn!(self, |c| D::unblock(c, blocker, blocked))
    }

    async fn blocks(&self, user: &str) -> StoreResult<Blocks> {
        on_conn!(self, |c| D::blocks(c, user))
    }

    async fn is_blocked(&self, blocker: &str, blocked: &str) -> StoreResult<bool> {
        on_conn!(self, |c| D::is_blocked(c, blocker, blocked))
    }

    // ----- 5.1 -----

    async fn edit(
        &self,
        conv: &str,
        seq: u64,
        by: &str,
        content: &str,
        window_ms: i64,
        now: i64,
    ) -> StoreResult<StoredMessage> {
        if i64::try_from(seq).is_err() {
            return Err(common::no_such_seq());
        }
        in_tx!(self, |c| async {
            // Locked until commit: the check holds for the write.
            let Some(mut m) = D::message(c, conv, seq, true).await? else {
                return Err(common::no_such_seq());
            };
            tern_core::rules::may_edit(&m, by, window_ms, now)?;
            // Never before the send, and after an earlier edit.
            let at = now.max(m.ts).max(m.edited_at.map_or(i64::MIN, |e| e + 1));
            D::set_content(c, conv, seq, content, at, now).await?;
            // The search index follows the new content in the same
            // transaction.
            search::reindex::<D>(c, conv, seq).await?;
            m.content = Some(content.to_owned());
            m.edited_at = Some(at);
            Ok(m)
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn react(
        &self,
        conv: &str,
        seq: u64,
        user: &str,
        emoji: &str,
        on: bool,
        max_emoji: usize,
        now: i64,
    ) -> StoreResult<bool> {
        if i64::try_from(seq).is_err() {
            return Err(common::no_such_seq());
        }
        in_tx!(self, |c| async {
            // The message's row lock orders the reactions to it.
            let Some(m) = D::message(c, conv, seq, true).await? else {
                return Err(common::no_such_seq());
            };
            if !on {
                return D::drop_reaction(c, conv, seq, emoji, user).await;
            }
            let (used, mine) = D::emojis(c, conv, seq, user, emoji).await?;
            tern_core::rules::may_react(&m, &used, emoji, max_emoji)?;
            if mine {
                return Ok(false);
            }
            D::add_reaction(c, conv, seq, emoji, user, now).await?;
            Ok(true)
        })
    }

    async fn reactions(
        &self,
        conv: &str,
        from: u64,
        to: u64,
        users_listed: u32,
    ) -> StoreResult<Vec<ReactionSummary>> {
        on_conn!(self, |c| D::reactions(c, conv, from, to, users_listed))
    }

    // ----- 5.3 profiles, conversation settings, sessions -----

    async fn profile(&self, user: &str) -> StoreResult<Option<Profile>> {
        on_conn!(self, |c| D::profile(c, user))
    }

    async fn set_profile(
        &self,
        user: &str,
        name: Option<&str>,
        avatar: Option<&str>,
    ) -> StoreResult<Option<Profile>> {
        in_tx!(self, |c| D::set_profile(c, user, name, avatar))
    }

    async fn set_conv_settings(
        &self,
        user: &str,
        conv: &str,
        muted_until: Option<i64>,
        pinned: Option<bool>,
    ) -> StoreResult<ConvSettings> {
        in_tx!(self, |c| D::set_conv_settings(
            c,
            user,
            conv,
            muted_until,
            pinned
        ))
    }

    async fn conv_settings(&self, user: &str) -> StoreResult<Vec<ConvSettings>> {
        let mut out = on_conn!(self, |c| D::conv_settings(c, user))?;
        // Byte order, whatever the database's collation.
        out.sort_unstable_by(|a, b| a.conv.cmp(&b.conv));
        Ok(out)
    }

    async fn touch_session(&self, s: &SessionRecord) -> StoreResult<()> {
        in_tx!(self, |c| D::touch_session(c, s))
    }

    async fn sessions(&self, user: &str, now: i64) -> StoreResult<Vec<SessionRecord>> {
        on_conn!(self, |c| D::sessions(c, user, now))
    }

    async fn delete_session(&self, session: &str) -> StoreResult<()> {
        on_conn!(self, |c| D::delete_session(c, session))
    }

    // ----- 5.6 durable jobs -----

    async fn enqueue_jobs(&self, jobs: &[NewJob]) -> StoreResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        in_tx!(self, |c| D::enqueue_jobs(c, jobs))
    }

    async fn claim_jobs(
        &self,
        kind: &str,
        now: i64,
        lease_ms: i64,
        max: u32,
    ) -> StoreResult<Vec<Job>> {
        in_tx!(self, |c| D::claim_jobs(c, kind, now, lease_ms, max))
    }

    async fn finish_job(&self, id: i64) -> StoreResult<()> {
        on_conn!(self, |c| D::finish_job(c, id))
    }

    async fn retry_job(
        &self,
        id: i64,
        due_at: i64,
        attempts: u32,
        last_error: &str,
    ) -> StoreResult<()> {
        on_conn!(self, |c| D::retry_job(c, id, due_at, attempts, last_error))
    }

    async fn count_jobs(&self, kind: &str) -> StoreResult<u64> {
        on_conn!(self, |c| D::count_jobs(c, kind))
    }

    async fn message_by_id(&self, msg_id: u64) -> StoreResult<Option<StoredMessage>> {
        on_conn!(self, |c| D::message_by_id(c, msg_id))
    }

    async fn put_jobs(&self, jobs: &[NewJob]) -> StoreResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        in_tx!(self, |c| D::put_jobs(c, jobs))
    }

    async fn complete_job(&self, id: i64, payload: &str, now: i64) -> StoreResult<bool> {
        in_tx!(self, |c| D::complete_job(c, id, payload, now))
    }

    // ----- 5.5 offline push registrations -----

    async fn push_register(&self, reg: &PushRegistration, max: u32) -> StoreResult<()> {
        in_tx!(self, |c| D::push_register(c, reg, max))
    }

    async fn push_unregister(&self, user: &str, device: &str) -> StoreResult<bool> {
        on_conn!(self, |c| D::push_unregister(c, user, device))
    }

    async fn push_unregister_session(&self, user: &str, session: Option<&str>) -> StoreResult<u64> {
        on_conn!(self, |c| D::push_unregister_session(c, user, session))
    }

    async fn push_registrations(&self, user: &str) -> StoreResult<Vec<PushRegistration>> {
        on_conn!(self, |c| D::push_registrations(c, user))
    }

    // ----- 5.2 search -----

    async fn index_pending(&self, max: u32) -> StoreResult<u32> {
        in_tx!(self, |c| search::index_pending::<D>(c, max))
    }

    async fn reindex_message(&self, conv: &str, seq: u64) -> StoreResult<()> {
        in_tx!(self, |c| search::reindex::<D>(c, conv, seq))
    }

    async fn search(
        &self,
        user: &str,
        q: &tern_core::search::SearchQuery,
    ) -> StoreResult<Vec<StoredMessage>> {
        on_conn!(self, |c| search::search::<D>(c, user, q))
    }

    // ----- 5.5 media -----

    async fn media_add(&self, m: &MediaRecord) -> StoreResult<()> {
        in_tx!(self, |c| D::media_add(c, m))
    }

    async fn media_get(&self, id: &str) -> StoreResult<Option<MediaRecord>> {
        on_conn!(self, |c| D::media_get(c, id))
    }

    async fn media_reference(&self, id: &str, owner: &str) -> StoreResult<Option<MediaRecord>> {
        in_tx!(self, |c| D::media_reference(c, id, owner))
    }

    async fn media_sweep(&self, created_before: i64, max: u32) -> StoreResult<Vec<MediaRecord>> {
        in_tx!(self, |c| D::media_sweep(c, created_before, max))
    }

    // ----- 5.6 retention and account erase -----

    async fn set_retention(&self, conv: &str, days: u32, now: i64) -> StoreResult<()> {
        in_tx!(self, |c| D::set_retention(c, conv, days, now))
    }

    async fn retention(&self, conv: &str) -> StoreResult<u32> {
        on_conn!(self, |c| D::retention(c, conv))
    }

    async fn retentions(&self, user: &str) -> StoreResult<Vec<(String, u32)>> {
        on_conn!(self, |c| D::retentions(c, user))
    }

    async fn expire_messages(&self, q: &ExpireRound) -> StoreResult<Expired> {
        let convs = on_conn!(self, |c| D::round_convs(c, q))?;
        let mut out = Expired {
            next: (convs.len() as u32 >= q.max_convs)
                .then(|| convs.last().map(|(conv, _)| conv.clone()))
                .flatten(),
            ..Expired::default()
        };
        let mut budget = q.max_msgs;
        let mut prev = q.after.clone();
        for (conv, days) in convs {
            let Some(cutoff) = q.cutoff(days) else {
                prev = conv;
                continue;
            };
            if budget == 0 {
                // Not looked at: the next round starts here.
                out.next = Some(prev);
                break;
            }
            let (n, media) = in_tx!(self, |c| D::expire_conv(c, &conv, cutoff, budget))?;
            out.messages += n;
            out.media += media;
            budget = budget.saturating_sub(n as u32);
            if budget == 0 {
                // There may be more: the next round looks at it again.
                out.next = Some(prev);
                break;
            }
            prev = conv;
        }
        Ok(out)
    }

    async fn erase_user(&self, user: &str) -> StoreResult<()> {
        in_tx!(self, |c| D::erase_user(c, user))
    }

    // ----- 5.6 scheduled messages -----

    async fn schedule(&self, s: &Scheduled, max: u32) -> StoreResult<()> {
        in_tx!(self, |c| D::schedule(c, s, max))
    }

    async fn scheduled(&self, user: &str) -> StoreResult<Vec<Scheduled>> {
        on_conn!(self, |c| D::scheduled(c, user))
    }

    async fn unschedule(&self, user: &str, id: &str) -> StoreResult<bool> {
        on_conn!(self, |c| D::unschedule(c, user, id))
    }

    async fn claim_scheduled(
        &self,
        now: i64,
        lease_until: i64,
        max: u32,
    ) -> StoreResult<Vec<Scheduled>> {
        on_conn!(self, |c| D::claim_scheduled(c, now, lease_until, max))
    }

    async fn next_scheduled(&self) -> StoreResult<Option<i64>> {
        on_conn!(self, |c| D::next_scheduled(c))
    }
}

/// Connection pool settings, the same for both servers.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Most connections the pool keeps open.
    pub max_connections: u32,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_connections: 16,
        }
    }
}
