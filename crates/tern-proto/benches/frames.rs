//! Frame decode (every client frame) and push encode (every stored message,
//! once per message whatever the number of recipients).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde_json::value::RawValue;
use std::borrow::Cow;
use tern_proto::frames::decode;
use tern_proto::wire::{MsgPush, MsgView, RawJson};

fn frames(c: &mut Criterion) {
    let send = r#"{"type":"send","id":"42","to":"bob","client_msg_id":"6f1c0b3e-9d1a-4e57-a8a4-2c9f4f6b1d20","kind":"text","content":"hello, this is a short chat message"}"#;
    let ack = r#"{"type":"ack","conv":"dm:alice:bob","seq":41}"#;
    let mut g = c.benchmark_group("frames");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_send", |b| {
        b.iter(|| decode(black_box(send)).unwrap())
    });
    g.bench_function("decode_ack", |b| b.iter(|| decode(black_box(ack)).unwrap()));
    let content = RawValue::from_string("\"hello, this is a short chat message\"".into()).unwrap();
    g.bench_function("encode_msg_push", |b| {
        b.iter(|| {
            let push = MsgPush::new(MsgView {
                msg_id: black_box(7311845012345678901),
                conv: Cow::Borrowed("dm:alice:bob"),
                seq: black_box(41),
                from: Cow::Borrowed("alice"),
                to: Some(Cow::Borrowed("bob")),
                group: None,
                kind: Cow::Borrowed("text"),
                content: Some(RawJson::borrowed(&content)),
                ts: 1_795_000_000_000,
                client_msg_id: Some(Cow::Borrowed("6f1c0b3e-9d1a-4e57-a8a4-2c9f4f6b1d20")),
                recalled: false,
                reply_to: None,
                mentions: Vec::new(),
                edited_at: None,
                reactions: Default::default(),
            });
            serde_json::to_vec(&push).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
