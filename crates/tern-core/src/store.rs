//! Durable storage: the one trait every backend (SQLite embedded,
//! PostgreSQL/MySQL in cluster mode) implements, and its plain data types.
//!
//! Rules every implementation follows (the conformance tests in
//! `tern-store-sqlite/tests` check them):
//! - `append_messages` runs the whole batch in one transaction (group
//!   commit: one fsync for the batch) and returns one outcome per input, in
//!   input order. Within a conversation, seqs are allocated 1, 2, 3 ... with
//!   no gaps, in input order. A message whose `(from, client_msg_id)` was
//!   stored before (or earlier in the same batch) is not stored again: its
//!   outcome is `Appended::Duplicate` with the original message.
//! - `append_unit` stores one group membership operation (creation with
//!   its first members, or members added) in one transaction, all or
//!   nothing.
//! - An `Ok` result means the data is durable (fsync'd) before it returns.
//! - Times are milliseconds since the Unix epoch, given by the caller.
//!
//! One concern, whatever its length: the storage contract (the trait, its
//! rules and the types it speaks); no implementation lives here.

use async_trait::async_trait;

/// Errors of a storage backend. `Invalid`, `NotFound`, `Conflict` and
/// `Forbidden` are answers about the request; `Backend` is a failure of the
/// store itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    Conflict,
    #[error("invalid: {0}")]
    Invalid(&'static str),
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The user is not (and never was) in the conversation, or no longer
    /// is in the group.
    #[error("not a member")]
    NotMember,
    #[error("no such group")]
    NoSuchGroup,
    /// A user named in a membership change does not exist.
    #[error("no such user")]
    NoSuchUser,
    /// The sender is muted in the group (a member mute, or `muted_all`).
    #[error("muted")]
    Muted,
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Backend(Box::new(e))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub user: String,
    pub name: String,
    /// PHC string (argon2).
    pub password_hash: String,
    pub created_at: i64,
    /// 5.6: a bot account: it cannot log in with a password (its tokens
    /// are minted by `tern token`).
    pub bot: bool,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("user", &self.user)
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("bot", &self.bot)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendStatus {
    /// `from` asked `to`; `to` has not asked back.
    Requested,
    /// Both sides asked: they are friends.
    Friends,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FriendLists {
    /// Sorted by user id.
    pub friends: Vec<String>,
    /// Users who asked this user, not yet answered. Sorted.
    pub incoming: Vec<String>,
    /// Users this user asked, not yet answered. Sorted.
    pub outgoing: Vec<String>,
}

/// One cumulative ack, for [`Store::ack_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckMark {
    pub user: String,
    pub conv: String,
    pub seq: u64,
    pub receipt_for: Option<String>,
}

/// A message to store. The store allocates `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub msg_id: u64,
    /// Canonical conversation id (`dm:a:b`, `group:g`).
    pub conv: String,
    pub from: String,
    /// The peer, for 1:1 messages.
    pub to: Option<String>,
    /// The group id, for group messages.
    pub group: Option<String>,
    pub kind: String,
    /// The content as JSON text (a JSON string for `text`).
    pub content: String,
    pub ts: i64,
    /// Deduplication key, per sender. `None` for server-written messages.
    pub client_msg_id: Option<String>,
    /// Users whose conversation list gets (or keeps) this conversation. The
    /// sender's read position moves to the new message's seq.
    pub participants: Vec<String>,
    /// Group messages: when the group has at most this many members, the
    /// message enters every member's offline queue but the sender's (write
    /// diffusion); above it, nobody's (read diffusion). Ignored for 1:1
    /// messages, which always enter the recipient's queue.
    pub inbox_members_up_to: usize,
    /// Group messages: the membership change this message records, applied
    /// in the same transaction.
    pub change: Option<MemberChange>,
    /// 5.1: see [`Extras`].
    pub extras: Extras,
}

/// 5.1: what a `send` may add to a message, checked by the core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// The seq of the message this one answers (an existing seq of the
    /// same conversation).
    pub reply_to: Option<u64>,
    /// Group messages: the members named, or [`MENTION_ALL`] alone. The
    /// store moves the mention position of each member named (of every
    /// current member but the sender, for `@all`) to the new seq.
    pub mentions: Vec<String>,
    /// 5.6: durable jobs written in the message's own transaction, and
    /// only when the message is stored new (not for a duplicate or a
    /// refusal); empty on the hot path unless a webhook wants
    /// `message.created`.
    pub jobs: Vec<NewJob>,
}

/// The mention of every member of a group.
pub const MENTION_ALL: &str = "@all";

/// Mentions as one stored column: space-separated (user ids hold no
/// spaces); `None` when there are none.
pub fn mentions_text(mentions: &[String]) -> Option<String> {
    (!mentions.is_empty()).then(|| mentions.join(" "))
}

