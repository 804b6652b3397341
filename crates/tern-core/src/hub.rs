//! The registry of this node's live connections: user -> devices, each with
//! a bounded outbound queue (flume: its storage grows with use, so an idle
//! connection's queue costs almost nothing, unlike a channel that
//! allocates a block of slots up front). Pushing never blocks and never waits: a full
//! queue marks the connection as a slow reader, to be closed with 4008.

use bytes::Bytes;
use dashmap::DashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use tern_proto::close;
use tokio::sync::Notify;

use crate::push::{Outbound, Push};

/// How long a reply may wait for room in a full outbound queue.
pub const REPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// One live connection as the rest of the node sees it.
#[derive(Debug)]
pub struct Conn {
    pub id: u64,
    pub user: Arc<str>,
    pub device: Arc<str>,
    /// The id of the token the connection authenticated with (0: none),
    /// so that revoking the token closes it.
    pub session: u128,
    /// When that token was issued (ms, whole seconds; 0: no token), so
    /// that revoking every older token of the user closes it.
    pub issued_at: i64,
    tx: flume::Sender<Outbound>,
    close_code: AtomicU16,
    closing: Notify,
    active: AtomicBool,
}

impl Conn {
    pub fn new(user: &str, device: &str, queue: usize) -> (Arc<Conn>, flume::Receiver<Outbound>) {
        Conn::for_session(user, device, queue, 0, 0)
    }

    /// A connection authenticated with the token whose id is `session`,
    /// issued at `issued_at` (ms).
    pub fn for_session(
        user: &str,
        device: &str,
        queue: usize,
        session: u128,
        issued_at: i64,
    ) -> (Arc<Conn>, flume::Receiver<Outbound>) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let (tx, rx) = flume::bounded(queue);
        let conn = Arc::new(Conn {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            user: user.into(),
            device: device.into(),
            session,
            issued_at,
            tx,
            close_code: AtomicU16::new(0),
            closing: Notify::new(),
            active: AtomicBool::new(true),
        });
        (conn, rx)
    }

    /// Queues a frame without waiting. A full queue closes the connection
    /// as a slow reader; its messages stay in history and the offline queue.
    pub fn push(&self, out: Outbound) -> bool {
        // A connection being closed writes nothing more from its queue
        // (shutdown excepted: it drains the queue first), so a fan-out
        // skips it without touching the channel; readers cut by one push
        // stay registered until their closes, spread over a second, run.
        let code = self.close_code.load(Ordering::Acquire);
        if code != 0 && code != close::GOING_AWAY {
            return false;
        }
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(flume::TrySendError::Full(_)) => {
                // Pushes keep arriving until the connection is gone: count
                // the close, not every push that found the queue full.
                if self.kick(close::POLICY) {
                    metrics::counter!("tern_slow_reader_closes_total").increment(1);
                }
                false
            }
            Err(flume::TrySendError::Disconnected(_)) => false,
        }
    }

    /// Queues a reply, waiting for room: backpressure on the connection's
    /// own requests rather than a disconnect.
    /// A client that sends requests but never reads the replies is closed
    /// as a slow reader once the queue stays full for `REPLY_WAIT`.
    pub async fn reply(&self, frame: Bytes) -> bool {
        match tokio::time::timeout(REPLY_WAIT, self.tx.send_async(Outbound::Frame(frame))).await {
            Ok(Ok(())) => true,
            Err(_) => {
                if self.kick(close::POLICY) {
                    metrics::counter!("tern_slow_reader_closes_total").increment(1);
                }
                false
            }
            Ok(Err(_)) => false,
        }
    }

    /// Asks the connection to close with `code`. The first code wins;
    /// returns whether this call was the first.
    pub fn kick(&self, code: u16) -> bool {
        let first = self
            .close_code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            // Both the reader and the writer wait on this.
            self.closing.notify_waiters();
        }
        first
    }

    /// Resolves once `kick` was called; returns the close code.
    pub async fn kicked(&self) -> u16 {
        loop {
            // Registered before the check, so a kick in between is not missed.
            let notified = self.closing.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let code = self.close_code.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            notified.await;
        }
    }

    pub fn close_code(&self) -> Option<u16> {
        match self.close_code.load(Ordering::Acquire) {
            0 => None,
            c => Some(c),
        }
    }

    /// Whether the device is in the foreground (`state` frame).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Relaxed);
    }
}

