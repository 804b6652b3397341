//! The session's first and last words on the socket: the `auth` step, the
//! offline batch, and the close frame with the wait for the client's.

use super::limits::Stall;
use super::{error_frame, text, WsParams};
use crate::guard::Slot;
use crate::pending::Pending;
use crate::state::App;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use parking_lot::Mutex;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tern_core::auth::Session;
use tern_core::service::encode;
use tern_core::{encode_msg_push, now_ms};
use tern_proto::frames::{decode, FrameType};
use tern_proto::ids::is_valid_token;
use tern_proto::wire::{tag, AuthAnswer, OfflineDone, OkFrame};
use tern_proto::{close, ErrorCode};
use tokio::time::Instant;

/// Runs the `auth` step; on failure sends `unauthenticated` and closes
/// with 4001. A user at `rate.connections_per_user` on this node gets
/// `rate_limited` and 4008 instead of `ok`. Returns the token's session and
/// the device.
pub(super) async fn authenticate(
    app: &App,
    socket: &mut WebSocket,
    params: WsParams,
    slot: &mut Slot,
) -> Option<(Session, String)> {
    let reject = |id: Option<&str>, msg: &str| {
        (
            error_frame(id, ErrorCode::Unauthenticated, msg),
            close_msg(close::UNAUTHENTICATED, "unauthenticated"),
        )
    };
    // A token that could not be checked (the store did not answer whether
    // its user exists) is no reason to log the client out: 1011, and it
    // reconnects.
    let refuse = |id: Option<&str>, e: &tern_core::CoreError| {
        if e.code == ErrorCode::Unavailable {
            (
                error_frame(id, e.code, &e.message),
                close_msg(close::INTERNAL, "service unavailable"),
            )
        } else {
            reject(id, &e.message)
        }
    };
    let (session, device, id) = if let Some(token) = params.token {
        match app.core.session(&token).await {
            Ok(session) => (session, params.device, None),
            Err(e) => {
                let (err, bye) = refuse(None, &e);
                let _ = socket.send(text(err)).await;
                let _ = socket.send(bye).await;
                return None;
            }
        }
    } else {
        let deadline = Instant::now() + Duration::from_secs(app.cfg.limits.auth_timeout_secs);
        loop {
            let msg = match tokio::time::timeout_at(deadline, socket.recv()).await {
                Err(_) => {
                    let (err, bye) = reject(None, "auth timed out");
                    let _ = socket.send(text(err)).await;
                    let _ = socket.send(bye).await;
                    return None;
                }
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(m))) => m,
            };
            let t = match msg {
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(_) => return None,
                Message::Text(t) => t,
                Message::Binary(_) => Utf8Bytes::from_static(""),
            };
            let outcome = match decode(t.as_str()) {
                Ok(d) if d.ty == FrameType::Auth => {
                    let id = d.frame.id.as_deref().map(str::to_owned);
                    match d.frame.token.as_deref() {
                        Some(tok) => match app.core.session(tok).await {
                            Ok(session) => {
                                Ok((session, d.frame.device.as_deref().map(str::to_owned), id))
                            }
                            Err(e) => Err((id, e)),
                        },
                        None => Err((
                            id,
                            tern_core::CoreError::new(
                                ErrorCode::Unauthenticated,
                                "auth needs a token",
                            ),
                        )),
                    }
                }
                Ok(d) => Err((
                    d.frame.id.as_deref().map(str::to_owned),
                    tern_core::CoreError::new(
                        ErrorCode::Unauthenticated,
                        "the first frame must be auth",
                    ),
                )),
                Err(e) => Err((
                    e.id,
                    tern_core::CoreError::new(
                        ErrorCode::Unauthenticated,
                        "the first frame must be auth",
                    ),
                )),
            };
            match outcome {
                Ok(found) => break found,
                Err((id, e)) => {
                    let (err, bye) = refuse(id.as_deref(), &e);
                    let _ = socket.send(text(err)).await;
                    let _ = socket.send(bye).await;
                    return None;
                }
            }
        }
    };
    let device = device.unwrap_or_else(|| "default".to_owned());
    if !is_valid_token(&device) {
        let _ = socket
            .send(text(error_frame(
                id.as_deref(),
                ErrorCode::Invalid,
                "device must be 1-64 characters",
            )))
            .await;
        let _ = socket
            .send(close_msg(close::UNAUTHENTICATED, "bad device"))
            .await;
        return None;
    }
    // A device that reconnects replaces its older connection: never
    // refused for the older one still being counted.
    let replacing = app
        .core
        .hub()
        .devices(&session.user)
        .iter()
        .any(|c| *c.device == *device);
    if !app.guard.connect_user(slot, &session.user, replacing) {
        metrics::counter!("tern_upgrades_refused_total").increment(1);
        let _ = socket
            .send(text(error_frame(
                id.as_deref(),
                ErrorCode::RateLimited,
                "too many connections of this user",
            )))
            .await;
        let _ = socket
            .send(close_msg(close::POLICY, "too many connections"))
            .await;
        return None;
    }
    let ok = encode(&OkFrame::new(
        id.as_deref(),
        AuthAnswer {
            user: Cow::Borrowed(&session.user),
            device: Cow::Borrowed(&device),
            ts: now_ms(),
        },
    ));
    socket.send(text(ok)).await.ok()?;
    Some((session, device))
}

