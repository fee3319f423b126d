//! Request and response helpers for spin-sdk (feature `spin`): reading a request within the
//! body limit, the one routing policy of every service (docs/conventions.md: paths match
//! exactly, [`segments`]; undefined or repeated query parameters are 400), and responses.
//!
//! **Responses leave in one write: [`respond`].** Spin's HTTP server does not set `TCP_NODELAY`,
//! and spin-sdk's entry glue hands the response head to Spin before writing the body, so the
//! body, a second small write, waits for the client's delayed ACK: ~40 ms per response (Spin
//! 4.1, bench/ANALYSIS.md: product reads p50 42 ms, 0.8 ms with [`respond`]). Every entry point
//! therefore takes the `ResponseOutparam` and calls [`respond`], which writes the whole body
//! before the response is set; responses built here carry `content-length`, so no chunk
//! terminator follows either.

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
        let headers: Vec<(&str, &str)> = p.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        bytes(p.status, CONTENT_TYPE, p.to_json(), &headers)
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

/// Every component's entry point, written once: `http_entry!(|req| <answer>)` defines the
/// `#[spin_sdk::http_component]` handler, which [`serve`]s each request: read within the body
/// limit, `<answer>` (an expression of type `Response`, `.await` allowed) computed from `req`,
/// sent in one write. Compiled for Wasm only: the WIT export names cannot be linked into a
/// native cdylib (native builds are the unit tests). The handler's generated export glue is
/// `unsafe` by nature; the allow is scoped to it, the crate stays under `unsafe_code = "deny"`.
#[macro_export]
macro_rules! http_entry {
    (|$req:ident| $answer:expr) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        mod entry {
            #[::spin_sdk::http_component]
            async fn handle(
                req: ::spin_sdk::http::IncomingRequest,
                out: ::spin_sdk::http::ResponseOutparam,
            ) {
                $crate::http::serve(req, out, |$req| async move { $answer }).await
            }
        }
    };
}

/// Reads the request within the body limit (413 otherwise), runs `handle`, sends with [`respond`].
pub async fn serve<F, Fut>(
    req: spin_sdk::http::IncomingRequest,
    out: spin_sdk::http::ResponseOutparam,
    handle: F,
) where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let resp = match read_request(req).await {
        Ok(req) => handle(req).await,
        Err(refused) => refused,
    };
    respond(out, resp).await
}

/// Sends `resp` through `out` with its whole body written **before** the response is handed
/// to Spin (module docs). Until the response is set, the outgoing stream buffers what it is
/// given (wasmtime-wasi-http: two chunks of up to 1 MiB); a body over [`WRITE_FIRST_MAX`]
/// (none of ours: lists are paged) is sent the SDK's way, head first.
pub async fn respond(out: spin_sdk::http::ResponseOutparam, mut resp: Response) {
    use futures::SinkExt as _;
    let body = std::mem::take(resp.body_mut());
    let outgoing: spin_sdk::http::OutgoingResponse = match resp.try_into() {
        Ok(outgoing) => outgoing,
        Err(e) => {
            eprintln!("response not sent: {e}");
            return;
        }
    };
    if body.len() > WRITE_FIRST_MAX {
        if let Err(e) = out.set_with_body(outgoing, body).await {
            eprintln!("response body not written: {e}");
        }
        return;
    }
    let mut sink = outgoing.take_body();
    if !body.is_empty()
        && let Err(e) = sink.send(body).await
    {
        eprintln!("response body not written: {e}");
    }
    // The sink finishes the body when dropped, before the response is set.
    drop(sink);
    out.set(outgoing);
}

/// The largest body [`respond`] writes before setting the response.
pub const WRITE_FIRST_MAX: usize = 512 * 1024;

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
    req.path().split('?').next().unwrap_or_default()
}

/// The segments of `path` after the leading `/`, kept exactly (routing policy: a trailing
/// slash leaves an empty last segment, which no route has, so it is 404).
pub fn segments(path: &str) -> Vec<&str> {
    path.strip_prefix('/').unwrap_or(path).split('/').collect()
}

/// The request's query parameters, refusing names outside `allowed` and repeated names with
/// 400 (routing policy).
pub fn query(req: &Request, allowed: &[&str]) -> Result<crate::query::Query, Problem> {
    crate::query::Query::parse(req.query(), allowed)
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
