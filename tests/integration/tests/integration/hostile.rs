//! Hostile input (issue #9): every endpoint that takes a body (every POST, PATCH and PUT, and
//! `DELETE /api/users/me`) is sent oversized bodies, the wrong media type, invalid UTF-8,
//! absurdly nested JSON, numbers no integer holds, NUL characters and duplicate keys; and the
//! services get header floods, huge tokens, duplicate `Authorization` headers and query
//! floods. Each is answered with the contract's problem document (413, 415, 400, 422, 401…),
//! never a 5xx, and nothing is written.
//!
//! Slow and chunked bodies go through the host's HTTP listener (the same hyper HTTP/1.1 stack
//! Spin serves with): a chunked body over 1 MiB is a 413, a body trickled in over seconds is
//! answered normally without holding up other requests, and a header flood is refused by the
//! listener (431) before any component runs.
//!
//! Run: `make test`, or with `MARKETPLACE_TEST_PG` / `MARKETPLACE_TEST_REDIS` set,
//! `cargo test -p marketplace-tests --test hostile`.

use std::time::{Duration, Instant};

use marketplace_shared::tokens::Signer;
use marketplace_tests::{AUDIENCE, Db, ISSUER, PASSWORD, TestApp, TestResponse};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const MIB: usize = 1024 * 1024;

/// One endpoint that reads a body, with a valid body and where hostile values go.
struct Write {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    /// A body the endpoint would accept (it is never sent unmodified).
    valid: Value,
    /// JSON pointer to an integer field (hostile numbers go there); `None`: an extra field.
    number: Option<&'static str>,
    /// JSON pointer to a free-text field (NUL characters go there); `None`: an extra field.
    text: Option<&'static str>,
}

/// The valid body with `raw` (JSON text) at `pointer`, or as an extra top-level field.
fn with_raw(valid: &Value, pointer: Option<&str>, raw: &str) -> Vec<u8> {
    const MARK: &str = "__HOSTILE_VALUE__";
    let mut v = valid.clone();
    match pointer.and_then(|p| v.pointer_mut(p)) {
        Some(slot) => *slot = json!(MARK),
        None => {
            v.as_object_mut()
                .expect("object body")
                .insert("zz_hostile".into(), json!(MARK));
        }
    }
    serde_json::to_string(&v)
        .unwrap()
        .replace(&format!("\"{MARK}\""), raw)
        .into_bytes()
}

/// A syntactically valid JSON document of exactly `len` bytes or more: `{"pad":"xxxx…"}`.
fn padded(len: usize) -> Vec<u8> {
    let mut b = b"{\"pad\":\"".to_vec();
    b.resize(len.saturating_sub(2).max(b.len()), b'x');
    b.extend_from_slice(b"\"}");
    b
}

struct Case {
    name: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    /// Allowed statuses.
    expect: &'static [u16],
}

