//! An admin's pages: find a user by id, change their role (`GET /api/users/{id}`,
//! `PUT /api/users/{id}/role`, admins only at the user service too).

use serde_json::{Value, json};
use uuid::Uuid;

use super::{Ctx, Reply, page};
use crate::clients::Call;
use crate::domain::form::Form;
use crate::domain::role::{self, Role};
use crate::error::Error;

const TITLE: &str = "Users";
const AN_ID: &str = "A user id looks like 01a2b3c4-0000-7000-8000-000000000000.";

/// The page with the lookup form; `lookup` what was typed, `message` what went wrong.
fn lookup_page(status: u16, lookup: &str, message: &str) -> Reply {
    let ctx = json!({"lookup": lookup, "message": message, "title": TITLE});
    Reply::Page(status, "admin.html", ctx)
}

fn no_such_user(lookup: &str) -> Reply {
    lookup_page(404, lookup, "There is no user with that id.")
}

impl Ctx<'_> {
    /// The access token of a signed-in admin; signed out, the sign-in page; anyone else, a
    /// 403 page (the user service would refuse them too).
    fn admin_token(&self) -> Result<String, Error> {
        let token = self.token()?;
        match self.signed_in() {
            Some(s) if s.user.role == Role::Admin.as_str() => Ok(token),
            _ => Err(Error::page(403, "This page is for administrators only.")),
        }
    }

    /// `/admin`, and `/admin?user_id=…` → that user's page.
    pub fn admin_lookup(&mut self) -> Result<Reply, Error> {
        self.admin_token()?;
        let typed = self.query.get("user_id").map(str::trim).unwrap_or("");
        if typed.is_empty() {
            return Ok(page("admin.html", json!({"title": TITLE})));
        }
        match Uuid::try_parse(typed) {
            Ok(id) => Ok(Reply::Redirect(format!("/admin/users/{id}"))),
            Err(_) => {
                let shown: String = typed.chars().take(100).collect();
                Ok(lookup_page(422, &shown, AN_ID))
            }
        }
    }

    /// One user and the role form; after a change (`?changed=role`) a notice saying the role
    /// the user service now holds.
    pub async fn admin_user(&mut self, id: &str) -> Result<Reply, Error> {
        let token = self.admin_token()?;
        let Ok(uid) = Uuid::try_parse(id) else {
            return Ok(no_such_user(""));
        };
        let user = match self.api.call_as(&token, Call::User(uid)).await {
            Ok(u) => u,
            Err(e) if e.status == 404 => return Ok(no_such_user(&uid.to_string())),
            Err(e) => return Err(e.into()),
        };
        let notice = (self.query.get("changed") == Some("role")).then(|| role_notice(&user));
        let roles = role::OFFERED.map(|r| (r.as_str(), role::label(r)));
        let ctx =
            json!({"user": user, "lookup": uid, "roles": roles, "notice": notice, "title": TITLE});
        Ok(page("admin.html", ctx))
    }

    /// `POST /admin/users/{id}/role`: the new role, then back to the user's page (303).
    pub async fn change_role(&mut self, id: &str, form: &Form) -> Result<Reply, Error> {
        let token = self.admin_token()?;
        let Ok(uid) = Uuid::try_parse(id) else {
            return Ok(no_such_user(""));
        };
        let Some(role) = role::parse(form.get("role").unwrap_or("")) else {
            return Ok(self.admin_user(id).await?.refused(422, role::NOT_A_ROLE));
        };
        match self.api.call_as(&token, Call::SetRole(uid, role)).await {
            Ok(_) => Ok(Reply::Redirect(format!("/admin/users/{uid}?changed=role"))),
            Err(e) if e.status == 422 => {
                let page = self.admin_user(id).await?;
                Ok(page.refused(422, e.detail_or_default()))
            }
            Err(e) if e.status == 404 => Ok(no_such_user(&uid.to_string())),
            Err(e) => Err(e.into()),
        }
    }
}

/// "Role changed: Cara is now a carrier." from the user as the service answers now.
fn role_notice(user: &Value) -> String {
    let name = user["display_name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or("this user");
    match user["role"].as_str().and_then(role::parse) {
        Some(r) => format!("Role changed: {name} is now {}.", role::with_article(r)),
        None => "Role changed.".to_string(),
    }
}
