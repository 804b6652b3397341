//! The `Bus` / `Presence` conformance checks: one set that the in-process
//! implementations (`tern_core::LocalBus`, `LocalPresence`) and the
//! networked ones (`NatsBus`, `RedisPresence`) all pass, so the node can
//! rely on the same behaviour in embedded and cluster mode.
//!
//! Each check takes handles of two or three "nodes" sharing one backend
//! (siblings of one `LocalPresence`, or several `RedisPresence`s on one
//! key prefix; one `LocalBus` started for several nodes, or several
//! `NatsBus`es on one stream) that nothing else uses. The test targets in
//! `tests/` run every check against each implementation.
//!
//! The checks panic on a failure, like assertions in a test.

use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_core::bus::{
    pack, Bus, Envelope, Forward, ForwardAnswer, ForwardHandler, Forwarding, Inbound, NodeId,
};
use tern_core::presence::{Connected, Presence, Route};
use tern_core::push::{Outbound, Push};
use tokio::sync::Notify;

fn route(p: &dyn Presence, conn: u64) -> Route {
    Route {
        node: p.node(),
        conn,
        session: 0,
    }
}

fn sorted(mut v: Vec<NodeId>) -> Vec<NodeId> {
    v.sort_unstable();
    v.dedup();
    v
}

/// Polls `f` until it is true or `within` has passed; the time it took.
async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every node appears in every node's `live_nodes` (a networked presence
/// learns of new nodes at its next heartbeat).
pub async fn live_nodes_include_all(p: &[&dyn Presence]) {
    let all = sorted(p.iter().map(|p| p.node()).collect());
    assert_eq!(all.len(), p.len(), "node ids are unique");
    for n in p {
        assert!(n.live_nodes().contains(&n.node()), "a node counts itself");
        eventually(
            Duration::from_secs(5),
            "live_nodes lists every node",
            || {
                let live = n.live_nodes();
                let ok = all.iter().all(|x| live.contains(x));
                async move { ok }
            },
        )
        .await;
        n.health().await.expect("health");
    }
}

/// Devices of one user on two nodes: routes, `online`, `nodes_of` and the
/// first/last flags, seen from either node.
pub async fn routes_and_online_across_nodes(p: &[&dyn Presence]) {
    let (a, b) = (p[0], p[1]);
    let (ra, rb) = (route(a, 1), route(b, 7));
    assert_eq!(
        a.connected("ann", "phone", ra).await.unwrap(),
        Connected {
            replaced: None,
            first: true
        }
    );
    assert_eq!(
        b.connected("ann", "laptop", rb).await.unwrap(),
        Connected {
            replaced: None,
            first: false
        }
    );
    for n in [a, b] {
        assert_eq!(
            n.online(&["ann", "bob", "ann"]).await.unwrap(),
            [true, false, true]
        );
        assert_eq!(
            n.nodes_of(&["ann".into()]).await.unwrap(),
            [sorted(vec![a.node(), b.node()])]
        );
    }
    assert!(n_empty(a.online(&[]).await.unwrap()));
    // The phone leaves: the laptop keeps the user online.
    assert!(!a.disconnected("ann", "phone", ra).await.unwrap());
    assert_eq!(b.online(&["ann"]).await.unwrap(), [true]);
    assert_eq!(a.nodes_of(&["ann".into()]).await.unwrap(), [vec![b.node()]]);
    // The last device leaves.
    assert!(b.disconnected("ann", "laptop", rb).await.unwrap());
    assert_eq!(a.online(&["ann"]).await.unwrap(), [false]);
    assert_eq!(
        a.nodes_of(&["ann".into()]).await.unwrap(),
        [Vec::<NodeId>::new()]
    );
    // Back again: first once more.
    assert!(a.connected("ann", "phone", ra).await.unwrap().first);
    // Disconnecting what was never there.
    assert!(!a.disconnected("nobody", "phone", ra).await.unwrap());
    assert!(!a.disconnected("ann", "tablet", ra).await.unwrap());
    assert_eq!(a.online(&["ann"]).await.unwrap(), [true]);
}

fn n_empty<T>(v: Vec<T>) -> bool {
    v.is_empty()
}

