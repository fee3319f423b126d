//! Thin handlers, one file per area of pages, all methods of one request's [`Ctx`]. Every form
//! carries the session's CSRF token and is answered with a 303 (a reload never re-posts).

mod account;
mod admin;
mod carrier;
pub mod cart;
mod catalog;
mod checkout;
mod orders;
pub mod render;
mod seller;

use marketplace_shared::http::{self, header};
use marketplace_shared::query::Query;
use serde_json::{Value, json};
use spin_sdk::http::{Request, Response};
use uuid::Uuid;

use crate::clients::{Api, Call};
use crate::config::Config;
use crate::domain::cookie::{self, SessionId};
use crate::domain::csrf;
use crate::domain::form::{Form, query_string};
use crate::domain::session::{Claim, Refresh, Session, SignedIn};
use crate::error::Error;
use crate::store::Kv;

/// What a handler answers with.
pub enum Reply {
    /// Status, template, what it shows.
    Page(u16, &'static str, Value),
    Redirect(String),
}

pub fn page(template: &'static str, ctx: Value) -> Reply {
    Reply::Page(200, template, ctx)
}

impl Reply {
    /// A refused form's page again, saying `message`, as `status` (a 404 page stays as it is).
    fn refused(self, status: u16, message: impl Into<String>) -> Reply {
        match self {
            Reply::Page(200, template, mut ctx) => {
                ctx["message"] = json!(message.into());
                Reply::Page(status, template, ctx)
            }
            other => other,
        }
    }
}

/// Times a request waits (100 ms each) for another one's token refresh before going on.
const REFRESH_WAITS: u32 = 30;

/// What the sign-in page says when a session ended (expired, removed, tokens refused).
pub const SESSION_ENDED: &str = "Your session has ended. Please log in again.";

/// One request's state: the session and what must be written back.
pub struct Ctx<'a> {
    req: &'a Request,
    /// The query parameters the route allows (checked by the router).
    query: Query,
    api: Api<'a>,
    kv: Kv,
    now: i64,
    https: bool,
    sid: SessionId,
    session: Session,
    /// The session record changed and must be stored (and the cookie re-sent).
    dirty: bool,
    /// Signed out: the record is gone and the cookie is cleared.
    deleted: bool,
    /// The session was made for this request and is not stored yet.
    fresh: bool,
    /// The browser's session ended (expired, removed, tokens refused): the sign-in page says so.
    ended: bool,
}

fn random32() -> Result<[u8; 32], Error> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| Error::Internal(format!("random source: {e}")))?;
    Ok(b)
}

fn new_session(now: i64) -> Result<(SessionId, Session), Error> {
    let id = SessionId::from_bytes(random32()?);
    Ok((id, Session::new(csrf::token_from(random32()?), now)))
}

/// A redirect target from a form: a path on this site only (no `//host`, no scheme).
pub fn local_path(next: Option<&str>) -> String {
    let local = |n: &&str| {
        n.starts_with('/')
            && !n.starts_with("//")
            && !n.contains('\\')
            && n.len() < 500
            && !n.chars().any(char::is_control)
    };
    next.filter(local).unwrap_or("/").to_string()
}

/// Order ids and tracking numbers are opaque: only URL-safe ones are passed on.
pub fn opaque_id(raw: &str) -> Option<&str> {
    (raw.len() <= 100 && crate::domain::url_safe(raw)).then_some(raw)
}

/// A UUID from the path, or the 404 page naming what is missing (`product`, `shipment`).
pub fn uuid_or_404(raw: &str, what: &str) -> Result<Uuid, Error> {
    Uuid::try_parse(raw).map_err(|_| Error::page(404, format!("There is no such {what}.")))
}

impl<'a> Ctx<'a> {
    /// The browser's session (a new one if it has none that lives), its tokens refreshed.
    pub async fn start(req: &'a Request, cfg: &'a Config, query: Query) -> Result<Self, Error> {
        let kv = Kv::open()?;
        let now = chrono::Utc::now().timestamp();
        let presented = cookie::read(header(req, "cookie"));
        let mut existing = None;
        if let Some(id) = &presented {
            match kv.session(id)? {
                Some(s) if !s.is_expired(now) => existing = Some((id.clone(), s)),
                Some(_) => kv.forget(id)?,
                None => {}
            }
        }
        let fresh = existing.is_none();
        let (sid, mut session) = existing.map_or_else(|| new_session(now), Ok)?;
        let dirty = fresh || session.touch(now);
        let proto = header(req, "x-forwarded-proto");
        let mut ctx = Ctx {
            req,
            query,
            api: Api { cfg },
            kv,
            now,
            https: cookie::is_https(header(req, "spin-full-url"), proto),
            sid,
            session,
            dirty,
            deleted: false,
            fresh,
            ended: presented.is_some() && fresh,
        };
        ctx.refresh_if_needed().await?;
        Ok(ctx)
    }

