//! Sessions (`web-sessions`) and carts (`web-carts`) in key-value, keyed by the SHA-256 of the
//! session id; compare-and-swap through `marketplace_shared::kv` (docs/spin-runtime.md).

mod cart;
mod session;

use spin_sdk::wit::wasi::keyvalue::store::{self as wkv, Bucket};

use crate::domain::cookie::SessionId;

pub const SESSIONS: &str = "web-sessions";
pub const CARTS: &str = "web-carts";

/// A key-value label that cannot be used (a dependency failure, 503).
#[derive(Debug)]
pub struct StoreError {
    pub label: &'static str,
    pub cause: String,
}

fn failed(label: &'static str, e: impl std::fmt::Debug) -> StoreError {
    StoreError {
        label,
        cause: format!("{e:?}"),
    }
}

/// Both labels, opened once per request.
pub struct Kv {
    sessions: Bucket,
    carts: Bucket,
}

impl Kv {
    pub fn open() -> Result<Self, StoreError> {
        Ok(Self {
            sessions: wkv::open(SESSIONS).map_err(|e| failed(SESSIONS, e))?,
            carts: wkv::open(CARTS).map_err(|e| failed(CARTS, e))?,
        })
    }

    /// Deletes the session's record and its cart.
    pub fn forget(&self, id: &SessionId) -> Result<(), StoreError> {
        let key = id.storage_key();
        self.sessions
            .delete(&key)
            .map_err(|e| failed(SESSIONS, e))?;
        self.carts.delete(&key).map_err(|e| failed(CARTS, e))
    }
}