/// The same device logging in on another node (or again on the same one)
/// replaces the old route and says which it was.
pub async fn same_device_replaces(p: &[&dyn Presence]) {
    let (a, b) = (p[0], p[1]);
    let (ra, rb) = (route(a, 1), route(b, 2));
    assert!(a.connected("cat", "phone", ra).await.unwrap().first);
    let c = b.connected("cat", "phone", rb).await.unwrap();
    assert_eq!(c.replaced, Some(ra), "names the old route");
    assert!(!c.first, "the user was online before");
    assert_eq!(a.nodes_of(&["cat".into()]).await.unwrap(), [vec![b.node()]]);
    // Again on the same node with a new connection.
    let rb2 = route(b, 3);
    let c = b.connected("cat", "phone", rb2).await.unwrap();
    assert_eq!(c.replaced, Some(rb));
    // Another device does not replace anything.
    let c = a.connected("cat", "laptop", route(a, 4)).await.unwrap();
    assert_eq!(
        c,
        Connected {
            replaced: None,
            first: false
        }
    );
}

/// 5.3: `devices` lists a user's live devices on every node with the
/// session of each connection, sorted; a replaced or disconnected device
/// goes, and a restored route keeps its session.
pub async fn devices_with_sessions(p: &[&dyn Presence]) {
    let (a, b) = (p[0], p[1]);
    let with = |r: Route, session: u128| Route { session, ..r };
    let (ra, rb) = (with(route(a, 31), 7), with(route(b, 32), u128::MAX));
    a.connected("eve", "phone", ra).await.unwrap();
    b.connected("eve", "laptop", rb).await.unwrap();
    let want = vec![("laptop".to_owned(), rb), ("phone".to_owned(), ra)];
    assert_eq!(a.devices("eve").await.unwrap(), want);
    assert_eq!(b.devices("eve").await.unwrap(), want);
    assert!(a.devices("nobody").await.unwrap().is_empty());
    // The phone again through node b, with another session.
    let rb2 = with(route(b, 33), 9);
    b.connected("eve", "phone", rb2).await.unwrap();
    assert_eq!(
        a.devices("eve").await.unwrap(),
        vec![("laptop".to_owned(), rb), ("phone".to_owned(), rb2)]
    );
    assert!(!b.disconnected("eve", "laptop", rb).await.unwrap());
    assert_eq!(
        a.devices("eve").await.unwrap(),
        vec![("phone".to_owned(), rb2)]
    );
    // Written back after a loss: the session comes back with it.
    let ra2 = with(route(a, 34), 11);
    assert!(a
        .restore(&[("eve".into(), "tablet".into(), ra2)])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        b.devices("eve").await.unwrap(),
        vec![("phone".to_owned(), rb2), ("tablet".to_owned(), ra2)]
    );
}

/// A disconnect that comes after the device already connected elsewhere
/// (compare-and-delete) leaves the newer route alone.
pub async fn stale_disconnect_keeps_newer_route(p: &[&dyn Presence]) {
    let (a, b) = (p[0], p[1]);
    let (ra, rb) = (route(a, 10), route(b, 20));
    a.connected("dan", "phone", ra).await.unwrap();
    b.connected("dan", "phone", rb).await.unwrap();
    assert!(!a.disconnected("dan", "phone", ra).await.unwrap());
    assert_eq!(a.online(&["dan"]).await.unwrap(), [true]);
    assert_eq!(a.nodes_of(&["dan".into()]).await.unwrap(), [vec![b.node()]]);
    assert!(b.disconnected("dan", "phone", rb).await.unwrap());
    assert_eq!(b.online(&["dan"]).await.unwrap(), [false]);
}

