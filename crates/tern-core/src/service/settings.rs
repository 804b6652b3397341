//! 5.3 profiles, conversation settings and sessions.
//!
//! - A profile is the display name and an avatar (a media id, opaque
//!   until media lands: bounded and of id characters only). A change is
//!   pushed as `profile` to the user's online friends (not across a
//!   block) and to the user's own devices.
//! - A user's settings of a conversation it can read: `muted_until` and
//!   `pinned`, carried by every sync entry; a change is pushed to the
//!   user's own devices as `conv_settings`. Muting touches offline push
//!   only: unread counts as before.
//! - A session is one token, named by its id. The store records it at
//!   login and on use (its `last_seen`, written at most once per
//!   `session_seen_ms` per node); revoking one goes through the revoked
//!   tokens every node keeps. Revoking all also revokes every token of
//!   the user issued before that second, recorded or not (a token from
//!   before sessions were recorded, or whose record failed).
//! - A session's devices are its online connections on every node: this
//!   node's from its hub, the others' from the presence routes, which
//!   carry the session of each connection.

use super::retention::RETENTION_DAYS_MAX;
use super::Core;
use crate::auth::Session;
use crate::error::{CoreError, CoreResult};
use crate::frame::encode;
use crate::now_ms;
use crate::push::{Outbound, Push};
use crate::revoked::USER_REVOCATION_KEEP_MS;
use crate::store::{ConvSettings, SessionRecord};
use std::borrow::Cow;
use std::sync::Arc;
use tern_proto::wire::{tag, ConvSettingsPush, ProfilePush};
use tern_proto::ErrorCode;

/// Longest display name, in characters (as at registration).
pub const NAME_MAX_CHARS: usize = 128;

/// A user as others see it: `GET /v1/users/{user}`, `PATCH /v1/users/me`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    pub user: String,
    pub name: String,
    pub avatar: Option<String>,
    pub online: bool,
    /// 5.6
    pub bot: bool,
}

/// One session of `GET /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub record: SessionRecord,
    /// Devices connected with this session's token.
    pub devices: Vec<String>,
    /// The session of the token that asked.
    pub current: bool,
}

