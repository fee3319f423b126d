//! Refresh-token material: 256 random bits, shown once to the client, stored only as SHA-256.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Longest refresh-token string accepted in a body before it is even hashed (ours are 43).
pub const MAX_TOKEN_CHARS: usize = 256;

/// A fresh refresh token: its text (for the client) and its hash (for the database).
pub struct NewRefreshToken {
    pub token: String,
    pub hash: Vec<u8>,
}

impl std::fmt::Debug for NewRefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewRefreshToken(<redacted>)")
    }
}

/// 32 bytes from the OS random source, base64url without padding.
pub fn generate() -> Result<NewRefreshToken, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash(&token);
    Ok(NewRefreshToken { token, hash })
}

/// The stored form of a refresh token. A plain SHA-256 suffices: the input has 256 bits of
/// entropy, so there is nothing to brute-force, and lookups by hash need no comparison in
/// application code (the database matches the exact digest).
pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_256_random_bits_and_are_stored_hashed() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&a.token).unwrap().len(), 32);
        assert_ne!(a.token, b.token);
        assert_eq!(a.hash, hash(&a.token));
        assert_eq!(a.hash.len(), 32);
        assert_ne!(a.hash, a.token.as_bytes());
        assert!(!format!("{a:?}").contains(&a.token));
    }
}
