//! The product service: catalog, search and stock.
//!
//! PostgreSQL is the system of record (primary for writes, replicas for stale-tolerant
//! reads); a key-value read model serves product pages. See `README.md` for the read path,
//! the staleness bound and the key-value layout.

pub mod domain;
pub mod sql;

// Natively (unit tests) the entry point is not built, so the I/O modules look unused.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod config;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod error;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod http;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod kv;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod store;

/// The entry point: wires the request to the router, nothing else. The export glue that
/// `http_component` generates uses `unsafe`, which the workspace otherwise denies.
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
        super::http::route(req)
    }
}
