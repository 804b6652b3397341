//! Live rooms (PROTOCOL.md 2.9): ephemeral broadcast channels held in
//! memory, nothing stored. Delivery to each device is capped at the room
//! rate (a sliding one-second window, so no device ever gets more than the
//! cap in any second); the excess is dropped and counted, never queued.

use crate::error::{CoreError, CoreResult};
use crate::hub::Conn;
use crate::push::Outbound;
use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_proto::ErrorCode;

#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// Most `room_msg` frames one device gets from one room per second.
    pub deliver_rate: u32,
    /// Most `room_send` frames one device may send to one room per second.
    pub send_rate: u32,
    /// Most rooms one connection may be in at once.
    pub max_joined: usize,
}

/// At most `cap` events in any window of one second.
#[derive(Debug)]
pub struct SlidingWindow {
    cap: usize,
    times: VecDeque<Instant>,
}

impl SlidingWindow {
    pub fn new(cap: u32) -> SlidingWindow {
        SlidingWindow {
            cap: cap as usize,
            times: VecDeque::new(),
        }
    }

    pub fn allow(&mut self, now: Instant) -> bool {
        while self
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.times.pop_front();
        }
        if self.times.len() < self.cap {
            self.times.push_back(now);
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Member {
    conn: Arc<Conn>,
    deliver: Mutex<SlidingWindow>,
    send: Mutex<SlidingWindow>,
}

#[derive(Debug, Default)]
struct Room {
    members: RwLock<HashMap<u64, Arc<Member>>>,
}

#[derive(Debug)]
pub struct Rooms {
    rooms: DashMap<Arc<str>, Arc<Room>>,
    cfg: RoomConfig,
}

/// What a broadcast did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Broadcast {
    pub delivered: usize,
    pub dropped: usize,
}

impl Rooms {
    pub fn new(cfg: RoomConfig) -> Rooms {
        Rooms {
            rooms: DashMap::new(),
            cfg,
        }
    }

    /// The rooms with members on this node.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.rooms.iter().map(|r| r.key().clone()).collect()
    }

    /// `joined` is how many rooms the connection is in already.
    /// Returns true when `conn` is the room's first member on this node.
    /// The cap is checked before the room is looked up or made: a
    /// connection at its cap creates no (empty) room.
    pub fn join(&self, room: &str, conn: &Arc<Conn>, joined: usize) -> CoreResult<bool> {
        if joined >= self.cfg.max_joined {
            let member = self
                .rooms
                .get(room)
                .is_some_and(|r| r.members.read().contains_key(&conn.id));
            if member {
                return Ok(false);
            }
            return Err(CoreError::invalid(format!(
                "at most {} rooms per connection",
                self.cfg.max_joined
            )));
        }
        let r = self.rooms.entry(room.into()).or_default().clone();
        let mut members = r.members.write();
        if members.contains_key(&conn.id) {
            return Ok(false);
        }
        members.insert(
            conn.id,
            Arc::new(Member {
                conn: conn.clone(),
                deliver: Mutex::new(SlidingWindow::new(self.cfg.deliver_rate)),
                send: Mutex::new(SlidingWindow::new(self.cfg.send_rate)),
            }),
        );
        metrics::gauge!("tern_room_members").increment(1.0);
        Ok(members.len() == 1)
    }

    /// Returns whether the connection was in the room.
    /// Returns whether `conn_id` was a member, and whether the room has no
    /// member left on this node.
    pub fn leave(&self, room: &str, conn_id: u64) -> (bool, bool) {
        let mut was = false;
        let mut emptied = false;
        self.rooms.remove_if(room, |_, r| {
            let mut m = r.members.write();
            was = m.remove(&conn_id).is_some();
            emptied = m.is_empty();
            emptied
        });
        if was {
            metrics::gauge!("tern_room_members").decrement(1.0);
        }
        (was, was && emptied)
    }

