//! Carts: the lines only (prices and titles are always read from the product service).

use super::{CARTS, Kv, StoreError, failed};
use crate::domain::cart::Cart;
use crate::domain::cookie::SessionId;

impl Kv {
    /// The session's cart; none stored (or unreadable) is the empty cart.
    pub fn cart(&self, id: &SessionId) -> Result<Cart, StoreError> {
        let key = id.storage_key();
        let raw = self.carts.get(&key).map_err(|e| failed(CARTS, e))?;
        Ok(raw
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    /// Stores the cart (last write wins); an empty cart is deleted.
    pub fn put_cart(&self, id: &SessionId, cart: &Cart) -> Result<(), StoreError> {
        let key = id.storage_key();
        if cart.is_empty() {
            return self.carts.delete(&key).map_err(|e| failed(CARTS, e));
        }
        let bytes = serde_json::to_vec(cart).map_err(|e| failed(CARTS, e))?;
        self.carts.set(&key, &bytes).map_err(|e| failed(CARTS, e))
    }
}
