//! A session, server-side: the browser holds only its id ([`super::cookie`]); the CSRF token,
//! the access and refresh tokens and the checkout forms in flight live here.

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
/// How long one request may hold a session's refresh lock; a holder that died lets go then.
pub const REFRESH_LOCK_SECS: i64 = 10;

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

impl SignedIn {
    /// The session's tokens from a login or refresh answer of the user service.
    pub fn from_answer(v: &serde_json::Value, now: i64) -> Option<Self> {
        let user = &v["user"];
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        Some(SignedIn {
            user: User {
                id: user["id"].as_str()?.to_string(),
                email: text(&user["email"]),
                display_name: text(&user["display_name"]),
                role: text(&user["role"]),
            },
            access_token: v["access_token"].as_str()?.to_string(),
            access_expires_at: now + v["expires_in"].as_i64().unwrap_or(900),
            refresh_token: v["refresh_token"].as_str()?.to_string(),
        })
    }
}

/// A request refreshing the session's tokens: its random id and until when it may.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshLock {
    pub id: String,
    pub until: i64,
}

/// What a request that found the access token expiring may do (single-flight refresh: a
/// refresh token works once, and the user service revokes the whole login when one is
/// presented twice, so of two page loads of one session only one may refresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No refresh is needed (any more): use the stored session as it is.
    Fresh(Session),
    /// This request holds the lock (store this session, refresh, then [`Session::refreshed`]).
    Mine(Session),
    /// Another request is refreshing: wait, then read the session again.
    Busy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// New tokens (the old refresh token is spent).
    Tokens(SignedIn),
    /// Refused (spent, revoked, expired): the session is signed out.
    Refused,
    /// No answer (user service down): the tokens stay, the lock is let go.
    Failed,
}

/// One checkout form shown: its idempotency key and the cart lines it was shown with, so a
/// repeated submit sends the very same order body (and the order service replays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    pub key: String,
    pub items: Vec<CartLine>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
    pub signed_in: Option<SignedIn>,
    #[serde(default)]
    pub checkouts: Vec<Checkout>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshing: Option<RefreshLock>,
}

impl Session {
    pub fn new(csrf: String, now: i64) -> Self {
        Self {
            csrf,
            created_at: now,
            last_seen: now,
            ..Self::default()
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

    /// Request `lock` asks to refresh this (stored) session at `now`.
    pub fn claim_refresh(mut self, lock: &str, now: i64) -> Claim {
        if !self.needs_refresh(now) {
            return Claim::Fresh(self);
        }
        match &self.refreshing {
            Some(held) if held.id != lock && held.until > now => Claim::Busy,
            _ => {
                self.refreshing = Some(RefreshLock {
                    id: lock.into(),
                    until: now + REFRESH_LOCK_SECS,
                });
                Claim::Mine(self)
            }
        }
    }

    /// This (stored) session once the refresh of `refresh_token` went as `outcome`; `None`
    /// when the login changed meanwhile (signed out, or in again): then nothing is written.
    pub fn refreshed(mut self, refresh_token: &str, outcome: Refresh) -> Option<Session> {
        if self.signed_in.as_ref()?.refresh_token != refresh_token {
            return None;
        }
        match outcome {
            Refresh::Tokens(fresh) => self.signed_in = Some(fresh),
            Refresh::Refused => self.signed_in = None,
            Refresh::Failed => {}
        }
        self.refreshing = None;
        Some(self)
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
        let answer = serde_json::json!({"access_token": "at", "refresh_token": "rt", "expires_in": expires,
            "user": {"id": "u", "email": "a@b.c", "display_name": "A", "role": "buyer"}});
        SignedIn::from_answer(&answer, 0).unwrap()
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

    /// A session whose token expires at 900, its refresh claimed by request "a" at 1000.
    fn locked() -> Session {
        let mut s = Session::new("c".into(), 0);
        s.signed_in = Some(signed_in(900));
        let Claim::Mine(locked) = s.claim_refresh("a", 1000) else {
            panic!("the first claim gets the lock")
        };
        locked
    }

    fn renewed() -> SignedIn {
        SignedIn {
            access_token: "at2".into(),
            refresh_token: "rt2".into(),
            access_expires_at: 1900,
            ..signed_in(0)
        }
    }

    #[test]
    fn of_two_page_loads_that_find_the_token_expiring_only_one_refreshes() {
        // Both read the same record; A's claim is stored first, B's claim then sees it.
        let locked = locked();
        assert_eq!(locked.clone().claim_refresh("b", 1000), Claim::Busy);
        assert_eq!(locked.clone().claim_refresh("b", 1005), Claim::Busy);
        // A refreshes; B reads again and uses A's new access token, spending nothing.
        let done = locked.refreshed("rt", Refresh::Tokens(renewed())).unwrap();
        assert_eq!(done.refreshing, None);
        let Claim::Fresh(seen) = done.claim_refresh("b", 1001) else {
            panic!("nothing left to refresh")
        };
        assert_eq!(seen.signed_in.unwrap().access_token, "at2");
    }

    #[test]
    fn a_lock_whose_holder_died_lapses() {
        let late = locked().claim_refresh("b", 1000 + REFRESH_LOCK_SECS);
        assert!(matches!(late, Claim::Mine(_)));
        let again = locked().claim_refresh("a", 1001);
        assert!(matches!(again, Claim::Mine(_)), "its own again");
        let anonymous = Session::new("c".into(), 0).claim_refresh("a", 0);
        assert!(matches!(anonymous, Claim::Fresh(_)));
    }

    #[test]
    fn a_refused_refresh_signs_out_and_a_failed_one_lets_go() {
        let locked = locked();
        let out = locked.clone().refreshed("rt", Refresh::Refused).unwrap();
        assert_eq!((out.signed_in, out.refreshing), (None, None));
        let kept = locked.clone().refreshed("rt", Refresh::Failed).unwrap();
        assert_eq!(kept.signed_in.unwrap().access_token, "at");
        assert_eq!(kept.refreshing, None);
        // Signed in again meanwhile (another refresh token): the old refresh writes nothing.
        let mut again = locked;
        again.signed_in = Some(renewed());
        assert_eq!(again.refreshed("rt", Refresh::Tokens(signed_in(5))), None);
    }

    #[test]
    fn a_login_answer_becomes_the_sessions_tokens() {
        let v = serde_json::json!({"access_token": "at", "token_type": "Bearer", "expires_in": 900,
            "refresh_token": "rt", "user": {"id": "u1", "email": "a@b.c", "display_name": "Ada", "role": "buyer"}});
        let s = SignedIn::from_answer(&v, 1000).unwrap();
        assert_eq!(
            (s.access_token.as_str(), s.refresh_token.as_str()),
            ("at", "rt")
        );
        assert_eq!((s.access_expires_at, s.user.role.as_str()), (1900, "buyer"));
        let partial = serde_json::json!({"access_token": "at", "user": {"id": "u"}});
        let partial = SignedIn::from_answer(&partial, 0);
        assert!(partial.is_none(), "no refresh token, no session");
    }
}
