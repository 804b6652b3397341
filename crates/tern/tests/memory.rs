//! The memory budget under a login flood (docs/RELIABILITY.md): a fresh
//! `tern serve` with the default argon2 cost (19 MiB a hash) gets
//! concurrent logins and registrations on top of idle WebSocket
//! connections; its resident memory must stay within a bound over its idle
//! baseline and come back down within a minute.
//!
//! The short form runs in CI (200 logins, 200 registrations, 1,000 idle
//! connections); `TERN_MEMORY_LONG=1` runs the long form (1,000, 1,000 and
//! 5,000).

mod support;

use std::time::{Duration, Instant};
use support::*;

const MIB: u64 = 1024 * 1024;
/// Most the flood may add to the idle baseline (with the idle connections).
const BOUND: u64 = 300 * MIB;
/// What may stay above the baseline a minute later, the idle connections
/// closed: the hashing workers' buffers (2 x 19 MiB on two cores), the
/// allocator's spare, caches.
const AFTER: u64 = 100 * MIB;

fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_flood_stays_within_the_memory_budget() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let long = std::env::var_os("TERN_MEMORY_LONG").is_some();
    let (logins, registrations, idle) = if long {
        (1000, 1000, 5000)
    } else {
        (200, 200, 1000)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = serve_cmd(dir.path());
    // The real hashing cost; limits that would refuse the test's own
    // volume (one address) raised.
    cmd.env("TERN_AUTH__ARGON2_M_COST_KIB", "19456")
        .env("TERN_AUTH__ARGON2_T_COST", "2")
        .env("TERN_RATE__REGISTER_BURST", "100000")
        .env("TERN_RATE__UPGRADE_RATE", "100000")
        .env("TERN_RATE__UPGRADE_BURST", "100000")
        .env("TERN_RATE__CONNECTIONS_PER_USER", "100000")
        .env("TERN_LIMITS__IDLE_TIMEOUT_SECS", "600")
        .env("RUST_LOG", "warn");
    let tern = Tern::spawn(cmd).await;
    let pid = tern.pid();
    tern.register("flood").await;
    let token = tern.login("flood").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rss(pid);

    // Peak sampling for the whole flood.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            peak = peak.max(rss(pid));
            tokio::select! {
                _ = stop_rx.changed() => return peak,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    });

    // Idle connections, authenticated, never reading.
    let t0 = Instant::now();
    let url = format!("ws://{}/v1/ws?token={token}", tern.addr);
    let mut conns = Vec::with_capacity(idle);
    for chunk in (0..idle).collect::<Vec<_>>().chunks(100) {
        let opened = futures_util::future::join_all(chunk.iter().map(|i| {
            let url = format!("{url}&device=idle{i}");
            async move { tokio_tungstenite::connect_async(url).await }
        }))
        .await;
        for c in opened {
            conns.push(c.expect("idle connection").0);
        }
    }
    let with_idle = rss(pid);

    // The flood: every login and registration at once.
    let http = reqwest::Client::new();
    let login_url = tern.url("/v1/sessions");
    let user_url = tern.url("/v1/users");
    let logins = (0..logins).map(|_| {
        http.post(&login_url)
            .json(&serde_json::json!({"user": "flood", "password": PASSWORD}))
            .send()
    });
    let regs = (0..registrations).map(|i| {
        http.post(&user_url)
            .json(&serde_json::json!({"user": format!("new{i}"), "password": PASSWORD}))
            .send()
    });
    let (l, r) = tokio::join!(
        futures_util::future::join_all(logins),
        futures_util::future::join_all(regs)
    );
    let mut counts = std::collections::BTreeMap::new();
    for resp in l.into_iter().chain(r) {
        let st = resp.expect("an answer").status().as_u16();
        *counts.entry(st).or_insert(0u32) += 1;
    }
    let flood_secs = t0.elapsed().as_secs_f64();
    assert!(
        counts.keys().all(|s| [200, 201, 503].contains(s)),
        "{counts:?}"
    );
    stop_tx.send_replace(true);
    let peak = sampler.await.unwrap();

    drop(conns);
    let t1 = Instant::now();
    let settled = loop {
        let now = rss(pid);
        if now <= baseline + AFTER || t1.elapsed() > Duration::from_secs(60) {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let report = format!(
        "baseline {} MiB, with {idle} idle connections {} MiB, peak {} MiB, \
         {:.1} s after the flood {} MiB; answers {counts:?} in {flood_secs:.1} s",
        baseline / MIB,
        with_idle / MIB,
        peak / MIB,
        t1.elapsed().as_secs_f64(),
        settled / MIB,
    );
    eprintln!("memory: {report}");
    assert!(peak <= baseline + BOUND, "over the bound: {report}");
    assert!(
        settled <= baseline + AFTER,
        "did not come back down: {report}"
    );
    assert!(
        counts.get(&200).copied().unwrap_or(0) > 0 && counts.get(&201).copied().unwrap_or(0) > 0,
        "some logins and registrations go through: {report}"
    );
}
