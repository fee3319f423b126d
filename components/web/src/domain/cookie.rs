//! The session cookie: an opaque random id, `HttpOnly; SameSite=Lax; Path=/` (`Secure` over
//! https), naming a record stored under its SHA-256 (the store holds no usable cookie value).

use sha2::{Digest as _, Sha256};

pub const NAME: &str = "mp_session";

/// A session id: 32 random bytes (256 bits) in base64url, 43 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(super::csrf::token_from(bytes))
    }

    /// Accepts only what [`SessionId::from_bytes`] produces: anything else is no session.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 43 && super::url_safe(raw)).then(|| Self(raw.to_string()))
    }

    /// The key-value key of this session's records: hex SHA-256 of the id.
    pub fn storage_key(&self) -> String {
        format!("{:x}", Sha256::digest(self.0.as_bytes()))
    }
}

/// Whether the browser reached us over https: Spin's `spin-full-url` says so directly; behind
/// the ingress (which terminates TLS) `X-Forwarded-Proto` does.
pub fn is_https(full_url: Option<&str>, forwarded_proto: Option<&str>) -> bool {
    full_url.is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
        || forwarded_proto
            .and_then(|p| p.split(',').next())
            .is_some_and(|first| first.trim().eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value that gives the browser its session.
pub fn set(id: &SessionId, secure: bool, max_age_secs: i64) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{NAME}={}; Max-Age={max_age_secs}; Path=/; HttpOnly; SameSite=Lax{secure}",
        id.0
    )
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub fn clear(secure: bool) -> String {
    set(&SessionId(String::new()), secure, 0)
}

/// The session id in a `Cookie` header, if one is there and well-formed.
pub fn read(cookie_header: Option<&str>) -> Option<SessionId> {
    cookie_header?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == NAME)
        .find_map(|(_, value)| SessionId::parse(value.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_http_only_lax_and_site_wide() {
        let id = SessionId::from_bytes([1; 32]);
        let expected = format!(
            "mp_session={}; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax",
            id.0
        );
        assert_eq!(set(&id, false, 3600), expected);
        assert!(set(&id, true, 3600).ends_with("; Secure"));
        let cleared = "mp_session=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax; Secure";
        assert_eq!(clear(true), cleared);
    }

    #[test]
    fn session_ids_carry_256_random_bits_and_nothing_else_parses() {
        let id = SessionId::from_bytes([0xab; 32]);
        assert_eq!(id.0.len(), 43);
        assert_eq!(SessionId::parse(&id.0), Some(id.clone()));
        assert_eq!(SessionId::parse("short"), None);
        assert_eq!(SessionId::parse(&"a".repeat(42)), None);
        assert_eq!(SessionId::parse(&format!("{}=", &id.0[..42])), None);
        assert_ne!(id.storage_key(), id.0);
        assert_eq!(id.storage_key().len(), 64);
    }

    #[test]
    fn the_session_is_read_among_other_cookies() {
        let id = SessionId::from_bytes([2; 32]);
        let header = format!("theme=dark; mp_session={}; other=1", id.0);
        assert_eq!(read(Some(&header)), Some(id));
        assert_eq!(read(Some("mp_session=forged")), None);
        assert_eq!(read(None), None);
    }

    #[test]
    fn https_is_known_from_spin_or_from_the_ingress() {
        assert!(is_https(Some("https://shop.example/cart"), None));
        assert!(is_https(Some("http://10.0.0.1/cart"), Some("https")));
        assert!(is_https(None, Some("HTTPS, http")));
        assert!(!is_https(Some("http://127.0.0.1:3000/"), None));
        assert!(!is_https(None, Some("http")));
    }
}
