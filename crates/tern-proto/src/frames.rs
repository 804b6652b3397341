//! JSON frames. Client frames are decoded in one pass into [`ClientFrame`],
//! a flat view with borrowed strings, then turned into the typed command
//! of their `type` ([`crate::request::Request`]). Server frames are in
//! [`crate::wire`].

use crate::codes::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Declares [`FrameType`] with its wire names and its complete list
/// [`FrameType::ALL`]: a type cannot be parsed without being listed (tests
/// check that each listed type is documented).
macro_rules! frame_types {
    ($($name:ident = $s:literal;)*) => {
        /// Every request type a client may send.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum FrameType {
            $($name,)*
        }

        impl FrameType {
            /// Every type, in declaration order.
            pub const ALL: [FrameType; [$($s),*].len()] = [$(FrameType::$name),*];

            /// The `type` on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(FrameType::$name => $s,)*
                }
            }

            pub fn parse(s: &str) -> Option<FrameType> {
                Some(match s {
                    $($s => FrameType::$name,)*
                    _ => return None,
                })
            }
        }
    };
}

frame_types! {
    Auth = "auth";
    Ping = "ping";
    Send = "send";
    Ack = "ack";
    Read = "read";
    Sync = "sync";
    History = "history";
    Recall = "recall";
    Delete = "delete";
    Presence = "presence";
    Typing = "typing";
    State = "state";
    Join = "join";
    Leave = "leave";
    RoomSend = "room_send";
    ReadStatus = "read_status";
    // 5.1
    Edit = "edit";
    React = "react";
    // 5.2
    Search = "search";
}

/// A client frame: every field any request type uses, all optional.
/// Clients build their requests with it too: it serializes to the frame,
/// absent fields left out.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ClientFrame<'a> {
    #[serde(rename = "type", borrow)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ty: Option<Cow<'a, str>>,
    #[serde(borrow)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Cow<'a, str>>,
    #[serde(borrow)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Cow<'a, str>>,
    #[serde(borrow)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Cow<'a, str>>,
    #[serde(borrow)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Cow<'a, str>>,
    #[serde(borrow)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Cow<'a, str>>,
    /// As written, JSON `null` included (a `room_send` content may be any
    /// JSON value); `None` only when the field is absent.
    #[serde(borrow, default, deserialize_with = "present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a RawValue>,
    #[serde(borrow)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conv: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seqs: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
    #[serde(borrow)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    // 5.1
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    #[serde(borrow)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emoji: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on: Option<bool>,
    // 5.2
    #[serde(borrow)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_ts: Option<i64>,
    // 5.6 scheduled messages
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
}

/// A field that is there, whatever its value: `null` is `Some("null")`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// Why a frame could not be decoded, with the request id when one was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub code: ErrorCode,
    pub id: Option<String>,
    pub message: String,
}

/// A decoded frame with its type checked.
#[derive(Debug)]
pub struct Decoded<'a> {
    pub ty: FrameType,
    pub frame: ClientFrame<'a>,
}

/// Decodes one text frame: `bad_frame` for non-JSON or a missing `type`,
/// `unknown_type` for a type this server does not know, `invalid` for known
/// types whose fields have the wrong JSON types.
pub fn decode(text: &str) -> Result<Decoded<'_>, DecodeError> {
    match serde_json::from_str::<ClientFrame<'_>>(text) {
        Ok(frame) => {
            let id = frame.id.as_deref().map(str::to_owned);
            let Some(ty) = frame.ty.as_deref() else {
                return Err(DecodeError {
                    code: ErrorCode::BadFrame,
                    id,
                    message: "frame has no type".into(),
                });
            };
            match FrameType::parse(ty) {
                Some(ty) => Ok(Decoded { ty, frame }),
                None => Err(DecodeError {
                    code: ErrorCode::UnknownType,
                    id,
                    message: format!("unknown frame type {ty:?}"),
                }),
            }
        }
        Err(err) => Err(classify(text, err)),
    }
}