/// The mentions of a stored column.
pub fn mentions_of(text: Option<&str>) -> Vec<String> {
    text.map(|t| {
        t.split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// 5.1: one emoji of one message, as [`Store::reactions`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionSummary {
    pub seq: u64,
    pub emoji: String,
    /// Users who reacted with it.
    pub count: u64,
    /// The first of them (by time, then user id), at most the number
    /// asked for.
    pub users: Vec<String>,
}

impl NewMessage {
    /// The message as stored with `seq`.
    pub fn stored(&self, seq: u64) -> StoredMessage {
        StoredMessage {
            msg_id: self.msg_id,
            conv: self.conv.clone(),
            seq,
            from: self.from.clone(),
            to: self.to.clone(),
            group: self.group.clone(),
            kind: self.kind.clone(),
            content: Some(self.content.clone()),
            ts: self.ts,
            client_msg_id: self.client_msg_id.clone(),
            recalled: false,
            reply_to: self.extras.reply_to,
            mentions: self.extras.mentions.clone(),
            edited_at: None,
            reactions: Vec::new(),
        }
    }
}

/// A membership change, written together with its `system` message so that
/// the member list and the conversation never disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Creates the group (the message's `group`) with the sender as owner
    /// and first member.
    Create { name: String },
    /// Adds a member before the message's inbox entries are written (the new
    /// member gets this message). Re-adding a former member restores them.
    Join(String),
    /// Removes a member after the message's inbox entries are written (the
    /// member gets this message and nothing after it); the member's view of
    /// the conversation ends at this seq. If the owner leaves, the
    /// longest-standing remaining member becomes owner.
    Leave(String),
    // 5.4 and blocks: changes of roles and settings, each written with its
    // `system` message (so each moves the group's version). Who may make
    // them is `crate::roles`'s rule, which the store applies too.
    /// The owner makes `user` an admin (`on`) or a plain member again.
    Admin { user: String, on: bool },
    /// `user` may not send until `until` (ms); `None` lifts the mute.
    Mute { user: String, until: Option<i64> },
    /// The group's new name.
    Rename(String),
    /// The group's new announcement (empty: none).
    Announce(String),
    /// Only the owner and admins may send while on.
    MutedAll(bool),
    /// The owner dissolves the group: readable, never written again.
    Dissolve,
}

impl MemberChange {
    /// The member a change of roles names (admin, mute), if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            MemberChange::Admin { user, .. } | MemberChange::Mute { user, .. } => Some(user),
            MemberChange::Leave(user) => Some(user),
            _ => None,
        }
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub msg_id: u64,
    pub conv: String,
    pub seq: u64,
    pub from: String,
    pub to: Option<String>,
    pub group: Option<String>,
    pub kind: String,
    /// `None` once recalled.
    pub content: Option<String>,
    pub ts: i64,
    pub client_msg_id: Option<String>,
    pub recalled: bool,
    /// 5.1: the seq this message answers.
    pub reply_to: Option<u64>,
    /// 5.1: the members it names, or [`MENTION_ALL`].
    pub mentions: Vec<String>,
    /// 5.1: when the content was last edited.
    pub edited_at: Option<i64>,
    /// 5.1: filled by the core for history pages (stores leave it empty).
    pub reactions: Vec<ReactionSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Stored now.
    New(StoredMessage),
    /// `(from, client_msg_id)` was stored before: the original message.
    Duplicate(StoredMessage),
    /// Not stored.
    Refused(Refusal),
}

/// Why a group message was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The group does not exist.
    NoSuchGroup,
    /// A message (other than a membership change) from someone not in the
    /// group.
    NotMember,
    // 5.4 and blocks
    /// The sender is muted (their own mute, or `muted_all`).
    Muted,
    /// The group is dissolved: nothing more is written to it.
    Dissolved,
    /// The sender's role does not allow the change (`crate::roles`).
    Forbidden,
}

impl From<Refusal> for StoreError {
    fn from(r: Refusal) -> StoreError {
        match r {
            Refusal::NoSuchGroup => StoreError::NoSuchGroup,
            Refusal::NotMember => StoreError::NotMember,
            Refusal::Muted => StoreError::Muted,
            Refusal::Dissolved => StoreError::Forbidden("the group is dissolved"),
            Refusal::Forbidden => StoreError::Forbidden("the group's roles do not allow this"),
        }
    }
}

impl Appended {
    /// The stored (or original) message; `None` when refused.
    pub fn message(&self) -> Option<&StoredMessage> {
        match self {
            Appended::New(m) | Appended::Duplicate(m) => Some(m),
            Appended::Refused(_) => None,
        }
    }
}

/// A group and its members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupRecord {
    pub gid: String,
    pub name: String,
    pub owner: String,
    /// Current members, longest-standing first.
    pub members: Vec<String>,
    pub created_at: i64,
    // 5.4 and blocks
    /// Members made admin, longest-standing first (the owner may be listed
    /// when it was an admin before a hand-over; `crate::roles` ranks the
    /// owner first).
    pub admins: Vec<String>,
    /// Members' mutes: `(user, until ms)`, longest-standing first; a mute
    /// that has ended may still be listed (`crate::roles` compares times).
    pub mutes: Vec<(String, i64)>,
    /// Empty when none.
    pub announcement: String,
    pub muted_all: bool,
    pub dissolved: bool,
}

