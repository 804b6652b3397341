//! The task behind a [`Session`](super::Session): it owns the connection,
//! serves one at a time until it drops, and reconnects. It matches answers
//! to requests, hands pushes to [`Convs`] and does what that decides (fill
//! a gap, deliver, ack), pings a quiet server, and restores rooms and the
//! background state after a reconnect.

use super::{conv_seq, Command, Counters, ReqKind};
use crate::config::{backoff, ClientConfig};
use crate::convs::{Arrival, Convs};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::raw::{server_error, Connection, Frame, Incoming};
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tern_proto::close;
use tern_proto::request::{self, Request};
use tern_proto::wire::{
    ErrorFrame, HistoryAnswer, MsgPush, MsgView, OfflineDone, OkFrame, SendAnswer, SyncAnswer,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, sleep_until, Instant};

enum Pending {
    User {
        kind: ReqKind,
        reply: oneshot::Sender<Result<String>>,
    },
    Gap {
        conv: String,
        tries: u32,
    },
    Sync,
    Quiet,
}

/// Why a connection ended.
enum End {
    /// The server or the network closed it.
    Dropped { code: Option<u16>, reason: String },
    /// The application closed the session.
    Local,
}

pub(super) struct Task {
    url: String,
    token: String,
    device: String,
    config: Arc<ClientConfig>,
    counters: Arc<Counters>,
    cmds: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// Commands taken while disconnected (at most `outgoing_queue`).
    queued: VecDeque<Command>,
    pending: HashMap<String, Pending>,
    convs: Convs,
    ack_due: Option<Instant>,
    next_id: u64,
    rooms: HashSet<String>,
    active: bool,
    last_tx: Instant,
    last_rx: Instant,
}

impl Task {
    pub(super) fn new(
        url: String,
        token: String,
        device: String,
        config: Arc<ClientConfig>,
        counters: Arc<Counters>,
        cmds: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
    ) -> Task {
        Task {
            url,
            token,
            device,
            convs: Convs::new(config.dedup_window),
            config,
            counters,
            cmds,
            events,
            queued: VecDeque::new(),
            pending: HashMap::new(),
            ack_due: None,
            next_id: 0,
            rooms: HashSet::new(),
            active: true,
            last_tx: Instant::now(),
            last_rx: Instant::now(),
        }
    }

    pub(super) async fn run(mut self, mut ws: Connection) {
        loop {
            let end = self.connection(&mut ws).await;
            self.drop_pending();
            let (code, reason) = match end {
                End::Local => {
                    ws.close(self.config.request_timeout).await;
                    self.emit(Event::Disconnected {
                        code: Some(1000),
                        reason: "closed by the client".into(),
                        reconnecting: false,
                    })
                    .await;
                    return;
                }
                End::Dropped { code, reason } => (code, reason),
            };
            // A revoked token, or a newer login of this device: dialling
            // again would fail, or take the place back from the newer one.
            let final_ = matches!(code, Some(close::UNAUTHENTICATED | close::REPLACED));
            self.emit(Event::Disconnected {
                code,
                reason,
                reconnecting: !final_,
            })
            .await;
            if final_ {
                return;
            }
            match self.reconnect().await {
                Some(w) => ws = w,
                None => return,
            }
        }
    }

    /// Dials until a connection is authenticated; `None` when the session
    /// ends instead (closed meanwhile, token refused, attempts used up).
    async fn reconnect(&mut self) -> Option<Connection> {
        let mut attempt = 0u32;
        loop {
            let wait = backoff(
                self.config.reconnect_base,
                self.config.reconnect_max,
                attempt,
            );
            let until = Instant::now() + wait;
            // Keep taking commands while waiting, up to the queue bound.
            loop {
                let room = self.queued.len() < self.config.outgoing_queue;
                tokio::select! {
                    _ = sleep_until(until) => break,
                    cmd = self.cmds.recv(), if room => match cmd {
                        None | Some(Command::Close) => {
                            self.emit(Event::Disconnected {
                                code: None,
                                reason: "closed by the client".into(),
                                reconnecting: false,
                            })
                            .await;
                            return None;
                        }
                        Some(c) => self.queued.push_back(c),
                    },
                }
            }
            match Connection::connect(&self.url, &self.token, &self.device, &self.config).await {
                Ok((ws, auth)) => {
                    Counters::bump(&self.counters.reconnects);
                    self.emit(Event::Connected {
                        user: auth.user.into_owned(),
                        device: auth.device.into_owned(),
                        resumed: true,
                    })
                    .await;
                    return Some(ws);
                }
                Err(e) => {
                    let refused = e.code() == Some(tern_proto::ErrorCode::Unauthenticated);
                    attempt += 1;
                    let spent = self.config.reconnect_attempts != 0
                        && attempt >= self.config.reconnect_attempts;
                    tracing::debug!(error = %e, attempt, "reconnect failed");
                    if refused || spent {
                        self.emit(Event::Disconnected {
                            code: None,
                            reason: format!("reconnect failed: {e}"),
                            reconnecting: false,
                        })
                        .await;
                        return None;
                    }
                }
            }
        }
    }

