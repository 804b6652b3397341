//! Passwords (argon2id) and session tokens (JWT, HS256).

use crate::hashpool::{HashPool, PoolError, WorkMemory};
use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use jsonwebtoken::{decode, encode, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Clone)]
pub struct Auth {
    argon: Argon2<'static>,
    enc: EncodingKey,
    dec: DecodingKey,
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
}

impl Auth {
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
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
            validation,
            ttl_ms: i64::try_from(ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            dummy: Default::default(),
            pool: std::sync::Arc::new(HashPool::new(0, 128)),
        })
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
        let token = encode(&Header::default(), &claims, &self.enc).map_err(AuthError::Sign)?;
        Ok((token, (expires_at / 1000) * 1000))
    }

    /// The session of a valid, unexpired token (revocation is the
    /// caller's check). A token without a well-formed `jti` is not valid.
    pub fn verify(&self, token: &str) -> Option<Session> {
        let c = decode::<Claims>(token, &self.dec, &self.validation)
            .ok()?
            .claims;
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
