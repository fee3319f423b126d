//! Order service (contract "Order service"), run with the real order, product and delivery
//! components: placing orders exactly once across services, sharding by buyer over two
//! PostgreSQL databases, cancel, delivery updates, the outbox relay, and failure injection
//! (the interceptor only injects faults; every success path goes through the real services).
//!
//! Run: `make test`, or with `MARKETPLACE_TEST_PG` / `MARKETPLACE_TEST_REDIS` set,
//! `cargo test -p marketplace-tests --test order`.

use std::sync::Arc;
use std::time::Duration;

use marketplace_tests::{Db, InterceptAction, Kv, TestApp, TestOptions, TestResponse};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const PRODUCT_HOST: &str = "product.spin.internal";
const DELIVERY_HOST: &str = "delivery.spin.internal";
const ORDER_HOST: &str = "order.spin.internal";

// ------------------------------------------------------------------ helpers

/// The documented routing: SHA-256 of the buyer's UUID bytes, first two bytes big-endian,
/// modulo 64 virtual shards; an empty `shard_map` spreads them evenly (0-31 → 0, 32-63 → 1).
fn vshard_of(buyer: Uuid) -> u16 {
    let d = Sha256::digest(buyer.as_bytes());
    u16::from_be_bytes([d[0], d[1]]) % 64
}

fn shard_of(buyer: Uuid) -> usize {
    usize::from(vshard_of(buyer)) * 2 / 64
}

fn buyer_on(shard: usize) -> Uuid {
    loop {
        let b = Uuid::now_v7();
        if shard_of(b) == shard {
            return b;
        }
    }
}

fn address() -> Value {
    json!({"name": "Ada Lovelace", "line1": "1 Main Street", "city": "London",
           "postal_code": "SW1A 1AA", "country": "GB"})
}

fn order_body(items: &[(&str, i64)]) -> Value {
    json!({
        "items": items.iter().map(|(id, q)| json!({"product_id": id, "quantity": q})).collect::<Vec<_>>(),
        "shipping_address": address(),
    })
}

struct Market {
    app: TestApp,
    seller_token: String,
}

impl Market {
    async fn start() -> Market {
        Self::on(TestApp::start().await)
    }

    fn on(app: TestApp) -> Market {
        let seller_token = app.token(Uuid::now_v7(), "seller");
        Market { app, seller_token }
    }

    /// A product created through the real product service.
    async fn product(&self, price_cents: i64, currency: &str, stock: i64) -> String {
        let r = self
            .app
            .post(
                "/api/products",
                Some(&self.seller_token),
                json!({"title": format!("Thing {}", &Uuid::new_v4().simple().to_string()[..6]),
                       "description": "A useful thing", "category": "things",
                       "price_cents": price_cents, "currency": currency, "stock": stock}),
            )
            .await;
        r.expect(201);
        r.json()["id"].as_str().expect("product id").to_string()
    }

    /// Stock as the product service's database of record holds it.
    async fn stock(&self, product: &str) -> i64 {
        let id: Uuid = product.parse().unwrap();
        self.app
            .db(Db::Product)
            .await
            .query_one("select stock from products where id = $1", &[&id])
            .await
            .unwrap()
            .get(0)
    }

    async fn place(&self, token: &str, key: Option<&str>, body: &Value) -> TestResponse {
        let auth = format!("Bearer {token}");
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        if let Some(k) = key {
            headers.push(("idempotency-key", k));
        }
        self.app
            .request(
                "POST",
                "/api/orders",
                &headers,
                serde_json::to_vec(body).unwrap(),
            )
            .await
    }

    async fn relay(&self) -> Value {
        let token = self.app.service_token("relay", "order");
        let r = self
            .app
            .post("/internal/orders/outbox/relay", Some(&token), json!({}))
            .await;
        r.expect(200);
        r.json()
    }

    async fn delivery_status(&self, order: &str, status: &str, at: &str) -> TestResponse {
        let token = self.app.service_token("delivery", "order");
        self.app
            .post(
                &format!("/internal/orders/{order}/delivery-status"),
                Some(&token),
                json!({"status": status, "occurred_at": at}),
            )
            .await
    }

