//! What the admin commands (`tern user add`, `tern token`, `tern secret
//! rotate`) do, on the store and with the token signing keys the
//! configuration names, while a server may be running on them.
//!
//! The embedded SQLite store allows this: it runs in WAL mode with a busy
//! timeout, so a second process can read while the server writes, and its
//! few writes wait for the server's write transactions (which are short,
//! group-committed batches) instead of failing.

use crate::backends::TokenKeys;
use crate::config::Config;
use anyhow::Context;
use std::sync::Arc;
use tern_core::auth::Auth;
use tern_core::store::{SigningKey, Store};
use tern_core::CoreError;
use tern_proto::ids::is_valid_name;

/// The store and token signer of a configuration.
pub struct Admin {
    store: Arc<dyn Store>,
    keys: TokenKeys,
    cfg: Config,
}

/// Refuses a configuration whose embedded store does not exist yet,
/// unless `create`: an admin command run from the wrong directory, or
/// with a mistyped `--data`, must not make an empty store and succeed.
pub fn check_store(cfg: &Config, create: bool) -> anyhow::Result<()> {
    if create || crate::backends::store_exists(cfg) {
        return Ok(());
    }
    anyhow::bail!(
        "no store in {} (give --data the server's data directory, or --create to make a new store)",
        cfg.data_dir.display()
    )
}

impl Admin {
    /// Validates `cfg` and opens its store and signing keys (storing the
    /// first key, as `tern serve` would, if there is none yet).
    pub async fn open(cfg: Config) -> anyhow::Result<Admin> {
        cfg.validate()?;
        let store = crate::backends::open_store(&cfg).await?;
        let keys = crate::backends::token_keys(&cfg, &*store).await?;
        Ok(Admin { store, keys, cfg })
    }

    /// Adds a new signing key and returns it: new tokens are signed with
    /// it from now on (by this command at once, by each server within a
    /// minute), tokens signed with older keys verify until they expire.
    /// Refused when `auth.secret` fixes the key.
    pub async fn rotate_secret(&self) -> anyhow::Result<SigningKey> {
        if let TokenKeys::Fixed(_) = self.keys {
            anyhow::bail!(
                "auth.secret is set: tokens are signed with it alone (change it on every \
                 node to replace it, or unset it to use keys kept in the store)"
            );
        }
        // Kids are numbers counting up; of two rotations at once, the
        // second to store takes the next number.
        for _ in 0..5 {
            let keys = self
                .store
                .signing_keys()
                .await
                .context("reading the signing keys")?;
            let next = keys
                .iter()
                .filter_map(|k| k.kid.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
                + 1;
            let newest = keys.iter().map(|k| k.created_at).max().unwrap_or(0);
            let key = SigningKey {
                kid: next.to_string(),
                secret: crate::backends::random_secret(),
                created_at: tern_core::now_ms().max(newest + 1),
            };
            if self
                .store
                .add_signing_key(&key)
                .await
                .context("storing the signing key")?
            {
                return Ok(key);
            }
        }
        anyhow::bail!("another rotation kept taking the next key id; try again")
    }

    /// Creates a user as `POST /v1/users` does (same rules, same argon2
    /// parameters).
    pub async fn add_user(
        &self,
        user: &str,
        password: &str,
        name: Option<&str>,
    ) -> Result<(), CoreError> {
        let auth = self.auth(self.cfg.auth.token_ttl_secs)?;
        tern_core::register_user(&*self.store, &auth, user, password, name).await?;
        self.user_created(user, name.unwrap_or(user), false).await;
        Ok(())
    }

    /// 5.6: creates a bot account (no password login; `token` mints its
    /// tokens).
    pub async fn add_bot(&self, user: &str, name: Option<&str>) -> Result<(), CoreError> {
        tern_core::register_bot(&*self.store, user, name).await?;
        self.user_created(user, name.unwrap_or(user), true).await;
        Ok(())
    }

    /// 5.6: the `user.created` event for the configured webhooks (a
    /// running server delivers it on its next poll).
    async fn user_created(&self, user: &str, name: &str, bot: bool) {
        use tern_core::integrations::{event_jobs, new_event_id, WebhookTarget};
        let targets: Vec<WebhookTarget> = self
            .cfg
            .webhooks
            .iter()
            .map(|w| WebhookTarget {
                url: w.url.clone(),
                events: w.events.clone(),
            })
            .collect();
        let jobs = event_jobs(
            &targets,
            "user.created",
            &new_event_id("user.created"),
            tern_core::now_ms(),
            serde_json::json!({"user": user, "name": name, "bot": bot}),
        );
        if let Err(e) = self.store.enqueue_jobs(&jobs).await {
            tracing::error!(error = %e, "user.created event not enqueued");
        }
    }

    /// A session token for an existing `user`, valid for `ttl_secs`
    /// (1 s to 366 days, as `auth.token_ttl_secs`), and its expiry (ms).
    pub async fn token(&self, user: &str, ttl_secs: u64) -> anyhow::Result<(String, i64)> {
        if ttl_secs == 0 || ttl_secs > crate::config::TOKEN_TTL_MAX_SECS {
            anyhow::bail!(
                "the token lifetime must be 1 to {} seconds (366 days)",
                crate::config::TOKEN_TTL_MAX_SECS
            );
        }
        if !is_valid_name(user) {
            anyhow::bail!("no such user: {user}");
        }
        let exists = self
            .store
            .get_user(user)
            .await
            .context("reading the user")?
            .is_some();
        if !exists {
            anyhow::bail!("no such user: {user}");
        }
        let auth = self.auth(ttl_secs)?;
        Ok(auth.issue(user, tern_core::now_ms())?)
    }

    fn auth(&self, ttl_secs: u64) -> Result<Auth, CoreError> {
        self.keys.auth(&self.cfg.auth, ttl_secs, None).map_err(|e| {
            tracing::error!(error = %e, "auth settings");
            CoreError::unavailable()
        })
    }
}
