//! Faults, with numbers (docs/RELIABILITY.md): the real `tern` binary under
//! `kill -9` restarts, a faulty network path and slow consumers, with
//! clients on the SDK (`tern_client::Session`: a send retried with the same
//! `client_msg_id`, duplicates dropped by `msg_id`, seq gaps filled from
//! history, cumulative acks). Each test checks "no loss, no duplicate, in
//! order" from every application's point of view and prints what it
//! counted. The slow consumers and the reconnect storm's clients stay raw
//! WebSockets: they need what an SDK does not offer (a 4 KiB receive
//! buffer and never reading; thousands of clients each from its own
//! source address).
//!
//! Short forms run in CI; the long forms take their size from the
//! environment: `TERN_CRASH_LOOPS` (kills), `TERN_LOSSY_SECS` (seconds of
//! traffic through the proxy), `TERN_SLOW_CONNS` (slow consumers).

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod support;
use support::peer::{env_f64, env_usize, make_peers, resume_and_verify, Rng, Traffic};
use support::relay::{Faults, Relay};
use support::Tern;
use tern_client::{Event, Events, OutMessage};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

// ---------------------------------------------------------------------------
// Crash loop
// ---------------------------------------------------------------------------

/// Four users send to each other and to their group continuously while the
/// server is killed with SIGKILL and restarted `TERN_CRASH_LOOPS` times
/// (default 3). The restarted server listens on a new port; the clients
/// keep dialling one relay that forwards to wherever it is. Afterwards
/// every acknowledged message is in history exactly once with the seq and
/// msg_id its sender was told, seqs are gap-free, and every recipient's
/// application saw exactly the history, in order (live, from the offline
/// batch after resuming, or from a gap fill).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_loses_and_duplicates_nothing() {
    let loops = env_usize("TERN_CRASH_LOOPS", 3);
    let mut rng = Rng::seeded("crash_loop");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Tern::start(dir.path()).await;
    let (tx, rx) = watch::channel(server.addr);
    let relay = Relay::start(rx).await;
    let peers = make_peers(&server, vec![relay.url(); 4], Duration::from_millis(10)).await;
    let traffic = Traffic::start(peers);
    let started = Instant::now();
    for _ in 0..loops {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(700))).await;
        server.kill9().await;
        server = Tern::start(dir.path()).await;
        tx.send(server.addr).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peers = traffic.stop().await;
    let secs = started.elapsed().as_secs_f64();
    let total = resume_and_verify(&server, peers).await;
    println!("crash_loop: kills={loops} secs={secs:.1} {}", total.line());
    assert!(total.acknowledged > 0);
}

// ---------------------------------------------------------------------------
// Lossy network
// ---------------------------------------------------------------------------

/// Four users talk through a relay that delays every chunk (0-5 ms),
/// stalls some as a lost packet would (`TERN_LOSSY_STALL`, default 10% of
/// chunks) and cuts connections at random (`TERN_LOSSY_CUT`, default 2% of
/// chunks) for `TERN_LOSSY_SECS` seconds (default 6); their sessions retry
/// with the same `client_msg_id` and drop duplicates by seq and `msg_id`.
/// Every application sees every message exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_network_every_message_once_in_order() {
    let secs = env_usize("TERN_LOSSY_SECS", 6) as u64;
    let faults = Faults {
        cut: env_f64("TERN_LOSSY_CUT", 0.02),
        stall: env_f64("TERN_LOSSY_STALL", 0.1),
        max_delay_ms: 5,
    };
    let mut rng = Rng::seeded("lossy_network");
    let dir = tempfile::tempdir().unwrap();
    let server = Tern::start(dir.path()).await;
    let (_tx, rx) = watch::channel(server.addr);
    let relay = Relay::faulty(rx, faults, rng.next()).await;
    let peers = make_peers(&server, vec![relay.url(); 4], Duration::from_millis(10)).await;
    let traffic = Traffic::start(peers);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let peers = traffic.stop().await;
    // The final catch-up goes through the relay too: take the faults away
    // so the check itself cannot be cut.
    relay.calm();
    let total = resume_and_verify(&server, peers).await;
    let c = &relay.counts;
    println!(
        "lossy_network: secs={secs} cut_per_chunk={} stall_per_chunk={} proxy_conns={} proxy_cuts={} \
         proxy_stalls={} proxy_chunks={} {}",
        faults.cut,
        faults.stall,
        c.conns.load(Ordering::Relaxed),
        c.cuts.load(Ordering::Relaxed),
        c.stalls.load(Ordering::Relaxed),
        c.chunks.load(Ordering::Relaxed),
        total.line()
    );
    assert!(
        c.cuts.load(Ordering::Relaxed) > 0,
        "the proxy cut connections"
    );
    assert!(total.acknowledged > 0);
}

