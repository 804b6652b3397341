//! Server frames as bytes: each is encoded once and the same bytes go to
//! every recipient. A leaf: it knows the wire types and the stored message,
//! nothing of the logic that decides who gets what.

use crate::store::StoredMessage;
use bytes::Bytes;
use serde::Serialize;
use std::borrow::Cow;
use tern_proto::wire::{MsgPush, MsgView, RawJson, ReactionCount};

/// Encodes a server frame. Serializing these plain structs cannot fail.
pub fn encode<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// The wire view of a stored message. Content is stored as JSON text and
/// goes out as it is, without re-encoding.
pub fn msg_view(m: &StoredMessage) -> MsgView<'_> {
    MsgView {
        msg_id: m.msg_id,
        conv: Cow::Borrowed(&m.conv),
        seq: m.seq,
        from: Cow::Borrowed(&m.from),
        to: m.to.as_deref().map(Cow::Borrowed),
        group: m.group.as_deref().map(Cow::Borrowed),
        kind: Cow::Borrowed(&m.kind),
        content: m
            .content
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .map(RawJson::borrowed),
        ts: m.ts,
        client_msg_id: m.client_msg_id.as_deref().map(Cow::Borrowed),
        recalled: m.recalled,
        reply_to: m.reply_to,
        mentions: m
            .mentions
            .iter()
            .map(|u| Cow::Borrowed(u.as_str()))
            .collect(),
        edited_at: m.edited_at,
        reactions: m
            .reactions
            .iter()
            .map(|r| {
                (
                    Cow::Borrowed(r.emoji.as_str()),
                    ReactionCount {
                        count: r.count,
                        users: r.users.iter().map(|u| Cow::Borrowed(u.as_str())).collect(),
                    },
                )
            })
            .collect(),
    }
}

/// `{"type":"msg","msg":{...}}`, encoded once per message.
pub fn encode_msg_push(m: &StoredMessage) -> Bytes {
    encode(&MsgPush::new(msg_view(m)))
}
