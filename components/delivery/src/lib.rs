//! The delivery service: shipments and their full history in the sharded key-value store,
//! with status reports to the order service through an outbox relay. Its modules are the
//! skeleton's (docs/conventions.md).

mod clients;
pub mod config;
pub mod domain;
pub mod error;
mod handlers;
mod relay;
pub mod routes;
pub mod store;

// The Spin entry point: read the request, load the configuration once, dispatch
// (marketplace_shared::http_entry!: body limit, one-write responses).
marketplace_shared::http_entry!(|req| match crate::config::Config::load() {
    Ok(cfg) => crate::routes::dispatch(&req, &cfg).await,
    Err(e) => marketplace_shared::Problem::from(e).into(),
});
