//! The traffic engine shared by the `dm`, `group` and `room` scenarios.
//!
//! Open loop: each sending connection ("source") has a fixed rate and phase,
//! so message `k` is *due* at a fixed instant whatever the server does. A few
//! driver tasks wake every millisecond and write every due frame (coalesced,
//! one flush per connection per wake-up). Latency is measured from the due
//! instant, not from the actual write, so a stalled server cannot hide its
//! stalls (no coordinated omission). Each frame carries its due instant in
//! `content`, so receivers compute send->deliver latency without shared
//! state.
//!
//! Every connection has a reader task: it counts `ok`/`error` replies for its
//! own sends, counts pushed messages (checking seq order per conversation),
//! records latencies into its own histogram, and acknowledges cumulatively
//! every 20 ms, like a well-behaved client under load.
//!
//! A message answered `ok` that a receiver has not got when the drain time
//! ends is looked up in that receiver's history over its own connection:
//! found there, it is `late` (stored, not yet pushed); absent, it is `lost`;
//! if the connection is gone and it cannot be looked up, `unchecked`.
//!
//! This file holds the sending side (sources, the driver tasks, when each
//! send is due) and the run; `reader.rs` is each connection's reader task,
//! `lost.rs` the look-up of what was stored but not pushed.

mod lost;
mod reader;

use reader::reader;

use super::client::{Sink, Ws};
use super::report::Report;
use super::stats::{cpu_time, rss_kb, Lat};
use super::Common;
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Mutex};
use tokio_tungstenite::tungstenite::Message;

/// Builds the text of send number `k`, whose content must be `stamp`.
pub type MakeFrame = Box<dyn Fn(u64, u64) -> String + Send + Sync>;

/// One sending connection.
pub struct Source {
    sink: Arc<Mutex<Sink>>,
    make: MakeFrame,
    rate: f64,
    phase: f64,
    pub sent: AtomicU64,
    pub oks: AtomicU64,
    pub errors: AtomicU64,
    done: AtomicBool,
    /// Where its sends were stored: the conversation and each `ok`'s seq.
    stored: std::sync::Mutex<Stored>,
}

#[derive(Default)]
struct Stored {
    conv: Option<String>,
    seqs: Vec<u64>,
}

/// What a connection should end up receiving.
pub enum Expect {
    /// Exactly once, every stored message of these sources.
    All(Vec<Arc<Source>>),
    /// Best effort (live rooms): read until the traffic stops.
    BestEffort,
}

/// A connection taking part in a run.
pub struct Conn {
    pub ws: Ws,
    /// `Some((make, rate))` if this connection sends.
    pub sends: Option<(MakeFrame, f64)>,
    /// Filled in by [`run`]: what this connection should receive.
    pub expect: ExpectSpec,
}

/// Which sources a connection expects messages from, by index into the
/// list of sending connections (in the order they appear in `conns`).
pub enum ExpectSpec {
    Sources(Vec<usize>),
    BestEffort,
}

/// Totals of one run.
pub struct Outcome {
    pub duration: Duration,
    pub sent: u64,
    pub oks: u64,
    pub errors: u64,
    pub deliveries: u64,
    pub duplicates: u64,
    /// Stored, not pushed by the end of the drain time, found in history.
    pub late: u64,
    /// Stored, neither pushed nor found in history.
    pub lost: u64,
    /// Stored, not pushed, and not looked up (the connection was gone).
    pub unchecked: u64,
    /// The bench's connections the server closed, by close code.
    pub closed: BTreeMap<u16, u64>,
    pub deliver: Lat,
    pub ok: Lat,
}

#[derive(Default)]
struct ReaderOut {
    deliver: Lat,
    ok: Lat,
    unique: u64,
    duplicates: u64,
    errors: u64,
    late: u64,
    lost: u64,
    unchecked: u64,
    /// The close code, when the server closed this connection.
    closed: Option<u16>,
    /// When the last frame arrived.
    last_frame: Option<Instant>,
}

