//! A peer of the fault tests (`faults.rs`, `cluster.rs`): one user's
//! application on the SDK. Its `tern_client::Session` does what PROTOCOL.md
//! asks of a client (a send retried with the same `client_msg_id` until
//! `ok`, cumulative acks, duplicates dropped, seq gaps filled from history,
//! reconnect with backoff and resume); the peer sends continuously, reads
//! the session's events, and records what its application saw so that
//! [`resume_and_verify`] can check "no loss, no duplicate, in order"
//! against the store's history.
//!
//! Peers reach the server through a [`Relay`](super::relay::Relay), so a
//! server that restarts on another port, or a peer that moves to another
//! node, keeps one address for the session to dial again.

use super::Tern;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tern_client::wire::MsgView;
use tern_client::{Client, ClientConfig, Event, Events, OutMessage, Session, Target};
use tokio::time::timeout;

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (xorshift64*), seeded per test so a
/// failure can be replayed with the printed seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn seeded(name: &str) -> Rng {
        let seed = std::env::var("TERN_FAULT_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("{name}: TERN_FAULT_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `p` (never for 0).
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// The SDK's timings for the fault tests: a dead connection is noticed
/// within seconds, a server back from a crash is found within a second,
/// and a send is retried (same `client_msg_id`) as long as it takes.
pub fn fault_config() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(3),
        send_attempts: 1000,
        retry_base: Duration::from_millis(50),
        reconnect_base: Duration::from_millis(50),
        reconnect_max: Duration::from_secs(1),
        ping_interval: Duration::from_secs(2),
        ..ClientConfig::default()
    }
}

/// One acknowledged send, as the sender saw it.
#[derive(Debug, Clone)]
pub struct Acked {
    pub cmid: String,
    pub conv: String,
    pub seq: u64,
    pub msg_id: u64,
}

/// What a peer counted.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Messages the application asked to send (distinct client_msg_ids).
    pub sent: u64,
    pub acknowledged: u64,
    /// Sends answered `duplicate: true` (stored before, the `ok` lost).
    pub dup_replies: u64,
    /// Sends the session gave up on (a transient error after its own
    /// retries) that the application sent again with the same id.
    pub app_resends: u64,
    /// `Connected` events: the first connection plus every resume.
    pub connects: u64,
    /// Messages of others delivered live, and while resuming (between
    /// `Connected` and `OfflineDone`: the offline batch).
    pub by_push: u64,
    pub by_offline: u64,
    /// The peer's own sends the session handed out as events (through a
    /// gap fill or the offline batch: no live push comes for them).
    pub own_from_history: u64,
    /// Messages the application loaded itself when a conversation first
    /// showed up above seq 1 (what came before it joined the session).
    pub loaded_first: u64,
    /// `error` frames `rate_limited` that answered no request.
    pub rate_limited: u64,
    /// From `Session::stats`: gap fills, messages they handed out,
    /// redelivered pushes dropped.
    pub gap_fills: u64,
    pub by_history: u64,
    pub dup_dropped: u64,
}

impl Counts {
    fn add(&mut self, c: &Counts) {
        self.sent += c.sent;
        self.acknowledged += c.acknowledged;
        self.dup_replies += c.dup_replies;
        self.app_resends += c.app_resends;
        self.connects += c.connects;
        self.by_push += c.by_push;
        self.by_offline += c.by_offline;
        self.own_from_history += c.own_from_history;
        self.loaded_first += c.loaded_first;
        self.rate_limited += c.rate_limited;
        self.gap_fills += c.gap_fills;
        self.by_history += c.by_history;
        self.dup_dropped += c.dup_dropped;
    }

    /// The counts as `key=value` pairs for a test's summary line.
    pub fn line(&self) -> String {
        format!(
            "sent={} acknowledged={} lost=0 duplicated_after_dedup=0 retries_answered_duplicate={} \
             app_resends={} rate_limited={} connects={} delivered_live={} delivered_offline={} \
             delivered_from_history={} gap_fills={} own_sends_as_events={} loaded_first={} \
             duplicate_pushes_dropped={}",
            self.sent,
            self.acknowledged,
            self.dup_replies,
            self.app_resends,
            self.rate_limited,
            self.connects,
            self.by_push,
            self.by_offline,
            self.by_history,
            self.gap_fills,
            self.own_from_history,
            self.loaded_first,
            self.dup_dropped
        )
    }
}

