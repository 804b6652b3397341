//! Risks of the MySQL/MariaDB backend that the shared suite does not
//! reach: lock order across nodes, byte-wise id comparison, concurrent
//! migrations, and fast failure when the server is down.

mod common;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_core::store::{Appended, Store, StoreError};
use tern_store_conformance::{dm, send, user};
use tern_store_sql::{MySqlOptions, MySqlStore};

/// Two nodes append batches touching the same conversations (and the same
/// users' rows) in opposite orders: deadlocks are retried inside the
/// store, never reach the caller, and seqs stay gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opposite_order_batches_do_not_fail() {
    let Some((a, ctx)) = common::open().await else {
        return;
    };
    let b = common::reopen(&ctx).await;
    let rounds = 25;
    let task = |store: Arc<dyn Store>, tag: &'static str, forward: bool| {
        tokio::spawn(async move {
            for i in 0..rounds {
                let mut batch = vec![
                    dm("ann", "bob", i, &format!("{tag}ab{i}")),
                    dm("cat", "bob", i, &format!("{tag}cb{i}")),
                    dm("bob", "dan", i, &format!("{tag}bd{i}")),
                ];
                if !forward {
                    batch.reverse();
                }
                let out = store.append_messages(batch).await.expect("append");
                assert!(out.iter().all(|o| matches!(o, Appended::New(_))), "{out:?}");
                // Acks of the same rows, in batch, from the same node.
                store
                    .ack("bob", "dm:ann:bob", u64::MAX, Some("ann"))
                    .await
                    .expect("ack");
            }
        })
    };
    let t1 = task(a.clone(), "w", true);
    let t2 = task(b.clone(), "x", false);
    let t3 = task(b.clone(), "y", true);
    let t4 = task(a.clone(), "z", false);
    for t in [t1, t2, t3, t4] {
        t.await.expect("task");
    }
    for conv in ["dm:ann:bob", "dm:bob:cat", "dm:bob:dan"] {
        assert_eq!(a.max_seq(conv).await.unwrap(), 4 * rounds as u64);
        let seqs = support::history_seqs(&*a, "bob", conv).await;
        assert_eq!(seqs, (1..=4 * rounds as u64).collect::<Vec<u64>>());
    }
}

/// Ids compare by bytes: ids differing only in case are different users
/// and conversations, and client_msg_ids differing in trailing spaces are
/// different keys.
#[tokio::test]
async fn ids_compare_by_bytes() {
    let Some((s, _ctx)) = common::open().await else {
        return;
    };
    s.create_user(user("ann", 1)).await.unwrap();
    s.create_user(user("Ann", 2)).await.unwrap();
    assert!(matches!(
        s.create_user(user("Ann", 3)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(s.get_user("Ann").await.unwrap(), Some(user("Ann", 2)));
    assert_eq!(s.get_user("ANN").await.unwrap(), None);
    // (User ids are utf8mb4_bin, a PAD SPACE collation: "ann " would find
    // "ann". The service allows no spaces in ids; client_msg_ids, which may
    // hold any character, are VARBINARY.)

    assert_eq!(send(&*s, dm("ann", "bob", 10, "k")).await.seq, 1);
    assert_eq!(send(&*s, dm("Ann", "bob", 11, "k")).await.seq, 1);
    assert_eq!(send(&*s, dm("ann", "bob", 12, "K")).await.seq, 2);
    assert_eq!(send(&*s, dm("ann", "bob", 13, "k ")).await.seq, 3);
    let again = s
        .append_messages(vec![dm("ann", "bob", 14, "k ")])
        .await
        .unwrap();
    assert!(
        matches!(&again[0], Appended::Duplicate(m) if m.seq == 3 && m.client_msg_id.as_deref() == Some("k ")),
        "{again:?}"
    );
    assert_eq!(s.max_seq("dm:ann:bob").await.unwrap(), 3);
    assert_eq!(s.max_seq("dm:Ann:bob").await.unwrap(), 1);
    let q = s.offline_fetch("bob", 100).await.unwrap();
    assert_eq!(q.msgs.len(), 4);
}

/// Several nodes starting at once on an empty database all come up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations() {
    let Some(ctx) = common::new_ctx().await else {
        return;
    };
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let url = ctx.url.clone();
            tokio::spawn(async move { MySqlStore::connect(&url, MySqlOptions::default()).await })
        })
        .collect();
    let mut stores = Vec::new();
    for t in tasks {
        stores.push(t.await.expect("task").expect("connect"));
    }
    for s in &stores {
        s.health().await.unwrap();
    }
    assert_eq!(send(&stores[3], dm("ann", "bob", 1, "m")).await.seq, 1);
}