    /// Fails what was in flight: the caller may retry (`send` does).
    fn drop_pending(&mut self) {
        for (_, p) in self.pending.drain() {
            if let Pending::User { reply, .. } = p {
                let _ = reply.send(Err(Error::Disconnected));
            }
        }
        self.convs.disconnected();
        self.ack_due = None;
    }

    async fn emit(&mut self, ev: Event) {
        // A dropped `Events` only means nobody listens.
        let _ = self.events.send(ev).await;
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("s{}", self.next_id)
    }

    async fn write(&mut self, ws: &mut Connection, text: String) -> Result<(), End> {
        self.last_tx = Instant::now();
        ws.send_text(text).await.map_err(|e| End::Dropped {
            code: None,
            reason: format!("write failed: {e}"),
        })
    }

    /// Serves one connection until it ends.
    async fn connection(&mut self, ws: &mut Connection) -> End {
        self.last_rx = Instant::now();
        self.last_tx = Instant::now();
        if let Err(end) = self.restore(ws).await {
            return end;
        }
        let tick = (self.config.ping_interval / 3).max(Duration::from_millis(10));
        let mut ticker = tokio::time::interval(tick);
        loop {
            let ack_at = self.ack_due;
            let r = tokio::select! {
                incoming = ws.recv() => match incoming {
                    Incoming::Frame(f) => {
                        self.last_rx = Instant::now();
                        self.on_frame(ws, f).await
                    }
                    Incoming::Other => {
                        self.last_rx = Instant::now();
                        Ok(())
                    }
                    Incoming::Undecodable(t) => {
                        self.last_rx = Instant::now();
                        tracing::debug!(frame = %t, "undecodable frame");
                        Ok(())
                    }
                    Incoming::Closed(c) => Err(End::Dropped { code: c.sent_code(), reason: c.reason }),
                },
                cmd = self.cmds.recv() => match cmd {
                    None | Some(Command::Close) => Err(End::Local),
                    Some(c) => self.on_command(ws, c).await,
                },
                _ = sleep_until(ack_at.unwrap_or_else(Instant::now)), if ack_at.is_some() => {
                    self.flush_acks(ws).await
                }
                _ = ticker.tick() => self.on_tick(ws).await,
            };
            if let Err(end) = r {
                return end;
            }
        }
    }

    /// After a (re)connect: rooms and background state back, then the
    /// commands that waited.
    async fn restore(&mut self, ws: &mut Connection) -> Result<(), End> {
        let mut frames = Vec::new();
        for room in &self.rooms {
            let join = Request::Join(request::Room {
                room: room.as_str().into(),
            });
            frames.push(join.to_json(None));
        }
        if !self.active {
            let state = Request::State(request::State { active: false });
            frames.push(state.to_json(None));
        }
        for f in frames {
            self.write(ws, f).await?;
        }
        while let Some(c) = self.queued.pop_front() {
            self.on_command(ws, c).await?;
        }
        Ok(())
    }

    async fn on_command(&mut self, ws: &mut Connection, cmd: Command) -> Result<(), End> {
        match cmd {
            Command::Request {
                id,
                frame,
                kind,
                reply,
            } => {
                if reply.is_closed() {
                    // The caller gave up (timed out) while it waited.
                    return Ok(());
                }
                self.pending.insert(id, Pending::User { kind, reply });
                self.write(ws, frame).await
            }
            Command::Fire(frame) => self.write(ws, frame).await,
            Command::Close => Err(End::Local),
        }
    }

    async fn on_tick(&mut self, ws: &mut Connection) -> Result<(), End> {
        let every = self.config.ping_interval;
        if self.last_rx.elapsed() > every + self.config.request_timeout {
            return Err(End::Dropped {
                code: None,
                reason: "server silent".into(),
            });
        }
        if self.last_tx.elapsed() >= every || self.last_rx.elapsed() >= every {
            let id = self.id();
            self.pending.insert(id.clone(), Pending::Quiet);
            self.write(ws, Request::Ping.to_json(Some(&id))).await?;
        }
        Ok(())
    }

