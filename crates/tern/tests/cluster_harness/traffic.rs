//! Traffic for the fault tests of a cluster: one user's connection per
//! peer, each in a task of its own that reads (and acks) every push all
//! the time and sends 1:1 and group messages when told to, retrying a
//! send answered `unavailable` with its `client_msg_id` until it is
//! acknowledged. Then the checks: every receiver got every acknowledged
//! message (live or by catch-up), history holds each once, and the counts.

use super::full_history;
use crate::common::{dm, Client};
use crate::support::Tern;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// An acknowledged message: its conversation and seq, who sent it, when
/// its `ok` came.
#[derive(Clone)]
pub struct Acked {
    pub conv: String,
    pub seq: u64,
    pub cmid: String,
    pub from: String,
    pub at: Instant,
}

/// What one receiving connection got: per `(conv, seq)`, when first and
/// how many times.
#[derive(Default)]
struct Seen {
    got: HashMap<(String, u64), (Instant, u32)>,
}

/// Sends not yet acknowledged, and the longest wait for an error answer.
#[derive(Default)]
struct Errors {
    count: usize,
    slowest: Duration,
}

type Cmd = (usize, Duration, oneshot::Sender<()>);

struct Peer {
    user: String,
    seen: Arc<Mutex<Seen>>,
    cmds: mpsc::Sender<Cmd>,
    task: tokio::task::JoinHandle<Client>,
}

/// The peers and what they sent.
pub struct Traffic {
    peers: Vec<Peer>,
    acked: Arc<Mutex<Vec<Acked>>>,
    errors: Arc<Mutex<Errors>>,
    stop: Arc<AtomicBool>,
}

/// What the checks counted.
#[derive(Debug)]
pub struct Counts {
    pub acked: usize,
    pub in_history: usize,
    pub delivered: usize,
    /// Within a second of the sender's `ok`.
    pub live: usize,
    /// Later: the catch-up after the fault.
    pub caught_up: usize,
    pub duplicates: u32,
    /// Sends answered `unavailable` (then retried) and the slowest such
    /// answer.
    pub unavailable: usize,
    pub slowest_error: Duration,
}

impl Traffic {
    /// One peer per `(user, connection)`; user `i` sends 1:1 messages to
    /// user `i + 1` and, every other message, to `group`.
    pub fn start(clients: Vec<(String, Client)>, group: &str) -> Traffic {
        let users: Vec<String> = clients.iter().map(|(u, _)| u.clone()).collect();
        let mut t = Traffic {
            peers: Vec::new(),
            acked: Arc::default(),
            errors: Arc::default(),
            stop: Arc::default(),
        };
        for (i, (user, client)) in clients.into_iter().enumerate() {
            let to = users[(i + 1) % users.len()].clone();
            t.peers.push(t.peer(client, user, to, group.to_owned()));
        }
        t
    }

    fn peer(&self, mut c: Client, user: String, to: String, group: String) -> Peer {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (tx, mut rx) = mpsc::channel::<Cmd>(4);
        let (seen2, stop, acked, errors) = (
            seen.clone(),
            self.stop.clone(),
            self.acked.clone(),
            self.errors.clone(),
        );
        let me = user.clone();
        let task = tokio::spawn(async move {
            let mut sent = 0usize;
            loop {
                read(&mut c, &seen2, Duration::from_millis(20)).await;
                if stop.load(Ordering::Acquire) {
                    return c;
                }
                let Ok((n, pace, done)) = rx.try_recv() else {
                    continue;
                };
                for _ in 0..n {
                    sent += 1;
                    let cmid = format!("{me}-{sent}");
                    let (field, target, conv) = if sent.is_multiple_of(2) {
                        ("group", &group, format!("group:{group}"))
                    } else {
                        ("to", &to, dm(&me, &to))
                    };
                    loop {
                        let asked = Instant::now();
                        let r = c
                            .request(json!({"type": "send", field: target, "client_msg_id": cmid,
                                "kind": "text", "content": cmid}))
                            .await;
                        if r["type"] == "ok" {
                            assert_eq!(r["conv"].as_str(), Some(conv.as_str()), "{r}");
                            acked.lock().unwrap().push(Acked {
                                conv: conv.clone(),
                                seq: r["seq"].as_u64().unwrap(),
                                cmid: cmid.clone(),
                                from: me.clone(),
                                at: Instant::now(),
                            });
                            break;
                        }
                        assert_eq!(r["code"], "unavailable", "send {cmid}: {r}");
                        {
                            let mut e = errors.lock().unwrap();
                            e.count += 1;
                            e.slowest = e.slowest.max(asked.elapsed());
                        }
                        read(&mut c, &seen2, Duration::from_millis(200)).await;
                    }
                    read(&mut c, &seen2, pace).await;
                }
                let _ = done.send(());
            }
        });
        Peer {
            user,
            seen,
            cmds: tx,
            task,
        }
    }

    /// Every peer starts sending `n` messages, `pace` apart; each receiver
    /// answers once its peer's are all acknowledged.
    pub async fn begin(&self, n: usize, pace: Duration) -> Vec<oneshot::Receiver<()>> {
        let all: Vec<usize> = (0..self.peers.len()).collect();
        self.begin_some(&all, n, pace).await
    }

    /// As `begin`, for the peers at `which` only.
    pub async fn begin_some(
        &self,
        which: &[usize],
        n: usize,
        pace: Duration,
    ) -> Vec<oneshot::Receiver<()>> {
        let mut waits = Vec::new();
        for p in which.iter().map(|&i| &self.peers[i]) {
            let (tx, rx) = oneshot::channel();
            p.cmds.send((n, pace, tx)).await.unwrap();
            waits.push(rx);
        }
        waits
    }

