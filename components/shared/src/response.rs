//! Values → spin-sdk HTTP responses (feature `spin`).

use serde::Serialize;
use spin_sdk::http::{Request, Response};

use crate::problem::{CONTENT_TYPE, Problem};

impl From<Problem> for Response {
    fn from(p: Problem) -> Self {
        let mut builder = Response::builder();
        builder
            .status(p.status)
            .header("content-type", CONTENT_TYPE);
        for (name, value) in &p.headers {
            builder.header(*name, value.as_str());
        }
        builder.body(p.to_json()).build()
    }
}

/// A JSON response with `status`.
pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(bytes)
            .build(),
        Err(_) => Problem::internal().into(),
    }
}

/// An empty response (`204 No Content` and the like).
pub fn empty(status: u16) -> Response {
    Response::builder().status(status).body(Vec::new()).build()
}

/// A header of the request, if present and valid UTF-8.
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.header(name).and_then(|v| v.as_str())
}

/// The request path without the query string, from Spin's `spin-path-info`-independent full path.
pub fn path(req: &Request) -> &str {
    let p = req.path();
    p.split('?').next().unwrap_or(p)
}

/// Parses the request body as JSON into `T` (see [`crate::body::parse_json`]).
pub fn parse_body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, Problem> {
    crate::body::parse_json(header(req, "content-type"), req.body())
}
