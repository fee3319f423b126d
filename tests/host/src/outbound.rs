//! Outbound HTTP (`wasi:http/outgoing-handler`) as Spin's outbound-http
//! factor does it: the URL must match the component's
//! `allowed_outbound_hosts` (else `error-code::HTTP-request-denied`), then the
//! test interceptor may answer or fail the request, then
//! `http://<component>.spin.internal` requests are dispatched in-process
//! (Spin's synthetic `/...` route match) and anything else goes to the
//! network through wasmtime-wasi-http's default client.
use std::future::Future;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::{AppInner, CHAINED_CLIENT_ADDR, ComponentRuntime, InterceptAction, RouteMatch};

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

pub(crate) struct OutboundHooks {
    app: Arc<AppInner>,
    component: Arc<ComponentRuntime>,
}

impl OutboundHooks {
    pub(crate) fn new(app: Arc<AppInner>, component: Arc<ComponentRuntime>) -> Self {
        Self { app, component }
    }
}

fn done() -> IoFuture {
    Box::new(async { Ok(()) })
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        let app = self.app.clone();
        let component = self.component.clone();
        Box::new(async move {
            let uri = request.uri().clone();
            let scheme = uri.scheme_str().unwrap_or("https").to_string();
            let Some(host) = uri.host().map(str::to_string) else {
                return Err(Error::HttpRequestUriInvalid);
            };
            if !component
                .allowed_hosts
                .allows(&scheme, &host, uri.port_u16())
            {
                tracing::info!(
                    "component {:?} tried to make an HTTP request to a non-allowed host: {uri}",
                    component.id
                );
                return Err(Error::HttpRequestDenied);
            }
            let (parts, body) = request.into_parts();
            let action = {
                let guard = app.interceptor.read().unwrap_or_else(|p| p.into_inner());
                guard.as_ref().and_then(|f| f(&parts))
            };
            let request = http::Request::from_parts(parts, body);
            match action {
                None => {}
                Some(InterceptAction::ConnectionRefused) => return Err(Error::ConnectionRefused),
                Some(InterceptAction::Timeout) => return Err(Error::ConnectionTimeout),
                Some(InterceptAction::Respond {
                    status,
                    headers,
                    body,
                }) => {
                    let mut b = http::Response::builder().status(status);
                    for (k, v) in headers {
                        b = b.header(k, v);
                    }
                    let resp = b
                        .body(Full::new(body).map_err(|n| match n {}).boxed_unsync())
                        .map_err(|e| Error::InternalError(Some(e.to_string())))?;
                    return Ok((resp, done()));
                }
            }
            let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
            if let Some(target) = crate::service_chaining_target(authority) {
                if !app.has_component(&target) {
                    return Err(Error::DestinationNotFound);
                }
                // Spin's outbound-http drops `Host` before its interceptor dispatches the
                // request, so the callee's `spin-full-url` says `http://localhost/...`.
                let mut request = request;
                request.headers_mut().remove(http::header::HOST);
                let m = RouteMatch::synthetic(target, uri.path().to_string());
                let resp = app
                    .handle_trigger_route(request, m, http::uri::Scheme::HTTP, CHAINED_CLIENT_ADDR)
                    .await
                    .map_err(|e| Error::InternalError(Some(format!("{e:#}"))))?;
                return Ok((resp, done()));
            }
            let (resp, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((resp.map(|b| b.boxed_unsync()), Box::new(io) as IoFuture))
        })
    }
}
