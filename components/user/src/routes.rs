//! The route table of the user service (spin.toml sends `/api/users/...` and `/api/auth/...`
//! here). Routing policy, as in every service: paths match exactly (`/api/users/me/` is 404),
//! and query parameters are 400 on every route (none of these routes defines one).

use marketplace_shared::Problem;
use marketplace_shared::http::{path, query, segments};
use spin_sdk::http::{Method, Request, Response};
use uuid::Uuid;

use crate::config::Config;
use crate::error::Error;
use crate::handlers::{account, admin, auth, ops};

/// Which endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Register,
    Login,
    Refresh,
    Logout,
    Jwks,
    Healthz,
    Readyz,
    OpenApi,
    Me,
    UpdateMe,
    DeleteMe,
    ChangePassword,
    GetUser(Uuid),
    SetRole(Uuid),
}

/// The route of `method` on `path`: 404 for an unknown path (ids that are not UUIDs are
/// unknown resources, like ids that do not exist), 405 with `Allow` for a wrong method.
pub fn route(method: &Method, path: &str) -> Result<Route, Problem> {
    use Route::*;
    let not_found = || Problem::not_found("no such resource");
    let id = |s: &str| Uuid::parse_str(s).map_err(|_| not_found());
    let methods = match segments(path).as_slice() {
        ["api", "auth", "register"] => vec![("POST", Register)],
        ["api", "auth", "login"] => vec![("POST", Login)],
        ["api", "auth", "refresh"] => vec![("POST", Refresh)],
        ["api", "auth", "logout"] => vec![("POST", Logout)],
        ["api", "auth", "jwks"] => vec![("GET", Jwks)],
        ["api", "users", "healthz"] => vec![("GET", Healthz)],
        ["api", "users", "readyz"] => vec![("GET", Readyz)],
        ["api", "users", "openapi.json"] => vec![("GET", OpenApi)],
        ["api", "users", "me"] => vec![("GET", Me), ("PATCH", UpdateMe), ("DELETE", DeleteMe)],
        ["api", "users", "me", "password"] => vec![("POST", ChangePassword)],
        ["api", "users", user] => vec![("GET", GetUser(id(user)?))],
        ["api", "users", user, "role"] => vec![("PUT", SetRole(id(user)?))],
        _ => return Err(not_found()),
    };
    let name = method.to_string();
    let allowed: Vec<&str> = methods.iter().map(|(m, _)| *m).collect();
    let found = methods.into_iter().find(|(m, _)| *m == name);
    found
        .map(|(_, r)| r)
        .ok_or_else(|| Problem::method_not_allowed(&allowed))
}

/// Answers one request: route, refuse query parameters, call the route's handler. Every error
/// becomes a problem document here, and only here.
pub fn dispatch(req: &Request, cfg: &Config) -> Response {
    let handled = route(req.method(), path(req))
        .map_err(Error::from)
        .and_then(|route| {
            query(req, &[])?;
            call(route, req, cfg)
        });
    handled.unwrap_or_else(|e| Problem::from(e).into())
}

fn call(route: Route, req: &Request, cfg: &Config) -> Result<Response, Error> {
    match route {
        Route::Register => auth::register(req, cfg),
        Route::Login => auth::login(req, cfg),
        Route::Refresh => auth::refresh(req, cfg),
        Route::Logout => auth::logout(req, cfg),
        Route::Jwks => auth::jwks(cfg),
        Route::Healthz => Ok(ops::healthz()),
        Route::Readyz => ops::readyz(cfg),
        Route::OpenApi => Ok(ops::openapi()),
        Route::Me => account::me(req, cfg),
        Route::UpdateMe => account::update_me(req, cfg),
        Route::DeleteMe => account::delete_me(req, cfg),
        Route::ChangePassword => account::change_password(req, cfg),
        Route::GetUser(id) => admin::get_user(req, cfg, id),
        Route::SetRole(id) => admin::set_role(req, cfg, id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Method::{Delete, Get, Patch, Post, Put};
    use Route::*;

    #[test]
    fn the_route_table_knows_every_contract_path_and_method() {
        let id = Uuid::now_v7();
        let (user, role) = (format!("/api/users/{id}"), format!("/api/users/{id}/role"));
        let cases = [
            (Post, "/api/auth/register", Register),
            (Post, "/api/auth/login", Login),
            (Post, "/api/auth/refresh", Refresh),
            (Post, "/api/auth/logout", Logout),
            (Get, "/api/auth/jwks", Jwks),
            (Get, "/api/users/healthz", Healthz),
            (Get, "/api/users/readyz", Readyz),
            (Get, "/api/users/openapi.json", OpenApi),
            (Get, "/api/users/me", Me),
            (Patch, "/api/users/me", UpdateMe),
            (Delete, "/api/users/me", DeleteMe),
            (Post, "/api/users/me/password", ChangePassword),
            (Get, user.as_str(), GetUser(id)),
            (Put, role.as_str(), SetRole(id)),
        ];
        for (method, path, expected) in cases {
            assert_eq!(route(&method, path), Ok(expected), "{method:?} {path}");
        }
    }

    #[test]
    fn a_wrong_method_is_405_listing_the_allowed_ones() {
        let user = "/api/users/018f0000-0000-7000-8000-000000000000";
        for (method, path, allow) in [
            (Get, "/api/auth/login", "POST"),
            (Post, "/api/users/me", "GET, PATCH, DELETE"),
            (Get, "/api/users/me/password", "POST"),
            (Delete, user, "GET"),
        ] {
            let p = route(&method, path).unwrap_err();
            assert_eq!(p.status, 405, "{path}");
            assert_eq!(p.headers, vec![("allow", allow.to_string())]);
        }
    }

    #[test]
    fn unknown_paths_trailing_slashes_and_non_uuid_ids_are_not_found() {
        for path in [
            "/api/users",
            "/api/users/",
            "/api/users/me/",
            "/api/auth/login/",
            "/api/users/not-a-uuid",
            "/api/users/not-a-uuid/role",
            "/api/auth",
            "/api/auth/other",
            "/api/users/me/other",
            "/api//users/me",
        ] {
            let status = route(&Get, path).map_err(|p| p.status);
            assert_eq!(status, Err(404), "{path}");
        }
    }
}
