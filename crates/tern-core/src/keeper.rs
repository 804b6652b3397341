//! Keeps this node's entries in presence true. The node holds the truth
//! of its own connections; presence (Redis, in a cluster) is a cache of
//! what the nodes know. After a loss ([`NodeSet::losses`]: Redis restarted
//! without its data, failed over, or counted this node dead), and after
//! any write of this node that failed while presence was unreachable, the
//! keeper writes back the route of every connection the hub holds and the
//! rooms with members here, and records the disconnects that failed: once
//! a second until presence answers again. A device that connected to
//! another node meanwhile keeps that route; its connection here is closed
//! with 4009, as if it had been replaced then.
//!
//! [`NodeSet::losses`]: crate::presence::NodeSet::losses

use crate::bus::PlumbingResult;
use crate::hub::Hub;
use crate::presence::{Presence, Route};
use crate::rooms::Rooms;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tern_proto::close;

/// How often a failed restore is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// Most failed disconnects kept for a retry; beyond it their routes stay
/// until the user's routes are next written (they name connections that
/// no longer exist, so pushes routed by them are dropped).
const GONE_MAX: usize = 100_000;

/// A device's route: `(user, device, route)`.
type DeviceRoute = (Arc<str>, Arc<str>, Route);

pub struct Keeper {
    /// A write of this node failed or its entries were lost: write them
    /// back.
    dirty: AtomicBool,
    /// Disconnects that could not be recorded.
    gone: Mutex<Vec<DeviceRoute>>,
}

impl Keeper {
    /// Starts the keeper's task, which ends when the keeper is dropped.
    pub fn start(hub: Arc<Hub>, rooms: Arc<Rooms>, presence: Arc<dyn Presence>) -> Arc<Keeper> {
        let k = Arc::new(Keeper {
            dirty: AtomicBool::new(false),
            gone: Mutex::new(Vec::new()),
        });
        tokio::spawn(keep(Arc::downgrade(&k), hub, rooms, presence));
        k
    }

    /// A presence write of this node failed: its entries are to be written
    /// again once presence answers.
    pub fn failed_write(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Recording this disconnect failed: it is retried with the restore.
    pub fn failed_disconnect(&self, user: Arc<str>, device: Arc<str>, route: Route) {
        let mut gone = self.gone.lock();
        if gone.len() < GONE_MAX {
            gone.push((user, device, route));
        }
        drop(gone);
        self.failed_write();
    }
}

async fn keep(k: Weak<Keeper>, hub: Arc<Hub>, rooms: Arc<Rooms>, presence: Arc<dyn Presence>) {
    let mut losses = presence.losses();
    let mut watching = true;
    let mut tick = tokio::time::interval(RETRY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let lost = tokio::select! {
            r = losses.changed(), if watching => {
                watching = r.is_ok();
                watching
            }
            _ = tick.tick() => false,
        };
        let Some(k) = k.upgrade() else {
            return;
        };
        if lost {
            tracing::warn!("presence lost this node's entries: writing them again");
            metrics::counter!("tern_presence_losses_total").increment(1);
            k.dirty.store(true, Ordering::Release);
        }
        if !k.dirty.swap(false, Ordering::AcqRel) {
            continue;
        }
        if let Err(e) = restore(&k, &hub, &rooms, &*presence).await {
            tracing::warn!(error = %e, "presence: cannot write this node's entries yet");
            k.dirty.store(true, Ordering::Release);
        }
    }
}

async fn restore(
    k: &Keeper,
    hub: &Hub,
    rooms: &Rooms,
    presence: &dyn Presence,
) -> PlumbingResult<()> {
    let node = presence.node();
    let routes: Vec<DeviceRoute> = hub
        .connections()
        .into_iter()
        .map(|(user, device, conn, session)| {
            (
                user,
                device,
                Route {
                    node,
                    conn,
                    session,
                },
            )
        })
        .collect();
    let elsewhere = presence.restore(&routes).await?;
    // Devices that connected to another node while this one could not
    // write: their connections here are stale. Their disconnects find the
    // other node's route and leave it (routes are compared by connection).
    for &i in &elsewhere {
        let (user, device, route) = &routes[i];
        for c in hub.devices(user) {
            if c.id == route.conn && c.device == *device && c.kick(close::REPLACED) {
                tracing::info!(%user, %device, "presence: device connected elsewhere meanwhile; closing it here");
            }
        }
    }
    let names = rooms.names();
    for room in &names {
        presence.room_joined(room).await?;
    }
    // What ended while this ran must not stay written.
    let now: HashSet<u64> = hub
        .connections()
        .into_iter()
        .map(|(_, _, id, _)| id)
        .collect();
    let mut gone: Vec<_> = std::mem::take(&mut *k.gone.lock());
    gone.extend(
        routes
            .iter()
            .filter(|(_, _, r)| !now.contains(&r.conn))
            .cloned(),
    );
    while let Some((user, device, route)) = gone.pop() {
        if let Err(e) = presence.disconnected(&user, &device, route).await {
            gone.push((user, device, route));
            k.gone.lock().extend(gone);
            return Err(e);
        }
    }
    let live: HashSet<Arc<str>> = rooms.names().into_iter().collect();
    for room in names.iter().filter(|r| !live.contains(*r)) {
        presence.room_left(room).await?;
    }
    tracing::info!(
        routes = routes.len(),
        elsewhere = elsewhere.len(),
        rooms = names.len(),
        "presence: this node's routes and rooms written"
    );
    Ok(())
}
