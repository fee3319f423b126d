//! Templates (embedded at compile time, HTML auto-escaping on for every one of them) and the
//! headers every page carries.

use marketplace_shared::http;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use spin_sdk::http::Response;

use crate::error::Error;

/// The stylesheet, served at `/static/style.css`.
pub const CSS: &str = include_str!("../../static/style.css");

/// Every template, by name, embedded from `templates/`.
macro_rules! templates {
    ($($name:literal),+) => {
        &[$(($name, include_str!(concat!("../../templates/", $name)))),+]
    };
}
const TEMPLATES: &[(&str, &str)] = templates! {
    "base.html", "macros.html", "home.html", "search.html", "product.html", "register.html",
    "login.html", "cart.html", "checkout.html", "orders.html", "order.html", "track.html",
    "error.html", "sell.html", "product_form.html", "sales.html", "carrier.html", "admin.html"
};

/// The policy every HTML answer carries: nothing but our own stylesheet and images; no
/// script at all, no inline style, no framing, forms only to ourselves.
pub const CSP: &str = "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `2026-11-28T12:00:00Z` → `2026-11-28 12:00 UTC`.
fn when(ts: String) -> String {
    match (ts.get(0..10), ts.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => ts,
    }
}

/// `in_transit` → `in transit`.
fn words(s: &str) -> String {
    s.replace('_', " ")
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    // Explicitly HTML for every template, whatever its name: nothing reaches the page unescaped.
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.add_filter("money", crate::domain::money::format);
    env.add_filter("when", when);
    env.add_filter("words", words);
    // Each request is a fresh instance: the loader compiles only the templates the page names
    // (`get_template`, `extends`, `from`), not all of them.
    env.set_loader(|name| Ok(source(name).map(str::to_owned)));
    env
}

fn source(name: &str) -> Option<&'static str> {
    TEMPLATES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

pub fn render(name: &str, ctx: &serde_json::Value) -> Result<String, Error> {
    let env = env();
    let t = env
        .get_template(name)
        .map_err(|e| Error::Internal(format!("template {name}: {e}")))?;
    t.render(ctx)
        .map_err(|e| Error::Internal(format!("rendering {name}: {e:#}")))
}

/// What every answer carries ([`CSP`]; nothing cached: pages hold personal data and CSRF tokens).
const SECURITY: [(&str, &str); 5] = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
];

const HTML: &str = "text/html; charset=utf-8";

/// An answer with the security headers, the `Set-Cookie` value if any, and `extra`.
fn answer(
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    cookie: Option<&str>,
    extra: Option<(&str, &str)>,
) -> Response {
    let cookie = cookie.map(|c| ("set-cookie", c));
    let headers: Vec<_> = SECURITY.into_iter().chain(cookie).chain(extra).collect();
    http::bytes(status, content_type, body, &headers)
}

/// An HTML page; `cookie` is a `Set-Cookie` value.
pub fn html(status: u16, body: String, cookie: Option<&str>) -> Response {
    answer(status, HTML, body.into(), cookie, None)
}

/// A `303 See Other` (after a form post: reloading the next page never re-posts).
pub fn redirect(location: &str, cookie: Option<&str>) -> Response {
    let location = Some(("location", location));
    answer(303, "text/plain; charset=utf-8", vec![], cookie, location)
}

/// The stylesheet (cacheable: the one answer without `no-store`).
pub fn css() -> Response {
    let cache = ("cache-control", "public, max-age=3600");
    let headers: Vec<_> = SECURITY[..4].iter().copied().chain([cache]).collect();
    http::bytes(200, "text/css; charset=utf-8", CSS.into(), &headers)
}