// ---------------------------------------------------------------------------
// Slow consumers
// ---------------------------------------------------------------------------

/// Registers and logs in `user` from its own loopback source address
/// (127.0.0.2 and up), so per-address admission limits do not stand in
/// the way of a test that needs many users.
async fn user_from(server: &Tern, user: &str, i: usize) -> String {
    let cfg = tern_client::ClientConfig {
        local_address: Some(src_addr(i).into()),
        ..Default::default()
    };
    let client = tern_client::Client::with_config(&server.url(""), cfg).unwrap();
    client
        .register(user, support::PASSWORD, None)
        .await
        .unwrap_or_else(|e| panic!("register {user}: {e}"));
    let me = client
        .login(user, support::PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("login {user}: {e}"));
    me.token().unwrap().to_owned()
}

/// A WebSocket that authenticates, takes its offline batch and then never
/// reads again; its receive buffer is small so that the server's queue,
/// not the kernel's, absorbs what it is sent.
async fn slow_reader(addr: SocketAddr, token: &str) -> Ws {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = timeout(support::WAIT, sock.connect(addr))
        .await
        .unwrap()
        .unwrap();
    let url = format!("ws://{addr}/v1/ws");
    let (mut ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    let auth = json!({"type": "auth", "id": "1", "token": token, "device": "slow"});
    ws.send(Message::Text(auth.to_string().into()))
        .await
        .unwrap();
    loop {
        let m = timeout(support::WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "offline_done" {
                return ws;
            }
            assert_ne!(v["type"], "error", "{v}");
        }
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The next event within `WAIT`; `None` if none came or the session ended.
async fn next(events: &mut Events) -> Option<Event> {
    timeout(support::WAIT, events.recv()).await.ok().flatten()
}

/// One sender writes `n` group messages, one at a time; `readers` fast
/// readers (SDK sessions: they take every push and ack) record each
/// message's latency (send to receipt, microseconds). Returns the sorted
/// latencies. Each reader must get all `n`, exactly once, in seq order.
async fn group_traffic(
    server: &Tern,
    sender: &str,
    readers: &[(String, String)],
    gid: &str,
    n: usize,
    phase: &str,
    epoch: Instant,
) -> GroupRun {
    let mut tasks = Vec::new();
    let ready = Arc::new(tokio::sync::Barrier::new(readers.len() + 1));
    for (user, token) in readers {
        let client = server.client_for(token);
        let user = user.clone();
        let ready = ready.clone();
        let phase = phase.to_owned();
        tasks.push(tokio::spawn(async move {
            let (_session, mut events) = client.connect(&phase).await.unwrap();
            while !matches!(next(&mut events).await, Some(Event::OfflineDone { .. })) {}
            ready.wait().await;
            let mut lat = Vec::with_capacity(n);
            let mut last_seq = 0;
            while lat.len() < n {
                let ev = next(&mut events).await.unwrap_or_else(|| {
                    panic!("{user}: fast reader starved after {} of {n}", lat.len())
                });
                let Event::Message(m) = ev else { continue };
                if m.kind == "system" {
                    continue;
                }
                assert!(m.seq > last_seq, "{user}: seq {} after {last_seq}", m.seq);
                last_seq = m.seq;
                let c: String = serde_json::from_str(m.content.as_ref().unwrap().get()).unwrap();
                if let Some(rest) = c.strip_prefix(&format!("{phase} ")) {
                    let sent: u64 = rest.split(' ').next().unwrap().parse().unwrap();
                    let now = epoch.elapsed().as_micros() as u64;
                    lat.push((now, now - sent));
                }
            }
            lat
        }));
    }
    ready.wait().await;
    // The sender (its session retries a rate-limited send by itself).
    let (session, mut events) = server.client_for(sender).connect(phase).await.unwrap();
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let pad = "x".repeat(PAD);
    let send_start = epoch.elapsed().as_micros() as u64;
    for i in 0..n {
        let content = format!("{phase} {} {pad}", epoch.elapsed().as_micros());
        let m =
            OutMessage::text_to_group(gid, &content).with_client_msg_id(&format!("{phase}-{i}"));
        session
            .send(m)
            .await
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
        // ~100 sends/s keeps the sender under the default frame rate.
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
    let send_end = epoch.elapsed().as_micros() as u64;
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(timeout(Duration::from_secs(60), t).await.unwrap().unwrap());
    }
    session.close().await;
    let _ = drain.await;
    let mut sorted: Vec<u64> = samples.iter().map(|s| s.1).collect();
    sorted.sort_unstable();
    GroupRun {
        sorted,
        samples,
        send_start,
        send_end,
    }
}

/// What `group_traffic` measured; times in microseconds since the phase's
/// epoch.
struct GroupRun {
    /// Latencies, sorted.
    sorted: Vec<u64>,
    /// (receipt time, latency) per message and reader, in receipt order
    /// per reader.
    samples: Vec<(u64, u64)>,
    send_start: u64,
    send_end: u64,
}

/// Padding of each message of the slow-consumer test: large pushes fill
/// the kernel's socket buffers quickly, so the server's own queue bound is
/// what stops a reader that does not read.
const PAD: usize = 12_000;
/// `limits.outbound_queue` in the slow-consumer test.
const SLOW_QUEUE: usize = 64;

fn p99(sorted: &[u64]) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

/// `TERN_SLOW_CONNS` (default 50) members of a group connect and then
/// never read at the TCP level, while one member sends to the group and
/// four fast members read. Each slow connection is cut off at its bound
/// (`limits.outbound_queue`, 64 here): it ends with close 4008 or a reset;
/// the server's RSS stays bounded; the fast readers get every message in
/// order. The fast readers' p99 latency is measured without and with the
/// slow ones (printed, not asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumers_are_cut_off_and_fast_readers_keep_up() {
    let slow_n = env_usize("TERN_SLOW_CONNS", 50);
    let msgs = env_usize("TERN_SLOW_MSGS", 400);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = support::serve_cmd(dir.path());
    cmd.env("TERN_LIMITS__OUTBOUND_QUEUE", SLOW_QUEUE.to_string());
    // The group keeps one diffusion tier in both phases (per-member pushes,
    // no storm window), so the phases differ only by the slow consumers.
    cmd.env(
        "TERN_GROUPS__WRITE_LIMIT",
        (slow_n + 8).max(500).to_string(),
    );
    let server = Tern::spawn(cmd).await;
    let pid = server.pid();
    let sender = server.user("sender").await;
    let mut fast = Vec::new();
    for i in 0..4 {
        let u = format!("fast{i}");
        fast.push((u.clone(), server.user(&u).await));
    }
    let members: Vec<&str> = fast.iter().map(|(u, _)| u.as_str()).collect();
    let owner = server.client_for(&sender);
    let gid = owner
        .create_group("slow", &members)
        .await
        .expect("create the group")
        .group
        .into_owned();

    // Phase 1: no slow consumers.
    let rss0 = rss_kib(pid);
    let base = group_traffic(&server, &sender, &fast, &gid, msgs, "base", Instant::now()).await;

    // Phase 2: the slow consumers join and stop reading. Its events are
    // timed from `t0`, as are the fast readers' samples (printed at the
    // end: where the slow samples fall).
    let t0 = Instant::now();
    let at = |t0: Instant| t0.elapsed().as_micros() as u64;
    let mut events: Vec<(&str, u64)> = Vec::new();
    let mut slow_tokens = Vec::new();
    for i in 0..slow_n {
        slow_tokens.push(user_from(&server, &format!("slow{i}"), i).await);
    }
    for chunk in (0..slow_n).collect::<Vec<_>>().chunks(100) {
        let users: Vec<String> = chunk.iter().map(|i| format!("slow{i}")).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        owner.add_members(&gid, &users).await.expect("add members");
    }
    events.push(("joined", at(t0)));
    let mut slow = Vec::new();
    for t in &slow_tokens {
        slow.push(slow_reader(server.addr, t).await);
    }
    events.push(("slow_connected", at(t0)));
    let rss1 = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(rss1));
    // While phase 2 runs: the server's peak RSS, and when it cut the slow
    // consumers (its count of slow-reader closes, every 50 ms).
    let cuts: Arc<std::sync::Mutex<Vec<(u64, u64)>>> = Default::default();
    let sampling = {
        let peak = peak.clone();
        let cuts = cuts.clone();
        let http = server.http.clone();
        let url = server.url("/metrics");
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                if let Ok(Ok(r)) = timeout(Duration::from_secs(1), http.get(&url).send()).await {
                    if let Ok(t) = r.text().await {
                        let k = t
                            .lines()
                            .find(|l| l.starts_with("tern_slow_reader_closes_total"))
                            .and_then(|l| l.split_whitespace().last())
                            .and_then(|v| v.parse::<f64>().ok())
                            .unwrap_or(0.0) as u64;
                        cuts.lock().unwrap().push((at(t0), k));
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let run = group_traffic(&server, &sender, &fast, &gid, msgs, "slow", t0).await;
    sampling.abort();
    let rss2 = rss_kib(pid);
    events.push(("send_start", run.send_start));
    events.push(("send_end", run.send_end));
    {
        let cuts = cuts.lock().unwrap();
        if let Some(c) = cuts.iter().find(|c| c.1 > 0) {
            events.push(("first_cut_seen", c.0));
        }
        if let Some(c) = cuts.iter().find(|c| c.1 >= slow_n as u64) {
            events.push(("last_cut_seen", c.0));
        }
    }
    // Every slow connection was cut: reading it now drains what the
    // kernel held and ends with the server's close (4008) or a reset/EOF.
    events.push(("drain_start", at(t0)));
    let mut last_4008 = None;
    let (mut closed_4008, mut reset, mut other_close) = (0, 0, 0);
    for mut ws in slow {
        let end = timeout(Duration::from_secs(30), async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(c))) => return Some(c.map(|c| u16::from(c.code))),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .expect("a slow consumer was never cut off");
        match end {
            Some(Some(4008)) => {
                closed_4008 += 1;
                last_4008 = Some(at(t0));
            }
            None => reset += 1,
            Some(_) => other_close += 1,
        }
    }
    events.push(("drain_end", at(t0)));
    if let Some(t) = last_4008 {
        events.push(("last_4008_read", t));
    }
    assert_eq!(other_close, 0, "slow consumers end with 4008 or a reset");
    assert_eq!(closed_4008 + reset, slow_n);
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counter = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("?")
            .to_owned()
    };
    let kicks = counter("tern_slow_reader_closes_total");
    // Every slow consumer, never acking, turned lagging before its cut
    // (its writes went on its own timer, behind the fast readers').
    let lagging = counter("tern_lagging_connections_total");
    assert!(
        lagging.parse::<f64>().unwrap_or(0.0) >= slow_n as f64,
        "{lagging} lagging connections, {slow_n} slow consumers"
    );
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "slow_consumers: slow_conns={slow_n} msgs_per_phase={msgs} fast_readers=4 \
         cut_4008={closed_4008} cut_reset={reset} tern_slow_reader_closes_total={kicks} \
         tern_lagging_connections_total={lagging} \
         rss_kib_start={rss0} rss_kib_with_slow_connected={rss1} rss_kib_peak={peak} rss_kib_end={rss2} \
         fast_p50_us_without={} fast_p99_us_without={} fast_p50_us_with={} fast_p99_us_with={}",
        base.sorted[base.sorted.len() / 2],
        p99(&base.sorted),
        run.sorted[run.sorted.len() / 2],
        p99(&run.sorted)
    );
    println!("{}", timeline(&mut events, &run, 2 * p99(&base.sorted)));
    // Bounded memory: each slow connection holds at most its queue of
    // frames (even if no frame were shared between connections), plus a
    // fixed allowance; unbounded queues would hold every message.
    let bound = rss0 + 128 * 1024 + (slow_n * SLOW_QUEUE * (PAD + 512) / 1024) as u64;
    assert!(
        peak < bound,
        "RSS grew from {rss0} to {peak} KiB (bound {bound})"
    );
    assert_eq!(base.sorted.len(), 4 * msgs);
    assert_eq!(run.sorted.len(), 4 * msgs);
}

/// Where phase 2's slow fast-reader samples fall, in milliseconds since
/// the phase began (before the slow consumers joined): the phase's events,
/// the ten worst samples (receipt time: latency), and each 100 ms window
/// holding samples above `over` (window start: how many / the worst).
fn timeline(events: &mut [(&str, u64)], run: &GroupRun, over: u64) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    events.sort_by_key(|e| e.1);
    let mut out = String::from("slow_consumers_timeline_ms:");
    for (name, t) in events.iter() {
        out.push_str(&format!(" {name}={:.0}", ms(*t)));
    }
    let mut worst = run.samples.clone();
    worst.sort_by_key(|s| std::cmp::Reverse(s.1));
    out.push_str(" worst_fast=");
    for (t, l) in worst.iter().take(10) {
        out.push_str(&format!("{:.0}:{:.1},", ms(*t), ms(*l)));
    }
    let mut windows = std::collections::BTreeMap::<u64, (u64, u64)>::new();
    for &(t, l) in run.samples.iter().filter(|s| s.1 > over) {
        let w = windows.entry(t / 100_000 * 100).or_default();
        w.0 += 1;
        w.1 = w.1.max(l);
    }
    out.push_str(&format!(" over_{:.1}ms_per_100ms=", ms(over)));
    for (w, (n, worst)) in windows {
        out.push_str(&format!("{w}:{n}/{:.0},", ms(worst)));
    }
    out
}