/// No server: `connect` fails fast with a backend error.
#[tokio::test]
async fn unreachable_server_fails_fast() {
    let started = Instant::now();
    let r = MySqlStore::connect(
        "mysql://root:secret@127.0.0.1:1/none",
        MySqlOptions::default(),
    )
    .await;
    assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A TCP forwarder to the test server that can be cut (every connection
/// closed, new ones closed at once) and restored, to stand for an outage.
struct Proxy {
    addr: std::net::SocketAddr,
    up: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (up, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*watch.borrow() {
                    continue;
                }
                let mut watch = watch.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { addr, up }
    }

    fn set_up(&self, up: bool) {
        let _ = self.up.send(up);
    }
}

/// `url` with its host and port replaced by `addr`.
fn with_host(url: &str, addr: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let host_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    format!("{}{addr}{}", &url[..host_start], &url[end..])
}

/// While the server is unreachable every call fails fast with a backend
/// error; once it is back the same store works again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_fast_and_recovers() {
    assert_eq!(
        with_host("mysql://root:pw@db:3306/x?a=b", "127.0.0.1:9"),
        "mysql://root:pw@127.0.0.1:9/x?a=b"
    );
    let Some(ctx) = common::new_ctx().await else {
        return;
    };
    let opts: sqlx::mysql::MySqlConnectOptions = ctx.url.parse().expect("url");
    let proxy = Proxy::start(format!("{}:{}", opts.get_host(), opts.get_port())).await;
    let url = with_host(&ctx.url, &proxy.addr.to_string());
    let s = MySqlStore::connect(&url, MySqlOptions::default())
        .await
        .expect("connect through the proxy");
    assert_eq!(send(&s, dm("ann", "bob", 1, "o1")).await.seq, 1);

    proxy.set_up(false);
    let started = Instant::now();
    assert!(matches!(s.health().await, Err(StoreError::Backend(_))));
    assert!(matches!(
        s.append_messages(vec![dm("ann", "bob", 2, "o2")]).await,
        Err(StoreError::Backend(_))
    ));
    assert!(matches!(
        s.max_seq("dm:ann:bob").await,
        Err(StoreError::Backend(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    proxy.set_up(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.health().await.is_err() {
        assert!(Instant::now() < deadline, "the pool did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(send(&s, dm("ann", "bob", 3, "o3")).await.seq, 2);
}

/// A member removed on one node while sending on another: each of their
/// messages is either stored before the removal or refused, never after
/// it, because membership is checked under the conversation's lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removal_races_sends_across_nodes() {
    use tern_core::store::Refusal;
    use tern_store_conformance::{create, gmsg, join, leave};
    let Some((a, ctx)) = common::open().await else {
        return;
    };
    let b = common::reopen(&ctx).await;
    send(&*a, create("race", "ann", 1)).await;
    send(&*a, join("race", "ann", "bob", 2)).await;
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..40 {
                let out = a
                    .append_messages(vec![gmsg("race", "bob", 10 + i, &format!("b{i}"))])
                    .await
                    .expect("append");
                outcomes.push(out.into_iter().next().expect("one outcome"));
            }
            outcomes
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let removal = send(&*b, leave("race", "ann", "bob", 5)).await.seq;
    let outcomes = sender.await.expect("sender");
    let mut refused = false;
    for o in &outcomes {
        match o {
            Appended::New(m) => {
                assert!(!refused, "stored after a refusal: {o:?}");
                assert!(m.seq < removal, "stored after the removal: {o:?}");
            }
            Appended::Refused(Refusal::NotMember) => refused = true,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(
        a.group_version("race").await.unwrap(),
        Some(removal),
        "the removal is the newest membership change"
    );
    let members = b.get_group("race").await.unwrap().unwrap().members;
    assert_eq!(members, vec!["ann".to_owned()]);
}

/// A version 1 database whose ids repeat (a clock stepped back across a
/// restart) is upgraded: the oldest copy keeps its id, later copies move
/// above every stored id, and the new unique index refuses repeats.
#[tokio::test]
async fn upgrade_from_version_1_makes_ids_unique() {
    use sqlx::Connection;
    let Some((store, ctx)) = common::open().await else {
        return;
    };
    drop(store);
    let mut c = sqlx::MySqlConnection::connect(&ctx.url).await.unwrap();
    for q in [
        "ALTER TABLE messages DROP INDEX messages_msg_id",
        "UPDATE tern_schema SET version = 1 WHERE id = 1",
        "INSERT INTO messages (conv, seq, msg_id, from_user, kind, content, ts) VALUES \
             ('dm:a:b', 1, 500, 'a', 'text', '1', 1), ('dm:a:b', 2, 900, 'a', 'text', '1', 2), \
             ('dm:a:b', 3, 500, 'b', 'text', '1', 3), ('dm:a:c', 1, 500, 'a', 'text', '1', 4)",
    ] {
        sqlx::query(q).execute(&mut c).await.unwrap();
    }
    c.close().await.unwrap();
    let store = common::reopen(&ctx).await;
    support::assert_msg_ids_made_unique(&*store).await;
    let mut c = sqlx::MySqlConnection::connect(&ctx.url).await.unwrap();
    let repeat = sqlx::query(
        "INSERT INTO messages (conv, seq, msg_id, from_user, kind, content, ts) \
         VALUES ('dm:a:b', 4, 900, 'a', 'text', '1', 5)",
    )
    .execute(&mut c)
    .await;
    assert!(repeat.is_err(), "a repeated msg_id was stored");
    let version: i64 = sqlx::query_scalar("SELECT version FROM tern_schema WHERE id = 1")
        .fetch_one(&mut c)
        .await
        .unwrap();
    support::assert_upgraded(&*store, version).await;
}

/// 5.4 and blocks: a version 3 database (groups without settings, members
/// without roles, no blocks) keeps its groups, which start open and plain,
/// and takes roles and blocks after the upgrade.
#[tokio::test]
async fn upgrade_from_version_3_keeps_groups() {
    use sqlx::Connection;
    use tern_store_conformance::{create, join};
    let Some((store, ctx)) = common::open().await else {
        return;
    };
    send(&*store, create("old", "ann", 1)).await;
    send(&*store, join("old", "ann", "bob", 2)).await;
    drop(store);
    let mut c = sqlx::MySqlConnection::connect(&ctx.url).await.unwrap();
    for q in [
        "ALTER TABLE chat_groups DROP COLUMN announcement, DROP COLUMN muted_all, \
             DROP COLUMN dissolved",
        "ALTER TABLE group_members DROP COLUMN admin, DROP COLUMN muted_until",
        "DROP TABLE blocks",
        "UPDATE tern_schema SET version = 3 WHERE id = 1",
    ] {
        sqlx::query(q).execute(&mut c).await.unwrap();
    }
    c.close().await.unwrap();
    let store = common::reopen(&ctx).await;
    support::assert_groups_upgraded(&*store).await;
}