/// Routes written back after a loss (`restore`) leave a device that
/// connected to another node meanwhile there and name it, so that its
/// stale connection on the restoring node can be closed; a route of the
/// restoring node's own, or none, is written. A disconnect of the stale
/// connection then leaves the other node's route.
pub async fn restore_keeps_route_elsewhere(p: &[&dyn Presence]) {
    let (a, b) = (p[0], p[1]);
    let (ra, rb) = (route(a, 30), route(b, 40));
    a.connected("eve", "phone", ra).await.unwrap();
    // Connected to b while a could not write: a still holds ra.
    b.connected("eve", "phone", rb).await.unwrap();
    a.connected("gil", "phone", route(a, 50)).await.unwrap();
    let routes: Vec<(Arc<str>, Arc<str>, Route)> = vec![
        ("eve".into(), "phone".into(), ra),
        ("eve".into(), "tablet".into(), route(a, 31)),
        ("fay".into(), "phone".into(), route(a, 32)),
        ("gil".into(), "phone".into(), route(a, 51)),
    ];
    assert_eq!(a.restore(&routes).await.unwrap(), [0], "eve's phone is b's");
    assert_eq!(
        a.nodes_of(&["eve".into(), "fay".into(), "gil".into()])
            .await
            .unwrap(),
        [
            sorted(vec![a.node(), b.node()]),
            vec![a.node()],
            vec![a.node()]
        ]
    );
    // The stale connection's disconnect leaves b's route.
    assert!(!a.disconnected("eve", "phone", ra).await.unwrap());
    assert!(!a.disconnected("eve", "tablet", route(a, 31)).await.unwrap());
    assert_eq!(b.nodes_of(&["eve".into()]).await.unwrap(), [vec![b.node()]]);
    assert!(b.disconnected("eve", "phone", rb).await.unwrap());
    // a's own route was overwritten by the newer one of a.
    assert!(!a.disconnected("gil", "phone", route(a, 50)).await.unwrap());
    assert!(a.disconnected("gil", "phone", route(a, 51)).await.unwrap());
}

/// `nodes_of` answers per user in order, each list sorted without
/// duplicates.
pub async fn nodes_of_order_and_dedup(p: &[&dyn Presence]) {
    let (a, b, c) = (p[0], p[1], p[2]);
    c.connected("u1", "phone", route(c, 1)).await.unwrap();
    a.connected("u1", "laptop", route(a, 2)).await.unwrap();
    b.connected("u2", "phone", route(b, 3)).await.unwrap();
    b.connected("u2", "laptop", route(b, 4)).await.unwrap();
    let q: Vec<Arc<str>> = ["u3", "u1", "u2", "u1"].map(Arc::from).to_vec();
    let u1 = sorted(vec![a.node(), c.node()]);
    for n in p {
        assert_eq!(
            n.nodes_of(&q).await.unwrap(),
            [Vec::<NodeId>::new(), u1.clone(), vec![b.node()], u1.clone()]
        );
        assert!(n.nodes_of(&[]).await.unwrap().is_empty());
        assert_eq!(
            n.online(&["u3", "u1", "u2"]).await.unwrap(),
            [false, true, true]
        );
    }
}

/// Room membership is per node: joins are idempotent, a node leaving
/// drops out, unknown rooms have no nodes.
pub async fn rooms_per_node(p: &[&dyn Presence]) {
    let (a, b, c) = (p[0], p[1], p[2]);
    a.room_joined("lobby").await.unwrap();
    b.room_joined("lobby").await.unwrap();
    b.room_joined("lobby").await.unwrap();
    c.room_joined("other").await.unwrap();
    for n in p {
        assert_eq!(
            n.room_nodes("lobby").await.unwrap(),
            sorted(vec![a.node(), b.node()])
        );
        assert_eq!(n.room_nodes("other").await.unwrap(), [c.node()]);
        assert!(n.room_nodes("nowhere").await.unwrap().is_empty());
    }
    a.room_left("lobby").await.unwrap();
    a.room_left("nowhere").await.unwrap();
    assert_eq!(c.room_nodes("lobby").await.unwrap(), [b.node()]);
    b.room_left("lobby").await.unwrap();
    assert!(c.room_nodes("lobby").await.unwrap().is_empty());
}