/// A reader's view of one conversation.
struct ConvState {
    conv: String,
    /// Highest seq pushed.
    last: u64,
    /// Highest seq acknowledged.
    acked: u64,
    /// Every seq pushed, ascending (pushes arrive in seq order).
    got: Vec<u64>,
}

/// Runs `conns` for `duration` seconds with the common options and turns
/// the outcome into a report: rates per second of sending, the bench's
/// CPU use, the server's RSS before (`rss_before`) and after.
pub async fn measure(
    scenario: &'static str,
    offered_rate: f64,
    conns: Vec<Conn>,
    duration: u64,
    c: &Common,
    progress: bool,
    rss_before: Option<u64>,
) -> (Report, Outcome) {
    let n_conns = conns.len();
    let cpu0 = cpu_time();
    let wall0 = Instant::now();
    let mut o = run(
        conns,
        Duration::from_secs(duration),
        Duration::from_secs(c.drain),
        progress,
    )
    .await;
    let cpu = cpu_time().saturating_sub(cpu0).as_secs_f64();
    let secs = o.duration.as_secs_f64().max(1e-9);
    let mut r = Report {
        scenario,
        offered_rate,
        duration_s: secs,
        conns: n_conns,
        msgs_sent: o.sent,
        msgs_ok: o.oks,
        msgs_per_s: o.oks as f64 / secs,
        deliveries: o.deliveries,
        deliveries_per_s: o.deliveries as f64 / secs,
        errors: o.errors,
        late: Some(o.late),
        lost: Some(o.lost),
        unchecked: Some(o.unchecked),
        closed: o.closed.clone(),
        duplicates: o.duplicates,
        client_cpu_pct: 100.0 * cpu / wall0.elapsed().as_secs_f64(),
        client_cpu_s: cpu,
        server_rss_kb_before: rss_before,
        server_rss_kb_after: c.server_pid.and_then(rss_kb),
        ..Default::default()
    };
    r.set_latencies(std::mem::take(&mut o.deliver), std::mem::take(&mut o.ok));
    (r, o)
}

