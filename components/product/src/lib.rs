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

// The Spin entry point (`http_entry!`: body limit, one-write responses).
marketplace_shared::http_entry!(|req| match crate::config::Config::load() {
    Ok(config) => crate::routes::dispatch(&req, &config),
    Err(e) => marketplace_shared::Problem::from(e).into(),
});
