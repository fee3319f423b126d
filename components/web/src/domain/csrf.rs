//! CSRF tokens: one random token per session, carried by every state-changing form as the
//! hidden field `csrf`. A cross-site page cannot read it (same-origin policy), so it cannot
//! forge a post that passes [`check`]; SameSite=Lax on the cookie is a second guard.

use subtle::ConstantTimeEq as _;

pub const FIELD: &str = "csrf";

/// A new token from 32 random bytes (base64url, 43 characters; session ids are made alike).
pub fn token_from(bytes: [u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether the presented token is the session's, compared in constant time. A missing or
/// empty token never passes, not even against an empty expectation.
pub fn check(expected: &str, presented: Option<&str>) -> bool {
    // `ct_eq` of slices of different lengths is false.
    presented.is_some_and(|p| {
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(p.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sessions_own_token_passes() {
        let t = token_from([7; 32]);
        assert_eq!(t.len(), 43);
        assert!(check(&t, Some(&t.clone())));
        assert!(!check(&t, None));
        assert!(!check(&t, Some("")));
        assert!(!check(&t, Some(&token_from([8; 32]))));
        assert!(!check(&t, Some(&t[..42])));
        assert!(!check("", Some("")));
    }
}