    async fn count(&self, shard: usize, sql: &str) -> i64 {
        self.app
            .db(Db::Order(shard))
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Rows in every order table of both shards (nothing written means all zero).
    async fn rows_everywhere(&self) -> i64 {
        let mut n = 0;
        for shard in 0..2 {
            for table in [
                "orders",
                "order_items",
                "order_history",
                "idempotency_keys",
                "outbox",
            ] {
                n += self
                    .count(shard, &format!("select count(*) from {table}"))
                    .await;
            }
        }
        n
    }

    /// Injects `action` into every outbound call to `host` (optionally only for `method`).
    fn break_calls(
        &self,
        host: &'static str,
        method: Option<&'static str>,
        action: fn() -> InterceptAction,
    ) {
        self.app
            .app
            .set_outbound_interceptor(Some(Arc::new(move |p: &http::request::Parts| {
                (p.uri.host() == Some(host) && method.is_none_or(|m| p.method.as_str() == m))
                    .then(action)
            })));
    }

    fn heal(&self) {
        self.app.app.set_outbound_interceptor(None);
    }

    async fn history(&self, shard: usize, order: &str) -> Vec<String> {
        self.app
            .db(Db::Order(shard))
            .await
            .query(
                "select event from order_history where order_id = $1 order by id",
                &[&order],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

/// Fails the test's expectation (instead of hanging) when `f` blocks on a lock.
fn within<F: std::future::Future>(f: F) -> tokio::time::Timeout<F> {
    tokio::time::timeout(Duration::from_secs(15), f)
}

fn refused() -> InterceptAction {
    InterceptAction::ConnectionRefused
}

fn timeout() -> InterceptAction {
    InterceptAction::Timeout
}

fn server_error() -> InterceptAction {
    InterceptAction::respond(500, "boom")
}

fn unavailable() -> InterceptAction {
    InterceptAction::respond(503, "down")
}

// ------------------------------------------------------------------ placing orders

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placing_an_order_reserves_stock_snapshots_prices_and_requests_a_shipment() {
    let m = Market::start().await;
    let a = m.product(1999, "EUR", 10).await;
    let b = m.product(500, "EUR", 3).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");

    let r = m
        .place(&token, Some("k-1"), &order_body(&[(&a, 2), (&b, 3)]))
        .await;

    r.expect(201);
    let o = r.json();
    let id = o["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/orders/{id}").as_str())
    );
    assert_eq!(o["status"], "confirmed");
    assert_eq!(o["buyer_id"], buyer.to_string());
    assert_eq!(o["total_cents"], 2 * 1999 + 3 * 500);
    assert_eq!(o["currency"], "EUR");
    assert_eq!(o["items"][0]["product_id"], a);
    assert_eq!(o["items"][0]["unit_price_cents"], 1999);
    assert_eq!(o["items"][0]["currency"], "EUR");
    assert!(
        o["items"][0]["title"]
            .as_str()
            .unwrap()
            .starts_with("Thing ")
    );
    assert_eq!(o["items"][1]["quantity"], 3);
    assert_eq!(o["shipping_address"]["country"], "GB");
    assert!(o["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(m.stock(&a).await, 8);
    assert_eq!(m.stock(&b).await, 0);
    // The shipment exists at the delivery service, for this order and buyer.
    let shipment = o["shipment_id"]
        .as_str()
        .expect("shipment requested at once");
    let s = m
        .app
        .get(&format!("/api/deliveries/{shipment}"), Some(&token))
        .await;
    s.expect(200);
    assert_eq!(s.json()["order_id"], id);
    assert_eq!(s.json()["status"], "pending");
    // The price snapshot does not follow later price changes.
    m.app
        .patch(
            &format!("/api/products/{a}"),
            Some(&m.seller_token),
            json!({"price_cents": 1}),
        )
        .await
        .expect(200);
    let again = m.app.get(&format!("/api/orders/{id}"), Some(&token)).await;
    again.expect(200);
    assert_eq!(again.json()["items"][0]["unit_price_cents"], 1999);
    assert_eq!(
        m.history(shard_of(buyer), &id).await,
        vec!["placed", "shipment_requested"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_land_on_their_buyers_shard_and_their_ids_name_the_virtual_shard() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 100).await;
    for shard in [0, 1] {
        for _ in 0..2 {
            let buyer = buyer_on(shard);
            let token = m.app.token(buyer, "buyer");
            let r = m
                .place(&token, Some("same-key"), &order_body(&[(&p, 1)]))
                .await;
            r.expect(201);
            let id = r.json()["id"].as_str().unwrap().to_string();
            // `o` + virtual shard in two hex digits + UUID v7.
            assert_eq!(id.len(), 35);
            assert_eq!(&id[..3], format!("o{:02x}", vshard_of(buyer)));
            let here = m
                .count(
                    shard,
                    &format!(
                        "select count(*) from orders where id = '{id}' and vshard = {}",
                        vshard_of(buyer)
                    ),
                )
                .await;
            let there = m
                .count(
                    1 - shard,
                    &format!("select count(*) from orders where id = '{id}'"),
                )
                .await;
            assert_eq!((here, there), (1, 0), "order {id} of a shard-{shard} buyer");
        }
    }
    assert_eq!(m.count(0, "select count(*) from orders").await, 2);
    assert_eq!(m.count(1, "select count(*) from orders").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_writes_and_lists_of_one_buyer_never_touch_the_other_shard() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 100).await;
    for shard in [0, 1] {
        let buyer = buyer_on(shard);
        let token = m.app.token(buyer, "buyer");
        let first = m
            .place(&token, Some("before"), &order_body(&[(&p, 1)]))
            .await;
        first.expect(201);
        let id = first.json()["id"].as_str().unwrap().to_string();

        // Every table of the other shard is locked: any statement there would block.
        let other = m.app.db(Db::Order(1 - shard)).await;
        other
            .batch_execute(
                "begin; lock table orders, order_items, order_history, idempotency_keys, outbox \
                 in access exclusive mode",
            )
            .await
            .unwrap();
        within(m.app.get(&format!("/api/orders/{id}"), Some(&token)))
            .await
            .expect("GET by id touched the other shard")
            .expect(200);
        let list = within(m.app.get("/api/orders", Some(&token)))
            .await
            .expect("list touched the other shard");
        list.expect(200);
        assert_eq!(list.json()["items"].as_array().unwrap().len(), 1);
        within(m.place(&token, Some("during"), &order_body(&[(&p, 1)])))
            .await
            .expect("placing touched the other shard")
            .expect(201);
        within(
            m.app
                .post(&format!("/api/orders/{id}/cancel"), Some(&token), json!({})),
        )
        .await
        .expect("cancel touched the other shard")
        .expect(200);
        other.batch_execute("rollback").await.unwrap();
    }
}

// ------------------------------------------------------------------ idempotency

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_key_and_body_replay_the_first_response_and_another_body_is_refused() {
    let m = Market::start().await;
    let p = m.product(250, "USD", 10).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");
    let body = order_body(&[(&p, 2)]);

    let first = m.place(&token, Some("checkout-42"), &body).await;
    first.expect(201);
    // Same meaning, other formatting: a replay.
    let reordered =
        json!({"shipping_address": address(), "items": [{"quantity": 2, "product_id": p}]});
    let second = m.place(&token, Some("checkout-42"), &reordered).await;
    second.expect(201);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.json(), first.json());
    assert_eq!(m.stock(&p).await, 8, "reserved once");

    let other = m
        .place(&token, Some("checkout-42"), &order_body(&[(&p, 3)]))
        .await;
    other.expect_problem(422);
    assert_eq!(m.stock(&p).await, 8);

    // Keys are scoped per buyer: another buyer's identical key is a new order.
    let token2 = m.app.token(Uuid::now_v7(), "buyer");
    let theirs = m.place(&token2, Some("checkout-42"), &body).await;
    theirs.expect(201);
    assert_ne!(theirs.json()["id"], first.json()["id"]);
    assert_eq!(m.stock(&p).await, 6);
    let orders = m.count(0, "select count(*) from orders").await
        + m.count(1, "select count(*) from orders").await;
    assert_eq!(orders, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_create_one_order() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 50).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");
    let body = order_body(&[(&p, 5)]);

    let responses =
        futures::future::join_all((0..8).map(|_| m.place(&token, Some("racy"), &body))).await;

    let ids: Vec<Value> = responses
        .iter()
        .map(|r| {
            r.expect(201);
            r.json()["id"].clone()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(m.stock(&p).await, 45, "stock reserved once");
    assert_eq!(
        m.count(shard_of(buyer), "select count(*) from orders")
            .await,
        1
    );
    assert_eq!(
        m.count(
            shard_of(buyer),
            "select count(*) from outbox where kind = 'create_shipment'"
        )
        .await,
        1
    );
}

// ------------------------------------------------------------------ bad input

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_a_problem_and_reserve_and_write_nothing() {
    let m = Market::start().await;
    let eur = m.product(100, "EUR", 10).await;
    let usd = m.product(100, "USD", 10).await;
    let archived = m.product(100, "EUR", 10).await;
    m.app
        .delete(
            &format!("/api/products/{archived}"),
            Some(&m.seller_token),
            None,
        )
        .await
        .expect(204);
    let token = m.app.token(Uuid::now_v7(), "buyer");
    let unknown = Uuid::now_v7().to_string();
    let good = order_body(&[(&eur, 1)]);
    let mut long_name = address();
    long_name["name"] = json!("x".repeat(201));
    let mut bad_country = address();
    bad_country["country"] = json!("Narnia");
    let mut empty_city = address();
    empty_city["city"] = json!("  ");

    // (body, expected status, a field the problem must name)
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"items": [], "shipping_address": address()}),
            422,
            "items",
        ),
        (order_body(&[(&eur, 0)]), 422, "items[0].quantity"),
        (order_body(&[(&eur, -2)]), 422, "items[0].quantity"),
        (
            order_body(&[(&eur, 1_000_000_000)]),
            422,
            "items[0].quantity",
        ),
        (
            json!({"items": [{"product_id": eur, "quantity": 1e30}], "shipping_address": address()}),
            422,
            "items[0].quantity",
        ),
        (
            json!({"items": [{"product_id": eur, "quantity": "2"}], "shipping_address": address()}),
            422,
            "items[0].quantity",
        ),
        (
            order_body(&[(&eur, 1), (&eur, 2)]),
            422,
            "items[1].product_id",
        ),
        (order_body(&[("not-a-uuid", 1)]), 422, "items[0].product_id"),
        (
            json!({"items": [{"product_id": eur, "quantity": 1}], "shipping_address": long_name}),
            422,
            "shipping_address.name",
        ),
        (
            json!({"items": [{"product_id": eur, "quantity": 1}], "shipping_address": bad_country}),
            422,
            "shipping_address.country",
        ),
        (
            json!({"items": [{"product_id": eur, "quantity": 1}], "shipping_address": empty_city}),
            422,
            "shipping_address.city",
        ),
        (
            json!({"items": [{"product_id": eur, "quantity": 1}]}),
            422,
            "shipping_address",
        ),
        (
            json!({"items": [{"product_id": eur, "quantity": 1}], "shipping_address": address(), "coupon": "FREE"}),
            422,
            "coupon",
        ),
        (
            order_body(&[(&eur, 1), (&unknown, 1)]),
            422,
            "items[1].product_id",
        ),
        (order_body(&[(&archived, 1)]), 422, "items[0].product_id"),
        (order_body(&[(&eur, 1), (&usd, 1)]), 422, "items"),
    ];
    for (i, (body, status, field)) in cases.iter().enumerate() {
        let r = m.place(&token, Some(&format!("bad-{i}")), body).await;
        let doc = r.expect_problem(*status);
        assert!(
            doc["errors"].get(*field).is_some(),
            "case {i}: errors should name {field}: {doc}"
        );
    }
    // Missing, empty and over-long idempotency keys.
    for key in [None, Some(""), Some(&*"k".repeat(256))] {
        let doc = m.place(&token, key, &good).await.expect_problem(400);
        assert!(doc["errors"].get("Idempotency-Key").is_some(), "{doc}");
    }
    // Unknown query parameters.
    let auth = format!("Bearer {token}");
    let r = m
        .app
        .request(
            "POST",
            "/api/orders?dry_run=true",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("idempotency-key", "q1"),
            ],
            serde_json::to_vec(&good).unwrap(),
        )
        .await;
    r.expect_problem(400);
    // Not JSON, not an object, wrong media type.
    let auth = format!("Bearer {token}");
    let r = m
        .app
        .request(
            "POST",
            "/api/orders",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("idempotency-key", "x1"),
            ],
            b"{\"items\": [".to_vec(),
        )
        .await;
    r.expect_problem(400);
    let r = m
        .app
        .request(
            "POST",
            "/api/orders",
            &[
                ("authorization", &auth),
                ("content-type", "text/plain"),
                ("idempotency-key", "x2"),
            ],
            b"hello".to_vec(),
        )
        .await;
    r.expect_problem(415);
    let r = m
        .app
        .request(
            "POST",
            "/api/orders",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("idempotency-key", "x3"),
            ],
            vec![b' '; 1024 * 1024 + 1],
        )
        .await;
    r.expect_problem(413);

    assert_eq!(m.stock(&eur).await, 10, "nothing reserved");
    assert_eq!(m.stock(&usd).await, 10, "nothing reserved");
    assert_eq!(m.rows_everywhere().await, 0, "nothing written");
    // The key of a refused request can be used for a good one.
    m.place(&token, Some("bad-0"), &good).await.expect(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn not_enough_stock_is_a_409_and_reserves_nothing() {
    let m = Market::start().await;
    let plenty = m.product(100, "EUR", 10).await;
    let scarce = m.product(100, "EUR", 1).await;
    let token = m.app.token(Uuid::now_v7(), "buyer");

    let doc = m
        .place(
            &token,
            Some("short"),
            &order_body(&[(&plenty, 2), (&scarce, 2)]),
        )
        .await
        .expect_problem(409);

    assert!(doc["detail"].as_str().unwrap().contains(&scarce), "{doc}");
    assert_eq!(
        doc["short_items"],
        json!([{"product_id": scarce, "requested": 2, "available": 1}]),
        "the 409 names the short product (API v1.1)"
    );
    assert_eq!(m.stock(&plenty).await, 10);
    assert_eq!(m.stock(&scarce).await, 1);
    assert_eq!(m.rows_everywhere().await, 0);
    // Once stock is back, the same key goes through.
    m.app
        .patch(
            &format!("/api/products/{scarce}"),
            Some(&m.seller_token),
            json!({"stock": 5}),
        )
        .await
        .expect(200);
    m.place(
        &token,
        Some("short"),
        &order_body(&[(&plenty, 2), (&scarce, 2)]),
    )
    .await
    .expect(201);
    assert_eq!(m.stock(&scarce).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_authenticated_buyers_place_and_list_orders() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let body = order_body(&[(&p, 1)]);
    let r = m
        .app
        .request(
            "POST",
            "/api/orders",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "a"),
            ],
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    r.expect_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let expired = m
        .app
        .token_with(json!({"sub": Uuid::now_v7().to_string(), "role": "buyer",
        "iss": marketplace_tests::ISSUER, "aud": marketplace_tests::AUDIENCE,
        "iat": 1_000_000, "exp": 1_000_900, "jti": "x"}));
    m.place(&expired, Some("a"), &body)
        .await
        .expect_problem(401);
    for role in ["seller", "carrier"] {
        let t = m.app.token(Uuid::now_v7(), role);
        m.place(&t, Some("a"), &body).await.expect_problem(403);
        m.app.get("/api/orders", Some(&t)).await.expect_problem(403);
    }
    m.app.get("/api/orders", None).await.expect_problem(401);
    let service = m.app.service_token("delivery", "order");
    m.place(&service, Some("a"), &body)
        .await
        .expect_problem(401);
    let r = m.app.request("PUT", "/api/orders", &[], vec![]).await;
    r.expect_problem(405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
    assert_eq!(m.stock(&p).await, 10);
}

// ------------------------------------------------------------------ reading

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_is_visible_to_its_buyer_and_admins_only() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let token = m.app.token(Uuid::now_v7(), "buyer");
    let id = m
        .place(&token, Some("mine"), &order_body(&[(&p, 1)]))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();

    m.app
        .get(&format!("/api/orders/{id}"), Some(&token))
        .await
        .expect(200);
    let admin = m.app.token(Uuid::now_v7(), "admin");
    m.app
        .get(&format!("/api/orders/{id}"), Some(&admin))
        .await
        .expect(200);
    for t in [m.app.token(Uuid::now_v7(), "buyer"), m.seller_token.clone()] {
        m.app
            .get(&format!("/api/orders/{id}"), Some(&t))
            .await
            .expect_problem(404);
        m.app
            .post(&format!("/api/orders/{id}/cancel"), Some(&t), json!({}))
            .await
            .expect_problem(404);
    }
    m.app
        .get(&format!("/api/orders/{id}"), None)
        .await
        .expect_problem(401);
    let r = m
        .app
        .delete(&format!("/api/orders/{id}"), Some(&token), None)
        .await;
    r.expect_problem(405);
    assert_eq!(r.header("allow"), Some("GET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_order_ids_are_unknown_everywhere() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");
    let id = m
        .place(&token, Some("real"), &order_body(&[(&p, 1)]))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other_vshard = format!("o{:02x}{}", (vshard_of(buyer) + 32) % 64, &id[3..]);
    let out_of_range = format!("o7f{}", &id[3..]);
    let forged = [
        "garbage".to_string(),
        other_vshard,
        out_of_range,
        id.to_uppercase(),
        format!("{id}0"),
        format!("o{:02x}{}", vshard_of(buyer), Uuid::new_v4().simple()),
        "o00%27%3B%20drop%20table%20orders".to_string(),
    ];
    let delivery = m.app.service_token("delivery", "order");
    let admin = m.app.token(Uuid::now_v7(), "admin");
    for f in &forged {
        m.app
            .get(&format!("/api/orders/{f}"), Some(&admin))
            .await
            .expect_problem(404);
        m.app
            .post(&format!("/api/orders/{f}/cancel"), Some(&token), json!({}))
            .await
            .expect_problem(404);
        m.app
            .post(
                &format!("/internal/orders/{f}/delivery-status"),
                Some(&delivery),
                json!({"status": "shipped", "occurred_at": "2026-11-28T12:00:00Z"}),
            )
            .await
            .expect_problem(404);
    }
    // The real order is untouched.
    let o = m.app.get(&format!("/api/orders/{id}"), Some(&token)).await;
    assert_eq!(o.json()["status"], "confirmed");
    assert_eq!(m.stock(&p).await, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buyer_lists_only_their_own_orders_newest_first_page_by_page() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 100).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = m
            .place(&token, Some(&format!("list-{i}")), &order_body(&[(&p, 1)]))
            .await;
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let stranger = m.app.token(Uuid::now_v7(), "buyer");
    m.place(&stranger, Some("list-0"), &order_body(&[(&p, 1)]))
        .await
        .expect(201);

    let page1 = m.app.get("/api/orders?limit=2", Some(&token)).await;
    page1.expect(200);
    let page1 = page1.json();
    let got: Vec<&str> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[2].as_str(), ids[1].as_str()]);
    let cursor = page1["next_cursor"].as_str().expect("a next page");
    let page2 = m
        .app
        .get(
            &format!("/api/orders?limit=2&cursor={cursor}"),
            Some(&token),
        )
        .await;
    page2.expect(200);
    let page2 = page2.json();
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert_eq!(page2["items"][0]["id"], ids[0]);
    assert!(page2["next_cursor"].is_null());

    for bad in [
        "limit=0",
        "limit=101",
        "cursor=%21%21",
        "sort=oldest",
        "limit=1&limit=2",
    ] {
        m.app
            .get(&format!("/api/orders?{bad}"), Some(&token))
            .await
            .expect_problem(400);
    }
    // Another buyer's cursor does not open this buyer's list.
    let r = m
        .app
        .get(&format!("/api/orders?cursor={cursor}"), Some(&stranger))
        .await;
    assert!(
        r.status == 400 || r.json()["items"].as_array().unwrap().len() <= 1,
        "{}",
        r.status
    );
}

