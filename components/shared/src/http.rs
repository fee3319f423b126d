//! Request and response helpers for spin-sdk (feature `spin`): reading a request within the
//! body limit, the one routing policy of every service, and responses.
//!
//! **Routing policy (every service, pinned by a test of each):** paths match exactly as the
//! contract writes them: a trailing slash (`/api/users/me/`) or an empty segment is another
//! path, so 404; query parameters a route does not define, or repeats, are 400 (contract
//! "Conventions": 400 for a malformed query). See docs/conventions.md.
//!
//! **Responses carry `content-length`.** Spin writes a response without a length as chunked
//! transfer encoding in two or three writes (headers, body, terminator) on sockets without
//! `TCP_NODELAY`, so the last small write can wait ~40 ms for the client's delayed ACK
//! (bench/ANALYSIS.md). With the length known, headers and body leave together.

use serde::Serialize;
use spin_sdk::http::{Request, Response};

use crate::body::MAX_BODY_BYTES;
use crate::problem::{CONTENT_TYPE, Problem};

/// Reads an incoming request into a [`Request`], refusing a body over [`MAX_BODY_BYTES`] with
/// 413 as soon as `Content-Length` announces it or the bytes read pass it. (spin-sdk's own
/// conversion reads the whole body first: a body of tens of MiB then exhausts the instance's
/// memory and traps, a 500, before any size check can run.)
pub async fn read_request(req: spin_sdk::http::IncomingRequest) -> Result<Request, Response> {
    use futures::StreamExt as _;
    let too_large = || Response::from(Problem::payload_too_large());
    let mut request = Request::builder()
        .method(req.method())
        .uri(req.uri())
        .headers(req.headers())
        .build();
    let announced = header(&request, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut stream = req.into_body_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            Response::from(Problem::bad_request("the request body could not be read"))
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    *request.body_mut() = body;
    Ok(request)
}

impl From<Problem> for Response {
    fn from(p: Problem) -> Self {
        let mut builder = Response::builder();
        let body = p.to_json();
        builder
            .status(p.status)
            .header("content-type", CONTENT_TYPE)
            .header("content-length", body.len().to_string());
        for (name, value) in &p.headers {
            builder.header(*name, value.as_str());
        }
        builder.body(body).build()
    }
}

/// A response with `status`, `content_type` and `body`, its length announced (see the module
/// docs); `headers` are added as given.
pub fn bytes(status: u16, content_type: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Response {
    let mut builder = Response::builder();
    builder
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len().to_string());
    for (name, value) in headers {
        builder.header(*name, *value);
    }
    builder.body(body).build()
}

/// A JSON response with `status`.
pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(body) => bytes(status, "application/json", body, &[]),
        Err(_) => Problem::internal().into(),
    }
}

/// An empty response (`204 No Content` and the like).
pub fn empty(status: u16) -> Response {
    Response::builder()
        .status(status)
        .header("content-length", "0")
        .body(Vec::new())
        .build()
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

/// The segments of `path` after the leading `/`, kept exactly (routing policy: a trailing
/// slash leaves an empty last segment, which no route has, so it is 404).
pub fn segments(path: &str) -> Vec<&str> {
    path.strip_prefix('/').unwrap_or(path).split('/').collect()
}

/// The query string of the request (without `?`), empty when there is none.
pub fn query_string(req: &Request) -> &str {
    req.query()
}

/// The request's query parameters, refusing names outside `allowed` and repeated names with
/// 400 (routing policy).
pub fn query(req: &Request, allowed: &[&str]) -> Result<crate::query::Query, Problem> {
    crate::query::Query::parse(query_string(req), allowed)
}

/// Parses the request body as JSON into `T` (see [`crate::body::parse_json`]).
pub fn parse_body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, Problem> {
    crate::body::parse_json(header(req, "content-type"), req.body())
}

#[cfg(test)]
mod tests {
    use super::segments;

    #[test]
    fn a_trailing_slash_or_empty_segment_is_another_path() {
        assert_eq!(segments("/api/users/me"), ["api", "users", "me"]);
        assert_eq!(segments("/api/users/me/"), ["api", "users", "me", ""]);
        assert_eq!(segments("/api//users"), ["api", "", "users"]);
    }
}
