//! Fan-out of one pushed frame to 500 online recipients through the hub:
//! the frame is encoded once and shared (`Bytes`), each recipient's queue
//! gets a reference. Each iteration also drains the queues, as the writers
//! would.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;
use tern_core::hub::{Conn, Hub};
use tern_core::push::{Outbound, Push};

fn fanout(c: &mut Criterion) {
    const N: usize = 500;
    let hub = Hub::new();
    let mut rxs = Vec::new();
    let mut users: Vec<Arc<str>> = Vec::new();
    for i in 0..N {
        let name = format!("user{i}");
        let (conn, rx) = Conn::new(&name, "phone", 64);
        hub.register(conn);
        rxs.push(rx);
        users.push(name.into());
    }
    let frame = Bytes::from_static(br#"{"type":"msg","msg":{"msg_id":"7311845012345678901","conv":"group:g1","seq":41,"from":"user0","group":"g1","kind":"text","content":"hello","ts":1795000000000}}"#);
    let conv: Arc<str> = "group:g1".into();
    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Elements(N as u64));
    for (name, out) in [
        (
            "tracked_msg_to_500",
            Outbound::Msg {
                conv: conv.clone(),
                seq: 41,
                frame: frame.clone(),
            },
        ),
        ("batched_to_500", Outbound::Batched(frame.clone())),
    ] {
        let push = Push {
            users: users.clone(),
            except: Some((users[0].clone(), "phone".into())),
            out,
            inactive: None,
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let n = hub.deliver(&push);
                assert_eq!(n, N - 1);
                for rx in rxs.iter() {
                    while rx.try_recv().is_ok() {}
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
