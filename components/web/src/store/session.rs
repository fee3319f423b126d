//! Session records, and the compare-and-swap steps of the single-flight token refresh
//! (the rule is `domain::session::Claim`).

use marketplace_shared::kv::{self, Step};

use super::{Kv, SESSIONS, StoreError, failed};
use crate::domain::cookie::SessionId;
use crate::domain::session::{Claim, Refresh, Session};

/// Swap attempts of one refresh step (each lost attempt means another writer got in first).
const ATTEMPTS: u32 = 8;

fn decode(raw: Option<&[u8]>) -> Option<Session> {
    raw.and_then(|b| serde_json::from_slice(b).ok())
}

fn encode(s: &Session) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_default()
}

impl Kv {
    /// The session, if it exists and reads back (an unreadable record is no session).
    pub fn session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let key = id.storage_key();
        let raw = self.sessions.get(&key).map_err(|e| failed(SESSIONS, e))?;
        Ok(decode(raw.as_deref()))
    }

    pub fn put_session(&self, id: &SessionId, s: &Session) -> Result<(), StoreError> {
        self.sessions
            .set(&id.storage_key(), &encode(s))
            .map_err(|e| failed(SESSIONS, e))
    }

    /// Asks for the session's refresh lock. `None`: the record is gone (signed out
    /// meanwhile); `Some(Claim::Busy)` also when every swap lost (ask again later).
    pub fn claim_refresh(
        &self,
        id: &SessionId,
        lock: &str,
        now: i64,
    ) -> Result<Option<Claim>, StoreError> {
        let claimed = kv::update(
            &self.sessions,
            &id.storage_key(),
            ATTEMPTS,
            |raw| match decode(raw).map(|s| s.claim_refresh(lock, now)) {
                Some(Claim::Mine(s)) => Step::Write(encode(&s), Some(Claim::Mine(s))),
                other => Step::Done(other),
            },
        );
        Ok(claimed
            .map_err(|e| failed(SESSIONS, e))?
            .unwrap_or(Some(Claim::Busy)))
    }

    /// Stores how the refresh of `refresh_token` went and lets go of the lock. The session
    /// as stored afterwards; `None` when it is gone.
    pub fn finish_refresh(
        &self,
        id: &SessionId,
        refresh_token: &str,
        outcome: Refresh,
    ) -> Result<Option<Session>, StoreError> {
        let done = kv::update(&self.sessions, &id.storage_key(), ATTEMPTS, |raw| {
            let Some(stored) = decode(raw) else {
                return Step::Done(None);
            };
            match stored.clone().refreshed(refresh_token, outcome.clone()) {
                Some(next) => Step::Write(encode(&next), Some(next)),
                None => Step::Done(Some(stored)),
            }
        });
        done.map_err(|e| failed(SESSIONS, e))?
            .ok_or_else(|| failed(SESSIONS, "the refreshed session could not be stored"))
    }
}
