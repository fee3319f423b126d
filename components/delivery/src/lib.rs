//! The delivery service: shipments and their full history in the sharded key-value store.
//!
//! - [`routes`]: the route table; `handlers`: one thin handler per route;
//! - [`domain`]: the rules (state machine, validation, tracking numbers, shard routing), no I/O;
//! - [`store`]: the shipment log over `wasi:keyvalue` (increment and compare-and-swap);
//! - `clients`: the reports to the order service; `relay`: their outbox relay;
//! - [`config`]: Spin variables, typed; [`error`]: the one error type.

mod clients;
pub mod config;
pub mod domain;
pub mod error;
mod handlers;
mod relay;
pub mod routes;
pub mod store;

/// The Spin entry point. The SDK's macro generates the (unsafe) WIT export glue, hence the
/// one `allow` in the crate. Only on wasm32: the export names (`wasi:http/...#handle`) break
/// native `cdylib` linking, and native builds exist for the unit tests.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod entry {
    use marketplace_shared::Problem;

    #[spin_sdk::http_component]
    async fn handle(req: spin_sdk::http::IncomingRequest, out: spin_sdk::http::ResponseOutparam) {
        marketplace_shared::http::serve(req, out, |req| async move {
            match crate::config::Config::load() {
                Ok(cfg) => crate::routes::dispatch(&req, &cfg).await,
                Err(e) => Problem::from(e).into(),
            }
        })
        .await
    }
}
