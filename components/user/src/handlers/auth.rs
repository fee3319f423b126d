//! `/api/auth/*`: registration, login, refresh, logout, the JWKS.

use marketplace_shared::http::{empty, header, json, parse_body};
use marketplace_shared::tokens::WireClaims;
use marketplace_shared::{FieldErrors, Problem, Role};
use serde::{Deserialize, Serialize};
use spin_sdk::http::{Request, Response};
use uuid::Uuid;

use super::{check_presented_password, hash_password, now, parse_email, reserve_account};
use crate::config::Config;
use crate::domain::admin::{self, OnLogin};
use crate::domain::login::{self, Check, Fate};
use crate::domain::password::{self, PasswordCheck};
use crate::domain::throttle::ADDRESSES;
use crate::domain::{
    ACCESS_TOKEN_TTL_SECS, DisplayName, Email, Password, RegistrationRole, client, jwks, refresh,
};
use crate::error::Error;
use crate::store::{Db, NewLogin, Rotation, Slot, Throttle, User, UserView};

#[derive(Serialize)]
struct TokenPair {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
    user: UserView,
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
    json(
        200,
        &TokenPair {
            access_token,
            token_type: "Bearer",
            expires_in: ACCESS_TOKEN_TTL_SECS,
            refresh_token,
            user: user.view(),
        },
    )
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
    let email = parse_email(&mut errors, &body.email);
    let password = Password::parse(&body.password)
        .map_err(|m| errors.add("password", m))
        .ok();
    let name = DisplayName::parse(&body.display_name)
        .map_err(|m| errors.add("display_name", m))
        .ok();
    let role = RegistrationRole::parse(body.role.as_deref())
        .map_err(|m| errors.add("role", m))
        .ok();
    let (Some(email), Some(password), Some(name), Some(role)) = (email, password, name, role)
    else {
        return Err(Problem::validation(errors).into());
    };
    let (role, reserve) = admin::registration(cfg.admin_emails.lists(&email), role);
    let hash = hash_password(&password)?;
    let db = Db::open(&cfg.db_url)?;
    let user = db.insert_user(&email, name.as_str(), role, &hash, reserve)?;
    let mut resp = json(201, &user.view());
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

fn apply(throttle: &Throttle, slot: &Slot, fate: Fate) -> Result<(), Error> {
    match fate {
        Fate::Keep => Ok(()),
        Fate::Release => throttle.release(slot),
        Fate::Forget => throttle.forget(slot),
    }
}

pub fn login(req: &Request, cfg: &Config) -> Result<Response, Error> {
    let body: LoginBody = parse_body(req)?;
    let mut errors = FieldErrors::new();
    let email = parse_email(&mut errors, &body.email);
    check_presented_password(&mut errors, "password", &body.password);
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
            throttle.release(&account_slot)?;
            return Err(Error::AddressLocked { retry_after });
        }
    };
    let settle = |check: Check| {
        let (account, address) = login::settle(check);
        apply(&throttle, &account_slot, account)?;
        apply(&throttle, &address_slot, address)
    };
    let looked_up = Db::open(&cfg.db_url).and_then(|db| {
        let found = db.user_by_email(&email)?;
        Ok((db, found))
    });
    let (db, found) = match looked_up {
        Ok(v) => v,
        Err(e) => {
            settle(Check::NotChecked)?;
            return Err(e);
        }
    };
    let verified = match &found {
        Some(user) => password::verify(&user.password_hash, &body.password),
        None => {
            // Same work as a wrong password, so timing does not tell the two apart.
            password::verify_dummy(&body.password);
            PasswordCheck::Mismatch
        }
    };
    let check = Check::of(found.is_some(), verified);
    settle(check)?;
    let (Check::Granted { .. }, Some(mut user)) = (check, found) else {
        return Err(Error::InvalidCredentials);
    };
    if login::rehash(check) {
        rehash(&db, &user, &body.password);
    }
    user = bootstrap_admin(cfg, &db, &email, user)?;
    let token = new_refresh_token()?;
    let login = NewLogin {
        family_id: Uuid::now_v7(),
        token_hash: &token.hash,
    };
    db.start_login(user.id, &login, cfg.session_lifetime)?;
    // Retention rides on logins, best effort: the login is already committed.
    if let Err(e) = db.purge_expired_logins(login::EXPIRED_TOKEN_RETENTION_DAYS, login::PURGE_BATCH)
    {
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
    let n = body.refresh_token.chars().count();
    if n == 0 {
        return Err(Problem::invalid_field("refresh_token", "must not be empty").into());
    }
    if n > refresh::MAX_TOKEN_CHARS {
        return Err(
            Problem::invalid_field("refresh_token", "must be at most 256 characters").into(),
        );
    }
    Ok(refresh::hash(&body.refresh_token))
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
