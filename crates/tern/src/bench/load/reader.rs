//! A connection's reader task: counts replies and pushes, checks seq
//! order, records latencies, acknowledges every 20 ms, and decides when
//! the connection is done.

use super::lost::{look_up, missing, stored_by};
use super::{ConvState, Expect, ReaderOut, Source};
use crate::bench::client::{nanos_since, stamp, In, Sink, Stream};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Mutex};
use tokio_tungstenite::tungstenite::Message;

#[allow(clippy::too_many_arguments)]
pub(super) async fn reader(
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
pub(super) fn handle(
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
pub(super) fn finished(
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

pub(super) async fn send_acks(
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
