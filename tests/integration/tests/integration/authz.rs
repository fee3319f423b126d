//! The authorization matrix (issue #9): every operation of the four services' OpenAPI
//! documents, called as every kind of caller, with the exact status each must get (contract
//! `../shared/API.md` "Conventions" and each service's table, and each `openapi.json`).
//!
//! Callers (columns): anonymous, a forged admin token (right kid, untrusted key), the service
//! that legitimately calls the endpoint (for public endpoints: a service token addressed to the
//! service), another trusted service that may not call it, the buyer who owns the resources,
//! another buyer, the seller who owns the products, another seller, a carrier and an admin —
//! all real accounts registered through the user service.
//!
//! Besides the status, every answer is checked for: no 5xx; problem documents for errors;
//! `WWW-Authenticate: Bearer` on 401; `/api/users/me` answering the caller's own account;
//! order lists holding only the caller's orders; and no answer to a stranger containing
//! anything of the victim buyer (email, id, order id, shipping name).
//!
//! Run: `make test`, or with `MARKETPLACE_TEST_PG` / `MARKETPLACE_TEST_REDIS` set,
//! `cargo test -p marketplace-tests --test authz`.

use std::collections::BTreeSet;

use marketplace_shared::tokens::Signer;
use marketplace_tests::{
    ADMIN_EMAIL, AUDIENCE, ISSUER, PASSWORD, TestApp, TestResponse, repo_root,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// The callers, in the column order of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Forged,
    Service,
    OtherService,
    Buyer,
    OtherBuyer,
    Seller,
    OtherSeller,
    Carrier,
    Admin,
}

use Who::*;

const COLUMNS: [Who; 10] = [
    Anonymous,
    Forged,
    Service,
    OtherService,
    Buyer,
    OtherBuyer,
    Seller,
    OtherSeller,
    Carrier,
    Admin,
];

/// The order the callers are tried in: strangers before owners and admins, so that a state
/// change made by an allowed caller (an archive, a cancel) comes after every refusal.
const RUN_ORDER: [Who; 10] = [
    Anonymous,
    Forged,
    OtherService,
    OtherBuyer,
    OtherSeller,
    Carrier,
    Buyer,
    Seller,
    Service,
    Admin,
];

/// Callers that must never see anything of the victim buyer.
fn stranger(who: Who) -> bool {
    matches!(
        who,
        Anonymous | Forged | OtherService | OtherBuyer | Seller | OtherSeller
    )
}

/// `200` with an empty `items` page (a list that must not leak another user's data).
const EMPTY: u16 = 1200;

/// Extra checks on 2xx answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    /// The body is the caller's own account.
    SelfAccount,
    /// Every listed order belongs to the caller.
    OwnOrders,
    /// Public tracking: nothing personal.
    Impersonal,
}

struct Row {
    /// `METHOD /openapi/template` (checked against the four OpenAPI documents).
    op: &'static str,
    method: &'static str,
    path: String,
    /// JSON body; the string `{uniq}` anywhere in it is replaced per call.
    body: Option<Value>,
    /// Extra headers; `{uniq}` in a value is replaced per call.
    headers: Vec<(&'static str, String)>,
    /// The service token of the `Service` and `OtherService` columns: (issuer, audience).
    service: (&'static str, &'static str),
    other_service: (&'static str, &'static str),
    /// Expected status per column (in `COLUMNS` order).
    expect: [u16; 10],
    check: Check,
}

struct Principal {
    id: Option<Uuid>,
    token: Option<String>,
}

struct World {
    app: TestApp,
    principals: Vec<(Who, Principal)>,
    forged: String,
    victim_markers: Vec<String>,
    buyer_id: Uuid,
}

impl World {
    fn principal(&self, who: Who) -> &Principal {
        &self
            .principals
            .iter()
            .find(|(w, _)| *w == who)
            .expect("principal")
            .1
    }
}

fn unique() -> String {
    Uuid::new_v4().simple().to_string()
}

fn substitute(v: &Value, uniq: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("{uniq}", uniq)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, uniq)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), substitute(x, uniq)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Registers an account and logs in: (id, email, access token).
async fn account(app: &TestApp, email: &str, role: &str) -> (Uuid, String) {
    let mut body = json!({"email": email, "password": PASSWORD, "display_name": "Matrix User"});
    if role == "buyer" || role == "seller" {
        body["role"] = json!(role);
    }
    let r = app.post("/api/auth/register", None, body).await;
    r.expect(201);
    let id: Uuid = r.json()["id"].as_str().unwrap().parse().unwrap();
    (id, login(app, email).await)
}

