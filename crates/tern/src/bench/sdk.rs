//! `tern bench dm --sdk`: the `dm` scenario with every connection a
//! `tern_client::Session` instead of the bench's own WebSocket client, to
//! measure what the SDK costs a client per message (`client_cpu_s` of the
//! two runs, divided by the messages stored; see `client.rs`).
//!
//! The load is the same open loop: two driver tasks wake every millisecond
//! and start every due send (`Session::send`, each awaited concurrently);
//! latency counts from the due instant. Receivers read the session's
//! events; the session acks (every `ack_delay`, set to the raw readers' 20
//! ms), drops duplicates and fills gaps by itself. A stored message a
//! receiver has not got when the drain time ends counts as `unchecked`.

use super::client::{bar, nanos_since, stamp, Target};
use super::load::{due_at, due_by};
use super::report::Report;
use super::stats::{cpu_time, rss_kb, Lat};
use super::DmArgs;
use anyhow::Context;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_client::wire::SendAnswer;
use tern_client::{Client, ClientConfig, Event, Events, OutMessage, Session};
use tokio::sync::watch;

/// How often a connect refused at the server's admission pace is retried.
const CONNECT_TRIES: u32 = 20;

/// One sending session and what became of its sends.
struct Sender {
    session: Session,
    to: String,
    rate: f64,
    phase: f64,
    sent: AtomicU64,
    oks: AtomicU64,
    errors: AtomicU64,
    done: AtomicBool,
}

/// Opens a session, retrying while the server admits upgrades at its pace.
async fn open(client: Client, i: usize) -> anyhow::Result<(Session, Events)> {
    let mut tries = 0;
    loop {
        match client.connect("bench").await {
            Ok(s) => return Ok(s),
            Err(e) if e.is_transient() && tries < CONNECT_TRIES => {
                tries += 1;
                let jitter = Duration::from_millis((i as u64 * 7919) % 500);
                tokio::time::sleep(Duration::from_secs(1) + jitter).await;
            }
            Err(e) => return Err(e).context("opening a session"),
        }
    }
}