/// A node that stops its heartbeat (dropped) stops counting for the
/// others: its routes in `online`/`nodes_of`, its rooms and its place in
/// `live_nodes`, within about expiry plus a heartbeat. Networked presence
/// only (in-process nodes never die). Returns how long it took.
pub async fn dropped_node_expires(alive: &dyn Presence, dying: Box<dyn Presence>) -> Duration {
    let gone = dying.node();
    dying
        .connected("zed", "phone", route(&*dying, 1))
        .await
        .unwrap();
    dying.room_joined("hall").await.unwrap();
    eventually(Duration::from_secs(5), "the dying node is seen", || {
        let ok = alive.live_nodes().contains(&gone);
        async move { ok }
    })
    .await;
    assert_eq!(alive.online(&["zed"]).await.unwrap(), [true]);
    assert_eq!(alive.room_nodes("hall").await.unwrap(), [gone]);
    let expiry = Duration::from_millis(dying.expiry_ms());
    drop(dying);
    let within = expiry * 2 + Duration::from_secs(1);
    let took = eventually(within, "a dead node stops counting", || async {
        alive.online(&["zed"]).await.unwrap() == [false]
            && alive.nodes_of(&["zed".into()]).await.unwrap() == [Vec::<NodeId>::new()]
            && alive.room_nodes("hall").await.unwrap().is_empty()
            && !alive.live_nodes().contains(&gone)
    })
    .await;
    // The user's next device on a live node is the first again.
    let c = alive
        .connected("zed", "laptop", route(alive, 2))
        .await
        .unwrap();
    assert_eq!(
        c,
        Connected {
            replaced: None,
            first: true
        }
    );
    took
}

/// An [`Inbound`] that keeps what it receives.
#[derive(Default)]
pub struct Collector {
    got: Mutex<Vec<Envelope>>,
    more: Notify,
}

impl Collector {
    pub fn new() -> Arc<Collector> {
        Arc::new(Collector::default())
    }

    pub fn len(&self) -> usize {
        self.got.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn take(&self) -> Vec<Envelope> {
        std::mem::take(&mut *self.got.lock())
    }

    /// Waits until at least `n` envelopes arrived (panics after `within`).
    pub async fn wait_for(&self, n: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.more.notified();
            let have = self.len();
            if have >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("{have} of {n} envelopes arrived within {within:?}");
            }
        }
    }

    /// Waits until the received `GroupChanged` gids cover `want`.
    pub async fn wait_for_set(&self, want: &BTreeSet<String>, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.more.notified();
            let seen: BTreeSet<String> = self.got.lock().iter().filter_map(gid).collect();
            if want.is_subset(&seen) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let missing = want.difference(&seen).count();
                panic!(
                    "{missing} of {} envelopes missing after {within:?}",
                    want.len()
                );
            }
        }
    }
}

impl Inbound for Collector {
    fn receive(&self, env: Envelope) {
        self.got.lock().push(env);
        self.more.notify_waiters();
    }
}

fn gid(env: &Envelope) -> Option<String> {
    match env {
        Envelope::GroupChanged { gid } => Some(gid.to_string()),
        _ => None,
    }
}

fn changed(i: usize) -> Envelope {
    Envelope::GroupChanged {
        gid: format!("g{i}").into(),
    }
}

/// Starts each node of `nodes` (a bus handle and the node id it serves)
/// with a fresh [`Collector`].
pub async fn start_all(nodes: &[(&dyn Bus, NodeId)]) -> Vec<Arc<Collector>> {
    let mut out = Vec::new();
    for (bus, node) in nodes {
        let c = Collector::new();
        bus.start(*node, c.clone()).await.expect("start");
        bus.health().await.expect("health");
        out.push(c);
    }
    out
}

/// How long the checks wait for envelopes.
const DELIVERY: Duration = Duration::from_secs(20);

/// Three started nodes: what node 0 publishes reaches exactly the nodes
/// addressed, each in publish order (1000 envelopes to node 1, every
/// tenth also to node 2, none to node 0 itself).
pub async fn bus_delivers_to_addressed_in_order(
    nodes: &[(&dyn Bus, NodeId)],
    got: &[Arc<Collector>],
) {
    let (a, b, c) = (nodes[0], nodes[1], nodes[2]);
    let mut want_b = Vec::new();
    let mut want_c = Vec::new();
    for i in 0..1000 {
        let env = changed(i);
        if i % 10 == 0 {
            a.0.publish(&[b.1, c.1], &env).unwrap();
            want_c.push(env.clone());
        } else {
            a.0.publish(&[b.1], &env).unwrap();
        }
        want_b.push(env);
    }
    a.0.publish(&[], &changed(5000)).unwrap();
    got[1].wait_for(want_b.len(), DELIVERY).await;
    got[2].wait_for(want_c.len(), DELIVERY).await;
    // Give strays a moment to show up before checking for them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(got[1].take(), want_b);
    assert_eq!(got[2].take(), want_c);
    assert!(got[0].is_empty(), "the sender got nothing");
}

