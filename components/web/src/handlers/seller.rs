//! A seller's pages: their products, the product form (create, edit, stock), archiving.
//! (Their sales are `order_list(true)`, in orders.rs.)

use serde_json::{Value, json};

use super::{Ctx, Reply, page, uuid_or_404};
use crate::clients::Call;
use crate::domain::form::{Form, query_string};
use crate::domain::listing;
use crate::error::Error;

impl Ctx<'_> {
    pub async fn my_products(&mut self) -> Result<Reply, Error> {
        self.token()?;
        let me = self.signed_in().map_or("", |s| s.user.id.as_str());
        let cursor = self.query.get("cursor").unwrap_or("");
        let query = query_string([
            ("seller_id", me),
            ("sort", "newest"),
            ("limit", "20"),
            ("cursor", cursor),
        ]);
        let list = self.api.call(Call::Products(&query)).await?;
        let next = list["next_cursor"]
            .as_str()
            .map(|c| format!("/sell?{}", query_string([("cursor", c)])));
        let ctx = json!({"products": list["items"], "next": next, "paged": !cursor.is_empty(), "title": "My products"});
        Ok(page("sell.html", ctx))
    }

    pub async fn product_form(&mut self, id: Option<&str>) -> Result<Reply, Error> {
        let token = self.token()?;
        let (refill, product) = match id {
            Some(id) => {
                let id = uuid_or_404(id, "product")?;
                let p = self.api.call_as(&token, Call::Product(id)).await?;
                (listing::refill_from(&p), p)
            }
            None => (json!({"currency": "EUR", "stock": "1"}), Value::Null),
        };
        let ctx = json!({"product": product, "form": refill, "errors": {}, "title": "Sell"});
        Ok(page("product_form.html", ctx))
    }

    pub async fn save_product(&mut self, id: Option<&str>, form: &Form) -> Result<Reply, Error> {
        let token = self.token()?;
        let id = id.map(|raw| uuid_or_404(raw, "product")).transpose()?;
        let listing = listing::parse(form);
        let refused = |errors: Value, message: Option<String>| {
            let ctx = json!({"product": {"id": id}, "form": listing.refill, "errors": errors, "message": message, "title": "Sell"});
            Ok(Reply::Page(422, "product_form.html", ctx))
        };
        let body = match &listing.body {
            Ok(b) => b.clone(),
            Err(errors) => return refused(json!(errors), None),
        };
        match self.api.call_as(&token, Call::SaveProduct(id, body)).await {
            Ok(_) => Ok(Reply::Redirect("/sell".into())),
            Err(e) if e.status == 422 => refused(
                json!(listing::form_errors(&e.errors)),
                Some(e.detail_or_default()),
            ),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn archive(&mut self, id: &str) -> Result<Reply, Error> {
        let token = self.token()?;
        let id = uuid_or_404(id, "product")?;
        self.api.call_as(&token, Call::Archive(id)).await?;
        Ok(Reply::Redirect("/sell".into()))
    }
}
