//! The route table (spin.toml sends every path outside `/api/` and `/internal/` here) and
//! thin handlers. Every page is rendered server-side; every form posts to the same origin
//! with the session's CSRF token and answers with a 303, so a reload never re-posts.
//!
//! | method | path | page |
//! | --- | --- | --- |
//! | GET | / | home: categories, newest products, search box |
//! | GET | /search | search results (q, category, prices, in stock, sort, paging) |
//! | GET | /products/{id} | product page, add to cart |
//! | GET, POST | /register, /login | forms |
//! | POST | /logout | sign out (revokes the refresh token) |
//! | GET | /cart | the cart |
//! | POST | /cart/add, /cart/update, /cart/remove | change the cart |
//! | GET, POST | /checkout | shipping address, place the order (idempotent) |
//! | GET | /orders, /orders/{id} | my orders; one order with its shipment history |
//! | POST | /orders/{id}/cancel | cancel while allowed |
//! | GET | /track | public parcel tracking |
//! | GET | /sell, /sell/sales | a seller's products; their sales |
//! | GET, POST | /sell/new, /sell/products/{id} | create, edit (stock included) |
//! | POST | /sell/products/{id}/archive | archive |
//! | GET | /carrier, /carrier/shipments/{id} | a carrier's lookup and scan form |
//! | POST | /carrier/shipments/{id}/events | record a scan (idempotent per form) |
//! | GET | /static/style.css | the stylesheet |
//! | GET | /api/web/healthz | 200 JSON, no dependency checked |

use std::collections::BTreeMap;

use marketplace_shared::Problem;
use marketplace_shared::response::{self as resp, header};
use serde_json::{Value, json};
use spin_sdk::http::{Request, Response};
use uuid::Uuid;

