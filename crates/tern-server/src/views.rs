//! Wire shapes of answers shared by the HTTP API and WebSocket `ok` frames.

use serde::Serialize;
use tern_core::store::{ConvList, StoredMessage};
use tern_core::{msg_view, SendOk};
use tern_proto::frames::MsgView;

#[derive(Serialize)]
pub struct SendAnswer<'a> {
    #[serde(serialize_with = "tern_proto::frames::as_decimal")]
    pub msg_id: u64,
    pub conv: &'a str,
    pub seq: u64,
    pub ts: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl<'a> From<&'a SendOk> for SendAnswer<'a> {
    fn from(s: &'a SendOk) -> Self {
        SendAnswer {
            msg_id: s.msg_id,
            conv: &s.conv,
            seq: s.seq,
            ts: s.ts,
            duplicate: s.duplicate,
        }
    }
}

#[derive(Serialize)]
pub struct ConvView<'a> {
    pub conv: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<&'a str>,
    pub max_seq: u64,
    pub read_seq: u64,
    pub unread: u64,
    pub last: Option<MsgView<'a>>,
    pub updated_at: i64,
}

#[derive(Serialize)]
pub struct SyncAnswer<'a> {
    pub convs: Vec<ConvView<'a>>,
    pub total_unread: u64,
}

impl<'a> From<&'a ConvList> for SyncAnswer<'a> {
    fn from(l: &'a ConvList) -> Self {
        SyncAnswer {
            convs: l
                .convs
                .iter()
                .map(|c| ConvView {
                    conv: &c.conv,
                    peer: c.peer.as_deref(),
                    group: c.group.as_deref(),
                    max_seq: c.max_seq,
                    read_seq: c.read_seq,
                    unread: c.unread,
                    last: c.last.as_ref().map(msg_view),
                    updated_at: c.updated_at,
                })
                .collect(),
            total_unread: l.total_unread,
        }
    }
}

#[derive(Serialize)]
pub struct HistoryAnswer<'a> {
    pub msgs: Vec<MsgView<'a>>,
}

impl<'a> HistoryAnswer<'a> {
    pub fn new(msgs: &'a [StoredMessage]) -> Self {
        HistoryAnswer {
            msgs: msgs.iter().map(msg_view).collect(),
        }
    }
}

/// `{"type":"ok","id":...,<fields of body>}`.
#[derive(Serialize)]
pub struct OkFrame<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub ty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(flatten)]
    pub body: T,
}

impl<'a, T: Serialize> OkFrame<'a, T> {
    pub fn new(id: Option<&'a str>, body: T) -> Self {
        OkFrame { ty: "ok", id, body }
    }
}
