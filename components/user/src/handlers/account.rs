//! `/api/users/me` and `/api/users/me/password`: the caller's own account.

use marketplace_shared::http::{empty, json, parse_body};
use marketplace_shared::{FieldErrors, Problem};
use serde::Deserialize;
use spin_sdk::http::{Request, Response};

use super::{Fields, caller, confirm_password, hash_password, presented, principal};
use crate::config::Config;
use crate::domain::admin::{self, EmailChange};
use crate::domain::{DisplayName, Email, Password};
use crate::error::Error;
use crate::store::Db;

pub fn me(req: &Request, cfg: &Config) -> Result<Response, Error> {
    let db = Db::open(&cfg.db_url)?;
    let user = caller(cfg, req, &db)?;
    Ok(json(200, &user))
}

#[derive(Deserialize)]
struct UpdateMeBody {
    display_name: Option<String>,
    email: Option<String>,
    /// Required with `email` (whoever holds a stolen token must not take the account over by
    /// moving its email, then resetting the password); ignored otherwise.
    current_password: Option<String>,
}

pub fn update_me(req: &Request, cfg: &Config) -> Result<Response, Error> {
    let principal = principal(cfg, req)?;
    let body: UpdateMeBody = parse_body(req)?;
    let mut errors = FieldErrors::new();
    let name = body.display_name.as_deref().map(DisplayName::parse);
    let name = name.and_then(|n| errors.check("display_name", n));
    let email = body.email.as_deref().map(Email::parse);
    let email = email.and_then(|e| errors.check("email", e));
    if body.email.is_some() {
        let password = body.current_password.as_deref();
        let password = password.ok_or("is required to change the email");
        errors.check("current_password", password.and_then(presented));
    }
    errors.into_result()?;
    let db = Db::open(&cfg.db_url)?;
    if let (Some(email), Some(password)) = (&email, body.current_password.as_deref()) {
        let user = caller(cfg, req, &db)?;
        // A listed address stays with the account that first took it (`domain::admin`).
        admin::email_change(&cfg.admin_emails, &user.email, email).map_err(|c| match c {
            EmailChange::MovingOff => Error::AdminAddressKept,
            EmailChange::TargetReserved => Problem::invalid_field("email", "is reserved").into(),
        })?;
        confirm_password(&user, password)?;
    }
    let user = db
        .update_profile(
            principal.user_id,
            name.as_ref().map(DisplayName::as_str),
            email.as_ref(),
        )?
        .ok_or(Error::AccountGone)?;
    Ok(json(200, &user))
}

#[derive(Deserialize)]
struct ChangePasswordBody {
    current_password: String,
    new_password: String,
}

pub fn change_password(req: &Request, cfg: &Config) -> Result<Response, Error> {
    principal(cfg, req)?;
    let body: ChangePasswordBody = parse_body(req)?;
    let mut errors = FieldErrors::new();
    errors.check("current_password", presented(&body.current_password));
    let new = errors.check("new_password", Password::parse(&body.new_password));
    let Some(new) = new.filter(|_| errors.is_empty()) else {
        return Err(Problem::validation(errors).into());
    };
    let db = Db::open(&cfg.db_url)?;
    let user = caller(cfg, req, &db)?;
    confirm_password(&user, &body.current_password)?;
    let hash = hash_password(&new)?;
    db.change_password(user.id, &hash)?;
    Ok(empty(204))
}

#[derive(Deserialize)]
struct DeleteMeBody {
    password: String,
}

pub fn delete_me(req: &Request, cfg: &Config) -> Result<Response, Error> {
    principal(cfg, req)?;
    let body: DeleteMeBody = parse_body(req)?;
    presented(&body.password).map_err(|m| Problem::invalid_field("password", m))?;
    let db = Db::open(&cfg.db_url)?;
    let user = caller(cfg, req, &db)?;
    confirm_password(&user, &body.password)?;
    db.delete_account(user.id)?;
    Ok(empty(204))
}