use crate::clients::{Api, ApiError};
use crate::config::Config;
use crate::domain::cart::{CartLine, Quantity};
use crate::domain::cookie::{self, SessionId};
use crate::domain::csrf;
use crate::domain::form::{Form, query_string};
use crate::domain::search::{SORTS, Search};
use crate::domain::session::{Checkout, Session, SignedIn, User};
use crate::error::Error;
use crate::render;
use crate::store::Kv;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Css,
    Health,
    /// A path under `/api/` or `/internal/` that no service claims: a JSON 404, not a page.
    ApiUnknown,
    Home,
    Search,
    Product(&'a str),
    Register,
    Login,
    Logout,
    Cart,
    CartAdd,
    CartUpdate,
    CartRemove,
    Checkout,
    Orders,
    Order(&'a str),
    CancelOrder(&'a str),
    Track,
    Sell,
    SellNew,
    SellEdit(&'a str),
    SellArchive(&'a str),
    Sales,
    Carrier,
    CarrierShipment(&'a str),
    CarrierScan(&'a str),
}

const GET: &[&str] = &["GET"];
const POST: &[&str] = &["POST"];
const FORM: &[&str] = &["GET", "POST"];

fn route(path: &str) -> Option<(Route<'_>, &'static [&'static str])> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Some(match segments.as_slice() {
        [""] => (Route::Home, GET),
        ["static", "style.css"] => (Route::Css, GET),
        ["api", "web", "healthz"] => (Route::Health, GET),
        ["api", ..] | ["internal", ..] => (Route::ApiUnknown, GET),
        ["search"] => (Route::Search, GET),
        ["products", id] if !id.is_empty() => (Route::Product(id), GET),
        ["register"] => (Route::Register, FORM),
        ["login"] => (Route::Login, FORM),
        ["logout"] => (Route::Logout, POST),
        ["cart"] => (Route::Cart, GET),
        ["cart", "add"] => (Route::CartAdd, POST),
        ["cart", "update"] => (Route::CartUpdate, POST),
        ["cart", "remove"] => (Route::CartRemove, POST),
        ["checkout"] => (Route::Checkout, FORM),
        ["orders"] => (Route::Orders, GET),
        ["orders", id] if !id.is_empty() => (Route::Order(id), GET),
        ["orders", id, "cancel"] if !id.is_empty() => (Route::CancelOrder(id), POST),
        ["track"] => (Route::Track, GET),
        ["sell"] => (Route::Sell, GET),
        ["sell", "new"] => (Route::SellNew, FORM),
        ["sell", "sales"] => (Route::Sales, GET),
        ["sell", "products", id] if !id.is_empty() => (Route::SellEdit(id), FORM),
        ["sell", "products", id, "archive"] if !id.is_empty() => (Route::SellArchive(id), POST),
        ["carrier"] => (Route::Carrier, GET),
        ["carrier", "shipments", id] if !id.is_empty() => (Route::CarrierShipment(id), GET),
        ["carrier", "shipments", id, "events"] if !id.is_empty() => (Route::CarrierScan(id), POST),
        _ => return None,
    })
}

/// What a handler answers with.
enum Reply {
    Page {
        status: u16,
        template: &'static str,
        ctx: Value,
    },
    Redirect(String),
}

fn page(template: &'static str, ctx: Value) -> Reply {
    Reply::Page {
        status: 200,
        template,
        ctx,
    }
}

/// Answers one request.
pub async fn handle(req: Request) -> Response {
    let path = resp::path(&req).to_string();
    let method = req.method().to_string().to_ascii_uppercase();
    let found = route(&path);
    match found {
        Some((Route::Css, _)) if method == "GET" => return render::css(),
        Some((Route::Health, _)) if method == "GET" => {
            return resp::json(200, &json!({"status": "ok"}));
        }
        Some((Route::ApiUnknown, _)) => return Problem::not_found("no such resource").into(),
        _ => {}
    }
    let cfg = match Config::load() {
        Ok(c) => c,
        Err(e) => return bare_error(e),
    };
    let mut ctx = match Ctx::start(&req, &cfg).await {
        Ok(c) => c,
        Err(e) => return bare_error(e),
    };
    let result = match found {
        None => Err(Error::not_found()),
        Some((_, allowed)) if !allowed.contains(&method.as_str()) => {
            let mut r = ctx.finish(Err(Error::page(
                405,
                "This page does not accept that kind of request.",
            )));
            r.set_header("allow", allowed.join(", "));
            return r;
        }
        Some((r, _)) => ctx.dispatch(r, method == "POST").await,
    };
    // A new visitor's session is stored only once a page hands out its CSRF token in a form
    // (crawlers of the home page and of searches leave no records behind).
    if ctx.fresh && !found.is_some_and(|(r, _)| hands_out_a_form(r)) {
        ctx.dirty = false;
    }
    ctx.finish(result)
}

/// The pages that show a new visitor a form carrying the session's CSRF token.
fn hands_out_a_form(route: Route<'_>) -> bool {
    matches!(route, Route::Product(_) | Route::Register | Route::Login)
}

/// An error page when not even a session could be had (configuration or store down).
fn bare_error(e: Error) -> Response {
    let p = e.into_page();
    let ctx = json!({"nav": {}, "error": p, "title": p.title});
    match render::render("error.html", &ctx) {
        Ok(body) => render::html(p.status, body, None),
        Err(_) => render::html(p.status, p.detail, None),
    }
}

/// One request's state: configuration, the session and what must be written back.
struct Ctx<'a> {
    req: &'a Request,
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
}

fn random32() -> Result<[u8; 32], Error> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| Error::Internal(format!("random source: {e}")))?;
    Ok(b)
}

fn new_session(now: i64) -> Result<(SessionId, Session), Error> {
    Ok((
        SessionId::from_bytes(random32()?),
        Session::new(csrf::token_from(random32()?), now),
    ))
}

/// A redirect target from a form: a path on this site only (no `//host`, no scheme).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.len() < 500
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

/// Order ids and tracking numbers are opaque: only URL-safe ones are passed on.
fn opaque_id(raw: &str) -> Option<&str> {
    let ok = !raw.is_empty()
        && raw.len() <= 100
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(raw)
}

impl<'a> Ctx<'a> {
    async fn start(req: &'a Request, cfg: &'a Config) -> Result<Self, Error> {
        let kv = Kv::open()?;
        let now = chrono::Utc::now().timestamp();
        let https = cookie::is_https(
            header(req, "spin-full-url"),
            header(req, "x-forwarded-proto"),
        );
        let existing = match cookie::read(header(req, "cookie")) {
            Some(id) => match kv.session(&id)? {
                Some(s) if !s.is_expired(now) => Some((id, s)),
                Some(_) => {
                    kv.delete_session(&id)?;
                    kv.delete_cart(&id)?;
                    None
                }
                None => None,
            },
            None => None,
        };
        let fresh = existing.is_none();
        let (sid, session, dirty) = match existing {
            Some((id, mut s)) => {
                let touched = s.touch(now);
                (id, s, touched)
            }
            None => {
                let (id, s) = new_session(now)?;
                (id, s, true)
            }
        };
        let mut ctx = Ctx {
            req,
            api: Api::new(cfg),
            kv,
            now,
            https,
            sid,
            session,
            dirty,
            deleted: false,
            fresh,
        };
        ctx.refresh_if_needed().await;
        Ok(ctx)
    }

    /// Refreshes the access token shortly before it expires. A refused refresh (revoked,
    /// expired, reused) signs the session out; an unreachable user service leaves it as it
    /// is (the call that needs the token then fails on its own).
    async fn refresh_if_needed(&mut self) {
        if !self.session.needs_refresh(self.now) {
            return;
        }
        let Some(signed_in) = self.session.signed_in.clone() else {
            return;
        };
        match self.api.refresh(&signed_in.refresh_token).await {
            Ok(v) => match tokens(&v, self.now) {
                Some(fresh) => {
                    self.session.signed_in = Some(fresh);
                    self.dirty = true;
                }
                None => eprintln!("web: the user service answered a refresh without tokens"),
            },
            Err(e) if (400..500).contains(&e.status) => {
                self.session.signed_in = None;
                self.dirty = true;
            }
            Err(e) => eprintln!("web: refresh failed: {} {}", e.status, e.detail),
        }
    }

    fn signed_in(&self) -> Option<&SignedIn> {
        self.session.signed_in.as_ref()
    }

    /// The access token, or the sign-in page (coming back here afterwards).
    fn token(&self) -> Result<String, Reply> {
        match self.signed_in() {
            Some(s) => Ok(s.access_token.clone()),
            None => Err(self.to_login()),
        }
    }

    /// The sign-in page, coming back afterwards to this page (a GET) or to the page the form
    /// was on (a POST cannot be repeated by a redirect: its `Referer`, when it is ours).
    fn to_login(&self) -> Reply {
        let back = if self.req.method().to_string().eq_ignore_ascii_case("GET") {
            let q = self.req.query();
            let p = resp::path(self.req);
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
        Reply::Redirect(format!(
            "/login?{}",
            query_string([("next", local_path(Some(&back)).as_str())])
        ))
    }

    async fn dispatch(&mut self, route: Route<'_>, post: bool) -> Result<Reply, Error> {
        let form = if post {
            Form::parse(self.req.body())
        } else {
            Form::default()
        };
        if post && !csrf::check(&self.session.csrf, form.raw(csrf::FIELD)) {
            return Err(Error::page(
                403,
                "This form has expired or did not come from this site. Go back, reload the page and try again.",
            ));
        }
        match route {
            Route::Home => self.home().await,
            Route::Search => self.search().await,
            Route::Product(id) => self.product(id).await,
            Route::Register if post => self.register(&form).await,
            Route::Register => Ok(page(
                "register.html",
                json!({"form": {"role": "buyer"}, "errors": {}}),
            )),
            Route::Login if post => self.login(&form).await,
            Route::Login => {
                let q = Form::parse(self.req.query().as_bytes());
                Ok(page(
                    "login.html",
                    json!({"next": local_path(q.get("next")), "form": {}}),
                ))
            }
            Route::Logout => self.logout().await,
            Route::Cart => self.cart_page(None, 200).await,
            Route::CartAdd | Route::CartUpdate | Route::CartRemove => {
                self.change_cart(route, &form).await
            }
            Route::Checkout if post => self.place_order(&form).await,
            Route::Checkout => self.checkout_form().await,
            Route::Orders => self.orders().await,
            Route::Order(id) => self.order(id).await,
            Route::CancelOrder(id) => self.cancel(id).await,
            Route::Track => self.track().await,
            Route::Sell => self.my_products().await,
            Route::SellNew if post => self.save_product(None, &form).await,
            Route::SellNew => self.product_form(None).await,
            Route::SellEdit(id) if post => self.save_product(Some(id), &form).await,
            Route::SellEdit(id) => self.product_form(Some(id)).await,
            Route::SellArchive(id) => self.archive(id).await,
            Route::Sales => self.sales().await,
            Route::Carrier => self.carrier_lookup(),
            Route::CarrierShipment(id) => self.carrier_shipment(id, None, 200).await,
            Route::CarrierScan(id) => self.scan(id, &form).await,
            Route::Css | Route::Health | Route::ApiUnknown => Err(Error::not_found()),
        }
    }

    /// Stores what changed and renders the reply (or the error page) with the navigation.
    fn finish(mut self, result: Result<Reply, Error>) -> Response {
        let reply = match result {
            Ok(r) => r,
            Err(Error::SignIn) => {
                self.session.signed_in = None;
                self.dirty = true;
                self.to_login()
            }
            Err(e) => {
                let p = e.into_page();
                Reply::Page {
                    status: p.status,
                    template: "error.html",
                    ctx: json!({"error": p, "title": p.title}),
                }
            }
        };
        let cookie = if self.deleted {
            Some(cookie::clear(self.https))
        } else if self.dirty {
            if let Err(e) = self.kv.put_session(&self.sid, &self.session) {
                return bare_error(e);
            }
            Some(cookie::set(
                &self.sid,
                self.https,
                self.session.max_age(self.now),
            ))
        } else {
            None
        };
        match reply {
            Reply::Redirect(to) => render::redirect(&to, cookie.as_deref()),
            Reply::Page {
                status,
                template,
                mut ctx,
            } => {
                let units = if self.deleted {
                    0
                } else {
                    self.kv.cart(&self.sid).map(|c| c.units()).unwrap_or(0)
                };
                let nav = json!({
                    "user": self.session.signed_in.as_ref().filter(|_| !self.deleted).map(|s| &s.user),
                    "cart_units": units,
                    "csrf": self.session.csrf,
                });
                if let Some(obj) = ctx.as_object_mut() {
                    obj.insert("nav".into(), nav);
                }
                match render::render(template, &ctx) {
                    Ok(body) => render::html(status, body, cookie.as_deref()),
                    Err(e) => bare_error(e),
                }
            }
        }
    }

    // ------------------------------------------------------------ catalog

    async fn home(&mut self) -> Result<Reply, Error> {
        // The API has no category list: the categories of the newest hundred products.
        let newest = self.api.products("sort=newest&limit=100").await?;
        let items = newest["items"].as_array().cloned().unwrap_or_default();
        let mut categories: Vec<String> = items
            .iter()
            .filter_map(|p| p["category"].as_str().map(String::from))
            .collect();
        categories.sort();
        categories.dedup();
        categories.truncate(30);
        let featured: Vec<&Value> = items.iter().take(8).collect();
        Ok(page(
            "home.html",
            json!({"categories": categories, "products": featured, "sorts": SORTS}),
        ))
    }

    async fn search(&mut self) -> Result<Reply, Error> {
        let (search, problems) = Search::parse(self.req.query());
        let result = match self.api.products(&search.api_query()).await {
            Ok(v) => v,
            // A cursor or filter the product service refuses is shown, not a dead end.
            Err(e) if e.status == 400 || e.status == 422 => {
                let mut problems = problems;
                problems.push(e.detail_or_default());
                return Ok(Reply::Page {
                    status: e.status,
                    template: "search.html",
                    ctx: json!({"search": search, "problems": problems, "products": [], "sorts": SORTS}),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let next = result["next_cursor"]
            .as_str()
            .map(|c| format!("/search?{}", search.page_query(c)));
        let first =
            (!search.cursor.is_empty()).then(|| format!("/search?{}", search.page_query("")));
        Ok(page(
            "search.html",
            json!({"search": search, "problems": problems, "products": result["items"], "next": next, "first": first, "sorts": SORTS}),
        ))
    }

    async fn product(&mut self, id: &str) -> Result<Reply, Error> {
        let Ok(id) = Uuid::try_parse(id) else {
            return Err(Error::page(404, "There is no such product."));
        };
        let product = self.api.product(&id).await?;
        Ok(page(
            "product.html",
            json!({"product": product, "title": product["title"]}),
        ))
    }

    // ------------------------------------------------------------ accounts

    async fn register(&mut self, form: &Form) -> Result<Reply, Error> {
        let email = form.get("email").unwrap_or("");
        let password = form.raw("password").unwrap_or("");
        let display_name = form.get("display_name").unwrap_or("");
        let role = match form.get("role") {
            Some("seller") => "seller",
            _ => "buyer",
        };
        let refill = json!({"email": email, "display_name": display_name, "role": role});
        match self.api.register(email, password, display_name, role).await {
            Ok(_) => {}
            Err(e) if matches!(e.status, 409 | 422 | 429) => {
                return Ok(Reply::Page {
                    status: e.status,
                    template: "register.html",
                    ctx: json!({"form": refill, "errors": e.errors, "message": e.detail_or_default()}),
                });
            }
            Err(e) => return Err(e.into()),
        }
        let tokens = self
            .api
            .login(email, password, self.client_chain().as_deref())
            .await?;
        self.sign_in(&tokens).await?;
        Ok(Reply::Redirect("/".into()))
    }

    async fn login(&mut self, form: &Form) -> Result<Reply, Error> {
        let email = form.get("email").unwrap_or("");
        let password = form.raw("password").unwrap_or("");
        let next = local_path(form.get("next"));
        match self
            .api
            .login(email, password, self.client_chain().as_deref())
            .await
        {
            Ok(tokens) => {
                self.sign_in(&tokens).await?;
                Ok(Reply::Redirect(next))
            }
            Err(e) if matches!(e.status, 400 | 401 | 422 | 429) => Ok(Reply::Page {
                status: e.status,
                template: "login.html",
                ctx: json!({"next": next, "form": {"email": email}, "message": e.detail_or_default()}),
            }),
            Err(e) => Err(e.into()),
        }
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
        let fresh = tokens(v, self.now).ok_or_else(|| {
            Error::Internal("the user service answered a login without tokens".into())
        })?;
        let previous = self.session.signed_in.take();
        self.revoke(previous).await;
        let (new_id, mut session) = new_session(self.now)?;
        let cart = self.kv.cart(&self.sid)?;
        self.kv.put_cart(&new_id, &cart)?;
        self.kv.delete_cart(&self.sid)?;
        self.kv.delete_session(&self.sid)?;
        session.signed_in = Some(fresh);
        self.sid = new_id;
        self.session = session;
        self.dirty = true;
        Ok(())
    }

    /// Revokes a login's refresh token at the user service. A failure is logged, not shown:
    /// the session is gone either way and the token expires on its own.
    async fn revoke(&self, signed_in: Option<SignedIn>) {
        let Some(s) = signed_in else { return };
        if let Err(e) = self.api.logout(&s.refresh_token).await {
            eprintln!(
                "web: revoking a refresh token failed: {} {}",
                e.status, e.detail
            );
        }
    }

    async fn logout(&mut self) -> Result<Reply, Error> {
        let signed_in = self.session.signed_in.take();
        self.revoke(signed_in).await;
        self.kv.delete_cart(&self.sid)?;
        self.kv.delete_session(&self.sid)?;
        self.deleted = true;
        Ok(Reply::Redirect("/".into()))
    }

    // ------------------------------------------------------------ cart

    /// The lines with what the product service says about each product now.
    async fn lines_view(&self, lines: &[CartLine]) -> Result<Value, Error> {
        let mut out = Vec::new();
        let mut totals: BTreeMap<String, i64> = BTreeMap::new();
        for l in lines {
            match self.api.product(&l.product_id).await {
                Ok(p) => {
                    let unit = p["price_cents"].as_i64().unwrap_or(0);
                    let currency = p["currency"].as_str().unwrap_or("").to_string();
                    let line = unit.saturating_mul(i64::from(l.quantity));
                    *totals.entry(currency).or_default() += line;
                    out.push(json!({"product": p, "quantity": l.quantity, "line_cents": line, "available": p["status"] != "archived"}));
                }
                Err(ApiError { status: 404, .. }) => out.push(json!({
                    "product": {"id": l.product_id, "title": "No longer available"},
                    "quantity": l.quantity, "available": false,
                })),
                Err(e) => return Err(e.into()),
            }
        }
        let totals: Vec<Value> = totals
            .into_iter()
            .map(|(c, t)| json!({"currency": c, "cents": t}))
            .collect();
        Ok(json!({"lines": out, "totals": totals}))
    }

    async fn cart_page(&self, message: Option<String>, status: u16) -> Result<Reply, Error> {
        let cart = self.kv.cart(&self.sid)?;
        let view = self.lines_view(cart.lines()).await?;
        Ok(Reply::Page {
            status,
            template: "cart.html",
            ctx: json!({"cart": view, "message": message, "title": "Cart"}),
        })
    }

    async fn change_cart(&mut self, route: Route<'_>, form: &Form) -> Result<Reply, Error> {
        let Some(product_id) = form.get("product_id").and_then(|p| Uuid::try_parse(p).ok()) else {
            return Err(Error::page(422, "That is not a product of this shop."));
        };
        let mut cart = self.kv.cart(&self.sid)?;
        let changed = match route {
            Route::CartAdd => cart.add(
                product_id,
                Quantity::parse(form.get("quantity").unwrap_or("1"))?,
            ),
            Route::CartUpdate => cart.set(
                product_id,
                Quantity::parse(form.get("quantity").unwrap_or(""))?,
            ),
            _ => {
                cart.remove(product_id);
                Ok(())
            }
        };
        if let Err(e) = changed {
            return self.cart_page(Some(e.message()), 422).await;
        }
        self.kv.put_cart(&self.sid, &cart)?;
        Ok(Reply::Redirect("/cart".into()))
    }

    // ------------------------------------------------------------ checkout

    /// A checkout form with a fresh idempotency key, remembered with the lines it shows.
    fn new_checkout(&mut self, items: Vec<CartLine>) -> String {
        let key = Uuid::new_v4().to_string();
        self.session.remember_checkout(Checkout {
            key: key.clone(),
            items,
            created_at: self.now,
        });
        self.dirty = true;
        key
    }

    async fn checkout_form(&mut self) -> Result<Reply, Error> {
        if let Err(login) = self.token() {
            return Ok(login);
        }
        let cart = self.kv.cart(&self.sid)?;
        if cart.is_empty() {
            return Ok(page(
                "checkout.html",
                json!({"empty": true, "title": "Checkout"}),
            ));
        }
        let view = self.lines_view(cart.lines()).await?;
        let name = self
            .signed_in()
            .map(|s| s.user.display_name.clone())
            .unwrap_or_default();
        let key = self.new_checkout(cart.lines().to_vec());
        Ok(page(
            "checkout.html",
            json!({"cart": view, "key": key, "address": {"name": name}, "errors": {}, "title": "Checkout"}),
        ))
    }

    async fn place_order(&mut self, form: &Form) -> Result<Reply, Error> {
        let token = match self.token() {
            Ok(t) => t,
            Err(login) => return Ok(login),
        };
        let key = form.get("idempotency_key").unwrap_or("");
        let Some(checkout) = self.session.checkout(key).cloned() else {
            return Err(Error::page(
                409,
                "This checkout form is no longer valid. Please review your cart and check out again.",
            ));
        };
        let field = |n: &str| form.get(n).unwrap_or("").to_string();
        let mut address = json!({
            "name": field("name"), "line1": field("line1"), "city": field("city"),
            "postal_code": field("postal_code"), "country": field("country"),
        });
        if let Some(l2) = form.get("line2") {
            address["line2"] = json!(l2);
        }
        let items: Vec<Value> = checkout
            .items
            .iter()
            .map(|l| json!({"product_id": l.product_id, "quantity": l.quantity}))
            .collect();
        let body = json!({"items": items, "shipping_address": address});
        match self.api.place_order(&token, &checkout.key, body).await {
            Ok(order) => {
                let Some(id) = order["id"].as_str().and_then(opaque_id) else {
                    return Err(Error::Internal(
                        "the order service answered an order without a usable id".into(),
                    ));
                };
                // The ordered lines leave the cart (again, harmlessly, on a repeated submit).
                let mut cart = self.kv.cart(&self.sid)?;
                for l in &checkout.items {
                    cart.remove(l.product_id);
                }
                self.kv.put_cart(&self.sid, &cart)?;
                Ok(Reply::Redirect(format!("/orders/{id}")))
            }
            Err(e) if matches!(e.status, 409 | 422) => {
                // Shown again with a new key: the corrected form is a new attempt.
                let view = self.lines_view(&checkout.items).await?;
                let key = self.new_checkout(checkout.items.clone());
                Ok(Reply::Page {
                    status: e.status,
                    template: "checkout.html",
                    ctx: json!({"cart": view, "key": key, "address": address, "errors": shipping_errors(&e),
                                "message": e.detail_or_default(), "title": "Checkout"}),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    // ------------------------------------------------------------ orders

    async fn orders(&mut self) -> Result<Reply, Error> {
        let token = match self.token() {
            Ok(t) => t,
            Err(login) => return Ok(login),
        };
        let q = Form::parse(self.req.query().as_bytes());
        let cursor = q.get("cursor").unwrap_or("");
        let list = self.api.orders(&token, cursor).await?;
        let next = list["next_cursor"]
            .as_str()
            .map(|c| format!("/orders?{}", query_string([("cursor", c)])));
        Ok(page(
            "orders.html",
            json!({"orders": list["items"], "next": next, "paged": !cursor.is_empty(), "title": "My orders"}),
        ))
    }

    async fn order(&mut self, id: &str) -> Result<Reply, Error> {
        let token = match self.token() {
            Ok(t) => t,
            Err(login) => return Ok(login),
        };
        let Some(id) = opaque_id(id) else {
            return Err(Error::page(404, "There is no such order."));
        };
        let order = self.api.order(&token, id).await?;
        let (shipments, shipments_error) = match self.api.shipments_of(&token, id).await {
            Ok(v) => (v["items"].clone(), None),
            Err(e) if e.status == 401 => return Err(Error::SignIn),
            Err(e) => {
                eprintln!("web: shipments of {id}: {} {}", e.status, e.detail);
                (
                    json!([]),
                    Some("The shipment history cannot be shown right now."),
                )
            }
        };
        Ok(page(
            "order.html",
            json!({"order": order, "shipments": shipments, "shipments_error": shipments_error, "title": "Order"}),
        ))
    }

    async fn cancel(&mut self, id: &str) -> Result<Reply, Error> {
        let token = match self.token() {
            Ok(t) => t,
            Err(login) => return Ok(login),
        };
        let Some(id) = opaque_id(id) else {
            return Err(Error::page(404, "There is no such order."));
        };
        self.api.cancel_order(&token, id).await?;
        Ok(Reply::Redirect(format!("/orders/{id}")))
    }

    async fn track(&mut self) -> Result<Reply, Error> {
        let q = Form::parse(self.req.query().as_bytes());
        let Some(number) = q.get("number") else {
            return Ok(page("track.html", json!({"title": "Track a parcel"})));
        };
        let shown: String = number.chars().take(100).collect();
        let Some(valid) = opaque_id(number) else {
            return Ok(Reply::Page {
                status: 404,
                template: "track.html",
                ctx: json!({"number": shown, "message": "There is no parcel with that tracking number.", "title": "Track a parcel"}),
            });
        };
        match self.api.track(valid).await {
            Ok(t) => Ok(page(
                "track.html",
                json!({"number": shown, "tracking": t, "title": "Track a parcel"}),
            )),
            Err(e) if e.status == 404 => Ok(Reply::Page {
                status: 404,
                template: "track.html",
                ctx: json!({"number": shown, "message": "There is no parcel with that tracking number.", "title": "Track a parcel"}),
            }),
            Err(e) => Err(e.into()),
        }
    }

    // ------------------------------------------------------------ sellers

    async fn my_products(&mut self) -> Result<Reply, Error> {
        if let Err(login) = self.token() {
            return Ok(login);
        }
        let me = self
            .signed_in()
            .map(|s| s.user.id.clone())
            .unwrap_or_default();
        let q = Form::parse(self.req.query().as_bytes());
        let cursor = q.get("cursor").unwrap_or("");
        let query = query_string([
            ("seller_id", me.as_str()),
            ("sort", "newest"),
            ("limit", "20"),
            ("cursor", cursor),
        ]);
        let list = self.api.products(&query).await?;
        let next = list["next_cursor"]
            .as_str()
            .map(|c| format!("/sell?{}", query_string([("cursor", c)])));
        Ok(page(
            "sell.html",
            json!({"products": list["items"], "next": next, "paged": !cursor.is_empty(), "title": "My products"}),
        ))
    }

    async fn product_form(&mut self, id: Option<&str>) -> Result<Reply, Error> {
        let token = match self.token() {
            Ok(t) => t,
            Err(login) => return Ok(login),
        };
        let (product, refill) = match id {
            Some(id) => {
                let id = Uuid::try_parse(id)
                    .map_err(|_| Error::page(404, "There is no such product."))?;
                let p = self.api.own_product(&token, &id).await?;
                let refill = crate::domain::listing::refill_from(&p);
                (p, refill)
            }
            None => (Value::Null, json!({"currency": "EUR", "stock": "1"})),
        };
        Ok(page(
            "product_form.html",
            json!({"product": product, "form": refill, "errors": {}, "title": "Sell"}),
        ))
    }

    async fn save_product(&mut self, id: Option<&str>, form: &Form) -> Result<Reply, Error> {
        let token = match self.token() {
            Ok(t) => t,
            Err(login) => return Ok(login),
        };
        let id = match id {
            Some(raw) => Some(
                Uuid::try_parse(raw).map_err(|_| Error::page(404, "There is no such product."))?,
            ),
            None => None,
        };
        let listing = crate::domain::listing::parse(form);
        let product = json!({"id": id});
        let refused = |status: u16, errors: Value, message: Option<String>, refill: Value| {
            Reply::Page {
                status,
                template: "product_form.html",
                ctx: json!({"product": product, "form": refill, "errors": errors, "message": message, "title": "Sell"}),
            }
        };
        let body = match listing.body {
            Ok(b) => b,
            Err(errors) => return Ok(refused(422, json!(errors), None, listing.refill)),
        };
        let saved = match id {
            Some(id) => self.api.update_product(&token, &id, body).await,
            None => self.api.create_product(&token, body).await,
        };
        match saved {
            Ok(_) => Ok(Reply::Redirect("/sell".into())),
            Err(e) if e.status == 422 => Ok(refused(
                422,
                json!(crate::domain::listing::form_errors(&e.errors)),
                Some(e.detail_or_default()),
                listing.refill,
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn archive(&mut self, id: &str) -> Result<Reply, Error> {
        let token = match self.token() {
            Ok(t) => t,
            Err(login) => return Ok(login),
        };
        let id = Uuid::try_parse(id).map_err(|_| Error::page(404, "There is no such product."))?;
        self.api.archive_product(&token, &id).await?;
        Ok(Reply::Redirect("/sell".into()))
    }

    async fn sales(&mut self) -> Result<Reply, Error> {
        let token = match self.token() {
            Ok(t) => t,
            Err(login) => return Ok(login),
        };
        let q = Form::parse(self.req.query().as_bytes());
        let cursor = q.get("cursor").unwrap_or("");
        let list = self.api.sales(&token, cursor).await?;
        let next = list["next_cursor"]
            .as_str()
            .map(|c| format!("/sell/sales?{}", query_string([("cursor", c)])));
        Ok(page(
            "sales.html",
            json!({"sales": list["items"], "next": next, "paged": !cursor.is_empty(), "title": "My sales"}),
        ))
    }

    // ------------------------------------------------------------ carriers

    fn carrier_lookup(&mut self) -> Result<Reply, Error> {
        if let Err(login) = self.token() {
            return Ok(login);
        }
        let q = Form::parse(self.req.query().as_bytes());
        match q.get("shipment_id") {
            Some(id) if Uuid::try_parse(id).is_ok() => {
                Ok(Reply::Redirect(format!("/carrier/shipments/{id}")))
            }
            Some(_) => Ok(Reply::Page {
                status: 422,
                template: "carrier.html",
                ctx: json!({"message": "A shipment id looks like 01a2b3c4-0000-7000-8000-000000000000.", "title": "Scan"}),
            }),
            None => Ok(page("carrier.html", json!({"title": "Scan"}))),
        }
    }

    async fn carrier_shipment(
        &mut self,
        id: &str,
        message: Option<String>,
        status: u16,
    ) -> Result<Reply, Error> {
        let token = match self.token() {
            Ok(t) => t,
            Err(login) => return Ok(login),
        };
        let id = Uuid::try_parse(id).map_err(|_| Error::page(404, "There is no such shipment."))?;
        let shipment = self.api.shipment(&token, &id).await?;
        // One event id per form shown: a repeated submit of this form is recorded once.
        let event_id = Uuid::new_v4().to_string();
        Ok(Reply::Page {
            status,
            template: "carrier.html",
            ctx: json!({"shipment": shipment, "event_id": event_id, "message": message, "statuses": SCAN_STATUSES, "title": "Scan"}),
        })
    }

    async fn scan(&mut self, id: &str, form: &Form) -> Result<Reply, Error> {
        let token = match self.token() {
            Ok(t) => t,
            Err(login) => return Ok(login),
        };
        let shipment =
            Uuid::try_parse(id).map_err(|_| Error::page(404, "There is no such shipment."))?;
        let mut event = json!({
            "event_id": form.get("event_id").unwrap_or(""),
            "status": form.get("status").unwrap_or(""),
        });
        for k in ["location", "note"] {
            if let Some(v) = form.get(k) {
                event[k] = json!(v);
            }
        }
        match self.api.scan(&token, &shipment, event).await {
            Ok(_) => Ok(Reply::Redirect(format!("/carrier/shipments/{shipment}"))),
            Err(e) if matches!(e.status, 409 | 422) => {
                self.carrier_shipment(id, Some(e.detail_or_default()), e.status)
                    .await
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The scans a carrier may record, as the delivery service names them (it decides which
/// move is legal from where the parcel is).
const SCAN_STATUSES: &[(&str, &str)] = &[
    ("picked_up", "Picked up"),
    ("in_transit", "In transit (hub scan)"),
    ("out_for_delivery", "Out for delivery"),
    ("failed_attempt", "Delivery attempt failed"),
    ("delivered", "Delivered"),
    ("returned", "Returned to sender"),
];

impl From<crate::domain::cart::CartError> for Error {
    fn from(e: crate::domain::cart::CartError) -> Self {
        Error::page(422, e.message())
    }
}

/// The session's tokens from a login or refresh answer.
fn tokens(v: &Value, now: i64) -> Option<SignedIn> {
    let user = &v["user"];
    Some(SignedIn {
        user: User {
            id: user["id"].as_str()?.to_string(),
            email: user["email"].as_str().unwrap_or("").to_string(),
            display_name: user["display_name"].as_str().unwrap_or("").to_string(),
            role: user["role"].as_str().unwrap_or("").to_string(),
        },
        access_token: v["access_token"].as_str()?.to_string(),
        access_expires_at: now + v["expires_in"].as_i64().unwrap_or(900),
        refresh_token: v["refresh_token"].as_str()?.to_string(),
    })
}

/// Field errors of a refused order, keyed by the address field they name
/// (`shipping_address.city` → `city`); others under `_`.
fn shipping_errors(e: &ApiError) -> Value {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (field, msgs) in &e.errors {
        let key = field.strip_prefix("shipping_address.").unwrap_or("_");
        out.entry(key.to_string())
            .or_default()
            .extend(msgs.iter().cloned());
    }
    json!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_matches_the_pages() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("/", Some(GET)),
            ("/search", Some(GET)),
            ("/products/0193a0c0-0000-7000-8000-000000000000", Some(GET)),
            ("/register", Some(FORM)),
            ("/login", Some(FORM)),
            ("/logout", Some(POST)),
            ("/cart", Some(GET)),
            ("/cart/add", Some(POST)),
            ("/cart/update", Some(POST)),
            ("/cart/remove", Some(POST)),
            ("/checkout", Some(FORM)),
            ("/orders", Some(GET)),
            ("/orders/o00abc", Some(GET)),
            ("/orders/o00abc/cancel", Some(POST)),
            ("/track", Some(GET)),
            ("/sell", Some(GET)),
            ("/sell/new", Some(FORM)),
            ("/sell/sales", Some(GET)),
            (
                "/sell/products/0193a0c0-0000-7000-8000-000000000000",
                Some(FORM),
            ),
            (
                "/sell/products/0193a0c0-0000-7000-8000-000000000000/archive",
                Some(POST),
            ),
            ("/carrier", Some(GET)),
            (
                "/carrier/shipments/0193a0c0-0000-7000-8000-000000000000",
                Some(GET),
            ),
            (
                "/carrier/shipments/0193a0c0-0000-7000-8000-000000000000/events",
                Some(POST),
            ),
            ("/static/style.css", Some(GET)),
            ("/api/web/healthz", Some(GET)),
            ("/products/", None),
            ("/orders/x/y", None),
            ("/nowhere", None),
        ];
        for (path, expected) in cases {
            assert_eq!(route(path).map(|(_, m)| m), *expected, "{path}");
        }
    }

    #[test]
    fn unclaimed_api_paths_are_not_pages() {
        for p in ["/api/nothing", "/internal/x/y", "/api/web/other"] {
            assert_eq!(route(p).map(|(r, _)| r), Some(Route::ApiUnknown), "{p}");
        }
    }

    #[test]
    fn a_login_answer_becomes_the_sessions_tokens() {
        let v = json!({"access_token": "at", "token_type": "Bearer", "expires_in": 900, "refresh_token": "rt",
                       "user": {"id": "u1", "email": "a@b.c", "display_name": "Ada", "role": "buyer", "created_at": "x"}});
        let s = tokens(&v, 1000).unwrap();
        assert_eq!(
            (
                s.access_token.as_str(),
                s.refresh_token.as_str(),
                s.access_expires_at
            ),
            ("at", "rt", 1900)
        );
        assert_eq!(s.user.role, "buyer");
        assert!(
            tokens(&json!({"access_token": "at", "user": {"id": "u"}}), 0).is_none(),
            "no refresh token, no session"
        );
    }

    #[test]
    fn only_pages_with_forms_store_a_new_visitors_session() {
        assert!(hands_out_a_form(Route::Product("p")));
        assert!(hands_out_a_form(Route::Login));
        assert!(!hands_out_a_form(Route::Home));
        assert!(!hands_out_a_form(Route::Search));
        assert!(!hands_out_a_form(Route::Track));
    }

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
