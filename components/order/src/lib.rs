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

/// The Spin entry point: reads the request, loads the configuration once, dispatches.
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
            crate::routes::dispatch(&req, crate::config::Config::load()).await
        })
        .await
    }
}