/// An avatar id: 1 to `max` bytes of `A-Z a-z 0-9 _ . -`.
fn is_avatar_id(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Core {
    /// `GET /v1/users/{user}` as `viewer` sees it: presence hidden across
    /// a block.
    pub async fn user_view(&self, viewer: &str, user: &str) -> CoreResult<UserView> {
        let no_such = || CoreError::new(ErrorCode::NoSuchUser, "no such user");
        if !tern_proto::ids::is_valid_name(user) || !self.user_exists(user).await? {
            return Err(no_such());
        }
        let p = self.store.profile(user).await?.ok_or_else(no_such)?;
        let online = self.presence_for(viewer, &[user]).await?[0];
        Ok(UserView {
            user: user.to_owned(),
            name: p.name,
            avatar: p.avatar,
            online,
            bot: p.bot,
        })
    }

    /// `PATCH /v1/users/me`: `name` 1-128 characters, not blank; `avatar`
    /// a media id of at most `avatar_bytes` bytes, `""` to clear it.
    pub async fn update_profile(
        &self,
        user: &str,
        name: Option<&str>,
        avatar: Option<&str>,
    ) -> CoreResult<UserView> {
        if let Some(n) = name {
            if n.trim().is_empty() || n.chars().count() > NAME_MAX_CHARS {
                return Err(CoreError::invalid(
                    "name must be 1-128 characters, not only spaces",
                ));
            }
        }
        if let Some(a) = avatar {
            if !a.is_empty() && !is_avatar_id(a, self.cfg.avatar_bytes) {
                return Err(CoreError::invalid(format!(
                    "avatar must be a media id: 1-{} characters of A-Z a-z 0-9 _ . - (limits.avatar_bytes), or \"\" to clear it",
                    self.cfg.avatar_bytes
                )));
            }
            // 5.5: a media of the caller named as avatar is kept.
            self.reference_avatar(user, a).await?;
        }
        let p = self
            .store
            .set_profile(user, name, avatar)
            .await?
            .ok_or_else(|| CoreError::new(ErrorCode::NoSuchUser, "no such user"))?;
        if name.is_some() || avatar.is_some() {
            self.announce_profile(user, &p.name, p.avatar.as_deref())
                .await;
        }
        let online = self.online(&[user]).await.first().copied().unwrap_or(false);
        Ok(UserView {
            user: user.to_owned(),
            name: p.name,
            avatar: p.avatar,
            online,
            bot: p.bot,
        })
    }

    /// Pushes `profile` to `user`'s own devices and its friends' (not to
    /// those in a block with it either way).
    async fn announce_profile(&self, user: &str, name: &str, avatar: Option<&str>) {
        let mut users: Vec<Arc<str>> = vec![Arc::from(user)];
        match self.store.friends(user).await {
            Ok(l) if !l.friends.is_empty() => {
                let names: Vec<&str> = l.friends.iter().map(String::as_str).collect();
                let hidden = self
                    .hidden_presence(user, &names)
                    .await
                    .unwrap_or_else(|_| vec![true; names.len()]);
                users.extend(
                    names
                        .iter()
                        .zip(hidden)
                        .filter(|(_, h)| !h)
                        .map(|(f, _)| Arc::from(*f)),
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "profile: cannot load friends"),
        }
        let frame = encode(&ProfilePush {
            ty: tag::Profile,
            user: Cow::Borrowed(user),
            name: Cow::Borrowed(name),
            avatar: avatar.map(Cow::Borrowed),
        });
        self.fanout.push(Push {
            users,
            except: None,
            out: Outbound::Frame(frame),
            inactive: None,
        });
    }

    /// `PUT /v1/conversations/{conv}/settings`, for a conversation `user`
    /// can read (a former group member's too). `muted_until` 0 unmutes; a
    /// time already past is stored as 0.
    ///
    /// 5.6: `retention_days` (1 to [`RETENTION_DAYS_MAX`], 0 clears) is
    /// the conversation's, shared by its members: either party of a 1:1
    /// conversation, the owner or an admin of a group may set it
    /// (`forbidden` otherwise).
    pub async fn set_conv_settings(
        &self,
        user: &str,
        conv: &str,
        muted_until: Option<i64>,
        pinned: Option<bool>,
        retention_days: Option<u32>,
    ) -> CoreResult<ConvSettings> {
        if muted_until.is_some_and(|t| t < 0) {
            return Err(CoreError::invalid(
                "muted_until must be a time in ms, or 0 to unmute",
            ));
        }
        if retention_days.is_some_and(|d| d > RETENTION_DAYS_MAX) {
            return Err(CoreError::invalid(format!(
                "retention_days must be 1-{RETENTION_DAYS_MAX}, or 0 or null to clear it"
            )));
        }
        let access = self.access(user, conv, true).await?;
        if let Some(peer) = access.id.peer_of(user) {
            self.require_user(peer).await?;
        }
        let conv = access.id.to_string();
        let now = now_ms();
        if let Some(days) = retention_days {
            self.may_set_retention(user, &access.id).await?;
            self.store.set_retention(&conv, days, now).await?;
        }
        let muted_until = muted_until.map(|t| if t <= now { 0 } else { t });
        let mut s = self
            .store
            .set_conv_settings(user, &conv, muted_until, pinned)
            .await?;
        s.retention_days = self.store.retention(&conv).await?;
        let frame = encode(&ConvSettingsPush {
            ty: tag::ConvSettings,
            conv: Cow::Borrowed(&s.conv),
            muted_until: s.muted_until,
            pinned: s.pinned,
        });
        self.fanout.push(Push {
            users: vec![Arc::from(user)],
            except: None,
            out: Outbound::Frame(frame),
            inactive: None,
        });
        Ok(s)
    }

    /// `user`'s settings that differ from the defaults, sorted by conv
    /// (what sync entries carry).
    /// 5.6: with each conversation's retention (a conversation with a
    /// retention and no setting of the user's gets an entry too).
    pub async fn conv_settings(&self, user: &str) -> CoreResult<Vec<ConvSettings>> {
        let mut out = self.store.conv_settings(user).await?;
        let retentions = self.store.retentions(user).await?;
        for (conv, days) in retentions {
            match out.binary_search_by(|s| s.conv.as_str().cmp(conv.as_str())) {
                Ok(i) => out[i].retention_days = days,
                Err(i) => out.insert(
                    i,
                    ConvSettings {
                        conv,
                        retention_days: days,
                        ..ConvSettings::default()
                    },
                ),
            }
        }
        Ok(out)
    }

    /// Records that a session was used now, at most once per
    /// `session_seen_ms` on this node; the write runs apart from the
    /// request.
    pub(super) fn session_seen(&self, s: &Session) {
        let now = now_ms();
        let every = self.cfg.session_seen_ms;
        if self.seen.get(&s.id).is_some_and(|t| now - *t < every) {
            return;
        }
        self.seen.insert(s.id, now);
        let last = self.seen_sweep.load(std::sync::atomic::Ordering::Relaxed);
        if now - last >= every {
            self.seen_sweep
                .store(now, std::sync::atomic::Ordering::Relaxed);
            // Entries older than the period would be written again anyway.
            self.seen.retain(|_, t| now - *t < every);
        }
        let rec = record_of(s, now);
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_session(&rec).await {
                tracing::warn!(error = %e, "cannot record a session's use");
            }
        });
    }

    /// Records a session just issued (login), before its token is handed
    /// out, so that `GET /v1/sessions` lists it at once.
    pub(super) async fn session_issued(&self, token: &str) {
        let Some(s) = self.auth.verify(token) else {
            return;
        };
        let now = now_ms();
        self.seen.insert(s.id, now);
        // Created now, to the ms (the token's own time is in seconds).
        let rec = SessionRecord {
            created_at: now,
            ..record_of(&s, now)
        };
        if let Err(e) = self.store.touch_session(&rec).await {
            // Recorded on its first use instead.
            self.seen.remove(&s.id);
            tracing::warn!(error = %e, "cannot record a new session");
        }
    }

    /// `GET /v1/sessions`: `user`'s unexpired, unrevoked sessions,
    /// oldest first; at most `sessions_listed` (the newest). `current`:
    /// the id of the session that asks.
    pub async fn sessions(&self, user: &str, current: u128) -> CoreResult<Vec<SessionInfo>> {
        let now = now_ms();
        let mut recs: Vec<SessionRecord> = self
            .store
            .sessions(user, now)
            .await?
            .into_iter()
            .filter(|r| {
                // Recorded to the ms, issued to the second.
                let issued = r.created_at - r.created_at.rem_euclid(1000);
                u128::from_str_radix(&r.session, 16)
                    .is_ok_and(|id| !self.revoked.refuses(user, id, issued))
            })
            .collect();
        if recs.len() > self.cfg.sessions_listed {
            recs.drain(..recs.len() - self.cfg.sessions_listed);
        }
        let devices = self.session_devices(user).await;
        Ok(recs
            .into_iter()
            .map(|record| {
                let id = u128::from_str_radix(&record.session, 16).unwrap_or(0);
                let mut devices: Vec<String> = devices
                    .iter()
                    .filter(|(_, s)| *s == id)
                    .map(|(d, _)| d.clone())
                    .collect();
                devices.sort_unstable();
                devices.dedup();
                SessionInfo {
                    current: id == current,
                    devices,
                    record,
                }
            })
            .collect())
    }

    /// `user`'s online devices on every node with the session of each:
    /// this node's from its hub (connections being closed left out), the
    /// other nodes' from the presence routes. Without presence, this
    /// node's only.
    async fn session_devices(&self, user: &str) -> Vec<(String, u128)> {
        let node = self.fanout.node();
        let mut out: Vec<(String, u128)> = self
            .hub
            .devices(user)
            .iter()
            .filter(|c| c.close_code().is_none())
            .map(|c| (c.device.to_string(), c.session))
            .collect();
        match self.presence.devices(user).await {
            Ok(routes) => out.extend(
                routes
                    .into_iter()
                    .filter(|(_, r)| r.node != node)
                    .map(|(d, r)| (d, r.session)),
            ),
            Err(e) => tracing::warn!(error = %e, "sessions: other nodes' devices unknown"),
        }
        out
    }

    /// `DELETE /v1/sessions/{session}`: revokes one of `user`'s sessions
    /// everywhere; `not_found` for a session that is not the user's, has
    /// expired or was revoked.
    pub async fn revoke_session(&self, user: &str, session: &str) -> CoreResult<()> {
        let not_found = || CoreError::new(ErrorCode::NotFound, "no such session");
        let id = (session.len() == 32)
            .then(|| u128::from_str_radix(session, 16).ok())
            .flatten()
            .filter(|id| !self.revoked.contains(*id))
            .ok_or_else(not_found)?;
        let rec = self
            .store
            .sessions(user, now_ms())
            .await?
            .into_iter()
            .find(|r| r.session.eq_ignore_ascii_case(session))
            .ok_or_else(not_found)?;
        self.revoke(&Session {
            user: user.to_owned(),
            id,
            expires_at: rec.expires_at,
            issued_at: rec.created_at,
        })
        .await
    }

    /// `DELETE /v1/sessions?all=true`: revokes every token of `user`
    /// issued before this second, recorded as a session or not, then each
    /// recorded session (those issued within this second too), the
    /// caller's own included; how many recorded ones. A login after the
    /// call is not touched.
    pub async fn revoke_all_sessions(&self, user: &str) -> CoreResult<usize> {
        let now = now_ms();
        // Tokens carry their issue time in whole seconds.
        let before = now - now.rem_euclid(1000);
        let until = before.saturating_add(USER_REVOCATION_KEEP_MS);
        self.store
            .revoke_user_tokens(user, before, until, now)
            .await?;
        self.revoked.insert_user(user, before, until, now);
        // 5.5: and every device registered for push.
        self.push_forget(user, None).await;
        let closed = self.hub.kick_issued_before(user, before);
        tracing::debug!(%user, closed, "older tokens revoked");
        self.fanout.revoked_before(user, before, until).await;
        let recs = self.store.sessions(user, now).await?;
        let mut n = 0;
        for rec in recs {
            let Ok(id) = u128::from_str_radix(&rec.session, 16) else {
                continue;
            };
            self.revoke(&Session {
                user: user.to_owned(),
                id,
                expires_at: rec.expires_at,
                issued_at: rec.created_at,
            })
            .await?;
            n += 1;
        }
        Ok(n)
    }
}

/// The record of session `s` seen at `now`.
fn record_of(s: &Session, now: i64) -> SessionRecord {
    SessionRecord {
        session: s.id_text(),
        user: s.user.clone(),
        created_at: s.issued_at,
        expires_at: s.expires_at,
        last_seen: now,
    }
}
