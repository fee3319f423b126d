//! The cart: its lines in key-value, priced from the product service at every view.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use uuid::Uuid;

use super::{Ctx, Reply, page};
use crate::clients::{ApiError, Call};
use crate::domain::cart::{CartLine, Quantity};
use crate::domain::form::Form;
use crate::error::Error;

/// What a cart form does to its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Add,
    Update,
    Remove,
}

impl Ctx<'_> {
    /// The lines with what the product service says about each product now.
    pub async fn lines_view(&self, lines: &[CartLine]) -> Result<Value, Error> {
        let mut out = Vec::new();
        let mut totals: BTreeMap<String, i64> = BTreeMap::new();
        for l in lines {
            match self.api.call(Call::Product(l.product_id)).await {
                Ok(p) => {
                    let unit = p["price_cents"].as_i64().unwrap_or(0);
                    let currency = p["currency"].as_str().unwrap_or("").to_string();
                    let line = unit.saturating_mul(i64::from(l.quantity));
                    *totals.entry(currency).or_default() += line;
                    out.push(json!({"product": p, "quantity": l.quantity, "line_cents": line, "available": p["status"] != "archived"}));
                }
                Err(ApiError { status: 404, .. }) => out.push(json!({
                    "product": {"id": l.product_id, "title": "No longer available"},
                    "quantity": l.quantity, "available": false,
                })),
                Err(e) => return Err(e.into()),
            }
        }
        let totals: Vec<Value> = totals
            .into_iter()
            .map(|(c, t)| json!({"currency": c, "cents": t}))
            .collect();
        Ok(json!({"lines": out, "totals": totals}))
    }

    pub async fn cart_page(&self) -> Result<Reply, Error> {
        let cart = self.kv.cart(&self.sid)?;
        let view = self.lines_view(cart.lines()).await?;
        Ok(page("cart.html", json!({"cart": view, "title": "Cart"})))
    }

    pub async fn change_cart(&mut self, change: Change, form: &Form) -> Result<Reply, Error> {
        let Some(product_id) = form.get("product_id").and_then(|p| Uuid::try_parse(p).ok()) else {
            return Err(Error::page(422, "That is not a product of this shop."));
        };
        let mut cart = self.kv.cart(&self.sid)?;
        let quantity = |default| Quantity::parse(form.get("quantity").unwrap_or(default));
        let changed = match change {
            Change::Add => cart.add(product_id, quantity("1")?),
            Change::Update => cart.set(product_id, quantity("")?),
            Change::Remove => {
                cart.remove(product_id);
                Ok(())
            }
        };
        if let Err(e) = changed {
            return Ok(self.cart_page().await?.refused(422, e.message()));
        }
        self.kv.put_cart(&self.sid, &cart)?;
        Ok(Reply::Redirect("/cart".into()))
    }
}
