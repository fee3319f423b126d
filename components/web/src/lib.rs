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

/// The Spin entry point: reads the request, loads the configuration, dispatches.
// The macro generates the component's export glue, which is `unsafe` by nature; the allow
// is scoped to this module, the rest of the crate stays under `unsafe_code = "deny"`.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod entry {
    #[spin_sdk::http_component]
    async fn handle(req: spin_sdk::http::IncomingRequest, out: spin_sdk::http::ResponseOutparam) {
        // The request is read within the body limit and the answer sent in one write
        // (marketplace_shared::http::serve).
        marketplace_shared::http::serve(req, out, |req| async move {
            match crate::config::Config::load() {
                Ok(cfg) => crate::routes::dispatch(&req, &cfg).await,
                Err(e) => crate::handlers::render::bare_error(e),
            }
        })
        .await
    }
}