/// Drives `conns` for `duration` and waits up to `drain` afterwards for
/// outstanding replies and pushes.
pub async fn run(conns: Vec<Conn>, duration: Duration, drain: Duration, progress: bool) -> Outcome {
    let base = Instant::now();
    // A short lead so every reader is waiting before the first frame is due.
    let start = base + Duration::from_millis(200);
    let n_sources = conns.iter().filter(|c| c.sends.is_some()).count().max(1);
    let (over_tx, over_rx) = watch::channel::<Option<Instant>>(None);

    let mut sources: Vec<Arc<Source>> = Vec::new();
    let mut pending = Vec::new();
    for conn in conns {
        let (sink, stream) = conn.ws.split();
        let sink = Arc::new(Mutex::new(sink));
        let own = conn.sends.map(|(make, rate)| {
            let s = Arc::new(Source {
                sink: sink.clone(),
                make,
                rate,
                phase: sources.len() as f64 / n_sources as f64,
                sent: AtomicU64::new(0),
                oks: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                done: AtomicBool::new(false),
                stored: Default::default(),
            });
            sources.push(s.clone());
            s
        });
        pending.push((sink, stream, own, conn.expect));
    }
    let mut readers = Vec::new();
    for (sink, stream, own, spec) in pending {
        let expect = match spec {
            ExpectSpec::Sources(ix) => {
                Expect::All(ix.iter().map(|&i| sources[i].clone()).collect())
            }
            ExpectSpec::BestEffort => Expect::BestEffort,
        };
        readers.push(tokio::spawn(reader(
            stream,
            sink,
            own,
            expect,
            base,
            start,
            over_rx.clone(),
            drain,
        )));
    }

    // Drivers: two, one per core of the target machine.
    let drivers = 2.min(sources.len()).max(1);
    let mut handles = Vec::new();
    for d in 0..drivers {
        let mine: Vec<Arc<Source>> = sources.iter().skip(d).step_by(drivers).cloned().collect();
        handles.push(tokio::spawn(drive(mine, base, start, duration)));
    }
    let bar = super::client::bar(progress, duration.as_secs(), "seconds");
    let ticker = tokio::spawn({
        let bar = bar.clone();
        async move {
            let mut t = tokio::time::interval(Duration::from_secs(1));
            loop {
                t.tick().await;
                bar.set_position(start.elapsed().as_secs());
            }
        }
    });
    for h in handles {
        let _ = h.await;
    }
    let over = Instant::now();
    let _ = over_tx.send(Some(over));
    ticker.abort();
    bar.finish_and_clear();

    // Rates are over the whole time the server took: sending, and past it
    // for as long as replies and pushes kept arriving (an overloaded server
    // answers late; dividing by the sending time alone would flatter it).
    let mut out = Outcome {
        duration: over.saturating_duration_since(start),
        sent: 0,
        oks: 0,
        errors: 0,
        deliveries: 0,
        duplicates: 0,
        late: 0,
        lost: 0,
        unchecked: 0,
        closed: BTreeMap::new(),
        deliver: Lat::default(),
        ok: Lat::default(),
    };
    for r in readers {
        match r.await {
            Ok(r) => {
                out.deliver.merge(&r.deliver);
                out.ok.merge(&r.ok);
                out.deliveries += r.unique;
                out.duplicates += r.duplicates;
                out.errors += r.errors;
                out.late += r.late;
                out.lost += r.lost;
                out.unchecked += r.unchecked;
                if let Some(code) = r.closed {
                    *out.closed.entry(code).or_default() += 1;
                }
                if let Some(t) = r.last_frame {
                    out.duration = out.duration.max(t.saturating_duration_since(start));
                }
            }
            Err(_) => out.errors += 1,
        }
    }
    for s in &sources {
        out.sent += s.sent.load(Ordering::Relaxed);
        out.oks += s.oks.load(Ordering::Relaxed);
    }
    out
}

/// Writes every due frame of `sources` until `duration` has passed.
async fn drive(sources: Vec<Arc<Source>>, base: Instant, start: Instant, duration: Duration) {
    tokio::time::sleep_until(start.into()).await;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start_ns = start.duration_since(base).as_nanos() as u64;
    loop {
        tick.tick().await;
        let el = start.elapsed();
        if el >= duration {
            break;
        }
        for s in &sources {
            let due = due_by(el, s.rate, s.phase);
            let sent = s.sent.load(Ordering::Relaxed);
            if due <= sent {
                continue;
            }
            let mut sink = s.sink.lock().await;
            let mut failed = false;
            for k in sent..due {
                let at = s.due_ns(start_ns, k);
                if sink.feed(Message::text((s.make)(k, at))).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if failed || sink.flush().await.is_err() {
                // The connection is gone; its reader reports it.
                s.sent.store(sent, Ordering::Relaxed);
                s.done.store(true, Ordering::Release);
                continue;
            }
            s.sent.store(due, Ordering::Relaxed);
        }
    }
}

impl Source {
    /// The instant (ns since base) send `k` was due.
    fn due_ns(&self, start_ns: u64, k: u64) -> u64 {
        due_at(start_ns, k, self.rate, self.phase)
    }
}

/// How many sends of a source (`rate` per second, `phase` in 0..1) are due
/// `el` after the start: message k is due at (k + phase) / rate seconds.
pub fn due_by(el: Duration, rate: f64, phase: f64) -> u64 {
    let x = el.as_secs_f64() * rate - phase;
    if x < 0.0 {
        0
    } else {
        x as u64 + 1
    }
}

/// When send `k` of a source is due, in ns since the run's base instant.
pub fn due_at(start_ns: u64, k: u64, rate: f64, phase: f64) -> u64 {
    start_ns + (((k as f64 + phase) / rate) * 1e9) as u64
}