// ------------------------------------------------------------------ cancel

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_releases_the_stock_once_and_is_refused_once_shipped() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");
    let id = m
        .place(&token, Some("c1"), &order_body(&[(&p, 4)]))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(m.stock(&p).await, 6);

    let r = m
        .app
        .post(&format!("/api/orders/{id}/cancel"), Some(&token), json!({}))
        .await;
    r.expect(200);
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(m.stock(&p).await, 10);
    // Idempotent: a second cancel answers the same and releases nothing more.
    let r = m
        .app
        .post(&format!("/api/orders/{id}/cancel"), Some(&token), json!({}))
        .await;
    r.expect(200);
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(m.stock(&p).await, 10);
    let events = m.history(shard_of(buyer), &id).await;
    assert_eq!(
        events,
        vec![
            "placed",
            "shipment_requested",
            "cancelled",
            "stock_released"
        ]
    );

    // An admin may cancel too; a shipped order may not be cancelled by anyone.
    let shipped = m
        .place(&token, Some("c2"), &order_body(&[(&p, 1)]))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    m.delivery_status(&shipped, "shipped", "2026-11-28T12:00:00Z")
        .await
        .expect(200);
    let admin = m.app.token(Uuid::now_v7(), "admin");
    for t in [&token, &admin] {
        m.app
            .post(&format!("/api/orders/{shipped}/cancel"), Some(t), json!({}))
            .await
            .expect_problem(409);
    }
    assert_eq!(m.stock(&p).await, 9);
    let third = m
        .place(&token, Some("c3"), &order_body(&[(&p, 1)]))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = m
        .app
        .post(
            &format!("/api/orders/{third}/cancel"),
            Some(&admin),
            json!({}),
        )
        .await;
    r.expect(200);
    assert_eq!(m.stock(&p).await, 9);
}

// ------------------------------------------------------------------ cancellation stops the parcel

impl Market {
    /// Places an order of `quantity` units of `product`; returns (order id, shipment id).
    async fn order_of(
        &self,
        token: &str,
        product: &str,
        quantity: i64,
    ) -> (String, Option<String>) {
        let r = self
            .place(
                token,
                Some(&Uuid::new_v4().to_string()),
                &order_body(&[(product, quantity)]),
            )
            .await;
        r.expect(201);
        let o = r.json();
        (
            o["id"].as_str().unwrap().to_string(),
            o["shipment_id"].as_str().map(str::to_string),
        )
    }

    async fn cancel(&self, token: &str, order: &str) -> TestResponse {
        self.app
            .post(
                &format!("/api/orders/{order}/cancel"),
                Some(token),
                json!({}),
            )
            .await
    }

    /// `GET path` as a fresh user of `role`, expecting 200: the body.
    async fn read_as(&self, role: &str, path: &str) -> Value {
        let token = self.app.token(Uuid::now_v7(), role);
        let r = self.app.get(path, Some(&token)).await;
        r.expect(200);
        r.json()
    }

    async fn order(&self, order: &str) -> Value {
        self.read_as("admin", &format!("/api/orders/{order}")).await
    }

    /// The shipment as the delivery service holds it (read as a carrier).
    async fn shipment(&self, id: &str) -> Value {
        self.read_as("carrier", &format!("/api/deliveries/{id}"))
            .await
    }

    /// Every shipment the delivery service holds for `order`.
    async fn shipments_of(&self, order: &str) -> Vec<Value> {
        let page = self
            .read_as("carrier", &format!("/api/deliveries?order_id={order}"))
            .await;
        page["items"].as_array().unwrap().clone()
    }

    async fn scan(&self, shipment: &str, event_id: &str, status: &str) -> TestResponse {
        let carrier = self.app.token(Uuid::now_v7(), "carrier");
        self.app
            .post(
                &format!("/api/deliveries/{shipment}/events"),
                Some(&carrier),
                json!({"event_id": event_id, "status": status}),
            )
            .await
    }

    async fn delivery_relay(&self) -> Value {
        let r = self
            .app
            .post(
                "/internal/deliveries/outbox/relay",
                Some(&self.app.service_token("relay", "delivery")),
                json!({}),
            )
            .await;
        r.expect(200);
        r.json()
    }

