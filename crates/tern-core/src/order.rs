//! The order of message pushes on a cluster node: its own and other
//! nodes' pushes meet here before the hub, so that each conversation's
//! pushes reach the hub in seq order (see [`Orderer`]).

use crate::hub::Hub;
use crate::push::{Outbound, Push};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Where a cluster node's pushes meet before its hub: the node's own (from
/// the routing task) and other nodes' (from the bus), so that message
/// pushes of a conversation reach the hub in seq order.
///
/// Nodes publish concurrently, so seq n+1 from one node can arrive before
/// seq n from another. A push that skips ahead of the next expected seq
/// is held (with any that follow) until the missing ones arrive, or for at
/// most [`REORDER_HOLD`]; then the held pushes go on in order and each
/// connection fills what is still missing from the store (`tern-server` `ws/writer.rs`). So
/// the store is read only for pushes really lost or very late, not for
/// every reordering. The first push of a conversation seen by the node
/// sets where its order starts.
#[derive(Clone)]
pub struct Orderer {
    tx: mpsc::Sender<Push>,
}

/// Longest a message push waits for the ones before it.
pub const REORDER_HOLD: Duration = Duration::from_millis(50);

impl Orderer {
    pub fn start(hub: Arc<Hub>, queue: usize) -> Orderer {
        let (tx, rx) = mpsc::channel(queue);
        tokio::spawn(order_loop(hub, rx));
        Orderer { tx }
    }

    /// Never waits: a push that finds the queue full is dropped and
    /// counted, like any push the fan-out cannot take.
    pub fn deliver(&self, push: Push) {
        if self.tx.try_send(push).is_err() {
            metrics::counter!("tern_fanout_dropped_total").increment(1);
        }
    }
}

#[derive(Default)]
struct ConvOrder {
    /// The next seq expected; 0 before the first push.
    next: u64,
    held: BTreeMap<u64, Push>,
    /// When the oldest held push arrived.
    held_since: Option<Instant>,
    last_seen: Option<Instant>,
}

pub(crate) fn hub_deliver(hub: &Hub, p: &Push) {
    let n = hub.deliver(p);
    metrics::counter!("tern_deliveries_total").increment(n as u64);
}

impl ConvOrder {
    /// Delivers held pushes that are now in order (or all of them).
    fn release(&mut self, hub: &Hub, all: bool) {
        while let Some(entry) = self.held.first_entry() {
            let seq = *entry.key();
            if !all && seq > self.next {
                break;
            }
            let p = entry.remove();
            hub_deliver(hub, &p);
            self.next = self.next.max(seq + 1);
        }
        self.held_since = if self.held.is_empty() {
            None
        } else {
            self.held_since
        };
    }
}

async fn order_loop(hub: Arc<Hub>, mut rx: mpsc::Receiver<Push>) {
    let mut convs: HashMap<Arc<str>, ConvOrder> = HashMap::new();
    let mut last_sweep = Instant::now();
    loop {
        let due = convs
            .values()
            .filter_map(|c| c.held_since)
            .min()
            .map(|t| t + REORDER_HOLD);
        let p = tokio::select! {
            p = rx.recv() => match p {
                Some(p) => Some(p),
                None => return,
            },
            () = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => None,
        };
        let now = Instant::now();
        if let Some(p) = p {
            let Outbound::Msg { conv, seq, .. } = &p.out else {
                hub_deliver(&hub, &p);
                continue;
            };
            let seq = *seq;
            let st = convs.entry(conv.clone()).or_default();
            st.last_seen = Some(now);
            if st.next == 0 || seq <= st.next {
                hub_deliver(&hub, &p);
                st.next = st.next.max(seq + 1);
                st.release(&hub, false);
            } else {
                metrics::counter!("tern_reordered_pushes_total").increment(1);
                st.held.insert(seq, p);
                st.held_since.get_or_insert(now);
            }
        }
        for st in convs.values_mut() {
            if st.held_since.is_some_and(|t| now >= t + REORDER_HOLD) {
                st.release(&hub, true);
            }
        }
        // Forget conversations quiet for a while (bounded memory).
        if now.duration_since(last_sweep) > Duration::from_secs(10) {
            last_sweep = now;
            convs.retain(|_, c| {
                !c.held.is_empty()
                    || c.last_seen
                        .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Conn;
    use bytes::Bytes;

    fn msg(conv: &str, seq: u64) -> Push {
        Push {
            users: vec!["u".into()],
            except: None,
            out: Outbound::Msg {
                conv: conv.into(),
                seq,
                frame: Bytes::from(format!("{seq}")),
            },
            inactive: None,
        }
    }

    async fn seqs(rx: &flume::Receiver<Outbound>, n: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for _ in 0..n {
            match rx.recv_async().await.unwrap() {
                Outbound::Msg { seq, .. } => out.push(seq),
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn pushes_wait_for_the_seqs_before_them() {
        let hub = Arc::new(Hub::new());
        let (c, rx) = Conn::new("u", "d", 64);
        hub.register(c);
        let o = Orderer::start(hub.clone(), 64);
        o.deliver(msg("a", 4));
        o.deliver(msg("a", 6));
        o.deliver(msg("b", 9));
        o.deliver(msg("a", 7));
        o.deliver(msg("a", 5));
        // 4 sets the start; 6 and 7 wait for 5; "b" is not held up by "a".
        assert_eq!(seqs(&rx, 5).await, vec![4, 9, 5, 6, 7]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_seq_holds_the_rest_only_briefly() {
        let hub = Arc::new(Hub::new());
        let (c, rx) = Conn::new("u", "d", 64);
        hub.register(c);
        let o = Orderer::start(hub.clone(), 64);
        o.deliver(msg("a", 1));
        o.deliver(msg("a", 3));
        o.deliver(msg("a", 4));
        assert_eq!(seqs(&rx, 1).await, vec![1]);
        tokio::time::sleep(REORDER_HOLD / 2).await;
        assert!(rx.try_recv().is_err(), "3 must wait for 2");
        // 2 never comes: after the hold, 3 and 4 go on in order, and a
        // late 2 is passed on for the connection to drop as stale.
        assert_eq!(seqs(&rx, 2).await, vec![3, 4]);
        o.deliver(msg("a", 2));
        o.deliver(msg("a", 5));
        assert_eq!(seqs(&rx, 2).await, vec![2, 5]);
    }
}