/// An error page when not even a session could be had (configuration or store down).
pub fn bare_error(e: Error) -> Response {
    let p = e.into_page();
    let ctx = serde_json::json!({"nav": {}, "error": p, "title": p.title});
    match render("error.html", &ctx) {
        Ok(body) => html(p.status, body, None),
        Err(_) => html(p.status, p.detail, None),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_template_compiles() {
        let env = env();
        for (name, _) in TEMPLATES {
            env.get_template(name).expect(name);
        }
        assert!(env.get_template("nothing.html").is_err());
    }

    #[test]
    fn a_page_compiles_only_its_template_and_what_it_extends_or_imports() {
        let env = env();
        let page = env.get_template("login.html").unwrap();
        page.render(json!({"nav": {"csrf": "tok"}, "next": "/"}))
            .unwrap();
        let mut loaded: Vec<&str> = env.templates().map(|(name, _)| name).collect();
        loaded.sort_unstable();
        assert_eq!(loaded, ["base.html", "login.html", "macros.html"]);
    }

    #[test]
    fn what_a_product_says_is_escaped_never_markup() {
        let ctx = json!({
            "nav": {},
            "product": {"id": "p", "title": "<script>alert(1)</script>", "description": "\"><img src=x onerror=alert(1)>",
                        "price_cents": 100, "currency": "EUR", "stock": 1, "category": "x", "attributes": {}},
        });
        let page = render("product.html", &ctx).unwrap();
        assert!(!page.contains("<script>alert(1)"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
        assert!(!page.contains("<img src=x"));
    }

    /// ` onclick=`, ` onload=`…: an attribute starting with `on` and followed by `=`.
    fn has_inline_handler(source: &str) -> bool {
        source.match_indices(" on").any(|(i, _)| {
            let rest = &source[i + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        })
    }

    #[test]
    fn every_page_renders_with_what_the_services_answer() {
        let product = json!({"id": "0193a0c0-0000-7000-8000-000000000000", "title": "Lamp", "description": "Bright",
            "category": "home & garden", "price_cents": 1999, "currency": "EUR", "stock": 3, "status": "active",
            "attributes": {"colour": "red", "watts": 40, "dimmable": true}});
        let order = json!({"id": "o01abc", "status": "confirmed", "created_at": "2026-11-28T12:00:00Z",
            "items": [{"product_id": product["id"], "title": "Lamp", "quantity": 2, "unit_price_cents": 1999, "currency": "EUR"}],
            "total_cents": 3998, "currency": "EUR",
            "shipping_address": {"name": "Ada", "line1": "1 Road", "city": "Berlin", "postal_code": "10115", "country": "DE"}});
        let shipment = json!({"tracking_number": "TRK1", "status": "pending",
            "history": [{"status": "pending", "occurred_at": "2026-11-28T12:00:00Z", "location": null, "note": null}]});
        let cart = json!({"lines": [{"product": product, "quantity": 2, "line_cents": 3998, "available": true},
            {"product": {"id": "x", "title": "No longer available"}, "quantity": 1, "available": false}],
            "totals": [{"currency": "EUR", "cents": 3998}]});
        let user = json!({"id": "0193a0c0-0000-7000-8000-000000000001", "email": "cara@example.test",
            "display_name": "Cara", "role": "carrier", "created_at": "2026-11-28T12:00:00Z"});
        let nav = json!({"user": {"display_name": "Ada", "role": "admin"}, "cart_units": 3, "csrf": "tok"});
        let cases = json!([
            ["home.html", {"categories": ["lamps"], "products": [product]}],
            ["search.html", {"search": {"q": "lamp", "sort": "newest"}, "products": [product],
                "problems": ["x"], "next": "/search?cursor=a", "first": "/search",
                "sorts": crate::domain::search::SORTS}],
            ["product.html", {"product": product}],
            ["register.html", {"form": {"role": "seller"}, "errors": {"email": ["taken"]},
                "message": "m"}],
            ["login.html", {"next": "/", "form": {}, "message": "m"}],
            ["cart.html", {"cart": cart, "message": "m"}],
            ["checkout.html", {"cart": cart, "key": "k", "address": {"name": "Ada"},
                "errors": {"city": ["bad"]}}],
            ["checkout.html", {"empty": true}],
            ["orders.html", {"orders": [order], "next": "/orders?cursor=c", "paged": true}],
            ["order.html", {"order": order, "shipments": [shipment]}],
            ["order.html", {"order": order, "shipments": [], "shipments_error": "down"}],
            ["track.html", {"number": "TRK1", "tracking": shipment}],
            ["error.html", {"error": {"status": 404, "title": "Not found",
                "detail": "no such product"}}],
            ["admin.html", {"message": "no such user"}],
            ["admin.html", {"user": user, "roles": [["buyer", "Buyer"], ["carrier", "Carrier"]],
                "notice": "Role changed."}],
        ]);
        for case in cases.as_array().unwrap() {
            let (name, mut ctx) = (case[0].as_str().unwrap(), case[1].clone());
            ctx["nav"] = nav.clone();
            let page = render(name, &ctx).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert!(
                page.contains("name=\"csrf\" value=\"tok\""),
                "{name}: the logout form carries the token"
            );
        }
    }

    #[test]
    fn the_admin_page_shows_the_user_with_their_role_chosen_and_only_admins_see_its_link() {
        let user = json!({"id": "u1", "email": "cara@example.test", "display_name": "Cara",
            "role": "carrier", "created_at": "2026-11-28T12:00:00Z"});
        let roles = [["buyer", "Buyer"], ["carrier", "Carrier"]];
        let nav = |role: &str| json!({"user": {"display_name": "A", "role": role}, "csrf": "tok"});
        let ctx =
            json!({"nav": nav("admin"), "user": user, "roles": roles, "notice": "Role changed."});
        let page = render("admin.html", &ctx).unwrap();
        assert!(page.contains(r#"<option value="carrier" selected>Carrier</option>"#));
        assert!(page.contains(r#"<option value="buyer">Buyer</option>"#));
        assert!(page.contains(r#"action="/admin/users/u1/role""#));
        assert!(page.contains("Role changed."));
        assert!(page.contains(r#"<a href="/admin">Users</a>"#));
        for role in ["buyer", "seller", "carrier"] {
            let home = render("home.html", &json!({"nav": nav(role)})).unwrap();
            assert!(!home.contains(r#"href="/admin""#), "{role}");
        }
    }

    #[test]
    fn pages_carry_no_inline_script_or_style() {
        for (name, source) in TEMPLATES {
            assert!(!source.contains("<script"), "{name}");
            assert!(!source.contains("style="), "{name}");
            assert!(!source.contains("<style"), "{name}");
            assert!(!has_inline_handler(source), "{name} has no inline handler");
            assert!(!source.contains("|safe"), "{name} does not bypass escaping");
        }
    }
}
