//! The login policy, pure: what a password check does to the throttle's slots (reserved
//! before any Argon2, `domain::throttle`), how long a login (session) may last, and the
//! retention that rides on it.

use super::password::PasswordCheck;

/// How a password check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The password matched; `rehash` when its hash uses weaker parameters than today's.
    Granted { rehash: bool },
    /// Unknown email or wrong password (one answer for both).
    Refused,
    /// No password was checked (the database failed before): nobody is to blame.
    NotChecked,
}

impl Check {
    /// The outcome of verifying against the account's hash (`None`: unknown email, verified
    /// against the dummy hash for the same cost).
    pub fn of(found: bool, verified: PasswordCheck) -> Self {
        match (found, verified) {
            (true, PasswordCheck::Match { rehash }) => Check::Granted { rehash },
            _ => Check::Refused,
        }
    }
}

/// What becomes of one reserved slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It stays: it is the failure.
    Keep,
    /// Given back: this check is not a failure.
    Release,
    /// Every failure of the subject goes (the account proved its password).
    Forget,
}

/// The fates of the account's and the address's slots after a check: a wrong password keeps
/// both; a success forgets the account's failures but only gives back the address's own slot
/// (its other failures were other accounts' guesses); a check that never happened gives both
/// back, so an outage locks nobody out.
pub fn settle(check: Check) -> (Fate, Fate) {
    match check {
        Check::Granted { .. } => (Fate::Forget, Fate::Release),
        Check::Refused => (Fate::Keep, Fate::Keep),
        Check::NotChecked => (Fate::Release, Fate::Release),
    }
}

/// Days a refresh token is kept after it expired. Within them, presenting it again still
/// counts as reuse (its login is revoked); after them it is deleted and simply refused. A
/// token expired that long ago grants nothing either way.
pub const EXPIRED_TOKEN_RETENTION_DAYS: i32 = 30;

/// Rows one purge deletes at most: each login runs one (after it is committed, best effort),
/// so the tables shrink steadily without any request doing much work.
pub const PURGE_BATCH: i64 = 100;

/// Default absolute lifetime of a login: 30 days (`session_max_lifetime_secs`).
pub const DEFAULT_SESSION_MAX_LIFETIME_SECS: i64 = 30 * 24 * 60 * 60;

/// The absolute lifetime of a login (its refresh-token family), counted from the login: no
/// refresh token of the family outlives it, however often it is refreshed, and past it the
/// login must be repeated. Each refresh token also expires 30 days after it was issued
/// (contract), whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetime(i64);

impl SessionLifetime {
    /// Seconds, from one minute to ten years; empty is the default.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(Self(DEFAULT_SESSION_MAX_LIFETIME_SECS));
        }
        match raw.parse::<i64>() {
            Ok(s) if (60..=10 * 365 * 24 * 60 * 60).contains(&s) => Ok(Self(s)),
            _ => Err("session_max_lifetime_secs: expected seconds from 60 to 315360000".into()),
        }
    }

    pub fn secs(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_password_keeps_both_slots_a_success_forgets_the_account_an_outage_gives_back() {
        assert_eq!(settle(Check::Refused), (Fate::Keep, Fate::Keep));
        let granted = Check::Granted { rehash: false };
        assert_eq!(settle(granted), (Fate::Forget, Fate::Release));
        assert_eq!(settle(Check::NotChecked), (Fate::Release, Fate::Release));
    }

    #[test]
    fn only_a_match_of_a_known_account_is_granted_and_weak_hashes_are_upgraded() {
        let weak = PasswordCheck::Match { rehash: true };
        assert_eq!(Check::of(true, weak), Check::Granted { rehash: true });
        assert_eq!(Check::of(false, weak), Check::Refused);
        assert_eq!(Check::of(true, PasswordCheck::Mismatch), Check::Refused);
        let strong = PasswordCheck::Match { rehash: false };
        assert_eq!(Check::of(true, strong), Check::Granted { rehash: false });
    }

    #[test]
    fn the_session_lifetime_defaults_to_30_days_and_is_bounded() {
        assert_eq!(SessionLifetime::parse("").unwrap().secs(), 2_592_000);
        assert_eq!(SessionLifetime::parse(" 3600 ").unwrap().secs(), 3600);
        for bad in ["0", "59", "-1", "abc", "315360001"] {
            assert!(SessionLifetime::parse(bad).is_err(), "{bad}");
        }
    }
}
