//! The storefront: server-rendered HTML pages for people, over the public API of the four
//! services (a client like any other: no database of theirs, no rule of its own).
//!
//! - [`domain`]: cart, session, cookie and CSRF rules, form and search parsing (no I/O);
//! - `clients`: the services' public endpoints; `store`: sessions and carts in key-value;
//! - `render`: embedded templates (auto-escaped) and security headers; `routes`: the pages.

pub mod domain;

mod clients;
mod config;
mod error;
mod render;
pub mod routes;
mod store;

/// The Spin entry point: only wires the router.
// The macro generates the component's export glue, which is `unsafe` by nature; the allow
// is scoped to this module, the rest of the crate stays under `unsafe_code = "deny"`.
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
        crate::routes::handle(req).await
    }
}
