//! Property tests of everything a client can put on the wire: the frame
//! decoder never panics, classifies every input, and gives back exactly the
//! fields that were encoded; conversation ids and decimal ids round-trip.
//! The same inputs are fuzzed with `cargo fuzz` (see `fuzz/`); these run in
//! CI on stable.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tern_proto::frames::{decode, FrameType};
use tern_proto::wire::{MsgView, RawJson};
use tern_proto::{ConvId, ErrorCode};

const TYPES: [&str; 16] = [
    "auth",
    "ping",
    "send",
    "ack",
    "read",
    "sync",
    "history",
    "recall",
    "delete",
    "presence",
    "typing",
    "state",
    "join",
    "leave",
    "room_send",
    "read_status",
];

const STRING_FIELDS: [&str; 11] = [
    "id",
    "token",
    "device",
    "to",
    "group",
    "client_msg_id",
    "kind",
    "conv",
    "room",
    "type",
    "content",
];

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,14}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object whose keys are the decoder's own field names (and a few
/// others), each with a value of any JSON type: the inputs most likely to
/// reach every branch of the decoder.
fn frame_like() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        prop::sample::select(STRING_FIELDS.to_vec()).prop_map(str::to_owned),
        prop::sample::select(vec![
            "seq",
            "seqs",
            "since",
            "limit",
            "before_seq",
            "after_seq",
            "users",
            "active"
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,10}",
    ];
    let ty = prop_oneof![
        prop::sample::select(TYPES.to_vec()).prop_map(|t| json!(t)),
        any_json(),
    ];
    (
        prop::collection::btree_map(key, any_json(), 0..8),
        prop::option::of(ty),
    )
        .prop_map(|(fields, ty)| {
            let mut m: Map<String, Value> = fields.into_iter().collect();
            if let Some(t) = ty {
                m.insert("type".into(), t);
            }
            Value::Object(m)
        })
}

