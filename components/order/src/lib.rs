//! The order service: orders sharded by buyer, placed exactly once across the product and
//! delivery services (idempotency keys, a transactional outbox and its relay).
//!
//! - [`domain`]: rules with no I/O (validation, pricing, status machine, shard routing);
//! - `store`: one shard's PostgreSQL tables; `clients`: product and delivery calls;
//! - `service`: the operations; `relay`: the outbox relay; `routes`: the route table.

pub mod domain;

mod clients;
mod config;
mod error;
mod relay;
pub mod routes;
mod service;
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