pub struct Peer {
    pub user: String,
    pub token: String,
    pub session: Session,
    events: Events,
    /// Conversations this peer sends to, round robin.
    pub targets: Vec<Target>,
    /// Per conversation, what the application has: seq -> msg_id (events
    /// of the session, and its own acknowledged sends).
    pub view: HashMap<String, BTreeMap<u64, u64>>,
    /// Per conversation, the seq of the last message event.
    last_event: HashMap<String, u64>,
    /// Between `Connected` and `OfflineDone`.
    resuming: bool,
    pub acks: Vec<Acked>,
    pub counts: Counts,
    /// Pause between two sends.
    pub pace: Duration,
}

impl Peer {
    /// Sends and receives until `stop` is set and the last send is
    /// acknowledged.
    pub async fn run(&mut self, stop: Arc<AtomicBool>) {
        let mut sender = tokio::spawn(send_loop(
            self.session.clone(),
            self.user.clone(),
            self.targets.clone(),
            self.pace,
            stop,
        ));
        loop {
            tokio::select! {
                r = &mut sender => {
                    let (acks, c) = r.expect("sender task");
                    self.acks = acks;
                    self.counts.add(&c);
                    return;
                }
                ev = self.events.recv() => self.on_event(ev).await,
            }
        }
    }

    async fn on_event(&mut self, ev: Option<Event>) {
        let Some(ev) = ev else {
            panic!("{}: the session ended", self.user);
        };
        match ev {
            Event::Connected { .. } => {
                self.counts.connects += 1;
                self.resuming = true;
            }
            Event::OfflineDone { .. } => self.resuming = false,
            Event::Message(m) => self.on_msg(m).await,
            Event::ServerError(e) if e.code == "rate_limited" => self.counts.rate_limited += 1,
            Event::ServerError(e) => panic!("{}: unexpected error {e:?}", self.user),
            Event::Disconnected {
                code,
                reason,
                reconnecting: false,
            } => panic!("{}: session ended ({code:?} {reason})", self.user),
            _ => {}
        }
    }

    /// A message event: in seq order within its conversation, each
    /// message once.
    async fn on_msg(&mut self, m: MsgView<'static>) {
        let conv = m.conv.to_string();
        let first = !self.last_event.contains_key(&conv);
        let last = self.last_event.insert(conv.clone(), m.seq).unwrap_or(0);
        assert!(
            m.seq > last,
            "{}: {conv} seq {} handed out after {last}",
            self.user,
            m.seq
        );
        let own = m.from == self.user.as_str();
        if own {
            self.counts.own_from_history += 1;
        } else if self.resuming {
            self.counts.by_offline += 1;
        } else {
            self.counts.by_push += 1;
        }
        // One's own message may be had already, from its `ok`.
        self.record(&conv, m.seq, m.msg_id, own);
        if first && m.seq > 1 {
            self.load_before(&conv, m.seq).await;
        }
    }

    /// A conversation's first message came above seq 1: the application
    /// loads what came before, as a chat application opening it would.
    async fn load_before(&mut self, conv: &str, seq: u64) {
        let mut before = seq;
        while before > 1 {
            let page = match self
                .session
                .history(conv, Some(before), None, Some(500))
                .await
            {
                Ok(p) => p.msgs,
                Err(e) if e.is_transient() => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => panic!("{}: history of {conv}: {e}", self.user),
            };
            let Some(low) = page.first().map(|m| m.seq) else {
                break;
            };
            for m in page {
                self.counts.loaded_first += 1;
                let own = m.from == self.user.as_str();
                self.record(conv, m.seq, m.msg_id, own);
            }
            before = low;
        }
    }

    /// Puts a message into the application's view: a seq is had once
    /// (but for one's own, which `ok` may have brought already), and
    /// always with the same `msg_id`.
    fn record(&mut self, conv: &str, seq: u64, msg_id: u64, own: bool) {
        let had = self
            .view
            .entry(conv.to_owned())
            .or_default()
            .insert(seq, msg_id);
        assert!(
            had.is_none() || (own && had == Some(msg_id)),
            "{}: {conv} seq {seq} delivered twice (msg_id {had:?}, then {msg_id})",
            self.user
        );
    }

    /// The acknowledged sends into the view (an own send the session also
    /// handed out through a gap fill must carry the acknowledged msg_id).
    fn merge_acks(&mut self) {
        for a in self.acks.clone() {
            let v = self.view.entry(a.conv.clone()).or_default();
            match v.insert(a.seq, a.msg_id) {
                None => {}
                Some(id) => assert_eq!(
                    id, a.msg_id,
                    "{}: {} at seq {} of {} has another msg_id",
                    self.user, a.cmid, a.seq, a.conv
                ),
            }
        }
    }