/// Bounds of a history page. Both bounds exclusive. With `after_seq`, the
/// oldest `limit` messages above it; otherwise the newest `limit` below
/// `before_seq` (or of all). Always returned in ascending seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    pub before_seq: Option<u64>,
    pub after_seq: Option<u64>,
    pub limit: u32,
}

/// One entry of a user's conversation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvSummary {
    pub conv: String,
    /// The other party of a 1:1 conversation.
    pub peer: Option<String>,
    pub group: Option<String>,
    /// The highest seq this user can see.
    pub max_seq: u64,
    pub read_seq: u64,
    /// `max_seq - read_seq` (never negative).
    pub unread: u64,
    /// The newest message this user can see and has not deleted.
    pub last: Option<StoredMessage>,
    /// Time of the last message or recall, or of this user's last change of
    /// read position, whichever is newer.
    pub updated_at: i64,
    /// The other party's delivered and read positions in a 1:1
    /// conversation (`(0, 0)` in groups and notes to oneself): the
    /// receipts a new device shows without having been pushed them.
    pub peer_delivered_seq: u64,
    pub peer_read_seq: u64,
    /// 5.1: the newest seq that mentions this user (0: none); the user is
    /// still mentioned while it is above `read_seq`.
    pub mention_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvList {
    /// Newest `updated_at` first.
    pub convs: Vec<ConvSummary>,
    /// Sum of `unread` over all of the user's conversations, whatever the
    /// filter.
    pub total_unread: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Whether the read position moved forward.
    pub advanced: bool,
    /// The read position after the call.
    pub read_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineBatch {
    /// Queued messages in queue order (within a conversation, seq order).
    pub msgs: Vec<StoredMessage>,
    /// Whether the cap dropped older queued messages.
    pub truncated: bool,
}

/// A key that signs session tokens (HS256), named in each token's header
/// by its `kid`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    pub secret: Vec<u8>,
    /// When the key was added (ms); the newest key signs.
    pub created_at: i64,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never printed.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// The `kid` of the first key a store holds. Every node that finds no key
/// offers its first key under this one name, so of nodes starting at once
/// against an empty store exactly one key is stored.
pub const FIRST_KID: &str = "1";

/// Durable storage. Held as `Arc<dyn Store>`; no driver type crosses it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ----- users and friends -----

    /// `Conflict` if the user exists.
    async fn create_user(&self, user: UserRecord) -> StoreResult<()>;
    async fn get_user(&self, user: &str) -> StoreResult<Option<UserRecord>>;
    /// `from` asks `to` to be friends (or accepts `to`'s request). Both
    /// users exist (the caller checked). Asking again is harmless.
    async fn friend_request(&self, from: &str, to: &str, now: i64) -> StoreResult<FriendStatus>;
    /// Ends a friendship and drops requests either way. Idempotent.
    async fn friend_delete(&self, a: &str, b: &str) -> StoreResult<()>;
    async fn friends(&self, user: &str) -> StoreResult<FriendLists>;

    // ----- messages -----

    /// Stores a batch in one transaction; see the module docs. The outer
    /// error means the whole batch failed and nothing was stored.
    async fn append_messages(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<Appended>>;

    /// The highest stored `msg_id` whose node bits (see [`crate::ids`])
    /// are `node`; 0 when there is none. A node starts its id generator
    /// from it, so ids stay unique and increasing across restarts.
    async fn max_msg_id(&self, node: u16) -> StoreResult<u64>;

    /// Stores one membership operation of one group as a unit: a group's
    /// creation (a `Create` message, then one `Join` message per first
    /// member) or members added (`Join` messages). Every message carries a
    /// `change` and no `client_msg_id`; they are stored in order, as
    /// [`Store::append_messages`] would, but all in one transaction and all
    /// or nothing: `Err` and nothing stored when the group exists
    /// (`Conflict`, for `Create`), when it does not (`NoSuchGroup`, for
    /// `Join` alone), or when a user to add does not exist (`NoSuchUser`).
    async fn append_unit(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<StoredMessage>>;

    /// Highest seq of a conversation (0 when empty).
    async fn max_seq(&self, conv: &str) -> StoreResult<u64>;

    /// Message `seq` of `conv` as stored, whoever deleted it from their own
    /// history; `None` if there is none.
    async fn message(&self, conv: &str, seq: u64) -> StoreResult<Option<StoredMessage>>;

    /// History page for `user`, leaving out messages the user deleted. For a
    /// group conversation: `NotMember` if the user never was in it, and a
    /// former member sees messages up to their removal only.
    async fn history(
        &self,
        user: &str,
        conv: &str,
        q: HistoryQuery,
    ) -> StoreResult<Vec<StoredMessage>>;

    /// Device of `user` holds `conv` up to `seq`: the user's messages of
    /// `conv` with seq <= `seq` leave the offline queue, and the user's
    /// delivered position moves forward (to at most the conversation's max
    /// seq). When `receipt_for` names a user and the delivered position
    /// moved past at least one message sent by that user, returns the new
    /// delivered seq. The delivered position only feeds those receipts:
    /// without `receipt_for` it is left alone and only the queue moves.
    async fn ack(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
        receipt_for: Option<&str>,
    ) -> StoreResult<Option<u64>>;

    /// Many [`Store::ack`]s at once, answered in order; a backend stores
    /// them together (one transaction) where it can.
    async fn ack_many(&self, acks: Vec<AckMark>) -> StoreResult<Vec<Option<u64>>> {
        let mut out = Vec::with_capacity(acks.len());
        for a in acks {
            out.push(
                self.ack(&a.user, &a.conv, a.seq, a.receipt_for.as_deref())
                    .await?,
            );
        }
        Ok(out)
    }

    /// Moves `user`'s read position in `conv` to `seq` (never backwards).
    /// `Invalid` when no message `seq` exists in `conv`.
    async fn mark_read(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
        now: i64,
    ) -> StoreResult<ReadOutcome>;

    /// Recalls message `seq` of `conv`: `Invalid` if it does not exist,
    /// `Forbidden` unless `by` sent it and `now - ts <= window_ms`. Clears
    /// the content, marks it recalled, and counts as activity of the
    /// conversation at `now`. Recalling twice is fine. Returns the message.
    async fn recall(
        &self,
        conv: &str,
        seq: u64,
        by: &str,
        window_ms: i64,
        now: i64,
    ) -> StoreResult<StoredMessage>;

    /// Hides messages from `user`'s own history. `Invalid` (and nothing
    /// hidden) if any seq does not exist in `conv`.
    async fn delete_for_user(&self, user: &str, conv: &str, seqs: &[u64]) -> StoreResult<()>;

    /// The user's conversations with `updated_at > since`, newest first, at
    /// most `limit`, plus the exact total unread.
    async fn conversations(&self, user: &str, since: i64, limit: u32) -> StoreResult<ConvList>;

    /// The user's offline queue: in each of the user's conversations, the
    /// messages above the user's acknowledged position that entered queues
    /// (1:1 messages, write-diffused group messages) and that others sent
    /// (in `dm:x:x`, x's own too), up to what the user can see. Returns the
    /// newest `cap` of them in queue order: arrival (`msg_id`) order, seq
    /// order within a conversation. When more were queued, the older ones
    /// leave the queue for good and `truncated` is set. The rest stay
    /// queued until acknowledged.
    async fn offline_fetch(&self, user: &str, cap: u32) -> StoreResult<OfflineBatch>;

    // ----- groups -----

    /// A group with its current members, `None` if it never existed.
    async fn get_group(&self, gid: &str) -> StoreResult<Option<GroupRecord>>;

    /// The group's membership version: the seq of its newest membership
    /// change (the `system` message that created it, or added or removed a
    /// member); `None` if the group never existed. Nodes compare it with
    /// their cached member list to notice changes made by other nodes.
    async fn group_version(&self, gid: &str) -> StoreResult<Option<u64>>;

    /// Read positions of the current members of a group conversation.
    async fn read_positions(&self, conv: &str) -> StoreResult<Vec<(String, u64)>>;

    /// Answers when the backend is reachable and working.
    async fn health(&self) -> StoreResult<()>;

    // ----- revoked session tokens -----

    /// Records that the token with id `jti` is revoked until `expires_at`
    /// (ms), when it would have expired anyway. Revoking again is
    /// harmless. Records that expired by `now` are dropped on the way.
    async fn revoke_token(&self, jti: &str, expires_at: i64, now: i64) -> StoreResult<()>;

    /// Every revoked token that expires after `now`: `(jti, expires_at)`,
    /// in no particular order.
    async fn revoked_tokens(&self, now: i64) -> StoreResult<Vec<(String, i64)>>;

    /// Records that every token of `user` issued before `before` (ms) is
    /// revoked (5.3 `DELETE /v1/sessions?all=true`, which must also reach
    /// tokens that no session record names), kept until `expires_at`.
    /// For each field the later of two records wins. Records that expired
    /// by `now` are dropped on the way.
    async fn revoke_user_tokens(
        &self,
        user: &str,
        before: i64,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()>;

    /// Every such record that expires after `now`: `(user, before,
    /// expires_at)`, in no particular order.
    async fn revoked_users(&self, now: i64) -> StoreResult<Vec<(String, i64, i64)>>;

    // ----- token signing keys -----

    /// Every signing key, oldest first (by `created_at`, then `kid`).
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>>;

    /// Stores `key` unless a key with its `kid` exists (then nothing
    /// changes, whatever its secret); whether it was stored.
    async fn add_signing_key(&self, key: &SigningKey) -> StoreResult<bool>;

    /// The signing keys, after storing `secret` as the first key
    /// ([`FIRST_KID`]) if there was none: of concurrent calls on an empty
    /// store, one secret is stored and every caller gets it back.
    async fn ensure_signing_key(
        &self,
        secret: &[u8],
        created_at: i64,
    ) -> StoreResult<Vec<SigningKey>> {
        let keys = self.signing_keys().await?;
        if !keys.is_empty() {
            return Ok(keys);
        }
        let first = SigningKey {
            kid: FIRST_KID.to_owned(),
            secret: secret.to_vec(),
            created_at,
        };
        self.add_signing_key(&first).await?;
        self.signing_keys().await
    }

    // ----- per-user counts (limits) -----

    /// How many groups `user` is a current member of (former memberships
    /// and dissolved groups do not count).
    async fn group_count(&self, user: &str) -> StoreResult<u64>;

    /// How many friend requests `user` sent that are still unanswered.
    async fn outgoing_request_count(&self, user: &str) -> StoreResult<u64>;

    // ----- 5.4 and blocks -----

    /// `blocker` blocks `blocked` (both exist: the caller checked) at
    /// `now`. Blocking again is harmless.
    async fn block(&self, blocker: &str, blocked: &str, now: i64) -> StoreResult<()>;
    /// Lifts a block. Idempotent.
    async fn unblock(&self, blocker: &str, blocked: &str) -> StoreResult<()>;
    /// Whom `user` blocked, and who blocked `user`; each sorted by user id.
    async fn blocks(&self, user: &str) -> StoreResult<Blocks>;
    /// Whether `blocker` blocks `blocked`.
    async fn is_blocked(&self, blocker: &str, blocked: &str) -> StoreResult<bool>;

    // ----- 5.1 -----

    /// Replaces the content of message `seq` of `conv` and stamps
    /// `edited_at = now`: `Invalid` if it does not exist, else as
    /// [`crate::rules::may_edit`] decides (`by` sent it, not recalled,
    /// within `window_ms`). Counts as activity of the conversation at
    /// `now`. Returns the message as edited.
    async fn edit(
        &self,
        conv: &str,
        seq: u64,
        by: &str,
        content: &str,
        window_ms: i64,
        now: i64,
    ) -> StoreResult<StoredMessage>;

    /// `user` adds (`on`) or takes back a reaction `emoji` to message
    /// `seq` of `conv`: `Invalid` if the message does not exist; adding
    /// as [`crate::rules::may_react`] decides (`max_emoji` distinct per
    /// message). Whether anything changed (adding twice or removing what
    /// is not there changes nothing).
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
    ) -> StoreResult<bool>;

    /// The reactions to the messages of `conv` with `from <= seq <= to`:
    /// by seq, then by the emoji's first reaction (then emoji); each with
    /// its count and at most `users_listed` users (the first to react,
    /// then by user id).
    async fn reactions(
        &self,
        conv: &str,
        from: u64,
        to: u64,
        users_listed: u32,
    ) -> StoreResult<Vec<ReactionSummary>>;

    // ----- 5.3 profiles, conversation settings, sessions -----

    /// `user`'s profile; `None` for an unknown user.
    async fn profile(&self, user: &str) -> StoreResult<Option<Profile>>;
    /// Changes what is given of `user`'s profile (`avatar` `Some("")`
    /// clears it); the profile after the change, `None` for an unknown
    /// user.
    async fn set_profile(
        &self,
        user: &str,
        name: Option<&str>,
        avatar: Option<&str>,
    ) -> StoreResult<Option<Profile>>;
    /// Changes what is given of `user`'s settings of `conv`; the settings
    /// after the change. Settings back at their defaults leave no row.
    async fn set_conv_settings(
        &self,
        user: &str,
        conv: &str,
        muted_until: Option<i64>,
        pinned: Option<bool>,
    ) -> StoreResult<ConvSettings>;
    /// `user`'s settings that differ from the defaults, sorted by conv.
    async fn conv_settings(&self, user: &str) -> StoreResult<Vec<ConvSettings>>;
    /// Records a session, or moves the `last_seen` of a recorded one
    /// forward (never back). Recording one also drops the user's expired
    /// sessions.
    async fn touch_session(&self, s: &SessionRecord) -> StoreResult<()>;
    /// `user`'s sessions that expire after `now`, oldest first.
    async fn sessions(&self, user: &str, now: i64) -> StoreResult<Vec<SessionRecord>>;
    /// Forgets a session (revoked). Idempotent.
    async fn delete_session(&self, session: &str) -> StoreResult<()>;

    // ----- 5.6 durable jobs -----

    /// Stores jobs; a job whose `key` is stored already is left as it is
    /// (enqueueing twice does nothing).
    async fn enqueue_jobs(&self, jobs: &[NewJob]) -> StoreResult<()>;

    /// Takes up to `max` jobs of `kind` that are due (`due_at <= now`)
    /// and not claimed (or whose claim ended: `claimed_until <= now`),
    /// oldest due first, and claims them until `now + lease_ms`. Nodes
    /// sharing a store may call it at once: a job is taken by one of them
    /// until its claim ends.
    async fn claim_jobs(
        &self,
        kind: &str,
        now: i64,
        lease_ms: i64,
        max: u32,
    ) -> StoreResult<Vec<Job>>;

    /// The job is done: it is removed. Unknown ids are ignored.
    async fn finish_job(&self, id: i64) -> StoreResult<()>;

    /// The job failed: it is due again at `due_at`, unclaimed, having
    /// been tried `attempts` times, the last with `last_error`.
    async fn retry_job(
        &self,
        id: i64,
        due_at: i64,
        attempts: u32,
        last_error: &str,
    ) -> StoreResult<()>;

    /// How many jobs of `kind` are stored (due, waiting or claimed).
    async fn count_jobs(&self, kind: &str) -> StoreResult<u64>;

    /// Stores jobs; a job whose `key` is stored already keeps its row
    /// (due time, attempts, claim) and takes the new `payload`: the
    /// newer content replaces the pending one (5.5 collapsed pushes).
    async fn put_jobs(&self, jobs: &[NewJob]) -> StoreResult<()>;

    /// The job ran with `payload` and succeeded: it is removed if its
    /// payload is still that one. If [`Store::put_jobs`] changed it
    /// meanwhile, it stays, unclaimed and due at `now`, so the newer
    /// content runs too; `false` then.
    async fn complete_job(&self, id: i64, payload: &str, now: i64) -> StoreResult<bool>;

    /// The stored message with this `msg_id`, `None` if there is none.
    async fn message_by_id(&self, msg_id: u64) -> StoreResult<Option<StoredMessage>>;

    // ----- 5.5 offline push registrations -----

    /// Stores `reg`, replacing the registration of the same user and
    /// device. `Forbidden` (nothing stored) when it is a new device and
    /// the user has `max` registrations already.
    async fn push_register(&self, reg: &PushRegistration, max: u32) -> StoreResult<()>;
    /// Removes `user`'s registration of `device`; whether there was one.
    async fn push_unregister(&self, user: &str, device: &str) -> StoreResult<bool>;
    /// Removes `user`'s registrations made with `session`, or all of
    /// them (`None`); how many.
    async fn push_unregister_session(&self, user: &str, session: Option<&str>) -> StoreResult<u64>;
    /// `user`'s registrations, by device.
    async fn push_registrations(&self, user: &str) -> StoreResult<Vec<PushRegistration>>;

    // ----- 5.2 search -----

    /// Indexes up to `max` stored messages the index does not hold yet
    /// (oldest first, from a durable position, so a restart resumes and
    /// existing messages get indexed after an upgrade); returns how many
    /// it took (fewer than `max`: caught up). Terms come from
    /// [`crate::search::index_message`]. Never called inside an append's
    /// transaction. Nodes sharing a store may call it concurrently: each
    /// message is indexed once.
    async fn index_pending(&self, max: u32) -> StoreResult<u32>;

    /// Indexes message `seq` of `conv` again from its stored content;
    /// nothing if there is no such message. `edit` does this itself, in
    /// its transaction.
    async fn reindex_message(&self, conv: &str, seq: u64) -> StoreResult<()>;

    /// `user`'s indexed messages that match every part of `q.terms`,
    /// newest first (`ts`, then `msg_id`), at most `q.limit`: in the
    /// conversations `user` has a place in (a former group member: up to
    /// their removal), leaving out recalled messages and those `user`
    /// deleted.
    async fn search(
        &self,
        user: &str,
        q: &crate::search::SearchQuery,
    ) -> StoreResult<Vec<StoredMessage>>;

    // ----- 5.6 scheduled messages -----

    /// Stores a scheduled message: `Forbidden` (nothing stored) when its
    /// user already has `max` pending, `Conflict` when its id exists.
    async fn schedule(&self, s: &Scheduled, max: u32) -> StoreResult<()>;
    /// `user`'s pending scheduled messages, by `at`, then id.
    async fn scheduled(&self, user: &str) -> StoreResult<Vec<Scheduled>>;
    /// Removes `user`'s scheduled message `id` (cancelled, or sent);
    /// whether there was one.
    async fn unschedule(&self, user: &str, id: &str) -> StoreResult<bool>;
    /// Claims up to `max` scheduled messages that are due (`at <= now`)
    /// and not claimed (their lease ended by `now`), the earliest first:
    /// each one's lease now ends at `lease_until`. Of callers on nodes
    /// sharing the store, one gets a row while its lease runs.
    async fn claim_scheduled(
        &self,
        now: i64,
        lease_until: i64,
        max: u32,
    ) -> StoreResult<Vec<Scheduled>>;
    /// When the next scheduled message can be claimed (the later of its
    /// `at` and its lease's end), the earliest over all users; `None`
    /// when none is pending.
    async fn next_scheduled(&self) -> StoreResult<Option<i64>>;

    // ----- 5.5 media -----

    /// Stores the metadata of an uploaded media (its blob is written
    /// before). An id stored before: `Conflict`.
    async fn media_add(&self, m: &MediaRecord) -> StoreResult<()>;

    /// The media of this id, if it exists.
    async fn media_get(&self, id: &str) -> StoreResult<Option<MediaRecord>>;

    /// Marks media `id` of `owner` as referenced (by a message or a
    /// profile), in one transaction, and returns it; `None` when there is
    /// no such media of this owner (never uploaded, another user's, or
    /// swept). A sweep running at the same time either removed it before
    /// (then `None`) or leaves it.
    async fn media_reference(&self, id: &str, owner: &str) -> StoreResult<Option<MediaRecord>>;

    /// Removes, in one transaction, at most `max` media created before
    /// `created_before` that nothing referenced, and returns them (their
    /// blobs are the caller's to delete).
    async fn media_sweep(&self, created_before: i64, max: u32) -> StoreResult<Vec<MediaRecord>>;

    // ----- 5.6 retention and account erase -----

    /// Sets the retention of `conv` (a property of the conversation,
    /// shared by its members) to `days`; 0 clears it (the server default
    /// applies again).
    async fn set_retention(&self, conv: &str, days: u32, now: i64) -> StoreResult<()>;

    /// The retention set on `conv`, 0 when none.
    async fn retention(&self, conv: &str) -> StoreResult<u32>;

    /// The retentions set on the conversations `user` has a place in
    /// (`(conv, days)`), in no particular order.
    async fn retentions(&self, user: &str) -> StoreResult<Vec<(String, u32)>>;

    /// One bounded round of expiry (see [`ExpireRound`]): in the
    /// conversations after `q.after` (by conv id), at most `q.max_convs`
    /// of them, removes the messages older than the conversation's
    /// retention (its own, else `q.default_days`; 0 keeps everything),
    /// at most `q.max_msgs` in all. What goes is always a prefix of the
    /// conversation (every message up to the newest expired seq), in one
    /// transaction per conversation: with it go its reactions, its
    /// search entries and the deletions-for-me naming it; every read
    /// position in the conversation moves up to it (so unread counts only
    /// what is kept); a media it named is marked unreferenced unless a
    /// kept message of its owner or the owner's avatar names it. Nodes
    /// may run rounds at once: a message already gone is simply not
    /// found again.
    async fn expire_messages(&self, q: &ExpireRound) -> StoreResult<Expired>;

    /// Erases `user`'s account data, in one transaction, all of it
    /// idempotent (running it again changes nothing): the name and
    /// avatar are cleared and the password hash becomes
    /// [`ERASED_PASSWORD_HASH`] (the row stays: the id is never given
    /// again); friends, friend requests and blocks either way, the user's
    /// conversation settings, sessions, scheduled messages, reactions and
    /// deletions-for-me are removed; the user's messages (not `system`
    /// ones) become tombstones: kind [`DELETED_USER_KIND`], no content,
    /// no mentions, and they leave the search index; the user's offline
    /// queue is emptied; the user's media are marked unreferenced (the
    /// media sweep removes them). Group memberships are the caller's to
    /// end before (they write `system` messages).
    async fn erase_user(&self, user: &str) -> StoreResult<()>;
}

/// 5.6: the password hash of an erased account. Not a PHC string: no
/// password matches it.
pub const ERASED_PASSWORD_HASH: &str = "!erased";

/// 5.6: the kind of an erased user's messages, kept as tombstones without
/// content.
pub const DELETED_USER_KIND: &str = "deleted_user";

impl UserRecord {
    /// 5.6: the account was erased (the id stays reserved).
    pub fn is_erased(&self) -> bool {
        self.password_hash == ERASED_PASSWORD_HASH
    }
}

/// 5.6: one round of [`Store::expire_messages`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpireRound {
    /// Retention of conversations without their own, in days; 0 keeps
    /// them forever.
    pub default_days: u32,
    /// The clock the cutoffs are computed from (ms).
    pub now: i64,
    /// Conversations after this id are looked at (`""`: from the first).
    pub after: String,
    pub max_convs: u32,
    pub max_msgs: u32,
}

impl ExpireRound {
    /// The cutoff of a retention of `days`: messages with `ts` below it
    /// have expired; `None` for 0 (kept forever).
    pub fn cutoff(&self, days: u32) -> Option<i64> {
        (days > 0).then(|| self.now - i64::from(days) * 86_400_000)
    }
}

/// 5.6: what a round of [`Store::expire_messages`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// Where the next round starts (`after`); `None`: the round reached
    /// the last conversation (the next starts from the first).
    pub next: Option<String>,
    /// Messages removed.
    pub messages: u64,
    /// Media marked unreferenced.
    pub media: u64,
}