/// Pushes the offline queue, then `offline_done`. Returns, per
/// conversation, the highest seq pushed, so the connection can skip live pushes
/// of the same messages that were queued meanwhile.
pub(super) async fn push_offline(
    app: &App,
    socket: &mut WebSocket,
    user: &str,
    pending: &Mutex<Pending>,
    stall: &Stall,
) -> Result<HashMap<Arc<str>, u64>, u16> {
    let batch = match app.core.offline(user).await {
        Ok(b) => b,
        Err(e) => {
            let _ = socket
                .send(text(error_frame(None, e.code, &e.message)))
                .await;
            let _ = socket
                .send(close_msg(1011, "offline queue unavailable"))
                .await;
            return Err(1011);
        }
    };
    let timeout = Duration::from_millis(app.cfg.delivery.ack_timeout_ms);
    let mut max: HashMap<Arc<str>, u64> = HashMap::new();
    let count = batch.msgs.len();
    for m in &batch.msgs {
        let frame = encode_msg_push(m);
        let conv: Arc<str> = m.conv.as_str().into();
        let e = max.entry(conv.clone()).or_default();
        *e = (*e).max(m.seq);
        pending
            .lock()
            .add(conv, m.seq, frame.clone(), Instant::now() + timeout);
        stall.guard(socket.feed(text(frame))).await?;
    }
    let done = encode(&OfflineDone {
        ty: tag::OfflineDone,
        count: count as u64,
        truncated: batch.truncated,
    });
    stall.guard(socket.send(text(done))).await?;
    app.hot.frames_out.increment(count as u64 + 1);
    Ok(max)
}

pub(super) fn close_msg(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// The reason sent with a close code.
pub(super) fn close_reason(code: u16) -> &'static str {
    match code {
        close::GOING_AWAY => "server shutting down",
        close::TOO_BIG => "frame too large",
        close::PROTOCOL => "protocol error",
        close::INVALID_DATA => "invalid UTF-8 in a text frame",
        close::POLICY => "rate limit or slow reader",
        close::REPLACED => "replaced by a newer login of this device",
        close::UNAUTHENTICATED => "token expired or revoked",
        1000 => "idle timeout or closed",
        _ => "",
    }
}

/// After our close frame: reads and drops the client's frames until its
/// close comes, or `deadline`.
pub(super) async fn linger_until_close(socket: &mut WebSocket, deadline: Instant) {
    let _ = tokio::time::timeout_at(deadline, async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