    /// Whether the product service still holds reservation `order` (not released).
    async fn holds_reservation(&self, order: &str) -> bool {
        self.app
            .db(Db::Product)
            .await
            .query_one(
                "select count(*) from reservations where reservation_id = $1 \
                 and released_at is null",
                &[&order],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1
    }

    /// `cancel_shipment` intents of one shard not yet settled.
    async fn open_intents(&self, shard: usize) -> i64 {
        self.count(
            shard,
            "select count(*) from outbox where kind = 'cancel_shipment' and delivered_at is null",
        )
        .await
    }

    /// A `POST` on a task of its own, after `delay`, so that racing requests run in parallel.
    fn spawn_post(
        &self,
        path: String,
        token: &str,
        body: Value,
        delay: Duration,
    ) -> tokio::task::JoinHandle<TestResponse> {
        let host = self.app.app.clone();
        let auth = format!("Bearer {token}");
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let req = http::Request::builder()
                .method("POST")
                .uri(format!("http://127.0.0.1:3000{path}"))
                .header("host", "127.0.0.1:3000")
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(bytes::Bytes::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            let resp = host
                .handle(req)
                .await
                .unwrap_or_else(|e| panic!("POST {path}: host error: {e:#}"));
            let (parts, body) = resp.into_parts();
            TestResponse {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_cancels_the_shipment_first_then_the_order_and_releases_the_stock() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");
    let (id, shipment) = m.order_of(&token, &p, 4).await;
    let shipment = shipment.expect("shipment requested at placement");

    let r = m.cancel(&token, &id).await;

    r.expect(200);
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(r.json()["shipment_id"], shipment.as_str());
    let s = m.shipment(&shipment).await;
    assert_eq!(s["status"], "cancelled");
    assert_eq!(s["history"][0]["event_id"], "order/cancel");
    assert_eq!(m.stock(&p).await, 10);
    assert!(!m.holds_reservation(&id).await);
    assert_eq!(m.open_intents(shard_of(buyer)).await, 0);
    // Idempotent: the same answer, nothing more released or recorded.
    let again = m.cancel(&token, &id).await;
    again.expect(200);
    assert_eq!(again.json()["status"], "cancelled");
    assert_eq!(m.stock(&p).await, 10);
    assert_eq!(m.shipment(&shipment).await, s);
    assert_eq!(
        m.history(shard_of(buyer), &id).await,
        vec![
            "placed",
            "shipment_requested",
            "cancelled",
            "stock_released"
        ]
    );
    // The parcel stays put: a late pickup scan is refused and the order stays cancelled.
    m.scan(&shipment, "late-pickup", "picked_up")
        .await
        .expect_problem(409);
    assert_eq!(m.order(&id).await["status"], "cancelled");
    assert_eq!(m.shipment(&shipment).await["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_after_the_pickup_is_a_409_that_changes_nothing() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");
    let (id, shipment) = m.order_of(&token, &p, 3).await;
    let shipment = shipment.unwrap();
    // The pickup is recorded, but its report to the order service is held back: the order
    // still says `confirmed`, so only the delivery service can refuse the cancel.
    m.break_calls(ORDER_HOST, None, refused);
    m.scan(&shipment, "pickup", "picked_up").await.expect(201);
    assert_eq!(m.order(&id).await["status"], "confirmed");

    let doc = m.cancel(&token, &id).await.expect_problem(409);

    assert!(
        doc["detail"].as_str().unwrap().contains("picked up"),
        "{doc}"
    );
    assert_eq!(m.order(&id).await["status"], "confirmed");
    assert_eq!(m.stock(&p).await, 7);
    assert!(m.holds_reservation(&id).await);
    assert_eq!(m.shipment(&shipment).await["status"], "picked_up");
    assert_eq!(
        m.open_intents(shard_of(buyer)).await,
        0,
        "the intent is gone"
    );
    assert_eq!(
        m.history(shard_of(buyer), &id).await,
        vec!["placed", "shipment_requested"]
    );
    // Once the report lands the order is shipped, and the order itself refuses the cancel.
    m.heal();
    m.delivery_relay().await;
    assert_eq!(m.order(&id).await["status"], "shipped");
    m.cancel(&token, &id).await.expect_problem(409);
    m.relay().await;
    assert_eq!(m.stock(&p).await, 7);
    assert!(m.holds_reservation(&id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_while_the_delivery_service_is_down_is_a_503_that_changes_nothing() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");
    let mut orders = Vec::new();
    for action in [
        refused as fn() -> InterceptAction,
        timeout,
        server_error,
        unavailable,
    ] {
        let (id, shipment) = m.order_of(&token, &p, 1).await;
        m.break_calls(DELIVERY_HOST, None, action);

        let doc = within(m.cancel(&token, &id))
            .await
            .expect("the cancel answers")
            .expect_problem(503);

        m.heal();
        assert!(
            doc["detail"].as_str().unwrap().contains("delivery"),
            "{doc}"
        );
        assert_eq!(m.order(&id).await["status"], "confirmed");
        assert!(m.holds_reservation(&id).await);
        orders.push((id, shipment.unwrap()));
    }
    assert_eq!(m.stock(&p).await, 6);
    for (id, shipment) in &orders {
        assert_eq!(m.shipment(shipment).await["status"], "pending", "{id}");
        assert_eq!(
            m.history(shard_of(buyer), id).await,
            vec!["placed", "shipment_requested"]
        );
    }
    // The relay settles the unresolved attempts from the shipments' status: not cancelled,
    // so they are dropped and the orders stay as they are.
    let r = m.relay().await;
    assert_eq!(r["cancels_dropped"], 4, "{r}");
    assert_eq!(r["cancels_finished"], 0, "{r}");
    assert_eq!(m.open_intents(shard_of(buyer)).await, 0);
    for (id, shipment) in &orders {
        assert_eq!(m.order(id).await["status"], "confirmed");
        assert_eq!(m.shipment(shipment).await["status"], "pending");
    }
    assert_eq!(m.stock(&p).await, 6);
    // With the delivery service back, the buyer's retry cancels.
    m.cancel(&token, &orders[0].0).await.expect(200);
    assert_eq!(m.shipment(&orders[0].1).await["status"], "cancelled");
    assert_eq!(m.stock(&p).await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_whose_answer_was_lost_is_finished_by_the_relay() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");
    let (id, shipment) = m.order_of(&token, &p, 2).await;
    let shipment = shipment.unwrap();
    // What a lost answer looks like from the order service: the delivery service cancelled
    // the shipment, and the order service heard only a 503.
    m.app
        .post(
            &format!("/internal/deliveries/{shipment}/cancel"),
            Some(&m.app.service_token("order", "delivery")),
            json!({}),
        )
        .await
        .expect(200);
    m.break_calls(DELIVERY_HOST, Some("POST"), unavailable);

    m.cancel(&token, &id).await.expect_problem(503);

    m.heal();
    let r = m.relay().await;
    assert_eq!(r["cancels_finished"], 1, "{r}");
    assert_eq!(m.order(&id).await["status"], "cancelled");
    m.relay().await;
    assert_eq!(m.stock(&p).await, 10);
    assert!(!m.holds_reservation(&id).await);
    assert_eq!(
        m.history(shard_of(buyer), &id).await,
        vec![
            "placed",
            "shipment_requested",
            "cancelled",
            "stock_released"
        ]
    );
    assert_eq!(m.open_intents(shard_of(buyer)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_that_crashed_midway_is_finished_or_rolled_back_by_the_relay() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let buyer = Uuid::now_v7();
    let shard = shard_of(buyer);
    let token = m.app.token(buyer, "buyer");
    let (after_call, after_shipment) = m.order_of(&token, &p, 1).await;
    let (before_call, before_shipment) = m.order_of(&token, &p, 2).await;
    let (in_lease, lease_shipment) = m.order_of(&token, &p, 3).await;
    let (after_shipment, before_shipment, lease_shipment) = (
        after_shipment.unwrap(),
        before_shipment.unwrap(),
        lease_shipment.unwrap(),
    );
    // What crashed cancel requests leave: an intent row each (written and committed before
    // the delivery service is called), and for two of them a shipment the call cancelled.
    let db = m.app.db(Db::Order(shard)).await;
    for (order, due) in [
        (&after_call, "now() - interval '1 minute'"),
        (&before_call, "now() - interval '1 minute'"),
        (&in_lease, "now() + interval '1 hour'"),
    ] {
        db.execute(
            &format!(
                "insert into outbox (order_id, vshard, kind, payload, next_attempt_at) \
                 values ($1, $2, 'cancel_shipment', $3, {due})"
            ),
            &[
                order,
                &(vshard_of(buyer) as i16),
                &json!({"actor": "buyer", "by": buyer}),
            ],
        )
        .await
        .unwrap();
    }
    let order_token = m.app.service_token("order", "delivery");
    for shipment in [&after_shipment, &lease_shipment] {
        m.app
            .post(
                &format!("/internal/deliveries/{shipment}/cancel"),
                Some(&order_token),
                json!({}),
            )
            .await
            .expect(200);
    }

    let r = m.relay().await;

    // Cancelled shipment: the cancel is finished. Pending shipment: the intent is dropped.
    assert_eq!(r["cancels_finished"], 1, "{r}");
    assert_eq!(r["cancels_dropped"], 1, "{r}");
    assert_eq!(m.order(&after_call).await["status"], "cancelled");
    assert_eq!(m.order(&before_call).await["status"], "confirmed");
    assert_eq!(m.shipment(&before_shipment).await["status"], "pending");
    // An intent still inside its lease belongs to a request that may be running: untouched.
    assert_eq!(m.order(&in_lease).await["status"], "confirmed");
    assert_eq!(m.open_intents(shard).await, 1);
    m.relay().await;
    assert!(!m.holds_reservation(&after_call).await);
    assert!(m.holds_reservation(&before_call).await);
    assert_eq!(m.stock(&p).await, 10 - 2 - 3);
    let detail: Value = db
        .query_one(
            "select detail from order_history where order_id = $1 and event = 'cancelled'",
            &[&after_call],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(detail["finished_by"], "relay");
    assert_eq!(detail["shipment_id"], after_shipment.as_str());
    // Once the lease is over (the request is gone), the relay settles that one too.
    db.execute(
        "update outbox set next_attempt_at = now() where kind = 'cancel_shipment' \
         and delivered_at is null",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(m.relay().await["cancels_finished"], 1);
    m.relay().await;
    assert_eq!(m.order(&in_lease).await["status"], "cancelled");
    assert_eq!(m.stock(&p).await, 10 - 2);
    assert_eq!(m.open_intents(shard).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_an_order_whose_shipment_was_never_created_cancels_one_made_for_it() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");
    m.break_calls(DELIVERY_HOST, None, refused);
    let (id, shipment) = m.order_of(&token, &p, 2).await;
    assert!(shipment.is_none());
    m.heal();

    let r = m.cancel(&token, &id).await;

    r.expect(200);
    let o = r.json();
    assert_eq!(o["status"], "cancelled");
    let shipment = o["shipment_id"]
        .as_str()
        .expect("the shipment is known now");
    let all = m.shipments_of(&id).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["id"], shipment);
    assert_eq!(all[0]["status"], "cancelled");
    assert_eq!(m.stock(&p).await, 10);
    // The create row left from the placement has nothing to do any more.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = m.relay().await;
    assert_eq!(r["shipments_requested"], 0, "{r}");
    assert_eq!(m.shipments_of(&id).await.len(), 1);
    assert_eq!(
        m.count(
            shard_of(buyer),
            "select count(*) from outbox where delivered_at is null"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancels_racing_pickups_end_in_exactly_one_outcome_per_order() {
    let m = Market::on(
        TestApp::start_with(TestOptions {
            kv: Kv::Redis,
            ..Default::default()
        })
        .await,
    );
    let p = m.product(100, "EUR", 100).await;
    let carrier = m.app.token(Uuid::now_v7(), "carrier");
    let mut orders = Vec::new();
    for i in 0..20 {
        let buyer = Uuid::now_v7();
        let token = m.app.token(buyer, "buyer");
        let quantity = i % 3 + 1;
        let (id, shipment) = m.order_of(&token, &p, quantity).await;
        orders.push((buyer, token, id, shipment.unwrap(), quantity));
    }

    // Every order's cancel and its shipment's pickup scan run at once, each on a task. A
    // cancel has more to do before it reaches the delivery service (a transaction for its
    // intent, another around the call), so the scans start 0 to 380 ms late, 20 ms apart:
    // early scans win, late ones lose, and the pairs in between race head to head (on this
    // host both outcomes show up in every run; the assertions hold for either).
    let races: Vec<_> = orders
        .iter()
        .enumerate()
        .map(|(i, (_, token, id, shipment, _))| {
            (
                m.spawn_post(
                    format!("/api/orders/{id}/cancel"),
                    token,
                    json!({}),
                    Duration::ZERO,
                ),
                m.spawn_post(
                    format!("/api/deliveries/{shipment}/events"),
                    &carrier,
                    json!({"event_id": "race-pickup", "status": "picked_up"}),
                    Duration::from_millis(20 * i as u64),
                ),
            )
        })
        .collect();
    let mut answers = Vec::new();
    for (c, s) in races {
        answers.push((c.await.unwrap(), s.await.unwrap()));
    }
    // Let every report and release land.
    m.delivery_relay().await;
    m.relay().await;
    m.relay().await;

    let (mut cancelled, mut shipped, mut held) = (0, 0, 0);
    for ((buyer, _, id, shipment, quantity), (c, s)) in orders.iter().zip(&answers) {
        let order = m.order(id).await;
        let parcel = m.shipment(shipment).await;
        let holds = m.holds_reservation(id).await;
        let outcome = (
            c.status,
            s.status,
            order["status"].as_str().unwrap(),
            parcel["status"].as_str().unwrap(),
            holds,
        );
        match outcome {
            (200, 409, "cancelled", "cancelled", false) => cancelled += 1,
            (409, 201, "shipped", "picked_up", true) => {
                shipped += 1;
                held += quantity;
            }
            other => panic!(
                "{id} (buyer {buyer}): neither outcome: {other:?}; cancel {} / scan {}",
                String::from_utf8_lossy(&c.body),
                String::from_utf8_lossy(&s.body)
            ),
        }
    }
    assert_eq!(cancelled + shipped, 20);
    assert_eq!(m.stock(&p).await, 100 - held, "stock = live orders exactly");
    for shard in 0..2 {
        assert_eq!(
            m.count(
                shard,
                "select count(*) from outbox where delivered_at is null"
            )
            .await,
            0,
            "shard {shard}: everything settled"
        );
    }
    eprintln!("race: {cancelled} cancels won, {shipped} pickups won");
}

// ------------------------------------------------------------------ delivery updates

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_updates_move_an_order_forward_only_and_are_idempotent() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");
    let id = m
        .place(&token, Some("d1"), &order_body(&[(&p, 1)]))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let status = |r: TestResponse| {
        r.expect(200);
        r.json()["status"].as_str().unwrap().to_string()
    };
    assert_eq!(
        status(
            m.delivery_status(&id, "shipped", "2026-11-28T10:00:00Z")
                .await
        ),
        "shipped"
    );
    assert_eq!(
        status(
            m.delivery_status(&id, "shipped", "2026-11-28T10:00:00Z")
                .await
        ),
        "shipped"
    );
    assert_eq!(
        status(
            m.delivery_status(&id, "delivered", "2026-11-28T15:00:00Z")
                .await
        ),
        "delivered"
    );
    // Stale and contradicting updates arrive late: nothing moves back.
    assert_eq!(
        status(
            m.delivery_status(&id, "shipped", "2026-11-28T09:00:00Z")
                .await
        ),
        "delivered"
    );
    assert_eq!(
        status(
            m.delivery_status(&id, "returned", "2026-11-28T16:00:00Z")
                .await
        ),
        "delivered"
    );
    let events = m.history(shard_of(buyer), &id).await;
    assert_eq!(
        events,
        vec!["placed", "shipment_requested", "shipped", "delivered"]
    );
    let at: String = m
        .app
        .db(Db::Order(shard_of(buyer)))
        .await
        .query_one(
            "select to_char(occurred_at at time zone 'utc', 'HH24:MI') from order_history \
             where order_id = $1 and event = 'delivered'",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(at, "15:00", "history keeps when it happened");

    // An out-of-order `delivered` before `shipped` still moves a confirmed order forward.
    let other = m
        .place(&token, Some("d2"), &order_body(&[(&p, 1)]))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        status(
            m.delivery_status(&other, "returned", "2026-11-28T10:00:00Z")
                .await
        ),
        "returned"
    );
    assert_eq!(
        status(
            m.delivery_status(&other, "shipped", "2026-11-28T09:00:00Z")
                .await
        ),
        "returned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_status_updates_accept_only_the_delivery_service_and_valid_bodies() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let token = m.app.token(Uuid::now_v7(), "buyer");
    let id = m
        .place(&token, Some("s1"), &order_body(&[(&p, 1)]))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/internal/orders/{id}/delivery-status");
    let body = json!({"status": "shipped", "occurred_at": "2026-11-28T12:00:00Z"});

    m.app
        .post(&path, None, body.clone())
        .await
        .expect_problem(401);
    m.app
        .post(&path, Some(&token), body.clone())
        .await
        .expect_problem(403);
    let admin = m.app.token(Uuid::now_v7(), "admin");
    m.app
        .post(&path, Some(&admin), body.clone())
        .await
        .expect_problem(403);
    let wrong_service = m.app.service_token("order", "order");
    m.app
        .post(&path, Some(&wrong_service), body.clone())
        .await
        .expect_problem(403);
    let delivery = m.app.service_token("delivery", "order");
    for (bad, field) in [
        (
            json!({"status": "picked_up", "occurred_at": "2026-11-28T12:00:00Z"}),
            "status",
        ),
        (
            json!({"status": "cancelled", "occurred_at": "2026-11-28T12:00:00Z"}),
            "status",
        ),
        (
            json!({"status": "shipped", "occurred_at": "yesterday"}),
            "occurred_at",
        ),
        (json!({"status": "shipped"}), "occurred_at"),
        (
            json!({"status": "shipped", "occurred_at": "2026-11-28T12:00:00Z", "x": 1}),
            "x",
        ),
    ] {
        let doc = m
            .app
            .post(&path, Some(&delivery), bad)
            .await
            .expect_problem(422);
        assert!(doc["errors"].get(field).is_some(), "{doc}");
    }
    let o = m.app.get(&format!("/api/orders/{id}"), Some(&token)).await;
    assert_eq!(o.json()["status"], "confirmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn carrier_scans_at_the_delivery_service_reach_the_order() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let token = m.app.token(Uuid::now_v7(), "buyer");
    let o = m
        .place(&token, Some("e2e"), &order_body(&[(&p, 1)]))
        .await
        .json();
    let id = o["id"].as_str().unwrap().to_string();
    let shipment = o["shipment_id"].as_str().unwrap().to_string();
    let carrier = m.app.token(Uuid::now_v7(), "carrier");

    let scan = |event: &str, status: &str| json!({"event_id": event, "status": status, "occurred_at": chrono::Utc::now().to_rfc3339()});
    m.app
        .post(
            &format!("/api/deliveries/{shipment}/events"),
            Some(&carrier),
            scan("e1", "picked_up"),
        )
        .await
        .expect(201);
    let mut order = m
        .app
        .get(&format!("/api/orders/{id}"), Some(&token))
        .await
        .json();
    if order["status"] != "shipped" {
        // The delivery service reports through its own outbox when the inline report fails.
        let relay = m.app.service_token("relay", "delivery");
        m.app
            .post("/internal/deliveries/outbox/relay", Some(&relay), json!({}))
            .await;
        order = m
            .app
            .get(&format!("/api/orders/{id}"), Some(&token))
            .await
            .json();
    }
    assert_eq!(order["status"], "shipped");
    m.app
        .post(&format!("/api/orders/{id}/cancel"), Some(&token), json!({}))
        .await
        .expect_problem(409);
    for (event, status) in [
        ("e2", "in_transit"),
        ("e3", "out_for_delivery"),
        ("e4", "delivered"),
    ] {
        m.app
            .post(
                &format!("/api/deliveries/{shipment}/events"),
                Some(&carrier),
                scan(event, status),
            )
            .await
            .expect(201);
    }
    let order = m
        .app
        .get(&format!("/api/orders/{id}"), Some(&token))
        .await
        .json();
    assert_eq!(order["status"], "delivered");
}

// ------------------------------------------------------------------ outbox relay

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_route_accepts_only_the_relays_own_identity() {
    let m = Market::start().await;
    let path = "/internal/orders/outbox/relay";
    m.app.post(path, None, json!({})).await.expect_problem(401);
    let user = m.app.token(Uuid::now_v7(), "admin");
    m.app
        .post(path, Some(&user), json!({}))
        .await
        .expect_problem(403);
    // The services' own keys (which can reserve stock or create shipments) are refused here:
    // the CronJob holds only the relay's key.
    for service in ["order", "delivery"] {
        let token = m.app.service_token(service, "order");
        m.app
            .post(path, Some(&token), json!({}))
            .await
            .expect_problem(403);
    }
    // Addressed to another service: not for us.
    let to_delivery = m.app.service_token("relay", "delivery");
    m.app
        .post(path, Some(&to_delivery), json!({}))
        .await
        .expect_problem(401);
    let relay = m.app.service_token("relay", "order");
    let r = m.app.post(path, Some(&relay), json!({})).await;
    r.expect(200);
    assert_eq!(r.json()["failed"], 0);
    // The CronJob may send no body at all.
    let auth = format!("Bearer {relay}");
    m.app
        .request("POST", path, &[("authorization", &auth)], vec![])
        .await
        .expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_identity_is_refused_on_every_other_internal_order_route() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let buyer = m.app.token(Uuid::now_v7(), "buyer");
    let placed = m
        .place(&buyer, Some("k-relay"), &order_body(&[(&p, 1)]))
        .await;
    placed.expect(201);
    let id = placed.json()["id"].as_str().unwrap().to_string();
    let relay = m.app.service_token("relay", "order");
    let update = json!({"status": "shipped", "occurred_at": "2026-12-01T10:00:00Z"});
    m.app
        .post(
            &format!("/internal/orders/{id}/delivery-status"),
            Some(&relay),
            update,
        )
        .await
        .expect_problem(403);
    let stored = m.app.get(&format!("/api/orders/{id}"), Some(&buyer)).await;
    assert_eq!(stored.json()["status"], "confirmed");
}

// ------------------------------------------------------------------ failure injection

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_product_service_down_at_reservation_fails_cleanly_and_the_key_works_after_recovery() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let token = m.app.token(Uuid::now_v7(), "buyer");
    let body = order_body(&[(&p, 2)]);

    for action in [
        refused as fn() -> InterceptAction,
        timeout,
        server_error,
        unavailable,
    ] {
        m.break_calls(PRODUCT_HOST, None, action);
        let doc = m
            .place(&token, Some("retry-me"), &body)
            .await
            .expect_problem(503);
        assert!(doc["detail"].as_str().unwrap().contains("product"), "{doc}");
        m.heal();
        assert_eq!(m.stock(&p).await, 10);
        // No order, no key; at most a queued release of a reservation that may exist.
        assert_eq!(
            m.count(0, "select count(*) from orders").await
                + m.count(1, "select count(*) from orders").await,
            0
        );
        m.relay().await;
    }
    let r = m.place(&token, Some("retry-me"), &body).await;
    r.expect(201);
    assert!(r.header("idempotent-replayed").is_none());
    assert_eq!(m.stock(&p).await, 8);
    assert_eq!(
        m.count(0, "select count(*) from outbox where delivered_at is null")
            .await
            + m.count(1, "select count(*) from outbox where delivered_at is null")
                .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_that_fails_after_a_real_reservation_is_retried_by_the_relay() {
    let m = Market::start().await;
    let eur = m.product(100, "EUR", 10).await;
    let usd = m.product(100, "USD", 10).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");
    // Mixed currencies are only known from the reservation, which really happens; then the
    // release (DELETE) fails.
    m.break_calls(PRODUCT_HOST, Some("DELETE"), server_error);

    m.place(&token, Some("mixed"), &order_body(&[(&eur, 1), (&usd, 2)]))
        .await
        .expect_problem(422);

    assert_eq!(
        (m.stock(&eur).await, m.stock(&usd).await),
        (9, 8),
        "still held"
    );
    let shard = shard_of(buyer);
    assert_eq!(m.count(shard, "select count(*) from outbox where kind = 'release_reservation' and delivered_at is null").await, 1);
    assert_eq!(m.count(shard, "select count(*) from orders").await, 0);
    let still_down = m.relay().await;
    assert_eq!(still_down["failed"], 1);
    assert_eq!(m.stock(&eur).await, 9);

    m.heal();
    let healed = m.relay().await;

    assert_eq!(healed["reservations_released"], 1, "{healed}");
    assert_eq!((m.stock(&eur).await, m.stock(&usd).await), (10, 10));
    assert_eq!(
        m.count(
            shard,
            "select count(*) from outbox where delivered_at is null"
        )
        .await,
        0
    );
    // Later runs send nothing twice.
    assert_eq!(m.relay().await["reservations_released"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_delivery_service_down_after_the_commit_leaves_a_confirmed_order_that_the_relay_ships()
{
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");
    let mut ids = Vec::new();
    for (i, action) in [
        refused as fn() -> InterceptAction,
        timeout,
        server_error,
        unavailable,
    ]
    .into_iter()
    .enumerate()
    {
        m.break_calls(DELIVERY_HOST, None, action);
        let r = m
            .place(&token, Some(&format!("ship-{i}")), &order_body(&[(&p, 1)]))
            .await;
        r.expect(201);
        let o = r.json();
        assert_eq!(o["status"], "confirmed");
        assert!(o["shipment_id"].is_null());
        ids.push(o["id"].as_str().unwrap().to_string());
    }
    assert_eq!(m.stock(&p).await, 6);
    let down = m.relay().await;
    assert_eq!(down["shipments_requested"], 0);

    m.heal();
    // The failed relay run above pushed the rows' next attempt 2 s out (backoff).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let up = m.relay().await;

    assert_eq!(up["shipments_requested"], 4, "{up}");
    let delivery_view = m.app.token(Uuid::now_v7(), "carrier");
    for id in &ids {
        let o = m
            .app
            .get(&format!("/api/orders/{id}"), Some(&token))
            .await
            .json();
        let shipment = o["shipment_id"]
            .as_str()
            .expect("shipment created by the relay");
        let s = m
            .app
            .get(&format!("/api/deliveries/{shipment}"), Some(&delivery_view))
            .await;
        s.expect(200);
        assert_eq!(s.json()["order_id"], *id);
        let list = m
            .app
            .get(
                &format!("/api/deliveries?order_id={id}"),
                Some(&delivery_view),
            )
            .await
            .json();
        assert_eq!(
            list["items"].as_array().unwrap().len(),
            1,
            "exactly one shipment for {id}"
        );
    }
    assert_eq!(m.relay().await["shipments_requested"], 0);
    // The replay of the first response stays what the client first saw.
    let replay = m
        .place(&token, Some("ship-0"), &order_body(&[(&p, 1)]))
        .await;
    assert!(replay.json()["shipment_id"].is_null());
    assert_eq!(m.stock(&p).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_while_the_product_service_is_down_releases_the_stock_after_recovery() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let buyer = Uuid::now_v7();
    let token = m.app.token(buyer, "buyer");
    let id = m
        .place(&token, Some("cx"), &order_body(&[(&p, 3)]))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    m.break_calls(PRODUCT_HOST, None, refused);

    let r = m
        .app
        .post(&format!("/api/orders/{id}/cancel"), Some(&token), json!({}))
        .await;

    r.expect(200);
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(m.stock(&p).await, 7, "not released yet");
    m.heal();
    m.relay().await;
    assert_eq!(m.stock(&p).await, 10);
    assert_eq!(
        m.history(shard_of(buyer), &id).await,
        vec![
            "placed",
            "shipment_requested",
            "cancelled",
            "stock_released"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attempt_that_crashed_after_reserving_is_released_by_the_relay() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 10).await;
    let buyer = Uuid::now_v7();
    let shard = shard_of(buyer);
    // What a crash between "reserve" and "store" leaves: a pending key row (written before the
    // reservation) and a real reservation under the attempt's order id.
    let order_id = format!("o{:02x}{}", vshard_of(buyer), Uuid::now_v7().simple());
    let db = m.app.db(Db::Order(shard)).await;
    db.execute(
        "insert into idempotency_keys (buyer_id, vshard, key, request_hash, order_id, state, \
         updated_at) values ($1, $3, 'crashed', 'h', $2, 'pending', now() - interval '5 minutes')",
        &[&buyer, &order_id, &(vshard_of(buyer) as i16)],
    )
    .await
    .unwrap();
    let product_token = m.app.service_token("order", "product");
    m.app
        .post(
            "/internal/products/reservations",
            Some(&product_token),
            json!({"reservation_id": order_id, "items": [{"product_id": p, "quantity": 4}]}),
        )
        .await
        .expect(201);
    assert_eq!(m.stock(&p).await, 6);

    let r = m.relay().await;

    assert_eq!(r["abandoned_attempts_released"], 1, "{r}");
    assert_eq!(m.stock(&p).await, 10);
    assert_eq!(
        m.count(shard, "select count(*) from idempotency_keys")
            .await,
        0
    );
    // The buyer's retry with that key is a fresh, complete order.
    let token = m.app.token(buyer, "buyer");
    m.place(&token, Some("crashed"), &order_body(&[(&p, 4)]))
        .await
        .expect(201);
    assert_eq!(m.stock(&p).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_forgets_week_old_completed_keys_and_delivered_rows_and_keeps_the_rest() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 100).await;
    let buyer = buyer_on(0);
    let token = m.app.token(buyer, "buyer");
    let old = m
        .place(&token, Some("last-week"), &order_body(&[(&p, 1)]))
        .await;
    old.expect(201);
    let old_id = old.json()["id"].as_str().unwrap().to_string();
    m.relay().await;
    // A week and a day pass for that order's key and outbox row.
    let db = m.app.db(Db::Order(0)).await;
    db.batch_execute(
        "update outbox set delivered_at = now() - interval '8 days' where delivered_at is not null;
         update idempotency_keys set updated_at = now() - interval '8 days';",
    )
    .await
    .unwrap();
    let fresh = m
        .place(&token, Some("today"), &order_body(&[(&p, 1)]))
        .await;
    fresh.expect(201);
    let fresh_id = fresh.json()["id"].as_str().unwrap().to_string();

    let r = m.relay().await;

    assert_eq!(r["outbox_rows_purged"], 1, "{r}");
    assert_eq!(r["idempotency_keys_purged"], 1, "{r}");
    let keys = |sql: &'static str| m.count(0, sql);
    assert_eq!(
        keys("select count(*) from idempotency_keys where key = 'today'").await,
        1
    );
    assert_eq!(keys("select count(*) from idempotency_keys").await, 1);
    assert_eq!(
        m.count(
            0,
            &format!("select count(*) from outbox where order_id = '{fresh_id}'")
        )
        .await,
        1
    );
    // The orders themselves stay; the forgotten key is free again.
    m.app
        .get(&format!("/api/orders/{old_id}"), Some(&token))
        .await
        .expect(200);
    let again = m
        .place(&token, Some("last-week"), &order_body(&[(&p, 1)]))
        .await;
    again.expect(201);
    assert_ne!(again.json()["id"].as_str().unwrap(), old_id);
    // Nothing is due any more: a second run purges nothing.
    let r = m.relay().await;
    assert_eq!(
        (
            r["outbox_rows_purged"].as_i64(),
            r["idempotency_keys_purged"].as_i64()
        ),
        (Some(0), Some(0)),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_running_at_once_send_every_row_once() {
    let m = Market::start().await;
    let p = m.product(100, "EUR", 100).await;
    m.break_calls(DELIVERY_HOST, None, refused);
    for i in 0..10 {
        let token = m.app.token(buyer_on(i % 2), "buyer");
        m.place(&token, Some("k"), &order_body(&[(&p, 1)]))
            .await
            .expect(201);
    }
    m.heal();

    let (a, b) = tokio::join!(m.relay(), m.relay());

    let sent =
        a["shipments_requested"].as_i64().unwrap() + b["shipments_requested"].as_i64().unwrap();
    assert_eq!(sent, 10, "{a} {b}");
    for shard in [0, 1] {
        assert_eq!(
            m.count(
                shard,
                "select count(*) from orders where shipment_id is null"
            )
            .await,
            0
        );
        assert_eq!(
            m.count(
                shard,
                "select count(*) from outbox where delivered_at is null"
            )
            .await,
            0
        );
        assert_eq!(m.count(shard, "select coalesce(max(attempts), 0)::bigint from outbox where kind = 'create_shipment'").await, 2);
    }
    assert_eq!(m.stock(&p).await, 90);
}

// ------------------------------------------------------------------ operations

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_shard_database_down_fails_only_its_buyers_and_readiness_names_it() {
    // Shard 0 is a real, migrated order database (borrowed from another test app); shard 1
    // points where nothing listens.
    let holder = TestApp::start().await;
    let down = "postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable";
    let urls = format!("{},{down}", holder.database_url(Db::Order(0)));
    let m = Market::on(
        TestApp::start_with(TestOptions {
            variables: vec![("order_db_urls".into(), urls)],
            ..Default::default()
        })
        .await,
    );
    let p = m.product(100, "EUR", 10).await;
    let up = m.app.token(buyer_on(0), "buyer");
    let cut_off = m.app.token(buyer_on(1), "buyer");

    m.place(&up, Some("a"), &order_body(&[(&p, 1)]))
        .await
        .expect(201);
    let doc = m
        .place(&cut_off, Some("a"), &order_body(&[(&p, 1)]))
        .await
        .expect_problem(503);
    assert!(
        doc["detail"]
            .as_str()
            .unwrap()
            .contains("postgres order-db-1"),
        "{doc}"
    );
    m.app
        .get("/api/orders", Some(&cut_off))
        .await
        .expect_problem(503);
    m.app.get("/api/orders", Some(&up)).await.expect(200);
    assert_eq!(
        m.stock(&p).await,
        9,
        "nothing reserved for the cut-off buyer"
    );

    m.app.get("/api/orders/healthz", None).await.expect(200);
    let doc = m
        .app
        .get("/api/orders/readyz", None)
        .await
        .expect_problem(503);
    assert!(
        doc["detail"]
            .as_str()
            .unwrap()
            .contains("postgres order-db-1"),
        "{doc}"
    );
    // The relay still works through the reachable shard, and says that one is down.
    let token = m.app.service_token("relay", "order");
    let doc = m
        .app
        .post("/internal/orders/outbox/relay", Some(&token), json!({}))
        .await
        .expect_problem(503);
    assert!(
        doc["detail"].as_str().unwrap().contains("order-db-1"),
        "{doc}"
    );
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_order_route_refuses_query_parameters_it_does_not_define() {
    // Routing policy (every service): an undefined or repeated parameter is a 400 on every
    // route, also those that read no parameter at all.
    let m = Market::start().await;
    let buyer = m.app.token(Uuid::now_v7(), "buyer");
    let relay = m.app.service_token("relay", "order");
    for (method, path, token) in [
        ("GET", "/api/orders/healthz?verbose=1", None),
        ("GET", "/api/orders/readyz?verbose=1", None),
        ("GET", "/api/orders/openapi.json?v=3", None),
        ("GET", "/api/orders?limit=1&limit=2", Some(&buyer)),
        ("GET", "/api/orders/sales?page=2", Some(&buyer)),
        (
            "POST",
            "/internal/orders/outbox/relay?all=true",
            Some(&relay),
        ),
    ] {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let r = m.app.request(method, path, &headers, vec![]).await;
        r.expect_problem(400);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_is_healthy_ready_and_serves_its_openapi_document() {
    let m = Market::start().await;
    m.app.get("/api/orders/healthz", None).await.expect(200);
    m.app.get("/api/orders/readyz", None).await.expect(200);
    let r = m.app.get("/api/orders/openapi.json", None).await;
    r.expect(200);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/api/orders", "post"),
        ("/api/orders", "get"),
        ("/api/orders/{id}", "get"),
        ("/api/orders/{id}/cancel", "post"),
        ("/internal/orders/{id}/delivery-status", "post"),
        ("/internal/orders/outbox/relay", "post"),
        ("/api/orders/healthz", "get"),
        ("/api/orders/readyz", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
    }
    m.app
        .get("/api/orders/x/y/z", None)
        .await
        .expect_problem(404);
    let r = m
        .app
        .request("POST", "/api/orders/healthz", &[], vec![])
        .await;
    r.expect_problem(405);
    assert_eq!(r.header("allow"), Some("GET"));
}

// ------------------------------------------------------------------ sales (API v1.1)

/// One seller with a token; products are created through the product service as them.
struct Seller {
    id: Uuid,
    token: String,
}

impl Market {
    fn seller(&self) -> Seller {
        let id = Uuid::now_v7();
        Seller {
            id,
            token: self.app.token(id, "seller"),
        }
    }

    async fn product_of(&self, seller: &Seller, stock: i64) -> String {
        let r = self
            .app
            .post(
                "/api/products",
                Some(&seller.token),
                json!({"title": format!("Sold {}", &Uuid::new_v4().simple().to_string()[..6]),
                       "description": "A thing that sells", "category": "things",
                       "price_cents": 250, "currency": "EUR", "stock": stock}),
            )
            .await;
        r.expect(201);
        r.json()["id"].as_str().expect("product id").to_string()
    }

    /// Places one order of `items` (quantity per product); its id.
    async fn order_items(&self, token: &str, items: &[(&str, i64)]) -> Value {
        let r = self
            .place(token, Some(&Uuid::new_v4().to_string()), &order_body(items))
            .await;
        r.expect(201);
        r.json()
    }

    async fn sales(&self, token: &str, query: &str) -> TestResponse {
        self.app
            .get(&format!("/api/orders/sales?{query}"), Some(token))
            .await
    }

    /// Every page of `query` with `limit`, following the cursors.
    async fn all_sales(&self, token: &str, query: &str, limit: u32) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = format!("{query}&limit={limit}");
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let r = self.sales(token, &q).await;
            r.expect(200);
            let page = r.json();
            let got = page["items"].as_array().unwrap().clone();
            assert!(got.len() <= limit as usize);
            items.extend(got);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return items,
            }
        }
    }
}

/// (order id, line number) of each listed line.
fn lines(items: &[Value]) -> Vec<(String, i64)> {
    items
        .iter()
        .map(|s| {
            (
                s["order_id"].as_str().unwrap().to_string(),
                s["line_no"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The lines of `orders` (newest last, as placed) whose product is in `mine`, newest first,
/// lines of one order in line order.
fn expected_lines(orders: &[Value], mine: &[&str]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for o in orders.iter().rev() {
        for (n, item) in o["items"].as_array().unwrap().iter().enumerate() {
            if mine.contains(&item["product_id"].as_str().unwrap()) {
                out.push((o["id"].as_str().unwrap().to_string(), n as i64));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seller_sees_exactly_their_lines_across_both_shards_newest_first_and_nothing_personal() {
    let m = Market::start().await;
    let (a, b) = (m.seller(), m.seller());
    let (a1, a2, b1) = (
        m.product_of(&a, 100).await,
        m.product_of(&a, 100).await,
        m.product_of(&b, 100).await,
    );
    let (buyer0, buyer1) = (buyer_on(0), buyer_on(1));
    let (t0, t1) = (m.app.token(buyer0, "buyer"), m.app.token(buyer1, "buyer"));
    let orders = vec![
        m.order_items(&t0, &[(&a1, 1), (&b1, 1)]).await,
        m.order_items(&t1, &[(&b1, 2), (&a2, 3)]).await,
        m.order_items(&t0, &[(&a2, 1)]).await,
        m.order_items(&t1, &[(&a1, 2), (&a2, 1)]).await,
        m.order_items(&t1, &[(&b1, 1)]).await,
    ];

    let r = m.sales(&a.token, "").await;
    r.expect(200);
    let page = r.json();
    assert!(page["next_cursor"].is_null());
    let items = page["items"].as_array().unwrap().clone();
    assert_eq!(lines(&items), expected_lines(&orders, &[&a1, &a2]));
    // Both shards contributed.
    for shard in 0..2 {
        assert!(
            m.count(
                shard,
                "select count(*) from order_items where seller_id is not null"
            )
            .await
                > 0
        );
    }
    let allowed = [
        "order_id",
        "line_no",
        "placed_at",
        "product_id",
        "title",
        "quantity",
        "unit_price_cents",
        "currency",
        "order_status",
        "shipment_id",
        "tracking_number",
        "ship_to",
    ];
    for s in &items {
        let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        let mut want = allowed.to_vec();
        want.sort();
        assert_eq!(keys, want, "{s}");
        assert_eq!(
            s["ship_to"],
            json!({"city": "London", "postal_code": "SW1A 1AA", "country": "GB"})
        );
        let order = orders
            .iter()
            .find(|o| o["id"] == s["order_id"])
            .expect("a listed order");
        let line = &order["items"][s["line_no"].as_u64().unwrap() as usize];
        assert_eq!(s["product_id"], line["product_id"]);
        assert_eq!(s["title"], line["title"]);
        assert_eq!(s["quantity"], line["quantity"]);
        assert_eq!(s["unit_price_cents"], 250);
        assert_eq!(s["currency"], "EUR");
        assert_eq!(s["placed_at"], order["created_at"]);
        assert_eq!(s["order_status"], "confirmed");
        // The shipment was created at placement; its tracking number was recorded with it.
        let shipment = s["shipment_id"].as_str().expect("shipment id");
        assert_eq!(
            s["tracking_number"],
            m.shipment(shipment).await["tracking_number"]
        );
    }
    let text = String::from_utf8_lossy(&r.body).to_string();
    for personal in [
        "Ada Lovelace",
        "1 Main Street",
        &buyer0.to_string(),
        &buyer1.to_string(),
        "buyer_id",
    ] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }

    // The other seller sees only theirs; an admin sees a seller's list by naming them.
    let theirs = m.all_sales(&b.token, "", 20).await;
    assert_eq!(lines(&theirs), expected_lines(&orders, &[&b1]));
    let admin = m.app.token(Uuid::now_v7(), "admin");
    let as_admin = m.sales(&admin, &format!("seller_id={}", a.id)).await;
    as_admin.expect(200);
    assert_eq!(as_admin.json()["items"], json!(items));
    // A seller may name themselves, nobody else.
    m.sales(&a.token, &format!("seller_id={}", a.id))
        .await
        .expect(200);
    m.sales(&a.token, &format!("seller_id={}", b.id))
        .await
        .expect_problem(403);
    // A seller who sold nothing gets an empty page.
    let nobody = m.seller();
    let r = m.sales(&nobody.token, "").await;
    assert_eq!(r.json(), json!({"items": [], "next_cursor": null}));

    // Who may ask, and what is a bad question.
    m.app
        .get("/api/orders/sales", None)
        .await
        .expect_problem(401);
    for role in ["buyer", "carrier"] {
        let t = m.app.token(Uuid::now_v7(), role);
        m.sales(&t, "").await.expect_problem(403);
    }
    // A service token is no user's access token (like every public endpoint: 401).
    let service = m.app.service_token("delivery", "order");
    m.sales(&service, "").await.expect_problem(401);
    m.sales(&admin, "").await.expect_problem(400);
    for bad in [
        "status=lost",
        "limit=0",
        "limit=101",
        "cursor=%21%21",
        "seller_id=nope",
        "sort=oldest",
        "limit=1&limit=2",
    ] {
        m.sales(&a.token, bad).await.expect_problem(400);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_sales_while_new_orders_arrive_never_skips_or_repeats_a_line() {
    let m = Market::start().await;
    let (a, b) = (m.seller(), m.seller());
    let (a1, a2, b1) = (
        m.product_of(&a, 1000).await,
        m.product_of(&a, 1000).await,
        m.product_of(&b, 1000).await,
    );
    let tokens = [
        m.app.token(buyer_on(0), "buyer"),
        m.app.token(buyer_on(1), "buyer"),
    ];
    // Orders with one and with two of the seller's lines (two lines share a placed_at, so a
    // cursor inside one order is exercised), on both shards.
    let shapes: [&[(&str, i64)]; 4] = [
        &[(&a1, 1)],
        &[(&a1, 1), (&b1, 1), (&a2, 2)],
        &[(&b1, 1)],
        &[(&a2, 1), (&a1, 1)],
    ];
    for i in 0..6 {
        m.order_items(&tokens[i % 2], shapes[i % 4]).await;
    }
    let mut placed = 0;
    for limit in 1..=3u32 {
        let before = m.all_sales(&a.token, "", 100).await;
        let before_lines = lines(&before);
        let mut seen = Vec::new();
        let mut new_orders = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = format!("limit={limit}");
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let r = m.sales(&a.token, &q).await;
            r.expect(200);
            let page = r.json();
            let items = page["items"].as_array().unwrap().clone();
            assert!(items.len() <= limit as usize);
            seen.extend(lines(&items));
            let Some(c) = page["next_cursor"].as_str() else {
                break;
            };
            cursor = Some(c.to_string());
            // A new order between pages, alternating shards.
            let o = m.order_items(&tokens[placed % 2], shapes[placed % 4]).await;
            placed += 1;
            new_orders.push(o);
        }
        let new_lines = expected_lines(&new_orders, &[&a1, &a2]);
        assert!(!new_lines.is_empty());
        // Exactly the lines that existed when paging started, in order: nothing skipped,
        // nothing repeated, none of the new ones (they sort before the first cursor).
        assert_eq!(seen, before_lines, "limit {limit}");
        // A fresh listing has the new lines first, then the old ones.
        let after = lines(&m.all_sales(&a.token, "", 100).await);
        let mut want = new_lines;
        want.extend(before_lines);
        assert_eq!(after, want, "limit {limit}");
    }
    // The other seller's lines never appeared.
    let mine = m.all_sales(&a.token, "", 7).await;
    let b_lines = lines(&m.all_sales(&b.token, "", 7).await);
    assert!(lines(&mine).iter().all(|l| !b_lines.contains(l)));
    assert!(mine.iter().all(|s| s["product_id"] != b1.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_filter_lists_only_lines_of_orders_in_that_status() {
    let m = Market::start().await;
    let a = m.seller();
    let p = m.product_of(&a, 100).await;
    let (t0, t1) = (
        m.app.token(buyer_on(0), "buyer"),
        m.app.token(buyer_on(1), "buyer"),
    );
    let kept = m.order_items(&t0, &[(&p, 1)]).await;
    let cancelled = m.order_items(&t1, &[(&p, 1)]).await;
    let shipped = m.order_items(&t0, &[(&p, 2)]).await;
    m.cancel(&t1, cancelled["id"].as_str().unwrap())
        .await
        .expect(200);
    m.delivery_status(
        shipped["id"].as_str().unwrap(),
        "shipped",
        "2026-12-01T10:00:00Z",
    )
    .await
    .expect(200);

    for (status, order) in [
        ("confirmed", &kept),
        ("cancelled", &cancelled),
        ("shipped", &shipped),
    ] {
        let items = m.all_sales(&a.token, &format!("status={status}"), 1).await;
        assert_eq!(
            lines(&items),
            vec![(order["id"].as_str().unwrap().to_string(), 0)]
        );
        assert_eq!(items[0]["order_status"], status);
    }
    for status in ["delivered", "returned"] {
        assert!(
            m.all_sales(&a.token, &format!("status={status}"), 5)
                .await
                .is_empty()
        );
    }
    assert_eq!(m.all_sales(&a.token, "", 1).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sales_are_merged_from_sixteen_order_databases() {
    let m = Market::on(
        TestApp::start_with(TestOptions {
            order_shards: Some(16),
            ..Default::default()
        })
        .await,
    );
    let a = m.seller();
    let p = m.product_of(&a, 100).await;
    let q = m.product_of(&a, 100).await;
    let mut orders = Vec::new();
    for i in 0..6 {
        let t = m.app.token(Uuid::now_v7(), "buyer");
        orders.push(m.order_items(&t, &[(&p, 1), (&q, 1 + i)]).await);
    }
    let mut databases = std::collections::BTreeSet::new();
    for o in &orders {
        // An even map over 16 databases: 4 virtual shards each.
        let vshard = usize::from_str_radix(&o["id"].as_str().unwrap()[1..3], 16).unwrap();
        databases.insert(vshard / 4);
    }
    assert!(databases.len() >= 2, "orders on {databases:?}");
    let want = expected_lines(&orders, &[&p, &q]);
    for limit in [1, 5, 100] {
        assert_eq!(
            lines(&m.all_sales(&a.token, "", limit).await),
            want,
            "limit {limit}"
        );
    }
}
