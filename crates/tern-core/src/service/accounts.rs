//! Accounts: registration, login, sessions and their revocation, user lookups.

use super::Core;
use crate::auth::{Auth, Session};
use crate::error::{CoreError, CoreResult};
use crate::now_ms;
use crate::store::{Store, StoreError, UserRecord};
use tern_proto::ids::is_valid_name;
use tern_proto::ErrorCode;

/// Creates an account as `POST /v1/users` does: checks the user id,
/// password and display name, hashes the password with `auth`'s argon2
/// parameters (on a blocking thread) and stores the user. Also used by
/// the admin command line, which has a store but no running core.
pub async fn register_user(
    store: &dyn Store,
    auth: &Auth,
    user: &str,
    password: &str,
    name: Option<&str>,
) -> CoreResult<()> {
    if !is_valid_name(user) {
        return Err(CoreError::invalid(
            "user must be 1-64 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    if password.chars().count() < 8 {
        return Err(CoreError::invalid("password must be at least 8 characters"));
    }
    if password.len() > 1024 {
        return Err(CoreError::invalid("password must be at most 1024 bytes"));
    }
    let name = name.unwrap_or(user);
    if name.chars().count() > 128 {
        return Err(CoreError::invalid("name must be at most 128 characters"));
    }
    let hash = auth.hash(password).await.map_err(pool_error)?;
    let rec = UserRecord {
        user: user.to_owned(),
        name: name.to_owned(),
        password_hash: hash,
        created_at: now_ms(),
        bot: false,
    };
    store_user(store, rec).await
}

/// 5.6: creates a bot account (`tern user add --bot`): it has no password
/// (no password ever matches its hash, and login refuses bots before
/// checking); its tokens are minted by `tern token`.
pub async fn register_bot(store: &dyn Store, user: &str, name: Option<&str>) -> CoreResult<()> {
    if !is_valid_name(user) {
        return Err(CoreError::invalid(
            "user must be 1-64 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    let name = name.unwrap_or(user);
    if name.chars().count() > 128 {
        return Err(CoreError::invalid("name must be at most 128 characters"));
    }
    let rec = UserRecord {
        user: user.to_owned(),
        name: name.to_owned(),
        password_hash: BOT_PASSWORD_HASH.to_owned(),
        created_at: now_ms(),
        bot: true,
    };
    store_user(store, rec).await
}

/// The password hash of bots: not a PHC string, so no password matches.
pub const BOT_PASSWORD_HASH: &str = "!bot";

async fn store_user(store: &dyn Store, rec: UserRecord) -> CoreResult<()> {
    match store.create_user(rec).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict) => Err(CoreError::new(ErrorCode::UserExists, "user exists")),
        Err(e) => Err(e.into()),
    }
}

/// A hashing pool that is full is `unavailable` (503 with `Retry-After`:
/// waiting helps); PROTOCOL.md keeps 429 for failed logins.
pub(super) fn pool_error(e: crate::hashpool::PoolError) -> CoreError {
    match e {
        crate::hashpool::PoolError::Busy(_) => {
            metrics::counter!("tern_hash_refused_total").increment(1);
            CoreError::new(
                ErrorCode::Unavailable,
                "too many logins and registrations at once, try again",
            )
        }
        crate::hashpool::PoolError::Failed => CoreError::unavailable(),
    }
}

impl Core {
    pub async fn register(&self, user: &str, password: &str, name: Option<&str>) -> CoreResult<()> {
        register_user(&*self.store, &self.auth, user, password, name).await?;
        self.known_users.insert(user.to_owned());
        // 5.6
        self.emit(
            "user.created",
            serde_json::json!({"user": user, "name": name.unwrap_or(user), "bot": false}),
        )
        .await;
        Ok(())
    }

    /// Checks a password; returns a token and its expiry (ms).
    pub async fn login(&self, user: &str, password: &str) -> CoreResult<(String, i64)> {
        let bad = || CoreError::new(ErrorCode::BadCredentials, "wrong user or password");
        if !is_valid_name(user) || password.len() > 1024 {
            return Err(bad());
        }
        let rec = self.store.get_user(user).await?;
        // 5.6: a bot never logs in with a password; like an unknown user
        // it costs one hash, so timing does not tell bots apart.
        // An erased account (5.6) logs in no more either.
        let rec = rec.filter(|r| !r.bot && !r.is_erased());
        // An unknown user costs one hash too, so timing does not tell
        // which users exist.
        let ok = self
            .auth
            .check(password, rec.map(|r| r.password_hash))
            .await
            .map_err(pool_error)?;
        if !ok {
            return Err(bad());
        }
        let (token, expires_at) = self.auth.issue(user, now_ms()).map_err(|e| {
            tracing::error!(error = %e, "token signing failed");
            CoreError::unavailable()
        })?;
        self.session_issued(&token).await;
        Ok((token, expires_at))
    }

    /// The user a token belongs to.
    pub async fn authenticate(&self, token: &str) -> CoreResult<String> {
        self.session(token).await.map(|s| s.user)
    }

    /// The session of a valid, unexpired, unrevoked token of a user that
    /// exists. A token signed with this server's secret for a user it does
    /// not know (a store reset with the secret kept, a token minted by
    /// hand) is refused. A user once seen is remembered
    /// ([`user_exists`](Core::user_exists)): the store is asked once per
    /// user, not per call; an erased account (5.6) is forgotten on its
    /// node, and its tokens were all revoked everywhere before.
    pub async fn session(&self, token: &str) -> CoreResult<Session> {
        let refused =
            || CoreError::new(ErrorCode::Unauthenticated, "missing, bad or expired token");
        let session = self
            .auth
            .verify_fresh(token)
            .await
            .filter(|s| !self.revoked.refuses(&s.user, s.id, s.issued_at))
            .ok_or_else(refused)?;
        if !self.user_exists(&session.user).await? {
            return Err(refused());
        }
        self.session_seen(&session);
        Ok(session)
    }

    /// Revokes a session's token everywhere: stored first (so that a node
    /// starting later knows it too), then refused on this node and its
    /// connections here closed with 4001, then every other node that may
    /// hold one is told to do the same.
    pub async fn revoke(&self, session: &Session) -> CoreResult<()> {
        let now = now_ms();
        self.store
            .revoke_token(&session.id_text(), session.expires_at, now)
            .await?;
        self.revoked.insert(session.id, session.expires_at, now);
        // Listed no more (5.3); a failure here leaves a row the listing
        // skips, as it skips every revoked id.
        if let Err(e) = self.store.delete_session(&session.id_text()).await {
            tracing::warn!(error = %e, "cannot forget a revoked session");
        }
        // 5.5: the devices it registered for push get no more.
        self.push_forget(&session.user, Some(session.id)).await;
        let closed = self.hub.kick_session(&session.user, session.id);
        tracing::debug!(user = %session.user, closed, "token revoked");
        self.fanout
            .revoked(&session.user, session.id, session.expires_at)
            .await;
        Ok(())
    }

    /// Loads the revoked tokens that have not expired yet and closes this
    /// node's connections of any of them: at start, before requests are
    /// served, and in cluster mode once more when every other node counts
    /// this one as live (a revocation made in between was sent only to
    /// the nodes its node knew).
    pub async fn load_revoked(&self) -> CoreResult<usize> {
        let now = now_ms();
        for (jti, expires_at) in self.store.revoked_tokens(now).await? {
            match u128::from_str_radix(&jti, 16) {
                Ok(id) => self.revoked.insert(id, expires_at, now),
                Err(_) => tracing::warn!(jti, "ignoring a malformed revoked token id"),
            }
        }
        if !self.revoked.is_empty() {
            self.hub.kick_sessions(|id| self.revoked.contains(id));
        }
        let users = self.store.revoked_users(now).await?;
        for (user, before, until) in &users {
            self.revoked.insert_user(user, *before, *until, now);
            self.hub.kick_issued_before(user, *before);
        }
        Ok(self.revoked.len() + users.len())
    }

    pub async fn user_exists(&self, user: &str) -> CoreResult<bool> {
        if self.known_users.contains(user) {
            return Ok(true);
        }
        if !is_valid_name(user) {
            return Ok(false);
        }
        // 5.6: an erased account's id stays taken but names nobody.
        let found = self
            .store
            .get_user(user)
            .await?
            .is_some_and(|r| !r.is_erased());
        if found {
            self.known_users.insert(user.to_owned());
        }
        Ok(found)
    }

    /// `(user, name, online)`.
    pub async fn user_info(&self, user: &str) -> CoreResult<(String, String, bool)> {
        let rec = if is_valid_name(user) {
            self.store.get_user(user).await?
        } else {
            None
        };
        let rec = rec
            .filter(|r| !r.is_erased())
            .ok_or_else(|| CoreError::new(ErrorCode::NoSuchUser, "no such user"))?;
        let online = self.online(&[user]).await.first().copied().unwrap_or(false);
        Ok((rec.user, rec.name, online))
    }
}
