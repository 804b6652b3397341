//! The conformance suite of the `tern_core::store::Store` contract, shared
//! by every backend.
//!
//! Every check is a backend-neutral `pub async fn(&dyn Store)` that assumes
//! an empty store and uses its own users and conversations. A backend's test
//! target runs all of them with [`suite!`], giving it a function that opens
//! a fresh store and one that reopens the same data (for the durability
//! check). Times are plain numbers (milliseconds), chosen by the checks.
//!
//! This file holds what the checks share (message builders, calls with
//! their `expect`s); the checks are grouped by topic: `append.rs` (seqs,
//! deduplication, message ids), `offline.rs` (the offline queue and acks),
//! `reading.rs` (read positions, recall and delete, the conversation list,
//! history pages), `groups.rs`, `accounts.rs` (users, friends, counts) and
//! `durability.rs`.

use std::sync::atomic::{AtomicU64, Ordering};

use tern_core::store::{
    AckMark, Appended, Blocks, ConvList, FriendLists, FriendStatus, GroupRecord, HistoryQuery,
    MemberChange, NewMessage, ReadOutcome, Refusal, Store, StoreError, StoredMessage, UserRecord,
};

/// Recall window used by the recall tests.
const WINDOW: i64 = 60_000;

// ----- building messages -----

fn next_msg_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn dm_conv(x: &str, y: &str) -> String {
    let (a, b) = if x <= y { (x, y) } else { (y, x) };
    format!("dm:{a}:{b}")
}

fn group_conv(gid: &str) -> String {
    format!("group:{gid}")
}

/// JSON text of a `text` message's content.
fn text(s: &str) -> String {
    format!("\"{s}\"")
}

/// A 1:1 text message; both users are participants, `to` has it queued.
/// The content is the `cmid` as a JSON string.
pub fn dm(from: &str, to: &str, ts: i64, cmid: &str) -> NewMessage {
    NewMessage {
        msg_id: next_msg_id(),
        conv: dm_conv(from, to),
        from: from.into(),
        to: Some(to.into()),
        group: None,
        kind: "text".into(),
        content: text(cmid),
        ts,
        client_msg_id: Some(cmid.into()),
        participants: vec![from.into(), to.into()],
        inbox_members_up_to: 0,
        change: None,
        extras: Default::default(),
    }
}

/// A group text message, read diffusion (queued for nobody).
pub fn gmsg(gid: &str, from: &str, ts: i64, cmid: &str) -> NewMessage {
    NewMessage {
        msg_id: next_msg_id(),
        conv: group_conv(gid),
        from: from.into(),
        to: None,
        group: Some(gid.into()),
        kind: "text".into(),
        content: text(cmid),
        ts,
        client_msg_id: Some(cmid.into()),
        participants: Vec::new(),
        inbox_members_up_to: 0,
        change: None,
        extras: Default::default(),
    }
}

/// A server-written `system` group message recording `change`.
fn gsys(gid: &str, actor: &str, ts: i64, change: MemberChange) -> NewMessage {
    NewMessage {
        kind: "system".into(),
        content: "{}".into(),
        client_msg_id: None,
        change: Some(change),
        ..gmsg(gid, actor, ts, "")
    }
}

pub fn create(gid: &str, owner: &str, ts: i64) -> NewMessage {
    gsys(
        gid,
        owner,
        ts,
        MemberChange::Create {
            name: format!("{gid} name"),
        },
    )
}

pub fn join(gid: &str, actor: &str, user: &str, ts: i64) -> NewMessage {
    gsys(gid, actor, ts, MemberChange::Join(user.into()))
}

pub fn leave(gid: &str, actor: &str, user: &str, ts: i64) -> NewMessage {
    gsys(gid, actor, ts, MemberChange::Leave(user.into()))
}

/// Write diffusion: queued for every member but the sender.
pub fn diffused(m: NewMessage) -> NewMessage {
    NewMessage {
        inbox_members_up_to: 100,
        ..m
    }
}

