//! The shared `Store` conformance suite (`tern-store-conformance`) against
//! the PostgreSQL store, each test in a fresh schema of the database named
//! by `TERN_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped afterwards. Outside
//! CI the tests skip when PostgreSQL is not reachable; with `CI` set they
//! fail.

mod support;

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tern_core::store::{Appended, NewMessage, Store, StoreError};
use tern_store_sql::{PgOptions, PgStore};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A test's schema; dropped with it.
struct Ctx {
    url: String,
    schema: String,
}

impl Ctx {
    /// The URL of the store: the test database with the schema as its
    /// `search_path`.
    fn store_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}options=-c%20search_path%3D{}",
            self.url, self.schema
        )
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Its own runtime on its own thread: drop may run inside the test's
        // runtime, which must not block.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut c = PgConnection::connect(&url).await?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                )))
                .execute(&mut c)
                .await?;
                c.close().await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test schema {}: {e}", self.schema);
        }
    }
}

fn base_url() -> String {
    std::env::var("TERN_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

fn schema_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    format!("tern_t_{:016x}", h.finish())
}

async fn create_schema(url: &str, schema: &str) -> Result<(), String> {
    let connect = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(url));
    let mut c = match connect.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("timed out".into()),
    };
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    c.close().await.map_err(|e| e.to_string())
}

async fn reopen(ctx: &Ctx) -> Arc<dyn Store> {
    let store = PgStore::connect(&ctx.store_url(), PgOptions::default())
        .await
        .expect("connect the PostgreSQL store");
    Arc::new(store)
}

async fn open() -> Option<(Arc<dyn Store>, Ctx)> {
    let url = base_url();
    let schema = schema_name();
    if let Err(e) = create_schema(&url, &schema).await {
        if std::env::var_os("CI").is_some() {
            panic!("PostgreSQL not reachable at {url} ({e}); CI is set, so the tests fail instead of skipping");
        }
        eprintln!("skipping: PostgreSQL not reachable at {url} ({e})");
        return None;
    }
    let ctx = Ctx { url, schema };
    let store = reopen(&ctx).await;
    Some((store, ctx))
}

tern_store_conformance::suite!(open: open, reopen: reopen);
tern_store_conformance::search_access_property!(open: open, cases: 24);
tern_store_conformance::shared_suite!(open: open, reopen: reopen);

// ----- PostgreSQL-specific risks -----

/// Two nodes append batches that touch the same two conversations in
/// opposite orders: the conversation locks are taken in sorted order, so no
/// deadlock reaches the caller, and each conversation's seqs stay gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crossed_batches_do_not_deadlock() {
    let Some((store, ctx)) = open().await else {
        return;
    };
    let other = reopen(&ctx).await;
    let rounds = 40;
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let s = if t % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                for i in 0..rounds {
                    let a = tern_store_conformance::dm("ann", "bob", i, &format!("x{t}-{i}"));
                    let b = tern_store_conformance::dm("cat", "dan", i, &format!("y{t}-{i}"));
                    let batch: Vec<NewMessage> = if t % 2 == 0 { vec![a, b] } else { vec![b, a] };
                    let out = s.append_messages(batch).await.expect("no deadlock");
                    assert!(out.iter().all(|o| matches!(o, Appended::New(_))), "{out:?}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    for conv in ["dm:ann:bob", "dm:cat:dan"] {
        let seqs = support::history_seqs(&*store, "ann", conv).await;
        assert_eq!(
            seqs,
            (1..=4 * rounds as u64).collect::<Vec<u64>>(),
            "{conv}"
        );
        assert_eq!(store.max_seq(conv).await.unwrap(), 4 * rounds as u64);
    }
}

/// A duplicate sent through two nodes into different conversations at the
/// same moment (same sender and client_msg_id): one is stored, the other
/// answers with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_across_conversations() {
    let Some((store, ctx)) = open().await else {
        return;
    };
    let other = reopen(&ctx).await;
    for round in 0..10 {
        let key = format!("k{round}");
        let a = tern_store_conformance::dm("ann", "bob", 1, &key);
        let b = tern_store_conformance::dm("ann", "cat", 1, &key);
        let (x, y) = tokio::join!(
            store.append_messages(vec![a]),
            other.append_messages(vec![b])
        );
        let (x, y) = (x.unwrap().remove(0), y.unwrap().remove(0));
        let (xm, ym) = (x.message().unwrap(), y.message().unwrap());
        assert_eq!((&xm.conv, xm.seq), (&ym.conv, ym.seq), "{x:?} {y:?}");
        let news = [&x, &y]
            .iter()
            .filter(|o| matches!(o, Appended::New(_)))
            .count();
        assert_eq!(news, 1, "{x:?} {y:?}");
    }
    let total =
        store.max_seq("dm:ann:bob").await.unwrap() + store.max_seq("dm:ann:cat").await.unwrap();
    assert_eq!(total, 10);
}

