//! Storage behaviour seen through the server: message ids across restarts,
//! and the offline fetch over a large queue. Data the scenario needs is
//! written straight into the embedded store while the server is stopped.

use crate::common::Server;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tern_client::OutMessage;
use tern_core::ids::{node_of, IdGen};
use tern_core::store::{NewMessage, Store};
use tern_store_sqlite::{SqliteOptions, SqliteStore};

async fn open_store(dir: &Path) -> Arc<dyn Store> {
    let dir = dir.to_owned();
    let s = tokio::task::spawn_blocking(move || SqliteStore::open(&dir, SqliteOptions::default()))
        .await
        .unwrap()
        .expect("open the store");
    Arc::new(s)
}

/// A 1:1 text message as the server would store it.
fn dm(msg_id: u64, from: &str, to: &str, ts: i64, cmid: &str) -> NewMessage {
    let (a, b) = if from <= to { (from, to) } else { (to, from) };
    NewMessage {
        msg_id,
        conv: format!("dm:{a}:{b}"),
        from: from.into(),
        to: Some(to.into()),
        group: None,
        kind: "text".into(),
        content: format!("\"{cmid}\""),
        ts,
        client_msg_id: Some(cmid.into()),
        participants: vec![from.into(), to.into()],
        inbox_members_up_to: 0,
        change: None,
        extras: Default::default(),
    }
}

fn msg_id(v: &serde_json::Value) -> u64 {
    v["msg_id"]
        .as_str()
        .unwrap_or_else(|| panic!("msg_id: {v}"))
        .parse()
        .unwrap()
}

/// A message stored with an id an hour ahead of the clock (the clock then
/// stepped back, or the node ran on a fast clock): after a restart, the
/// node's new ids are above it, never equal or below.
#[tokio::test]
async fn ids_stay_above_the_newest_stored_across_restart() {
    let server = Server::start().await;
    let ann = server.user("ann").await;
    server.user("bob").await;
    // What an application sees: the SDK's session and its typed answers.
    let (c, _events) = server.session(&ann, "d").await;
    let first = c.send(OutMessage::text_to("bob", "before")).await.unwrap();
    let node = node_of(first.msg_id);
    c.close().await;
    let dir = server.stop().await;

    let now = tern_core::now_ms();
    let future = IdGen::new(node).next(now + 3_600_000);
    let store = open_store(dir.path()).await;
    store
        .append_messages(vec![dm(future, "bob", "ann", now, "future")])
        .await
        .unwrap();
    drop(store);

    let server = Server::start_in(dir, |_| {}).await;
    let ann = server.login("ann").await;
    let (c, _events) = server.session(&ann, "d").await;
    let mut last = future;
    for _ in 0..20 {
        let ok = c.send(OutMessage::text_to("bob", "after")).await.unwrap();
        assert!(!ok.duplicate, "a new message: {ok:?}");
        let id = ok.msg_id;
        assert!(id > last, "id {id} not above {last}");
        assert_eq!(node_of(id), node);
        last = id;
    }
}

/// Fills `user`'s offline queue: `convs` senders, `per_conv` messages
/// each, interleaved (round r sends one message from every sender).
/// Returns the senders.
async fn fill_queue(dir: &Path, user: &str, convs: usize, per_conv: usize) -> Vec<String> {
    let store = open_store(dir).await;
    let senders: Vec<String> = (0..convs).map(|i| format!("s{i:02}")).collect();
    let mut ids = IdGen::new(0);
    let now = tern_core::now_ms();
    for r in 0..per_conv {
        let batch = senders
            .iter()
            .map(|s| dm(ids.next(now), s, user, now, &format!("{s}-{r}")))
            .collect();
        store.append_messages(batch).await.unwrap();
    }
    senders
}

/// 50 conversations x 1,000 queued messages, cap 1,000: the newest 1,000
/// are pushed (the last 20 of each conversation), in seq order within
/// each conversation and in arrival order overall; `truncated` is set once.
#[tokio::test]
async fn offline_fetch_of_a_large_queue_keeps_the_newest_cap() {
    let server = Server::start().await;
    server.user("zoe").await;
    let dir = server.stop().await;
    let senders = fill_queue(dir.path(), "zoe", 50, 1000).await;

    let server = Server::start_in(dir, |_| {}).await;
    let zoe = server.login("zoe").await;
    let (c, (msgs, done)) = server.connect_offline(&zoe, "phone").await;
    assert_eq!(done["count"], 1000, "{done}");
    assert_eq!(done["truncated"], true, "{done}");
    assert_eq!(msgs.len(), 1000);
    let ids: Vec<u64> = msgs.iter().map(|m| msg_id(&m["msg"])).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "arrival order");
    for s in &senders {
        let conv = format!("dm:{s}:zoe");
        let seqs: Vec<u64> = msgs
            .iter()
            .filter(|m| m["msg"]["conv"] == conv.as_str())
            .map(|m| m["msg"]["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (981..=1000).collect::<Vec<u64>>(), "{conv}");
    }
    drop(c);
    // Reported once: the dropped messages left the queue; the kept ones
    // are still queued (not acknowledged).
    let (_c, (again, done)) = server.connect_offline(&zoe, "phone").await;
    assert_eq!(
        (done["count"].as_u64(), done["truncated"].as_bool()),
        (Some(1000), Some(false))
    );
    assert_eq!(
        again.iter().map(|m| msg_id(&m["msg"])).collect::<Vec<_>>(),
        ids
    );
}

/// Measures login-to-`offline_done` for 50 conversations x 1,000 queued
/// messages (ignored: a measurement, not a check). Run with
/// `cargo test -p tern-server --test it offline_fetch_timing -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn offline_fetch_timing() {
    let server = Server::start().await;
    server.user("zoe").await;
    let dir = server.stop().await;
    fill_queue(dir.path(), "zoe", 50, 1000).await;
    let server = Server::start_in(dir, |_| {}).await;
    let mut times = Vec::new();
    for round in 0..5 {
        // The first login drops the older 49,000; later ones read the 1,000
        // that stay queued.
        let t = Instant::now();
        let (st, v) = server
            .post(
                "/v1/sessions",
                None,
                json!({"user": "zoe", "password": "password1"}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        let token = v["token"].as_str().unwrap().to_owned();
        let (_c, (msgs, done)) = server.connect_offline(&token, "phone").await;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(msgs.len(), 1000, "{done}");
        println!(
            "round {round}: login to offline_done {ms:.1} ms (truncated {})",
            done["truncated"]
        );
        times.push(ms);
    }
}
