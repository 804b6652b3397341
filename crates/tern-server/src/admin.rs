//! What the admin commands (`tern user add`, `tern token`) do, on the
//! store and with the token secret the configuration names, while a
//! server may be running on them.
//!
//! The embedded SQLite store allows this: it runs in WAL mode with a busy
//! timeout, so a second process can read while the server writes, and its
//! few writes wait for the server's write transactions (which are short,
//! group-committed batches) instead of failing.

use crate::config::Config;
use anyhow::Context;
use std::sync::Arc;
use tern_core::auth::Auth;
use tern_core::store::Store;
use tern_core::CoreError;
use tern_proto::ids::is_valid_name;

/// The store and token signer of a configuration.
pub struct Admin {
    store: Arc<dyn Store>,
    secret: Vec<u8>,
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
    /// Validates `cfg` and opens its store and token secret (generating
    /// the secret, as `tern serve` would, if none exists yet).
    pub async fn open(cfg: Config) -> anyhow::Result<Admin> {
        cfg.validate()?;
        let store = crate::backends::open_store(&cfg).await?;
        let secret = crate::backends::token_secret(&cfg).await?;
        Ok(Admin { store, secret, cfg })
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
        tern_core::register_user(&*self.store, &auth, user, password, name).await
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
        let a = &self.cfg.auth;
        Auth::new(&self.secret, ttl_secs, a.argon2_m_cost_kib, a.argon2_t_cost).map_err(|e| {
            tracing::error!(error = %e, "auth settings");
            CoreError::unavailable()
        })
    }
}
