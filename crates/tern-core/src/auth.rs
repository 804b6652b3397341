//! Passwords (argon2id) and session tokens (JWT, HS256).
//!
//! Tokens are signed with the newest of a set of keys and name it in
//! their header (`kid`); each key verifies the tokens that name it, the
//! oldest also those that name none (issued before tokens carried a
//! `kid`). The keys are either one fixed key (`auth.secret`, kid
//! [`FIXED_KID`]) or those the store keeps: then they are read again
//! every so often ([`Auth::refresh_every`]) and, at most once per
//! [`RELOAD_GAP`], when a token names a kid this node does not know yet
//! (a key another node or an admin command just added).

use crate::hashpool::{HashPool, PoolError, WorkMemory};
use crate::store::{SigningKey, Store, StoreResult};
use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use jsonwebtoken::{decode, decode_header, encode, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

/// The `kid` of tokens signed with a fixed key (`auth.secret`).
pub const FIXED_KID: &str = "config";

/// The shortest time between two reloads of the keys for tokens naming an
/// unknown kid: such tokens cost at most one store read per this time.
pub const RELOAD_GAP: Duration = Duration::from_secs(1);

/// The keys of one moment.
struct KeySet {
    /// The newest key, which signs.
    kid: String,
    enc: EncodingKey,
    /// Every key, by kid.
    dec: HashMap<String, DecodingKey>,
    /// The oldest key: it verifies tokens that name no kid.
    legacy: DecodingKey,
}

impl KeySet {
    /// `None` when there is no key.
    fn new(keys: &[SigningKey]) -> Option<KeySet> {
        let oldest = keys
            .iter()
            .min_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)))?;
        let newest = keys
            .iter()
            .max_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)))?;
        Some(KeySet {
            kid: newest.kid.clone(),
            enc: EncodingKey::from_secret(&newest.secret),
            dec: keys
                .iter()
                .map(|k| (k.kid.clone(), DecodingKey::from_secret(&k.secret)))
                .collect(),
            legacy: DecodingKey::from_secret(&oldest.secret),
        })
    }
}

/// The key set every clone of an [`Auth`] shares.
struct Keys {
    set: RwLock<Arc<KeySet>>,
    /// Where the keys are kept; `None` for a fixed key.
    store: Option<Arc<dyn Store>>,
    /// When the keys were last read for a token naming an unknown kid.
    reloaded: tokio::sync::Mutex<Option<Instant>>,
}

impl Keys {
    fn current(&self) -> Arc<KeySet> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the keys from the store and uses them from now on; the number
    /// of keys (an empty answer changes nothing).
    async fn reload(&self) -> StoreResult<usize> {
        let Some(store) = &self.store else {
            return Ok(1);
        };
        let keys = store.signing_keys().await?;
        if let Some(set) = KeySet::new(&keys) {
            *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        }
        Ok(keys.len())
    }
}

/// Why a token was refused.
enum Refused {
    /// It names a kid this node does not know.
    UnknownKid,
    /// Anything else: bad signature, expired, malformed.
    Invalid,
}

#[derive(Clone)]
pub struct Auth {
    argon: Argon2<'static>,
    keys: Arc<Keys>,
    validation: Validation,
    ttl_ms: i64,
    /// A hash made with this Auth's parameters, for logins of unknown users.
    dummy: std::sync::Arc<std::sync::OnceLock<String>>,
    /// Where hashes run: a few at once, with reused work memory.
    pool: std::sync::Arc<HashPool>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    /// Seconds since the epoch (JWT convention).
    exp: u64,
    iat: u64,
    /// The token's own id (128 random bits, 32 hex digits): what a
    /// revocation names.
    jti: String,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// The token's id (its `jti` claim).
    pub id: u128,
    /// When the token expires (ms since the epoch).
    pub expires_at: i64,
    /// When it was issued (ms since the epoch, whole seconds).
    pub issued_at: i64,
}