// ---------------------------------------------------------------------------
// Reconnect storm
// ---------------------------------------------------------------------------

/// Connects from `src` (a loopback address of its own, so 10,000 clients
/// never run out of ports), authenticates and takes the offline batch.
/// Returns the socket and how many `msg` frames came before
/// `offline_done`; `Err` for a refusal or failure (the caller retries).
async fn resume(
    src: std::net::Ipv4Addr,
    addr: SocketAddr,
    token: &str,
) -> Result<(Ws, u64), String> {
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(SocketAddr::new(src.into(), 0))
        .map_err(|e| e.to_string())?;
    let stream = timeout(Duration::from_secs(10), sock.connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let url = format!("ws://{addr}/v1/ws");
    let (mut ws, _) = timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)),
    )
    .await
    .map_err(|_| "upgrade timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let auth = json!({"type": "auth", "id": "1", "token": token, "device": "d"});
    ws.send(Message::Text(auth.to_string().into()))
        .await
        .map_err(|e| e.to_string())?;
    let mut n = 0;
    loop {
        let m = timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| "no offline_done in time".to_string())?
            .ok_or("closed")?
            .map_err(|e| e.to_string())?;
        match m {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                match v["type"].as_str() {
                    Some("msg") => n += 1,
                    Some("offline_done") => {
                        assert_eq!(v["count"].as_u64(), Some(n), "{v}");
                        return Ok((ws, n));
                    }
                    Some("error") => return Err(v.to_string()),
                    _ => {}
                }
            }
            Message::Close(c) => return Err(format!("closed: {c:?}")),
            _ => {}
        }
    }
}

