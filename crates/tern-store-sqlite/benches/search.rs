//! 5.2 search on the embedded store: fills a store with
//! `TERN_BENCH_MESSAGES` (default 1,000,000) text messages in 1,000
//! conversations through the `Store` API, indexes them, then times
//! searches of one user (one rare word, one common word, a prefix, a CJK
//! pair) and prints p50 and p99; then the same for `hub`, a user in 1,000
//! conversations more (one message each, with all sixteen words). Run with
//! `cargo bench -p tern-store-sqlite --bench search`.

use std::time::{Duration, Instant};
use tern_core::search::{query_terms, SearchQuery};
use tern_core::store::{NewMessage, Store};
use tern_store_sqlite::{SqliteOptions, SqliteStore};

const WORDS: [&str; 16] = [
    "hello", "meeting", "tomorrow", "lunch", "project", "deadline", "coffee", "weekend", "report",
    "call", "北京", "会议", "明天", "travel", "budget", "review",
];

fn message(i: u64) -> NewMessage {
    let (a, b) = (format!("u{}", i % 1000), format!("v{}", i % 1000));
    let w = |k: u64| WORDS[((i * 7 + k * 13) % 16) as usize];
    let rare = if i.is_multiple_of(10_000) {
        " zebra"
    } else {
        ""
    };
    NewMessage {
        msg_id: i + 1,
        conv: format!("dm:{a}:{b}"),
        from: a.clone(),
        to: Some(b.clone()),
        group: None,
        kind: "text".into(),
        content: serde_json::to_string(&format!("{} {} {} number {i}{rare}", w(1), w(2), w(3)))
            .unwrap(),
        ts: 1_795_000_000_000 + i as i64,
        client_msg_id: Some(format!("c{i}")),
        participants: vec![a, b],
        inbox_members_up_to: 0,
        change: None,
        extras: Default::default(),
    }
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn main() {
    let n: u64 = std::env::var("TERN_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    rt.block_on(async {
        let t = Instant::now();
        let mut i = 0;
        while i < n {
            let batch: Vec<_> = (i..(i + 1000).min(n)).map(message).collect();
            i += batch.len() as u64;
            store.append_messages(batch).await.unwrap();
        }
        println!("stored {n} messages in {:.1?}", t.elapsed());
        let t = Instant::now();
        while store.index_pending(5000).await.unwrap() > 0 {}
        println!("indexed them in {:.1?}", t.elapsed());
        let hub: Vec<_> = (0..1000u64)
            .map(|k| {
                let mut m = message(n + k);
                let peer = format!("u{k}");
                m.conv = format!("dm:hub:{peer}");
                m.from = "hub".into();
                m.to = Some(peer.clone());
                m.participants = vec!["hub".into(), peer];
                m.content = serde_json::to_string(&WORDS.join(" ")).unwrap();
                m
            })
            .collect();
        store.append_messages(hub).await.unwrap();
        while store.index_pending(5000).await.unwrap() > 0 {}
        for (q, who) in ["zebra", "meeting", "meet", "北京", "coffee lunch"]
            .into_iter()
            .map(|q| (q, "one user"))
            .chain(["zebra", "meeting", "北京"].into_iter().map(|q| (q, "hub")))
        {
            let query = SearchQuery {
                terms: query_terms(q).unwrap(),
                conv: None,
                before_ts: None,
                limit: 20,
            };
            let mut times = Vec::new();
            let mut hits = 0;
            for k in 0..200u64 {
                let user = if who == "hub" {
                    "hub".to_string()
                } else {
                    format!("u{}", (k * 37) % 1000)
                };
                let t = Instant::now();
                hits = store.search(&user, &query).await.unwrap().len();
                times.push(t.elapsed());
            }
            println!(
                "search {q:?} ({who}, limit 20, {hits} hits): p50 {:.2?}, p99 {:.2?}",
                pct(times.clone(), 0.5),
                pct(times, 0.99)
            );
        }
    });
}
