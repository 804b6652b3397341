//! Group commit: appending a batch of 1:1 messages in one durable
//! transaction, as the pipeline does under load.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tern_core::store::{NewMessage, Store};
use tern_store_sqlite::{SqliteOptions, SqliteStore};

fn message(i: u64) -> NewMessage {
    let (a, b) = (format!("s{}", i % 100), format!("r{}", i % 100));
    NewMessage {
        msg_id: i + 1,
        conv: format!("dm:{a}:{b}"),
        from: a.clone(),
        to: Some(b.clone()),
        group: None,
        kind: "text".into(),
        content: "\"hello, this is a short chat message\"".into(),
        ts: 1_795_000_000_000 + i as i64,
        client_msg_id: Some(format!("c{i}")),
        participants: vec![a, b.clone()],
        inbox_members_up_to: 0,
        change: None,
        extras: Default::default(),
    }
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(async {
            let d = dir.path().to_owned();
            tokio::task::spawn_blocking(move || SqliteStore::open(&d, SqliteOptions::default()))
                .await
        })
        .unwrap()
        .unwrap();
    let mut next = 0u64;
    let mut g = c.benchmark_group("store");
    for size in [1usize, 100] {
        g.throughput(Throughput::Elements(size as u64));
        g.bench_function(format!("append_batch_{size}"), |b| {
            b.iter_batched(
                || {
                    let batch: Vec<NewMessage> = (next..next + size as u64).map(message).collect();
                    next += size as u64;
                    batch
                },
                |batch| rt.block_on(store.append_messages(batch)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
