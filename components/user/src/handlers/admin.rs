//! `/api/users/{id}` and `/api/users/{id}/role`: admins only.

use marketplace_shared::Problem;
use marketplace_shared::http::{json, parse_body};
use serde::Deserialize;
use spin_sdk::http::{Request, Response};
use uuid::Uuid;

use super::principal;
use crate::config::Config;
use crate::domain::account::parse_assignable_role;
use crate::domain::admin::revokes_bootstrap;
use crate::error::Error;
use crate::store::Db;

fn require_admin(cfg: &Config, req: &Request) -> Result<(), Error> {
    let admin = principal(cfg, req)?.is_admin();
    admin.then_some(()).ok_or(Error::AdminOnly)
}

pub fn get_user(req: &Request, cfg: &Config, id: Uuid) -> Result<Response, Error> {
    require_admin(cfg, req)?;
    let db = Db::open(&cfg.db_url)?;
    let user = db.user_by_id(id)?.ok_or(Error::UserNotFound)?;
    Ok(json(200, &user))
}

#[derive(Deserialize)]
struct SetRoleBody {
    role: String,
}

/// Any role but `admin` also revokes the account's bootstrap-admin reservation, so that the
/// next login does not make it an admin again (`domain::admin`).
pub fn set_role(req: &Request, cfg: &Config, id: Uuid) -> Result<Response, Error> {
    require_admin(cfg, req)?;
    let body: SetRoleBody = parse_body(req)?;
    let role = parse_assignable_role(&body.role).map_err(|m| Problem::invalid_field("role", m))?;
    let db = Db::open(&cfg.db_url)?;
    let user = db
        .set_role(id, role, revokes_bootstrap(role))?
        .ok_or(Error::UserNotFound)?;
    Ok(json(200, &user))
}
