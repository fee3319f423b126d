//! A session: what the storefront remembers for one browser, server-side.
//!
//! The browser holds only the session id (see [`super::cookie`]); the CSRF token, the
//! access and refresh tokens and the checkout forms in flight live here.

use serde::{Deserialize, Serialize};

use super::cart::CartLine;

/// A session lives at most this long after its last use…
pub const IDLE_SECS: i64 = 7 * 24 * 3600;
/// …and never longer than this from its start (a refresh token's 30 days).
pub const ABSOLUTE_SECS: i64 = 30 * 24 * 3600;
/// The access token is refreshed when it has less than this left.
pub const REFRESH_MARGIN_SECS: i64 = 60;
/// Checkout forms remembered (their idempotency keys and the items they were shown with).
pub const MAX_CHECKOUTS: usize = 5;

/// The signed-in user, as the user service described them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: String,
}

/// The tokens of a signed-in session (never sent to the browser).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedIn {
    pub user: User,
    pub access_token: String,
    /// Unix seconds.
    pub access_expires_at: i64,
    pub refresh_token: String,
}

/// One checkout form shown: its idempotency key and the cart lines it was shown with, so a
/// repeated submit sends the very same order body (and the order service replays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    pub key: String,
    pub items: Vec<CartLine>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
    pub signed_in: Option<SignedIn>,
    #[serde(default)]
    pub checkouts: Vec<Checkout>,
}

impl Session {
    pub fn new(csrf: String, now: i64) -> Self {
        Self {
            csrf,
            created_at: now,
            last_seen: now,
            signed_in: None,
            checkouts: Vec::new(),
        }
    }

    /// When the session ends if unused (Unix seconds).
    pub fn expires_at(&self) -> i64 {
        (self.last_seen + IDLE_SECS).min(self.created_at + ABSOLUTE_SECS)
    }

    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at()
    }

    /// Seconds the cookie should live.
    pub fn max_age(&self, now: i64) -> i64 {
        (self.expires_at() - now).max(0)
    }

    /// Marks the session used; true when that is worth writing (at most once an hour, so
    /// that reading pages does not write the store on every request).
    pub fn touch(&mut self, now: i64) -> bool {
        if now - self.last_seen >= 3600 {
            self.last_seen = now;
            return true;
        }
        false
    }

    /// Whether the access token should be refreshed before it is used.
    pub fn needs_refresh(&self, now: i64) -> bool {
        self.signed_in
            .as_ref()
            .is_some_and(|s| s.access_expires_at - now < REFRESH_MARGIN_SECS)
    }

    /// Remembers a checkout form (the newest [`MAX_CHECKOUTS`] are kept).
    pub fn remember_checkout(&mut self, checkout: Checkout) {
        self.checkouts.retain(|c| c.key != checkout.key);
        self.checkouts.push(checkout);
        let excess = self.checkouts.len().saturating_sub(MAX_CHECKOUTS);
        self.checkouts.drain(..excess);
    }

    pub fn checkout(&self, key: &str) -> Option<&Checkout> {
        self.checkouts.iter().find(|c| c.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_in(expires: i64) -> SignedIn {
        SignedIn {
            user: User {
                id: "u".into(),
                email: "a@b.c".into(),
                display_name: "A".into(),
                role: "buyer".into(),
            },
            access_token: "at".into(),
            access_expires_at: expires,
            refresh_token: "rt".into(),
        }
    }

    #[test]
    fn sessions_expire_when_idle_and_at_the_latest_after_thirty_days() {
        let mut s = Session::new("c".into(), 0);
        assert!(!s.is_expired(IDLE_SECS - 1));
        assert!(s.is_expired(IDLE_SECS));
        for day in 1..=40 {
            s.touch(day * 24 * 3600);
        }
        assert!(s.is_expired(ABSOLUTE_SECS));
    }

    #[test]
    fn touching_writes_at_most_hourly() {
        let mut s = Session::new("c".into(), 0);
        assert!(!s.touch(60));
        assert!(s.touch(3600));
        assert_eq!(s.last_seen, 3600);
    }

    #[test]
    fn the_access_token_is_refreshed_just_before_it_expires() {
        let mut s = Session::new("c".into(), 0);
        assert!(!s.needs_refresh(0), "nobody signed in");
        s.signed_in = Some(signed_in(900));
        assert!(!s.needs_refresh(800));
        assert!(s.needs_refresh(841));
        assert!(s.needs_refresh(1000));
    }

    #[test]
    fn only_the_newest_checkout_forms_are_remembered() {
        let mut s = Session::new("c".into(), 0);
        for i in 0..7 {
            s.remember_checkout(Checkout {
                key: format!("k{i}"),
                items: vec![],
                created_at: i,
            });
        }
        assert_eq!(s.checkouts.len(), MAX_CHECKOUTS);
        assert!(s.checkout("k1").is_none());
        assert!(s.checkout("k6").is_some());
    }
}
