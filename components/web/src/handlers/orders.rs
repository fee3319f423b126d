//! A buyer's orders: the list (paged), one order with its shipments' history, cancelling.

use serde_json::json;

use super::{Ctx, Reply, opaque_id, page};
use crate::clients::Call;
use crate::domain::form::query_string;
use crate::error::Error;

impl Ctx<'_> {
    /// My orders (`sales: false`) or a seller's sales (`sales: true`), twenty a page.
    pub async fn order_list(&mut self, sales: bool) -> Result<Reply, Error> {
        let token = self.token()?;
        let cursor = self.query.get("cursor").unwrap_or("");
        let call = Call::Orders { sales, cursor };
        let list = self.api.call_as(&token, call).await?;
        let (path, template, key, title) = if sales {
            ("/sell/sales", "sales.html", "sales", "My sales")
        } else {
            ("/orders", "orders.html", "orders", "My orders")
        };
        let next = list["next_cursor"]
            .as_str()
            .map(|c| format!("{path}?{}", query_string([("cursor", c)])));
        let ctx =
            json!({key: list["items"], "next": next, "paged": !cursor.is_empty(), "title": title});
        Ok(page(template, ctx))
    }

    pub async fn order(&mut self, id: &str) -> Result<Reply, Error> {
        let token = self.token()?;
        let id = opaque_id(id).ok_or_else(|| Error::page(404, "There is no such order."))?;
        let order = self.api.call_as(&token, Call::Order(id)).await?;
        let (shipments, shipments_error) =
            match self.api.call_as(&token, Call::ShipmentsOf(id)).await {
                Ok(v) => (v["items"].clone(), None),
                Err(e) if e.status == 401 => return Err(Error::SignIn),
                Err(e) => {
                    eprintln!("web: shipments of {id}: {} {}", e.status, e.detail);
                    let shown = "The shipment history cannot be shown right now.";
                    (json!([]), Some(shown))
                }
            };
        let ctx = json!({"order": order, "shipments": shipments, "shipments_error": shipments_error, "title": "Order"});
        Ok(page("order.html", ctx))
    }

    pub async fn cancel(&mut self, id: &str) -> Result<Reply, Error> {
        let token = self.token()?;
        let id = opaque_id(id).ok_or_else(|| Error::page(404, "There is no such order."))?;
        self.api.call_as(&token, Call::Cancel(id)).await?;
        Ok(Reply::Redirect(format!("/orders/{id}")))
    }
}
