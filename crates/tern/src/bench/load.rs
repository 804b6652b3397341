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

use super::client::{nanos_since, stamp, In, Sink, Stream, Ws};
use super::report::Report;
use super::stats::{cpu_time, rss_kb, Lat};
use super::Common;
use futures_util::{SinkExt, StreamExt};
use std::collections::{BTreeMap, HashSet};
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

#[allow(clippy::too_many_arguments)]
async fn reader(
    mut stream: Stream,
    sink: Arc<Mutex<Sink>>,
    own: Option<Arc<Source>>,
    expect: Expect,
    base: Instant,
    start: Instant,
    mut over_rx: watch::Receiver<Option<Instant>>,
    drain: Duration,
) -> ReaderOut {
    let start_ns = start.duration_since(base).as_nanos() as u64;
    let mut out = ReaderOut::default();
    let mut convs: Vec<ConvState> = Vec::new();
    let mut ack_at: Option<Instant> = None;
    let mut over: Option<Instant> = None;
    let mut last_frame = Instant::now();
    let mut alive = true;
    let check_every = Duration::from_millis(100);
    let mut next_check = Instant::now() + check_every;
    loop {
        let wake = match (ack_at, over) {
            (Some(a), Some(_)) => Some(a.min(next_check)),
            (Some(a), None) => Some(a),
            (None, Some(_)) => Some(next_check),
            (None, None) => None,
        };
        tokio::select! {
            m = stream.next() => {
                let Some(Ok(m)) = m else {
                    if over.is_none() || !finished(&own, &expect, &out, over, last_frame, drain) {
                        out.errors += 1;
                    }
                    alive = false;
                    break;
                };
                last_frame = Instant::now();
                if let Message::Close(c) = &m {
                    out.closed = Some(c.as_ref().map_or(1005, |c| u16::from(c.code)));
                }
                let Message::Text(text) = m else { continue };
                let now_ns = nanos_since(base);
                handle(text.as_str(), &own, start_ns, now_ns, &mut out, &mut convs);
                if ack_at.is_none() && convs.iter().any(|c| c.last > c.acked) {
                    ack_at = Some(Instant::now() + Duration::from_millis(20));
                }
            }
            r = over_rx.changed(), if over.is_none() => {
                if r.is_err() { break; }
                over = *over_rx.borrow();
                next_check = Instant::now();
            }
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now).into()), if wake.is_some() => {
                let now = Instant::now();
                if ack_at.is_some_and(|a| a <= now) {
                    ack_at = None;
                    if send_acks(&sink, &mut convs).await.is_err() {
                        out.errors += 1;
                        alive = false;
                        break;
                    }
                }
                if over.is_some() && now >= next_check {
                    next_check = now + check_every;
                    if finished(&own, &expect, &out, over, last_frame, drain) {
                        let _ = send_acks(&sink, &mut convs).await;
                        break;
                    }
                }
            }
        }
    }
    if let Expect::All(srcs) = &expect {
        let missing = missing(&stored_by(srcs), &convs);
        if alive && !missing.is_empty() {
            match look_up(&mut stream, &sink, &missing).await {
                Some(found) => {
                    for (conv, seqs) in &missing {
                        for seq in seqs {
                            if found.contains(&(conv.as_str(), *seq)) {
                                out.late += 1;
                            } else {
                                out.lost += 1;
                            }
                        }
                    }
                }
                None => out.unchecked += missing.values().map(|v| v.len() as u64).sum::<u64>(),
            }
        } else {
            out.unchecked += missing.values().map(|v| v.len() as u64).sum::<u64>();
        }
    }
    if let Some(s) = &own {
        s.done.store(true, Ordering::Release);
    }
    out.last_frame = Some(last_frame);
    let _ = sink.lock().await.close().await;
    out
}

