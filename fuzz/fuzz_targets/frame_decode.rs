//! The client frame decoder (`tern_proto::frames::decode`) on any text: it
//! answers every input without panicking, a decoded frame has a known
//! type, an error has one of the three decode codes, and re-encoding the
//! decoded fields decodes to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use tern_proto::frames::{decode, ClientFrame, FrameType};
use tern_proto::ErrorCode;

/// The decoded fields as JSON, and the content as written (raw text: a
/// float would not survive a parse and print unchanged).
fn fields(f: &ClientFrame<'_>) -> (Value, Option<String>) {
    let mut m = Map::new();
    let mut s = |k: &str, v: &Option<std::borrow::Cow<'_, str>>| {
        if let Some(v) = v {
            m.insert(k.into(), json!(v.as_ref()));
        }
    };
    s("type", &f.ty);
    s("id", &f.id);
    s("token", &f.token);
    s("device", &f.device);
    s("to", &f.to);
    s("group", &f.group);
    s("client_msg_id", &f.client_msg_id);
    s("kind", &f.kind);
    s("conv", &f.conv);
    s("room", &f.room);
    let mut n = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    n("seq", f.seq.map(|v| json!(v)));
    n("seqs", f.seqs.as_ref().map(|v| json!(v)));
    n("since", f.since.map(|v| json!(v)));
    n("limit", f.limit.map(|v| json!(v)));
    n("before_seq", f.before_seq.map(|v| json!(v)));
    n("after_seq", f.after_seq.map(|v| json!(v)));
    n(
        "users",
        f.users
            .as_ref()
            .map(|u| json!(u.iter().map(|s| s.as_ref()).collect::<Vec<_>>())),
    );
    n("active", f.active.map(Value::Bool));
    (Value::Object(m), f.content.map(|c| c.get().to_owned()))
}

/// A frame's text from its fields, the content spliced in as written.
fn encode((v, content): &(Value, Option<String>)) -> String {
    let mut t = v.to_string();
    if let Some(raw) = content {
        t.pop();
        if t.len() > 1 {
            t.push(',');
        }
        t.push_str("\"content\":");
        t.push_str(raw);
        t.push('}');
    }
    t
}

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 by the time they reach the decoder.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode(text) {
        Ok(d) => {
            assert_eq!(FrameType::parse(d.frame.ty.as_deref().unwrap()), Some(d.ty));
            let once = fields(&d.frame);
            let again = encode(&once);
            let d2 = decode(&again).expect("re-encoded frame decodes");
            assert_eq!(fields(&d2.frame), once, "round trip of {text:?}");
        }
        Err(e) => assert!(matches!(
            e.code,
            ErrorCode::BadFrame | ErrorCode::UnknownType | ErrorCode::Invalid
        )),
    }
});
