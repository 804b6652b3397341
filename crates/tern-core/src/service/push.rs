//! 5.5 offline push registrations: `PUT`/`DELETE /v1/push/{device}`.
//! The provider-specific shape (a token, or a Web Push subscription whose
//! keys decode) is checked at the edge, where the providers live; here:
//! the device id, the provider being configured, lengths and the bound
//! per user. Which pushes go out: `crate::notifications`.

use tern_proto::ids::is_valid_name;
use tern_proto::ErrorCode;

use super::Core;
use crate::error::{CoreError, CoreResult};
use crate::now_ms;
use crate::store::{PushRegistration, StoreError};

/// Longest device token (FCM tokens are about 160 bytes, APNs 64 hex
/// digits), in bytes.
pub const PUSH_TOKEN_MAX: usize = 4096;
/// Longest Web Push endpoint, in bytes.
pub const PUSH_ENDPOINT_MAX: usize = 2048;
/// Longest Web Push key (`p256dh` is 87 base64url characters, `auth` 22).
pub const PUSH_KEY_MAX: usize = 255;

/// What a device registers with (`PUT /v1/push/{device}`).
#[derive(Debug, Clone, Default)]
pub struct PushTarget {
    pub provider: String,
    pub token: String,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

impl Core {
    /// Whether offline push is configured.
    pub fn push_enabled(&self) -> bool {
        self.hooks.cfg.push.is_some()
    }

    /// Registers (or replaces) `user`'s `device` for offline push, made by
    /// session `session`.
    pub async fn push_register(
        &self,
        user: &str,
        session: u128,
        device: &str,
        target: PushTarget,
    ) -> CoreResult<()> {
        let Some(cfg) = &self.hooks.cfg.push else {
            return Err(CoreError::invalid(
                "offline push is not configured on this server",
            ));
        };
        if !is_valid_name(device) {
            return Err(CoreError::invalid(
                "device must be 1-64 characters of [A-Za-z0-9_.-]",
            ));
        }
        if !cfg.providers.contains(&target.provider) {
            return Err(CoreError::invalid(format!(
                "provider must be one this server has configured: {}",
                cfg.providers.join(", ")
            )));
        }
        for (name, value, max) in [
            ("token", &target.token, PUSH_TOKEN_MAX),
            ("endpoint", &target.endpoint, PUSH_ENDPOINT_MAX),
            ("keys.p256dh", &target.p256dh, PUSH_KEY_MAX),
            ("keys.auth", &target.auth, PUSH_KEY_MAX),
        ] {
            if value.len() > max {
                return Err(CoreError::invalid(format!("{name} is over {max} bytes")));
            }
        }
        let reg = PushRegistration {
            user: user.to_owned(),
            device: device.to_owned(),
            provider: target.provider,
            token: target.token,
            endpoint: target.endpoint,
            p256dh: target.p256dh,
            auth: target.auth,
            session: format!("{session:032x}"),
            updated_at: now_ms(),
        };
        match self.store.push_register(&reg, cfg.max_devices).await {
            Ok(()) => Ok(()),
            Err(StoreError::Forbidden(_)) => Err(CoreError::invalid(format!(
                "at most {} devices per user are registered for push; remove one first",
                cfg.max_devices
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `user`'s registration of `device`; `not_found` when there
    /// is none.
    pub async fn push_unregister(&self, user: &str, device: &str) -> CoreResult<()> {
        if self.store.push_unregister(user, device).await? {
            Ok(())
        } else {
            Err(CoreError::new(
                ErrorCode::NotFound,
                "no push registration of this device",
            ))
        }
    }

    /// A session was revoked (`None`: every session of the user): the
    /// registrations it made go, so a signed-out device gets no more
    /// pushes (docs/PROTOCOL-NOTES.md). A failure is logged: the session
    /// is revoked all the same.
    pub(super) async fn push_forget(&self, user: &str, session: Option<u128>) {
        let session = session.map(|s| format!("{s:032x}"));
        if let Err(e) = self
            .store
            .push_unregister_session(user, session.as_deref())
            .await
        {
            tracing::warn!(%user, error = %e, "push registrations of a revoked session kept");
        }
    }
}
