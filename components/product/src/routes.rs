//! The one route table of the product service (matches `spin.toml` and the contract; the
//! table test lists every route). Routing policy (every service): paths match exactly (a
//! trailing slash is another path, 404); a product id that is not a UUID is an unknown
//! product (404); query parameters a route does not define, or repeats, are 400.

use marketplace_shared::Problem;
use marketplace_shared::http;
use spin_sdk::http::{Method, Request, Response};
use uuid::Uuid;

use crate::config::Config;
use crate::domain::search::SEARCH_PARAMS;
use crate::error::Result;
use crate::handlers;

/// Which endpoint a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Search,
    Create,
    Healthz,
    Readyz,
    OpenApi,
    Detail(Uuid),
    Patch(Uuid),
    Archive(Uuid),
    Reserve,
    /// The reservation id, percent-decoded (`None` when it does not decode).
    Release(Option<String>),
}

/// The route of `method` on `path`: 404 for a path no route has, 405 (with `Allow`) for a
/// method the path does not answer.
pub fn route(method: &Method, path: &str) -> Result<Route, Problem> {
    use Method::{Delete, Get, Patch, Post};
    let segments = http::segments(path);
    let not_allowed = |allow: &[&str]| Err(Problem::method_not_allowed(allow));
    match (segments.as_slice(), method) {
        (["api", "products"], Get) => Ok(Route::Search),
        (["api", "products"], Post) => Ok(Route::Create),
        (["api", "products"], _) => not_allowed(&["GET", "POST"]),
        (["api", "products", "healthz"], Get) => Ok(Route::Healthz),
        (["api", "products", "readyz"], Get) => Ok(Route::Readyz),
        (["api", "products", "openapi.json"], Get) => Ok(Route::OpenApi),
        (["api", "products", "healthz" | "readyz" | "openapi.json"], _) => not_allowed(&["GET"]),
        (["api", "products", id], _) if !id.is_empty() => {
            let constructor = match method {
                Get => Route::Detail,
                Patch => Route::Patch,
                Delete => Route::Archive,
                _ => return not_allowed(&["GET", "PATCH", "DELETE"]),
            };
            let id = Uuid::parse_str(id).map_err(|_| Problem::not_found("no such product"))?;
            Ok(constructor(id))
        }
        (["internal", "products", "reservations"], Post) => Ok(Route::Reserve),
        (["internal", "products", "reservations"], _) => not_allowed(&["POST"]),
        (["internal", "products", "reservations", id], Delete) if !id.is_empty() => {
            Ok(Route::Release(percent_decode(id)))
        }
        (["internal", "products", "reservations", id], _) if !id.is_empty() => {
            not_allowed(&["DELETE"])
        }
        _ => Err(Problem::not_found("no such resource")),
    }
}

/// Answers one request: every error becomes a problem document here, and only here.
pub fn dispatch(req: &Request, config: &Config) -> Response {
    let answer = || -> Result<Response> {
        let route = route(req.method(), http::path(req))?;
        let allowed = if route == Route::Search {
            SEARCH_PARAMS
        } else {
            &[]
        };
        let query = http::query(req, allowed)?;
        match route {
            Route::Search => handlers::search(req, config, &query),
            Route::Create => handlers::create(req, config),
            Route::Healthz => Ok(http::json(200, &serde_json::json!({"status": "ok"}))),
            Route::Readyz => handlers::readyz(config),
            Route::OpenApi => Ok(handlers::openapi()),
            Route::Detail(id) => handlers::detail(req, config, id),
            Route::Patch(id) => handlers::patch(req, config, id),
            Route::Archive(id) => handlers::archive(req, config, id),
            Route::Reserve => handlers::reserve(req, config),
            Route::Release(id) => handlers::release(req, config, id.as_deref()),
        }
    };
    answer().unwrap_or_else(|e| Problem::from(e).into())
}

/// Percent-decodes a path segment (`None` when it is not valid UTF-8 after decoding).
fn percent_decode(raw: &str) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?
            }
            b => b,
        });
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0190c0de-0000-7000-8000-000000000001";

    #[test]
    fn every_route_of_the_contract_and_nothing_else() {
        use Method::{Delete, Get, Patch, Post, Put};
        let id = Uuid::parse_str(ID).unwrap();
        let product = format!("/api/products/{ID}");
        let reservation = "/internal/products/reservations";
        let release = format!("{reservation}/ord%2D1");
        for (method, path, expected) in [
            (Get, "/api/products", Route::Search),
            (Post, "/api/products", Route::Create),
            (Get, "/api/products/healthz", Route::Healthz),
            (Get, "/api/products/readyz", Route::Readyz),
            (Get, "/api/products/openapi.json", Route::OpenApi),
            (Get, &product, Route::Detail(id)),
            (Patch, &product, Route::Patch(id)),
            (Delete, &product, Route::Archive(id)),
            (Post, reservation, Route::Reserve),
            (Delete, &release, Route::Release(Some("ord-1".into()))),
        ] {
            assert_eq!(route(&method, path), Ok(expected), "{method:?} {path}");
        }
        for (method, path, allow) in [
            (Put, "/api/products", "GET, POST"),
            (Post, "/api/products/healthz", "GET"),
            (Delete, "/api/products/openapi.json", "GET"),
            (Post, &product, "GET, PATCH, DELETE"),
            (Get, reservation, "POST"),
            (Get, &format!("{reservation}/r1"), "DELETE"),
        ] {
            let p = route(&method, path).unwrap_err();
            assert_eq!(p.headers, [("allow", allow.into())], "{method:?} {path}");
        }
        for path in [
            "/api/products/",
            &format!("{product}/"),
            "/api/products/not-a-uuid",
            "/api/products/x/y",
            &format!("{reservation}/"),
            "/internal/products",
            "/api/product",
        ] {
            assert_eq!(route(&Get, path).unwrap_err().status, 404, "{path}");
        }
    }

    #[test]
    fn reservation_ids_are_percent_decoded() {
        assert_eq!(percent_decode("ord%2D1").as_deref(), Some("ord-1"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        for bad in ["bad%zz", "cut%2", "%FF"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }
}
