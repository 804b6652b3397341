//! Pieces every dialect shares: error wrapping, seq bounds, the message
//! columns, and the plain-Rust steps of the store's flow (checks of a
//! membership unit, conversation list order, ack grouping).

use std::collections::HashMap;

use tern_core::store::{
    AckMark, Appended, ConvList, ConvSummary, MemberChange, NewMessage, StoreError, StoreResult,
    StoredMessage,
};

pub fn be(e: sqlx::Error) -> StoreError {
    StoreError::backend(e)
}

/// A seq bound given by a caller, as the servers' signed BIGINT. Stored
/// seqs never exceed `i64::MAX`, so clamping keeps every comparison's
/// meaning (a plain `as` cast would turn `u64::MAX` into -1).
pub fn sql_seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

pub fn no_such_seq() -> StoreError {
    StoreError::Invalid("no message with this seq in the conversation")
}

/// Columns of a stored message, in order, from `messages m`; each dialect
/// decodes them.
macro_rules! msg_cols {
    () => {
        "m.msg_id, m.conv, m.seq, m.from_user, m.to_user, m.group_id, m.kind, m.content, m.ts, \
         m.client_msg_id, m.recalled, m.reply_to, m.mentions, m.edited_at"
    };
}
pub(crate) use msg_cols;

/// Checks a membership unit (`Store::append_unit`) and returns the users
/// it adds, sorted and distinct.
pub fn unit_joining(batch: &[NewMessage]) -> StoreResult<Vec<String>> {
    let mut joining: Vec<String> = Vec::new();
    for m in batch {
        if m.group.is_none() || m.change.is_none() || m.client_msg_id.is_some() {
            return Err(StoreError::Invalid(
                "a unit holds membership changes of a group only",
            ));
        }
        if let Some(MemberChange::Join(u)) = &m.change {
            joining.push(u.clone());
        }
    }
    joining.sort_unstable();
    joining.dedup();
    Ok(joining)
}

/// A unit's outcome: every message stored, or the error that rolls it all
/// back.
pub fn unit_outcome(appended: Vec<Appended>) -> StoreResult<Vec<StoredMessage>> {
    appended
        .into_iter()
        .map(|a| match a {
            Appended::New(s) => Ok(s),
            Appended::Refused(r) => Err(r.into()),
            Appended::Duplicate(_) => Err(StoreError::Conflict),
        })
        .collect()
}

/// Queue-only acks as one target per (user, conversation), the highest,
/// sorted so that concurrent statements lock rows in the same order.
pub fn queue_marks(acks: impl IntoIterator<Item = AckMark>) -> Vec<(String, String, i64)> {
    let mut top: HashMap<(String, String), i64> = HashMap::new();
    for a in acks {
        let e = top.entry((a.user, a.conv)).or_insert(0);
        *e = (*e).max(sql_seq(a.seq));
    }
    let mut marks: Vec<(String, String, i64)> =
        top.into_iter().map(|((u, c), s)| (u, c, s)).collect();
    marks.sort_unstable();
    marks
}

/// The seqs of a `delete_for_user`, sorted and distinct; `Invalid` for one
/// no message can have.
pub fn seqs_to_hide(seqs: &[u64]) -> StoreResult<Vec<i64>> {
    let mut wanted = Vec::with_capacity(seqs.len());
    for &s in seqs {
        match i64::try_from(s) {
            Ok(s) if s > 0 => wanted.push(s),
            _ => return Err(no_such_seq()),
        }
    }
    wanted.sort_unstable();
    wanted.dedup();
    Ok(wanted)
}

/// A user's conversation as stored: their row and the conversation's.
pub struct ConvRow {
    pub conv: String,
    pub peer: Option<String>,
    pub group: Option<String>,
    pub max_seq: i64,
    pub read: i64,
    pub until: Option<i64>,
    pub until_ts: Option<i64>,
    pub read_at: i64,
    pub conv_at: i64,
    /// The other party's positions (1:1 only, else 0).
    pub peer_delivered: i64,
    pub peer_read: i64,
    /// 5.1: the newest seq that mentions the user.
    pub mention: i64,
}

impl ConvRow {
    /// The list entry, without its last message.
    fn summary(self) -> ConvSummary {
        let visible = self
            .until
            .map_or(self.max_seq, |u| u.min(self.max_seq))
            .max(0) as u64;
        let read = self.read.max(0) as u64;
        ConvSummary {
            conv: self.conv,
            peer: self.peer,
            group: self.group,
            max_seq: visible,
            read_seq: read,
            unread: visible.saturating_sub(read),
            last: None,
            updated_at: self.until_ts.unwrap_or(self.conv_at).max(self.read_at),
            peer_delivered_seq: self.peer_delivered.max(self.peer_read).max(0) as u64,
            peer_read_seq: self.peer_read.max(0) as u64,
            mention_seq: self.mention.max(0) as u64,
        }
    }
}

/// The conversation list of `Store::conversations` without last messages,
/// and for each listed entry (in order) the conversation and the highest
/// seq its user sees, to look the last message up.
pub fn conv_list(rows: Vec<ConvRow>, since: i64, limit: u32) -> (ConvList, Vec<(String, u64)>) {
    let all: Vec<ConvSummary> = rows.into_iter().map(ConvRow::summary).collect();
    let total_unread = all.iter().map(|s| s.unread).sum();
    let mut convs: Vec<ConvSummary> = all.into_iter().filter(|s| s.updated_at > since).collect();
    convs.sort_by(|a, b| {
        b.updated_at
            .cmp(&a.updated_at)
            .then_with(|| a.conv.cmp(&b.conv))
    });
    convs.truncate(limit as usize);
    let listed = convs.iter().map(|s| (s.conv.clone(), s.max_seq)).collect();
    (
        ConvList {
            convs,
            total_unread,
        },
        listed,
    )
}

/// One page of one offline queue to read: messages of `conv` with
/// `lo < seq < below` that entered queues, not sent by the user unless
/// `own_too`, the newest `limit` of them.
pub struct PageFetch {
    pub conv: String,
    pub lo: i64,
    pub below: i64,
    pub own_too: bool,
    pub limit: u32,
}
