//! Outgoing HTTP calls to the other services (feature `spin`): one place that builds the
//! request, signs the service token and reports an unreachable service the same way.

use spin_sdk::http::{Method, Request, Response};

use crate::tokens::Signer;

/// Sends `method url` with an optional bearer token, JSON body and extra headers. `Err`
/// names the callee when no answer came (refused, reset, timed out): a dependency failure.
pub async fn send(
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let mut builder = Request::builder();
    builder
        .method(method)
        .uri(url)
        .header("accept", "application/json");
    if let Some(token) = bearer {
        builder.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        builder.header(*name, *value);
    }
    if let Some(body) = body {
        builder
            .header("content-type", "application/json")
            .body(body);
    }
    spin_sdk::http::send::<Request, Response>(builder.build())
        .await
        .map_err(|e| format!("{} unreachable: {e}", host_of(url)))
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// A service calling another service's internal endpoints with short-lived service tokens
/// (docs/conventions.md, "Service tokens").
pub struct ServiceClient<'a> {
    /// The calling service (`iss`, `sub`).
    pub service: &'static str,
    pub signer: &'a Signer,
}

impl ServiceClient<'_> {
    /// Sends `method url` to `audience` (the callee's service name) with a fresh token.
    pub async fn send(
        &self,
        audience: &str,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<Response, String> {
        let now = chrono::Utc::now().timestamp();
        let token = self.signer.service_token(self.service, audience, now);
        send(method, url, Some(&token), body, headers).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unreachable_service_is_named_by_its_host() {
        assert_eq!(
            super::host_of("http://product.spin.internal/internal/x"),
            "product.spin.internal"
        );
        assert_eq!(super::host_of("https://a.b:8443?x"), "a.b:8443");
        assert_eq!(super::host_of("nohost"), "nohost");
    }
}
