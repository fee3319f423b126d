//! The route table (matches spin.toml and the contract) and thin handlers.
//!
//! | method | path | who |
//! | --- | --- | --- |
//! | GET | /api/orders/healthz, /readyz, /openapi.json | anyone |
//! | POST | /api/orders | buyer |
//! | GET | /api/orders | buyer |
//! | GET | /api/orders/sales | seller (own sales), admin (with `seller_id=`) |
//! | GET | /api/orders/{id} | its buyer, admin |
//! | POST | /api/orders/{id}/cancel | its buyer, admin |
//! | POST | /internal/orders/{id}/delivery-status | service `delivery` |
//! | POST | /internal/orders/outbox/relay | service `order` (its CronJob) |

use marketplace_shared::body;
use marketplace_shared::page::{self, Page};
use marketplace_shared::query::Query;
use marketplace_shared::response::{self as resp, header};
use marketplace_shared::tokens::Principal;
use marketplace_shared::wit::DeliveryStatusUpdate;
use marketplace_shared::{Problem, Role};
use serde::Deserialize;
use spin_sdk::http::{Request, Response};

use crate::config::Config;
use crate::domain::order::{CreateOrderBody, DeliveryStatus, IdempotencyKey, NewOrder};
use crate::domain::sales::{self, Position, SalesQuery};
use crate::error::Error;
use crate::{relay, service};

/// The OpenAPI 3.1 document of this service.
pub const OPENAPI: &str = include_str!("../openapi.json");

