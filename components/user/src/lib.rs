//! The user service: accounts, passwords, access and refresh tokens, roles.
//!
//! The only issuer of user access tokens (EdDSA JWTs); the other services verify them locally
//! with `marketplace_shared::tokens::Verifier`. See `routes` for the route table, `domain` for
//! the rules, `store` for PostgreSQL and the key-value store.

pub mod config;
pub mod domain;
pub mod error;
pub mod routes;
pub mod store;

/// The Spin entry point: everything is in the router.
///
/// The `http_component` macro expands to the component's `unsafe` ABI glue (exported
/// symbols); the workspace denies `unsafe_code`, so it is allowed for this module only. It is
/// compiled for Wasm only: the WIT export names cannot be linked into a native cdylib, and
/// native builds exist for the unit tests.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod entry {
    #[spin_sdk::http_component]
    fn handle(req: spin_sdk::http::Request) -> spin_sdk::http::Response {
        crate::routes::handle(req)
    }
}
