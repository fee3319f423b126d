//! The product service: catalog, search and stock.
//!
//! PostgreSQL is the system of record (primary for writes, replicas for stale-tolerant
//! reads); a key-value read model serves product pages. See `README.md` for the read path,
//! the staleness bound and the key-value layout.

// Natively (unit tests) the entry point is not built, so the I/O modules look unused; the
// wasm build (clippy) still finds dead code.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod config;
pub mod domain;
mod error;
mod handlers;
mod routes;
pub mod store;

/// The entry point: reads the request, loads the configuration once, routes. The export
/// glue that `http_component` generates uses `unsafe`, which the workspace otherwise denies.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod entry {
    use marketplace_shared::Problem;

    #[spin_sdk::http_component]
    async fn handle(req: spin_sdk::http::IncomingRequest, out: spin_sdk::http::ResponseOutparam) {
        // The request is read within the body limit and the answer sent in one write
        // (marketplace_shared::http::serve).
        marketplace_shared::http::serve(req, out, |req| async move {
            match super::config::Config::load() {
                Ok(config) => super::routes::dispatch(&req, &config),
                Err(e) => Problem::from(e).into(),
            }
        })
        .await
    }
}