/// Every kind of envelope crosses the bus unchanged.
pub async fn bus_round_trips_every_kind(nodes: &[(&dyn Bus, NodeId)], got: &[Arc<Collector>]) {
    let (a, b) = (nodes[0], nodes[1]);
    let frame = bytes::Bytes::from_static(b"{\"type\":\"room_msg\",\"content\":{\n\"x\":1}}");
    let push = |out, inactive| {
        Envelope::Push(Push {
            users: vec!["a".into(), "b".into()],
            except: Some(("a".into(), "phone".into())),
            out,
            inactive,
        })
    };
    let cases = vec![
        push(
            Outbound::Msg {
                conv: "dm:a:b".into(),
                seq: 7,
                frame: frame.clone(),
            },
            None,
        ),
        push(
            Outbound::Batched(frame.clone()),
            Some(Outbound::Batched(bytes::Bytes::from_static(
                b"{\"type\":\"notify\"}",
            ))),
        ),
        push(Outbound::Frame(bytes::Bytes::from_static(b"{}")), None),
        Envelope::Push(Push {
            users: vec!["solo".into()],
            except: None,
            out: Outbound::Frame(bytes::Bytes::new()),
            inactive: None,
        }),
        Envelope::Kick {
            user: "a".into(),
            conn: 42,
            code: 4009,
        },
        Envelope::Room {
            room: "r".into(),
            frame: frame.clone(),
        },
        Envelope::GroupChanged { gid: "g".into() },
    ];
    for env in &cases {
        a.0.publish(&[b.1], env).unwrap();
    }
    got[1].wait_for(cases.len(), DELIVERY).await;
    assert_eq!(got[1].take(), cases);
}

/// Pushes that together exceed the bus's message size (about 3 MB for a
/// 500-member group) cross it once [`pack`]ed to
/// [`Bus::max_message_bytes`]: every push arrives, in order, with all its
/// users.
pub async fn bus_carries_packed_pushes_past_its_size_limit(
    nodes: &[(&dyn Bus, NodeId)],
    got: &[Arc<Collector>],
) {
    let (a, b) = (nodes[0], nodes[1]);
    let users: Vec<Arc<str>> = (0..500).map(|i| format!("member-{i:04}").into()).collect();
    let want: Vec<Push> = (0..400u64)
        .map(|seq| Push {
            users: users.clone(),
            except: Some((users[0].clone(), "phone".into())),
            out: Outbound::Msg {
                conv: "group:big".into(),
                seq,
                frame: bytes::Bytes::from(format!("{seq:>300}")),
            },
            inactive: None,
        })
        .collect();
    let total: usize = want
        .iter()
        .map(|p| Envelope::Push(p.clone()).encode().len())
        .sum();
    assert!(total > 2 << 20, "{total} bytes");
    let packed = pack(
        want.iter().cloned().map(Envelope::Push).collect(),
        a.0.max_message_bytes(),
    );
    for env in &packed {
        a.0.publish(&[b.1], env).unwrap();
    }
    got[1].wait_for(packed.len(), DELIVERY).await;
    fn open(env: Envelope, seen: &mut Vec<Push>) {
        match env {
            Envelope::Batch(all) => all.into_iter().for_each(|e| open(e, seen)),
            // Consecutive parts of one push: its users, split.
            Envelope::Push(p) => match seen.last_mut() {
                Some(last) if last.out == p.out => last.users.extend(p.users),
                _ => seen.push(p),
            },
            other => panic!("unexpected envelope {other:?}"),
        }
    }
    let mut seen: Vec<Push> = Vec::new();
    for env in got[1].take() {
        open(env, &mut seen);
    }
    assert_eq!(seen.len(), want.len());
    assert!(seen == want, "pushes changed on the way");
}