/// Slow path for frames that failed the one-pass decode: find out whether
/// the frame is not JSON at all, lacks a type, or has bad fields.
fn classify(text: &str, err: serde_json::Error) -> DecodeError {
    let bad = |message: &str| DecodeError {
        code: ErrorCode::BadFrame,
        id: None,
        message: message.into(),
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return bad("frame is not JSON");
    };
    let Some(obj) = value.as_object() else {
        return bad("frame is not a JSON object");
    };
    let id = obj.get("id").and_then(|v| v.as_str()).map(str::to_owned);
    let Some(ty) = obj.get("type").and_then(|v| v.as_str()) else {
        return DecodeError {
            code: ErrorCode::BadFrame,
            id,
            message: "frame has no type".into(),
        };
    };
    if FrameType::parse(ty).is_none() {
        return DecodeError {
            code: ErrorCode::UnknownType,
            id,
            message: format!("unknown frame type {ty:?}"),
        };
    }
    let mut message = err.to_string();
    if let Some(cut) = message.find(" at line ") {
        message.truncate(cut);
    }
    DecodeError {
        code: ErrorCode::Invalid,
        id,
        message,
    }
}

/// Kinds of message a client may send.
pub const CLIENT_KINDS: [&str; 5] = ["text", "image", "voice", "file", "custom"];

/// Checks `kind` against `content`: text takes a JSON string, the other
/// client kinds take a JSON object. `system` is server-only.
pub fn check_kind_content(kind: &str, content: &RawValue) -> Result<(), &'static str> {
    let first = content.get().trim_start().as_bytes().first().copied();
    match kind {
        "text" if first == Some(b'"') => Ok(()),
        "text" => Err("text content must be a string"),
        "image" | "voice" | "file" | "custom" if first == Some(b'{') => Ok(()),
        "image" | "voice" | "file" | "custom" => Err("content must be a JSON object"),
        "system" => Err("system messages are written by the server only"),
        _ => Err("unknown kind"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_send() {
        let d = decode(r#"{"type":"send","id":"2","to":"bob","client_msg_id":"c1","kind":"text","content":"hi \"x\""}"#).unwrap();
        assert_eq!(d.ty, FrameType::Send);
        assert_eq!(d.frame.id.as_deref(), Some("2"));
        assert_eq!(d.frame.content.unwrap().get(), r#""hi \"x\"""#);
    }

    #[test]
    fn serializes_what_it_decodes() {
        let content = RawValue::from_string("\"hi\"".into()).unwrap();
        let frame = ClientFrame {
            ty: Some("send".into()),
            id: Some("2".into()),
            to: Some("bob".into()),
            client_msg_id: Some("c1".into()),
            kind: Some("text".into()),
            content: Some(&content),
            ..ClientFrame::default()
        };
        let text = serde_json::to_string(&frame).unwrap();
        assert_eq!(
            text,
            r#"{"type":"send","id":"2","to":"bob","client_msg_id":"c1","kind":"text","content":"hi"}"#
        );
        let d = decode(&text).unwrap();
        assert_eq!(d.ty, FrameType::Send);
        assert_eq!(d.frame.content.unwrap().get(), r#""hi""#);
    }

    #[test]
    fn null_content_is_present() {
        let d = decode(r#"{"type":"room_send","room":"r","content":null}"#).unwrap();
        assert_eq!(d.frame.content.map(RawValue::get), Some("null"));
        let d = decode(r#"{"type":"room_send","room":"r"}"#).unwrap();
        assert!(d.frame.content.is_none());
    }

    #[test]
    fn escaped_strings_decode() {
        let d = decode(r#"{"type":"typing","conv":"dm:a\u003ab"}"#).unwrap();
        assert_eq!(d.frame.conv.as_deref(), Some("dm:a:b"));
    }

    #[test]
    fn error_classes() {
        assert_eq!(decode("nope").unwrap_err().code, ErrorCode::BadFrame);
        assert_eq!(decode("[1,2]").unwrap_err().code, ErrorCode::BadFrame);
        assert_eq!(
            decode(r#"{"id":"1"}"#).unwrap_err().code,
            ErrorCode::BadFrame
        );
        let e = decode(r#"{"type":"fly","id":"9"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.id.as_deref()),
            (ErrorCode::UnknownType, Some("9"))
        );
        let e = decode(r#"{"type":"ack","id":"3","seq":"x"}"#).unwrap_err();
        assert_eq!((e.code, e.id.as_deref()), (ErrorCode::Invalid, Some("3")));
        let e = decode(r#"{"type":"ack","seq":-1}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::Invalid);
    }

    #[test]
    fn kinds() {
        let s = RawValue::from_string("\"x\"".into()).unwrap();
        let o = RawValue::from_string("{\"url\":1}".into()).unwrap();
        assert!(check_kind_content("text", &s).is_ok());
        assert!(check_kind_content("text", &o).is_err());
        assert!(check_kind_content("image", &o).is_ok());
        assert!(check_kind_content("image", &s).is_err());
        assert!(check_kind_content("system", &o).is_err());
        assert!(check_kind_content("video", &o).is_err());
    }
}
