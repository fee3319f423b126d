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

// The Spin entry point: read the request, load the configuration once, dispatch
// (marketplace_shared::http_entry!: body limit, one-write responses).
marketplace_shared::http_entry!(|req| match crate::config::Config::load() {
    Ok(cfg) => crate::routes::dispatch(&req, &cfg).await,
    Err(e) => marketplace_shared::Problem::from(e).into(),
});