    /// Reads events until the view holds `1..=max` of every conversation
    /// in `want`, or panics after `limit`.
    async fn catch_up(&mut self, want: &HashMap<String, u64>, limit: Duration) {
        let done = |p: &Peer| {
            want.iter().all(|(conv, &max)| {
                p.view.get(conv).map_or(max == 0, |v| {
                    v.len() as u64 == max && v.keys().next_back() == Some(&max)
                })
            })
        };
        let deadline = tokio::time::Instant::now() + limit;
        while !done(self) {
            let ev = tokio::time::timeout_at(deadline, self.events.recv()).await;
            let Ok(ev) = ev else {
                let have: HashMap<&String, (usize, Option<&u64>)> = self
                    .view
                    .iter()
                    .map(|(c, v)| (c, (v.len(), v.keys().next_back())))
                    .collect();
                panic!(
                    "{}: the session did not catch up within {limit:?}: want {want:?}, have \
                     (count, top) {have:?}, stats {:?}",
                    self.user,
                    self.session.stats()
                );
            };
            self.on_event(ev).await;
        }
    }
}

/// Sends one message at a time, round robin over `targets`, until `stop`;
/// the message in hand is sent (same `client_msg_id`) until it is `ok`.
async fn send_loop(
    session: Session,
    user: String,
    targets: Vec<Target>,
    pace: Duration,
    stop: Arc<AtomicBool>,
) -> (Vec<Acked>, Counts) {
    let mut acks = Vec::new();
    let mut c = Counts::default();
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        c.sent += 1;
        let cmid = format!("{user}-{k}");
        let text = format!("{cmid} from {user}");
        let msg = match &targets[k as usize % targets.len()] {
            Target::User(u) => OutMessage::text_to(u, &text),
            Target::Group(g) => OutMessage::text_to_group(g, &text),
        }
        .with_client_msg_id(&cmid);
        let ok = loop {
            match session.send(msg.clone()).await {
                Ok(ok) => break ok,
                Err(e) if e.is_transient() => c.app_resends += 1,
                Err(e) => panic!("{user}: send {cmid}: {e}"),
            }
        };
        c.acknowledged += 1;
        c.dup_replies += u64::from(ok.duplicate);
        acks.push(Acked {
            cmid,
            conv: ok.conv.into_owned(),
            seq: ok.seq,
            msg_id: ok.msg_id,
        });
        tokio::time::sleep(pace).await;
    }
    (acks, c)
}

/// Peers `p0..pN` (N = `places.len()`), all in one group (created by p0);
/// each sends to the others and to the group, round robin, and connects
/// through its own place (a relay's URL, `http://host:port`).
pub async fn make_peers(server: &Tern, places: Vec<String>, pace: Duration) -> Vec<Peer> {
    let n = places.len();
    let mut tokens = Vec::new();
    for i in 0..n {
        tokens.push(server.user(&format!("p{i}")).await);
    }
    let members: Vec<String> = (1..n).map(|i| format!("p{i}")).collect();
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let g = server
        .client_for(&tokens[0])
        .create_group("faults", &members)
        .await
        .expect("create the group");
    let gid = g.group.into_owned();
    let mut peers = Vec::new();
    for (i, place) in places.into_iter().enumerate() {
        let mut targets: Vec<Target> = (0..n)
            .filter(|&j| j != i)
            .map(|j| Target::User(format!("p{j}")))
            .collect();
        targets.push(Target::Group(gid.clone()));
        let client = Client::with_config(&place, fault_config())
            .expect("relay URL")
            .with_token(&tokens[i]);
        let (session, events) = first_connect(&client).await;
        peers.push(Peer {
            user: format!("p{i}"),
            token: tokens[i].clone(),
            session,
            events,
            targets,
            view: HashMap::new(),
            last_event: HashMap::new(),
            resuming: false,
            acks: Vec::new(),
            counts: Counts::default(),
            pace,
        });
    }
    peers
}

/// Opens a session; a first connection cut on the way (the lossy relay)
/// is tried again, as an application would, until `WAIT` has passed.
async fn first_connect(client: &Client) -> (Session, Events) {
    let deadline = tokio::time::Instant::now() + super::WAIT;
    loop {
        match timeout(super::WAIT, client.connect("d")).await {
            Ok(Ok(s)) => return s,
            Ok(Err(e)) if e.is_transient() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("connect: {other:?}"),
        }
    }
}

/// Peers at work: each runs in its own task until [`Traffic::stop`].
pub struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Peer>>,
}

