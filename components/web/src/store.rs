//! Sessions (`web-sessions`) and carts (`web-carts`) in Spin key-value stores, both keyed by
//! the SHA-256 of the session id.

use spin_sdk::key_value::Store;

use crate::domain::cart::Cart;
use crate::domain::cookie::SessionId;
use crate::domain::session::Session;
use crate::error::Error;

pub const SESSIONS: &str = "web-sessions";
pub const CARTS: &str = "web-carts";

pub struct Kv {
    sessions: Store,
    carts: Store,
}

fn down(label: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable {
        dependency: format!("session store ({label})"),
        cause: e.to_string(),
    }
}

impl Kv {
    pub fn open() -> Result<Self, Error> {
        Ok(Self {
            sessions: Store::open(SESSIONS).map_err(|e| down(SESSIONS, e))?,
            carts: Store::open(CARTS).map_err(|e| down(CARTS, e))?,
        })
    }

    /// The session, if it exists and reads back (an unreadable record is no session).
    pub fn session(&self, id: &SessionId) -> Result<Option<Session>, Error> {
        let raw = self
            .sessions
            .get(&id.storage_key())
            .map_err(|e| down(SESSIONS, e))?;
        Ok(raw.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    pub fn put_session(&self, id: &SessionId, s: &Session) -> Result<(), Error> {
        let bytes = serde_json::to_vec(s).map_err(|e| Error::Internal(e.to_string()))?;
        self.sessions
            .set(&id.storage_key(), &bytes)
            .map_err(|e| down(SESSIONS, e))
    }

    pub fn delete_session(&self, id: &SessionId) -> Result<(), Error> {
        self.sessions
            .delete(&id.storage_key())
            .map_err(|e| down(SESSIONS, e))
    }

    pub fn cart(&self, id: &SessionId) -> Result<Cart, Error> {
        let raw = self
            .carts
            .get(&id.storage_key())
            .map_err(|e| down(CARTS, e))?;
        Ok(raw
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    /// Stores the cart; an empty cart is deleted.
    pub fn put_cart(&self, id: &SessionId, cart: &Cart) -> Result<(), Error> {
        if cart.is_empty() {
            return self.delete_cart(id);
        }
        let bytes = serde_json::to_vec(cart).map_err(|e| Error::Internal(e.to_string()))?;
        self.carts
            .set(&id.storage_key(), &bytes)
            .map_err(|e| down(CARTS, e))
    }

    pub fn delete_cart(&self, id: &SessionId) -> Result<(), Error> {
        self.carts
            .delete(&id.storage_key())
            .map_err(|e| down(CARTS, e))
    }
}
