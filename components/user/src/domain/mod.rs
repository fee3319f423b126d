//! The user service's rules, with no I/O: parsing of emails, names, passwords and roles;
//! password hashing; refresh-token material; the login-failure windows and the client address
//! they count; the JWKS document.
//!
//! Everything here runs natively under `cargo test -p marketplace-user`.

pub mod account;
pub mod client;
pub mod jwks;
pub mod password;
pub mod refresh;
pub mod throttle;

pub use account::{DisplayName, Email, RegistrationRole, is_admin_email};
pub use password::{Password, PasswordCheck};

/// Lifetime of an access token (contract: 15 minutes).
pub const ACCESS_TOKEN_TTL_SECS: i64 = 15 * 60;
/// Lifetime of a refresh token (contract: 30 days).
pub const REFRESH_TOKEN_TTL_SECS: i64 = 30 * 24 * 60 * 60;