async fn login(app: &TestApp, email: &str) -> String {
    let r = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    r.expect(200);
    r.json()["access_token"].as_str().unwrap().to_string()
}

fn email() -> String {
    format!("{}@example.test", unique())
}

fn address(name: &str) -> Value {
    json!({"name": name, "line1": "1 Main Street", "city": "London",
           "postal_code": "SW1A 1AA", "country": "GB"})
}

async fn place(app: &TestApp, token: &str, product: &str, name: &str) -> Value {
    let auth = format!("Bearer {token}");
    let key = unique();
    let r = app
        .request(
            "POST",
            "/api/orders",
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
                ("idempotency-key", key.as_str()),
            ],
            serde_json::to_vec(&json!({
                "items": [{"product_id": product, "quantity": 1}],
                "shipping_address": address(name),
            }))
            .unwrap(),
        )
        .await;
    r.expect(201);
    r.json()
}

async fn product(app: &TestApp, token: &str) -> String {
    let r = app
        .post(
            "/api/products",
            Some(token),
            json!({"title": "Matrix lamp", "description": "A lamp", "category": "lamps",
                   "price_cents": 1000, "currency": "EUR", "stock": 1000}),
        )
        .await;
    r.expect(201);
    r.json()["id"].as_str().unwrap().to_string()
}

fn ops_of_openapi_documents() -> BTreeSet<String> {
    let mut ops = BTreeSet::new();
    for svc in ["user", "product", "order", "delivery"] {
        let path = repo_root().join(format!("components/{svc}/openapi.json"));
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for (p, item) in doc["paths"].as_object().unwrap() {
            for m in ["get", "post", "put", "patch", "delete"] {
                if item.get(m).is_some() {
                    ops.insert(format!("{} {p}", m.to_ascii_uppercase()));
                }
            }
        }
    }
    ops
}

/// One call of one row by one caller; returns the problems found.
async fn call(w: &World, row: &Row, who: Who, expected: u16) -> Vec<String> {
    let uniq = unique();
    let token = match who {
        Service => Some(w.app.service_token(row.service.0, row.service.1)),
        OtherService => Some(
            w.app
                .service_token(row.other_service.0, row.other_service.1),
        ),
        Forged => Some(w.forged.clone()),
        _ => w.principal(who).token.clone(),
    };
    let auth = token.as_ref().map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, String)> = Vec::new();
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    let body = match &row.body {
        Some(b) => {
            headers.push(("content-type", "application/json".into()));
            serde_json::to_vec(&substitute(b, &uniq)).unwrap()
        }
        None => Vec::new(),
    };
    for (k, v) in &row.headers {
        headers.push((k, v.replace("{uniq}", &uniq)));
    }
    let borrowed: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = w.app.request(row.method, &row.path, &borrowed, body).await;
    check_answer(w, row, who, expected, &r)
}

