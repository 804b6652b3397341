//! Core results into the wire types of `tern_proto::wire`, for answers
//! shared by the HTTP API and WebSocket `ok` frames.

use std::borrow::Cow;
use tern_core::groups::GroupView;
use tern_core::store::{ConvList, ConvSettings, ConvSummary, StoredMessage};
use tern_core::{msg_view, SendOk};
use tern_proto::wire::{ConvView, GroupAnswer, HistoryAnswer, SendAnswer, SyncAnswer};

pub fn send_answer(s: &SendOk) -> SendAnswer<'_> {
    SendAnswer {
        msg_id: s.msg_id,
        conv: Cow::Borrowed(&s.conv),
        seq: s.seq,
        ts: s.ts,
        duplicate: s.duplicate,
    }
}

/// A conversation list with the caller's settings (`settings` sorted by
/// conv; a conversation without a row has the defaults).
pub fn sync_answer<'a>(l: &'a ConvList, settings: &[ConvSettings]) -> SyncAnswer<'a> {
    let of = |conv: &str| {
        settings
            .binary_search_by(|s| s.conv.as_str().cmp(conv))
            .ok()
            .map(|i| {
                let s = &settings[i];
                (s.muted_until, s.pinned, s.retention_days)
            })
            .unwrap_or_default()
    };
    SyncAnswer {
        convs: l
            .convs
            .iter()
            .map(|c| (c, of(&c.conv)))
            .map(|(c, (muted_until, pinned, retention_days))| ConvView {
                conv: Cow::Borrowed(&c.conv),
                peer: c.peer.as_deref().map(Cow::Borrowed),
                group: c.group.as_deref().map(Cow::Borrowed),
                max_seq: c.max_seq,
                read_seq: c.read_seq,
                unread: c.unread,
                last: c.last.as_ref().map(msg_view),
                updated_at: c.updated_at,
                peer_delivered_seq: has_peer(c).then_some(c.peer_delivered_seq),
                peer_read_seq: has_peer(c).then_some(c.peer_read_seq),
                mentioned: c.mention_seq > c.read_seq,
                muted_until,
                pinned,
                retention_days,
            })
            .collect(),
        total_unread: l.total_unread,
    }
}

/// A 1:1 conversation with someone else (not notes to oneself).
fn has_peer(c: &ConvSummary) -> bool {
    c.conv
        .strip_prefix("dm:")
        .and_then(|ids| ids.split_once(':'))
        .is_some_and(|(a, b)| a != b)
}

pub fn history_answer(msgs: &[StoredMessage]) -> HistoryAnswer<'_> {
    HistoryAnswer {
        msgs: msgs.iter().map(msg_view).collect(),
    }
}

/// A group; `size` only where the API gives it (not on creation).
pub fn group_answer(v: &GroupView, with_size: bool) -> GroupAnswer<'_> {
    GroupAnswer {
        group: Cow::Borrowed(&v.gid),
        members: v.members.iter().map(|m| Cow::Borrowed(&**m)).collect(),
        name: Cow::Borrowed(&v.name),
        owner: Cow::Borrowed(&v.owner),
        size: with_size.then_some(v.size() as u64),
        admins: v.roles.admins.iter().map(|a| Cow::Borrowed(&**a)).collect(),
        announcement: Cow::Borrowed(&v.roles.announcement),
        muted_all: v.roles.state.muted_all,
        mutes: {
            let now = tern_core::now_ms();
            v.roles
                .mutes
                .iter()
                .filter(|(_, until)| *until > now)
                .map(|(m, until)| (Cow::Borrowed(&**m), *until))
                .collect()
        },
        dissolved: v.roles.state.dissolved,
    }
}