impl Session {
    /// The token id as it appears in the token and in the store.
    pub fn id_text(&self) -> String {
        format!("{:032x}", self.id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid argon2 parameters")]
    Params(#[source] argon2::Error),
    #[error("password hashing failed")]
    Hash(#[source] argon2::password_hash::Error),
    #[error("token signing failed")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("no token signing key")]
    NoKeys,
}

impl Auth {
    /// Signs and verifies with one fixed key (kid [`FIXED_KID`]).
    pub fn new(
        secret: &[u8],
        ttl_secs: u64,
        m_cost_kib: u32,
        t_cost: u32,
    ) -> Result<Auth, AuthError> {
        let params = Params::new(m_cost_kib, t_cost, 1, None).map_err(AuthError::Params)?;
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Auth {
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            keys: Arc::new(Keys {
                set: RwLock::new(Arc::new(KeySet {
                    kid: FIXED_KID.to_owned(),
                    enc: EncodingKey::from_secret(secret),
                    dec: HashMap::from([(FIXED_KID.to_owned(), DecodingKey::from_secret(secret))]),
                    legacy: DecodingKey::from_secret(secret),
                })),
                store: None,
                reloaded: Default::default(),
            }),
            validation,
            ttl_ms: i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            dummy: Default::default(),
            pool: std::sync::Arc::new(HashPool::new(0, 128)),
        })
    }

    /// Signs with the newest of `keys` (as [`Store::signing_keys`] lists
    /// them) and verifies with each. With `store`, where they are kept,
    /// reads them again when told to ([`reload_keys`](Auth::reload_keys),
    /// [`refresh_every`](Auth::refresh_every)) and when a token names an
    /// unknown kid. `NoKeys` when `keys` is empty.
    pub fn with_keys(
        mut self,
        keys: &[SigningKey],
        store: Option<Arc<dyn Store>>,
    ) -> Result<Auth, AuthError> {
        let set = KeySet::new(keys).ok_or(AuthError::NoKeys)?;
        self.keys = Arc::new(Keys {
            set: RwLock::new(Arc::new(set)),
            store,
            reloaded: Default::default(),
        });
        Ok(self)
    }

    /// The kid new tokens carry.
    pub fn signing_kid(&self) -> String {
        self.keys.current().kid.clone()
    }

    /// Reads the keys from the store again (nothing for a fixed key);
    /// returns how many there are.
    pub async fn reload_keys(&self) -> StoreResult<usize> {
        self.keys.reload().await
    }

    /// Reloads the stored keys every `period` (so that a key added by
    /// `tern secret rotate` signs here too), for as long as any clone of
    /// this `Auth` lives. Nothing for a fixed key. Call within a tokio
    /// runtime.
    pub fn refresh_every(&self, period: Duration) {
        if self.keys.store.is_none() {
            return;
        }
        let keys: Weak<Keys> = Arc::downgrade(&self.keys);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(keys) = keys.upgrade() else { return };
                match keys.reload().await {
                    Ok(n) => tracing::trace!(keys = n, "signing keys reloaded"),
                    Err(e) => tracing::warn!(error = %e, "reloading the signing keys failed"),
                }
            }
        });
    }

    /// Runs hashes on a pool of `workers` (0: one per core) with `queue`
    /// more waiting; beyond that [`hash`](Auth::hash) and
    /// [`check`](Auth::check) refuse at once.
    pub fn with_hash_pool(mut self, workers: usize, queue: usize) -> Auth {
        self.pool = std::sync::Arc::new(HashPool::new(workers, queue));
        self
    }

    pub fn hash_pool(&self) -> &HashPool {
        &self.pool
    }

    /// Hashes a new password on the pool.
    pub async fn hash(&self, password: &str) -> Result<String, PoolError> {
        let me = self.clone();
        let pw = password.to_owned();
        self.pool
            .run(move |mem| me.hash_password_with(&pw, mem))
            .await?
            .map_err(|e| {
                tracing::error!(error = %e, "password hashing failed");
                PoolError::Failed
            })
    }

    /// Checks a password against a stored hash on the pool; `None` (no
    /// such user) costs the same as a real check and answers false, so the
    /// time of the answer does not tell whether the user exists.
    pub async fn check(&self, password: &str, phc: Option<String>) -> Result<bool, PoolError> {
        let me = self.clone();
        let pw = password.to_owned();
        self.pool
            .run(move |mem| match phc {
                Some(phc) => me.verify_password_with(&pw, &phc, mem),
                None => {
                    me.verify_nobody_with(&pw, mem);
                    false
                }
            })
            .await
    }

    /// CPU-heavy: call from a blocking thread (or use [`hash`](Auth::hash)).
    pub fn hash_password(&self, password: &str) -> Result<String, AuthError> {
        self.hash_password_with(password, &mut Vec::new())
    }