/// Handles one text frame (recursing into `batch`).
fn handle(
    text: &str,
    own: &Option<Arc<Source>>,
    start_ns: u64,
    now_ns: u64,
    out: &mut ReaderOut,
    convs: &mut Vec<ConvState>,
) {
    let Ok(f) = serde_json::from_str::<In>(text) else {
        out.errors += 1;
        return;
    };
    let at = Duration::from_nanos(now_ns);
    match f.ty {
        "msg" => {
            let Some(m) = f.msg else { return };
            let i = match convs.iter().position(|c| c.conv == m.conv) {
                Some(i) => i,
                None => {
                    convs.push(ConvState {
                        conv: m.conv.to_owned(),
                        last: 0,
                        acked: 0,
                        got: Vec::new(),
                    });
                    convs.len() - 1
                }
            };
            if m.seq <= convs[i].last {
                out.duplicates += 1;
                return;
            }
            convs[i].last = m.seq;
            convs[i].got.push(m.seq);
            out.unique += 1;
            if let Some(t) = stamp(m.content) {
                out.deliver.record(at, now_ns.saturating_sub(t) / 1000);
            }
        }
        "room_msg" => {
            out.unique += 1;
            if let Some(t) = stamp(f.content) {
                out.deliver.record(at, now_ns.saturating_sub(t) / 1000);
            }
        }
        "batch" => {
            for inner in f.frames.unwrap_or_default() {
                handle(inner.get(), own, start_ns, now_ns, out, convs);
            }
        }
        "ok" | "error" => {
            let (Some(s), Some(k)) = (own, f.id.and_then(|i| i.parse::<u64>().ok())) else {
                if f.ty == "error" {
                    out.errors += 1;
                }
                return;
            };
            if f.ty == "ok" {
                if let (Some(conv), Some(seq)) = (f.conv, f.seq) {
                    let mut st = s.stored.lock().unwrap_or_else(|e| e.into_inner());
                    if st.conv.is_none() {
                        st.conv = Some(conv.to_owned());
                    }
                    st.seqs.push(seq);
                }
                s.oks.fetch_add(1, Ordering::AcqRel);
                out.ok
                    .record(at, now_ns.saturating_sub(s.due_ns(start_ns, k)) / 1000);
            } else {
                s.errors.fetch_add(1, Ordering::AcqRel);
                out.errors += 1;
            }
        }
        _ => {}
    }
}

/// Whether this reader may stop: sending is over, its own sends are all
/// answered, and it has everything it expects (or the drain time is up).
fn finished(
    own: &Option<Arc<Source>>,
    expect: &Expect,
    out: &ReaderOut,
    over: Option<Instant>,
    last_frame: Instant,
    drain: Duration,
) -> bool {
    let Some(over) = over else { return false };
    if over.elapsed() >= drain {
        return true;
    }
    if let Some(s) = own {
        let answered = s.oks.load(Ordering::Acquire) + s.errors.load(Ordering::Acquire);
        if answered < s.sent.load(Ordering::Relaxed) {
            return false;
        }
        s.done.store(true, Ordering::Release);
    }
    match expect {
        Expect::All(srcs) => {
            srcs.iter().all(|s| s.done.load(Ordering::Acquire))
                && out.unique
                    >= srcs
                        .iter()
                        .map(|s| s.oks.load(Ordering::Acquire))
                        .sum::<u64>()
        }
        // Rooms batch within a 100 ms window: a second of quiet means done.
        Expect::BestEffort => last_frame.elapsed() >= Duration::from_secs(1),
    }
}

async fn send_acks(
    sink: &Mutex<Sink>,
    convs: &mut [ConvState],
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let mut sink = sink.lock().await;
    let mut any = false;
    for c in convs.iter_mut().filter(|c| c.last > c.acked) {
        c.acked = c.last;
        sink.feed(Message::text(format!(
            r#"{{"type":"ack","conv":"{}","seq":{}}}"#,
            c.conv, c.last
        )))
        .await?;
        any = true;
    }
    if any {
        sink.flush().await?;
    }
    Ok(())
}

/// Where each source's sends were stored: `(conv, seqs)`.
fn stored_by(srcs: &[Arc<Source>]) -> Vec<(String, Vec<u64>)> {
    srcs.iter()
        .filter_map(|s| {
            let st = s.stored.lock().unwrap_or_else(|e| e.into_inner());
            Some((st.conv.clone()?, st.seqs.clone()))
        })
        .collect()
}

/// The stored seqs (`(conv, seqs)` per source) that this reader was not
/// pushed, by conversation, ascending.
fn missing(stored: &[(String, Vec<u64>)], convs: &[ConvState]) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (conv, seqs) in stored {
        let got = convs.iter().find(|c| &c.conv == conv).map(|c| &c.got[..]);
        for seq in seqs {
            if got.is_none_or(|g| g.binary_search(seq).is_err()) {
                out.entry(conv.clone()).or_default().push(*seq);
            }
        }
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    out
}

