//! The session cookie: an opaque random id, `HttpOnly; SameSite=Lax; Path=/`, and `Secure`
//! when the request came over https. The id names a server-side record (under its SHA-256,
//! so the store never holds a usable cookie value).

use sha2::{Digest as _, Sha256};

/// Name of the session cookie.
pub const NAME: &str = "mp_session";

/// A session id: 32 random bytes (256 bits) in base64url, 43 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        use base64::Engine as _;
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts only what [`SessionId::from_bytes`] produces: anything else is no session.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = raw.len() == 43
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key-value key of this session's records: hex SHA-256 of the id.
    pub fn storage_key(&self) -> String {
        super::hex(&Sha256::digest(self.0.as_bytes()))
    }
}

/// Whether the browser reached us over https: Spin's `spin-full-url` says so directly; behind
/// the ingress (which terminates TLS) `X-Forwarded-Proto` does.
pub fn is_https(full_url: Option<&str>, forwarded_proto: Option<&str>) -> bool {
    full_url.is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
        || forwarded_proto.is_some_and(|p| {
            p.split(',')
                .next()
                .is_some_and(|first| first.trim().eq_ignore_ascii_case("https"))
        })
}

/// The `Set-Cookie` value that gives the browser its session.
pub fn set(id: &SessionId, secure: bool, max_age_secs: i64) -> String {
    let mut c = format!(
        "{NAME}={}; Max-Age={max_age_secs}; Path=/; HttpOnly; SameSite=Lax",
        id.as_str()
    );
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub fn clear(secure: bool) -> String {
    let mut c = format!("{NAME}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        c.push_str("; Secure");
    }
    c
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
        let c = set(&id, false, 3600);
        assert_eq!(
            c,
            format!(
                "mp_session={}; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax",
                id.as_str()
            )
        );
        assert!(set(&id, true, 3600).ends_with("; Secure"));
        assert!(clear(true).starts_with("mp_session=; Max-Age=0; Path=/; HttpOnly"));
    }

    #[test]
    fn session_ids_carry_256_random_bits_and_nothing_else_parses() {
        let id = SessionId::from_bytes([0xab; 32]);
        assert_eq!(id.as_str().len(), 43);
        assert_eq!(SessionId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(SessionId::parse("short"), None);
        assert_eq!(SessionId::parse(&"a".repeat(42)), None);
        assert_eq!(SessionId::parse(&format!("{}=", &id.as_str()[..42])), None);
        assert_ne!(id.storage_key(), id.as_str());
        assert_eq!(id.storage_key().len(), 64);
    }

    #[test]
    fn the_session_is_read_among_other_cookies() {
        let id = SessionId::from_bytes([2; 32]);
        let header = format!("theme=dark; mp_session={}; other=1", id.as_str());
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