    /// Hashes with `mem` as argon2's work memory (grown to the parameters'
    /// size if smaller, and kept for the next hash).
    pub fn hash_password_with(
        &self,
        password: &str,
        mem: &mut WorkMemory,
    ) -> Result<String, AuthError> {
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_raw = salt
            .as_salt()
            .decode_b64(&mut salt_bytes)
            .map_err(AuthError::Hash)?;
        let params = self.argon.params();
        let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let out = run_argon(&self.argon, password.as_bytes(), salt_raw, len, mem)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(params).map_err(AuthError::Hash)?,
            salt: Some(salt.as_salt()),
            hash: Some(out),
        };
        Ok(phc.to_string())
    }

    /// CPU-heavy: call from a blocking thread. A malformed stored hash
    /// verifies as false.
    pub fn verify_password(&self, password: &str, phc: &str) -> bool {
        self.verify_password_with(password, phc, &mut Vec::new())
    }

    /// Verifies with `mem` as work memory. The stored hash's own
    /// parameters apply (a hash made with other settings still verifies);
    /// memory larger than this Auth's own cost is taken for this check only.
    pub fn verify_password_with(&self, password: &str, phc: &str, mem: &mut WorkMemory) -> bool {
        let Ok(h) = PasswordHash::new(phc) else {
            return false;
        };
        let (Ok(alg), Ok(params), Some(salt), Some(expected)) = (
            Algorithm::try_from(h.algorithm),
            Params::try_from(&h),
            h.salt,
            h.hash,
        ) else {
            return false;
        };
        let version = match h.version.map(Version::try_from) {
            None => Version::default(),
            Some(Ok(v)) => v,
            Some(Err(_)) => return false,
        };
        let mut salt_bytes = [0u8; 64];
        let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
            return false;
        };
        let argon = Argon2::new(alg, version, params);
        let own = self.argon.params().block_count();
        let got = if argon.params().block_count() > own.max(mem.len()) {
            run_argon(
                &argon,
                password.as_bytes(),
                salt_raw,
                expected.len(),
                &mut Vec::new(),
            )
        } else {
            run_argon(&argon, password.as_bytes(), salt_raw, expected.len(), mem)
        };
        // `Output` compares in constant time.
        got.is_ok_and(|out| out == expected)
    }

    /// Costs what [`verify_password`](Auth::verify_password) costs, for a
    /// user that does not exist: a login then takes the same time whether
    /// the user exists or not. CPU-heavy: call from a blocking thread.
    pub fn verify_nobody(&self, password: &str) {
        self.verify_nobody_with(password, &mut Vec::new())
    }

    fn verify_nobody_with(&self, password: &str, mem: &mut WorkMemory) {
        let phc = self.dummy.get_or_init(|| {
            self.hash_password_with("no such user: a dummy password", mem)
                .unwrap_or_default()
        });
        let _ = self.verify_password_with(password, phc, mem);
    }

    /// Issues a token for `user`; returns it with its expiry (ms).
    pub fn issue(&self, user: &str, now_ms: i64) -> Result<(String, i64), AuthError> {
        let expires_at = now_ms.saturating_add(self.ttl_ms);
        let claims = Claims {
            sub: user.to_owned(),
            exp: (expires_at / 1000).max(0) as u64,
            iat: (now_ms / 1000).max(0) as u64,
            jti: format!("{:032x}", rand::random::<u128>()),
        };
        let set = self.keys.current();
        let header = Header {
            kid: Some(set.kid.clone()),
            ..Header::default()
        };
        let token = encode(&header, &claims, &set.enc).map_err(AuthError::Sign)?;
        Ok((token, (expires_at / 1000) * 1000))
    }

    /// The session of a valid, unexpired token (revocation is the
    /// caller's check), with the keys this node holds now. A token without
    /// a well-formed `jti` is not valid.
    pub fn verify(&self, token: &str) -> Option<Session> {
        self.check_token(token).ok()
    }

    /// [`verify`](Auth::verify), first reading the stored keys again when
    /// the token names a kid this node does not know (at most once per
    /// [`RELOAD_GAP`] for all such tokens; callers meanwhile wait for the
    /// reload under way and then try the keys it found).
    pub async fn verify_fresh(&self, token: &str) -> Option<Session> {
        match self.check_token(token) {
            Ok(s) => return Some(s),
            Err(Refused::Invalid) => return None,
            Err(Refused::UnknownKid) if self.keys.store.is_none() => return None,
            Err(Refused::UnknownKid) => {}
        }
        {
            let mut last = self.keys.reloaded.lock().await;
            if !last.is_some_and(|t| t.elapsed() < RELOAD_GAP) {
                *last = Some(Instant::now());
                match self.keys.reload().await {
                    Ok(n) => tracing::debug!(keys = n, "signing keys reloaded for an unknown kid"),
                    Err(e) => tracing::warn!(error = %e, "reloading the signing keys failed"),
                }
            }
        }
        self.check_token(token).ok()
    }

    fn check_token(&self, token: &str) -> Result<Session, Refused> {
        let header = decode_header(token).map_err(|_| Refused::Invalid)?;
        let set = self.keys.current();
        let key = match &header.kid {
            Some(kid) => set.dec.get(kid).ok_or(Refused::UnknownKid)?,
            None => &set.legacy,
        };
        let c = decode::<Claims>(token, key, &self.validation)
            .map_err(|_| Refused::Invalid)?
            .claims;
        self.session_of(c).ok_or(Refused::Invalid)
    }

    fn session_of(&self, c: Claims) -> Option<Session> {
        if c.jti.len() != 32 {
            return None;
        }
        let expires_at = i64::try_from(c.exp.saturating_mul(1000)).unwrap_or(i64::MAX);
        // Expired from the first millisecond of second `exp` on, the
        // moment its sockets close (the JWT check alone allows all of it).
        if expires_at <= crate::now_ms() {
            return None;
        }
        Some(Session {
            id: u128::from_str_radix(&c.jti, 16).ok()?,
            user: c.sub,
            expires_at,
            issued_at: i64::try_from(c.iat.saturating_mul(1000)).unwrap_or(i64::MAX),
        })
    }
}

