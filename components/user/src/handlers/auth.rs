//! `/api/auth/*`: registration, login, refresh, logout, the JWKS.

use marketplace_shared::http::{empty, header, json, parse_body};
use marketplace_shared::tokens::WireClaims;
use marketplace_shared::{FieldErrors, Problem, Role};
use serde::{Deserialize, Serialize};
use spin_sdk::http::{Request, Response};
use uuid::Uuid;

use super::{Fields, bounded, hash_password, now, presented, reserve_account};
use crate::config::Config;
use crate::domain::admin::{self, OnLogin};
use crate::domain::login::{self, Check, Fate};
use crate::domain::password;
use crate::domain::throttle::ADDRESSES;
use crate::domain::{
    ACCESS_TOKEN_TTL_SECS, DisplayName, Email, Password, RegistrationRole, client, jwks, refresh,
};
use crate::error::Error;
use crate::store::{Db, Rotation, Throttle, User};

#[derive(Serialize)]
struct TokenPair<'a> {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
    user: &'a User,
}

fn token_pair(cfg: &Config, user: &User, refresh_token: String) -> Response {
    let iat = now();
    let access_token = cfg.signer.sign(&WireClaims {
        sub: user.id.to_string(),
        role: user.role.as_str().to_string(),
        iss: cfg.issuer.clone(),
        aud: cfg.audience.clone(),
        iat,
        exp: iat + ACCESS_TOKEN_TTL_SECS,
        jti: Uuid::now_v7().to_string(),
    });
    let pair = TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_TTL_SECS,
        refresh_token,
        user,
    };
    json(200, &pair)
}

fn new_refresh_token() -> Result<refresh::NewRefreshToken, Error> {
    refresh::generate().map_err(|e| Error::Internal(format!("random source: {e}")))
}

#[derive(Deserialize)]
struct RegisterBody {
    email: String,
    password: String,
    display_name: String,
    role: Option<String>,
}

pub fn register(req: &Request, cfg: &Config) -> Result<Response, Error> {
    let body: RegisterBody = parse_body(req)?;
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(&body.email));
    let password = errors.check("password", Password::parse(&body.password));
    let name = errors.check("display_name", DisplayName::parse(&body.display_name));
    let role = errors.check("role", RegistrationRole::parse(body.role.as_deref()));
    let (Some(email), Some(password), Some(name), Some(role)) = (email, password, name, role)
    else {
        return Err(Problem::validation(errors).into());
    };
    let (role, reserve) = admin::registration(cfg.admin_emails.lists(&email), role);
    let hash = hash_password(&password)?;
    let db = Db::open(&cfg.db_url)?;
    let user = db.insert_user(&email, name.as_str(), role, &hash, reserve)?;
    let mut resp = json(201, &user);
    resp.set_header("location", format!("/api/users/{}", user.id));
    Ok(resp)
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

/// The name the per-address limit counts the caller under (`domain::client`). Spin's SDK
/// keeps one line of a repeated header, the last: the one the nearest proxy wrote.
fn client_address(cfg: &Config, req: &Request) -> String {
    client::subject(client::client_ip(
        header(req, "spin-client-addr"),
        header(req, "x-forwarded-for"),
        &cfg.trusted_proxies,
    ))
}

