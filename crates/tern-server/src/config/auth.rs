//! The `[auth]` section: the token secret and lifetime, the argon2id
//! cost, and the floors they are held to.

use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Token signing secret: the only key, named `config` in tokens.
    /// Empty: the signing keys kept in the store.
    pub secret: String,
    /// Lifetime of a session token.
    pub token_ttl_secs: u64,
    /// argon2id memory cost in KiB (OWASP: 19456).
    pub argon2_m_cost_kib: u32,
    /// argon2id iterations (OWASP: 2).
    pub argon2_t_cost: u32,
    /// Test suites only: lets the argon2 parameters go below the floor
    /// ([`ARGON2_MIN_M_COST_KIB`], [`ARGON2_MIN_T_COST`]) so that tests
    /// registering thousands of users stay fast. No configuration file or
    /// `TERN_*` variable can set it: in-process tests set the field, and
    /// `tern serve` sets it only when [`WEAK_HASHING_ENV`] is `1`, with a
    /// loud warning.
    #[serde(skip)]
    pub weak_hashing_for_tests: bool,
}

/// The shortest accepted `auth.secret` (HS256 wants at least the hash
/// size).
pub const SECRET_MIN_BYTES: usize = 32;
/// The longest token lifetime (366 days): `auth.token_ttl_secs` and
/// `tern token --ttl`.
pub const TOKEN_TTL_MAX_SECS: u64 = 366 * 24 * 3600;
/// The argon2id floor: OWASP's minimum configuration (19 MiB, 2 passes).
pub const ARGON2_MIN_M_COST_KIB: u32 = 19456;
pub const ARGON2_MIN_T_COST: u32 = 2;
/// Set to `1`, lets `tern serve` run with argon2 parameters below the
/// floor (the binary's own test suites and bench scripts). Not a `TERN_*`
/// variable on purpose: no deployment setting reaches it by accident.
pub const WEAK_HASHING_ENV: &str = "INSECURE_TERN_TEST_WEAK_HASHING";

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "secret",
                &if self.secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("argon2_m_cost_kib", &self.argon2_m_cost_kib)
            .field("argon2_t_cost", &self.argon2_t_cost)
            .field("weak_hashing_for_tests", &self.weak_hashing_for_tests)
            .finish()
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            secret: String::new(),
            token_ttl_secs: 7 * 24 * 3600,
            argon2_m_cost_kib: ARGON2_MIN_M_COST_KIB,
            argon2_t_cost: ARGON2_MIN_T_COST,
            weak_hashing_for_tests: false,
        }
    }
}
