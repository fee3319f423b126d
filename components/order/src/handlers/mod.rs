//! Thin handlers, one per route; the placement and cancel workflows in `place`, `cancel`.

mod cancel;
mod place;

use marketplace_shared::http::{self, header};
use marketplace_shared::page::{self, Page};
use marketplace_shared::query::Query;
use marketplace_shared::tokens::Principal;
use marketplace_shared::wit::DeliveryStatusUpdate;
use marketplace_shared::{OrderStatus, Problem, Role};
use serde::Deserialize;
use spin_sdk::http::{Request, Response};

use crate::config::{Config, RELAY};
use crate::domain::key::IdempotencyKey;
use crate::domain::order::{self, CreateOrderBody, NewOrder, Order};
use crate::domain::sales::{self, Position, SalesQuery};
use crate::domain::shard::{OrderId, VShard};
use crate::error::Error;
use crate::relay;
use crate::store::Db;

use place::Placed;

/// The caller, who must be a buyer.
fn buyer(cfg: &Config, req: &Request) -> Result<Principal, Error> {
    let who = cfg.verifier.authenticate(header(req, "authorization"))?;
    if who.role != Role::Buyer {
        return Err(Problem::forbidden("only buyers place and list orders").into());
    }
    Ok(who)
}

fn user(cfg: &Config, req: &Request) -> Result<Principal, Error> {
    Ok(cfg.verifier.authenticate(header(req, "authorization"))?)
}

/// An id from the path: anything this service could not have issued is unknown (404).
fn order_id(raw: &str) -> Result<OrderId, Error> {
    OrderId::parse(raw).ok_or(Error::NotFound)
}

/// An optional query parameter, parsed by `parse`; 400 with `message` if it does not parse.
fn param<T>(
    q: &Query,
    name: &str,
    message: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, Problem> {
    let bad = || Problem::bad_request(message);
    q.get(name).map(|v| parse(v).ok_or_else(bad)).transpose()
}

/// Bodies of action endpoints (cancel, relay): nothing, or an empty JSON object.
fn optional_empty_body(req: &Request) -> Result<(), Error> {
    #[derive(Deserialize)]
    struct Empty {}
    if !req.body().is_empty() {
        http::parse_body::<Empty>(req)?;
    }
    Ok(())
}

/// `POST /api/orders`.
pub async fn place(cfg: &Config, req: &Request) -> Result<Response, Error> {
    let who = buyer(cfg, req)?;
    let key = IdempotencyKey::parse(header(req, "idempotency-key"))?;
    let new = NewOrder::parse(http::parse_body::<CreateOrderBody>(req)?)?;
    let (status, body, order_id, replayed) =
        match place::place(cfg, who.user_id, &key, &new).await? {
            Placed::New(order) => {
                let body = serde_json::to_vec(&order)
                    .map_err(|e| Error::Internal(format!("order json: {e}")))?;
                (201, body, order.id, false)
            }
            Placed::Replayed(r) => (r.status, r.body, r.order_id, true),
        };
    let location = format!("/api/orders/{order_id}");
    let mut headers = vec![("location", location.as_str())];
    if replayed {
        headers.push(("idempotent-replayed", "true"));
    }
    Ok(http::bytes(status, "application/json", body, &headers))
}

/// `GET /api/orders`: the caller's shard only, newest first.
pub fn list(cfg: &Config, req: &Request, q: &Query) -> Result<Response, Error> {
    let who = buyer(cfg, req)?;
    let limit = page::limit(q)?;
    let vshard = VShard::of_buyer(who.user_id);
    let after = param(q, "cursor", "invalid cursor", |c| {
        let id: String = page::decode_cursor(c).ok()?;
        OrderId::parse(&id).filter(|id| id.vshard() == vshard)
    })?;
    let db = Db::for_vshard(cfg, vshard)?;
    let mut items = db.list_orders(who.user_id, after.as_ref(), limit + 1)?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|o| page::encode_cursor(&o.id))
    } else {
        None
    };
    Ok(http::json(200, &Page { items, next_cursor }))
}