/// Every envelope arrives at least once even when the receiving side
/// loses some (the networked bus redelivers what was not acked); order
/// may change then, so this compares sets.
pub async fn bus_delivers_all_despite_losses(
    nodes: &[(&dyn Bus, NodeId)],
    got: &[Arc<Collector>],
    count: usize,
) {
    let (a, b) = (nodes[0], nodes[1]);
    let mut want = BTreeSet::new();
    for i in 0..count {
        let env = changed(i);
        a.0.publish(&[b.1], &env).unwrap();
        want.insert(format!("g{i}"));
    }
    got[1].wait_for_set(&want, Duration::from_secs(60)).await;
}

/// A [`ForwardHandler`] for the checks: answers with its node's number
/// as `seq` and the request's `client_msg_id` as `conv`; a request of kind
/// `refuse` gets an error, one of kind `slow` is answered after 3 s.
struct Echo {
    node: NodeId,
}

#[async_trait::async_trait]
impl ForwardHandler for Echo {
    async fn handle(&self, req: Forward) -> ForwardAnswer {
        match req.kind.as_str() {
            "refuse" => ForwardAnswer::Err {
                code: "not_member".into(),
                message: format!("{} refused by {}", req.client_msg_id, self.node),
            },
            kind => {
                if kind == "slow" {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                ForwardAnswer::Ok {
                    msg_id: u64::MAX - u64::from(self.node),
                    conv: req.client_msg_id,
                    seq: u64::from(self.node),
                    ts: req.content.len() as i64,
                    duplicate: req.device.is_some(),
                }
            }
        }
    }
}

fn forward(cmid: &str, kind: &str) -> Forward {
    Forward {
        gid: "g".into(),
        from: "ann".into(),
        device: Some("phone".into()),
        client_msg_id: cmid.into(),
        kind: kind.into(),
        content: "{\"x\":\"\\né\"}".into(),
        reply_to: None,
        mentions: Vec::new(),
    }
}

fn fwd(bus: &dyn Bus) -> &dyn Forwarding {
    bus.forwarding().expect("the bus forwards")
}

/// Forwards (request and answer): node 0 asks nodes 1 and 2, which serve
/// forwards; each request is answered by the node addressed, many at once
/// each with its own answer; an error answer arrives as such; a node that
/// serves no forwards, or one that does not answer within the timeout,
/// makes the request fail instead of hanging.
pub async fn bus_forwards_to_addressed_node(nodes: &[(&dyn Bus, NodeId)], _: &[Arc<Collector>]) {
    let (a, b, c) = (nodes[0], nodes[1], nodes[2]);
    for (bus, node) in [b, c] {
        fwd(bus)
            .serve_forwards(node, Arc::new(Echo { node }))
            .await
            .expect("serve forwards");
    }
    let timeout = Duration::from_secs(5);
    // A networked bus may take a moment to route to a new subscription.
    for (_, node) in [b, c] {
        eventually(Duration::from_secs(5), "the first forward answered", || {
            let req = forward("first", "text");
            async move { fwd(a.0).forward(node, &req, timeout).await.is_ok() }
        })
        .await;
    }
    let content_len = forward("x", "text").content.len() as i64;
    let asks = (0..200).map(|i| {
        let to = if i % 2 == 0 { b.1 } else { c.1 };
        async move {
            let req = forward(&format!("m{i}"), "text");
            (
                to,
                i,
                fwd(a.0).forward(to, &req, timeout).await.expect("answered"),
            )
        }
    });
    for (to, i, answer) in futures_util::future::join_all(asks).await {
        assert_eq!(
            answer,
            ForwardAnswer::Ok {
                msg_id: u64::MAX - u64::from(to),
                conv: format!("m{i}"),
                seq: u64::from(to),
                ts: content_len,
                duplicate: true,
            },
            "answer to request {i} by node {to}"
        );
    }
    let refused = fwd(a.0)
        .forward(c.1, &forward("r", "refuse"), timeout)
        .await
        .expect("answered");
    assert_eq!(
        refused,
        ForwardAnswer::Err {
            code: "not_member".into(),
            message: format!("r refused by {}", c.1),
        }
    );
    // Node 0 serves no forwards; nor does a node that is not there.
    for to in [a.1, 999] {
        assert!(
            fwd(a.0)
                .forward(to, &forward("nobody", "text"), timeout)
                .await
                .is_err(),
            "a forward to node {to}, which does not serve them"
        );
    }
    let slow = fwd(a.0)
        .forward(b.1, &forward("s", "slow"), Duration::from_millis(300))
        .await;
    assert!(slow.is_err(), "no answer within the timeout: {slow:?}");
    // The bus still answers afterwards.
    assert!(fwd(b.0)
        .forward(c.1, &forward("after", "text"), timeout)
        .await
        .is_ok());
}

// ----- limiter -----

use tern_core::limits::{Limiter, Rule};

/// A bucket allows its burst at once, then refuses with a `retry_after`
/// within one interval, allows again after it; a check takes nothing; keys
/// are independent; every node sees the same buckets. `l` are handles of
/// nodes sharing one backend; `tag` makes the keys unique to this run.
pub async fn limiter_buckets(l: &[&dyn Limiter], tag: &str) {
    let (a, b) = (l[0], l[l.len() - 1]);
    let rule = Rule::per_window(5, Duration::from_millis(2500));
    let key = format!("{tag}:burst");
    for i in 0..10 {
        assert!(
            a.check(&key, rule).await.unwrap().allowed,
            "check {i} takes nothing"
        );
    }
    for i in 0..5 {
        let n = if i % 2 == 0 { a } else { b };
        assert!(n.hit(&key, rule).await.unwrap().allowed, "hit {i} of 5");
    }
    for n in [a, b] {
        for d in [
            n.hit(&key, rule).await.unwrap(),
            n.check(&key, rule).await.unwrap(),
        ] {
            assert!(!d.allowed, "over the burst on every node");
            assert!(
                d.retry_after > Duration::ZERO && d.retry_after <= rule.interval,
                "retry_after {:?} within one interval",
                d.retry_after
            );
            assert_eq!(d.retry_after_secs(), 1);
        }
    }
    // Another key has its own bucket.
    assert!(b.hit(&format!("{tag}:other"), rule).await.unwrap().allowed);
    // A refund gives one token back, on any node; refunds never fill the
    // bucket past its burst.
    let refunded = format!("{tag}:refund");
    for _ in 0..5 {
        assert!(a.hit(&refunded, rule).await.unwrap().allowed);
    }
    assert!(!a.check(&refunded, rule).await.unwrap().allowed);
    b.refund(&refunded, rule).await.unwrap();
    assert!(a.hit(&refunded, rule).await.unwrap().allowed);
    assert!(!b.hit(&refunded, rule).await.unwrap().allowed);
    for _ in 0..20 {
        a.refund(&refunded, rule).await.unwrap();
    }
    for i in 0..5 {
        assert!(
            b.hit(&refunded, rule).await.unwrap().allowed,
            "hit {i} after refunds"
        );
    }
    assert!(
        !a.hit(&refunded, rule).await.unwrap().allowed,
        "refunds past the burst"
    );
    // One token comes back after one interval, not two.
    tokio::time::sleep(rule.interval + Duration::from_millis(50)).await;
    assert!(b.hit(&key, rule).await.unwrap().allowed);
    assert!(!a.hit(&key, rule).await.unwrap().allowed);
    a.health().await.expect("limiter health");
}

/// Many hits at once from every node: exactly the burst gets through.
pub async fn limiter_is_atomic(l: &[&dyn Limiter], tag: &str) {
    let rule = Rule::per_window(50, Duration::from_secs(600));
    let key = format!("{tag}:race");
    let hits = (0..200).map(|i| {
        let n = l[i % l.len()];
        let key = &key;
        async move { n.hit(key, rule).await.unwrap().allowed }
    });
    let allowed = futures_util::future::join_all(hits)
        .await
        .into_iter()
        .filter(|a| *a)
        .count();
    assert_eq!(allowed, 50, "hits allowed of 200 against a burst of 50");
}
