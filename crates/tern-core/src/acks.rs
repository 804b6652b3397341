//! Acknowledgements, coalesced.
//!
//! A busy receiver acks every few milliseconds, and every online member of
//! an active group does so at once: storing each ack as it comes would make
//! acks, not messages, the bulk of the storage writes. So an `ack` only
//! raises an in-memory high-water mark per (user, conversation); a flusher
//! stores the marks every [`FLUSH_EVERY`], all in one go (the store commits
//! them together), and then sends the delivered receipts.
//!
//! What this keeps: anything that reads what acks change (the offline queue
//! at `auth`) first applies that user's pending marks, so an ack has taken
//! effect for every later request. What it trades: on a crash, up to
//! `FLUSH_EVERY` of acks are not stored and those messages are pushed again
//! at the next login, which clients drop by `msg_id` (at-least-once, as
//! everywhere else). A graceful shutdown flushes.

use crate::fanout::Fanout;
use crate::frame::encode;
use crate::push::{Outbound, Push};
use crate::store::{AckMark, Store};
use parking_lot::Mutex;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tern_proto::wire::{tag, Receipt};
use tern_proto::ConvId;

/// How long an ack waits in memory at most before it is stored.
pub const FLUSH_EVERY: Duration = Duration::from_millis(10);

type Key = (Arc<str>, Arc<str>);

pub(crate) struct Acks {
    store: Arc<dyn Store>,
    fanout: Arc<Fanout>,
    pending: Mutex<HashMap<Key, u64>>,
    /// Held while marks are being stored, so a per-user flush also waits
    /// for marks the flusher has taken but not yet stored.
    applying: tokio::sync::Mutex<()>,
}

impl Acks {
    /// Creates the buffer and starts its flusher (which ends when the
    /// buffer is dropped).
    pub fn start(store: Arc<dyn Store>, fanout: Arc<Fanout>) -> Arc<Acks> {
        let acks = Arc::new(Acks {
            store,
            fanout,
            pending: Mutex::new(HashMap::new()),
            applying: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(flusher(Arc::downgrade(&acks)));
        acks
    }

    /// Records that `user` holds everything in `conv` up to `seq`.
    pub fn record(&self, user: &str, conv: &str, seq: u64) {
        self.pending
            .lock()
            .entry((user.into(), conv.into()))
            .and_modify(|s| *s = (*s).max(seq))
            .or_insert(seq);
    }

    /// Stores every pending mark of `user` now (before reading their
    /// offline queue).
    pub async fn flush_user(&self, user: &str) {
        let mine: Vec<(Key, u64)> = {
            let mut p = self.pending.lock();
            let keys: Vec<Key> = p.keys().filter(|k| &*k.0 == user).cloned().collect();
            keys.into_iter()
                .filter_map(|k| p.remove(&k).map(|s| (k, s)))
                .collect()
        };
        let _guard = self.applying.lock().await;
        self.apply(mine).await;
    }

    /// Stores every pending mark now.
    pub async fn flush_all(&self) {
        let all: Vec<(Key, u64)> = std::mem::take(&mut *self.pending.lock())
            .into_iter()
            .collect();
        let _guard = self.applying.lock().await;
        self.apply(all).await;
    }

    async fn apply(&self, marks: Vec<(Key, u64)>) {
        if marks.is_empty() {
            return;
        }
        let marks: Vec<AckMark> = marks
            .into_iter()
            .map(|((user, conv), seq)| {
                let receipt_for = ConvId::parse(&conv)
                    .and_then(|id| id.peer_of(&user).map(str::to_owned))
                    .filter(|p| **p != *user);
                AckMark {
                    user: user.to_string(),
                    conv: conv.to_string(),
                    seq,
                    receipt_for,
                }
            })
            .collect();
        let n = marks.len();
        // Only 1:1 acks can produce a receipt: keep what it needs of those.
        let receipts: Vec<Option<(String, String, String)>> = marks
            .iter()
            .map(|m| {
                m.receipt_for
                    .clone()
                    .map(|peer| (m.conv.clone(), m.user.clone(), peer))
            })
            .collect();
        let results = match self.store.ack_many(marks).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, acks = n, "storing acks");
                return;
            }
        };
        for (r, delivered) in receipts.into_iter().zip(results) {
            let (Some(delivered), Some((conv, user, peer))) = (delivered, r) else {
                continue;
            };
            let frame = encode(&Receipt {
                ty: tag::Receipt,
                conv: Cow::Borrowed(&conv),
                by: Cow::Borrowed(&user),
                delivered_seq: Some(delivered),
                read_seq: None,
            });
            self.fanout.push(Push {
                users: vec![peer.into()],
                except: None,
                out: Outbound::Frame(frame),
                inactive: None,
            });
        }
    }
}

async fn flusher(acks: Weak<Acks>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(acks) = acks.upgrade() else { return };
        if acks.pending.lock().is_empty() {
            continue;
        }
        acks.flush_all().await;
    }
}