/// Checks the decoder's contract on one input: it answers (never panics),
/// and an error carries one of the three decode codes.
fn check_decode(text: &str) {
    match decode(text) {
        Ok(d) => {
            let ty = d.frame.ty.as_deref().expect("a decoded frame has a type");
            assert_eq!(FrameType::parse(ty), Some(d.ty));
        }
        Err(e) => assert!(
            matches!(
                e.code,
                ErrorCode::BadFrame | ErrorCode::UnknownType | ErrorCode::Invalid
            ),
            "{text:?} -> {e:?}"
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics_on_any_text(text in ".{0,200}") {
        check_decode(&text);
    }

    #[test]
    fn decode_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        // A WebSocket text frame is UTF-8; anything else never reaches
        // decode, but a lossy conversion exercises odd characters.
        check_decode(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn decode_classifies_frame_like_objects(v in frame_like()) {
        let text = v.to_string();
        let obj = v.as_object().unwrap();
        let ty = obj.get("type").and_then(Value::as_str);
        let id = obj.get("id").and_then(Value::as_str);
        match decode(&text) {
            Ok(d) => {
                prop_assert_eq!(Some(d.ty), ty.and_then(FrameType::parse));
                prop_assert_eq!(d.frame.id.as_deref(), id);
            }
            Err(e) => {
                match ty.map(FrameType::parse) {
                    None => prop_assert_eq!(e.code, ErrorCode::BadFrame),
                    Some(None) => prop_assert_eq!(e.code, ErrorCode::UnknownType),
                    Some(Some(_)) => prop_assert_eq!(e.code, ErrorCode::Invalid),
                }
                // The request id comes back whenever the frame had a string id
                // (and the frame was an object with a type).
                if ty.is_some() {
                    prop_assert_eq!(e.id.as_deref(), id);
                }
            }
        }
    }

    #[test]
    fn decode_rejects_non_objects(
        v in any_json().prop_map(|v| if v.is_object() { Value::Array(vec![v]) } else { v })
    ) {
        let e = decode(&v.to_string()).unwrap_err();
        prop_assert_eq!(e.code, ErrorCode::BadFrame);
    }

    /// Encode a well-typed frame, decode it, get every field back.
    #[test]
    fn well_typed_frames_round_trip(
        ty in prop::sample::select(TYPES.to_vec()),
        id in prop::option::of(".{0,70}"),
        to in prop::option::of(".{0,70}"),
        conv in prop::option::of(".{0,70}"),
        cmid in prop::option::of(".{0,70}"),
        content in prop::option::of(any_json()),
        seq in prop::option::of(any::<u64>()),
        seqs in prop::option::of(prop::collection::vec(any::<u64>(), 0..8)),
        since in prop::option::of(any::<i64>()),
        users in prop::option::of(prop::collection::vec(".{0,10}", 0..5)),
        active in prop::option::of(any::<bool>()),
    ) {
        let mut m = Map::new();
        m.insert("type".into(), json!(ty));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("id", id.clone().map(Value::String));
        put("to", to.clone().map(Value::String));
        put("conv", conv.clone().map(Value::String));
        put("client_msg_id", cmid.clone().map(Value::String));
        put("content", content.clone());
        put("seq", seq.map(|s| json!(s)));
        put("seqs", seqs.clone().map(|s| json!(s)));
        put("since", since.map(|s| json!(s)));
        put("users", users.clone().map(|u| json!(u)));
        put("active", active.map(Value::Bool));
        let text = Value::Object(m).to_string();
        let d = decode(&text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        prop_assert_eq!(d.ty, FrameType::parse(ty).unwrap());
        let f = &d.frame;
        prop_assert_eq!(f.id.as_deref(), id.as_deref());
        prop_assert_eq!(f.to.as_deref(), to.as_deref());
        prop_assert_eq!(f.conv.as_deref(), conv.as_deref());
        prop_assert_eq!(f.client_msg_id.as_deref(), cmid.as_deref());
        // Content is kept as written, byte for byte.
        let got: Option<&str> = f.content.map(|r| r.get());
        let want = content.as_ref().map(Value::to_string);
        prop_assert_eq!(got, want.as_deref());
        prop_assert_eq!(f.seq, seq);
        prop_assert_eq!(&f.seqs, &seqs);
        prop_assert_eq!(f.since, since);
        let got_users: Option<Vec<String>> =
            f.users.as_ref().map(|u| u.iter().map(|s| s.to_string()).collect());
        prop_assert_eq!(got_users, users);
        prop_assert_eq!(f.active, active);
    }

    /// Server frames: a message view serializes and parses back equal,
    /// whatever its strings and content.
    #[test]
    fn msg_view_round_trips(
        msg_id in any::<u64>(),
        seq in any::<u64>(),
        ts in any::<i64>(),
        conv in ".{0,40}",
        from in ".{0,40}",
        to in prop::option::of(".{0,40}"),
        // A stored message's content is a JSON string or object, never null.
        content in prop::option::of(any_json().prop_filter("not null", |v| !v.is_null())),
        cmid in prop::option::of(".{0,70}"),
        recalled in any::<bool>(),
    ) {
        let content = content.map(|c| RawJson::from_string(c.to_string()).unwrap());
        let v = MsgView {
            msg_id,
            conv: conv.into(),
            seq,
            from: from.into(),
            to: to.map(Into::into),
            group: None,
            kind: "text".into(),
            content,
            ts,
            client_msg_id: cmid.map(Into::into),
            recalled,
            reply_to: None,
            mentions: Vec::new(),
            edited_at: None,
            reactions: Default::default(),
        };
        let text = serde_json::to_string(&v).unwrap();
        let back: MsgView<'static> = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, v);
    }

    /// `msg_id` strings: only plain decimal u64s are accepted.
    #[test]
    fn decimal_ids_parse_only_digits(s in "[0-9+\\- a-f]{0,24}") {
        let text = json!({
            "msg_id": s, "conv": "dm:a:b", "seq": 1, "from": "a", "kind": "text", "ts": 0
        }).to_string();
        let parsed = serde_json::from_str::<MsgView<'static>>(&text).map(|m| m.msg_id).ok();
        let expect = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<u64>().ok()
        } else {
            None
        };
        prop_assert_eq!(parsed, expect);
    }

    /// Conversation ids: `parse` never panics, and whatever it accepts
    /// prints back to the same text.
    #[test]
    fn conv_ids_round_trip(s in "(dm:|group:)?[a-zA-Z0-9_.:\\-]{0,80}") {
        if let Some(c) = ConvId::parse(&s) {
            prop_assert_eq!(c.to_string(), s);
        }
    }

    #[test]
    fn dm_is_canonical(a in "[a-z0-9]{1,10}", b in "[a-z0-9]{1,10}") {
        let c = ConvId::dm(&a, &b);
        prop_assert_eq!(&c, &ConvId::dm(&b, &a));
        prop_assert_eq!(ConvId::parse(&c.to_string()), Some(c));
    }
}