    /// Sends `frame` to every other member, each within its rate cap.
    /// The frame is encoded once by the caller and shared.
    /// Checks that `from` is a member within its send rate, then delivers
    /// to this node's other members.
    pub fn broadcast(&self, room: &str, from: &Conn, frame: Bytes) -> CoreResult<Broadcast> {
        let not_member = || CoreError::new(ErrorCode::NotMember, "join the room first");
        let r = self
            .rooms
            .get(room)
            .map(|r| r.clone())
            .ok_or_else(not_member)?;
        {
            let members = r.members.read();
            let sender = members.get(&from.id).ok_or_else(not_member)?;
            if !sender.send.lock().allow(Instant::now()) {
                metrics::counter!("tern_room_send_limited_total").increment(1);
                return Err(CoreError::new(
                    ErrorCode::RateLimited,
                    "room send rate exceeded",
                ));
            }
        }
        Ok(self.deliver(room, Some(from.id), frame))
    }

    /// Offers `frame` to this node's members of `room` but `except`, each
    /// within its delivery cap (a frame from another node arrives here).
    pub fn deliver(&self, room: &str, except: Option<u64>, frame: Bytes) -> Broadcast {
        let mut out = Broadcast::default();
        let Some(r) = self.rooms.get(room).map(|r| r.clone()) else {
            return out;
        };
        let members = r.members.read();
        let now = Instant::now();
        for (id, m) in members.iter() {
            if Some(*id) == except {
                continue;
            }
            if m.deliver.lock().allow(now) && m.conn.push(Outbound::Batched(frame.clone())) {
                out.delivered += 1;
            } else {
                out.dropped += 1;
            }
        }
        metrics::counter!("tern_room_deliveries_total").increment(out.delivered as u64);
        metrics::counter!("tern_room_dropped_total").increment(out.dropped as u64);
        out
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_caps_any_second() {
        let mut w = SlidingWindow::new(3);
        let t0 = Instant::now();
        assert!(w.allow(t0));
        assert!(w.allow(t0 + Duration::from_millis(10)));
        assert!(w.allow(t0 + Duration::from_millis(20)));
        assert!(!w.allow(t0 + Duration::from_millis(999)));
        assert!(w.allow(t0 + Duration::from_millis(1000)));
        assert!(!w.allow(t0 + Duration::from_millis(1005)));
    }

    fn cfg() -> RoomConfig {
        RoomConfig {
            deliver_rate: 2,
            send_rate: 100,
            max_joined: 2,
        }
    }

    #[test]
    fn broadcast_caps_and_excludes_sender() {
        let rooms = Rooms::new(cfg());
        let (a, arx) = Conn::new("a", "d", 16);
        let (b, brx) = Conn::new("b", "d", 16);
        assert!(rooms.join("r", &a, 0).unwrap());
        assert!(!rooms.join("r", &b, 0).unwrap());
        for _ in 0..5 {
            rooms.broadcast("r", &a, Bytes::from_static(b"{}")).unwrap();
        }
        assert!(arx.try_recv().is_err(), "sender got its own message");
        let mut got = 0;
        while brx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 2);
        let (c, _crx) = Conn::new("c", "d", 16);
        let e = rooms
            .broadcast("r", &c, Bytes::from_static(b"{}"))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotMember);
        assert_eq!(rooms.leave("r", a.id), (true, false));
        assert_eq!(rooms.leave("r", b.id), (true, true));
        assert_eq!(rooms.leave("r", b.id), (false, false));
        assert_eq!(rooms.room_count(), 0);
    }

    #[test]
    fn join_bound() {
        let rooms = Rooms::new(cfg());
        let (a, _rx) = Conn::new("a", "d", 16);
        rooms.join("r1", &a, 0).unwrap();
        rooms.join("r2", &a, 1).unwrap();
        assert_eq!(
            rooms.join("r3", &a, 2).unwrap_err().code,
            ErrorCode::Invalid
        );
        // A refused join creates no room, however often it is tried.
        for i in 0..100 {
            let room = format!("x{i}");
            assert!(rooms.join(&room, &a, 2).is_err());
        }
        assert_eq!(rooms.room_count(), 2);
        // At the cap, joining a room one is in already is still fine.
        assert!(!rooms.join("r1", &a, 2).unwrap());
    }
}
