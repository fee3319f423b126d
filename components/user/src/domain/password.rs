//! Passwords: length rules and Argon2id hashing in PHC strings.
//!
//! Parameters are OWASP's current minimum for Argon2id (m = 19 MiB, t = 2, p = 1). They are
//! stored in each PHC string, so they can be raised later: [`verify`] reports hashes made with
//! weaker parameters, and the login handler re-hashes them with the current ones.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const M_COST_KIB: u32 = 19 * 1024;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;

/// Contract: passwords are 10 to 128 characters.
pub const MIN_CHARS: usize = 10;
pub const MAX_CHARS: usize = 128;

/// A hash made with the current parameters of a password nobody knows, verified when a login
/// names an unknown email so that the answer takes as long as for a wrong password.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$bWFya2V0cGxhY2UtZHVtbXk$wjK0Tg2PNrEEgNg9dtA/BIzuIWPX5LVXDVrOmvKkFak";

/// A password that satisfies the length rules. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// Characters are Unicode scalar values; nothing is trimmed (spaces are legitimate).
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let n = raw.chars().count();
        if n < MIN_CHARS {
            Err("must be at least 10 characters")
        } else if n > MAX_CHARS {
            Err("must be at most 128 characters")
        } else {
            Ok(Self(raw.to_string()))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Why hashing failed: only a broken random source or parameters, never the input.
#[derive(Debug)]
pub struct HashError(pub String);

fn current_hasher() -> Argon2<'static> {
    // The constants are valid Argon2 parameters; `Params::new` cannot refuse them.
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with Argon2id, the current parameters and a fresh 16-byte random salt.
pub fn hash(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| HashError(format!("random source: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    current_hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// It matches; `rehash` is true when the stored hash uses weaker parameters than today's.
    Match {
        rehash: bool,
    },
    Mismatch,
}

/// Checks `password` against a PHC string, using the parameters stored in it. The comparison
/// of the computed and stored outputs is constant-time (password-hash's `Output` equality).
/// A stored string that cannot be parsed counts as a mismatch.
pub fn verify(phc: &str, password: &str) -> PasswordCheck {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return PasswordCheck::Mismatch;
    };
    // Argon2::default() only supplies the algorithm family: the hash's own algorithm,
    // version and parameters are used for verification.
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => PasswordCheck::Match {
            rehash: needs_rehash(&parsed),
        },
        Err(_) => PasswordCheck::Mismatch,
    }
}

/// True when `hash` is not Argon2id v1.3 with at least the current parameters.
fn needs_rehash(hash: &PasswordHash<'_>) -> bool {
    if hash.algorithm != argon2::ARGON2ID_IDENT || hash.version != Some(Version::V0x13.into()) {
        return true;
    }
    match Params::try_from(hash) {
        Ok(p) => p.m_cost() < M_COST_KIB || p.t_cost() < T_COST || p.p_cost() < P_COST,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_must_be_10_to_128_characters() {
        assert!(Password::parse("123456789").is_err());
        assert!(Password::parse("1234567890").is_ok());
        assert!(Password::parse(&"é".repeat(128)).is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        let secret = Password::parse("secret-password").unwrap();
        assert_eq!(format!("{secret:?}"), "Password(<redacted>)");
    }

    #[test]
    fn hashes_are_argon2id_phc_strings_with_owasp_parameters_and_a_random_salt() {
        let pw = "correct horse battery";
        let (a, b) = (hash(pw).unwrap(), hash(pw).unwrap());
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert_eq!(verify(&a, pw), PasswordCheck::Match { rehash: false });
        assert_eq!(verify(&a, "correct horse batterY"), PasswordCheck::Mismatch);
    }

    #[test]
    fn hashes_with_weaker_parameters_verify_and_ask_for_a_rehash() {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let weak_costs = (Algorithm::Argon2id, 8 * 1024, 1);
        for (algorithm, m_cost, t_cost) in [weak_costs, (Algorithm::Argon2i, M_COST_KIB, T_COST)] {
            let params = Params::new(m_cost, t_cost, P_COST, None).unwrap();
            let phc = Argon2::new(algorithm, Version::V0x13, params)
                .hash_password(b"old password 1", &salt)
                .unwrap()
                .to_string();
            let check = verify(&phc, "old password 1");
            assert_eq!(check, PasswordCheck::Match { rehash: true }, "{algorithm}");
        }
    }

    #[test]
    fn the_dummy_hash_uses_current_parameters_and_garbage_never_matches() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert!(!needs_rehash(&parsed));
        for phc in [DUMMY_HASH, "not a phc string", ""] {
            assert_eq!(verify(phc, "anything"), PasswordCheck::Mismatch, "{phc}");
        }
    }
}
