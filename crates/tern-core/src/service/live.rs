//! Live state: connections, presence, typing and live rooms.

use super::{Core, LIST_MAX};
use crate::bus::Envelope;
use crate::error::{CoreError, CoreResult};
use crate::frame::encode;
use crate::hub::{Conn, Registered};
use crate::now_ms;
use crate::presence::Route;
use crate::push::{Outbound, Push};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;
use tern_proto::ids::is_valid_name;
use tern_proto::wire::{tag, PresencePush, RawJson, RoomMsg, Typing};
use tern_proto::{close, ConvId, ErrorCode};

impl Core {
    pub async fn typing(&self, user: &str, conv: &str) -> CoreResult<()> {
        let id = self.access(user, conv, false).await?.id;
        let users: Vec<Arc<str>> = match &id {
            ConvId::Dm { .. } => {
                // Not delivered to a peer who blocked the typist (5.3).
                if let Some(peer) = id.peer_of(user).filter(|p| *p != user) {
                    if self.store.is_blocked(peer, user).await? {
                        return Ok(());
                    }
                }
                self.audience(&id).await
            }
            ConvId::Group(gid) => {
                let view = self.group_view(gid).await?;
                // Typing in a read-diffused group would be a storm of its
                // own: checked before the member list is copied.
                if view.size() > self.cfg.write_limit {
                    return Ok(());
                }
                view.members.to_vec()
            }
        };
        let users: Vec<Arc<str>> = users.into_iter().filter(|u| &**u != user).collect();
        if !users.is_empty() {
            let frame = encode(&Typing {
                ty: tag::Typing,
                conv: Cow::Borrowed(conv),
                user: Cow::Borrowed(user),
            });
            self.fanout.push(Push {
                users,
                except: None,
                out: Outbound::Frame(frame),
                inactive: None,
            });
        }
        Ok(())
    }

    pub async fn presence(&self, users: &[&str]) -> CoreResult<Vec<bool>> {
        if users.len() > LIST_MAX {
            return Err(CoreError::invalid("at most 1000 users per presence query"));
        }
        Ok(self.online(users).await)
    }

