//! Outbound HTTP: `allowed_outbound_hosts`, `*.spin.internal` service
//! chaining and the test interceptor.
#[path = "../../host/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use common::*;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use spin_test_host::{App, InterceptAction};

/// A local HTTP server answering `<method> <path> <body>` with status 201.
async fn upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let method = req.method().to_string();
                        let path = req.uri().path().to_string();
                        let probe = req.headers().get("x-probe").is_some();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let text = format!(
                            "{method} {path} {} probe={probe}",
                            String::from_utf8_lossy(&body)
                        );
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .status(201)
                                .body(Full::new(bytes::Bytes::from(text)))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

async fn send(app: &App, from: &str, url: &str, body: &str) -> Value {
    let (status, v) = post_json(
        app,
        &format!("{from}/outbound"),
        &json!({ "url": url, "method": "POST", "body": body }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test]
async fn allowed_host_is_reached() {
    let (addr, server) = upstream().await;
    let (_dir, app) = probe_app(opts()).await;
    let v = send(&app, "", &format!("http://{addr}/hello"), "ping").await;
    assert_eq!(
        v,
        json!({ "status": 201, "body": "POST /hello ping probe=true" })
    );
    server.abort();
}

#[tokio::test]
async fn disallowed_hosts_are_denied_with_http_request_denied() {
    let (addr, server) = upstream().await;
    let (_dir, app) = probe_app(opts()).await;
    // Host not in the list (`localhost` ≠ `127.0.0.1`).
    let v = send(&app, "", &format!("http://localhost:{}/x", addr.port()), "").await;
    assert!(
        v["error"].as_str().unwrap().contains("HttpRequestDenied"),
        "{v}"
    );
    // Scheme not in the list.
    let v = send(&app, "", &format!("https://{addr}/x"), "").await;
    assert!(
        v["error"].as_str().unwrap().contains("HttpRequestDenied"),
        "{v}"
    );
    // Component without allowed_outbound_hosts.
    let v = send(&app, "/api", &format!("http://{addr}/x"), "").await;
    assert!(
        v["error"].as_str().unwrap().contains("HttpRequestDenied"),
        "{v}"
    );
    server.abort();
}

#[tokio::test]
async fn service_chaining_dispatches_in_process() {
    let (_dir, app) = probe_app(opts()).await;
    // `probe` may call `echo` (allowed host from the `{{ chain_target }}` template).
    let v = send(
        &app,
        "",
        "http://echo.spin.internal/deep/echo?x=1",
        "chained",
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let inner: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(inner["who"], "echo");
    assert_eq!(inner["path"], "/deep/echo");
    assert_eq!(inner["body"], "chained");
    assert!(
        inner["method"].as_str().unwrap().ends_with("Post"),
        "{inner}"
    );

    // The chained request carries Spin's synthetic `/...` route headers.
    let v = send(&app, "", "http://echo.spin.internal/x/headers", "").await;
    let inner: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    let h = &inner["headers"];
    // Spin drops `Host` from outbound requests, so the callee's full URL says `localhost`
    // (as `spin up` answers it, tests/agreement).
    assert_eq!(h["spin-full-url"], "http://localhost/x/headers", "{inner}");
    assert!(h.get("host").is_none(), "{inner}");
    assert_eq!(h["spin-path-info"], "/x/headers");
    assert_eq!(h["spin-matched-route"], "/...");
    assert_eq!(h["spin-raw-component-route"], "/...");
    assert_eq!(h["spin-component-route"], "");
    assert_eq!(h["spin-client-addr"], "0.0.0.0:0");
    assert_eq!(h["x-probe"], "1");
}

#[tokio::test]
async fn chaining_requires_the_target_in_allowed_hosts() {
    let (_dir, app) = probe_app(opts()).await;
    // `probe` may only chain to `echo`.
    let v = send(&app, "", "http://exact.spin.internal/", "").await;
    assert!(
        v["error"].as_str().unwrap().contains("HttpRequestDenied"),
        "{v}"
    );
    // `items` allows `http://*.spin.internal`; routes of the target do not apply.
    let v = send(
        &app,
        "/api/items",
        "http://exact.spin.internal/anything/echo",
        "",
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let inner: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(inner["who"], "exact");
    // Unknown component: Spin expands `*.spin.internal` to the app's components, so it is
    // a host not allowed.
    let v = send(&app, "/api/items", "http://nope.spin.internal/", "").await;
    assert_eq!(v["error"], "Http(ErrorCode::HttpRequestDenied)", "{v}");
}

#[tokio::test]
async fn interceptor_injects_faults_and_canned_responses() {
    let (addr, server) = upstream().await;
    let (_dir, app) = probe_app(opts()).await;
    app.set_outbound_interceptor(Some(Arc::new(|parts: &http::request::Parts| {
        match parts.uri.host() {
            Some("echo.spin.internal") if parts.uri.path() == "/down" => {
                Some(InterceptAction::ConnectionRefused)
            }
            Some("echo.spin.internal") if parts.uri.path() == "/slow" => {
                Some(InterceptAction::Timeout)
            }
            Some("echo.spin.internal") if parts.uri.path() == "/canned" => {
                Some(InterceptAction::respond(503, "canned"))
            }
            _ => None,
        }
    })));
    let v = send(&app, "", "http://echo.spin.internal/down", "").await;
    assert!(
        v["error"].as_str().unwrap().contains("ConnectionRefused"),
        "{v}"
    );
    let v = send(&app, "", "http://echo.spin.internal/slow", "").await;
    assert!(
        v["error"].as_str().unwrap().contains("ConnectionTimeout"),
        "{v}"
    );
    let v = send(&app, "", "http://echo.spin.internal/canned", "").await;
    assert_eq!(v, json!({ "status": 503, "body": "canned" }));
    // Other requests pass through.
    let v = send(&app, "", "http://echo.spin.internal/ok/echo", "").await;
    assert_eq!(v["status"], 200, "{v}");
    let v = send(&app, "", &format!("http://{addr}/up"), "").await;
    assert_eq!(v["status"], 201, "{v}");
    // Denial happens before interception.
    let v = send(&app, "/api", "http://echo.spin.internal/canned", "").await;
    assert!(
        v["error"].as_str().unwrap().contains("HttpRequestDenied"),
        "{v}"
    );
    // Removing the interceptor restores normal behaviour.
    app.set_outbound_interceptor(None);
    let v = send(&app, "", "http://echo.spin.internal/down", "").await;
    assert_eq!(v["status"], 200, "{v}");
    server.abort();
}

#[tokio::test]
async fn interceptor_from_host_options() {
    let mut o = opts();
    o.outbound_interceptor = Some(Arc::new(|_: &http::request::Parts| {
        Some(InterceptAction::Respond {
            status: 418,
            headers: vec![("x-fault".into(), "yes".into())],
            body: bytes::Bytes::from_static(b"teapot"),
        })
    }));
    let (_dir, app) = probe_app(o).await;
    let v = send(&app, "", "http://echo.spin.internal/", "").await;
    assert_eq!(v, json!({ "status": 418, "body": "teapot" }));
}