pub fn user(name: &str, created_at: i64) -> UserRecord {
    UserRecord {
        user: name.into(),
        name: format!("{name} display"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at,
        bot: false,
    }
}

fn all() -> HistoryQuery {
    HistoryQuery {
        before_seq: None,
        after_seq: None,
        limit: 1000,
    }
}

fn page(before_seq: Option<u64>, after_seq: Option<u64>, limit: u32) -> HistoryQuery {
    HistoryQuery {
        before_seq,
        after_seq,
        limit,
    }
}

fn seqs(msgs: &[StoredMessage]) -> Vec<u64> {
    msgs.iter().map(|m| m.seq).collect()
}

// ----- calling the store -----

macro_rules! assert_err {
    ($e:expr, $p:pat) => {
        match $e {
            Err($p) => {}
            other => panic!("expected Err({}), got {:?}", stringify!($p), other),
        }
    };
}

async fn append(s: &dyn Store, batch: Vec<NewMessage>) -> Vec<Appended> {
    s.append_messages(batch).await.expect("append_messages")
}

async fn append_one(s: &dyn Store, m: NewMessage) -> Appended {
    let mut out = append(s, vec![m]).await;
    assert_eq!(out.len(), 1);
    out.remove(0)
}

/// Appends one message that must be stored now.
pub async fn send(s: &dyn Store, m: NewMessage) -> StoredMessage {
    match append_one(s, m).await {
        Appended::New(m) => m,
        other => panic!("expected Appended::New, got {other:?}"),
    }
}

async fn history(s: &dyn Store, user: &str, conv: &str, q: HistoryQuery) -> Vec<StoredMessage> {
    s.history(user, conv, q).await.expect("history")
}

async fn history_seqs(s: &dyn Store, user: &str, conv: &str, q: HistoryQuery) -> Vec<u64> {
    seqs(&history(s, user, conv, q).await)
}

/// The user's offline queue as `(conv, seq)` pairs, and the truncated flag.
async fn queue(s: &dyn Store, user: &str) -> (Vec<(String, u64)>, bool) {
    queue_capped(s, user, 1000).await
}

/// [`queue`] with the newest `cap` messages kept.
async fn queue_capped(s: &dyn Store, user: &str, cap: u32) -> (Vec<(String, u64)>, bool) {
    let b = s.offline_fetch(user, cap).await.expect("offline_fetch");
    (
        b.msgs.into_iter().map(|m| (m.conv, m.seq)).collect(),
        b.truncated,
    )
}

/// Seqs of the user's offline queue (all in `conv`, which the test checks).
async fn queue_seqs(s: &dyn Store, user: &str, conv: &str) -> Vec<u64> {
    let (entries, _) = queue(s, user).await;
    entries
        .into_iter()
        .map(|(c, seq)| {
            assert_eq!(c, conv, "unexpected conversation in {user}'s queue");
            seq
        })
        .collect()
}

async fn convs(s: &dyn Store, user: &str) -> ConvList {
    s.conversations(user, 0, 1000).await.expect("conversations")
}

fn conv_ids(l: &ConvList) -> Vec<&str> {
    l.convs.iter().map(|c| c.conv.as_str()).collect()
}

mod accounts;
mod append;
mod durability;
mod groups;
mod offline;
mod reading;
// 5.4 and blocks
mod moderation;
// 5.1
mod edits;
// 5.3 profiles, conversation settings, sessions
mod settings;
// 5.2
mod search;
mod search_access;
// 5.5 media
mod media;
// 5.6 scheduled messages
mod scheduled;
// 5.6 durable jobs
mod jobs;
// 5.5 offline push
mod push;
// 5.6 retention and account erase
mod retention;

pub use accounts::*;
pub use append::*;
pub use durability::*;
pub use edits::*;
pub use groups::*;
pub use jobs::*;
pub use media::*;
pub use moderation::*;
pub use offline::*;
pub use push::*;
pub use reading::*;
pub use retention::*;
pub use scheduled::*;
pub use search::*;
pub use search_access::*;
pub use settings::*;
