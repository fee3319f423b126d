//! Accounts: register, log in (a new session id each time), log out (the refresh token is
//! revoked).

use marketplace_shared::http::header;
use serde_json::{Value, json};

use super::{Ctx, Reply, SESSION_ENDED, local_path, new_session, page};
use crate::clients::{ApiError, Call};
use crate::domain::form::Form;
use crate::domain::session::SignedIn;
use crate::error::Error;

impl Ctx<'_> {
    pub fn register_form(&mut self) -> Result<Reply, Error> {
        let ctx = json!({"form": {"role": "buyer"}, "errors": {}, "title": "Register"});
        Ok(page("register.html", ctx))
    }

    pub async fn register(&mut self, form: &Form) -> Result<Reply, Error> {
        let email = form.get("email").unwrap_or("");
        let password = form.raw("password").unwrap_or("");
        let display_name = form.get("display_name").unwrap_or("");
        let role = match form.get("role") {
            Some("seller") => "seller",
            _ => "buyer",
        };
        let body = json!({"email": email, "password": password, "display_name": display_name, "role": role});
        match self.api.call(Call::Register(body)).await {
            Ok(_) => {}
            Err(e) if matches!(e.status, 409 | 422 | 429) => {
                let refill = json!({"email": email, "display_name": display_name, "role": role});
                let ctx = json!({"form": refill, "errors": e.errors, "message": e.detail_or_default(), "title": "Register"});
                return Ok(Reply::Page(e.status, "register.html", ctx));
            }
            Err(e) => return Err(e.into()),
        }
        let tokens = self.login_call(email, password).await?;
        self.sign_in(&tokens).await?;
        Ok(Reply::Redirect("/".into()))
    }

    pub fn login_form(&mut self) -> Result<Reply, Error> {
        let next = local_path(self.query.get("next"));
        let ended = self.query.get("reason") == Some("ended");
        let ctx = json!({"next": next, "form": {}, "message": ended.then_some(SESSION_ENDED), "title": "Log in"});
        Ok(page("login.html", ctx))
    }

    pub async fn login(&mut self, form: &Form) -> Result<Reply, Error> {
        let email = form.get("email").unwrap_or("");
        let password = form.raw("password").unwrap_or("");
        let next = local_path(form.get("next"));
        match self.login_call(email, password).await {
            Ok(tokens) => {
                self.sign_in(&tokens).await?;
                Ok(Reply::Redirect(next))
            }
            Err(e) if matches!(e.status, 400 | 401 | 422 | 429) => {
                let ctx = json!({"next": next, "form": {"email": email}, "message": e.detail_or_default(), "title": "Log in"});
                Ok(Reply::Page(e.status, "login.html", ctx))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Logs in at the user service, passing on the browser's address chain.
    async fn login_call(&self, email: &str, password: &str) -> Result<Value, ApiError> {
        let body = json!({"email": email, "password": password});
        let chain = self.client_chain();
        self.api.call(Call::Login(body, chain.as_deref())).await
    }

    /// The browser's address and the proxies before us, for the user service's login limits.
    fn client_chain(&self) -> Option<String> {
        let peer = header(self.req, "spin-client-addr").map(|a| {
            let host = a.rsplit_once(':').map_or(a, |(h, _)| h);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        });
        match (header(self.req, "x-forwarded-for"), peer) {
            (Some(xff), Some(p)) => Some(format!("{xff}, {p}")),
            (Some(xff), None) => Some(xff.to_string()),
            (None, p) => p,
        }
    }

    /// Starts a signed-in session under a NEW id (no session fixation); the cart comes along.
    async fn sign_in(&mut self, v: &Value) -> Result<(), Error> {
        let fresh = SignedIn::from_answer(v, self.now).ok_or_else(|| {
            Error::Internal("the user service answered a login without tokens".into())
        })?;
        let previous = self.session.signed_in.take();
        self.revoke(previous).await;
        let (new_id, mut session) = new_session(self.now)?;
        let cart = self.kv.cart(&self.sid)?;
        self.kv.put_cart(&new_id, &cart)?;
        self.kv.forget(&self.sid)?;
        session.signed_in = Some(fresh);
        (self.sid, self.session, self.dirty) = (new_id, session, true);
        Ok(())
    }

    /// Revokes a login's refresh token at the user service. A failure is logged, not shown:
    /// the session is gone either way and the token expires on its own.
    async fn revoke(&self, signed_in: Option<SignedIn>) {
        let Some(s) = signed_in else { return };
        if let Err(e) = self.api.call(Call::Logout(&s.refresh_token)).await {
            eprintln!(
                "web: revoking a refresh token failed: {} {}",
                e.status, e.detail
            );
        }
    }

    pub async fn logout(&mut self) -> Result<Reply, Error> {
        let signed_in = self.session.signed_in.take();
        self.revoke(signed_in).await;
        self.kv.forget(&self.sid)?;
        self.deleted = true;
        Ok(Reply::Redirect("/".into()))
    }
}