/// A set of users to deliver to, for [`Hub::deliver_audience`].
pub trait Audience: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn contains(&self, user: &str) -> bool;
    fn for_each_user(&self, f: &mut dyn FnMut(&Arc<str>));
}

/// Queues `out` (or `inactive`, for background devices) to `user`'s
/// devices but the excepted one.
fn deliver_devices(
    user: &Arc<str>,
    devices: &[Arc<Conn>],
    except: &Option<(Arc<str>, Arc<str>)>,
    out: &Outbound,
    inactive: &Option<Outbound>,
) -> usize {
    let mut n = 0;
    for c in devices {
        if let Some((eu, ed)) = except {
            if eu == user && *ed == c.device {
                continue;
            }
        }
        let out = match inactive {
            Some(alt) if !c.is_active() => alt,
            _ => out,
        };
        if c.push(out.clone()) {
            n += 1;
        }
    }
    n
}

/// Sharded by user (DashMap), so pushes to different users rarely contend.
#[derive(Debug, Default)]
pub struct Hub {
    users: DashMap<Arc<str>, Vec<Arc<Conn>>>,
}

/// What `register` changed.
#[derive(Debug)]
pub struct Registered {
    /// The connection of the same user and device that this one replaces.
    pub replaced: Option<Arc<Conn>>,
    /// Whether this is the user's first device online on this node.
    pub first: bool,
}

impl Hub {
    pub fn new() -> Hub {
        Hub::default()
    }

    pub fn register(&self, conn: Arc<Conn>) -> Registered {
        let mut entry = self.users.entry(conn.user.clone()).or_default();
        let devices = entry.value_mut();
        let first = devices.is_empty();
        let replaced = devices
            .iter()
            .position(|c| c.device == conn.device)
            .map(|i| devices.swap_remove(i));
        devices.push(conn);
        Registered { replaced, first }
    }

    /// Removes this exact connection; returns true when it was the user's
    /// last device on this node.
    pub fn unregister(&self, conn: &Conn) -> bool {
        let mut last = false;
        self.users.remove_if_mut(&conn.user, |_, devices| {
            let before = devices.len();
            devices.retain(|c| c.id != conn.id);
            last = before > devices.len() && devices.is_empty();
            devices.is_empty()
        });
        last
    }

    /// `(user, device, connection id)` of every connection.
    /// Every connection of this node: (user, device, id, session).
    pub fn connections(&self) -> Vec<(Arc<str>, Arc<str>, u64, u128)> {
        let mut out = Vec::with_capacity(self.users.len());
        for entry in self.users.iter() {
            for c in entry.value() {
                out.push((c.user.clone(), c.device.clone(), c.id, c.session));
            }
        }
        out
    }

