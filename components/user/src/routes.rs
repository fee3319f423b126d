//! The route table and the thin handlers of the user service.
//!
//! Routes (spin.toml sends `/api/users/...` and `/api/auth/...` here):
//!
//! | method | path                          | handler          |
//! |--------|-------------------------------|------------------|
//! | POST   | /api/auth/register            | `register`       |
//! | POST   | /api/auth/login               | `login`          |
//! | POST   | /api/auth/refresh             | `refresh`        |
//! | POST   | /api/auth/logout              | `logout`         |
//! | GET    | /api/auth/jwks                | `jwks`           |
//! | GET    | /api/users/healthz            | `healthz`        |
//! | GET    | /api/users/readyz             | `readyz`         |
//! | GET    | /api/users/openapi.json       | `openapi`        |
//! | GET    | /api/users/me                 | `me`             |
//! | PATCH  | /api/users/me                 | `update_me`      |
//! | DELETE | /api/users/me                 | `delete_me`      |
//! | POST   | /api/users/me/password        | `change_password`|
//! | GET    | /api/users/{id}               | `get_user`       |
//! | PUT    | /api/users/{id}/role          | `set_role`       |

use marketplace_shared::query::Query;
use marketplace_shared::response::{empty, header, json, parse_body};
use marketplace_shared::tokens::{Principal, WireClaims};
use marketplace_shared::{FieldErrors, Problem};
use serde::{Deserialize, Serialize};
use spin_sdk::http::{Method, Request, Response};
use uuid::Uuid;

use crate::config::Config;
use crate::domain::account::parse_assignable_role;
use crate::domain::client;
use crate::domain::password::{self, PasswordCheck};
use crate::domain::throttle::{ACCOUNTS, ADDRESSES};
use crate::domain::{
    ACCESS_TOKEN_TTL_SECS, DisplayName, Email, Password, RegistrationRole, is_admin_email, jwks,
    refresh,
};
use crate::error::Error;
use crate::store::{Db, NewLogin, Rotation, Slot, Throttle, User, UserView};

/// The OpenAPI 3.1 document of this component.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Which endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Register,
    Login,
    Refresh,
    Logout,
    Jwks,
    Healthz,
    Readyz,
    OpenApi,
    Me,
    MyPassword,
    User(Uuid),
    UserRole(Uuid),
}

/// Maps a path to its route and the methods it accepts; `None` for unknown paths.
/// Ids that are not UUIDs are unknown resources (404), like ids that do not exist.
fn resolve(path: &str) -> Option<(Route, &'static [&'static str])> {
    const POST: &[&str] = &["POST"];
    const GET: &[&str] = &["GET"];
    const ME: &[&str] = &["GET", "PATCH", "DELETE"];
    const PUT: &[&str] = &["PUT"];
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let route = match segments.as_slice() {
        ["api", "auth", "register"] => (Route::Register, POST),
        ["api", "auth", "login"] => (Route::Login, POST),
        ["api", "auth", "refresh"] => (Route::Refresh, POST),
        ["api", "auth", "logout"] => (Route::Logout, POST),
        ["api", "auth", "jwks"] => (Route::Jwks, GET),
        ["api", "users", "healthz"] => (Route::Healthz, GET),
        ["api", "users", "readyz"] => (Route::Readyz, GET),
        ["api", "users", "openapi.json"] => (Route::OpenApi, GET),
        ["api", "users", "me"] => (Route::Me, ME),
        ["api", "users", "me", "password"] => (Route::MyPassword, POST),
        ["api", "users", id] => (Route::User(Uuid::parse_str(id).ok()?), GET),
        ["api", "users", id, "role"] => (Route::UserRole(Uuid::parse_str(id).ok()?), PUT),
        _ => return None,
    };
    Some(route)
}

fn method_name(m: &Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        _ => "OTHER",
    }
}

