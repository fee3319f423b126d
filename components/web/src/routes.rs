//! The route table (spin.toml sends every path outside `/api/` and `/internal/` here) and the
//! dispatch; docs/storefront.md ("Pages") says what each page shows and does.

use marketplace_shared::Problem;
use marketplace_shared::http;
use spin_sdk::http::{Request, Response};

use crate::config::Config;
use crate::domain::form::Form;
use crate::error::Error;
use crate::handlers::cart::Change;
use crate::handlers::{Ctx, Reply, render};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Css,
    Health,
    /// A path under `/api/` or `/internal/` that no service claims: a JSON 404, not a page.
    ApiUnknown,
    Home,
    Search,
    Product(&'a str),
    RegisterForm,
    Register,
    LoginForm,
    Login,
    Logout,
    Cart,
    ChangeCart(Change),
    CheckoutForm,
    PlaceOrder,
    Orders,
    Order(&'a str),
    CancelOrder(&'a str),
    Track,
    Sell,
    NewProductForm,
    CreateProduct,
    EditProductForm(&'a str),
    UpdateProduct(&'a str),
    Archive(&'a str),
    Sales,
    Carrier,
    CarrierShipment(&'a str),
    CarrierScan(&'a str),
    Admin,
    AdminUser(&'a str),
    SetRole(&'a str),
}

/// The route of `method path`: 404 for a path that is no page, 405 (with `Allow`) for a
/// method the page does not take.
pub fn route<'a>(method: &str, path: &'a str) -> Result<Route<'a>, Problem> {
    use Route::*;
    let (get, post) = match http::segments(path).as_slice() {
        ["api", "web", "healthz"] => (Some(Health), None),
        ["api", ..] | ["internal", ..] => return Ok(ApiUnknown),
        [""] => (Some(Home), None),
        ["static", "style.css"] => (Some(Css), None),
        ["search"] => (Some(Search), None),
        ["products", id] if !id.is_empty() => (Some(Product(id)), None),
        ["register"] => (Some(RegisterForm), Some(Register)),
        ["login"] => (Some(LoginForm), Some(Login)),
        ["logout"] => (None, Some(Logout)),
        ["cart"] => (Some(Cart), None),
        ["cart", "add"] => (None, Some(ChangeCart(Change::Add))),
        ["cart", "update"] => (None, Some(ChangeCart(Change::Update))),
        ["cart", "remove"] => (None, Some(ChangeCart(Change::Remove))),
        ["checkout"] => (Some(CheckoutForm), Some(PlaceOrder)),
        ["orders"] => (Some(Orders), None),
        ["orders", id] if !id.is_empty() => (Some(Order(id)), None),
        ["orders", id, "cancel"] if !id.is_empty() => (None, Some(CancelOrder(id))),
        ["track"] => (Some(Track), None),
        ["sell"] => (Some(Sell), None),
        ["sell", "new"] => (Some(NewProductForm), Some(CreateProduct)),
        ["sell", "sales"] => (Some(Sales), None),
        ["sell", "products", id] if !id.is_empty() => {
            (Some(EditProductForm(id)), Some(UpdateProduct(id)))
        }
        ["sell", "products", id, "archive"] if !id.is_empty() => (None, Some(Archive(id))),
        ["carrier"] => (Some(Carrier), None),
        ["carrier", "shipments", id] if !id.is_empty() => (Some(CarrierShipment(id)), None),
        ["carrier", "shipments", id, "events"] if !id.is_empty() => (None, Some(CarrierScan(id))),
        ["admin"] => (Some(Admin), None),
        ["admin", "users", id] if !id.is_empty() => (Some(AdminUser(id)), None),
        ["admin", "users", id, "role"] if !id.is_empty() => (None, Some(SetRole(id))),
        _ => return Err(Problem::not_found("There is no page at this address.")),
    };
    match (method, get, post) {
        ("GET", Some(r), _) | ("POST", _, Some(r)) => Ok(r),
        _ => {
            let allowed = [get.map(|_| "GET"), post.map(|_| "POST")];
            let allowed: Vec<_> = allowed.into_iter().flatten().collect();
            let mut p = Problem::method_not_allowed(&allowed);
            p.detail = "This page does not accept that kind of request.".into();
            Err(p)
        }
    }
}

/// The query parameters each page defines (every other one is 400).
fn query_names(route: Route<'_>) -> &'static [&'static str] {
    match route {
        Route::Search => &[
            "q",
            "category",
            "min_price",
            "max_price",
            "in_stock",
            "sort",
            "cursor",
        ],
        Route::LoginForm => &["next", "reason"],
        Route::Orders | Route::Sales | Route::Sell => &["cursor"],
        Route::Track => &["number"],
        Route::Carrier => &["shipment_id"],
        Route::Admin => &["user_id"],
        Route::AdminUser(_) => &["changed"],
        _ => &[],
    }
}

/// The pages that show a new visitor a form carrying the session's CSRF token (the only
/// ones that store a new visitor's session).
fn hands_out_a_form(route: Route<'_>) -> bool {
    matches!(
        route,
        Route::Product(_) | Route::RegisterForm | Route::LoginForm
    )
}

pub async fn dispatch(req: &Request, cfg: &Config) -> Response {
    let method = req.method().to_string().to_ascii_uppercase();
    let routed = route(&method, http::path(req));
    match routed {
        Ok(Route::Css) => return render::css(),
        Ok(Route::Health) => return http::json(200, &serde_json::json!({"status": "ok"})),
        Ok(Route::ApiUnknown) => return Problem::not_found("no such resource").into(),
        _ => {}
    }
    let routed = routed.and_then(|r| http::query(req, query_names(r)).map(|q| (r, q)));
    let query = routed.as_ref().map(|(_, q)| q.clone()).unwrap_or_default();
    let mut ctx = match Ctx::start(req, cfg, query).await {
        Ok(c) => c,
        Err(e) => return render::bare_error(e),
    };
    let route = match routed {
        Ok((route, _)) => route,
        Err(refused) => {
            let allow = refused.headers.clone();
            let mut page = ctx.finish(Err(refused.into()), false);
            for (name, value) in allow {
                page.set_header(name, value);
            }
            return page;
        }
    };
    let result = handle(&mut ctx, route, method == "POST").await;
    ctx.finish(result, hands_out_a_form(route))
}

/// Calls the route's handler; a POST's form must carry the session's CSRF token.
async fn handle(ctx: &mut Ctx<'_>, route: Route<'_>, post: bool) -> Result<Reply, Error> {
    let form = if post { ctx.form()? } else { Form::default() };
    match route {
        Route::Home => ctx.home().await,
        Route::Search => ctx.search().await,
        Route::Product(id) => ctx.product(id).await,
        Route::RegisterForm => ctx.register_form(),
        Route::Register => ctx.register(&form).await,
        Route::LoginForm => ctx.login_form(),
        Route::Login => ctx.login(&form).await,
        Route::Logout => ctx.logout().await,
        Route::Cart => ctx.cart_page().await,
        Route::ChangeCart(change) => ctx.change_cart(change, &form).await,
        Route::CheckoutForm => ctx.checkout_form().await,
        Route::PlaceOrder => ctx.place_order(&form).await,
        Route::Orders => ctx.order_list(false).await,
        Route::Order(id) => ctx.order(id).await,
        Route::CancelOrder(id) => ctx.cancel(id).await,
        Route::Track => ctx.track().await,
        Route::Sell => ctx.my_products().await,
        Route::NewProductForm => ctx.product_form(None).await,
        Route::CreateProduct => ctx.save_product(None, &form).await,
        Route::EditProductForm(id) => ctx.product_form(Some(id)).await,
        Route::UpdateProduct(id) => ctx.save_product(Some(id), &form).await,
        Route::Archive(id) => ctx.archive(id).await,
        Route::Sales => ctx.order_list(true).await,
        Route::Carrier => ctx.carrier_lookup(),
        Route::CarrierShipment(id) => ctx.carrier_shipment(id).await,
        Route::CarrierScan(id) => ctx.scan(id, &form).await,
        Route::Admin => ctx.admin_lookup(),
        Route::AdminUser(id) => ctx.admin_user(id).await,
        Route::SetRole(id) => ctx.change_role(id, &form).await,
        Route::Css | Route::Health | Route::ApiUnknown => {
            Err(Error::page(404, "There is no page at this address."))
        }
    }
}

#[cfg(test)]
mod tests {
    use marketplace_shared::query::Query;

    use super::Route::*;
    use super::*;

    const P: &str = "0193a0c0-0000-7000-8000-000000000000";

    #[test]
    fn every_page_has_its_route_and_nothing_else_is_one() {
        let cases = [
            ("GET", "/", Home),
            ("GET", "/search", Search),
            ("GET", "/products/{p}", Product(P)),
            ("GET", "/register", RegisterForm),
            ("POST", "/register", Register),
            ("GET", "/login", LoginForm),
            ("POST", "/login", Login),
            ("POST", "/logout", Logout),
            ("GET", "/cart", Cart),
            ("POST", "/cart/add", ChangeCart(Change::Add)),
            ("POST", "/cart/update", ChangeCart(Change::Update)),
            ("POST", "/cart/remove", ChangeCart(Change::Remove)),
            ("GET", "/checkout", CheckoutForm),
            ("POST", "/checkout", PlaceOrder),
            ("GET", "/orders", Orders),
            ("GET", "/orders/o00abc", Order("o00abc")),
            ("POST", "/orders/o00abc/cancel", CancelOrder("o00abc")),
            ("GET", "/track", Track),
            ("GET", "/sell", Sell),
            ("GET", "/sell/new", NewProductForm),
            ("POST", "/sell/new", CreateProduct),
            ("GET", "/sell/sales", Sales),
            ("GET", "/sell/products/{p}", EditProductForm(P)),
            ("POST", "/sell/products/{p}", UpdateProduct(P)),
            ("POST", "/sell/products/{p}/archive", Archive(P)),
            ("GET", "/carrier", Carrier),
            ("GET", "/carrier/shipments/{p}", CarrierShipment(P)),
            ("POST", "/carrier/shipments/{p}/events", CarrierScan(P)),
            ("GET", "/admin", Admin),
            ("GET", "/admin/users/{p}", AdminUser(P)),
            ("POST", "/admin/users/{p}/role", SetRole(P)),
            ("GET", "/static/style.css", Css),
            ("GET", "/api/web/healthz", Health),
            ("GET", "/api/nothing", ApiUnknown),
            ("DELETE", "/internal/x/y", ApiUnknown),
        ];
        for (method, path, expected) in cases {
            let path = path.replace("{p}", P);
            assert_eq!(route(method, &path).ok(), Some(expected), "{method} {path}");
        }
        for path in [
            "/products/",
            "/orders/x/y",
            "/nowhere",
            "/cart/",
            "/search/",
            "//cart",
            "/admin/",
            "/admin/users",
            "/admin/users/",
            "/admin/users/x/role/y",
        ] {
            assert_eq!(route("GET", path).map_err(|p| p.status), Err(404), "{path}");
        }
    }

    #[test]
    fn a_method_a_page_does_not_take_is_405_with_allow() {
        for (m, p, allowed) in [
            ("POST", "/", "GET"),
            ("GET", "/logout", "POST"),
            ("DELETE", "/checkout", "GET, POST"),
            ("POST", "/admin", "GET"),
            ("PUT", "/admin/users/{p}/role", "POST"),
            ("POST", "/admin/users/{p}", "GET"),
        ] {
            let refused = route(m, &p.replace("{p}", P)).unwrap_err();
            assert_eq!(refused.status, 405, "{m} {p}");
            let allow = refused.headers.iter().find(|(n, _)| *n == "allow");
            assert_eq!(allow.map(|(_, v)| v.as_str()), Some(allowed), "{m} {p}");
        }
    }

    #[test]
    fn pages_take_only_their_own_query_parameters() {
        for (q, r, ok) in [
            ("q=lamp&in_stock=on&sort=newest", Search, true),
            ("next=%2Fcart&reason=ended", LoginForm, true),
            ("user_id=u1", Admin, true),
            ("changed=role", AdminUser(P), true),
            ("utm=1", Home, false),
            ("q=a&q=b", Search, false),
            ("x=1", Order("o1"), false),
            ("cursor=c", Cart, false),
            ("changed=role", Admin, false),
            ("user_id=u1", AdminUser(P), false),
            ("user_id=a&user_id=b", Admin, false),
            ("changed=role", SetRole(P), false),
        ] {
            let refused = Query::parse(q, query_names(r)).err().map(|p| p.status);
            assert_eq!(refused, (!ok).then_some(400), "{q} on {r:?}");
        }
    }

    #[test]
    fn only_pages_with_forms_store_a_new_visitors_session() {
        assert!(hands_out_a_form(Product("p")));
        assert!(hands_out_a_form(LoginForm));
        assert!(hands_out_a_form(RegisterForm));
        for r in [Home, Search, Track, Login, Cart, Admin, AdminUser(P)] {
            assert!(!hands_out_a_form(r), "{r:?}");
        }
    }
}