enum Route<'a> {
    Healthz,
    Readyz,
    OpenApi,
    Orders,
    Sales,
    Order(&'a str),
    Cancel(&'a str),
    DeliveryStatus(&'a str),
    Relay,
}

fn route(path: &str) -> Option<(Route<'_>, &'static [&'static str])> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Some(match segments.as_slice() {
        ["api", "orders"] => (Route::Orders, &["GET", "POST"]),
        ["api", "orders", "healthz"] => (Route::Healthz, &["GET"]),
        ["api", "orders", "readyz"] => (Route::Readyz, &["GET"]),
        ["api", "orders", "openapi.json"] => (Route::OpenApi, &["GET"]),
        ["api", "orders", "sales"] => (Route::Sales, &["GET"]),
        ["api", "orders", id] if !id.is_empty() => (Route::Order(id), &["GET"]),
        ["api", "orders", id, "cancel"] if !id.is_empty() => (Route::Cancel(id), &["POST"]),
        ["internal", "orders", "outbox", "relay"] => (Route::Relay, &["POST"]),
        ["internal", "orders", id, "delivery-status"] if !id.is_empty() => {
            (Route::DeliveryStatus(id), &["POST"])
        }
        _ => return None,
    })
}

/// Answers one request.
pub async fn handle(req: Request) -> Response {
    match dispatch(&req).await {
        Ok(r) => r,
        Err(e) => e.into_problem().into(),
    }
}

async fn dispatch(req: &Request) -> Result<Response, Error> {
    let path = resp::path(req);
    let Some((route, allowed)) = route(path) else {
        return Err(Problem::not_found("no such resource").into());
    };
    let method = req.method().to_string().to_ascii_uppercase();
    if !allowed.contains(&method.as_str()) {
        return Err(Problem::method_not_allowed(allowed).into());
    }
    match route {
        Route::Healthz => return Ok(resp::json(200, &serde_json::json!({"status": "ok"}))),
        Route::OpenApi => {
            return Ok(Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(OPENAPI)
                .build());
        }
        _ => {}
    }
    let cfg = Config::load()?;
    let auth = header(req, "authorization");
    match route {
        Route::Healthz | Route::OpenApi => unreachable_route(),
        Route::Readyz => {
            service::ready(&cfg)?;
            Ok(resp::json(200, &serde_json::json!({"status": "ready"})))
        }
        Route::Orders if method == "POST" => {
            let who = buyer(&cfg, auth)?;
            no_query(req)?;
            let key = IdempotencyKey::parse(header(req, "idempotency-key"))?;
            let parsed: CreateOrderBody = resp::parse_body(req)?;
            let new = NewOrder::parse(parsed)?;
            let placed = service::place(&cfg, who.user_id, &key, &new).await?;
            let mut b = Response::builder();
            b.status(placed.status)
                .header("content-type", "application/json");
            if let Some(id) = placed.body.get("id").and_then(|v| v.as_str()) {
                b.header("location", format!("/api/orders/{id}"));
            }
            if placed.replayed {
                b.header("idempotent-replayed", "true");
            }
            Ok(b.body(serde_json::to_vec(&placed.body).unwrap_or_default())
                .build())
        }
        Route::Orders => {
            let who = buyer(&cfg, auth)?;
            let q = Query::parse(req.query(), &["limit", "cursor"])?;
            let limit = page::limit(&q)?;
            let (items, next_cursor) = service::list(&cfg, who.user_id, q.get("cursor"), limit)?;
            Ok(resp::json(200, &Page { items, next_cursor }))
        }
        Route::Sales => {
            let who = cfg.verifier.authenticate(auth)?;
            if !matches!(who.role, Role::Seller | Role::Admin) {
                return Err(Problem::forbidden("only sellers and admins list sales").into());
            }
            let q = Query::parse(req.query(), &["limit", "cursor", "status", "seller_id"])?;
            let query = sales_query(&who, &q)?;
            let (items, next_cursor) = service::sales(&cfg, &query)?;
            Ok(resp::json(200, &Page { items, next_cursor }))
        }
        Route::Order(id) => {
            let who = cfg.verifier.authenticate(auth)?;
            no_query(req)?;
            Ok(resp::json(200, &service::get(&cfg, &who, id)?))
        }
        Route::Cancel(id) => {
            let who = cfg.verifier.authenticate(auth)?;
            no_query(req)?;
            optional_empty_body(req)?;
            Ok(resp::json(200, &service::cancel(&cfg, &who, id).await?))
        }
        Route::DeliveryStatus(id) => {
            cfg.verifier.authenticate_service(auth, &["delivery"])?;
            no_query(req)?;
            let update: DeliveryStatusUpdate = resp::parse_body(req)?;
            let (status, occurred_at) = parse_update(&update)?;
            Ok(resp::json(
                200,
                &service::delivery_update(&cfg, id, status, occurred_at)?,
            ))
        }
        Route::Relay => {
            cfg.verifier.authenticate_service(auth, &["order"])?;
            no_query(req)?;
            optional_empty_body(req)?;
            let (stats, down) = relay::run_all(&cfg).await;
            if let Some(db) = down.first() {
                return Err(Error::Unavailable {
                    dependency: format!("postgres order-db-{db}"),
                    cause: "relay could not finish".into(),
                });
            }
            Ok(resp::json(200, &stats))
        }
    }
}

fn unreachable_route() -> Result<Response, Error> {
    Err(Error::Internal("route handled earlier".into()))
}

/// The caller, who must be a buyer.
fn buyer(cfg: &Config, auth: Option<&str>) -> Result<Principal, Error> {
    let who = cfg.verifier.authenticate(auth)?;
    if who.role != Role::Buyer {
        return Err(Problem::forbidden("only buyers place and list orders").into());
    }
    Ok(who)
}

/// The parameters of `GET /api/orders/sales`. A seller lists their own sales (`seller_id`, if
/// given, must be theirs: 403 otherwise); an admin names the seller (400 without one).
fn sales_query(who: &Principal, q: &Query) -> Result<SalesQuery, Error> {
    let limit = page::limit(q)?;
    let status = sales::parse_status(q.get("status"))?;
    let named = q
        .get("seller_id")
        .map(|s| {
            uuid::Uuid::try_parse(s).map_err(|_| Problem::bad_request("`seller_id` must be a UUID"))
        })
        .transpose()?;
    let seller = match (who.role, named) {
        (Role::Admin, Some(seller)) => seller,
        (Role::Admin, None) => {
            return Err(
                Problem::bad_request("admins name the seller: `seller_id` is required").into(),
            );
        }
        (_, Some(seller)) if seller != who.user_id => {
            return Err(Problem::forbidden("sellers list only their own sales").into());
        }
        _ => who.user_id,
    };
    let after = q.get("cursor").map(Position::from_cursor).transpose()?;
    Ok(SalesQuery {
        seller,
        status,
        after,
        limit,
    })
}

fn no_query(req: &Request) -> Result<(), Error> {
    Query::parse(req.query(), &[])?;
    Ok(())
}

/// Bodies of action endpoints (cancel, relay): nothing, or an empty JSON object.
fn optional_empty_body(req: &Request) -> Result<(), Error> {
    if req.body().is_empty() {
        return Ok(());
    }
    #[derive(Deserialize)]
    struct Empty {}
    let _: Empty = body::parse_json(header(req, "content-type"), req.body())?;
    Ok(())
}

fn parse_update(
    u: &DeliveryStatusUpdate,
) -> Result<(DeliveryStatus, chrono::DateTime<chrono::Utc>), Error> {
    let mut errors = marketplace_shared::FieldErrors::new();
    let status = DeliveryStatus::parse(&u.status);
    if status.is_none() {
        errors.add("status", "must be shipped, delivered or returned");
    }
    let at = marketplace_shared::time::parse(&u.occurred_at);
    if at.is_none() {
        errors.add("occurred_at", "must be an RFC 3339 timestamp");
    }
    match (status, at) {
        (Some(s), Some(t)) => Ok((s, t)),
        _ => Err(Problem::validation(errors).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_matches_the_contract() {
        let cases = [
            ("/api/orders", Some(vec!["GET", "POST"])),
            ("/api/orders/healthz", Some(vec!["GET"])),
            ("/api/orders/readyz", Some(vec!["GET"])),
            ("/api/orders/openapi.json", Some(vec!["GET"])),
            ("/api/orders/sales", Some(vec!["GET"])),
            ("/api/orders/o00abc", Some(vec!["GET"])),
            ("/api/orders/o00abc/cancel", Some(vec!["POST"])),
            (
                "/internal/orders/o00abc/delivery-status",
                Some(vec!["POST"]),
            ),
            ("/internal/orders/outbox/relay", Some(vec!["POST"])),
            ("/api/orders/", None),
            ("/api/orders/x/y", None),
            ("/internal/orders", None),
        ];
        for (path, expected) in cases {
            assert_eq!(route(path).map(|(_, m)| m.to_vec()), expected, "{path}");
        }
    }

    #[test]
    fn the_openapi_document_is_json_and_lists_every_path() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        for p in [
            "/api/orders",
            "/api/orders/{id}",
            "/api/orders/{id}/cancel",
            "/api/orders/healthz",
            "/api/orders/readyz",
            "/api/orders/openapi.json",
            "/api/orders/sales",
            "/internal/orders/{id}/delivery-status",
            "/internal/orders/outbox/relay",
        ] {
            assert!(doc["paths"].get(p).is_some(), "{p}");
        }
    }
}
