//! A peer of the fault tests (`faults.rs`, `cluster.rs`): one user's
//! application as PROTOCOL.md asks it to behave. It sends continuously,
//! retrying a send with the same `client_msg_id` after any failure,
//! reconnects and resumes (offline batch), drops duplicates by seq and
//! `msg_id`, fills seq gaps from history and acks cumulatively; it records
//! what the application saw so that [`resume_and_verify`] can check "no
//! loss, no duplicate, in order" against the store's history.

use super::Tern;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub fn env_usize(name: &str, default: usize) -> usize {
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

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

// ---------------------------------------------------------------------------
// Where the clients connect: the server (which moves when it restarts) or
// a proxy in front of it.
// ---------------------------------------------------------------------------

#[derive(Clone)]
pub struct Target {
    /// Address of the WebSocket endpoint (the server, or the proxy).
    pub ws: watch::Receiver<SocketAddr>,
    /// Address of the server itself, for HTTP history.
    pub http: watch::Receiver<SocketAddr>,
}

// ---------------------------------------------------------------------------
// A peer: one user's application, sending and receiving.
// ---------------------------------------------------------------------------

/// One acknowledged send, as the sender saw it.
#[derive(Debug, Clone)]
pub struct Acked {
    pub cmid: String,
    pub conv: String,
    pub seq: u64,
    pub msg_id: String,
}

/// What a peer counted.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Messages the application asked to send (distinct client_msg_ids).
    pub sent: u64,
    /// `send` frames written, retries included.
    pub attempts: u64,
    pub acknowledged: u64,
    /// Retries answered `duplicate: true` (stored before, reply lost).
    pub dup_replies: u64,
    pub rate_limited: u64,
    pub connects: u64,
    /// Delivered to the application: by live push, in the offline batch
    /// after `auth`, from history (gap fill).
    pub by_push: u64,
    pub by_offline: u64,
    pub by_history: u64,
    /// The peer's own sends, as the application reads them back.
    pub own_from_history: u64,
    /// Frames dropped as duplicates (same conv and seq seen before).
    pub dup_dropped: u64,
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Peer {
    pub user: String,
    pub token: String,
    /// Conversations this peer sends to, round robin: (`to` or `group`, id).
    pub targets: Vec<(&'static str, String)>,
    pub target: Target,
    pub http: reqwest::Client,
    /// Per conversation: the highest seq delivered to the application
    /// (everything up to it, in order).
    pub have: HashMap<String, u64>,
    /// What the application got, per conversation, in order: msg_ids.
    pub delivered: HashMap<String, Vec<String>>,
    /// Pushes above a gap, waiting for it to be filled.
    pub pending: HashMap<String, BTreeMap<u64, String>>,
    pub acked_up_to: HashMap<String, u64>,
    pub acks: Vec<Acked>,
    pub counts: Counts,
    /// Pause between two sends.
    pub pace: Duration,
}

pub enum Source {
    Push,
    Offline,
}

impl Peer {
    /// Delivers one `msg` push, dropping duplicates and filling gaps.
    pub async fn on_msg(&mut self, msg: &Value, src: Source) {
        let conv = msg["conv"].as_str().expect("conv").to_owned();
        let seq = msg["seq"].as_u64().expect("seq");
        let msg_id = msg["msg_id"].as_str().expect("msg_id").to_owned();
        let have = *self.have.get(&conv).unwrap_or(&0);
        if seq <= have {
            self.counts.dup_dropped += 1;
            let known = &self.delivered[&conv][seq as usize - 1];
            assert_eq!(
                known, &msg_id,
                "{}: {conv} seq {seq} changed msg_id",
                self.user
            );
            return;
        }
        if seq > have + 1 {
            if self
                .pending
                .entry(conv.clone())
                .or_default()
                .insert(seq, msg_id)
                .is_some()
            {
                self.counts.dup_dropped += 1;
            }
            // A gap: fill it from history (ignore a failure, the next push
            // or the final catch-up tries again).
            let _ = self.fill_gap(&conv, seq - 1).await;
            return;
        }
        self.deliver(&conv, seq, msg_id);
        match src {
            Source::Push => self.counts.by_push += 1,
            Source::Offline => self.counts.by_offline += 1,
        }
        self.drain_pending(&conv);
    }

    pub fn deliver(&mut self, conv: &str, seq: u64, msg_id: String) {
        let have = self.have.entry(conv.to_owned()).or_insert(0);
        assert_eq!(
            seq,
            *have + 1,
            "{}: delivered out of order in {conv}",
            self.user
        );
        *have = seq;
        let list = self.delivered.entry(conv.to_owned()).or_default();
        assert!(
            !list.contains(&msg_id),
            "{}: msg_id {msg_id} delivered twice in {conv}",
            self.user
        );
        list.push(msg_id);
    }

    pub fn drain_pending(&mut self, conv: &str) {
        loop {
            let have = self.have[conv];
            let Some(p) = self.pending.get_mut(conv) else {
                return;
            };
            // Anything at or below `have` came again from history: drop it.
            while p.first_key_value().is_some_and(|(s, _)| *s <= have) {
                p.pop_first();
            }
            match p.first_key_value() {
                Some((&s, _)) if s == have + 1 => {
                    let (_, id) = p.pop_first().unwrap();
                    self.counts.by_push += 1;
                    self.deliver(conv, s, id);
                }
                _ => return,
            }
        }
    }

    /// Fetches `conv` from history above what was delivered, up to `upto`.
    pub async fn fill_gap(&mut self, conv: &str, upto: u64) -> Result<(), String> {
        while *self.have.get(conv).unwrap_or(&0) < upto {
            let have = *self.have.get(conv).unwrap_or(&0);
            let addr = *self.target.http.borrow();
            let url = format!(
                "http://{addr}/v1/conversations/{conv}/messages?after_seq={have}&limit=500"
            );
            let r = timeout(
                Duration::from_secs(5),
                self.http.get(&url).bearer_auth(&self.token).send(),
            )
            .await
            .map_err(|_| "history timed out".to_string())?
            .map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(format!("history: {}", r.status()));
            }
            let body: Value = r.json().await.map_err(|e| e.to_string())?;
            let msgs = body["msgs"].as_array().ok_or("no msgs")?.clone();
            if msgs.is_empty() {
                return Err(format!("history of {conv} ends at {have}, below {upto}"));
            }
            for m in msgs {
                let seq = m["seq"].as_u64().unwrap();
                if seq > upto {
                    break;
                }
                self.deliver(conv, seq, m["msg_id"].as_str().unwrap().to_owned());
                // A device gets no push of its own sends: those always
                // come from history.
                if m["from"] == self.user.as_str() {
                    self.counts.own_from_history += 1;
                } else {
                    self.counts.by_history += 1;
                }
            }
        }
        self.drain_pending(conv);
        Ok(())
    }

    /// Connects and authenticates; delivers the offline batch. `None` when
    /// the server cannot be reached or the connection fails on the way.
    pub async fn connect(&mut self) -> Option<Ws> {
        let addr = *self.target.ws.borrow();
        let url = format!("ws://{addr}/v1/ws");
        let (mut ws, _) = timeout(
            Duration::from_secs(3),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .ok()?
        .ok()?;
        let auth = json!({"type": "auth", "id": "auth", "token": self.token, "device": "d"});
        ws.send(Message::Text(auth.to_string().into())).await.ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut authed = false;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let m = timeout(left, ws.next()).await.ok()??.ok()?;
            let Message::Text(t) = m else {
                if matches!(m, Message::Close(_)) {
                    return None;
                }
                continue;
            };
            let v: Value = serde_json::from_str(t.as_str()).expect("server frames are JSON");
            for f in frames(v) {
                match f["type"].as_str() {
                    Some("ok") if f["id"] == "auth" => authed = true,
                    Some("msg") if authed => self.on_msg(&f["msg"], Source::Offline).await,
                    Some("offline_done") => {
                        self.counts.connects += 1;
                        // Acknowledge what the offline batch delivered.
                        self.acked_up_to.clear();
                        return Some(ws);
                    }
                    Some("error") => panic!("{}: auth failed: {f}", self.user),
                    _ => {}
                }
            }
        }
    }

    /// Cumulative acks for every conversation that moved.
    pub async fn send_acks(&mut self, ws: &mut Ws) -> bool {
        let mut out = Vec::new();
        for (conv, &have) in &self.have {
            if self.acked_up_to.get(conv).is_none_or(|&a| a < have) {
                out.push((conv.clone(), have));
            }
        }
        for (conv, seq) in out {
            let f = json!({"type": "ack", "conv": conv, "seq": seq});
            if ws.send(Message::Text(f.to_string().into())).await.is_err() {
                return false;
            }
            self.acked_up_to.insert(conv, seq);
        }
        true
    }

    /// Sends and receives until `stop` is set and the last send is
    /// acknowledged; reconnects (with the same `client_msg_id` for the send
    /// in flight) whenever the connection fails or an answer is overdue.
    pub async fn run(&mut self, stop: Arc<AtomicBool>) {
        let mut k = 0u64;
        // (request id, client_msg_id, target index)
        let mut outstanding: Option<(String, String, usize)> = None;
        let mut state = SendState::Idle(Instant::now());
        let mut ws: Option<Ws> = None;
        let mut ack_tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            if stop.load(Ordering::Relaxed) && outstanding.is_none() {
                return;
            }
            let Some(sock) = ws.as_mut() else {
                match self.connect().await {
                    Some(s) => {
                        ws = Some(s);
                        if let SendState::Waiting(_) = state {
                            state = SendState::ToWrite(Instant::now());
                        }
                    }
                    None => tokio::time::sleep(Duration::from_millis(50)).await,
                }
                continue;
            };
            let wake = match state {
                SendState::Idle(t) | SendState::ToWrite(t) | SendState::Waiting(t) => t,
            };
            tokio::select! {
                m = sock.next() => {
                    let Some(Ok(m)) = m else { ws = None; continue };
                    let t = match m {
                        Message::Text(t) => t,
                        Message::Close(_) => { ws = None; continue }
                        _ => continue,
                    };
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                    for f in frames(v) {
                        let mine = outstanding.as_ref().is_some_and(|o| f["id"] == o.0.as_str());
                        match f["type"].as_str() {
                            Some("msg") => self.on_msg(&f["msg"], Source::Push).await,
                            Some("ok") if mine => {
                                let (_, cmid, _) = outstanding.take().unwrap();
                                self.counts.acknowledged += 1;
                                if f["duplicate"] == true {
                                    self.counts.dup_replies += 1;
                                }
                                self.acks.push(Acked {
                                    cmid,
                                    conv: f["conv"].as_str().unwrap().to_owned(),
                                    seq: f["seq"].as_u64().unwrap(),
                                    msg_id: f["msg_id"].as_str().unwrap().to_owned(),
                                });
                                state = SendState::Idle(Instant::now() + self.pace);
                            }
                            Some("error") if f["code"] == "rate_limited" => {
                                self.counts.rate_limited += 1;
                                if mine {
                                    state = SendState::ToWrite(Instant::now() + Duration::from_millis(100));
                                }
                            }
                            Some("error") => panic!("{}: unexpected error {f}", self.user),
                            _ => {}
                        }
                    }
                }
                _ = ack_tick.tick() => {
                    if !self.send_acks(sock).await {
                        ws = None;
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => match state {
                    SendState::Waiting(_) => {
                        // No answer in time: the connection is presumed dead.
                        ws = None;
                    }
                    SendState::Idle(_) if stop.load(Ordering::Relaxed) => {
                        state = SendState::Idle(Instant::now() + Duration::from_secs(3600));
                    }
                    SendState::Idle(_) | SendState::ToWrite(_) => {
                        if outstanding.is_none() {
                            k += 1;
                            self.counts.sent += 1;
                            let t = k as usize % self.targets.len();
                            outstanding = Some((format!("s{k}"), format!("{}-{k}", self.user), t));
                        }
                        let (id, cmid, t) = outstanding.clone().unwrap();
                        let (field, to) = &self.targets[t];
                        let f = json!({
                            "type": "send", "id": id, *field: to, "client_msg_id": cmid,
                            "kind": "text", "content": format!("{cmid} from {}", self.user),
                        });
                        self.counts.attempts += 1;
                        state = SendState::Waiting(Instant::now() + Duration::from_secs(3));
                        if sock.send(Message::Text(f.to_string().into())).await.is_err() {
                            ws = None;
                        }
                    }
                }
            }
        }
    }
}

/// Where a peer's sending stands; each holds when it next acts.
#[derive(Debug, Clone, Copy)]
pub enum SendState {
    /// Nothing in flight; the next message goes at this time.
    Idle(Instant),
    /// The message in flight is (re)written at this time.
    ToWrite(Instant),
    /// Written; no answer by this time means the connection is dead.
    Waiting(Instant),
}

/// The frames of a server frame, a `batch` split up.
pub fn frames(v: Value) -> Vec<Value> {
    if v["type"] == "batch" {
        v["frames"].as_array().cloned().unwrap_or_default()
    } else {
        vec![v]
    }
}

/// Peers `p0..pN` (N = `targets.len()`), all in one group (created by p0);
/// each sends to the others and to the group, round robin, and connects
/// to its own target.
pub async fn make_peers(server: &Tern, places: Vec<Target>, pace: Duration) -> Vec<Peer> {
    let n = places.len();
    let mut tokens = Vec::new();
    for i in 0..n {
        tokens.push(server.user(&format!("p{i}")).await);
    }
    let members: Vec<String> = (1..n).map(|i| format!("p{i}")).collect();
    let (st, g) = server
        .call(
            reqwest::Method::POST,
            "/v1/groups",
            Some(&tokens[0]),
            Some(json!({"name": "faults", "members": members})),
        )
        .await;
    assert_eq!(st, 201, "{g}");
    let gid = g["group"].as_str().unwrap().to_owned();
    (0..n)
        .map(|i| {
            let mut targets: Vec<(&'static str, String)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| ("to", format!("p{j}")))
                .collect();
            targets.push(("group", gid.clone()));
            Peer {
                user: format!("p{i}"),
                token: tokens[i].clone(),
                targets,
                target: places[i].clone(),
                http: reqwest::Client::new(),
                have: HashMap::new(),
                delivered: HashMap::new(),
                pending: HashMap::new(),
                acked_up_to: HashMap::new(),
                acks: Vec::new(),
                counts: Counts::default(),
                pace,
            }
        })
        .collect()
}

/// After the traffic: every peer resumes once more (offline batch), fills
/// every gap from history up to each conversation's max seq, and then the
/// invariants are checked against the store's history. Returns the totals.
pub async fn resume_and_verify(server: &Tern, mut peers: Vec<Peer>) -> Counts {
    for p in &mut peers {
        let mut ws = p.connect().await.expect("final resume connects");
        let _ = ws.close(None).await;
        let (st, sync) = server.get("/v1/conversations?limit=1000", &p.token).await;
        assert_eq!(st, 200, "{sync}");
        for c in sync["convs"].as_array().unwrap() {
            let conv = c["conv"].as_str().unwrap().to_owned();
            let max = c["max_seq"].as_u64().unwrap();
            p.fill_gap(&conv, max)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", p.user));
            assert_eq!(
                p.have.get(&conv).copied().unwrap_or(0),
                max,
                "{}: {conv}",
                p.user
            );
        }
        // Nothing is still waiting above a gap.
        for (conv, pend) in &p.pending {
            assert!(
                pend.keys().all(|&s| s <= p.have[conv]),
                "{}: pushes above a gap left in {conv}: {pend:?}",
                p.user
            );
        }
    }
    // History per conversation: gap-free seqs, every acknowledged send
    // exactly once with its acknowledged seq and msg_id, nothing else.
    let acks: Vec<Acked> = peers.iter().flat_map(|p| p.acks.clone()).collect();
    let mut by_conv: HashMap<String, Vec<&Acked>> = HashMap::new();
    for a in &acks {
        by_conv.entry(a.conv.clone()).or_default().push(a);
    }
    for (conv, list) in &by_conv {
        let reader = &peers[0];
        let mut msgs = Vec::new();
        let mut after = 0;
        loop {
            let (st, b) = server
                .get(
                    &format!("/v1/conversations/{conv}/messages?after_seq={after}&limit=500"),
                    if conv.starts_with("group:") {
                        &reader.token
                    } else {
                        let user = conv.split(':').nth(1).unwrap();
                        &peers.iter().find(|p| p.user == user).unwrap().token
                    },
                )
                .await;
            assert_eq!(st, 200, "{b}");
            let page = b["msgs"].as_array().unwrap().clone();
            if page.is_empty() {
                break;
            }
            after = page.last().unwrap()["seq"].as_u64().unwrap();
            msgs.extend(page);
        }
        let user_msgs: Vec<&Value> = msgs.iter().filter(|m| m["kind"] != "system").collect();
        let seqs: Vec<u64> = msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=msgs.len() as u64).collect::<Vec<_>>(),
            "{conv}: seqs gap-free"
        );
        let mut cmids = HashSet::new();
        for m in &user_msgs {
            let c = m["client_msg_id"].as_str().unwrap();
            assert!(cmids.insert(c.to_owned()), "{conv}: {c} stored twice");
        }
        let mut acked_cmids = HashSet::new();
        for a in list {
            acked_cmids.insert(a.cmid.clone());
            let m = msgs
                .iter()
                .find(|m| m["client_msg_id"] == a.cmid.as_str())
                .unwrap_or_else(|| {
                    panic!("acknowledged {} (seq {}) lost from {conv}", a.cmid, a.seq)
                });
            assert_eq!(
                (m["seq"].as_u64(), m["msg_id"].as_str()),
                (Some(a.seq), Some(a.msg_id.as_str())),
                "{conv}: {} as acknowledged",
                a.cmid
            );
        }
        assert_eq!(
            cmids, acked_cmids,
            "{conv}: history holds exactly the acknowledged sends"
        );
        // Every member delivered exactly the history, in order.
        let ids: Vec<String> = msgs
            .iter()
            .map(|m| m["msg_id"].as_str().unwrap().to_owned())
            .collect();
        for p in &peers {
            if conv.starts_with("group:") || conv.split(':').skip(1).any(|u| u == p.user) {
                let got = p.delivered.get(conv).cloned().unwrap_or_default();
                assert_eq!(got, ids, "{}: what the application saw of {conv}", p.user);
            }
        }
    }
    let mut total = Counts::default();
    for p in &peers {
        let c = &p.counts;
        total.sent += c.sent;
        total.attempts += c.attempts;
        total.acknowledged += c.acknowledged;
        total.dup_replies += c.dup_replies;
        total.rate_limited += c.rate_limited;
        total.connects += c.connects;
        total.by_push += c.by_push;
        total.by_offline += c.by_offline;
        total.by_history += c.by_history;
        total.own_from_history += c.own_from_history;
        total.dup_dropped += c.dup_dropped;
    }
    assert_eq!(
        total.sent, total.acknowledged,
        "every send was acknowledged in the end"
    );
    total
}