fn cases(w: &Write) -> Vec<Case> {
    let json_ct = "application/json";
    let nested_array = {
        let mut b = vec![b'['; 100_000];
        b.extend(vec![b']'; 100_000]);
        b
    };
    // 40 levels inside an otherwise valid body (the limit is 32).
    let deep_field = {
        let mut raw = String::new();
        for _ in 0..40 {
            raw.push_str("{\"a\":");
        }
        raw.push('1');
        raw.push_str(&"}".repeat(40));
        with_raw(&w.valid, None, &raw)
    };
    let mut invalid_utf8 = with_raw(&w.valid, w.text, "\"ab__\"");
    let at = invalid_utf8
        .windows(2)
        .position(|p| p == b"__")
        .expect("marker");
    invalid_utf8[at] = 0xff;
    invalid_utf8[at + 1] = 0xfe;
    vec![
        Case {
            name: "one byte over 1 MiB",
            content_type: json_ct,
            body: padded(MIB + 1),
            expect: &[413],
        },
        Case {
            name: "16 MiB",
            content_type: json_ct,
            body: padded(16 * MIB),
            expect: &[413],
        },
        Case {
            name: "a valid body sent as text/plain",
            content_type: "text/plain",
            body: serde_json::to_vec(&w.valid).unwrap(),
            expect: &[415],
        },
        Case {
            name: "a valid body sent as multipart",
            content_type: "multipart/form-data; boundary=x",
            body: serde_json::to_vec(&w.valid).unwrap(),
            expect: &[415],
        },
        Case {
            name: "invalid UTF-8 inside a string",
            content_type: json_ct,
            body: invalid_utf8,
            expect: &[400],
        },
        Case {
            name: "binary garbage",
            content_type: json_ct,
            body: vec![0, 159, 146, 150, 0xff, 0xfe, 0, 1, 2, 3],
            expect: &[400],
        },
        Case {
            name: "a lone UTF-16 surrogate",
            content_type: json_ct,
            body: with_raw(&w.valid, w.text, r#""\ud800""#),
            expect: &[400],
        },
        Case {
            name: "100 000 nested arrays",
            content_type: json_ct,
            body: nested_array,
            expect: &[400],
        },
        Case {
            name: "40 nested objects in a field",
            content_type: json_ct,
            body: deep_field,
            expect: &[400],
        },
        Case {
            name: "truncated JSON",
            content_type: json_ct,
            body: {
                let mut b = serde_json::to_vec(&w.valid).unwrap();
                b.truncate(b.len() / 2);
                b
            },
            expect: &[400],
        },
        Case {
            name: "1e400",
            content_type: json_ct,
            body: with_raw(&w.valid, w.number, "1e400"),
            expect: &[400],
        },
        Case {
            name: "2^64",
            content_type: json_ct,
            body: with_raw(&w.valid, w.number, "18446744073709551616"),
            expect: &[422],
        },
        Case {
            name: "-2^63 - 1",
            content_type: json_ct,
            body: with_raw(&w.valid, w.number, "-9223372036854775809"),
            expect: &[422],
        },
        Case {
            name: "i64::MAX",
            content_type: json_ct,
            body: with_raw(&w.valid, w.number, "9223372036854775807"),
            expect: &[422],
        },
        Case {
            name: "i64::MIN",
            content_type: json_ct,
            body: with_raw(&w.valid, w.number, "-9223372036854775808"),
            expect: &[422],
        },
        Case {
            name: "a 400-digit number",
            content_type: json_ct,
            body: with_raw(&w.valid, w.number, &"9".repeat(400)),
            expect: &[400, 422],
        },
        Case {
            name: "1.5 for an integer",
            content_type: json_ct,
            body: with_raw(&w.valid, w.number, "1.5"),
            expect: &[422],
        },
        Case {
            name: "a JSON array instead of an object",
            content_type: json_ct,
            body: b"[1,2,3]".to_vec(),
            expect: &[422],
        },
        Case {
            name: "a NUL character in free text",
            content_type: json_ct,
            body: with_raw(&w.valid, w.text, r#""a\u0000b""#),
            // Refused, or a text field that takes any Unicode (which never reaches PostgreSQL
            // as a NUL: delivery notes live in the key-value store); never a 5xx.
            expect: &[422, 401, 403, 201, 200, 204],
        },
    ]
}

struct Fixture {
    app: TestApp,
    writes: Vec<Write>,
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

async fn registered(app: &TestApp, role: &str) -> (Uuid, String, String) {
    let email = format!("{}@example.test", Uuid::new_v4().simple());
    let mut body = json!({"email": email, "password": PASSWORD, "display_name": "Hostile"});
    if role != "admin" {
        body["role"] = json!(role);
    }
    app.post("/api/auth/register", None, body).await.expect(201);
    let r = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    r.expect(200);
    let id = r.json()["user"]["id"].as_str().unwrap().parse().unwrap();
    (id, email, r.json()["access_token"].as_str().unwrap().into())
}

async fn place(app: &TestApp, token: &str, product: &str) -> Value {
    let r = app
        .request(
            "POST",
            "/api/orders",
            &[
                ("authorization", &bearer(token)),
                ("content-type", "application/json"),
                ("idempotency-key", &Uuid::new_v4().to_string()),
            ],
            serde_json::to_vec(&json!({"items": [{"product_id": product, "quantity": 1}],
                "shipping_address": {"name": "H", "line1": "1 Road", "city": "Town",
                                     "postal_code": "1000", "country": "DE"}}))
            .unwrap(),
        )
        .await;
    r.expect(201);
    r.json()
}

async fn fixture() -> Fixture {
    let app = TestApp::start().await;
    let (_, admin) = app.register_user("admin").await;
    let (buyer_id, _, buyer) = registered(&app, "buyer").await;
    let (_, _, confirmer) = registered(&app, "buyer").await;
    let (_, _, seller) = registered(&app, "seller").await;
    let carrier = app.token(Uuid::now_v7(), "carrier");
    let r = app
        .post(
            "/api/products",
            Some(&seller),
            json!({"title": "Hostile lamp", "description": "A lamp", "category": "lamps",
                   "price_cents": 1000, "currency": "EUR", "stock": 100}),
        )
        .await;
    r.expect(201);
    let product = r.json()["id"].as_str().unwrap().to_string();
    let order = place(&app, &buyer, &product).await;
    let order_id = order["id"].as_str().unwrap().to_string();
    let shipment = order["shipment_id"].as_str().unwrap().to_string();
    let auth = |t: &str| vec![("authorization", bearer(t))];
    let address = json!({"name": "Hostile Buyer", "line1": "1 Road", "city": "Town",
                         "postal_code": "1000", "country": "DE"});
    let writes = vec![
        Write {
            method: "POST",
            path: "/api/auth/register".into(),
            headers: vec![],
            valid: json!({"email": "h@example.test", "password": PASSWORD, "display_name": "H"}),
            number: None,
            text: Some("/display_name"),
        },
        Write {
            method: "POST",
            path: "/api/auth/login".into(),
            headers: vec![],
            valid: json!({"email": "nobody@example.test", "password": PASSWORD}),
            number: None,
            text: Some("/email"),
        },
        Write {
            method: "POST",
            path: "/api/auth/refresh".into(),
            headers: vec![],
            valid: json!({"refresh_token": "x"}),
            number: None,
            text: Some("/refresh_token"),
        },
        Write {
            method: "POST",
            path: "/api/auth/logout".into(),
            headers: vec![],
            valid: json!({"refresh_token": "x"}),
            number: None,
            text: Some("/refresh_token"),
        },
        Write {
            method: "PATCH",
            path: "/api/users/me".into(),
            headers: auth(&buyer),
            valid: json!({"display_name": "H"}),
            number: None,
            text: Some("/display_name"),
        },
        Write {
            method: "POST",
            path: "/api/users/me/password".into(),
            headers: auth(&confirmer),
            valid: json!({"current_password": PASSWORD, "new_password": PASSWORD}),
            number: None,
            text: Some("/new_password"),
        },
        Write {
            method: "DELETE",
            path: "/api/users/me".into(),
            headers: auth(&confirmer),
            valid: json!({"password": PASSWORD}),
            number: None,
            text: None,
        },
        Write {
            method: "PUT",
            path: format!("/api/users/{buyer_id}/role"),
            headers: auth(&admin),
            valid: json!({"role": "buyer"}),
            number: None,
            text: Some("/role"),
        },
        Write {
            method: "POST",
            path: "/api/products".into(),
            headers: auth(&seller),
            valid: json!({"title": "T", "description": "D", "category": "c",
                          "price_cents": 1, "currency": "EUR", "stock": 1,
                          "attributes": {"k": "v"}}),
            number: Some("/price_cents"),
            text: Some("/title"),
        },
        Write {
            method: "PATCH",
            path: format!("/api/products/{product}"),
            headers: auth(&seller),
            valid: json!({"title": "T", "stock": 100}),
            number: Some("/stock"),
            text: Some("/title"),
        },
        Write {
            method: "POST",
            path: "/internal/products/reservations".into(),
            headers: auth(&app.service_token("order", "product")),
            valid: json!({"reservation_id": Uuid::now_v7().to_string(),
                          "items": [{"product_id": product, "quantity": 1}]}),
            number: Some("/items/0/quantity"),
            text: Some("/reservation_id"),
        },
        Write {
            method: "POST",
            path: "/api/orders".into(),
            headers: {
                let mut h = auth(&buyer);
                h.push(("idempotency-key", "hostile".into()));
                h
            },
            valid: json!({"items": [{"product_id": product, "quantity": 1}],
                          "shipping_address": address}),
            number: Some("/items/0/quantity"),
            text: Some("/shipping_address/name"),
        },
        Write {
            method: "POST",
            path: format!("/api/orders/{order_id}/cancel"),
            headers: auth(&buyer),
            valid: json!({}),
            number: None,
            text: None,
        },
        Write {
            method: "POST",
            path: format!("/internal/orders/{order_id}/delivery-status"),
            headers: auth(&app.service_token("delivery", "order")),
            valid: json!({"status": "shipped", "occurred_at": "2026-11-28T12:00:00Z"}),
            number: None,
            text: Some("/status"),
        },
        Write {
            method: "POST",
            path: "/internal/orders/outbox/relay".into(),
            headers: auth(&app.service_token("relay", "order")),
            valid: json!({}),
            number: None,
            text: None,
        },
        Write {
            method: "POST",
            path: "/internal/deliveries".into(),
            headers: auth(&app.service_token("order", "delivery")),
            valid: json!({"order_id": format!("o1-{}", Uuid::now_v7()),
                          "buyer_id": buyer_id.to_string(), "shipping_address": address,
                          "items": [{"product_id": product, "title": "Lamp", "quantity": 1}]}),
            number: Some("/items/0/quantity"),
            text: Some("/shipping_address/name"),
        },
        Write {
            method: "POST",
            path: format!("/api/deliveries/{shipment}/events"),
            headers: auth(&carrier),
            valid: json!({"event_id": "hostile-1", "status": "picked_up", "note": "n"}),
            number: None,
            text: Some("/note"),
        },
    ];
    Fixture { app, writes }
}

async fn send(app: &TestApp, w: &Write, ct: &str, body: Vec<u8>) -> TestResponse {
    let mut headers: Vec<(&str, &str)> = w.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    headers.push(("content-type", ct));
    app.request(w.method, &w.path, &headers, body).await
}

/// The problems with one answer: a 5xx, an unexpected status, an error without a problem
/// document.
fn judge(label: &str, r: &TestResponse, expect: &[u16]) -> Option<String> {
    let body: String = String::from_utf8_lossy(&r.body).chars().take(200).collect();
    if r.status >= 500 || !expect.contains(&r.status) {
        return Some(format!(
            "{label}: got {} (allowed {expect:?}): {body}",
            r.status
        ));
    }
    if r.status >= 400 {
        let doc: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if r.header("content-type") != Some("application/problem+json")
            || doc["status"] != r.status
            || !doc["title"].is_string()
        {
            return Some(format!("{label}: not a problem document: {body}"));
        }
    }
    None
}

/// Rows in the tables a refused write could have touched.
async fn written(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for (db, sql) in [
        (Db::User, "select count(*) from users"),
        (Db::Product, "select count(*) from products"),
        (
            Db::Product,
            "select coalesce(sum(stock), 0)::bigint from products",
        ),
        (Db::Order(0), "select count(*) from orders"),
        (Db::Order(1), "select count(*) from orders"),
        (Db::Order(0), "select count(*) from order_history"),
        (Db::Order(1), "select count(*) from order_history"),
    ] {
        counts.push(app.db(db).await.query_one(sql, &[]).await.unwrap().get(0));
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_body_taking_endpoint_answers_hostile_bodies_with_the_contracts_problems() {
    let f = fixture().await;
    let before = written(&f.app).await;
    let mut problems = Vec::new();
    let mut sent = 0;
    for w in &f.writes {
        for c in cases(w) {
            let r = send(&f.app, w, c.content_type, c.body).await;
            let label = format!("{} {} — {}", w.method, w.path, c.name);
            problems.extend(judge(&label, &r, c.expect));
            sent += 1;
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {sent} hostile bodies were mishandled:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(
        written(&f.app).await,
        before,
        "a refused body wrote something"
    );
}

/// Bodies far past the limit are refused while they stream in: a component never holds more
/// than 1 MiB of a body, so even bodies larger than an instance's whole memory are a 413 (they
/// used to trap the instance, a 500, from about 48 MiB on).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_larger_than_an_instances_memory_are_a_413_not_a_trap() {
    let app = TestApp::start().await;
    let seller = bearer(&app.token(Uuid::now_v7(), "seller"));
    let buyer = bearer(&app.token(Uuid::now_v7(), "buyer"));
    let order = bearer(&app.service_token("order", "delivery"));
    for size in [64 * MIB, 256 * MIB] {
        for (path, auth) in [
            ("/api/auth/login", None),
            ("/api/products", Some(&seller)),
            ("/api/orders", Some(&buyer)),
            ("/internal/deliveries", Some(&order)),
        ] {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(a) = auth {
                headers.push(("authorization", a.as_str()));
            }
            headers.push(("idempotency-key", "huge"));
            let r = app.request("POST", path, &headers, padded(size)).await;
            if let Some(p) = judge(&format!("POST {path} with {} MiB", size / MIB), &r, &[413]) {
                panic!("{p}");
            }
        }
    }
    for svc in ["users", "products", "orders", "deliveries"] {
        app.get(&format!("/api/{svc}/healthz"), None)
            .await
            .expect(200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_keys_never_smuggle_a_role_and_big_numbers_never_overflow_a_total() {
    let app = TestApp::start().await;
    // The last of duplicate keys wins, and `admin` is not a role anyone registers with.
    let raw = format!(
        r#"{{"email":"{}@example.test","password":"{PASSWORD}","display_name":"D","role":"buyer","role":"admin"}}"#,
        Uuid::new_v4().simple()
    );
    let r = app
        .request(
            "POST",
            "/api/auth/register",
            &[("content-type", "application/json")],
            raw.into_bytes(),
        )
        .await;
    let doc = r.expect_problem(422);
    assert!(doc["errors"]["role"].is_array(), "{doc}");

    // The largest price and quantity the contract allows: totals must not overflow.
    let (_, _, seller) = registered(&app, "seller").await;
    let max_price = 1_000_000_000i64;
    let r = app
        .post(
            "/api/products",
            Some(&seller),
            json!({"title": "Gold", "description": "Expensive", "category": "gold",
                   "price_cents": max_price, "currency": "EUR", "stock": 100_000_000}),
        )
        .await;
    r.expect(201);
    let p = r.json()["id"].as_str().unwrap().to_string();
    let buyer = app.token(Uuid::now_v7(), "buyer");
    let items: Vec<Value> = (0..100)
        .map(|_| json!({"product_id": p, "quantity": 1000}))
        .collect();
    let r = app
        .request(
            "POST",
            "/api/orders",
            &[
                ("authorization", &bearer(&buyer)),
                ("content-type", "application/json"),
                ("idempotency-key", "big"),
            ],
            serde_json::to_vec(&json!({"items": items, "shipping_address":
                {"name": "B", "line1": "1 Road", "city": "Town", "postal_code": "1",
                 "country": "DE"}}))
            .unwrap(),
        )
        .await;
    assert!(
        matches!(r.status, 201 | 409 | 422),
        "a huge order: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    if r.status == 201 {
        assert_eq!(r.json()["total_cents"], json!(max_price * 1000 * 100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn header_floods_huge_tokens_and_query_floods_are_answered_without_a_5xx() {
    let app = TestApp::start().await;
    let (buyer_id, _, buyer) = registered(&app, "buyer").await;
    let (_, admin) = app.register_user("admin").await;
    let auth = bearer(&buyer);

    // 5 000 extra headers, and one header of 1 MiB: the request is still served.
    let names: Vec<String> = (0..5000).map(|i| format!("x-flood-{i}")).collect();
    let mut headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "flood")).collect();
    headers.push(("authorization", &auth));
    let r = app.request("GET", "/api/users/me", &headers, vec![]).await;
    r.expect(200);
    let big = "v".repeat(MIB);
    let r = app
        .request(
            "GET",
            "/api/users/me",
            &[("authorization", &auth), ("x-big", &big)],
            vec![],
        )
        .await;
    r.expect(200);

    // Huge and garbled tokens are 401 on every service.
    let huge = format!("Bearer {}", "a".repeat(MIB));
    let dotted = format!("Bearer {}", ".".repeat(100_000));
    for path in [
        "/api/users/me",
        "/api/orders",
        "/api/deliveries?order_id=o1-x",
        &format!("/api/products/{}", Uuid::now_v7()),
    ] {
        for h in [
            &huge,
            &dotted,
            "Bearer",
            "Basic YWRtaW46YWRtaW4=",
            "Bearer a.b.c",
        ] {
            let r = app
                .request("GET", path, &[("authorization", h)], vec![])
                .await;
            if let Some(p) = judge(&format!("GET {path} with {h:.20}"), &r, &[401]) {
                panic!("{p}");
            }
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    }
    // A second Authorization header never mixes identities. spin-sdk's `Request` keeps one
    // value per header name (the last), so a request carrying two tokens acts as one of them:
    // never with more than a token the caller actually holds, and a forged token never
    // rides along with a valid one.
    let now = chrono::Utc::now().timestamp();
    let forged = bearer(
        &Signer::from_config("k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .unwrap()
            .sign(&json!({"sub": Uuid::now_v7().to_string(), "role": "admin",
                          "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 900,
                          "jti": "forged"})),
    );
    let admin_auth = bearer(&admin);
    let user_path = format!("/api/users/{buyer_id}");
    for (pair, allowed) in [
        ([&auth, &forged], &[401, 403][..]),
        ([&forged, &auth], &[401, 403][..]),
        ([&auth, &admin_auth], &[200, 403][..]),
        ([&admin_auth, &auth], &[200, 403][..]),
    ] {
        let r = app
            .request(
                "GET",
                &user_path,
                &[("authorization", pair[0]), ("authorization", pair[1])],
                vec![],
            )
            .await;
        if let Some(p) = judge("two authorization headers", &r, allowed) {
            panic!("{p}");
        }
    }

    // Query floods and absurd paths.
    let flood = vec!["a=1"; 5_000].join("&");
    for path in [
        format!("/api/products?{flood}"),
        format!("/api/products?q={}", "x".repeat(30_000)),
        format!("/api/orders?{flood}"),
        format!("/api/deliveries?order_id=o1-x&{flood}"),
        format!("/api/products/{}", "9".repeat(30_000)),
        format!("/api/orders/{}", "o".repeat(30_000)),
        format!("/api/deliveries/track/{}", "T".repeat(30_000)),
        format!("/api/users/{}", "%00".repeat(1000)),
    ] {
        let r = app
            .request("GET", &path, &[("authorization", &auth)], vec![])
            .await;
        if let Some(p) = judge(&format!("GET {:.60}…", path), &r, &[400, 403, 404, 422]) {
            panic!("{p}");
        }
    }
}

// ------------------------------------------------------------------ over a real socket

async fn serve(app: &TestApp) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = app.app.clone();
    tokio::spawn(async move {
        let _ = served.serve(listener).await;
    });
    addr
}

/// Reads one HTTP/1.1 response (headers and a `content-length` body) from `s`.
async fn read_response<R: AsyncReadExt + Unpin>(s: &mut R) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk))
            .await
            .expect("response within 30 s")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunked_slow_and_header_flooded_requests_over_the_listener() {
    let app = TestApp::start().await;
    let seller = app.token(Uuid::now_v7(), "seller");
    let addr = serve(&app).await;

    // A chunked body of 2 MiB in 4 KiB chunks: 413, and nothing is created.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /api/products HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {seller}\r\n\
             content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The answer may come (and the connection close) before the whole body is sent: read it
    // while writing.
    let (mut rd, mut wr) = s.into_split();
    let reader = tokio::spawn(async move { read_response(&mut rd).await });
    let mut body = padded(2 * MIB);
    while !body.is_empty() {
        let rest = body.split_off(body.len().min(4096));
        let piece = std::mem::replace(&mut body, rest);
        let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
        framed.extend_from_slice(&piece);
        framed.extend_from_slice(b"\r\n");
        if wr.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = wr.write_all(b"0\r\n\r\n").await;
    let (status, text) = reader.await.unwrap();
    assert_eq!(status, 413, "{text:.300}");
    assert!(text.contains("application/problem+json"), "{text:.300}");

    // A Content-Length over the limit is refused before the body is read.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /api/products HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {seller}\r\n\
             content-type: application/json\r\ncontent-length: 1073741824\r\n\r\n{{\"pad\":\""
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (status, text) = read_response(&mut s).await;
    assert_eq!(status, 413, "{text:.300}");

    // A body trickled in over ~3 s is answered normally, and other requests are not held up
    // meanwhile.
    let valid = serde_json::to_vec(&json!({"title": "Slow", "description": "D",
        "category": "c", "price_cents": 1, "currency": "EUR", "stock": 1}))
    .unwrap();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /api/products HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {seller}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            valid.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let trickle = tokio::spawn(async move {
        for piece in valid.chunks(valid.len() / 10 + 1) {
            slow.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        read_response(&mut slow).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut other = tokio::net::TcpStream::connect(addr).await.unwrap();
    other
        .write_all(b"GET /api/products/healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (status, _) = read_response(&mut other).await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a slow body held up another request for {:?}",
        started.elapsed()
    );
    let (status, text) = trickle.await.unwrap();
    assert_eq!(status, 201, "{text:.300}");

    // A header flood (10 000 headers, ~1 MiB) is refused by the listener, which stays up.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = String::from("GET /api/products/healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n");
    for i in 0..10_000 {
        head.push_str(&format!("x-flood-{i}: {}\r\n", "f".repeat(90)));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let (status, _) = read_response(&mut s).await;
    assert!(
        status == 431 || status == 0 || status == 400,
        "header flood: {status}"
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /api/products/healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut s).await.0,
        200,
        "the listener is still up"
    );
}
