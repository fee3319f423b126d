//! Checkout exactly once: an Idempotency-Key per checkout form, remembered in the session
//! with the lines it showed, so every submit of one form sends the very same order.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use uuid::Uuid;

use super::{Ctx, Reply, opaque_id, page};
use crate::clients::{ApiError, Call};
use crate::domain::cart::CartLine;
use crate::domain::form::Form;
use crate::domain::session::Checkout;
use crate::error::Error;

/// Field errors of a refused order, keyed by the address field they name
/// (`shipping_address.city` → `city`); others under `_`.
fn shipping_errors(e: &ApiError) -> Value {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (field, msgs) in &e.errors {
        let key = field.strip_prefix("shipping_address.").unwrap_or("_");
        out.entry(key)
            .or_default()
            .extend(msgs.iter().map(String::as_str));
    }
    json!(out)
}

impl Ctx<'_> {
    /// A checkout form with a fresh idempotency key, remembered with the lines it shows.
    fn new_checkout(&mut self, items: Vec<CartLine>) -> String {
        let key = Uuid::new_v4().to_string();
        self.session.remember_checkout(Checkout {
            key: key.clone(),
            items,
            created_at: self.now,
        });
        self.dirty = true;
        key
    }

    pub async fn checkout_form(&mut self) -> Result<Reply, Error> {
        self.token()?;
        let name = self
            .signed_in()
            .map_or(String::new(), |s| s.user.display_name.clone());
        let cart = self.kv.cart(&self.sid)?;
        if cart.is_empty() {
            let ctx = json!({"empty": true, "title": "Checkout"});
            return Ok(page("checkout.html", ctx));
        }
        let view = self.lines_view(cart.lines()).await?;
        let key = self.new_checkout(cart.lines().to_vec());
        let ctx = json!({"cart": view, "key": key, "address": {"name": name}, "errors": {}, "title": "Checkout"});
        Ok(page("checkout.html", ctx))
    }

    pub async fn place_order(&mut self, form: &Form) -> Result<Reply, Error> {
        let token = self.token()?;
        let key = form.get("idempotency_key").unwrap_or("");
        let Some(checkout) = self.session.checkout(key).cloned() else {
            let stale = "This checkout form is no longer valid. Please review your cart and check out again.";
            return Err(Error::page(409, stale));
        };
        let mut address = json!({});
        for field in ["name", "line1", "city", "postal_code", "country"] {
            address[field] = json!(form.get(field).unwrap_or(""));
        }
        if let Some(l2) = form.get("line2") {
            address["line2"] = json!(l2);
        }
        let items: Vec<Value> = checkout
            .items
            .iter()
            .map(|l| json!({"product_id": l.product_id, "quantity": l.quantity}))
            .collect();
        let body = json!({"items": items, "shipping_address": address});
        let call = Call::PlaceOrder(&checkout.key, body);
        match self.api.call_as(&token, call).await {
            Ok(order) => {
                let Some(id) = order["id"].as_str().and_then(opaque_id) else {
                    let bad = "the order service answered an order without a usable id";
                    return Err(Error::Internal(bad.into()));
                };
                // The ordered lines leave the cart (again, harmlessly, on a repeated submit).
                let mut cart = self.kv.cart(&self.sid)?;
                for l in &checkout.items {
                    cart.remove(l.product_id);
                }
                self.kv.put_cart(&self.sid, &cart)?;
                Ok(Reply::Redirect(format!("/orders/{id}")))
            }
            Err(e) if matches!(e.status, 409 | 422) => {
                // Shown again with a new key: the corrected form is a new attempt.
                let view = self.lines_view(&checkout.items).await?;
                let key = self.new_checkout(checkout.items.clone());
                let ctx = json!({"cart": view, "key": key, "address": address, "errors": shipping_errors(&e),
                                 "message": e.detail_or_default(), "title": "Checkout"});
                Ok(Reply::Page(e.status, "checkout.html", ctx))
            }
            Err(e) => Err(e.into()),
        }
    }
}
