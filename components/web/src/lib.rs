//! The storefront: server-rendered HTML pages for people, over the public API of the four
//! services (a client like any other: no database of theirs, no rule of its own).
//!
//! - [`routes`]: the route table and dispatch; `handlers`: one file per area of pages, and
//!   `handlers::render` (embedded, auto-escaped templates and the security headers);
//! - [`domain`]: cart, session, cookie and CSRF rules, form and search parsing (no I/O);
//! - `store`: sessions and carts in key-value; `clients`: the services' public endpoints;
//! - `config`: the Spin variables, once per request; `error`: the one error type.

pub mod domain;

mod clients;
mod config;
mod error;
mod handlers;
pub mod routes;
mod store;

// The Spin entry point: read the request, load the configuration once, dispatch
// (marketplace_shared::http_entry!: body limit, one-write responses).
marketplace_shared::http_entry!(|req| match crate::config::Config::load() {
    Ok(cfg) => crate::routes::dispatch(&req, &cfg).await,
    Err(e) => crate::handlers::render::bare_error(e),
});
