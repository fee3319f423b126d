//! The route table (matches spin.toml and the contract's "Delivery service" section).
//!
//! | method | path | who |
//! | --- | --- | --- |
//! | GET | /api/deliveries/healthz, /readyz, /openapi.json | anyone |
//! | GET | /api/deliveries?order_id= | its buyer, carriers, admins |
//! | GET | /api/deliveries/track/{tracking_number} | anyone (status, times, places only) |
//! | GET | /api/deliveries/{id} | its buyer, carriers, admins |
//! | POST | /api/deliveries/{id}/events | carriers, admins |
//! | POST | /internal/deliveries | service `order` |
//! | POST | /internal/deliveries/{id}/cancel | service `order` |
//! | POST | /internal/deliveries/outbox/relay | `relay` (the relay CronJob's identity) only |
//!
//! Routing policy (every service): paths match exactly (a trailing slash is another path:
//! 404); a query parameter the route does not define, or a repeated one, is 400.

use marketplace_shared::Problem;
use marketplace_shared::http::{path, query, segments};
use spin_sdk::http::{Request, Response};

use crate::config::Config;
use crate::error::Result;
use crate::handlers;

/// One route of the table; path parameters stay raw until the handler has authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Healthz,
    Readyz,
    OpenApi,
    List,
    Track(&'a str),
    Shipment(&'a str),
    Events(&'a str),
    Create,
    Cancel(&'a str),
    Relay,
}

impl Route<'_> {
    /// The query parameters the route defines.
    fn query(self) -> &'static [&'static str] {
        match self {
            Route::List => &["order_id", "limit", "cursor"],
            _ => &[],
        }
    }
}

const GET: &[&str] = &["GET"];
const POST: &[&str] = &["POST"];

/// The route of `method path`: 404 for an unknown path, 405 (with `Allow`) for a wrong method.
pub fn route<'a>(method: &str, path: &'a str) -> Result<Route<'a>, Problem> {
    let (route, allowed) = match segments(path).as_slice() {
        ["api", "deliveries"] => (Route::List, GET),
        ["api", "deliveries", "healthz"] => (Route::Healthz, GET),
        ["api", "deliveries", "readyz"] => (Route::Readyz, GET),
        ["api", "deliveries", "openapi.json"] => (Route::OpenApi, GET),
        ["api", "deliveries", "track", number] if !number.is_empty() => (Route::Track(number), GET),
        ["api", "deliveries", id] if !id.is_empty() => (Route::Shipment(id), GET),
        ["api", "deliveries", id, "events"] if !id.is_empty() => (Route::Events(id), POST),
        ["internal", "deliveries"] => (Route::Create, POST),
        ["internal", "deliveries", "outbox", "relay"] => (Route::Relay, POST),
        ["internal", "deliveries", id, "cancel"] if !id.is_empty() => (Route::Cancel(id), POST),
        _ => return Err(Problem::not_found("no such resource")),
    };
    if allowed.iter().any(|m| m.eq_ignore_ascii_case(method)) {
        Ok(route)
    } else {
        Err(Problem::method_not_allowed(allowed))
    }
}

/// Answers one request; every error becomes a problem document.
pub async fn dispatch(req: &Request, cfg: &Config) -> Response {
    run(req, cfg)
        .await
        .unwrap_or_else(|e| Problem::from(e).into())
}

async fn run(req: &Request, cfg: &Config) -> Result<Response> {
    let route = route(&req.method().to_string(), path(req))?;
    let q = query(req, route.query())?;
    match route {
        Route::Healthz => Ok(handlers::healthz()),
        Route::Readyz => handlers::readyz(),
        Route::OpenApi => Ok(handlers::openapi()),
        Route::List => handlers::list(req, cfg, &q),
        Route::Track(number) => handlers::track(number),
        Route::Shipment(id) => handlers::shipment(req, cfg, id),
        Route::Events(id) => handlers::record_event(req, cfg, id).await,
        Route::Create => handlers::create(req, cfg),
        Route::Cancel(id) => handlers::cancel(req, cfg, id),
        Route::Relay => handlers::relay(req, cfg).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_matches_the_contract() {
        let id = "0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b";
        let found = [
            ("GET", "/api/deliveries/healthz", Route::Healthz),
            ("GET", "/api/deliveries/readyz", Route::Readyz),
            ("GET", "/api/deliveries/openapi.json", Route::OpenApi),
            ("GET", "/api/deliveries", Route::List),
            ("GET", "/api/deliveries/track/MK1", Route::Track("MK1")),
            ("GET", "/api/deliveries/{id}", Route::Shipment(id)),
            ("POST", "/api/deliveries/{id}/events", Route::Events(id)),
            ("POST", "/internal/deliveries", Route::Create),
            (
                "POST",
                "/internal/deliveries/{id}/cancel",
                Route::Cancel(id),
            ),
            ("POST", "/internal/deliveries/outbox/relay", Route::Relay),
        ];
        for (method, path, want) in found {
            let path = path.replace("{id}", id);
            let got = route(method, &path).ok();
            assert_eq!(got, Some(want), "{method} {path}");
            let other = if method == "GET" { "POST" } else { "GET" };
            let p = route(other, &path).unwrap_err();
            assert_eq!(p.status, 405, "{other} {path}");
            assert!(p.headers.iter().any(|(n, v)| *n == "allow" && v == method));
            assert_eq!(want.query().is_empty(), want != Route::List, "{path}");
        }
        assert_eq!(Route::List.query(), ["order_id", "limit", "cursor"]);
        // Exact paths: a trailing slash or an empty segment is another path.
        for path in [
            "/api/deliveries/",
            "/api/deliveries/x/",
            "/api/deliveries/track/",
            "/api/deliveries//events",
            "/api/deliveries/x/y/z",
            "/internal/deliveries/",
            "/internal/deliveries/outbox/relay/",
            "/internal/deliveries//cancel",
        ] {
            assert_eq!(route("GET", path).unwrap_err().status, 404, "{path}");
        }
    }
}