/// `GET /api/orders/sales`: a seller's lines on every database, merged (`domain::sales`); one
/// database down makes the page a 503 (without it the page would skip its lines for good).
/// Sellers list their own sales (another `seller_id`: 403); admins name one (else 400).
pub fn sales(cfg: &Config, req: &Request, q: &Query) -> Result<Response, Error> {
    let who = user(cfg, req)?;
    if !matches!(who.role, Role::Seller | Role::Admin) {
        return Err(Problem::forbidden("only sellers and admins list sales").into());
    }
    let limit = page::limit(q)?;
    let statuses = "`status` must be one of confirmed, shipped, delivered, cancelled, returned";
    let status = param(q, "status", statuses, OrderStatus::parse)?;
    let named = param(q, "seller_id", "`seller_id` must be a UUID", |s| {
        uuid::Uuid::try_parse(s).ok()
    })?;
    let seller = match (who.role, named) {
        (Role::Admin, Some(seller)) => seller,
        (Role::Admin, None) => {
            let missing = "admins name the seller: `seller_id` is required";
            return Err(Problem::bad_request(missing).into());
        }
        (_, Some(seller)) if seller != who.user_id => {
            return Err(Problem::forbidden("sellers list only their own sales").into());
        }
        _ => who.user_id,
    };
    let after = param(q, "cursor", "invalid cursor", Position::from_cursor)?;
    let query = SalesQuery {
        seller,
        status,
        after,
        limit,
    };
    let pages = (0..cfg.db_urls.len())
        .map(|index| Db::open(cfg, index)?.sales_page(&query, limit + 1))
        .collect::<Result<_, _>>()?;
    let (items, next_cursor) = sales::merge(pages, limit);
    Ok(http::json(200, &Page { items, next_cursor }))
}

/// `GET /api/orders/{id}`: one shard, found from the id alone.
pub fn get(cfg: &Config, req: &Request, raw: &str) -> Result<Response, Error> {
    let who = user(cfg, req)?;
    let id = order_id(raw)?;
    let order = Db::for_vshard(cfg, id.vshard())?
        .load_order(&id)?
        .filter(|o| o.visible_to(&who))
        .ok_or(Error::NotFound)?;
    Ok(http::json(200, &order))
}

/// `POST /api/orders/{id}/cancel`.
pub async fn cancel(cfg: &Config, req: &Request, raw: &str) -> Result<Response, Error> {
    let who = user(cfg, req)?;
    optional_empty_body(req)?;
    let id = order_id(raw)?;
    Ok(http::json(200, &cancel::cancel(cfg, &who, &id).await?))
}

/// `POST /internal/orders/{id}/delivery-status`: forward-only, idempotent.
pub async fn delivery_status(cfg: &Config, req: &Request, raw: &str) -> Result<Response, Error> {
    cfg.verifier
        .authenticate_service(header(req, "authorization"), &["delivery"])?;
    let update: DeliveryStatusUpdate = http::parse_body(req)?;
    let (status, occurred_at) = order::parse_update(&update)?;
    let id = order_id(raw)?;
    let db = Db::for_vshard(cfg, id.vshard())?;
    db.transaction(async |db| {
        let order = db.lock_order(&id)?.ok_or(Error::NotFound)?;
        if let Some(next) = order::on_delivery_update(order.status, status) {
            let detail = serde_json::json!({});
            db.transition(&order, next, "delivery", &detail, Some(occurred_at))?;
        }
        Ok(())
    })
    .await?;
    let order: Order = db.load_order(&id)?.ok_or(Error::NotFound)?;
    Ok(http::json(200, &order))
}

/// `POST /internal/orders/outbox/relay`: only the relay's own identity (its CronJob).
pub async fn relay(cfg: &Config, req: &Request) -> Result<Response, Error> {
    cfg.verifier
        .authenticate_service(header(req, "authorization"), &[RELAY])?;
    optional_empty_body(req)?;
    let (stats, down) = relay::run_all(cfg).await;
    if let Some(db) = down.first() {
        let dependency = format!("postgres order-db-{db}");
        return Err(Error::unavailable(dependency, "relay could not finish"));
    }
    Ok(http::json(200, &stats))
}

/// `GET /api/orders/readyz`: every physical database answers.
pub fn readyz(cfg: &Config) -> Result<Response, Error> {
    for index in 0..cfg.db_urls.len() {
        Db::open(cfg, index)?.ping()?;
    }
    Ok(http::json(200, &serde_json::json!({"status": "ready"})))
}