/// Answers one request. Every error becomes a problem document here, and only here.
pub fn handle(req: Request) -> Response {
    let path = marketplace_shared::response::path(&req).to_string();
    let Some((route, allowed)) = resolve(&path) else {
        return Problem::not_found("no such resource").into();
    };
    let method = method_name(req.method());
    if !allowed.contains(&method) {
        return Problem::method_not_allowed(allowed).into();
    }
    match dispatch(route, method, &req) {
        Ok(resp) => resp,
        Err(e) => e.into(),
    }
}

fn dispatch(route: Route, method: &str, req: &Request) -> Result<Response, Error> {
    // No endpoint takes query parameters; refuse any rather than ignore them.
    Query::parse(req.query(), &[])?;
    match route {
        // Liveness and the document need no configuration or dependency.
        Route::Healthz => return Ok(json(200, &serde_json::json!({"status": "ok"}))),
        Route::OpenApi => {
            return Ok(Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(OPENAPI)
                .build());
        }
        _ => {}
    }
    let config = Config::load()?;
    match (route, method) {
        (Route::Register, _) => register(&config, req),
        (Route::Login, _) => login(&config, req),
        (Route::Refresh, _) => refresh_tokens(&config, req),
        (Route::Logout, _) => logout(&config, req),
        (Route::Jwks, _) => publish_jwks(&config),
        (Route::Readyz, _) => readyz(&config),
        (Route::Me, "GET") => me(&config, req),
        (Route::Me, "PATCH") => update_me(&config, req),
        (Route::Me, _) => delete_me(&config, req),
        (Route::MyPassword, _) => change_password(&config, req),
        (Route::User(id), _) => get_user(&config, req, id),
        (Route::UserRole(id), _) => set_role(&config, req, id),
        (Route::Healthz | Route::OpenApi, _) => Err(Error::Internal("unreachable route".into())),
    }
}

// ------------------------------------------------------------------ helpers

fn now() -> i64 {
    marketplace_shared::time::now().timestamp()
}

/// The caller, from the bearer token (401 otherwise).
fn principal(config: &Config, req: &Request) -> Result<Principal, Error> {
    Ok(config.verifier.authenticate(header(req, "authorization"))?)
}

/// The caller's live account: a valid token of a deleted account is refused with 401.
fn caller(config: &Config, req: &Request, db: &Db) -> Result<User, Error> {
    let p = principal(config, req)?;
    db.user_by_id(p.user_id)?.ok_or(Error::AccountGone)
}

fn require_admin(config: &Config, req: &Request) -> Result<Principal, Error> {
    let p = principal(config, req)?;
    if p.is_admin() {
        Ok(p)
    } else {
        Err(Error::AdminOnly)
    }
}

/// A password presented to prove identity (login, confirmation): only its length is bounded,
/// so an over-long value is refused before any hashing.
fn check_presented_password(errors: &mut FieldErrors, field: &str, value: &str) {
    if value.is_empty() {
        errors.add(field, "must not be empty");
    } else if value.chars().count() > password::MAX_CHARS {
        errors.add(field, "must be at most 128 characters");
    }
}

fn parse_email(errors: &mut FieldErrors, raw: &str) -> Option<Email> {
    Email::parse(raw).map_err(|m| errors.add("email", m)).ok()
}

fn hash_password(p: &Password) -> Result<String, Error> {
    password::hash(p.expose()).map_err(|e| Error::Internal(format!("hashing: {}", e.0)))
}

/// The name the per-address limit counts the caller under (`domain::client`). Spin's SDK
/// keeps one line of a repeated header, the last: the one the nearest proxy wrote.
fn client_address(config: &Config, req: &Request) -> String {
    client::subject(client::client_ip(
        header(req, "spin-client-addr"),
        header(req, "x-forwarded-for"),
        &config.trusted_proxies,
    ))
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
    let slot = reserve_account(&throttle, &user.email_normalized)?;
    match password::verify(&user.password_hash, password) {
        PasswordCheck::Match { .. } => throttle.forget(&slot),
        PasswordCheck::Mismatch => Err(Error::WrongPassword),
    }
}

#[derive(Serialize)]
struct TokenPair {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
    user: UserView,
}