/// An unreachable server: `connect` fails fast with a backend error.
#[tokio::test]
async fn unreachable_server_fails_fast() {
    let started = std::time::Instant::now();
    let r = PgStore::connect("postgres://postgres@127.0.0.1:1/test", PgOptions::default()).await;
    assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Forwards TCP connections from a local port to PostgreSQL until stopped;
/// stopping closes every forwarded connection, as a server going away
/// would.
struct Proxy {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(port: u16, target: String) -> (Proxy, u16) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let mut halt = stopped.clone();
                tokio::select! {
                    _ = halt.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { break };
                        let target = target.clone();
                        let mut halt = stopped.clone();
                        tokio::spawn(async move {
                            let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                                return;
                            };
                            tokio::select! {
                                _ = halt.changed() => {}
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            }
                        });
                    }
                }
            }
        });
        (Proxy { stop, task }, port)
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        // Let the connection tasks see the signal and close their sockets.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// PostgreSQL goes away: calls fail fast with a backend error; when it is
/// back, the same store works again without being reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_fast_and_pool_recovers() {
    let Some((store, ctx)) = open().await else {
        return;
    };
    drop(store);
    let direct = ctx.store_url();
    let opts: sqlx::postgres::PgConnectOptions = direct.parse().unwrap();
    let hostport = format!("{}:{}", opts.get_host(), opts.get_port());
    if !direct.contains(&hostport) {
        eprintln!("skipping: the test URL does not name {hostport} literally");
        return;
    }
    let (proxy, port) = Proxy::start(0, hostport.clone()).await;
    let proxied = direct.replacen(&hostport, &format!("127.0.0.1:{port}"), 1);
    let store = PgStore::connect(&proxied, PgOptions::default())
        .await
        .expect("connect through the proxy");
    store.health().await.unwrap();
    let m = tern_store_conformance::send(&store, tern_store_conformance::dm("ann", "bob", 1, "o1"))
        .await;
    assert_eq!(m.seq, 1);

    proxy.stop().await;
    let started = std::time::Instant::now();
    assert!(matches!(store.health().await, Err(StoreError::Backend(_))));
    let r = store
        .append_messages(vec![tern_store_conformance::dm("ann", "bob", 2, "o2")])
        .await;
    assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    let (proxy, _) = Proxy::start(port, hostport).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while store.health().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pool did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = tern_store_conformance::send(&store, tern_store_conformance::dm("ann", "bob", 3, "o3"))
        .await;
    assert_eq!(m.seq, 2);
    proxy.stop().await;
}

/// Nodes starting at once on an empty schema: the migrations take turns
/// and every node starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_start_migrates_once() {
    let url = base_url();
    let schema = schema_name();
    if let Err(e) = create_schema(&url, &schema).await {
        if std::env::var_os("CI").is_some() {
            panic!("PostgreSQL not reachable at {url} ({e})");
        }
        eprintln!("skipping: PostgreSQL not reachable at {url} ({e})");
        return;
    }
    let ctx = Ctx { url, schema };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = ctx.store_url();
            tokio::spawn(async move { PgStore::connect(&url, PgOptions::default()).await })
        })
        .collect();
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap().expect("every node starts"));
    }
    let m = tern_store_conformance::send(
        &stores[3],
        tern_store_conformance::dm("ann", "bob", 1, "s1"),
    )
    .await;
    assert_eq!(m.seq, 1);
    assert_eq!(stores[0].max_seq("dm:ann:bob").await.unwrap(), 1);
}

/// The store's `Debug` output never shows the password of its URL.
#[tokio::test]
async fn debug_hides_the_password() {
    let Some((_store, ctx)) = open().await else {
        return;
    };
    let url = ctx.store_url();
    let Some(rest) = url.strip_prefix("postgres://postgres@") else {
        eprintln!("skipping: the test URL has its own credentials");
        return;
    };
    // Trust authentication ignores the password; the store still holds it.
    let with_password = format!("postgres://postgres:pw-not-shown@{rest}");
    let store = PgStore::connect(&with_password, PgOptions::default())
        .await
        .expect("connect");
    let shown = format!("{store:?}");
    assert!(!shown.contains("pw-not-shown"), "{shown}");
}

