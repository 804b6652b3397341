//! A TCP relay on 127.0.0.1 in front of a server that may move (a restart
//! on a new port, another node of a cluster): clients keep one address, the
//! relay connects each new connection to wherever the server is now. It can
//! also be a faulty network path: per chunk of bytes, in either direction,
//! a delay, a stall (what a lost packet costs: TCP retransmits after a
//! timeout, holding everything behind it) or a cut of both directions at
//! once, so requests and answers are lost alike.

use super::peer::Rng;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the relay does to each chunk it forwards.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Probability that the connection is cut (both directions at once).
    pub cut: f64,
    /// Probability that the chunk stalls 200-600 ms first.
    pub stall: f64,
    /// Every chunk is held a random 0..=this many ms.
    pub max_delay_ms: u64,
}

/// What the relay did.
#[derive(Default, Debug)]
pub struct RelayCounts {
    pub conns: AtomicU64,
    pub cuts: AtomicU64,
    pub stalls: AtomicU64,
    pub chunks: AtomicU64,
}

/// A running relay; it stops accepting when dropped.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    pub counts: Arc<RelayCounts>,
    calm: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay without faults to wherever `upstream` says.
    pub async fn start(upstream: watch::Receiver<SocketAddr>) -> Relay {
        Relay::faulty(upstream, Faults::default(), 1).await
    }

    /// A relay applying `faults` (choices drawn from `seed`).
    pub async fn faulty(upstream: watch::Receiver<SocketAddr>, faults: Faults, seed: u64) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let counts = Arc::new(RelayCounts::default());
        let calm = Arc::new(AtomicBool::new(false));
        let (c, q) = (counts.clone(), calm.clone());
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let Ok((client, _)) = l.accept().await else {
                    return;
                };
                n += 1;
                c.conns.fetch_add(1, Ordering::Relaxed);
                let to = *upstream.borrow();
                let seed = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                tokio::spawn(relay(client, to, faults, seed, c.clone(), q.clone()));
            }
        });
        Relay {
            addr,
            counts,
            calm,
            task,
        }
    }

    /// From now on forwards every chunk as it comes (connections open
    /// now included), so that a final check cannot be cut.
    pub fn calm(&self) {
        self.calm.store(true, Ordering::Relaxed);
    }

    /// The client-side URL of the relay.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: the server unreachable closes the client at once.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    faults: Faults,
    seed: u64,
    counts: Arc<RelayCounts>,
    calm: Arc<AtomicBool>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let cut_now = Arc::new(tokio::sync::Notify::new());
    let way = |seed: u64| Way {
        rng: Rng(seed | 1),
        faults,
        counts: counts.clone(),
        calm: calm.clone(),
        cut_now: cut_now.clone(),
    };
    tokio::join!(pipe(cr, sw, way(seed)), pipe(sr, cw, way(seed >> 1)));
}

/// One direction of a connection.
struct Way {
    rng: Rng,
    faults: Faults,
    counts: Arc<RelayCounts>,
    calm: Arc<AtomicBool>,
    cut_now: Arc<tokio::sync::Notify>,
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut w: Way,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => break, Ok(n) => n },
            _ = w.cut_now.notified() => return,
        };
        w.counts.chunks.fetch_add(1, Ordering::Relaxed);
        if !w.calm.load(Ordering::Relaxed) {
            if w.rng.chance(w.faults.cut) {
                w.counts.cuts.fetch_add(1, Ordering::Relaxed);
                w.cut_now.notify_waiters();
                return;
            }
            let mut delay = w.rng.below(w.faults.max_delay_ms + 1);
            if w.rng.chance(w.faults.stall) {
                w.counts.stalls.fetch_add(1, Ordering::Relaxed);
                delay += 200 + w.rng.below(400);
            }
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    w.cut_now.notify_waiters();
}
