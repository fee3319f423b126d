//! The order service: orders sharded by buyer, placed exactly once across the product and
//! delivery services (idempotency keys, a transactional outbox and its relay).
//!
//! `routes` (the route table) → `handlers` (one per route; the placement and cancel
//! workflows) → `domain` (rules, no I/O) and `store` (one database's tables); `clients` calls
//! the product and delivery services, `relay` delivers the outbox, `error` maps every failure
//! to a problem document once, `config` reads the Spin variables.

pub mod domain;

mod clients;
mod config;
mod error;
mod handlers;
mod relay;
pub mod routes;
mod store;

// The Spin entry point: read the request, load the configuration once, dispatch
// (marketplace_shared::http_entry!: body limit, one-write responses).
marketplace_shared::http_entry!(
    |req| crate::routes::dispatch(&req, crate::config::Config::load()).await
);
