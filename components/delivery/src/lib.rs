//! The delivery service: shipments and their full history in the sharded key-value store.
//!
//! - [`domain`]: the rules (state machine, validation, tracking numbers, shard routing), no I/O;
//! - [`store`]: the shipment log over `wasi:keyvalue` (increment and compare-and-swap);
//! - [`http`]: the route table and thin handlers; [`config`]: Spin variables, typed.

pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod store;

/// The Spin entry point. The SDK's macro generates the (unsafe) WIT export glue, hence the
/// one `allow` in the crate. Only on wasm32: the export names (`wasi:http/...#handle`) break
/// native `cdylib` linking, and native builds exist for the unit tests.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod entry {
    #[spin_sdk::http_component]
    async fn handle(req: spin_sdk::http::IncomingRequest) -> spin_sdk::http::Response {
        // Bodies over 1 MiB are refused while streaming in (413), never read whole.
        let req = match marketplace_shared::response::read_request(req).await {
            Ok(req) => req,
            Err(refused) => return refused,
        };
        crate::http::handle(req).await
    }
}