    async fn on_frame(&mut self, ws: &mut Connection, f: Frame) -> Result<(), End> {
        let text = f.text();
        match f.ty() {
            "ok" | "pong" => {
                let Some(p) = f.id().and_then(|id| self.pending.remove(id)) else {
                    return Ok(());
                };
                self.on_answer(ws, p, Ok(text)).await
            }
            "error" => match f.id().and_then(|id| self.pending.remove(id)) {
                Some(p) => self.on_answer(ws, p, Err(text)).await,
                None => {
                    if let Ok(e) = serde_json::from_str::<ErrorFrame>(text) {
                        self.emit(Event::ServerError(owned_error(e))).await;
                    }
                    Ok(())
                }
            },
            "msg" => match serde_json::from_str::<MsgPush<'static>>(text) {
                Ok(p) => self.on_msg(ws, p.msg).await,
                Err(e) => {
                    tracing::debug!(error = %e, frame = text, "bad msg frame");
                    Ok(())
                }
            },
            "offline_done" => {
                if let Ok(d) = serde_json::from_str::<OfflineDone>(text) {
                    self.emit(Event::OfflineDone {
                        count: d.count,
                        truncated: d.truncated,
                    })
                    .await;
                }
                // Now ask what moved meanwhile that the queue does not
                // hold (one's own sends from other devices, large groups).
                let id = self.id();
                self.pending.insert(id.clone(), Pending::Sync);
                let sync = Request::Sync(request::Sync::default());
                self.write(ws, sync.to_json(Some(&id))).await
            }
            "receipt" => self.push(text, Event::Receipt).await,
            "recalled" => self.push(text, Event::Recalled).await,
            "edited" => self.push(text, Event::Edited).await,
            "reaction" => self.push(text, Event::Reaction).await,
            "typing" => self.push(text, Event::Typing).await,
            "presence" => self.push(text, Event::Presence).await,
            "friend" => self.push(text, Event::Friend).await,
            "profile" => self.push(text, Event::Profile).await,
            "conv_settings" => self.push(text, Event::ConvSettings).await,
            "notify" => self.push(text, Event::Notify).await,
            "room_msg" => self.push(text, Event::RoomMessage).await,
            other => {
                tracing::debug!(ty = other, "frame type this client does not know");
                Ok(())
            }
        }
    }

    async fn push<T: DeserializeOwned>(
        &mut self,
        text: &str,
        wrap: fn(T) -> Event,
    ) -> Result<(), End> {
        match serde_json::from_str::<T>(text) {
            Ok(v) => self.emit(wrap(v)).await,
            Err(e) => tracing::debug!(error = %e, frame = text, "bad push"),
        }
        Ok(())
    }

    async fn on_answer(
        &mut self,
        ws: &mut Connection,
        p: Pending,
        r: Result<&str, &str>,
    ) -> Result<(), End> {
        match p {
            Pending::Quiet => Ok(()),
            Pending::User { kind, reply } => {
                if let Ok(text) = r {
                    self.on_ok(&kind, text);
                }
                let _ = reply.send(r.map(str::to_owned).map_err(server_error));
                Ok(())
            }
            Pending::Sync => {
                let Ok(text) = r else {
                    return Ok(());
                };
                let Ok(ok) = serde_json::from_str::<OkFrame<'static, SyncAnswer<'static>>>(text)
                else {
                    return Ok(());
                };
                let behind: Vec<String> = (ok.body.convs.iter())
                    .filter(|c| self.convs.behind(&c.conv, c.max_seq))
                    .map(|c| c.conv.to_string())
                    .collect();
                self.emit(Event::Synced(ok.body)).await;
                for conv in behind {
                    self.fill(ws, &conv, 0).await?;
                }
                Ok(())
            }
            Pending::Gap { conv, tries } => match r {
                Ok(text) => {
                    match serde_json::from_str::<OkFrame<'static, HistoryAnswer<'static>>>(text) {
                        Ok(ok) => self.on_fill(ws, &conv, ok.body.msgs).await,
                        Err(e) => {
                            tracing::debug!(error = %e, "bad history answer");
                            self.give_up_fill(ws, &conv).await
                        }
                    }
                }
                Err(text) => {
                    let e = server_error(text);
                    if e.is_transient() && tries + 1 < self.config.send_attempts {
                        // Rate limited: ask again a little later (the
                        // pushes wait in `held` meanwhile).
                        sleep(backoff(
                            self.config.retry_base,
                            self.config.reconnect_max,
                            tries,
                        ))
                        .await;
                        self.fill(ws, &conv, tries + 1).await
                    } else {
                        self.give_up_fill(ws, &conv).await
                    }
                }
            },
        }
    }

    /// What an `ok` changes in the session's own state.
    fn on_ok(&mut self, kind: &ReqKind, text: &str) {
        match kind {
            ReqKind::Send => {
                let Ok(ok) = serde_json::from_str::<OkFrame<SendAnswer>>(text) else {
                    return;
                };
                self.convs.sent(&ok.body.conv, ok.body.seq);
            }
            ReqKind::Join(room) => {
                self.rooms.insert(room.clone());
            }
            ReqKind::Leave(room) => {
                self.rooms.remove(room);
            }
            ReqKind::State(active) => self.active = *active,
            ReqKind::Other => {}
        }
    }

    async fn on_msg(&mut self, ws: &mut Connection, m: MsgView<'static>) -> Result<(), End> {
        let conv = m.conv.to_string();
        match self.convs.arrive(m) {
            Arrival::Duplicate => {
                Counters::bump(&self.counters.duplicates_dropped);
                self.ack_soon();
                Ok(())
            }
            Arrival::Held => Ok(()),
            Arrival::Gap => self.fill(ws, &conv, 0).await,
            Arrival::Deliver(m) => {
                self.deliver(vec![m]).await;
                Ok(())
            }
        }
    }

    /// Asks for the messages after the conversation's position.
    async fn fill(&mut self, ws: &mut Connection, conv: &str, tries: u32) -> Result<(), End> {
        let Some(after) = self.convs.start_fill(conv) else {
            return Ok(());
        };
        Counters::bump(&self.counters.gap_fills);
        let id = self.id();
        self.pending.insert(
            id.clone(),
            Pending::Gap {
                conv: conv.to_owned(),
                tries,
            },
        );
        let page = Request::History(request::History {
            conv: conv.into(),
            before_seq: None,
            after_seq: after,
            limit: Some(self.config.gap_page.clamp(1, 500)),
        });
        self.write(ws, page.to_json(Some(&id))).await
    }

    async fn on_fill(
        &mut self,
        ws: &mut Connection,
        conv: &str,
        msgs: Vec<MsgView<'static>>,
    ) -> Result<(), End> {
        let full = msgs.len() as u64 >= self.config.gap_page.clamp(1, 500);
        let news = self.convs.filled(conv, msgs);
        for _ in &news {
            Counters::bump(&self.counters.filled_messages);
        }
        self.deliver(news).await;
        if full {
            // More may lie between: next page.
            return self.fill(ws, conv, 0).await;
        }
        // History has nothing more below the held pushes (what is missing
        // was deleted by this user): hand them out in order.
        self.release(conv).await;
        Ok(())
    }

    async fn give_up_fill(&mut self, _ws: &mut Connection, conv: &str) -> Result<(), End> {
        tracing::debug!(conv, "gap fill failed; delivering what arrived");
        self.release(conv).await;
        Ok(())
    }

    /// Ends a fill: the held pushes above the position, in seq order.
    async fn release(&mut self, conv: &str) {
        let held = self.convs.release(conv);
        self.deliver(held).await;
    }

    /// Hands messages (already recorded in `convs`) to the application and
    /// schedules their ack.
    async fn deliver(&mut self, msgs: Vec<MsgView<'static>>) {
        if msgs.is_empty() {
            return;
        }
        self.ack_soon();
        for m in msgs {
            self.emit(Event::Message(m)).await;
        }
    }

    fn ack_soon(&mut self) {
        if self.ack_due.is_none() {
            self.ack_due = Some(Instant::now() + self.config.ack_delay);
        }
    }

    /// One cumulative `ack` per conversation that has news.
    async fn flush_acks(&mut self, ws: &mut Connection) -> Result<(), End> {
        self.ack_due = None;
        for (conv, last) in self.convs.take_acks() {
            let frame = Request::Ack(conv_seq(&conv, last)).to_json(None);
            self.write(ws, frame).await?;
        }
        Ok(())
    }
}

fn owned_error(e: ErrorFrame<'_>) -> ErrorFrame<'static> {
    ErrorFrame {
        ty: e.ty,
        id: e.id.map(|i| Cow::Owned(i.into_owned())),
        code: Cow::Owned(e.code.into_owned()),
        message: Cow::Owned(e.message.into_owned()),
    }
}