pub fn login(req: &Request, cfg: &Config) -> Result<Response, Error> {
    let body: LoginBody = parse_body(req)?;
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(&body.email));
    errors.check("password", presented(&body.password));
    let Some(email) = email.filter(|_| errors.is_empty()) else {
        return Err(Problem::validation(errors).into());
    };
    let address = client_address(cfg, req);
    // Both slots are taken before any hashing (a full window costs no Argon2), the address's
    // read first so that a client over its limit does not even write.
    let throttle = Throttle::open()?;
    if let Some(retry_after) = throttle.retry_after(&ADDRESSES, &address, now())? {
        return Err(Error::AddressLocked { retry_after });
    }
    let account_slot = reserve_account(&throttle, &email.normalized())?;
    let address_slot = match throttle.reserve(&ADDRESSES, &address, now())? {
        Ok(slot) => slot,
        Err(retry_after) => {
            throttle.settle(&account_slot, Fate::Release)?;
            return Err(Error::AddressLocked { retry_after });
        }
    };
    let settle = |check: Check| {
        let (account, address) = login::settle(check);
        throttle.settle(&account_slot, account)?;
        throttle.settle(&address_slot, address)
    };
    let looked_up = Db::open(&cfg.db_url).and_then(|db| Ok((db.user_by_email(&email)?, db)));
    let (found, db) = looked_up.or_else(|e| settle(Check::NotChecked).and(Err(e)))?;
    // An unknown email costs the work of a wrong password, so timing does not tell them apart.
    let hash = found
        .as_ref()
        .map_or(password::DUMMY_HASH, |u| &u.password_hash);
    let check = Check::of(found.is_some(), password::verify(hash, &body.password));
    settle(check)?;
    let (Check::Granted { rehash: weak }, Some(mut user)) = (check, found) else {
        return Err(Error::InvalidCredentials);
    };
    if weak {
        rehash(&db, &user, &body.password);
    }
    user = bootstrap_admin(cfg, &db, &email, user)?;
    let token = new_refresh_token()?;
    db.start_login(user.id, &token.hash, cfg.session_lifetime)?;
    // Retention rides on logins, best effort: the login is already committed.
    if let Err(e) = db.purge_expired_logins() {
        eprintln!("user: purging expired logins failed: {e:?}");
    }
    Ok(token_pair(cfg, &user, token.token))
}

/// Upgrades a hash made with weaker parameters; a failure is logged and the login goes on.
fn rehash(db: &Db, user: &User, password: &str) {
    let upgraded = password::hash(password)
        .map_err(|e| Error::Internal(e.0))
        .and_then(|h| db.set_password_hash(user.id, &h));
    if let Err(e) = upgraded {
        eprintln!("user: rehash of {} failed: {e:?}", user.id);
    }
}

/// Makes the holder of a listed address an admin at login (`domain::admin::on_login`).
fn bootstrap_admin(cfg: &Config, db: &Db, email: &Email, user: User) -> Result<User, Error> {
    let listed = cfg.admin_emails.lists(email);
    let held = if listed { db.reservation(email)? } else { None };
    let mut decision = admin::on_login(listed, user.id, user.role, held);
    if decision == OnLogin::Claim {
        let held = db.claim_reservation(email, user.id)?;
        decision = admin::on_login(listed, user.id, user.role, Some(held));
    }
    if decision != OnLogin::Promote {
        return Ok(user);
    }
    db.set_role(user.id, Role::Admin, false)?
        .ok_or(Error::InvalidCredentials)
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

fn parse_refresh_body(req: &Request) -> Result<Vec<u8>, Error> {
    let body: RefreshBody = parse_body(req)?;
    let (token, too_long) = (&body.refresh_token, "must be at most 256 characters");
    bounded(token, refresh::MAX_TOKEN_CHARS, too_long)
        .map_err(|m| Problem::invalid_field("refresh_token", m))?;
    Ok(refresh::hash(token))
}

pub fn refresh(req: &Request, cfg: &Config) -> Result<Response, Error> {
    let old = parse_refresh_body(req)?;
    let new = new_refresh_token()?;
    let db = Db::open(&cfg.db_url)?;
    match db.rotate(&old, &new.hash, cfg.session_lifetime)? {
        Rotation::Rotated(user) => Ok(token_pair(cfg, &user, new.token)),
        Rotation::Rejected => Err(Error::RefreshRejected),
        Rotation::Reused => {
            eprintln!("user: refresh token reuse detected; its login was revoked");
            Err(Error::RefreshRejected)
        }
    }
}

pub fn logout(req: &Request, cfg: &Config) -> Result<Response, Error> {
    let hash = parse_refresh_body(req)?;
    // Unknown or already revoked tokens are fine too: logging out is idempotent and says
    // nothing about whether the token existed.
    Db::open(&cfg.db_url)?.logout(&hash)?;
    Ok(empty(204))
}

pub fn jwks(cfg: &Config) -> Result<Response, Error> {
    let doc = jwks::from_config(&cfg.public_keys).map_err(Error::Internal)?;
    let mut resp = json(200, &doc);
    resp.set_header("cache-control", "public, max-age=300");
    Ok(resp)
}