/// 5.6: the media ids a message's content names (`"media"` of an
/// `image`, `voice` or `file` message), for the stores' expiry.
pub fn media_named(kind: &str, content: Option<&str>) -> Option<String> {
    if !matches!(kind, "image" | "voice" | "file") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(content?).ok()?;
    v.get("media")?.as_str().map(str::to_owned)
}

/// 5.6: the `LIKE` pattern that finds a media id in a message's content
/// as the core writes it (`"media":"<id>"`; ids are hex, no wildcard).
pub fn media_like(id: &str) -> String {
    format!("%\"media\":\"{id}\"%")
}

/// 5.6: a `send` kept until its time, from [`Store::scheduled`] and
/// [`Store::claim_scheduled`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    /// 32 hex digits, chosen by the server.
    pub id: String,
    /// The sender.
    pub user: String,
    pub conv: String,
    /// The recipient of a 1:1 message, or the group id (`conv` says which).
    pub peer: String,
    /// When it is to be sent (ms).
    pub at: i64,
    pub kind: String,
    /// The content as JSON text.
    pub content: String,
    /// The client's, or one the server made up.
    pub client_msg_id: String,
    /// 5.1: 0 for none.
    pub reply_to: u64,
    /// 5.1: the mentions of a group message.
    pub mentions: Vec<String>,
    pub created_at: i64,
}

