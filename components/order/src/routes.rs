//! The route table (matches spin.toml and the contract) and the dispatch to one handler per
//! route.
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
//! | POST | /internal/orders/outbox/relay | service `relay` (the CronJob's own identity) |
//!
//! Routing policy: docs/conventions.md.

use marketplace_shared::Problem;
use marketplace_shared::http::{self, segments};
use spin_sdk::http::{Method, Request, Response};

use crate::config::Config;
use crate::error::Error;
use crate::handlers;

/// The OpenAPI 3.1 document of this service.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Which endpoint a request is for; ids are the path's text (an id this service could not
/// have issued is a 404 of the handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Healthz,
    Readyz,
    OpenApi,
    Place,
    List,
    Sales,
    Order(&'a str),
    Cancel(&'a str),
    DeliveryStatus(&'a str),
    Relay,
}

impl Route<'_> {
    /// The query parameters the route defines.
    fn parameters(self) -> &'static [&'static str] {
        match self {
            Route::List => &["limit", "cursor"],
            Route::Sales => &["limit", "cursor", "status", "seller_id"],
            _ => &[],
        }
    }
}

/// The route of `method path`: 404 for an unknown path, 405 (with `Allow`) for a method the
/// path does not take.
pub fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, Problem> {
    use Route::*;
    let (get, post) = match segments(path).as_slice() {
        ["api", "orders"] => (Some(List), Some(Place)),
        ["api", "orders", "healthz"] => (Some(Healthz), None),
        ["api", "orders", "readyz"] => (Some(Readyz), None),
        ["api", "orders", "openapi.json"] => (Some(OpenApi), None),
        ["api", "orders", "sales"] => (Some(Sales), None),
        ["api", "orders", id] if !id.is_empty() => (Some(Order(id)), None),
        ["api", "orders", id, "cancel"] if !id.is_empty() => (None, Some(Cancel(id))),
        ["internal", "orders", "outbox", "relay"] => (None, Some(Relay)),
        ["internal", "orders", id, "delivery-status"] if !id.is_empty() => {
            (None, Some(DeliveryStatus(id)))
        }
        _ => return Err(Problem::not_found("no such resource")),
    };
    let chosen = match method {
        Method::Get => get,
        Method::Post => post,
        _ => None,
    };
    chosen.ok_or_else(|| {
        let allowed: Vec<&str> = [get.map(|_| "GET"), post.map(|_| "POST")]
            .into_iter()
            .flatten()
            .collect();
        Problem::method_not_allowed(&allowed)
    })
}

/// Answers one request. `cfg` is only needed by the routes that depend on something.
pub async fn dispatch(req: &Request, cfg: Result<Config, Error>) -> Response {
    match run(req, cfg).await {
        Ok(response) => response,
        Err(e) => Problem::from(e).into(),
    }
}

async fn run(req: &Request, cfg: Result<Config, Error>) -> Result<Response, Error> {
    let route = route(req.method(), http::path(req))?;
    let q = http::query(req, route.parameters())?;
    match route {
        Route::Healthz => Ok(http::json(200, &serde_json::json!({"status": "ok"}))),
        Route::OpenApi => {
            let body = OPENAPI.as_bytes().to_vec();
            Ok(http::bytes(200, "application/json", body, &[]))
        }
        Route::Readyz => handlers::readyz(&cfg?),
        Route::Place => handlers::place(&cfg?, req).await,
        Route::List => handlers::list(&cfg?, req, &q),
        Route::Sales => handlers::sales(&cfg?, req, &q),
        Route::Order(id) => handlers::get(&cfg?, req, id),
        Route::Cancel(id) => handlers::cancel(&cfg?, req, id).await,
        Route::DeliveryStatus(id) => handlers::delivery_status(&cfg?, req, id).await,
        Route::Relay => handlers::relay(&cfg?, req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_matches_the_contract_and_the_openapi_document() {
        use Route::*;
        let id = "o00abc";
        let found = [
            (Method::Post, "/api/orders", Place),
            (Method::Get, "/api/orders", List),
            (Method::Get, "/api/orders/healthz", Healthz),
            (Method::Get, "/api/orders/readyz", Readyz),
            (Method::Get, "/api/orders/openapi.json", OpenApi),
            (Method::Get, "/api/orders/sales", Sales),
            (Method::Get, "/api/orders/o00abc", Order(id)),
            (Method::Post, "/api/orders/o00abc/cancel", Cancel(id)),
            (
                Method::Post,
                "/internal/orders/o00abc/delivery-status",
                DeliveryStatus(id),
            ),
            (Method::Post, "/internal/orders/outbox/relay", Relay),
        ];
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        for (method, path, expected) in found {
            let documented = path.replace(id, "{id}");
            assert!(doc["paths"].get(&documented).is_some(), "{documented}");
            assert_eq!(
                route(&method, path).ok(),
                Some(expected),
                "{method:?} {path}"
            );
        }
        let refused = [
            (Method::Delete, "/api/orders", 405),
            (Method::Post, "/api/orders/o00abc", 405),
            (Method::Get, "/api/orders/o00abc/cancel", 405),
            (Method::Get, "/internal/orders/outbox/relay", 405),
            (Method::Put, "/api/orders/healthz", 405),
            (Method::Get, "/api/orders/", 404),
            (Method::Get, "/api/orders/o00abc/", 404),
            (Method::Post, "/api/orders/o00abc/cancel/", 404),
            (Method::Get, "/api/orders/x/y", 404),
            (Method::Get, "/internal/orders", 404),
            (Method::Get, "/api//orders", 404),
        ];
        for (method, path, status) in refused {
            let p = route(&method, path).unwrap_err();
            assert_eq!(p.status, status, "{method:?} {path}");
        }
        let p = route(&Method::Delete, "/api/orders").unwrap_err();
        assert!(
            p.headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case("allow") && v == "GET, POST"),
            "{:?}",
            p.headers
        );
    }
}
