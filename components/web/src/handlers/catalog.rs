//! Pages for everyone: home, search, a product, public tracking.

use serde_json::{Value, json};

use super::{Ctx, Reply, opaque_id, page, uuid_or_404};
use crate::clients::Call;
use crate::domain::search::{SORTS, Search};
use crate::error::Error;

impl Ctx<'_> {
    pub async fn home(&mut self) -> Result<Reply, Error> {
        // The API has no category list: the categories of the newest hundred products.
        let newest = Call::Products("sort=newest&limit=100");
        let newest = self.api.call(newest).await?;
        let items = newest["items"].as_array().cloned().unwrap_or_default();
        let mut categories: Vec<&str> = items
            .iter()
            .filter_map(|p| p["category"].as_str())
            .collect();
        categories.sort_unstable();
        categories.dedup();
        categories.truncate(30);
        let featured: Vec<&Value> = items.iter().take(8).collect();
        let ctx = json!({"categories": categories, "products": featured, "sorts": SORTS});
        Ok(page("home.html", ctx))
    }

    pub async fn search(&mut self) -> Result<Reply, Error> {
        let (search, mut problems) = Search::parse(self.req.query());
        let result = match self.api.call(Call::Products(&search.api_query())).await {
            Ok(v) => v,
            // A cursor or filter the product service refuses is shown, not a dead end.
            Err(e) if e.status == 400 || e.status == 422 => {
                problems.push(e.detail_or_default());
                let ctx =
                    json!({"search": search, "problems": problems, "products": [], "sorts": SORTS});
                return Ok(Reply::Page(e.status, "search.html", ctx));
            }
            Err(e) => return Err(e.into()),
        };
        let next = result["next_cursor"]
            .as_str()
            .map(|c| format!("/search?{}", search.page_query(c)));
        let first =
            (!search.cursor.is_empty()).then(|| format!("/search?{}", search.page_query("")));
        let ctx = json!({"search": search, "problems": problems, "products": result["items"], "next": next, "first": first, "sorts": SORTS});
        Ok(page("search.html", ctx))
    }

    pub async fn product(&mut self, id: &str) -> Result<Reply, Error> {
        let id = uuid_or_404(id, "product")?;
        let product = self.api.call(Call::Product(id)).await?;
        let ctx = json!({"product": product, "title": product["title"]});
        Ok(page("product.html", ctx))
    }

    pub async fn track(&mut self) -> Result<Reply, Error> {
        let number = self.query.get("number").map(str::trim).unwrap_or("");
        if number.is_empty() {
            return Ok(page("track.html", json!({"title": "Track a parcel"})));
        }
        let shown: String = number.chars().take(100).collect();
        let unknown = || {
            let message = "There is no parcel with that tracking number.";
            let ctx = json!({"number": shown, "message": message, "title": "Track a parcel"});
            Ok(Reply::Page(404, "track.html", ctx))
        };
        let Some(valid) = opaque_id(number) else {
            return unknown();
        };
        match self.api.call(Call::Track(valid)).await {
            Ok(t) => Ok(page(
                "track.html",
                json!({"number": shown, "tracking": t, "title": "Track a parcel"}),
            )),
            Err(e) if e.status == 404 => unknown(),
            Err(e) => Err(e.into()),
        }
    }
}
