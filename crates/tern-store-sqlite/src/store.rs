//! The `Store` trait on [`SqliteStore`]: each method sends one operation
//! of `ops` to the writer thread or to the read pool.

use crate::{ops, revocations, signing_keys, SqliteStore};
use async_trait::async_trait;
use tern_core::store::{
    AckMark, Appended, Blocks, ConvList, ConvSettings, ExpireRound, Expired, FriendLists,
    FriendStatus, GroupRecord, HistoryQuery, Job, MediaRecord, NewJob, NewMessage, OfflineBatch,
    Profile, PushRegistration, ReactionSummary, ReadOutcome, Scheduled, SessionRecord, SigningKey,
    Store, StoreError, StoreResult, StoredMessage, UserRecord,
};

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: UserRecord) -> StoreResult<()> {
        self.write(move |c| ops::create_user(c, &user)).await
    }

    async fn get_user(&self, user: &str) -> StoreResult<Option<UserRecord>> {
        let user = user.to_owned();
        self.read(move |c| ops::get_user(c, &user)).await
    }

    async fn friend_request(&self, from: &str, to: &str, now: i64) -> StoreResult<FriendStatus> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.write(move |c| ops::friend_request(c, &from, &to, now))
            .await
    }

    async fn friend_delete(&self, a: &str, b: &str) -> StoreResult<()> {
        let (a, b) = (a.to_owned(), b.to_owned());
        self.write(move |c| ops::friend_delete(c, &a, &b)).await
    }

    async fn friends(&self, user: &str) -> StoreResult<FriendLists> {
        let user = user.to_owned();
        self.read(move |c| ops::friends(c, &user)).await
    }

    async fn append_messages(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<Appended>> {
        self.write_unguarded(move |c| ops::append_messages(c, &batch))
            .await
    }

    async fn append_unit(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<StoredMessage>> {
        // Checked first (reads only), then written without a savepoint: a
        // refused unit writes nothing, and a large unit does not pay for a
        // growing statement journal.
        let batch = std::sync::Arc::new(batch);
        let b = batch.clone();
        self.write_checked(
            move |c| ops::check_unit(c, &b),
            move |c| ops::append_unit(c, &batch),
        )
        .await
    }

    async fn max_msg_id(&self, node: u16) -> StoreResult<u64> {
        self.read(move |c| ops::max_msg_id(c, node)).await
    }

    async fn max_seq(&self, conv: &str) -> StoreResult<u64> {
        let conv = conv.to_owned();
        self.read(move |c| ops::max_seq(c, &conv)).await
    }

    async fn message(&self, conv: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
        let conv = conv.to_owned();
        self.read(move |c| ops::message(c, &conv, seq)).await
    }

    async fn history(
        &self,
        user: &str,
        conv: &str,
        q: HistoryQuery,
    ) -> StoreResult<Vec<StoredMessage>> {
        let (user, conv) = (user.to_owned(), conv.to_owned());
        self.read(move |c| ops::history(c, &user, &conv, q)).await
    }

    async fn ack_many(&self, acks: Vec<AckMark>) -> StoreResult<Vec<Option<u64>>> {
        self.write_unguarded(move |c| {
            acks.iter()
                .map(|a| ops::ack(c, &a.user, &a.conv, a.seq, a.receipt_for.as_deref()))
                .collect()
        })
        .await
    }

    async fn ack(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
        receipt_for: Option<&str>,
    ) -> StoreResult<Option<u64>> {
        let (user, conv, rf) = (
            user.to_owned(),
            conv.to_owned(),
            receipt_for.map(str::to_owned),
        );
        self.write(move |c| ops::ack(c, &user, &conv, seq, rf.as_deref()))
            .await
    }

    async fn mark_read(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
        now: i64,
    ) -> StoreResult<ReadOutcome> {
        let (user, conv) = (user.to_owned(), conv.to_owned());
        self.write(move |c| ops::mark_read(c, &user, &conv, seq, now))
            .await
    }

    async fn recall(
        &self,
        conv: &str,
        seq: u64,
        by: &str,
        window_ms: i64,
        now: i64,
    ) -> StoreResult<StoredMessage> {
        let (conv, by) = (conv.to_owned(), by.to_owned());
        self.write(move |c| ops::recall(c, &conv, seq, &by, window_ms, now))
            .await
    }

    async fn delete_for_user(&self, user: &str, conv: &str, seqs: &[u64]) -> StoreResult<()> {
        let (user, conv, seqs) = (user.to_owned(), conv.to_owned(), seqs.to_vec());
        self.write(move |c| ops::delete_for_user(c, &user, &conv, &seqs))
            .await
    }

    async fn conversations(&self, user: &str, since: i64, limit: u32) -> StoreResult<ConvList> {
        let user = user.to_owned();
        self.read(move |c| ops::conversations(c, &user, since, limit))
            .await
    }

    async fn offline_fetch(&self, user: &str, cap: u32) -> StoreResult<OfflineBatch> {
        // Read on a read connection (WAL: beside the writer, which then
        // only moves the queue positions, when there are any to move).
        let u = user.to_owned();
        let (batch, moves) = self.read(move |c| ops::offline_read(c, &u, cap)).await?;
        if !moves.is_empty() {
            let u = user.to_owned();
            self.write(move |c| ops::offline_moves(c, &u, &moves))
                .await?;
        }
        Ok(batch)
    }

    async fn get_group(&self, gid: &str) -> StoreResult<Option<GroupRecord>> {
        let gid = gid.to_owned();
        self.read(move |c| ops::get_group(c, &gid)).await
    }

    async fn group_version(&self, gid: &str) -> StoreResult<Option<u64>> {
        let gid = gid.to_owned();
        self.read(move |c| ops::group_version(c, &gid)).await
    }

    async fn read_positions(&self, conv: &str) -> StoreResult<Vec<(String, u64)>> {
        let conv = conv.to_owned();
        self.read(move |c| ops::read_positions(c, &conv)).await
    }

    async fn health(&self) -> StoreResult<()> {
        self.read(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(StoreError::backend)
        })
        .await?;
        // The writer answers too (a wedged writer is not healthy).
        self.write(|_| Ok(())).await
    }

    // ----- revoked session tokens -----

    async fn revoke_token(&self, jti: &str, expires_at: i64, now: i64) -> StoreResult<()> {
        let jti = jti.to_owned();
        self.write(move |c| revocations::revoke(c, &jti, expires_at, now))
            .await
    }

    async fn revoked_tokens(&self, now: i64) -> StoreResult<Vec<(String, i64)>> {
        self.read(move |c| revocations::list(c, now)).await
    }

    async fn revoke_user_tokens(
        &self,
        user: &str,
        before: i64,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        let user = user.to_owned();
        self.write(move |c| revocations::revoke_user(c, &user, before, expires_at, now))
            .await
    }

    async fn revoked_users(&self, now: i64) -> StoreResult<Vec<(String, i64, i64)>> {
        self.read(move |c| revocations::list_users(c, now)).await
    }

    // ----- token signing keys -----

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        self.read(signing_keys::list).await
    }

    async fn add_signing_key(&self, key: &SigningKey) -> StoreResult<bool> {
        let key = key.clone();
        self.write(move |c| signing_keys::add(c, &key)).await
    }

    // ----- per-user counts (limits) -----

    async fn group_count(&self, user: &str) -> StoreResult<u64> {
        let user = user.to_owned();
        self.read(move |c| ops::group_count(c, &user)).await
    }

    async fn outgoing_request_count(&self, user: &str) -> StoreResult<u64> {
        let user = user.to_owned();
        self.read(move |c| ops::outgoing_request_count(c, &user))
            .await
    }

    // ----- 5.4 and blocks -----

    async fn block(&self, blocker: &str, blocked: &str, now: i64) -> StoreResult<()> {
        let (a, b) = (blocker.to_owned(), blocked.to_owned());
        self.write(move |c| ops::block(c, &a, &b, now)).await
    }

    async fn unblock(&self, blocker: &str, blocked: &str) -> StoreResult<()> {
        let (a, b) = (blocker.to_owned(), blocked.to_owned());
        self.write(move |c| ops::unblock(c, &a, &b)).await
    }

    async fn blocks(&self, user: &str) -> StoreResult<Blocks> {
        let user = user.to_owned();
        self.read(move |c| ops::blocks(c, &user)).await
    }

    async fn is_blocked(&self, blocker: &str, blocked: &str) -> StoreResult<bool> {
        let (a, b) = (blocker.to_owned(), blocked.to_owned());
        self.read(move |c| ops::is_blocked(c, &a, &b)).await
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
        let (conv, by, content) = (conv.to_owned(), by.to_owned(), content.to_owned());
        self.write(move |c| ops::edit(c, &conv, seq, &by, &content, window_ms, now))
            .await
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
        let (conv, user, emoji) = (conv.to_owned(), user.to_owned(), emoji.to_owned());
        self.write(move |c| ops::react(c, &conv, seq, &user, &emoji, on, max_emoji, now))
            .await
    }

    async fn reactions(
        &self,
        conv: &str,
        from: u64,
        to: u64,
        users_listed: u32,
    ) -> StoreResult<Vec<ReactionSummary>> {
        let conv = conv.to_owned();
        self.read(move |c| ops::reactions(c, &conv, from, to, users_listed))
            .await
    }

    // ----- 5.3 profiles, conversation settings, sessions -----

    async fn profile(&self, user: &str) -> StoreResult<Option<Profile>> {
        let user = user.to_owned();
        self.read(move |c| ops::profile(c, &user)).await
    }

    async fn set_profile(
        &self,
        user: &str,
        name: Option<&str>,
        avatar: Option<&str>,
    ) -> StoreResult<Option<Profile>> {
        let user = user.to_owned();
        let name = name.map(str::to_owned);
        let avatar = avatar.map(str::to_owned);
        self.write(move |c| ops::set_profile(c, &user, name.as_deref(), avatar.as_deref()))
            .await
    }

    async fn set_conv_settings(
        &self,
        user: &str,
        conv: &str,
        muted_until: Option<i64>,
        pinned: Option<bool>,
    ) -> StoreResult<ConvSettings> {
        let (user, conv) = (user.to_owned(), conv.to_owned());
        self.write(move |c| ops::set_conv_settings(c, &user, &conv, muted_until, pinned))
            .await
    }

    async fn conv_settings(&self, user: &str) -> StoreResult<Vec<ConvSettings>> {
        let user = user.to_owned();
        self.read(move |c| ops::conv_settings(c, &user)).await
    }

    async fn touch_session(&self, s: &SessionRecord) -> StoreResult<()> {
        let s = s.clone();
        self.write(move |c| ops::touch_session(c, &s)).await
    }

    async fn sessions(&self, user: &str, now: i64) -> StoreResult<Vec<SessionRecord>> {
        let user = user.to_owned();
        self.read(move |c| ops::sessions(c, &user, now)).await
    }

    async fn delete_session(&self, session: &str) -> StoreResult<()> {
        let session = session.to_owned();
        self.write(move |c| ops::delete_session(c, &session)).await
    }

    // ----- 5.6 durable jobs -----

    async fn enqueue_jobs(&self, jobs: &[NewJob]) -> StoreResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let jobs = jobs.to_vec();
        self.write(move |c| ops::enqueue_jobs(c, &jobs)).await
    }

    async fn claim_jobs(
        &self,
        kind: &str,
        now: i64,
        lease_ms: i64,
        max: u32,
    ) -> StoreResult<Vec<Job>> {
        let kind = kind.to_owned();
        self.write(move |c| ops::claim_jobs(c, &kind, now, lease_ms, max))
            .await
    }

    async fn finish_job(&self, id: i64) -> StoreResult<()> {
        self.write(move |c| ops::finish_job(c, id)).await
    }

    async fn retry_job(
        &self,
        id: i64,
        due_at: i64,
        attempts: u32,
        last_error: &str,
    ) -> StoreResult<()> {
        let last_error = last_error.to_owned();
        self.write(move |c| ops::retry_job(c, id, due_at, attempts, &last_error))
            .await
    }

    async fn count_jobs(&self, kind: &str) -> StoreResult<u64> {
        let kind = kind.to_owned();
        self.read(move |c| ops::count_jobs(c, &kind)).await
    }

    async fn message_by_id(&self, msg_id: u64) -> StoreResult<Option<StoredMessage>> {
        self.read(move |c| ops::message_by_id(c, msg_id)).await
    }

    async fn put_jobs(&self, jobs: &[NewJob]) -> StoreResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let jobs = jobs.to_vec();
        self.write(move |c| ops::put_jobs(c, &jobs)).await
    }

    async fn complete_job(&self, id: i64, payload: &str, now: i64) -> StoreResult<bool> {
        let payload = payload.to_owned();
        self.write(move |c| ops::complete_job(c, id, &payload, now))
            .await
    }

    // ----- 5.5 offline push registrations -----

    async fn push_register(&self, reg: &PushRegistration, max: u32) -> StoreResult<()> {
        let reg = reg.clone();
        self.write(move |c| ops::push_register(c, &reg, max)).await
    }

    async fn push_unregister(&self, user: &str, device: &str) -> StoreResult<bool> {
        let (user, device) = (user.to_owned(), device.to_owned());
        self.write(move |c| ops::push_unregister(c, &user, &device))
            .await
    }

    async fn push_unregister_session(&self, user: &str, session: Option<&str>) -> StoreResult<u64> {
        let (user, session) = (user.to_owned(), session.map(str::to_owned));
        self.write(move |c| ops::push_unregister_session(c, &user, session.as_deref()))
            .await
    }

    async fn push_registrations(&self, user: &str) -> StoreResult<Vec<PushRegistration>> {
        let user = user.to_owned();
        self.read(move |c| ops::push_registrations(c, &user)).await
    }

    // ----- 5.2 search -----

    async fn index_pending(&self, max: u32) -> StoreResult<u32> {
        self.write(move |c| ops::index_pending(c, max)).await
    }

    async fn reindex_message(&self, conv: &str, seq: u64) -> StoreResult<()> {
        let conv = conv.to_owned();
        self.write(move |c| ops::reindex_message(c, &conv, seq))
            .await
    }

    async fn search(
        &self,
        user: &str,
        q: &tern_core::search::SearchQuery,
    ) -> StoreResult<Vec<StoredMessage>> {
        let (user, q) = (user.to_owned(), q.clone());
        self.read(move |c| ops::search(c, &user, &q)).await
    }

    // ----- 5.5 media -----

    async fn media_add(&self, m: &MediaRecord) -> StoreResult<()> {
        let m = m.clone();
        self.write(move |c| ops::media_add(c, &m)).await
    }

    async fn media_get(&self, id: &str) -> StoreResult<Option<MediaRecord>> {
        let id = id.to_owned();
        self.read(move |c| ops::media_get(c, &id)).await
    }

    async fn media_reference(&self, id: &str, owner: &str) -> StoreResult<Option<MediaRecord>> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.write(move |c| ops::media_reference(c, &id, &owner))
            .await
    }

    async fn media_sweep(&self, created_before: i64, max: u32) -> StoreResult<Vec<MediaRecord>> {
        self.write(move |c| ops::media_sweep(c, created_before, max))
            .await
    }

    // ----- 5.6 retention and account erase -----

    async fn set_retention(&self, conv: &str, days: u32, now: i64) -> StoreResult<()> {
        let conv = conv.to_owned();
        self.write(move |c| ops::set_retention(c, &conv, days, now))
            .await
    }

    async fn retention(&self, conv: &str) -> StoreResult<u32> {
        let conv = conv.to_owned();
        self.read(move |c| ops::retention(c, &conv)).await
    }

    async fn retentions(&self, user: &str) -> StoreResult<Vec<(String, u32)>> {
        let user = user.to_owned();
        self.read(move |c| ops::retentions(c, &user)).await
    }

    async fn expire_messages(&self, q: &ExpireRound) -> StoreResult<Expired> {
        let q = q.clone();
        self.write(move |c| ops::expire_messages(c, &q)).await
    }

    async fn erase_user(&self, user: &str) -> StoreResult<()> {
        let user = user.to_owned();
        self.write(move |c| ops::erase_user(c, &user)).await
    }

    // ----- 5.6 scheduled messages -----

    async fn schedule(&self, s: &Scheduled, max: u32) -> StoreResult<()> {
        let s = s.clone();
        self.write(move |c| ops::schedule(c, &s, max)).await
    }

    async fn scheduled(&self, user: &str) -> StoreResult<Vec<Scheduled>> {
        let user = user.to_owned();
        self.read(move |c| ops::scheduled(c, &user)).await
    }

    async fn unschedule(&self, user: &str, id: &str) -> StoreResult<bool> {
        let (user, id) = (user.to_owned(), id.to_owned());
        self.write(move |c| ops::unschedule(c, &user, &id)).await
    }

    async fn claim_scheduled(
        &self,
        now: i64,
        lease_until: i64,
        max: u32,
    ) -> StoreResult<Vec<Scheduled>> {
        self.write(move |c| ops::claim_scheduled(c, now, lease_until, max))
            .await
    }

    async fn next_scheduled(&self) -> StoreResult<Option<i64>> {
        self.read(ops::next_scheduled).await
    }
}
