//! The order service: orders sharded by buyer, placed exactly once across the product and
//! delivery services (idempotency keys, a transactional outbox and its relay). Its modules
//! are the skeleton's (docs/conventions.md).

pub mod domain;

mod clients;
mod config;
mod error;
mod handlers;
mod relay;
pub mod routes;
mod store;

// The Spin entry point (body limit, one-write responses): load the configuration, dispatch.
marketplace_shared::http_entry!(
    |req| crate::routes::dispatch(&req, crate::config::Config::load()).await
);
