//! The thin handlers, one per route: parse the input, authorize, call the domain and the
//! store, build the response. No SQL and no rules here: the login policy is
//! `domain::login`, bootstrap admins `domain::admin`, the windows `domain::throttle`.

pub mod account;
pub mod admin;
pub mod auth;
pub mod ops;

use marketplace_shared::FieldErrors;
use marketplace_shared::http::header;
use marketplace_shared::tokens::Principal;
use spin_sdk::http::Request;

use crate::config::Config;
use crate::domain::login::Fate;
use crate::domain::password::{self, PasswordCheck};
use crate::domain::throttle::ACCOUNTS;
use crate::domain::{Password, bounded};
use crate::error::Error;
use crate::store::{Db, Slot, Throttle, User};

fn now() -> i64 {
    marketplace_shared::time::now().timestamp()
}

/// The caller, from the bearer token (401 otherwise).
fn principal(cfg: &Config, req: &Request) -> Result<Principal, Error> {
    Ok(cfg.verifier.authenticate(header(req, "authorization"))?)
}

/// The caller's live account: a valid token of a deleted account is refused with 401.
fn caller(cfg: &Config, req: &Request, db: &Db) -> Result<User, Error> {
    let p = principal(cfg, req)?;
    db.user_by_id(p.user_id)?.ok_or(Error::AccountGone)
}

/// Parsing a body's fields: every bad field is named in the 422, not only the first.
trait Fields {
    /// The parsed value, or `None` with the parser's message recorded against `field`.
    fn check<T>(&mut self, field: &str, parsed: Result<T, &'static str>) -> Option<T>;
}

impl Fields for FieldErrors {
    fn check<T>(&mut self, field: &str, parsed: Result<T, &'static str>) -> Option<T> {
        parsed.map_err(|m| self.add(field, m)).ok()
    }
}

/// A password presented to prove identity (login, confirmation): only its length is bounded,
/// so an over-long value is refused before any hashing.
fn presented(value: &str) -> Result<&str, &'static str> {
    bounded(value, password::MAX_CHARS, "must be at most 128 characters").map(|()| value)
}

fn hash_password(p: &Password) -> Result<String, Error> {
    password::hash(p.expose()).map_err(|e| Error::Internal(format!("hashing: {}", e.0)))
}

/// Reserves the account's slot for one password check: 429 with `Retry-After` when its
/// window is full. Taken before hashing, so concurrent checks cannot overshoot the limit.
fn reserve_account(throttle: &Throttle, email_normalized: &str) -> Result<Slot, Error> {
    throttle
        .reserve(&ACCOUNTS, email_normalized, now())?
        .map_err(|retry_after| Error::LoginsLocked { retry_after })
}

/// Checks a password that confirms a sensitive change, counting a wrong one as a failed
/// login (the same window, so these endpoints cannot be used to guess passwords either).
/// On success the account's failures are forgotten, as after a login.
fn confirm_password(user: &User, password: &str) -> Result<(), Error> {
    let throttle = Throttle::open()?;
    let slot = reserve_account(&throttle, &user.email.normalized())?;
    match password::verify(&user.password_hash, password) {
        PasswordCheck::Match { .. } => throttle.settle(&slot, Fate::Forget),
        PasswordCheck::Mismatch => Err(Error::WrongPassword),
    }
}