    /// Which of `users` are online: from presence or, while it does not
    /// answer, from this node's own connections (a user connected only to
    /// other nodes then shows offline).
    pub(crate) async fn online(&self, users: &[&str]) -> Vec<bool> {
        match self.presence.online(users).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "presence does not answer: online flags from this node only");
                metrics::counter!("tern_presence_fallbacks_total").increment(1);
                users.iter().map(|u| self.hub.is_online(u)).collect()
            }
        }
    }

    /// Joins `conn` to a live room; `joined` is how many it is in already.
    pub async fn room_join(&self, conn: &Arc<Conn>, room: &str, joined: usize) -> CoreResult<()> {
        if !is_valid_name(room) {
            return Err(CoreError::invalid(
                "room must be 1-64 characters of A-Z a-z 0-9 _ . -",
            ));
        }
        if self.rooms.join(room, conn, joined)? {
            if let Err(e) = self.fanout.room_joined(room).await {
                // Frames from this node's members go out at once; other
                // nodes' reach them once the keeper has written the room.
                tracing::warn!(error = %e, room, "cannot record joining a room yet");
                self.keeper.failed_write();
            }
        }
        Ok(())
    }

    /// Returns whether the connection was in the room.
    pub async fn room_leave(&self, conn: &Conn, room: &str) -> bool {
        let (was, emptied) = self.rooms.leave(room, conn.id);
        if emptied {
            if let Err(e) = self.fanout.room_left(room).await {
                // The room's entry names a node without members: other
                // nodes send it frames it drops, until it expires.
                tracing::warn!(error = %e, room, "cannot record leaving a room");
            }
        }
        was
    }

    /// Broadcasts to the room's other members; nothing is stored.
    pub async fn room_send(&self, conn: &Conn, room: &str, content: &RawValue) -> CoreResult<()> {
        if content.get().len() > self.cfg.content_bytes {
            return Err(CoreError::new(
                ErrorCode::ContentTooLarge,
                format!("content is over {} bytes", self.cfg.content_bytes),
            ));
        }
        let frame = encode(&RoomMsg {
            ty: tag::RoomMsg,
            room: Cow::Borrowed(room),
            from: Cow::Borrowed(&conn.user),
            content: RawJson::borrowed(content),
            ts: now_ms(),
        });
        self.rooms.broadcast(room, conn, frame.clone())?;
        // Once to each other node with members; each fans out locally
        // under the same per-device cap.
        self.fanout.room_frame(room, frame).await?;
        Ok(())
    }

    /// Registers an authenticated connection: replaces the same device's
    /// older connection (4009), on this node or another, and tells online
    /// friends when this is the user's first device.
    pub async fn connect(&self, conn: Arc<Conn>) -> CoreResult<()> {
        let user = conn.user.clone();
        let route = Route {
            node: self.fanout.node(),
            conn: conn.id,
            session: conn.session,
        };
        let found = self.presence.connected(&user, &conn.device, route).await;
        let Registered { replaced, .. } = self.hub.register(conn.clone());
        if let Some(old) = replaced {
            old.kick(close::REPLACED);
        }
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                // The connection is this node's: it is served, and its
                // route is written once presence answers again (the
                // keeper). Meanwhile other nodes reach it by catch-up.
                tracing::warn!(error = %e, %user, "presence: cannot record a connection yet");
                self.keeper.failed_write();
                return Ok(());
            }
        };
        if let Some(old) = found.replaced {
            if old.node != route.node {
                self.fanout.to_node(
                    old.node,
                    &Envelope::Kick {
                        user: user.clone(),
                        conn: old.conn,
                        code: close::REPLACED,
                    },
                );
            }
        }
        if found.first {
            self.announce_presence(&user, true).await;
        }
        Ok(())
    }

    /// Unregisters a connection that has ended.
    pub async fn disconnect(&self, conn: &Conn) {
        self.hub.unregister(conn);
        let route = Route {
            node: self.fanout.node(),
            conn: conn.id,
            session: conn.session,
        };
        match self
            .presence
            .disconnected(&conn.user, &conn.device, route)
            .await
        {
            Ok(true) => self.announce_presence(&conn.user, false).await,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "presence: cannot record a disconnect yet");
                self.keeper
                    .failed_disconnect(conn.user.clone(), conn.device.clone(), route);
            }
        }
    }

    async fn announce_presence(&self, user: &str, online: bool) {
        let friends = match self.store.friends(user).await {
            Ok(l) => l.friends,
            Err(e) => {
                tracing::warn!(error = %e, "presence: cannot load friends");
                return;
            }
        };
        if friends.is_empty() {
            return;
        }
        // Friends in a block with the user either way are not told (5.3).
        let hidden = match self.store.blocks(user).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "presence: cannot load blocks");
                return;
            }
        };
        let names: Vec<&str> = friends
            .iter()
            .map(String::as_str)
            .filter(|f| {
                !hidden.blocked.iter().any(|b| b == f) && !hidden.blocked_by.iter().any(|b| b == f)
            })
            .collect();
        let flags = match self.presence.online(&names).await {
            Ok(f) => f,
            Err(e) => {
                // Every friend, then: the fan-out cannot look up their
                // nodes either and sends to every node, whose hubs drop
                // what finds no connection.
                tracing::warn!(error = %e, "presence: cannot look up friends; telling all");
                vec![true; names.len()]
            }
        };
        let users: Vec<Arc<str>> = names
            .iter()
            .zip(flags)
            .filter(|(_, on)| *on)
            .map(|(u, _)| Arc::from(*u))
            .collect();
        if users.is_empty() {
            return;
        }
        let frame = encode(&PresencePush {
            ty: tag::Presence,
            user: Cow::Borrowed(user),
            online,
            ts: now_ms(),
        });
        self.fanout.push(Push {
            users,
            except: None,
            out: Outbound::Frame(frame),
            inactive: None,
        });
    }
}
