//! 5.6 scheduled messages across a crash of the `tern` binary: a message
//! scheduled before a kill -9 is sent once after the restart, and a row
//! left behind by a crash between the send's commit and the row's
//! removal is sent again as a no-op (dedup by its `client_msg_id`).

use std::time::Duration;
use tern_client::OutMessage;
use tern_core::store::Store;
use tokio::time::timeout;

mod support;
use support::{Tern, WAIT};

fn now() -> i64 {
    tern_core::now_ms()
}

/// Bob's view of the conversation once it holds `n` messages (or what
/// it holds after `WAIT`).
async fn history_of(server: &Tern, n: usize) -> Vec<tern_client::wire::MsgView<'static>> {
    let bob = server.login_client("bob").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let h = bob
            .messages("dm:alice:bob", None, None, Some(100))
            .await
            .expect("history");
        if h.msgs.len() >= n || tokio::time::Instant::now() >= deadline {
            return h.msgs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_message_is_sent_once_after_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Tern::start(dir.path()).await;
    server.register("alice").await;
    server.register("bob").await;
    let alice = server.login_client("alice").await;
    let at = now() + 2000;
    let ok = timeout(
        WAIT,
        alice.schedule_http(
            OutMessage::text_to("bob", "scheduled")
                .with_client_msg_id("s1")
                .at(at),
        ),
    )
    .await
    .unwrap()
    .expect("scheduled");
    server.kill9().await;
    // Down past its time.
    let left = at - now() + 300;
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
    let server = Tern::start(dir.path()).await;
    let msgs = history_of(&server, 1).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0].client_msg_id.as_deref(), Some("s1"));
    assert_eq!(msgs[0].seq, 1);
    let alice = server.login_client("alice").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !alice.scheduled().await.unwrap().scheduled.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the row stays");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill9().await;

    // A crash after the send committed but before its row was removed:
    // the row is back (as that crash leaves it), due, on the stopped
    // server's data.
    {
        let store = tern_store_sqlite::SqliteStore::open(dir.path(), Default::default())
            .expect("open the store");
        let row = tern_core::store::Scheduled {
            id: ok.scheduled.to_string(),
            user: "alice".into(),
            conv: "dm:alice:bob".into(),
            peer: "bob".into(),
            at,
            kind: "text".into(),
            content: "\"scheduled\"".into(),
            client_msg_id: "s1".into(),
            reply_to: 0,
            mentions: Vec::new(),
            created_at: at - 2000,
        };
        store.schedule(&row, 100).await.expect("row back");
    }
    let server = Tern::start(dir.path()).await;
    let alice = server.login_client("alice").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !alice.scheduled().await.unwrap().scheduled.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the row stays");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let msgs = history_of(&server, 1).await;
    assert_eq!(msgs.len(), 1, "sent once: {msgs:?}");
    server.kill9().await;
}
