//! The user service: accounts, passwords, access and refresh tokens, roles.
//!
//! The only issuer of user access tokens (EdDSA JWTs); the other services verify them locally
//! with `marketplace_shared::tokens::Verifier`. Failed password checks are throttled per
//! account and per client address (`domain::throttle`). A deleted account's valid access
//! tokens get 401 from this service; other services cannot know until the token expires, at
//! most 15 minutes later.

pub mod config;
pub mod domain;
pub mod error;
pub mod handlers;
pub mod routes;
pub mod store;

// The Spin entry point: read the request, load the configuration once, dispatch
// (marketplace_shared::http_entry!: body limit, one-write responses).
marketplace_shared::http_entry!(|req| match crate::config::Config::load() {
    Ok(config) => crate::routes::dispatch(&req, &config),
    Err(e) => marketplace_shared::Problem::from(e).into(),
});