/// One argon2 run into an output of `len` bytes, with `mem` (grown to the
/// parameters' block count if smaller) as its work memory.
fn run_argon(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    len: usize,
    mem: &mut WorkMemory,
) -> Result<Output, AuthError> {
    let blocks = argon.params().block_count();
    if mem.len() < blocks {
        mem.resize(blocks, Block::default());
    }
    Output::init_with(len, |out| {
        argon
            .hash_password_into_with_memory(password, salt, out, &mut mem[..])
            .map_err(argon2::password_hash::Error::from)
    })
    .map_err(AuthError::Hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_and_token_roundtrip() {
        let a = Auth::new(b"secret-secret-secret-secret-0123", 60, 8, 1).unwrap();
        let h = a.hash_password("password123").unwrap();
        assert!(a.verify_password("password123", &h));
        assert!(!a.verify_password("password124", &h));
        assert!(!a.verify_password("x", "not-a-hash"));
        let now = crate::now_ms();
        let (t, exp) = a.issue("alice", now).unwrap();
        assert!(exp > now);
        let session = a.verify(&t).unwrap();
        assert_eq!(session.user, "alice");
        assert_eq!(session.expires_at, exp);
        // Every token has its own id.
        let (t2, _) = a.issue("alice", now).unwrap();
        assert_ne!(a.verify(&t2).unwrap().id, session.id);
        assert_eq!(a.verify("garbage"), None);
        let other = Auth::new(b"another-secret-another-secret-01", 60, 8, 1).unwrap();
        assert_eq!(other.verify(&t), None);
        let (old, _) = a.issue("alice", now - 120_000).unwrap();
        assert_eq!(a.verify(&old), None, "expired token accepted");
    }

    fn key(kid: &str, secret: &str, created_at: i64) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            secret: secret.as_bytes().to_vec(),
            created_at,
        }
    }

    fn kid_of(token: &str) -> Option<String> {
        decode_header(token).unwrap().kid
    }

    const OLD: &str = "old-secret-old-secret-old-secret-0123";
    const NEW: &str = "new-secret-new-secret-new-secret-0123";

    /// After a rotation the newest key signs and names itself; a token of
    /// the older key still verifies, by its kid.
    #[test]
    fn signs_with_newest_key_and_verifies_older_kids() {
        let base = Auth::new(b"unused-unused-unused-unused-unused", 60, 8, 1).unwrap();
        let before = base.clone().with_keys(&[key("1", OLD, 10)], None).unwrap();
        let (old_token, _) = before.issue("alice", crate::now_ms()).unwrap();
        assert_eq!(kid_of(&old_token).as_deref(), Some("1"));
        let after = base
            .with_keys(&[key("1", OLD, 10), key("2", NEW, 20)], None)
            .unwrap();
        assert_eq!(after.signing_kid(), "2");
        let (new_token, _) = after.issue("bob", crate::now_ms()).unwrap();
        assert_eq!(kid_of(&new_token).as_deref(), Some("2"));
        assert_eq!(after.verify(&new_token).unwrap().user, "bob");
        assert_eq!(after.verify(&old_token).unwrap().user, "alice");
        // The node that knows only the old key does not know kid 2.
        assert_eq!(before.verify(&new_token), None);
        // An empty key list is refused.
        assert!(matches!(
            Auth::new(b"unused-unused-unused-unused-unused", 60, 8, 1)
                .unwrap()
                .with_keys(&[], None),
            Err(AuthError::NoKeys)
        ));
    }

    /// A token naming a kid no key has is refused, even when it is signed
    /// with a known secret; one naming a known kid but signed with another
    /// secret too.
    #[tokio::test]
    async fn unknown_kid_is_refused() {
        let a = Auth::new(b"unused-unused-unused-unused-unused", 60, 8, 1)
            .unwrap()
            .with_keys(&[key("1", OLD, 10)], None)
            .unwrap();
        let now = crate::now_ms();
        let claims = Claims {
            sub: "alice".into(),
            exp: (now / 1000 + 60) as u64,
            iat: (now / 1000) as u64,
            jti: format!("{:032x}", 7u128),
        };
        let with_kid = |kid: &str, secret: &str| {
            let header = Header {
                kid: Some(kid.into()),
                ..Header::default()
            };
            encode(
                &header,
                &claims,
                &EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap()
        };
        assert_eq!(a.verify(&with_kid("1", OLD)).unwrap().user, "alice");
        assert_eq!(a.verify(&with_kid("9", OLD)), None);
        assert_eq!(a.verify_fresh(&with_kid("9", OLD)).await, None);
        assert_eq!(a.verify(&with_kid("1", NEW)), None);
    }

    /// A token issued before tokens carried a kid (no `kid` in its header)
    /// verifies with the oldest key, the secret of before, and with no
    /// other.
    #[test]
    fn token_without_kid_verifies_with_the_oldest_key() {
        let now = crate::now_ms();
        let claims = Claims {
            sub: "carol".into(),
            exp: (now / 1000 + 60) as u64,
            iat: (now / 1000) as u64,
            jti: format!("{:032x}", 8u128),
        };
        let legacy = |secret: &str| {
            encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap()
        };
        assert_eq!(kid_of(&legacy(OLD)), None);
        let a = Auth::new(b"unused-unused-unused-unused-unused", 60, 8, 1)
            .unwrap()
            .with_keys(&[key("2", NEW, 20), key("1", OLD, 10)], None)
            .unwrap();
        assert_eq!(a.verify(&legacy(OLD)).unwrap().user, "carol");
        assert_eq!(a.verify(&legacy(NEW)), None);
        // A fixed key verifies its own tokens of before and names itself.
        let fixed = Auth::new(OLD.as_bytes(), 60, 8, 1).unwrap();
        assert_eq!(fixed.verify(&legacy(OLD)).unwrap().user, "carol");
        let (t, _) = fixed.issue("dan", now).unwrap();
        assert_eq!(kid_of(&t).as_deref(), Some(FIXED_KID));
    }

    /// Hashes made with reused work memory are standard PHC strings: the
    /// argon2 crate's own verifier takes them, and ours takes its hashes,
    /// with the same buffer serving hash after hash.
    #[test]
    fn reused_memory_hashes_are_standard() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let a = Auth::new(b"secret-secret-secret-secret-0123", 60, 64, 2).unwrap();
        let mut mem = Vec::new();
        let h = a.hash_password_with("password123", &mut mem).unwrap();
        assert_eq!(mem.len(), 64, "one block per KiB");
        assert!(h.starts_with("$argon2id$v=19$m=64,t=2,p=1$"), "{h}");
        let std = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 2, 1, None).unwrap(),
        );
        assert!(std
            .verify_password(b"password123", &PasswordHash::new(&h).unwrap())
            .is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = std.hash_password(b"hunter42!", &salt).unwrap().to_string();
        assert!(a.verify_password_with("hunter42!", &theirs, &mut mem));
        assert!(!a.verify_password_with("hunter43!", &theirs, &mut mem));
        // A stored hash with a larger memory cost still verifies.
        let big = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(256, 1, 1, None).unwrap(),
        );
        let bigger = big.hash_password(b"hunter42!", &salt).unwrap().to_string();
        assert!(a.verify_password_with("hunter42!", &bigger, &mut mem));
        assert_eq!(mem.len(), 64, "a larger stored cost is not kept");
        assert!(!a.verify_password_with("hunter42!", "$argon2id$garbage", &mut mem));
    }

    #[tokio::test]
    async fn pooled_hash_and_check() {
        let a = Auth::new(b"secret-secret-secret-secret-0123", 60, 64, 1)
            .unwrap()
            .with_hash_pool(1, 0);
        let h = a.hash("password123").await.unwrap();
        assert_eq!(a.check("password123", Some(h.clone())).await, Ok(true));
        assert_eq!(a.check("password124", Some(h)).await, Ok(false));
        assert_eq!(a.check("password123", None).await, Ok(false));
        assert_eq!(a.hash_pool().in_use(), 0);
    }
}