    /// Refreshes the access token shortly before it expires, once per session (a refresh token
    /// works once: `domain::session::Claim`); other requests wait and use the new token.
    async fn refresh_if_needed(&mut self) -> Result<(), Error> {
        let lock = Uuid::new_v4().to_string();
        for _ in 0..REFRESH_WAITS {
            if !self.session.needs_refresh(self.now) {
                return Ok(());
            }
            match self.kv.claim_refresh(&self.sid, &lock, self.now)? {
                None => return self.restart(),
                Some(Claim::Fresh(s)) => {
                    self.session = s;
                    return Ok(());
                }
                Some(Claim::Mine(s)) => return self.refresh(s).await,
                Some(Claim::Busy) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
        // Another refresh took over 3 s: carry on with the tokens as they are.
        Ok(())
    }

    /// The refresh, by the lock's holder: refused (revoked, expired, reused), the session is
    /// signed out; the user service unreachable, it stays (the call needing the token fails).
    async fn refresh(&mut self, locked: Session) -> Result<(), Error> {
        let Some(spent) = locked.signed_in.map(|s| s.refresh_token) else {
            return Ok(());
        };
        let outcome = match self.api.call(Call::Refresh(&spent)).await {
            Ok(v) => SignedIn::from_answer(&v, self.now).map_or_else(
                || {
                    eprintln!("web: the user service answered a refresh without tokens");
                    Refresh::Failed
                },
                Refresh::Tokens,
            ),
            Err(e) if (400..500).contains(&e.status) => Refresh::Refused,
            Err(e) => {
                eprintln!("web: refresh failed: {} {}", e.status, e.detail);
                Refresh::Failed
            }
        };
        self.ended = outcome == Refresh::Refused;
        match self.kv.finish_refresh(&self.sid, &spent, outcome)? {
            Some(stored) => self.session = stored,
            None => self.restart()?,
        }
        Ok(())
    }

    /// The session record disappeared under us (signed out elsewhere): a new, anonymous one.
    fn restart(&mut self) -> Result<(), Error> {
        (self.sid, self.session) = new_session(self.now)?;
        (self.fresh, self.dirty, self.ended) = (true, true, true);
        Ok(())
    }

    /// The form of a POST, refused (403, nothing changed) without the session's CSRF token.
    pub fn form(&self) -> Result<Form, Error> {
        let form = Form::parse(self.req.body());
        if csrf::check(&self.session.csrf, form.raw(csrf::FIELD)) {
            return Ok(form);
        }
        let expired = "This form has expired or did not come from this site. Go back, reload the page and try again.";
        Err(Error::page(403, expired))
    }

    fn signed_in(&self) -> Option<&SignedIn> {
        self.session.signed_in.as_ref()
    }

    /// The access token; signed out, the sign-in page (coming back here afterwards).
    fn token(&self) -> Result<String, Error> {
        self.signed_in()
            .map(|s| s.access_token.clone())
            .ok_or(Error::SignIn)
    }

    /// The sign-in page, coming back afterwards to this page (a GET) or to the page the form
    /// was on (a POST cannot be repeated by a redirect: its `Referer`, when it is ours).
    fn to_login(&self) -> Reply {
        let back = if self.req.method().to_string().eq_ignore_ascii_case("GET") {
            let (p, q) = (http::path(self.req), self.req.query());
            if q.is_empty() {
                p.to_string()
            } else {
                format!("{p}?{q}")
            }
        } else {
            header(self.req, "referer")
                .and_then(|r| r.split_once("://").map(|(_, rest)| rest))
                .and_then(|rest| rest.find('/').map(|i| rest[i..].to_string()))
                .unwrap_or_else(|| "/".into())
        };
        let reason = if self.ended { "ended" } else { "" };
        let q = query_string([
            ("next", local_path(Some(&back)).as_str()),
            ("reason", reason),
        ]);
        Reply::Redirect(format!("/login?{q}"))
    }

    /// Stores what changed and renders the reply (or error page) with the navigation. A new
    /// visitor's session is kept only for a page handing out a form (`keep_new`), not crawlers.
    pub fn finish(mut self, result: Result<Reply, Error>, keep_new: bool) -> Response {
        if self.fresh && !keep_new {
            self.dirty = false;
        }
        let reply = match result {
            Ok(r) => r,
            Err(Error::SignIn) => {
                // Tokens a service refused (revoked, expired beyond refresh): the login ended.
                if self.session.signed_in.take().is_some() {
                    (self.ended, self.dirty) = (true, !self.deleted);
                }
                self.to_login()
            }
            Err(e) => {
                let p = e.into_page();
                let ctx = json!({"error": p, "title": p.title});
                Reply::Page(p.status, "error.html", ctx)
            }
        };
        let cookie = if self.deleted {
            Some(cookie::clear(self.https))
        } else if self.dirty {
            if let Err(e) = self.kv.put_session(&self.sid, &self.session) {
                return render::bare_error(e.into());
            }
            let max_age = self.session.max_age(self.now);
            Some(cookie::set(&self.sid, self.https, max_age))
        } else {
            None
        };
        let (status, template, mut ctx) = match reply {
            Reply::Redirect(to) => return render::redirect(&to, cookie.as_deref()),
            Reply::Page(status, template, ctx) => (status, template, ctx),
        };
        let cart = (!self.deleted).then(|| self.kv.cart(&self.sid));
        let units = cart.and_then(Result::ok).map_or(0, |c| c.units());
        let user = self.session.signed_in.as_ref().filter(|_| !self.deleted);
        ctx["nav"] =
            json!({"user": user.map(|s| &s.user), "cart_units": units, "csrf": self.session.csrf});
        match render::render(template, &ctx) {
            Ok(body) => render::html(status, body, cookie.as_deref()),
            Err(e) => render::bare_error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_after_login_stay_on_this_site() {
        assert_eq!(local_path(Some("/checkout")), "/checkout");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "evil",
            "",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn only_url_safe_opaque_ids_are_passed_on() {
        assert_eq!(opaque_id("o01_abc-9"), Some("o01_abc-9"));
        for bad in ["", "a/b", "a?b", "../x", "a b", &"x".repeat(101)] {
            assert_eq!(opaque_id(bad), None, "{bad}");
        }
    }
}
