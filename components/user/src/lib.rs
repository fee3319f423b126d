//! The user service: accounts, passwords, access and refresh tokens, roles.
//!
//! The only issuer of user access tokens (EdDSA JWTs); the other services verify them locally
//! with `marketplace_shared::tokens::Verifier`. `routes` is the route table, `handlers` the
//! thin handlers, `domain` the rules (login policy in `domain::login`, bootstrap admins in
//! `domain::admin`), `store` PostgreSQL and the key-value store, `error` the one mapping to
//! problem documents.
//!
//! Choices worth knowing:
//! - Login failures live in the `users` key-value store, per normalised email (hashed) and per
//!   client address, as short lists of recent failure times in a fixed set of keys, updated
//!   with `wasi:keyvalue/atomics` CAS (`domain::throttle`). An atomic increment cannot express
//!   "5 within any 15 minutes" (fixed buckets let 8 guesses straddle a boundary); CAS on a short
//!   list can, and loses no concurrent failure. A slot is reserved before Argon2 runs, so
//!   concurrent guesses cannot exceed the limits. Unknown emails are throttled too, so a 429
//!   never reveals that an account exists.
//! - Wrong passwords on `POST /api/users/me/password` and `DELETE /api/users/me` count in the
//!   same window: otherwise a stolen access token could guess the password there unthrottled.
//! - A deleted account keeps its row (id, role, timestamps) with email, name and password hash
//!   erased; its valid access tokens get 401 from this service (other services cannot know
//!   until the token expires, at most 15 minutes later).

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
    Err(e) => e.into(),
});