    /// Every peer sends `n` messages, `pace` apart, all acknowledged.
    pub async fn send(&self, n: usize, pace: Duration) {
        for w in self.begin(n, pace).await {
            w.await.expect("a peer's task ended");
        }
    }

    pub fn acked(&self) -> Vec<Acked> {
        self.acked.lock().unwrap().clone()
    }

    fn expected<'a>(all: &'a [Acked], user: &str) -> Vec<&'a Acked> {
        all.iter()
            .filter(|a| {
                a.from != user && (a.conv.starts_with("group:") || a.conv == dm(&a.from, user))
            })
            .collect()
    }

    /// Waits until every peer got every message sent to it, or panics
    /// after `bound`.
    pub async fn all_delivered(&self, bound: Duration) {
        let all = self.acked();
        let deadline = Instant::now() + bound;
        for p in &self.peers {
            let want = Self::expected(&all, &p.user);
            loop {
                let missing: Vec<String> = {
                    let seen = p.seen.lock().unwrap();
                    want.iter()
                        .filter(|a| !seen.got.contains_key(&(a.conv.clone(), a.seq)))
                        .map(|a| format!("{} {}#{}", a.cmid, a.conv, a.seq))
                        .collect()
                };
                if missing.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} is missing {} of {} messages after {bound:?}: {missing:?}",
                    p.user,
                    missing.len(),
                    want.len()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Checks history (each acknowledged message once, at its seq; read
    /// on `node` with the token of the sender of each conversation's first
    /// message), stops the peers and counts.
    pub async fn finish(self, node: &Tern, tokens: &HashMap<String, String>) -> Counts {
        let all = self.acked();
        let mut convs: Vec<String> = all.iter().map(|a| a.conv.clone()).collect();
        convs.sort();
        convs.dedup();
        let mut in_history = 0;
        for conv in &convs {
            let from = &all.iter().find(|a| &a.conv == conv).unwrap().from;
            let h = full_history(node, &tokens[from], conv).await;
            let mut by_cmid: HashMap<&str, Vec<u64>> = HashMap::new();
            for m in &h {
                if let Some(cmid) = m["client_msg_id"].as_str() {
                    by_cmid
                        .entry(cmid)
                        .or_default()
                        .push(m["seq"].as_u64().unwrap());
                }
            }
            for a in all.iter().filter(|a| &a.conv == conv) {
                assert_eq!(
                    by_cmid.get(a.cmid.as_str()),
                    Some(&vec![a.seq]),
                    "{} in {conv}: once, at its seq",
                    a.cmid
                );
                in_history += 1;
            }
        }
        let (mut live, mut caught_up, mut duplicates, mut delivered) = (0, 0, 0, 0);
        for p in &self.peers {
            let seen = p.seen.lock().unwrap();
            for a in Self::expected(&all, &p.user) {
                let Some((at, n)) = seen.got.get(&(a.conv.clone(), a.seq)) else {
                    continue;
                };
                delivered += 1;
                duplicates += n - 1;
                if at.saturating_duration_since(a.at) < Duration::from_secs(1) {
                    live += 1;
                } else {
                    caught_up += 1;
                }
            }
        }
        self.stop.store(true, Ordering::Release);
        for p in self.peers {
            p.task.await.unwrap().close().await;
        }
        let e = self.errors.lock().unwrap();
        Counts {
            acked: all.len(),
            in_history,
            delivered,
            live,
            caught_up,
            duplicates,
            unavailable: e.count,
            slowest_error: e.slowest,
        }
    }
}

impl Counts {
    pub fn line(&self) -> String {
        format!(
            "acknowledged {}, in history {}; delivered {} ({} live, {} by catch-up), \
             duplicates {}; {} sends answered unavailable and retried (slowest answer {:.1} s)",
            self.acked,
            self.in_history,
            self.delivered,
            self.live,
            self.caught_up,
            self.duplicates,
            self.unavailable,
            self.slowest_error.as_secs_f64()
        )
    }
}

/// Reads for `d` (at least one wait): records and acks every `msg` push.
/// A receiver's connection must stay open.
async fn read(c: &mut Client, seen: &Mutex<Seen>, d: Duration) {
    let until = tokio::time::Instant::now() + d;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let Some(f) = c.next_within(left).await else {
            assert!(
                c.closed().is_none(),
                "a receiver's connection was closed: {:?}",
                c.closed()
            );
            return;
        };
        if f["type"] != "msg" {
            continue;
        }
        let m = &f["msg"];
        let (conv, seq) = (m["conv"].as_str().unwrap(), m["seq"].as_u64().unwrap());
        seen.lock()
            .unwrap()
            .got
            .entry((conv.to_owned(), seq))
            .or_insert((Instant::now(), 0))
            .1 += 1;
        c.send(json!({"type": "ack", "conv": conv, "seq": seq}))
            .await;
    }
}

/// Reads a connection that is not a peer (so its pings are answered, and
/// it sends one of its own every 5 s) until it is closed or `stop`;
/// returns it with its close code.
pub fn watch(
    mut c: Client,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Client, Option<u16>)> {
    tokio::spawn(async move {
        let mut pinged = Instant::now();
        while !stop.load(Ordering::Acquire) && c.closed().is_none() {
            let _ = c.next_within(Duration::from_millis(100)).await;
            // Not idle (the server closes a silent connection with 1000).
            if pinged.elapsed() > Duration::from_secs(5) {
                pinged = Instant::now();
                let _ = c.try_send(json!({"type": "ping"})).await;
            }
        }
        let code = c.closed();
        (c, code)
    })
}