/// `Scheduled::mentions` as one column: a JSON array, `""` for none.
pub fn mentions_column(mentions: &[String]) -> String {
    if mentions.is_empty() {
        String::new()
    } else {
        serde_json::to_string(mentions).unwrap_or_default()
    }
}

/// The mentions of a [`mentions_column`] text.
pub fn mentions_of_column(text: &str) -> Vec<String> {
    if text.is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(text).unwrap_or_default()
    }
}

/// An uploaded media's metadata (5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRecord {
    /// At least 128 random bits, as 32 lowercase hex characters.
    pub id: String,
    pub owner: String,
    pub size: u64,
    pub mime: String,
    /// Lowercase hex.
    pub sha256: String,
    /// Pixel size, for images whose header was read.
    pub w: Option<u32>,
    pub h: Option<u32>,
    /// The `?filename=` of the upload, `""` for none.
    pub filename: String,
    pub created_at: i64,
    /// Whether a message or a profile refers to it: then it is kept.
    pub referenced: bool,
}

/// 5.6: a job to store durably ([`Store::enqueue_jobs`], or with a
/// message: [`Extras::jobs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Which runner takes it (e.g. `webhook`).
    pub kind: String,
    /// Unique: a job with a stored key is not stored again.
    pub key: String,
    /// What the runner needs, as the runner reads it (JSON text).
    pub payload: String,
    pub created_at: i64,
    /// When it is first due (ms).
    pub due_at: i64,
}

