//! The user service's rules, with no I/O (tested natively: `cargo test -p marketplace-user --lib`).

pub mod account;
pub mod admin;
pub mod client;
pub mod jwks;
pub mod login;
pub mod password;
pub mod refresh;
pub mod throttle;

pub use account::{DisplayName, Email, RegistrationRole};
pub use password::{Password, PasswordCheck};

/// Lifetime of an access token (contract: 15 minutes).
pub const ACCESS_TOKEN_TTL_SECS: i64 = 15 * 60;
/// Lifetime of a refresh token (contract: 30 days), within its login's
/// [`login::SessionLifetime`].
pub const REFRESH_TOKEN_TTL_SECS: i64 = 30 * 24 * 60 * 60;

/// Refuses `s` when it is empty or longer than `max` characters (Unicode scalar values).
pub fn bounded(s: &str, max: usize, too_long: &'static str) -> Result<(), &'static str> {
    match s.chars().count() {
        0 => Err("must not be empty"),
        n if n > max => Err(too_long),
        _ => Ok(()),
    }
}