impl Traffic {
    pub fn start(peers: Vec<Peer>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = peers
            .into_iter()
            .map(|mut p| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    p.run(stop).await;
                    p
                })
            })
            .collect();
        Traffic { stop, tasks }
    }

    /// Stops sending; the peers once their last send is acknowledged.
    pub async fn stop(self) -> Vec<Peer> {
        self.stop.store(true, Ordering::Relaxed);
        let mut peers = Vec::new();
        for t in self.tasks {
            peers.push(
                timeout(Duration::from_secs(60), t)
                    .await
                    .expect("peer stops")
                    .expect("peer task"),
            );
        }
        peers
    }
}

/// Every message of `conv`, oldest first (history paged forward).
pub async fn full_history(client: &Client, conv: &str) -> Vec<MsgView<'static>> {
    let mut all: Vec<MsgView<'static>> = Vec::new();
    loop {
        let after = all.last().map_or(0, |m| m.seq);
        let page = timeout(
            super::WAIT,
            client.messages(conv, None, Some(after), Some(500)),
        )
        .await
        .expect("history in time")
        .unwrap_or_else(|e| panic!("history of {conv}: {e}"));
        if page.msgs.is_empty() {
            return all;
        }
        all.extend(page.msgs);
    }
}

/// After the traffic: every peer's session catches up with each of its
/// conversations' max seq (offline batch, sync and gap fill are the
/// session's own), and then the invariants are checked against the
/// store's history. Returns the totals.
pub async fn resume_and_verify(server: &Tern, mut peers: Vec<Peer>) -> Counts {
    futures_util::future::join_all(peers.iter_mut().map(|p| async move {
        p.merge_acks();
        let convs = server
            .client_for(&p.token)
            .conversations()
            .await
            .unwrap_or_else(|e| panic!("{}: conversations: {e}", p.user));
        let want: HashMap<String, u64> = convs
            .convs
            .iter()
            .map(|c| (c.conv.to_string(), c.max_seq))
            .collect();
        p.catch_up(&want, Duration::from_secs(30)).await;
    }))
    .await;
    // History per conversation: gap-free seqs, every acknowledged send
    // exactly once with its acknowledged seq and msg_id, nothing else.
    let mut by_conv: HashMap<String, Vec<&Acked>> = HashMap::new();
    for a in peers.iter().flat_map(|p| &p.acks) {
        by_conv.entry(a.conv.clone()).or_default().push(a);
    }
    for (conv, list) in &by_conv {
        let reader = if conv.starts_with("group:") {
            &peers[0]
        } else {
            let user = conv.split(':').nth(1).unwrap();
            peers.iter().find(|p| p.user == user).unwrap()
        };
        let msgs = full_history(&server.client_for(&reader.token), conv).await;
        let seqs: Vec<u64> = msgs.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=msgs.len() as u64).collect::<Vec<_>>(),
            "{conv}: seqs gap-free"
        );
        let mut cmids = HashSet::new();
        for m in msgs.iter().filter(|m| m.kind != "system") {
            let c = m.client_msg_id.as_deref().expect("client_msg_id");
            assert!(cmids.insert(c.to_owned()), "{conv}: {c} stored twice");
        }
        let mut acked_cmids = HashSet::new();
        for a in list {
            acked_cmids.insert(a.cmid.clone());
            let m = msgs
                .iter()
                .find(|m| m.client_msg_id.as_deref() == Some(a.cmid.as_str()))
                .unwrap_or_else(|| {
                    panic!("acknowledged {} (seq {}) lost from {conv}", a.cmid, a.seq)
                });
            assert_eq!(
                (m.seq, m.msg_id),
                (a.seq, a.msg_id),
                "{conv}: {} as acknowledged",
                a.cmid
            );
        }
        assert_eq!(
            cmids, acked_cmids,
            "{conv}: history holds exactly the acknowledged sends"
        );
        // Every member's application has exactly the history, in order.
        let ids: Vec<u64> = msgs.iter().map(|m| m.msg_id).collect();
        for p in &peers {
            if conv.starts_with("group:") || conv.split(':').skip(1).any(|u| u == p.user) {
                let got: Vec<u64> = p
                    .view
                    .get(conv)
                    .map(|v| v.values().copied().collect())
                    .unwrap_or_default();
                assert_eq!(got, ids, "{}: what the application saw of {conv}", p.user);
            }
        }
    }
    let mut total = Counts::default();
    for p in &peers {
        let s = p.session.stats();
        total.add(&Counts {
            gap_fills: s.gap_fills,
            by_history: s.filled_messages,
            dup_dropped: s.duplicates_dropped,
            ..p.counts.clone()
        });
    }
    assert_eq!(
        total.sent, total.acknowledged,
        "every send was acknowledged in the end"
    );
    total
}
