//! The storefront: server-rendered HTML pages for people over the four services' public API
//! (a client like any other: no database of theirs, no rule of its own).

pub mod domain;

mod clients;
mod config;
mod error;
mod handlers;
pub mod routes;
mod store;

// `http_entry!` reads the request within the body limit and answers in one write.
marketplace_shared::http_entry!(|req| match crate::config::Config::load() {
    Ok(cfg) => crate::routes::dispatch(&req, &cfg).await,
    Err(e) => crate::handlers::render::bare_error(e),
});