fn access_token(config: &Config, user: &User) -> String {
    let iat = now();
    config.signer.sign(&WireClaims {
        sub: user.id.to_string(),
        role: user.role.as_str().to_string(),
        iss: config.issuer.clone(),
        aud: config.audience.clone(),
        iat,
        exp: iat + ACCESS_TOKEN_TTL_SECS,
        jti: Uuid::now_v7().to_string(),
    })
}

fn token_pair(config: &Config, user: &User, refresh_token: String) -> Response {
    json(
        200,
        &TokenPair {
            access_token: access_token(config, user),
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

// ------------------------------------------------------------------ auth

#[derive(Deserialize)]
struct RegisterBody {
    email: String,
    password: String,
    display_name: String,
    role: Option<String>,
}

fn register(config: &Config, req: &Request) -> Result<Response, Error> {
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
    let role = if is_admin_email(&config.admin_emails, &email) {
        marketplace_shared::Role::Admin
    } else {
        role.role()
    };
    let hash = hash_password(&password)?;
    let db = Db::open(&config.db_url)?;
    let user = db.insert_user(&email, name.as_str(), role, &hash)?;
    let mut resp = json(201, &user.view());
    resp.set_header("location", format!("/api/users/{}", user.id));
    Ok(resp)
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

fn login(config: &Config, req: &Request) -> Result<Response, Error> {
    let body: LoginBody = parse_body(req)?;
    let mut errors = FieldErrors::new();
    let email = parse_email(&mut errors, &body.email);
    check_presented_password(&mut errors, "password", &body.password);
    let Some(email) = email.filter(|_| errors.is_empty()) else {
        return Err(Problem::validation(errors).into());
    };
    let normalized = email.normalized();
    let address = client_address(config, req);
    // Both slots are taken before any hashing (a full window costs no Argon2), the address's
    // read first so that a client over its limit does not even write.
    let throttle = Throttle::open()?;
    if let Some(retry_after) = throttle.retry_after(&ADDRESSES, &address, now())? {
        return Err(Error::AddressLocked { retry_after });
    }
    let account_slot = reserve_account(&throttle, &normalized)?;
    let address_slot = match throttle.reserve(&ADDRESSES, &address, now())? {
        Ok(slot) => slot,
        Err(retry_after) => {
            throttle.release(&account_slot)?;
            return Err(Error::AddressLocked { retry_after });
        }
    };
    // A wrong password keeps both slots: they are its failure. The database failing before
    // any password was checked gives them back, so an outage locks nobody out.
    let looked_up = Db::open(&config.db_url).and_then(|db| {
        let found = db.user_by_email(&email)?;
        Ok((db, found))
    });
    let (db, found) = match looked_up {
        Ok(v) => v,
        Err(e) => {
            throttle.release(&account_slot)?;
            throttle.release(&address_slot)?;
            return Err(e);
        }
    };
    let check = match &found {
        Some(user) => password::verify(&user.password_hash, &body.password),
        None => {
            // Same work as a wrong password, so timing does not tell the two apart.
            password::verify_dummy(&body.password);
            PasswordCheck::Mismatch
        }
    };
    let (mut user, rehash) = match (found, check) {
        (Some(user), PasswordCheck::Match { rehash }) => (user, rehash),
        _ => return Err(Error::InvalidCredentials),
    };
    throttle.forget(&account_slot)?;
    throttle.release(&address_slot)?;
    if rehash {
        // Best effort: the login succeeds with the old hash if the upgrade fails.
        match password::hash(&body.password) {
            Ok(h) => {
                if let Err(e) = db.set_password_hash(user.id, &h) {
                    eprintln!("user: rehash of {} failed: {e:?}", user.id);
                }
            }
            Err(e) => eprintln!("user: rehash of {} failed: {}", user.id, e.0),
        }
    }
    if user.role != marketplace_shared::Role::Admin && is_admin_email(&config.admin_emails, &email)
    {
        user = db
            .set_role(user.id, marketplace_shared::Role::Admin)?
            .ok_or(Error::InvalidCredentials)?;
    }
    let token = new_refresh_token()?;
    db.start_login(
        user.id,
        &NewLogin {
            family_id: Uuid::now_v7(),
            token_hash: &token.hash,
        },
    )?;
    // Retention rides on logins: a small bounded purge of long-expired refresh tokens and
    // finished logins. Best effort: the login is already committed.
    if let Err(e) =
        db.purge_expired_logins(refresh::EXPIRED_TOKEN_RETENTION_DAYS, refresh::PURGE_BATCH)
    {
        eprintln!("user: purging expired logins failed: {e:?}");
    }
    Ok(token_pair(config, &user, token.token))
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

fn refresh_tokens(config: &Config, req: &Request) -> Result<Response, Error> {
    let old = parse_refresh_body(req)?;
    let new = new_refresh_token()?;
    let db = Db::open(&config.db_url)?;
    match db.rotate(&old, &new.hash)? {
        Rotation::Rotated(user) => Ok(token_pair(config, &user, new.token)),
        Rotation::Rejected => Err(Error::RefreshRejected),
        Rotation::Reused => {
            eprintln!("user: refresh token reuse detected; its login was revoked");
            Err(Error::RefreshRejected)
        }
    }
}

fn logout(config: &Config, req: &Request) -> Result<Response, Error> {
    let hash = parse_refresh_body(req)?;
    // Unknown or already revoked tokens are fine too: logging out is idempotent and says
    // nothing about whether the token existed.
    Db::open(&config.db_url)?.logout(&hash)?;
    Ok(empty(204))
}

fn publish_jwks(config: &Config) -> Result<Response, Error> {
    let doc = jwks::from_config(&config.public_keys).map_err(Error::Internal)?;
    let mut resp = json(200, &doc);
    resp.set_header("cache-control", "public, max-age=300");
    Ok(resp)
}

fn readyz(config: &Config) -> Result<Response, Error> {
    Db::open(&config.db_url)?.ping()?;
    Throttle::open()?.ping()?;
    Ok(json(200, &serde_json::json!({"status": "ready"})))
}

// ------------------------------------------------------------------ the caller's account

fn me(config: &Config, req: &Request) -> Result<Response, Error> {
    let db = Db::open(&config.db_url)?;
    let user = caller(config, req, &db)?;
    Ok(json(200, &user.view()))
}

#[derive(Deserialize)]
struct UpdateMeBody {
    display_name: Option<String>,
    email: Option<String>,
    /// Required with `email` (whoever holds a stolen token must not take the account over by
    /// moving its email, then resetting the password); ignored otherwise.
    current_password: Option<String>,
}

fn update_me(config: &Config, req: &Request) -> Result<Response, Error> {
    let principal = principal(config, req)?;
    let body: UpdateMeBody = parse_body(req)?;
    let mut errors = FieldErrors::new();
    let name = body.display_name.as_deref().and_then(|n| {
        DisplayName::parse(n)
            .map_err(|m| errors.add("display_name", m))
            .ok()
    });
    let email = body
        .email
        .as_deref()
        .and_then(|e| parse_email(&mut errors, e));
    // Taking a bootstrap admin address would make the next login an admin one.
    if let Some(e) = &email
        && !principal.is_admin()
        && is_admin_email(&config.admin_emails, e)
    {
        errors.add("email", "is reserved");
    }
    if body.email.is_some() {
        match body.current_password.as_deref() {
            Some(p) => check_presented_password(&mut errors, "current_password", p),
            None => errors.add("current_password", "is required to change the email"),
        }
    }
    errors.into_result()?;
    let db = Db::open(&config.db_url)?;
    if let Some(password) = body
        .current_password
        .as_deref()
        .filter(|_| body.email.is_some())
    {
        let user = caller(config, req, &db)?;
        confirm_password(&user, password)?;
    }
    let user = db
        .update_profile(
            principal.user_id,
            name.as_ref().map(DisplayName::as_str),
            email.as_ref(),
        )?
        .ok_or(Error::AccountGone)?;
    Ok(json(200, &user.view()))
}

#[derive(Deserialize)]
struct ChangePasswordBody {
    current_password: String,
    new_password: String,
}

fn change_password(config: &Config, req: &Request) -> Result<Response, Error> {
    principal(config, req)?;
    let body: ChangePasswordBody = parse_body(req)?;
    let mut errors = FieldErrors::new();
    check_presented_password(&mut errors, "current_password", &body.current_password);
    let new = Password::parse(&body.new_password)
        .map_err(|m| errors.add("new_password", m))
        .ok();
    let Some(new) = new.filter(|_| errors.is_empty()) else {
        return Err(Problem::validation(errors).into());
    };
    let db = Db::open(&config.db_url)?;
    let user = caller(config, req, &db)?;
    confirm_password(&user, &body.current_password)?;
    let hash = hash_password(&new)?;
    db.change_password(user.id, &hash)?;
    Ok(empty(204))
}

#[derive(Deserialize)]
struct DeleteMeBody {
    password: String,
}

fn delete_me(config: &Config, req: &Request) -> Result<Response, Error> {
    principal(config, req)?;
    let body: DeleteMeBody = parse_body(req)?;
    let mut errors = FieldErrors::new();
    check_presented_password(&mut errors, "password", &body.password);
    errors.into_result()?;
    let db = Db::open(&config.db_url)?;
    let user = caller(config, req, &db)?;
    confirm_password(&user, &body.password)?;
    db.delete_account(user.id)?;
    Ok(empty(204))
}

// ------------------------------------------------------------------ admin

fn get_user(config: &Config, req: &Request, id: Uuid) -> Result<Response, Error> {
    require_admin(config, req)?;
    let db = Db::open(&config.db_url)?;
    let user = db.user_by_id(id)?.ok_or(Error::UserNotFound)?;
    Ok(json(200, &user.view()))
}

#[derive(Deserialize)]
struct SetRoleBody {
    role: String,
}

fn set_role(config: &Config, req: &Request, id: Uuid) -> Result<Response, Error> {
    require_admin(config, req)?;
    let body: SetRoleBody = parse_body(req)?;
    let role = parse_assignable_role(&body.role).map_err(|m| Problem::invalid_field("role", m))?;
    let db = Db::open(&config.db_url)?;
    let user = db.set_role(id, role)?.ok_or(Error::UserNotFound)?;
    Ok(json(200, &user.view()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_knows_every_contract_path_and_its_methods() {
        let id = Uuid::now_v7();
        let cases: Vec<(String, Route, &[&str])> = vec![
            ("/api/auth/register".into(), Route::Register, &["POST"]),
            ("/api/auth/login".into(), Route::Login, &["POST"]),
            ("/api/auth/refresh".into(), Route::Refresh, &["POST"]),
            ("/api/auth/logout".into(), Route::Logout, &["POST"]),
            ("/api/auth/jwks".into(), Route::Jwks, &["GET"]),
            ("/api/users/healthz".into(), Route::Healthz, &["GET"]),
            ("/api/users/readyz".into(), Route::Readyz, &["GET"]),
            ("/api/users/openapi.json".into(), Route::OpenApi, &["GET"]),
            (
                "/api/users/me".into(),
                Route::Me,
                &["GET", "PATCH", "DELETE"],
            ),
            (
                "/api/users/me/password".into(),
                Route::MyPassword,
                &["POST"],
            ),
            (format!("/api/users/{id}"), Route::User(id), &["GET"]),
            (
                format!("/api/users/{id}/role"),
                Route::UserRole(id),
                &["PUT"],
            ),
        ];
        for (path, route, methods) in cases {
            assert_eq!(resolve(&path), Some((route, methods)), "{path}");
        }
    }

    #[test]
    fn unknown_paths_and_non_uuid_ids_are_not_found() {
        for path in [
            "/api/users",
            "/api/users/not-a-uuid",
            "/api/users/not-a-uuid/role",
            "/api/auth",
            "/api/auth/other",
            "/api/users/me/other",
        ] {
            assert_eq!(resolve(path), None, "{path}");
        }
    }

    #[test]
    fn the_openapi_document_is_valid_json_for_openapi_3_1() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    }
}