/// 5.6: a stored job, as [`Store::claim_jobs`] hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub payload: String,
    pub created_at: i64,
    pub due_at: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// 5.5: one device's offline push registration (`PUT /v1/push/{device}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRegistration {
    pub user: String,
    pub device: String,
    /// `fcm`, `apns`, `webpush` or `webhook`.
    pub provider: String,
    /// The provider's device token; `""` for Web Push.
    pub token: String,
    /// Web Push: the subscription's endpoint and keys; `""` otherwise.
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    /// The session (token id, 32 hex digits) that registered it: revoking
    /// that session removes it.
    pub session: String,
    pub updated_at: i64,
}

/// A user's public profile (5.3), from [`Store::profile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    /// A media id; `None` when not set.
    pub avatar: Option<String>,
    /// 5.6: a bot account.
    pub bot: bool,
}

/// One user's settings of one conversation (5.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvSettings {
    pub conv: String,
    /// Muted until then (ms); 0: not muted.
    pub muted_until: i64,
    pub pinned: bool,
    /// 5.6: the conversation's retention in days (shared by its members,
    /// not the user's own setting); 0: none set. Stores leave it 0 in
    /// these per-user rows; the core fills it from
    /// [`Store::retentions`].
    pub retention_days: u32,
}

impl ConvSettings {
    /// Settings as they are before any change.
    pub fn is_default(&self) -> bool {
        self.muted_until == 0 && !self.pinned
    }
}

/// A session: one token, named by its id (`jti`, 32 hex digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub session: String,
    pub user: String,
    /// When the token was issued (ms).
    pub created_at: i64,
    pub expires_at: i64,
    /// When it was last used, at the granularity the server records.
    pub last_seen: i64,
}

/// Groups rows `(seq, emoji, user)` already in [`Store::reactions`] order,
/// each row with the emoji's count, into summaries (for the stores).
pub fn group_reactions(rows: Vec<(u64, String, String, u64)>) -> Vec<ReactionSummary> {
    let mut out: Vec<ReactionSummary> = Vec::new();
    for (seq, emoji, user, count) in rows {
        match out.last_mut() {
            Some(last) if last.seq == seq && last.emoji == emoji => last.users.push(user),
            _ => out.push(ReactionSummary {
                seq,
                emoji,
                count,
                users: vec![user],
            }),
        }
    }
    out
}

/// A user's blocks both ways, from [`Store::blocks`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocks {
    /// Users this user blocked. Sorted.
    pub blocked: Vec<String>,
    /// Users who blocked this user. Sorted.
    pub blocked_by: Vec<String>,
}
