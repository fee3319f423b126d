//! HTTP/1.1 serving (hyper 1), one log line per request on stderr.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::AppInner;

pub(crate) async fn serve(app: Arc<AppInner>, listener: tokio::net::TcpListener) -> Result<()> {
    loop {
        let (stream, client_addr) = listener.accept().await?;
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move { handle(app, req, client_addr).await }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::warn!("Error serving HTTP connection: {e:?}");
            }
        });
    }
}

async fn handle(
    app: Arc<AppInner>,
    req: http::Request<hyper::body::Incoming>,
    client_addr: SocketAddr,
) -> Result<http::Response<crate::Body>> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let req = req.map(|b| b.map_err(wasmtime_wasi_http::Error::from).boxed_unsync());
    let result = app
        .handle_request(req, http::uri::Scheme::HTTP, client_addr)
        .await;
    let elapsed = start.elapsed();
    match &result {
        Ok(resp) => eprintln!(
            "{method} {path} {} {:.3}ms",
            resp.status().as_u16(),
            elapsed.as_secs_f64() * 1000.0
        ),
        Err(e) => eprintln!(
            "{method} {path} error {:.3}ms: {e:#}",
            elapsed.as_secs_f64() * 1000.0
        ),
    }
    result
}
