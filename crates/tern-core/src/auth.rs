//! Passwords (argon2id) and session tokens (JWT, HS256).

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
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
        })
    }

    /// CPU-heavy: call from a blocking thread.
    pub fn hash_password(&self, password: &str) -> Result<String, AuthError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(AuthError::Hash)
    }

    /// CPU-heavy: call from a blocking thread. A malformed stored hash
    /// verifies as false.
    pub fn verify_password(&self, password: &str, phc: &str) -> bool {
        PasswordHash::new(phc)
            .map(|h| self.argon.verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    }

    /// Costs what [`verify_password`](Auth::verify_password) costs, for a
    /// user that does not exist: a login then takes the same time whether
    /// the user exists or not. CPU-heavy: call from a blocking thread.
    pub fn verify_nobody(&self, password: &str) {
        let phc = self.dummy.get_or_init(|| {
            self.hash_password("no such user: a dummy password")
                .unwrap_or_default()
        });
        let _ = self.verify_password(password, phc);
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
}