/// Runs the `dm` load for `tokens` (sender, receiver, sender, ...) on SDK
/// sessions.
pub async fn dm(
    a: &DmArgs,
    target: &Target,
    prefix: &str,
    tokens: &[String],
    progress: bool,
) -> anyhow::Result<Report> {
    let c = &a.common;
    let cfg = ClientConfig {
        ack_delay: Duration::from_millis(20),
        request_timeout: Duration::from_secs(10 + c.drain),
        ..ClientConfig::default()
    };
    let rss_before = c.server_pid.and_then(rss_kb);
    let bar_ = bar(progress, tokens.len() as u64, "sessions");
    let mut sessions: Vec<(usize, (Session, Events))> =
        futures_util::stream::iter(tokens.iter().enumerate())
            .map(|(i, t)| {
                let node = &target.nodes[i % target.nodes.len()].0;
                let client = Client::with_config(node, cfg.clone()).map(|c| c.with_token(t));
                let bar_ = bar_.clone();
                async move {
                    let s = open(client?, i).await?;
                    bar_.inc(1);
                    Ok::<_, anyhow::Error>((i, s))
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
    bar_.finish_and_clear();
    sessions.sort_by_key(|(i, _)| *i);

    let per_pair = a.rate / a.pairs as f64;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for (i, (session, events)) in sessions {
        let pair = i / 2;
        if i % 2 == 0 {
            // The sender's own events (none but its connection's) are
            // read and dropped so its queue never fills.
            tokio::spawn(drain_events(events));
            senders.push(Arc::new(Sender {
                session,
                to: format!("{prefix}-r{pair}"),
                rate: per_pair,
                phase: pair as f64 / a.pairs as f64,
                sent: AtomicU64::new(0),
                oks: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                done: AtomicBool::new(false),
            }));
        } else {
            receivers.push((session, events));
        }
    }

    let cpu0 = cpu_time();
    let wall0 = Instant::now();
    let base = Instant::now();
    let start = base + Duration::from_millis(200);
    let duration = Duration::from_secs(a.duration);
    let drain = Duration::from_secs(c.drain);
    let (over_tx, over_rx) = watch::channel::<Option<Instant>>(None);
    let mut readers = Vec::new();
    for (pair, (session, events)) in receivers.into_iter().enumerate() {
        readers.push(tokio::spawn(receive(
            session,
            events,
            senders[pair].clone(),
            base,
            over_rx.clone(),
            drain,
        )));
    }
    let mut drivers = Vec::new();
    for d in 0..2.min(senders.len()) {
        let mine: Vec<Arc<Sender>> = senders.iter().skip(d).step_by(2).cloned().collect();
        drivers.push(tokio::spawn(drive(mine, base, start, duration, drain)));
    }
    let mut ok = Lat::default();
    for d in drivers {
        ok.merge(&d.await.context("driver")?);
    }
    let over = Instant::now();
    let _ = over_tx.send(Some(over));
    let mut deliver = Lat::default();
    let (mut unique, mut missing, mut dups, mut last) = (0, 0, 0, over);
    for r in readers {
        let r = r.await.context("receiver")?;
        deliver.merge(&r.lat);
        unique += r.unique;
        missing += r.missing;
        dups += r.dups;
        last = last.max(r.last);
    }
    let cpu = cpu_time().saturating_sub(cpu0).as_secs_f64();
    let secs = last
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-9);
    let sent: u64 = senders.iter().map(|s| s.sent.load(Ordering::Relaxed)).sum();
    let oks: u64 = senders.iter().map(|s| s.oks.load(Ordering::Relaxed)).sum();
    let errors: u64 = senders
        .iter()
        .map(|s| s.errors.load(Ordering::Relaxed))
        .sum();
    let mut r = Report {
        scenario: "dm-sdk",
        offered_rate: a.rate,
        duration_s: secs,
        conns: tokens.len(),
        msgs_sent: sent,
        msgs_ok: oks,
        msgs_per_s: oks as f64 / secs,
        deliveries: unique,
        deliveries_per_s: unique as f64 / secs,
        errors,
        unchecked: Some(missing),
        duplicates: dups,
        client_cpu_pct: 100.0 * cpu / wall0.elapsed().as_secs_f64(),
        client_cpu_s: cpu,
        server_rss_kb_before: rss_before,
        server_rss_kb_after: c.server_pid.and_then(rss_kb),
        ..Default::default()
    };
    r.set_latencies(deliver, ok);
    Ok(r)
}

async fn drain_events(mut events: Events) {
    while events.recv().await.is_some() {}
}

/// Starts every due send of `senders` until `duration` has passed, then
/// waits (up to `drain`) for the answers. Returns the send->`ok` latencies.
async fn drive(
    senders: Vec<Arc<Sender>>,
    base: Instant,
    start: Instant,
    duration: Duration,
    drain: Duration,
) -> Lat {
    tokio::time::sleep_until(start.into()).await;
    let start_ns = start.duration_since(base).as_nanos() as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut inflight = FuturesUnordered::new();
    let mut lat = Lat::default();
    let mut record =
        |(s, due, r): (Arc<Sender>, u64, tern_client::Result<SendAnswer<'static>>)| match r {
            Ok(_) => {
                s.oks.fetch_add(1, Ordering::AcqRel);
                let now = nanos_since(base);
                lat.record(Duration::from_nanos(now), now.saturating_sub(due) / 1000);
            }
            Err(_) => {
                s.errors.fetch_add(1, Ordering::AcqRel);
            }
        };
    let run = super::client::run_nonce();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let el = start.elapsed();
                if el >= duration {
                    break;
                }
                for s in &senders {
                    let due = due_by(el, s.rate, s.phase);
                    let sent = s.sent.load(Ordering::Relaxed);
                    for k in sent..due {
                        let at = due_at(start_ns, k, s.rate, s.phase);
                        let m = OutMessage::text_to(&s.to, &at.to_string())
                            .with_client_msg_id(&format!("{run}-{k}"));
                        let s = s.clone();
                        inflight.push(async move {
                            let r = s.session.send(m).await;
                            (s, at, r)
                        });
                    }
                    s.sent.store(due.max(sent), Ordering::Relaxed);
                }
            }
            Some(done) = inflight.next(), if !inflight.is_empty() => record(done),
        }
    }
    let until = tokio::time::Instant::now() + drain;
    while let Ok(Some(done)) = tokio::time::timeout_at(until, inflight.next()).await {
        record(done);
    }
    for s in &senders {
        s.done.store(true, Ordering::Release);
    }
    lat
}

struct Received {
    lat: Lat,
    unique: u64,
    /// Stored messages of its sender not received by the end.
    missing: u64,
    /// Pushes the session dropped as duplicates.
    dups: u64,
    last: Instant,
}

/// Reads a receiver's events until it has every stored message of its
/// sender, or the drain time after sending is over.
async fn receive(
    session: Session,
    mut events: Events,
    from: Arc<Sender>,
    base: Instant,
    mut over_rx: watch::Receiver<Option<Instant>>,
    drain: Duration,
) -> Received {
    let mut out = Received {
        lat: Lat::default(),
        unique: 0,
        missing: 0,
        dups: 0,
        last: Instant::now(),
    };
    let mut over: Option<Instant> = None;
    let mut check = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::Message(m)) => {
                    let now = nanos_since(base);
                    out.unique += 1;
                    out.last = Instant::now();
                    if let Some(t) = stamp(m.content.as_ref().map(|c| &*c.0)) {
                        out.lat.record(Duration::from_nanos(now), now.saturating_sub(t) / 1000);
                    }
                }
                Some(_) => {}
                None => break,
            },
            r = over_rx.changed(), if over.is_none() => {
                if r.is_err() { break; }
                over = *over_rx.borrow();
            }
            _ = check.tick(), if over.is_some() => {
                let all = from.done.load(Ordering::Acquire)
                    && out.unique >= from.oks.load(Ordering::Acquire);
                if all || over.is_some_and(|o| o.elapsed() >= drain) {
                    break;
                }
            }
        }
    }
    out.missing = from.oks.load(Ordering::Acquire).saturating_sub(out.unique);
    out.dups = session.stats().duplicates_dropped;
    session.close().await;
    out
}