fn check_answer(w: &World, row: &Row, who: Who, expected: u16, r: &TestResponse) -> Vec<String> {
    let mut problems = Vec::new();
    let text = String::from_utf8_lossy(&r.body);
    let short: String = text.chars().take(300).collect();
    let label = format!("{} {} as {who:?}", row.method, row.path);
    let want_status = if expected == EMPTY { 200 } else { expected };
    if r.status != want_status {
        problems.push(format!(
            "{label}: expected {want_status}, got {}: {short}",
            r.status
        ));
        return problems;
    }
    if r.status >= 500 {
        problems.push(format!("{label}: server error {}", r.status));
    }
    if r.status >= 400 {
        if r.header("content-type") != Some("application/problem+json") {
            problems.push(format!("{label}: error without a problem document"));
        } else {
            let doc: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            if doc["status"] != r.status || !doc["title"].is_string() {
                problems.push(format!("{label}: malformed problem document {short}"));
            }
        }
    }
    if r.status == 401 && r.header("www-authenticate") != Some("Bearer") {
        problems.push(format!("{label}: 401 without `WWW-Authenticate: Bearer`"));
    }
    if stranger(who) {
        for m in &w.victim_markers {
            if text.contains(m.as_str()) {
                problems.push(format!("{label}: a stranger's answer holds {m:?}: {short}"));
            }
        }
    }
    let me = w.principal(who).id.map(|id| id.to_string());
    if (200..300).contains(&r.status) && r.status != 204 {
        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if expected == EMPTY && body["items"] != json!([]) {
            problems.push(format!("{label}: expected an empty page, got {short}"));
        }
        match row.check {
            Check::None => {}
            Check::SelfAccount => {
                if body["id"].as_str() != me.as_deref() {
                    problems.push(format!("{label}: another account answered: {short}"));
                }
            }
            Check::OwnOrders => {
                let items = body["items"].as_array().cloned().unwrap_or_default();
                if items
                    .iter()
                    .any(|o| o["buyer_id"].as_str() != me.as_deref())
                {
                    problems.push(format!("{label}: someone else's order listed: {short}"));
                }
            }
            Check::Impersonal => {
                for field in ["buyer_id", "shipping_address", "order_id", "id"] {
                    if body.get(field).is_some() {
                        problems.push(format!("{label}: public tracking shows `{field}`"));
                    }
                }
                if text.contains(&w.buyer_id.to_string()) {
                    problems.push(format!("{label}: public tracking shows the buyer id"));
                }
            }
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_endpoint_answers_every_caller_exactly_as_the_contract_says() {
    let app = TestApp::start().await;

    // ---------------------------------------------------------------- the people
    let (admin_id, admin) = account(&app, ADMIN_EMAIL, "admin").await;
    let victim_email = email();
    let (buyer_id, buyer) = account(&app, &victim_email, "buyer").await;
    let (other_buyer_id, other_buyer) = account(&app, &email(), "buyer").await;
    let (seller_id, seller) = account(&app, &email(), "seller").await;
    let (other_seller_id, other_seller) = account(&app, &email(), "seller").await;
    let carrier_email = email();
    let (carrier_id, _) = account(&app, &carrier_email, "buyer").await;
    app.put(
        &format!("/api/users/{carrier_id}/role"),
        Some(&admin),
        json!({"role": "carrier"}),
    )
    .await
    .expect(200);
    let carrier = login(&app, &carrier_email).await;
    // Someone whose credentials everyone may present at the login endpoint.
    let public_email = email();
    account(&app, &public_email, "buyer").await;
    // Admin claims with the app's key id, signed by a key the app does not trust.
    let now = chrono::Utc::now().timestamp();
    let forged = Signer::from_config("k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .unwrap()
        .sign(
            &json!({"sub": admin_id.to_string(), "role": "admin", "iss": ISSUER,
                      "aud": AUDIENCE, "iat": now, "exp": now + 900, "jti": unique()}),
        );

    // ---------------------------------------------------------------- the things
    let p = product(&app, &seller).await;
    let archived = product(&app, &seller).await;
    app.delete(&format!("/api/products/{archived}"), Some(&seller), None)
        .await
        .expect(204);
    let doomed = product(&app, &seller).await;
    let victim_name = format!("Victim {}", unique());
    let order = place(&app, &buyer, &p, &victim_name).await;
    let order_id = order["id"].as_str().unwrap().to_string();
    let shipment_id = order["shipment_id"].as_str().unwrap().to_string();
    let to_cancel = place(&app, &buyer, &p, &victim_name).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let to_ship = place(&app, &buyer, &p, &victim_name).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    place(&app, &other_buyer, &p, "Someone Else").await;
    let s = app
        .get(&format!("/api/deliveries/{shipment_id}"), Some(&buyer))
        .await;
    s.expect(200);
    let tracking = s.json()["tracking_number"].as_str().unwrap().to_string();
    let reservation = Uuid::now_v7();
    let nobody = Uuid::now_v7();

    let w = World {
        principals: vec![
            (
                Anonymous,
                Principal {
                    id: None,
                    token: None,
                },
            ),
            (
                Forged,
                Principal {
                    id: None,
                    token: None,
                },
            ),
            (
                Service,
                Principal {
                    id: None,
                    token: None,
                },
            ),
            (
                OtherService,
                Principal {
                    id: None,
                    token: None,
                },
            ),
            (
                Buyer,
                Principal {
                    id: Some(buyer_id),
                    token: Some(buyer),
                },
            ),
            (
                OtherBuyer,
                Principal {
                    id: Some(other_buyer_id),
                    token: Some(other_buyer),
                },
            ),
            (
                Seller,
                Principal {
                    id: Some(seller_id),
                    token: Some(seller),
                },
            ),
            (
                OtherSeller,
                Principal {
                    id: Some(other_seller_id),
                    token: Some(other_seller),
                },
            ),
            (
                Carrier,
                Principal {
                    id: Some(carrier_id),
                    token: Some(carrier),
                },
            ),
            (
                Admin,
                Principal {
                    id: Some(admin_id),
                    token: Some(admin),
                },
            ),
        ],
        forged,
        victim_markers: vec![
            victim_email.clone(),
            buyer_id.to_string(),
            order_id.clone(),
            victim_name.clone(),
        ],
        buyer_id,
        app,
    };

    // ---------------------------------------------------------------- the table
    // Columns:          anon forged svc  svc2 buyer buyer2 seller seller2 carrier admin
    const ALL_200: [u16; 10] = [200; 10];
    const USERS_ONLY_200: [u16; 10] = [401, 401, 401, 401, 200, 200, 200, 200, 200, 200];
    const ADMIN_ONLY: [u16; 10] = [401, 401, 401, 401, 403, 403, 403, 403, 403, 200];
    const PUBLIC_READ: [u16; 10] = [200, 401, 401, 401, 200, 200, 200, 200, 200, 200];
    const INTERNAL_200: [u16; 10] = [401, 401, 200, 403, 403, 403, 403, 403, 403, 403];
    const INTERNAL_201: [u16; 10] = [401, 401, 201, 403, 403, 403, 403, 403, 403, 403];
    const INTERNAL_204: [u16; 10] = [401, 401, 204, 403, 403, 403, 403, 403, 403, 403];

    let to = |svc: &'static str| (("order", svc), ("delivery", svc));
    let row = |op: &'static str,
               path: String,
               body: Option<Value>,
               services: ((&'static str, &'static str), (&'static str, &'static str)),
               expect: [u16; 10]| Row {
        op,
        method: op.split(' ').next().unwrap(),
        path,
        body,
        headers: Vec::new(),
        service: services.0,
        other_service: services.1,
        expect,
        check: Check::None,
    };
    let with_check = |mut r: Row, check: Check| {
        r.check = check;
        r
    };

    let mut rows = vec![
        // ------------------------------------------------------------ user service
        row(
            "POST /api/auth/register",
            "/api/auth/register".into(),
            Some(json!({"email": "{uniq}@example.test", "password": PASSWORD,
                        "display_name": "New"})),
            to("user"),
            [201; 10],
        ),
        row(
            "POST /api/auth/login",
            "/api/auth/login".into(),
            Some(json!({"email": public_email, "password": PASSWORD})),
            to("user"),
            ALL_200,
        ),
        row(
            "POST /api/auth/refresh",
            "/api/auth/refresh".into(),
            Some(json!({"refresh_token": "not-a-refresh-token-{uniq}"})),
            to("user"),
            [401; 10],
        ),
        row(
            "POST /api/auth/logout",
            "/api/auth/logout".into(),
            Some(json!({"refresh_token": "not-a-refresh-token-{uniq}"})),
            to("user"),
            [204; 10],
        ),
        row(
            "GET /api/auth/jwks",
            "/api/auth/jwks".into(),
            None,
            to("user"),
            ALL_200,
        ),
        with_check(
            row(
                "GET /api/users/me",
                "/api/users/me".into(),
                None,
                to("user"),
                USERS_ONLY_200,
            ),
            Check::SelfAccount,
        ),
        with_check(
            row(
                "PATCH /api/users/me",
                "/api/users/me".into(),
                Some(json!({"display_name": "Renamed"})),
                to("user"),
                USERS_ONLY_200,
            ),
            Check::SelfAccount,
        ),
        row(
            "POST /api/users/me/password",
            "/api/users/me/password".into(),
            Some(json!({"current_password": PASSWORD, "new_password": PASSWORD})),
            to("user"),
            [401, 401, 401, 401, 204, 204, 204, 204, 204, 204],
        ),
        row(
            "GET /api/users/{id}",
            format!("/api/users/{buyer_id}"),
            None,
            to("user"),
            ADMIN_ONLY,
        ),
        row(
            "GET /api/users/{id}",
            format!("/api/users/{nobody}"),
            None,
            to("user"),
            [401, 401, 401, 401, 403, 403, 403, 403, 403, 404],
        ),
        row(
            "PUT /api/users/{id}/role",
            format!("/api/users/{buyer_id}/role"),
            Some(json!({"role": "buyer"})),
            to("user"),
            ADMIN_ONLY,
        ),
        row(
            "PUT /api/users/{id}/role",
            format!("/api/users/{nobody}/role"),
            Some(json!({"role": "admin"})),
            to("user"),
            [401, 401, 401, 401, 403, 403, 403, 403, 403, 404],
        ),
        // ------------------------------------------------------------ product service
        row(
            "POST /api/products",
            "/api/products".into(),
            Some(
                json!({"title": "Row lamp", "description": "A lamp", "category": "lamps",
                        "price_cents": 100, "currency": "EUR", "stock": 1}),
            ),
            to("product"),
            [401, 401, 401, 401, 403, 403, 201, 201, 403, 201],
        ),
        // Search answers the same to everyone, but a presented token must be valid (as detail).
        row(
            "GET /api/products",
            "/api/products".into(),
            None,
            to("product"),
            PUBLIC_READ,
        ),
        row(
            "GET /api/products/{id}",
            format!("/api/products/{p}"),
            None,
            to("product"),
            PUBLIC_READ,
        ),
        row(
            "GET /api/products/{id}",
            format!("/api/products/{archived}"),
            None,
            to("product"),
            [404, 401, 401, 401, 404, 404, 200, 404, 404, 200],
        ),
        row(
            "GET /api/products/{id}",
            format!("/api/products/{nobody}"),
            None,
            to("product"),
            [404, 401, 401, 401, 404, 404, 404, 404, 404, 404],
        ),
        row(
            "PATCH /api/products/{id}",
            format!("/api/products/{p}"),
            Some(json!({"stock": 1000})),
            to("product"),
            [401, 401, 401, 401, 403, 403, 200, 403, 403, 200],
        ),
        row(
            "PATCH /api/products/{id}",
            format!("/api/products/{nobody}"),
            Some(json!({"stock": 1})),
            to("product"),
            [401, 401, 401, 401, 403, 403, 404, 404, 403, 404],
        ),
        // The other seller runs before the owner: 403 while the product is live.
        row(
            "DELETE /api/products/{id}",
            format!("/api/products/{doomed}"),
            None,
            to("product"),
            [401, 401, 401, 401, 403, 403, 204, 403, 403, 204],
        ),
        row(
            "POST /internal/products/reservations",
            "/internal/products/reservations".into(),
            Some(json!({"reservation_id": reservation.to_string(),
                        "items": [{"product_id": p, "quantity": 1}]})),
            (("order", "product"), ("delivery", "product")),
            INTERNAL_201,
        ),
        row(
            "DELETE /internal/products/reservations/{reservation_id}",
            format!("/internal/products/reservations/{reservation}"),
            None,
            (("order", "product"), ("delivery", "product")),
            INTERNAL_204,
        ),
        // ------------------------------------------------------------ order service
        {
            let mut r = row(
                "POST /api/orders",
                "/api/orders".into(),
                Some(json!({"items": [{"product_id": p, "quantity": 1}],
                            "shipping_address": address("Row Buyer")})),
                to("order"),
                [401, 401, 401, 401, 201, 201, 403, 403, 403, 403],
            );
            r.headers.push(("idempotency-key", "matrix-{uniq}".into()));
            r
        },
        with_check(
            row(
                "GET /api/orders",
                "/api/orders".into(),
                None,
                to("order"),
                [401, 401, 401, 401, 200, 200, 403, 403, 403, 403],
            ),
            Check::OwnOrders,
        ),
        // The matrix's orders are of the owning seller's product, and their order id is a
        // victim marker (a stranger must not see it) — but the seller legitimately sees the
        // order id of what they sold. `status=returned` (no order here is returned) keeps the
        // row to the authorization question: 200 to the seller (self) and the admin naming
        // them, 403 to the other seller naming them and every other role, 401 without a
        // user's token.
        row(
            "GET /api/orders/sales",
            format!("/api/orders/sales?seller_id={seller_id}&status=returned"),
            None,
            to("order"),
            [401, 401, 401, 401, 403, 403, 200, 403, 403, 200],
        ),
        row(
            "GET /api/orders/{id}",
            format!("/api/orders/{order_id}"),
            None,
            to("order"),
            [401, 401, 401, 401, 200, 404, 404, 404, 404, 200],
        ),
        row(
            "POST /api/orders/{id}/cancel",
            format!("/api/orders/{to_cancel}/cancel"),
            None,
            to("order"),
            [401, 401, 401, 401, 200, 404, 404, 404, 404, 200],
        ),
        row(
            "POST /internal/orders/{id}/delivery-status",
            format!("/internal/orders/{to_ship}/delivery-status"),
            Some(json!({"status": "shipped", "occurred_at": "2026-11-28T12:00:00Z"})),
            (("delivery", "order"), ("order", "order")),
            INTERNAL_200,
        ),
        row(
            "POST /internal/orders/outbox/relay",
            "/internal/orders/outbox/relay".into(),
            None,
            (("relay", "order"), ("order", "order")),
            INTERNAL_200,
        ),
        // ------------------------------------------------------------ delivery service
        row(
            "POST /internal/deliveries",
            "/internal/deliveries".into(),
            Some(json!({
                "order_id": format!("o1-{}", Uuid::now_v7()),
                "buyer_id": other_buyer_id.to_string(),
                "shipping_address": address("Row Buyer"),
                "items": [{"product_id": p, "title": "Matrix lamp", "quantity": 1}],
            })),
            (("order", "delivery"), ("delivery", "delivery")),
            INTERNAL_201,
        ),
        row(
            "POST /internal/deliveries/{id}/cancel",
            format!("/internal/deliveries/{nobody}/cancel"),
            None,
            (("order", "delivery"), ("relay", "delivery")),
            [401, 401, 404, 403, 403, 403, 403, 403, 403, 403],
        ),
        row(
            "GET /api/deliveries/{id}",
            format!("/api/deliveries/{shipment_id}"),
            None,
            to("delivery"),
            [401, 401, 401, 401, 200, 404, 404, 404, 200, 200],
        ),
        row(
            "GET /api/deliveries/{id}",
            format!("/api/deliveries/{nobody}"),
            None,
            to("delivery"),
            [401, 401, 401, 401, 404, 404, 404, 404, 404, 404],
        ),
        row(
            "GET /api/deliveries",
            format!("/api/deliveries?order_id={order_id}"),
            None,
            to("delivery"),
            [401, 401, 401, 401, 200, EMPTY, EMPTY, EMPTY, 200, 200],
        ),
        with_check(
            row(
                "GET /api/deliveries/track/{tracking_number}",
                format!("/api/deliveries/track/{tracking}"),
                None,
                to("delivery"),
                ALL_200,
            ),
            Check::Impersonal,
        ),
        // A repeated event id is accepted once: the admin's repeat answers 201 unchanged.
        row(
            "POST /api/deliveries/{id}/events",
            format!("/api/deliveries/{shipment_id}/events"),
            Some(json!({"event_id": "matrix-pickup", "status": "picked_up"})),
            to("delivery"),
            [401, 401, 401, 401, 403, 403, 403, 403, 201, 201],
        ),
        row(
            "POST /api/deliveries/{id}/events",
            format!("/api/deliveries/{nobody}/events"),
            Some(json!({"event_id": "{uniq}", "status": "picked_up"})),
            to("delivery"),
            [401, 401, 401, 401, 403, 403, 403, 403, 404, 404],
        ),
        // Only the relay's own identity runs the relay; the delivery service's key is refused.
        row(
            "POST /internal/deliveries/outbox/relay",
            "/internal/deliveries/outbox/relay".into(),
            None,
            (("relay", "delivery"), ("delivery", "delivery")),
            INTERNAL_200,
        ),
    ];
    for (svc, prefix) in [
        ("user", "users"),
        ("product", "products"),
        ("order", "orders"),
        ("delivery", "deliveries"),
    ] {
        for (op, path) in [
            ("GET /api/{p}/healthz", format!("/api/{prefix}/healthz")),
            ("GET /api/{p}/readyz", format!("/api/{prefix}/readyz")),
            (
                "GET /api/{p}/openapi.json",
                format!("/api/{prefix}/openapi.json"),
            ),
        ] {
            let op: &'static str = Box::leak(op.replace("{p}", prefix).into_boxed_str());
            rows.push(row(op, path, None, to(svc), ALL_200));
        }
    }
    // Last: every account deletes itself (nobody can delete anyone else: the path is `me`).
    rows.push(row(
        "DELETE /api/users/me",
        "/api/users/me".into(),
        Some(json!({"password": PASSWORD})),
        to("user"),
        [401, 401, 401, 401, 204, 204, 204, 204, 204, 204],
    ));

    // Every operation of every OpenAPI document has a row, and no row is undocumented.
    let documented = ops_of_openapi_documents();
    let covered: BTreeSet<String> = rows.iter().map(|r| r.op.to_string()).collect();
    assert_eq!(
        covered, documented,
        "the matrix must cover exactly the documented operations"
    );

    let mut problems = Vec::new();
    let mut calls = 0;
    for r in &rows {
        for who in RUN_ORDER {
            let col = COLUMNS.iter().position(|c| *c == who).unwrap();
            problems.extend(call(&w, r, who, r.expect[col]).await);
            calls += 1;
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {calls} calls broke the matrix:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // The state the allowed callers changed, and only they.
    let app = &w.app;
    let admin = w.principal(Admin).token.clone().unwrap();
    let o = app
        .get(&format!("/api/orders/{to_cancel}"), Some(&admin))
        .await;
    assert_eq!(o.json()["status"], "cancelled");
    let o = app
        .get(&format!("/api/orders/{to_ship}"), Some(&admin))
        .await;
    assert_eq!(o.json()["status"], "shipped");
    let o = app
        .get(&format!("/api/orders/{order_id}"), Some(&admin))
        .await;
    assert_eq!(
        o.json()["status"],
        "shipped",
        "the carrier's pickup reached the order"
    );
    let s = app
        .get(&format!("/api/deliveries/{shipment_id}"), Some(&admin))
        .await;
    let history = s.json()["history"].clone();
    assert_eq!(
        history.as_array().unwrap().len(),
        1,
        "one pickup: {history}"
    );
    assert_eq!(history[0]["event_id"], "matrix-pickup");
}