fn src_addr(i: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 0, (2 + i / 250) as u8, (2 + i % 250) as u8)
}

/// `TERN_STORM_CLIENTS` (default 300) clients are connected; all of them
/// drop at once, every third gets one message while away, and then all
/// reconnect at the same instant (refused ones retry after 100-200 ms).
/// Every client is back, each offline batch holds exactly what that client
/// missed, and `/healthz` answers 200 all through the storm. Prints how
/// long the storm took, the refusals, and `/healthz`'s slowest answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_storm_resumes_everyone_with_what_they_missed() {
    let n = env_usize("TERN_STORM_CLIENTS", 300);
    let dir = tempfile::tempdir().unwrap();
    let server = Tern::start(dir.path()).await;
    let sender = server.user("storm-sender").await;
    let addr = server.addr;

    // Accounts, from many source addresses, some at a time.
    let setup_started = Instant::now();
    let tokens: Vec<String> = {
        let mut out = vec![String::new(); n];
        let sem = Arc::new(tokio::sync::Semaphore::new(32));
        let mut tasks = Vec::new();
        let server = Arc::new(server);
        for i in 0..n {
            let sem = sem.clone();
            let server = server.clone();
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await.unwrap();
                user_from(&server, &format!("c{i}"), i).await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            out[i] = t.await.unwrap();
        }
        let server = Arc::try_unwrap(server).ok().expect("no other owner");
        // First connection of everyone (this is not the storm yet).
        // Past the upgrade burst (`rate.upgrade_burst`) the server admits
        // `rate.upgrade_rate` per second and refuses the rest with 503:
        // retry, as any client does.
        let mut conns = Vec::new();
        for (i, tok) in out.iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(60);
            let ws = loop {
                match resume(src_addr(i), addr, tok).await {
                    Ok((ws, _)) => break ws,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "first connect of c{i}: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            };
            conns.push(ws);
        }
        println!(
            "reconnect_storm: setup of {n} accounts and connections took {:.1}s",
            setup_started.elapsed().as_secs_f64()
        );
        // All drop at once (the process's sockets close together).
        drop(conns);
        // Every third client misses one message.
        for i in (0..n).step_by(3) {
            loop {
                let (st, b) = server
                    .call(
                        reqwest::Method::POST,
                        "/v1/messages",
                        Some(&sender),
                        Some(json!({"to": format!("c{i}"), "client_msg_id": format!("m{i}"), "kind": "text", "content": "while away"})),
                    )
                    .await;
                if st == 429 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                assert_eq!(st, 200, "{b}");
                break;
            }
        }
        let health = {
            let http = reqwest::Client::new();
            let url = server.url("/healthz");
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            let task = tokio::spawn(async move {
                let (mut worst, mut polls, mut failures) = (Duration::ZERO, 0u64, 0u64);
                while !s.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match timeout(support::WAIT, http.get(&url).send()).await {
                        Ok(Ok(r)) if r.status().is_success() => {}
                        _ => failures += 1,
                    }
                    worst = worst.max(t.elapsed());
                    polls += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (worst, polls, failures)
            });
            (stop, task)
        };

        // The storm: everyone at once.
        let go = Arc::new(tokio::sync::Barrier::new(n + 1));
        let refusals = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for (i, tok) in out.iter().enumerate() {
            let go = go.clone();
            let tok = tok.clone();
            let refusals = refusals.clone();
            tasks.push(tokio::spawn(async move {
                go.wait().await;
                let t = Instant::now();
                let deadline = t + Duration::from_secs(120);
                let mut attempt = 0u64;
                loop {
                    match resume(src_addr(i), addr, &tok).await {
                        Ok((ws, got)) => return (ws, got, t.elapsed()),
                        Err(e) => {
                            refusals.fetch_add(1, Ordering::Relaxed);
                            assert!(Instant::now() < deadline, "c{i} never got back in: {e}");
                            attempt += 1;
                            let jitter = (i as u64 * 7919 + attempt * 104_729) % 100;
                            tokio::time::sleep(Duration::from_millis(100 + jitter)).await;
                        }
                    }
                }
            }));
        }
        let started = Instant::now();
        go.wait().await;
        let mut times = Vec::with_capacity(n);
        let mut back = Vec::with_capacity(n);
        for (i, t) in tasks.into_iter().enumerate() {
            let (ws, got, took) = t.await.unwrap();
            let missed = u64::from(i % 3 == 0);
            assert_eq!(
                got, missed,
                "c{i}'s offline batch is exactly what it missed"
            );
            times.push(took.as_micros() as u64);
            back.push(ws);
        }
        let storm = started.elapsed();
        health.0.store(true, Ordering::Relaxed);
        let (worst, polls, failures) = health.1.await.unwrap();
        times.sort_unstable();
        println!(
            "reconnect_storm: clients={n} all_back_secs={:.2} resume_p50_ms={:.1} resume_p99_ms={:.1} \
             resume_max_ms={:.1} refused_or_failed_attempts={} offline_msgs={} healthz_polls={polls} \
             healthz_failures={failures} healthz_worst_ms={:.1} server_rss_kib={}",
            storm.as_secs_f64(),
            times[n / 2] as f64 / 1000.0,
            p99(&times) as f64 / 1000.0,
            *times.last().unwrap() as f64 / 1000.0,
            refusals.load(Ordering::Relaxed),
            n.div_ceil(3),
            worst.as_secs_f64() * 1000.0,
            rss_kib(server.pid()),
        );
        assert_eq!(failures, 0, "/healthz answered 200 all through the storm");
        drop(back);
        out
    };
    assert_eq!(tokens.len(), n);
}
