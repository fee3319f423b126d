//! Values → spin-sdk HTTP responses (feature `spin`).

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