    pub fn is_online(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|d| !d.is_empty())
    }

    /// Delivers to every device of the listed users but the excepted one.
    /// Returns the number of connections the push was queued to.
    pub fn deliver(&self, push: &Push) -> usize {
        let mut n = 0;
        for user in &push.users {
            let Some(devices) = self.users.get(user) else {
                continue;
            };
            n += deliver_devices(user, &devices, &push.except, &push.out, &push.inactive);
        }
        n
    }

    /// Delivers to every device of an audience (a group's members) but the
    /// excepted one, walking whichever is smaller: the audience, or the
    /// users online here (a large group with few members online costs the
    /// online users, not the members).
    pub fn deliver_audience(
        &self,
        audience: &dyn Audience,
        except: &Option<(Arc<str>, Arc<str>)>,
        out: &Outbound,
        inactive: &Option<Outbound>,
    ) -> usize {
        let mut n = 0;
        if audience.len() > self.users.len() {
            for e in self.users.iter() {
                if audience.contains(e.key()) {
                    n += deliver_devices(e.key(), e.value(), except, out, inactive);
                }
            }
        } else {
            audience.for_each_user(&mut |user| {
                if let Some(devices) = self.users.get(user) {
                    n += deliver_devices(user, &devices, except, out, inactive);
                }
            });
        }
        n
    }

    /// Connections of one user (a snapshot).
    pub fn devices(&self, user: &str) -> Vec<Arc<Conn>> {
        self.users.get(user).map(|d| d.clone()).unwrap_or_default()
    }

    /// Asks every connection to close with `code` (shutdown).
    pub fn kick_all(&self, code: u16) {
        for e in self.users.iter() {
            for c in e.value() {
                c.kick(code);
            }
        }
    }

    /// Closes `user`'s connections that authenticated with the token
    /// `session` (revoked) with 4001; returns how many.
    pub fn kick_session(&self, user: &str, session: u128) -> usize {
        let Some(devices) = self.users.get(user) else {
            return 0;
        };
        let mut n = 0;
        for c in devices.iter().filter(|c| c.session == session) {
            c.kick(close::UNAUTHENTICATED);
            n += 1;
        }
        n
    }

    /// Closes `user`'s connections whose tokens were issued before
    /// `before` (ms; every older token revoked) with 4001; how many.
    pub fn kick_issued_before(&self, user: &str, before: i64) -> usize {
        let Some(devices) = self.users.get(user) else {
            return 0;
        };
        let mut n = 0;
        for c in devices
            .iter()
            .filter(|c| c.session != 0 && c.issued_at < before)
        {
            c.kick(close::UNAUTHENTICATED);
            n += 1;
        }
        n
    }

    /// Closes every connection whose token `revoked` names with 4001.
    pub fn kick_sessions(&self, revoked: impl Fn(u128) -> bool) {
        for e in self.users.iter() {
            for c in e
                .value()
                .iter()
                .filter(|c| c.session != 0 && revoked(c.session))
            {
                c.kick(close::UNAUTHENTICATED);
            }
        }
    }

    pub fn connection_count(&self) -> usize {
        self.users.iter().map(|e| e.value().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_replace_unregister() {
        let hub = Hub::new();
        let (a1, _r1) = Conn::new("a", "phone", 4);
        let r = hub.register(a1.clone());
        assert!(r.first && r.replaced.is_none());
        let (a2, _r2) = Conn::new("a", "laptop", 4);
        assert!(!hub.register(a2.clone()).first);
        let (a3, _r3) = Conn::new("a", "phone", 4);
        let r = hub.register(a3.clone());
        assert_eq!(r.replaced.map(|c| c.id), Some(a1.id));
        // The replaced connection unregistering later must not remove a3.
        assert!(!hub.unregister(&a1));
        assert!(!hub.unregister(&a2));
        assert!(hub.is_online("a"));
        assert!(hub.unregister(&a3));
        assert!(!hub.is_online("a"));
    }

    #[test]
    fn full_queue_kicks_slow_reader() {
        let hub = Hub::new();
        let (c, _rx) = Conn::new("a", "d", 2);
        hub.register(c.clone());
        let push = Push {
            users: vec!["a".into()],
            except: None,
            out: Outbound::Frame(Bytes::from_static(b"{}")),
            inactive: None,
        };
        assert_eq!(hub.deliver(&push), 1);
        assert_eq!(hub.deliver(&push), 1);
        assert_eq!(hub.deliver(&push), 0);
        assert_eq!(c.close_code(), Some(close::POLICY));
        // Later pushes find it closing: the first kick alone counts as a
        // close, and its code stays.
        assert_eq!(hub.deliver(&push), 0);
        assert!(!c.kick(close::REPLACED));
        assert_eq!(c.close_code(), Some(close::POLICY));
    }

    /// A connection being closed takes no more pushes, except one closing
    /// for a shutdown: that one writes its whole queue before its close.
    #[test]
    fn closing_connections_take_pushes_only_when_shutting_down() {
        let out = Outbound::Frame(Bytes::from_static(b"{}"));
        let (cut, cut_rx) = Conn::new("a", "d", 4);
        assert!(cut.kick(close::POLICY));
        assert!(!cut.push(out.clone()));
        assert!(cut_rx.is_empty());
        let (stopping, stopping_rx) = Conn::new("b", "d", 4);
        assert!(stopping.kick(close::GOING_AWAY));
        assert!(stopping.push(out));
        assert_eq!(stopping_rx.len(), 1);
    }

    #[test]
    fn except_skips_sending_device() {
        let hub = Hub::new();
        let (p, prx) = Conn::new("a", "phone", 4);
        let (l, lrx) = Conn::new("a", "laptop", 4);
        hub.register(p);
        hub.register(l);
        let push = Push {
            users: vec!["a".into()],
            except: Some(("a".into(), "phone".into())),
            out: Outbound::Frame(Bytes::from_static(b"{}")),
            inactive: None,
        };
        assert_eq!(hub.deliver(&push), 1);
        assert!(prx.try_recv().is_err());
        assert!(lrx.try_recv().is_ok());
    }
}