/// Two nodes run appends (1:1 and write-diffused group messages in mixed
/// orders), acks, offline fetches and read marks on the same users and
/// conversations at once: lock conflicts and deadlocks are retried inside
/// the store, so every call succeeds, and seqs stay gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_load_on_two_nodes() {
    use tern_core::store::AckMark;
    use tern_store_conformance::{create, diffused, dm, gmsg, join, send};
    let Some((store, ctx)) = open().await else {
        return;
    };
    let other = reopen(&ctx).await;
    send(&*store, diffused(create("g", "ann", 1))).await;
    send(&*store, diffused(join("g", "ann", "bob", 2))).await;
    send(&*store, diffused(join("g", "ann", "cat", 3))).await;
    let rounds = 25;
    let tasks: Vec<_> = (0..6)
        .map(|t| {
            let s = if t % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                for i in 0..rounds {
                    let k = format!("{t}-{i}");
                    match t % 3 {
                        0 => {
                            let batch = vec![
                                dm("ann", "bob", 10 + i, &format!("a{k}")),
                                diffused(gmsg("g", "ann", 10 + i, &format!("g{k}"))),
                                dm("cat", "ann", 10 + i, &format!("c{k}")),
                            ];
                            s.append_messages(batch).await.expect("append");
                        }
                        1 => {
                            let mark = |user: &str, conv: &str, rf: Option<&str>| AckMark {
                                user: user.into(),
                                conv: conv.into(),
                                seq: u64::MAX,
                                receipt_for: rf.map(Into::into),
                            };
                            s.ack_many(vec![
                                mark("bob", "dm:ann:bob", Some("ann")),
                                mark("bob", "group:g", None),
                                mark("ann", "dm:ann:cat", Some("cat")),
                                mark("cat", "group:g", None),
                            ])
                            .await
                            .expect("ack_many");
                            s.offline_fetch("bob", 5).await.expect("offline_fetch");
                            s.offline_fetch("ann", 1000).await.expect("offline_fetch");
                        }
                        _ => {
                            let batch = vec![
                                diffused(gmsg("g", "bob", 10 + i, &format!("h{k}"))),
                                dm("bob", "ann", 10 + i, &format!("b{k}")),
                            ];
                            s.append_messages(batch).await.expect("append");
                            let max = s.max_seq("group:g").await.expect("max_seq");
                            s.mark_read("ann", "group:g", max, 10 + i)
                                .await
                                .expect("mark_read");
                            s.conversations("ann", 0, 100).await.expect("conversations");
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let all = tern_core::store::HistoryQuery {
        before_seq: None,
        after_seq: None,
        limit: 10_000,
    };
    for (conv, n) in [
        ("dm:ann:bob", 4 * rounds),
        ("dm:ann:cat", 2 * rounds),
        ("group:g", 3 + 4 * rounds),
    ] {
        let h = store.history("ann", conv, all).await.unwrap();
        let seqs: Vec<u64> = h.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=n as u64).collect::<Vec<u64>>(), "{conv}");
    }
}

/// A version 1 schema whose ids repeat (a clock stepped back across a
/// restart) is upgraded: the oldest copy keeps its id, later copies move
/// above every stored id, and the new unique index refuses repeats.
#[tokio::test]
async fn upgrade_from_version_1_makes_ids_unique() {
    let Some((store, ctx)) = open().await else {
        return;
    };
    drop(store);
    let mut c = PgConnection::connect(&ctx.store_url()).await.unwrap();
    sqlx::raw_sql(
        "DROP INDEX messages_msg_id; \
         UPDATE tern_meta SET value = 1 WHERE key = 'schema_version'; \
         INSERT INTO messages (conv, seq, msg_id, from_user, kind, content, ts) VALUES \
             ('dm:a:b', 1, 500, 'a', 'text', '1', 1), ('dm:a:b', 2, 900, 'a', 'text', '1', 2), \
             ('dm:a:b', 3, 500, 'b', 'text', '1', 3), ('dm:a:c', 1, 500, 'a', 'text', '1', 4);",
    )
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    let store = reopen(&ctx).await;
    support::assert_msg_ids_made_unique(&*store).await;
    let mut c = PgConnection::connect(&ctx.store_url()).await.unwrap();
    let repeat = sqlx::query(
        "INSERT INTO messages (conv, seq, msg_id, from_user, kind, content, ts) \
         VALUES ('dm:a:b', 4, 900, 'a', 'text', '1', 5)",
    )
    .execute(&mut c)
    .await;
    assert!(repeat.is_err(), "a repeated msg_id was stored");
    let version: i64 =
        sqlx::query_scalar("SELECT value FROM tern_meta WHERE key = 'schema_version'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    support::assert_upgraded(&*store, version).await;
}

/// 5.4 and blocks: a version 3 schema (groups without settings, members
/// without roles, no blocks) keeps its groups, which start open and plain,
/// and takes roles and blocks after the upgrade.
#[tokio::test]
async fn upgrade_from_version_3_keeps_groups() {
    use tern_store_conformance::{create, join, send};
    let Some((store, ctx)) = open().await else {
        return;
    };
    send(&*store, create("old", "ann", 1)).await;
    send(&*store, join("old", "ann", "bob", 2)).await;
    drop(store);
    let mut c = PgConnection::connect(&ctx.store_url()).await.unwrap();
    sqlx::raw_sql(
        "ALTER TABLE groups DROP COLUMN announcement, DROP COLUMN muted_all, \
             DROP COLUMN dissolved; \
         ALTER TABLE group_members DROP COLUMN admin, DROP COLUMN muted_until; \
         DROP TABLE blocks; \
         UPDATE tern_meta SET value = 3 WHERE key = 'schema_version';",
    )
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    let store = reopen(&ctx).await;
    support::assert_groups_upgraded(&*store).await;
}

/// 5.2 search timings on PostgreSQL (not a check; run by hand):
/// `TERN_BENCH_MESSAGES` (default 100,000) text messages in 1,000
/// conversations of two users, as the embedded store's search bench, then
/// p50 and p99 of 50 searches per query by different users.
/// `cargo test --release -p tern-store-sql --test postgres search_timings -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn search_timings() {
    use std::time::Instant;
    use tern_core::search::{query_terms, SearchQuery};
    const WORDS: [&str; 16] = [
        "hello", "meeting", "tomorrow", "lunch", "project", "deadline", "coffee", "weekend",
        "report", "call", "北京", "会议", "明天", "travel", "budget", "review",
    ];
    let Some((store, _ctx)) = open().await else {
        return;
    };
    let n: u64 = std::env::var("TERN_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let batch: Vec<NewMessage> = (i..(i + 1000).min(n))
            .map(|i| {
                let (a, b) = (format!("u{}", i % 1000), format!("v{}", i % 1000));
                let w = |k: u64| WORDS[((i * 7 + k * 13) % 16) as usize];
                let rare = if i % 10_000 == 0 { " zebra" } else { "" };
                NewMessage {
                    msg_id: i + 1,
                    conv: format!("dm:{a}:{b}"),
                    from: a.clone(),
                    to: Some(b.clone()),
                    group: None,
                    kind: "text".into(),
                    content: format!("\"{} {} {} number {i}{rare}\"", w(1), w(2), w(3)),
                    ts: 1_795_000_000_000 + i as i64,
                    client_msg_id: Some(format!("c{i}")),
                    participants: vec![a, b],
                    inbox_members_up_to: 0,
                    change: None,
                    extras: Default::default(),
                }
            })
            .collect();
        i += batch.len() as u64;
        store.append_messages(batch).await.unwrap();
    }
    println!("stored {n} messages in {:.1?}", t.elapsed());
    let t = Instant::now();
    while store.index_pending(5000).await.unwrap() > 0 {}
    println!("indexed them in {:.1?}", t.elapsed());
    for q in ["zebra", "meeting", "meet", "北京", "coffee lunch"] {
        let query = SearchQuery {
            terms: query_terms(q).unwrap(),
            conv: None,
            before_ts: None,
            limit: 20,
        };
        let mut times = Vec::new();
        for k in 0..50u64 {
            let user = format!("u{}", (k * 37) % 1000);
            let t = Instant::now();
            store.search(&user, &query).await.unwrap();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "search {q:?} (one user, limit 20): p50 {:.2?}, p99 {:.2?}",
            times[times.len() / 2],
            times[(times.len() - 1) * 99 / 100]
        );
    }
}