/// Reads the history around the missing seqs over the reader's own
/// connection. Returns the `(conv, seq)` pairs found stored or pushed
/// meanwhile; `None` if the connection fails or stops answering.
async fn look_up<'a>(
    stream: &mut Stream,
    sink: &Mutex<Sink>,
    missing: &'a BTreeMap<String, Vec<u64>>,
) -> Option<HashSet<(&'a str, u64)>> {
    const PAGE: u64 = 500;
    let mut found = HashSet::new();
    for (n, (conv, seqs)) in missing.iter().enumerate() {
        let (Some(&lo), Some(&hi)) = (seqs.first(), seqs.last()) else {
            continue;
        };
        let wanted: HashSet<u64> = seqs.iter().copied().collect();
        let mut after = lo.saturating_sub(1);
        let mut page = 0;
        while after < hi {
            let id = format!("lookup-{n}-{page}");
            page += 1;
            let req = serde_json::json!({
                "type": "history", "id": id, "conv": conv,
                "after_seq": after, "limit": PAGE.min(hi - after),
            });
            let mut s = sink.lock().await;
            s.send(Message::text(req.to_string())).await.ok()?;
            drop(s);
            let reply = loop {
                let m = tokio::time::timeout(Duration::from_secs(10), stream.next())
                    .await
                    .ok()??
                    .ok()?;
                let Message::Text(t) = m else { continue };
                let v: serde_json::Value = serde_json::from_str(t.as_str()).ok()?;
                match v["type"].as_str() {
                    Some("ok" | "error") if v["id"] == id.as_str() => break v,
                    // A late push counts as found.
                    Some("msg") if v["msg"]["conv"] == conv.as_str() => {
                        if let Some(seq) = v["msg"]["seq"].as_u64() {
                            if wanted.contains(&seq) {
                                found.insert((conv.as_str(), seq));
                            }
                        }
                    }
                    _ => {}
                }
            };
            let msgs = reply["msgs"].as_array()?;
            let Some(top) = msgs.last().and_then(|m| m["seq"].as_u64()) else {
                break;
            };
            for m in msgs {
                if let Some(seq) = m["seq"].as_u64() {
                    if wanted.contains(&seq) {
                        found.insert((conv.as_str(), seq));
                    }
                }
            }
            after = top;
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::super::client::Target;
    use super::*;

    fn conv(name: &str, got: &[u64]) -> ConvState {
        ConvState {
            conv: name.to_owned(),
            last: got.last().copied().unwrap_or(0),
            acked: 0,
            got: got.to_vec(),
        }
    }

    #[test]
    fn missing_lists_stored_seqs_not_pushed() {
        let stored = vec![
            ("dm:a:b".to_owned(), vec![1, 2, 4, 5]),
            ("group:g".to_owned(), vec![9, 7]),
            ("group:g".to_owned(), vec![8]),
        ];
        let convs = [conv("dm:a:b", &[1, 2, 3, 5]), conv("group:g", &[8])];
        let m = missing(&stored, &convs);
        assert_eq!(m.len(), 2);
        assert_eq!(m["dm:a:b"], [4]);
        assert_eq!(m["group:g"], [7, 9]);
        assert!(missing(&stored[..1], &[conv("dm:a:b", &[1, 2, 4, 5])]).is_empty());
    }

    /// Against a real server: stored seqs a reader was not pushed are found
    /// in its history (late); a seq that was never stored is not (lost).
    #[tokio::test]
    async fn look_up_finds_stored_messages_in_history() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = tern_server::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        cfg.auth.argon2_m_cost_kib = 8;
        cfg.auth.argon2_t_cost = 1;
        cfg.auth.weak_hashing_for_tests = true;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(tern_server::serve(listener, cfg, async move {
            let _ = stopped.await;
        }));
        let target = Target::new(&[url]).await.unwrap();
        let ta = target.user("lookup-a").await.unwrap();
        let tb = target.user("lookup-b").await.unwrap();
        let ws = target.connect(0, &tb, "d", None).await.unwrap();
        let (sink, mut stream) = ws.split();
        let sink = Mutex::new(sink);
        let mut conv = String::new();
        for k in 1..=3 {
            let m = tern_client::OutMessage::text_to("lookup-b", "x")
                .with_client_msg_id(&k.to_string());
            let ok = target.client_for(&ta).send_http(m).await.unwrap();
            assert_eq!(ok.seq, k, "{ok:?}");
            conv = ok.conv.into_owned();
        }
        // Take the three pushes first, so only history can answer.
        let mut pushed = 0;
        while pushed < 3 {
            if let Some(Ok(Message::Text(t))) = stream.next().await {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                pushed += u64::from(v["type"] == "msg");
            }
        }
        let missing: BTreeMap<String, Vec<u64>> = [(conv.clone(), vec![2, 3, 7])].into();
        let found = look_up(&mut stream, &sink, &missing).await.unwrap();
        assert!(found.contains(&(conv.as_str(), 2)), "{found:?}");
        assert!(found.contains(&(conv.as_str(), 3)), "{found:?}");
        assert!(
            !found.contains(&(conv.as_str(), 7)),
            "never stored: {found:?}"
        );
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
