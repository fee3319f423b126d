//! The product service, black-box: the built component in the test host over real
//! PostgreSQL and both key-value backends (SQLite and Redis).
//!
//! Run with `make test`, or by hand with `MARKETPLACE_TEST_PG` / `MARKETPLACE_TEST_REDIS` set
//! and the components built: `cargo test -p marketplace-tests --test product`.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use marketplace_tests::{Db, Kv, TestApp, TestOptions, TestResponse, repo_root};
use serde_json::{Value, json};
use uuid::Uuid;

/// The component's own SQL builder, so the plan test explains the statements it sends.
#[allow(dead_code)]
#[path = "../../../../components/product/src/store/sql.rs"]
mod product_sql;

// ------------------------------------------------------------------ helpers

fn body(title: &str) -> Value {
    json!({
        "title": title,
        "description": format!("A very good {title} for everyday use"),
        "category": "misc",
        "price_cents": 1999,
        "currency": "EUR",
        "stock": 5,
        "attributes": {"colour": "red", "size": 42, "vegan": true}
    })
}

fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn seller(app: &TestApp) -> (Uuid, String) {
    let id = Uuid::now_v7();
    (id, app.token(id, "seller"))
}

async fn create(app: &TestApp, token: &str, product: Value) -> Value {
    let r = app.post("/api/products", Some(token), product).await;
    r.expect(201);
    r.json()
}

fn id_of(product: &Value) -> String {
    product["id"].as_str().expect("id").to_string()
}

async fn product_rows(app: &TestApp) -> i64 {
    let db = app.db(Db::Product).await;
    db.query_one("select count(*) from products", &[])
        .await
        .unwrap()
        .get(0)
}

async fn stock_in_db(app: &TestApp, id: &str) -> i64 {
    let db = app.db(Db::Product).await;
    db.query_one(
        "select stock from products where id = $1",
        &[&Uuid::parse_str(id).unwrap()],
    )
    .await
    .unwrap()
    .get(0)
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(id_of)
        .collect()
}

async fn reserve(app: &TestApp, reservation_id: &str, items: Value) -> TestResponse {
    let token = app.service_token("order", "product");
    app.post(
        "/internal/products/reservations",
        Some(&token),
        json!({"reservation_id": reservation_id, "items": items}),
    )
    .await
}

async fn release(app: &TestApp, reservation_id: &str) -> TestResponse {
    let token = app.service_token("order", "product");
    app.delete(
        &format!("/internal/products/reservations/{reservation_id}"),
        Some(&token),
        None,
    )
    .await
}

/// Every page of `query` (which must not carry `limit`/`cursor`), `limit` items at a time.
async fn all_pages(app: &TestApp, query: &str, limit: u32) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("/api/products?{query}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = app.get(&path, None).await;
        r.expect(200);
        let page = r.json();
        let items = ids(&page);
        assert!(items.len() <= limit as usize);
        seen.extend(items);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return seen,
        }
    }
    panic!("pagination did not end");
}

/// Declares one test per key-value backend for a scenario `async fn(Kv)`.
macro_rules! on_both_key_value_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn with_sqlite() {
                    super::$name(marketplace_tests::Kv::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn with_redis() {
                    super::$name(marketplace_tests::Kv::Redis).await;
                }
            }
        )+
    };
}

async fn start(kv: Kv) -> TestApp {
    TestApp::start_with(TestOptions {
        kv,
        ..Default::default()
    })
    .await
}

on_both_key_value_backends!(
    a_reader_sees_every_acknowledged_write_across_create_update_archive_and_stock_change,
    product_pages_are_served_from_the_read_model_when_it_holds_the_document,
    a_missing_document_is_read_from_postgres_and_stored_again,
    fifty_concurrent_reservations_for_the_last_ten_units_sell_exactly_ten,
    readiness_checks_the_database_and_every_key_value_label,
);

// ------------------------------------------------------------------ read model

async fn a_reader_sees_every_acknowledged_write_across_create_update_archive_and_stock_change(
    kv: Kv,
) {
    let app = start(kv).await;
    let (_, token) = seller(&app);

    // Create.
    let created = create(&app, &token, body("lamp")).await;
    let id = id_of(&created);
    let path = format!("/api/products/{id}");
    let r = app.get(&path, None).await;
    r.expect(200);
    assert_eq!(r.json(), created);

    // Update.
    let r = app
        .patch(
            &path,
            Some(&token),
            json!({"price_cents": 2500, "title": "Desk lamp"}),
        )
        .await;
    r.expect(200);
    let updated = r.json();
    let r = app.get(&path, None).await.json();
    assert_eq!(r, updated);
    assert_eq!(r["price_cents"], 2500);
    assert_eq!(r["title"], "Desk lamp");

    // Stock change through a reservation, and back through its release.
    reserve(&app, "r-1", json!([{"product_id": id, "quantity": 2}]))
        .await
        .expect(201);
    assert_eq!(app.get(&path, None).await.json()["stock"], 3);
    release(&app, "r-1").await.expect(204);
    assert_eq!(app.get(&path, None).await.json()["stock"], 5);

    // Archive.
    app.delete(&path, Some(&token), None).await.expect(204);
    app.get(&path, None).await.expect_problem(404);
    let own = app.get(&path, Some(&token)).await;
    own.expect(200);
    assert_eq!(own.json()["status"], "archived");
}

async fn product_pages_are_served_from_the_read_model_when_it_holds_the_document(kv: Kv) {
    let app = start(kv).await;
    let (_, token) = seller(&app);
    let created = create(&app, &token, body("kettle")).await;
    let id = id_of(&created);

    // Change the row behind the service's back (no version bump, no read-model update):
    // the page still shows what the read model holds, so it did not ask PostgreSQL.
    let db = app.db(Db::Product).await;
    db.execute(
        "update products set title = 'changed in sql' where id = $1",
        &[&Uuid::parse_str(&id).unwrap()],
    )
    .await
    .unwrap();
    let r = app.get(&format!("/api/products/{id}"), None).await;
    r.expect(200);
    assert_eq!(r.json()["title"], "kettle");
}

async fn a_missing_document_is_read_from_postgres_and_stored_again(kv: Kv) {
    let app = start(kv).await;
    let seller_id = Uuid::now_v7();
    let id = Uuid::now_v7();
    // A product the read model has never seen.
    let db = app.db(Db::Product).await;
    db.execute(
        "insert into products (id, seller_id, title, description, category, price_cents, \
         currency, stock) values ($1, $2, 'teapot', 'porcelain', 'kitchen', 1200, 'GBP', 4)",
        &[&id, &seller_id],
    )
    .await
    .unwrap();

    let r = app.get(&format!("/api/products/{id}"), None).await;
    r.expect(200);
    let doc = r.json();
    assert_eq!(doc["title"], "teapot");
    assert_eq!(doc["currency"], "GBP");
    assert_eq!(doc["seller_id"], seller_id.to_string());
    assert_eq!(doc["attributes"], json!({}));

    // The refill stored it: a change behind the service's back is not seen any more.
    db.execute(
        "update products set title = 'changed' where id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let r = app.get(&format!("/api/products/{id}"), None).await;
    assert_eq!(r.json()["title"], "teapot");

    // An unknown id is a 404, and so is one that is not a UUID.
    app.get(&format!("/api/products/{}", Uuid::now_v7()), None)
        .await
        .expect_problem(404);
    app.get("/api/products/not-a-uuid", None)
        .await
        .expect_problem(404);
}

async fn readiness_checks_the_database_and_every_key_value_label(kv: Kv) {
    let app = start(kv).await;
    let r = app.get("/api/products/readyz", None).await;
    r.expect(200);
    app.get("/api/products/healthz", None).await.expect(200);

    let down = TestApp::start_with(TestOptions {
        kv,
        variables: vec![(
            "product_db_url".into(),
            "postgres://postgres@127.0.0.1:1/nothing?sslmode=disable".into(),
        )],
        ..Default::default()
    })
    .await;
    let doc = down
        .get("/api/products/readyz", None)
        .await
        .expect_problem(503);
    assert!(
        doc["detail"].as_str().unwrap().contains("product database"),
        "{doc}"
    );
    // Liveness does not depend on the database.
    down.get("/api/products/healthz", None).await.expect(200);
    // Nor does any client input turn a dead database into a 500.
    let (_, token) = seller(&down);
    down.post("/api/products", Some(&token), body("x"))
        .await
        .expect_problem(503);
    down.get("/api/products?q=x", None)
        .await
        .expect_problem(503);
}

// ------------------------------------------------------------------ replicas

async fn migrated_database(name: &str) -> String {
    let admin_url = std::env::var("MARKETPLACE_TEST_PG").expect("MARKETPLACE_TEST_PG");
    let (admin, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("create database {name}"))
        .await
        .unwrap();
    let (base, _) = admin_url.split_once('?').unwrap_or((&admin_url, ""));
    let base = &base[..base.rfind('/').unwrap()];
    let url = format!("{base}/{name}?sslmode=disable");
    let migrations =
        marketplace_migrate::load(&marketplace_migrate::service_dir(&repo_root(), "product"))
            .unwrap();
    marketplace_migrate::apply(&url, &migrations).await.unwrap();
    url
}

async fn drop_database(name: &str) {
    let admin_url = std::env::var("MARKETPLACE_TEST_PG").unwrap();
    let (admin, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let _ = admin
        .batch_execute(&format!("drop database if exists {name} with (force)"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_tolerant_reads_go_to_the_replica_and_writes_to_the_primary() {
    // A "replica" we control: a product only it holds shows whether a read went there.
    let name = format!("replica_{}", Uuid::new_v4().simple());
    let replica_url = migrated_database(&name).await;
    let (replica, conn) = tokio_postgres::connect(&replica_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let only_on_replica = Uuid::now_v7();
    replica
        .execute(
            "insert into products (id, seller_id, title, description, category, price_cents, \
             currency, stock) values ($1, $2, 'replica teapot', 'x', 'kitchen', 100, 'EUR', 1)",
            &[&only_on_replica, &Uuid::now_v7()],
        )
        .await
        .unwrap();

    let app = TestApp::start_with(TestOptions {
        // A dead replica first in the list: it is skipped, never an error.
        variables: vec![(
            "product_db_replica_urls".into(),
            format!("postgres://postgres@127.0.0.1:1/dead?sslmode=disable,{replica_url}"),
        )],
        ..Default::default()
    })
    .await;

    // Search and browse: answered by the replica (sometimes after trying the dead one).
    for _ in 0..4 {
        let page = app.get("/api/products?q=teapot", None).await;
        page.expect(200);
        assert_eq!(ids(&page.json()), vec![only_on_replica.to_string()]);
    }
    // Detail fallback: the replica answers for a document the read model lacks.
    app.get(&format!("/api/products/{only_on_replica}"), None)
        .await
        .expect(200);

    // Writes go to the primary only, and the written product is readable at once (read model).
    let (_, token) = seller(&app);
    let created = create(&app, &token, body("primary lamp")).await;
    let id = Uuid::parse_str(&id_of(&created)).unwrap();
    let primary = app.db(Db::Product).await;
    let on_primary: i64 = primary
        .query_one("select count(*) from products where id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    let on_replica: i64 = replica
        .query_one("select count(*) from products where id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!((on_primary, on_replica), (1, 0));
    app.get(&format!("/api/products/{id}"), None)
        .await
        .expect(200);

    drop(app);
    drop(replica);
    drop_database(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_fall_back_to_the_primary_when_no_replica_answers() {
    let app = TestApp::start_with(TestOptions {
        variables: vec![(
            "product_db_replica_urls".into(),
            "postgres://postgres@127.0.0.1:1/a?sslmode=disable,postgres://postgres@127.0.0.1:2/b?sslmode=disable".into(),
        )],
        ..Default::default()
    })
    .await;
    let (_, token) = seller(&app);
    let created = create(&app, &token, body("violin")).await;
    let page = app.get("/api/products?q=violin", None).await;
    page.expect(200);
    assert_eq!(ids(&page.json()), vec![id_of(&created)]);

    // A document missing from the read model is read from the primary too.
    let id = Uuid::now_v7();
    let db = app.db(Db::Product).await;
    db.execute(
        "insert into products (id, seller_id, title, description, category, price_cents, \
         currency, stock) values ($1, $2, 'cello', 'x', 'music', 100, 'EUR', 1)",
        &[&id, &Uuid::now_v7()],
    )
    .await
    .unwrap();
    let r = app.get(&format!("/api/products/{id}"), None).await;
    r.expect(200);
    assert_eq!(r.json()["title"], "cello");
}

// ------------------------------------------------------------------ catalog writes

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sellers_and_admins_create_products_with_every_contract_field() {
    let app = TestApp::start().await;
    let (seller_id, token) = seller(&app);
    let r = app
        .post("/api/products", Some(&token), body("Red shoes"))
        .await;
    r.expect(201);
    let p = r.json();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/products/{}", id_of(&p)).as_str())
    );
    let keys: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "id",
        "seller_id",
        "title",
        "description",
        "category",
        "price_cents",
        "currency",
        "stock",
        "attributes",
        "status",
        "created_at",
        "updated_at",
    ]
    .into();
    assert_eq!(keys, expected);
    assert_eq!(p["seller_id"], seller_id.to_string());
    assert_eq!(p["status"], "active");
    assert_eq!(p["price_cents"], 1999);
    assert_eq!(
        p["attributes"],
        json!({"colour": "red", "size": 42, "vegan": true})
    );
    assert_eq!(Uuid::parse_str(&id_of(&p)).unwrap().get_version_num(), 7);
    for field in ["created_at", "updated_at"] {
        let t = p[field].as_str().unwrap();
        assert!(
            t.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(t).is_ok(),
            "{t}"
        );
    }

    let admin = app.token(Uuid::now_v7(), "admin");
    app.post("/api/products", Some(&admin), body("Admin item"))
        .await
        .expect(201);
    // `attributes` is optional.
    let mut no_attributes = body("plain");
    no_attributes.as_object_mut().unwrap().remove("attributes");
    let p = create(&app, &token, no_attributes).await;
    assert_eq!(p["attributes"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_signed_in_sellers_and_admins_may_create_products() {
    let app = TestApp::start().await;
    let r = app.post("/api/products", None, body("x")).await;
    r.expect_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    for role in ["buyer", "carrier"] {
        let token = app.token(Uuid::now_v7(), role);
        app.post("/api/products", Some(&token), body("x"))
            .await
            .expect_problem(403);
    }
    let now = chrono::Utc::now().timestamp();
    let expired = app.token_with(json!({"sub": Uuid::now_v7().to_string(), "role": "seller",
        "iss": marketplace_tests::ISSUER, "aud": marketplace_tests::AUDIENCE,
        "iat": now - 4000, "exp": now - 3600, "jti": "x"}));
    app.post("/api/products", Some(&expired), body("x"))
        .await
        .expect_problem(401);
    // A service token is not a user's.
    let service = app.service_token("order", "product");
    app.post("/api/products", Some(&service), body("x"))
        .await
        .expect_problem(401);
    assert_eq!(product_rows(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sellers_change_their_own_products_admins_any_and_other_sellers_get_403() {
    let app = TestApp::start().await;
    let (_, owner) = seller(&app);
    let (_, other) = seller(&app);
    let admin = app.token(Uuid::now_v7(), "admin");
    let buyer = app.token(Uuid::now_v7(), "buyer");
    let p = create(&app, &owner, body("chair")).await;
    let path = format!("/api/products/{}", id_of(&p));

    app.patch(&path, Some(&other), json!({"price_cents": 1}))
        .await
        .expect_problem(403);
    app.patch(&path, Some(&buyer), json!({"price_cents": 1}))
        .await
        .expect_problem(403);
    app.patch(&path, None, json!({"price_cents": 1}))
        .await
        .expect_problem(401);
    app.delete(&path, Some(&other), None)
        .await
        .expect_problem(403);

    let r = app
        .patch(
            &path,
            Some(&owner),
            json!({"description": "new", "stock": 9, "attributes": {"legs": 4}, "currency": "USD", "category": "home"}),
        )
        .await;
    r.expect(200);
    let changed = r.json();
    assert_eq!(changed["description"], "new");
    assert_eq!(changed["stock"], 9);
    assert_eq!(changed["attributes"], json!({"legs": 4}));
    assert_eq!(changed["currency"], "USD");
    assert_eq!(changed["title"], "chair");
    assert_eq!(changed["created_at"], p["created_at"]);

    let r = app
        .patch(&path, Some(&admin), json!({"title": "Admin chair"}))
        .await;
    r.expect(200);
    assert_eq!(r.json()["title"], "Admin chair");
    app.delete(&path, Some(&admin), None).await.expect(204);

    // Unknown products are 404 for writers too.
    let unknown = format!("/api/products/{}", Uuid::now_v7());
    app.patch(&unknown, Some(&owner), json!({"stock": 1}))
        .await
        .expect_problem(404);
    app.delete(&unknown, Some(&owner), None)
        .await
        .expect_problem(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn archived_products_vanish_from_public_reads_and_search_but_not_for_their_seller_and_admins()
{
    let app = TestApp::start().await;
    let (_, owner) = seller(&app);
    let (_, other) = seller(&app);
    let admin = app.token(Uuid::now_v7(), "admin");
    let p = create(&app, &owner, body("bicycle")).await;
    let id = id_of(&p);
    let path = format!("/api/products/{id}");

    app.delete(&path, Some(&owner), None).await.expect(204);
    // Idempotent.
    app.delete(&path, Some(&owner), None).await.expect(204);

    app.get(&path, None).await.expect_problem(404);
    app.get(&path, Some(&app.token(Uuid::now_v7(), "buyer")))
        .await
        .expect_problem(404);
    app.get(&path, Some(&other)).await.expect_problem(404);
    for token in [&owner, &admin] {
        let r = app.get(&path, Some(token)).await;
        r.expect(200);
        assert_eq!(r.json()["status"], "archived");
    }
    // Other sellers cannot tell it exists; its seller cannot change it any more.
    app.patch(&path, Some(&other), json!({"stock": 1}))
        .await
        .expect_problem(404);
    app.patch(&path, Some(&owner), json!({"stock": 1}))
        .await
        .expect_problem(409);

    let page = app.get("/api/products?q=bicycle", None).await.json();
    assert!(ids(&page).is_empty());
    let page = app.get("/api/products", None).await.json();
    assert!(ids(&page).is_empty());
    // The row stays for the orders that refer to it.
    assert_eq!(product_rows(&app).await, 1);
    // And it cannot be reserved any more.
    let r = reserve(
        &app,
        "r-archived",
        json!([{"product_id": id, "quantity": 1}]),
    )
    .await;
    let doc = r.expect_problem(422);
    assert!(doc["errors"]["items[0].product_id"].is_array(), "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_product_input_gets_a_problem_naming_the_field_and_writes_nothing() {
    let app = TestApp::start().await;
    let (_, token) = seller(&app);
    let long = "x".repeat(201);
    let cases: Vec<(Value, &str)> = vec![
        (with(body("a"), json!({"price_cents": -1})), "price_cents"),
        (
            with(body("a"), json!({"price_cents": 1_000_000_000_000i64})),
            "price_cents",
        ),
        (
            with(body("a"), json!({"price_cents": 19.99})),
            "price_cents",
        ),
        (
            with(body("a"), json!({"price_cents": "1999"})),
            "price_cents",
        ),
        (
            with(
                body("a"),
                json!({"price_cents": 99999999999999999999u128 as f64}),
            ),
            "price_cents",
        ),
        (with(body("a"), json!({"stock": -5})), "stock"),
        (
            with(body("a"), json!({"stock": 1_000_000_000_000i64})),
            "stock",
        ),
        (with(body("a"), json!({"currency": "XXX"})), "currency"),
        (with(body("a"), json!({"currency": "eur"})), "currency"),
        (with(body("a"), json!({"currency": "EURO"})), "currency"),
        (with(body("a"), json!({"title": long})), "title"),
        (with(body("a"), json!({"title": "   "})), "title"),
        (with(body("a"), json!({"title": "nul\u{0}byte"})), "title"),
        (
            with(body("a"), json!({"attributes": {"nested": {"a": 1}}})),
            "attributes.nested",
        ),
        (
            with(body("a"), json!({"attributes": {"list": [1, 2]}})),
            "attributes.list",
        ),
        (
            with(body("a"), json!({"attributes": {"nothing": null}})),
            "attributes.nothing",
        ),
        (with(body("a"), json!({"attributes": [1]})), "attributes"),
        (with(body("a"), json!({"attributes": "flat"})), "attributes"),
        (with(body("a"), json!({"status": "archived"})), "status"),
        (
            with(body("a"), json!({"seller_id": Uuid::now_v7()})),
            "seller_id",
        ),
        (json!({"title": "only a title"}), "price_cents"),
    ];
    for (input, field) in cases {
        let r = app.post("/api/products", Some(&token), input.clone()).await;
        let doc = r.expect_problem(422);
        assert!(
            doc["errors"][field].is_array(),
            "{field} not named for {input}: {doc}"
        );
    }
    // Syntax, media type and size.
    let auth = format!("Bearer {token}");
    let r = app
        .request(
            "POST",
            "/api/products",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            b"{\"title\": ".to_vec(),
        )
        .await;
    r.expect_problem(400);
    let r = app
        .request(
            "POST",
            "/api/products",
            &[("authorization", &auth), ("content-type", "text/plain")],
            serde_json::to_vec(&body("a")).unwrap(),
        )
        .await;
    r.expect_problem(415);
    let huge = with(
        body("a"),
        json!({"description": "x".repeat(1024 * 1024 + 1)}),
    );
    app.post("/api/products", Some(&token), huge)
        .await
        .expect_problem(413);
    assert_eq!(
        product_rows(&app).await,
        0,
        "nothing is written on bad input"
    );

    // The same rules hold for a patch, which also leaves the product as it was.
    let p = create(&app, &token, body("stool")).await;
    let path = format!("/api/products/{}", id_of(&p));
    for (input, field) in [
        (json!({"price_cents": -1, "title": "ok"}), "price_cents"),
        (json!({"title": null}), "title"),
        (json!({"currency": "ABC"}), "currency"),
        (json!({"unknown": 1}), "unknown"),
        (json!({}), "body"),
    ] {
        let doc = app
            .patch(&path, Some(&token), input.clone())
            .await
            .expect_problem(422);
        assert!(doc["errors"][field].is_array(), "{input}: {doc}");
    }
    let now = app.get(&path, None).await.json();
    assert_eq!(now, p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_methods_get_405_with_allow_and_unknown_paths_404() {
    let app = TestApp::start().await;
    let id = Uuid::now_v7();
    for (method, path, allow) in [
        ("PUT", "/api/products".to_string(), "GET, POST"),
        ("POST", format!("/api/products/{id}"), "GET, PATCH, DELETE"),
        ("POST", "/api/products/healthz".to_string(), "GET"),
        ("DELETE", "/api/products/openapi.json".to_string(), "GET"),
        ("GET", "/internal/products/reservations".to_string(), "POST"),
        (
            "GET",
            "/internal/products/reservations/r1".to_string(),
            "DELETE",
        ),
    ] {
        let r = app.request(method, &path, &[], Vec::new()).await;
        r.expect_problem(405);
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
    app.get("/api/products/a/b", None).await.expect_problem(404);
    app.get("/internal/products/other", None)
        .await
        .expect_problem(404);
    // Routing policy: paths match exactly.
    app.get(&format!("/api/products/{id}/"), None)
        .await
        .expect_problem(404);
    app.get("/api/products/", None).await.expect_problem(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_parameters_a_route_does_not_define_are_400_on_every_product_route() {
    let app = TestApp::start().await;
    let (_, token) = seller(&app);
    let id = id_of(&create(&app, &token, body("lamp")).await);
    let service = app.service_token("order", "product");
    for (method, path, auth) in [
        ("GET", "/api/products?colour=red".to_string(), None),
        ("GET", "/api/products?limit=5&limit=6".to_string(), None),
        ("POST", "/api/products?draft=true".to_string(), Some(&token)),
        ("GET", format!("/api/products/{id}?fields=title"), None),
        ("PATCH", format!("/api/products/{id}?x=1"), Some(&token)),
        ("DELETE", format!("/api/products/{id}?x=1"), Some(&token)),
        ("GET", "/api/products/healthz?x=1".to_string(), None),
        ("GET", "/api/products/readyz?x=1".to_string(), None),
        ("GET", "/api/products/openapi.json?x=1".to_string(), None),
        (
            "POST",
            "/internal/products/reservations?x=1".to_string(),
            Some(&service),
        ),
        (
            "DELETE",
            "/internal/products/reservations/r1?x=1".to_string(),
            Some(&service),
        ),
    ] {
        let headers: Vec<(&str, String)> = auth
            .map(|t| vec![("authorization", format!("Bearer {t}"))])
            .unwrap_or_default();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = app.request(method, &path, &headers, Vec::new()).await;
        assert_eq!(r.status, 400, "{method} {path}");
    }
    let r = app.get(&format!("/api/products/{id}"), None).await.json();
    assert_eq!(r["status"], "active", "nothing was changed");
}

// ------------------------------------------------------------------ search and browse

async fn catalog(app: &TestApp) -> (Uuid, BTreeMap<&'static str, String>) {
    let (seller_id, token) = seller(app);
    let (_, other) = seller(app);
    let mut ids = BTreeMap::new();
    for (key, token, title, description, category, price, stock) in [
        (
            "keyboard",
            &token,
            "Mechanical keyboard",
            "Clicky switches and a steel frame",
            "electronics",
            8900,
            3,
        ),
        (
            "stand",
            &token,
            "Keyboard stand",
            "Folding stand for music keyboards",
            "music",
            2500,
            0,
        ),
        (
            "mouse",
            &other,
            "Wireless mouse",
            "Pairs with any keyboard over bluetooth",
            "electronics",
            1500,
            7,
        ),
        (
            "lamp",
            &other,
            "Desk lamp",
            "Warm light for late nights",
            "home",
            3200,
            2,
        ),
        (
            "mug",
            &token,
            "Coffee mug",
            "Holds 300 ml; dishwasher safe",
            "home",
            900,
            11,
        ),
    ] {
        let p = create(
            app,
            token,
            json!({"title": title, "description": description, "category": category,
                   "price_cents": price, "currency": "EUR", "stock": stock}),
        )
        .await;
        ids.insert(key, id_of(&p));
    }
    (seller_id, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_text_search_ranks_title_matches_first_and_tolerates_typos() {
    let app = TestApp::start().await;
    let (_, keys) = catalog(&app).await;
    let ids_of = |page: &Value| ids_of_keys(&keys, page);

    let page = app.get("/api/products?q=keyboard", None).await;
    page.expect(200);
    let found = ids_of(&page.json());
    assert_eq!(found.len(), 3, "{found:?}");
    // Title matches rank above the description-only match.
    assert_eq!(found.last().map(String::as_str), Some("mouse"), "{found:?}");

    // A typo still finds it.
    let page = app.get("/api/products?q=keybord", None).await.json();
    assert!(ids_of(&page).contains(&"keyboard".to_string()));
    let page = app.get("/api/products?q=mechanicl", None).await.json();
    assert_eq!(ids_of(&page), vec!["keyboard"]);
    // Stemming: the plural finds the singular.
    let page = app.get("/api/products?q=mugs", None).await.json();
    assert_eq!(ids_of(&page), vec!["mug"]);
    // Nothing matches nonsense.
    let page = app.get("/api/products?q=zzzqqqxxx", None).await.json();
    assert!(ids(&page).is_empty());
    assert_eq!(page["next_cursor"], Value::Null);
}

fn ids_of_keys(keys: &BTreeMap<&'static str, String>, page: &Value) -> Vec<String> {
    ids(page)
        .into_iter()
        .map(|id| {
            keys.iter()
                .find(|(_, v)| **v == id)
                .map(|(k, _)| k.to_string())
                .unwrap_or(id)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_filter_and_sort_order_of_the_contract_applies() {
    let app = TestApp::start().await;
    let (seller_id, keys) = catalog(&app).await;
    let q = |query: &str| {
        let (app, keys) = (&app, &keys);
        let query = query.to_string();
        async move {
            let r = app.get(&format!("/api/products?{query}"), None).await;
            r.expect(200);
            ids_of_keys(keys, &r.json())
        }
    };
    // Newest first by default.
    assert_eq!(
        q("").await,
        vec!["mug", "lamp", "mouse", "stand", "keyboard"]
    );
    assert_eq!(q("sort=newest").await, q("").await);
    assert_eq!(
        q("sort=price_asc").await,
        vec!["mug", "mouse", "stand", "lamp", "keyboard"]
    );
    assert_eq!(
        q("sort=price_desc").await,
        vec!["keyboard", "lamp", "stand", "mouse", "mug"]
    );
    assert_eq!(q("category=home").await, vec!["mug", "lamp"]);
    assert_eq!(
        q(&format!("seller_id={seller_id}")).await,
        vec!["mug", "stand", "keyboard"]
    );
    assert_eq!(
        q("min_price=1500&max_price=3200&sort=price_asc").await,
        vec!["mouse", "stand", "lamp"]
    );
    assert_eq!(
        q("in_stock=true&q=keyboard&sort=price_asc").await,
        vec!["mouse", "keyboard"]
    );
    assert_eq!(q("in_stock=false").await.len(), 5);
    assert_eq!(
        q("q=keyboard&sort=newest").await,
        vec!["mouse", "stand", "keyboard"]
    );
    assert_eq!(
        q("q=keyboard&category=music&sort=relevance").await,
        vec!["stand"]
    );
    assert!(q(&format!("seller_id={}", Uuid::now_v7())).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cursor_pagination_returns_every_item_once_in_every_order_even_while_products_are_added() {
    let app = TestApp::start().await;
    let (_, token) = seller(&app);
    let mut created = BTreeSet::new();
    for i in 0..23 {
        // Equal prices on purpose: ties are broken by id, not lost between pages.
        let p = create(
            &app,
            &token,
            with(
                body(&format!("guitar {i}")),
                json!({"price_cents": 1000 + (i % 4) * 100}),
            ),
        )
        .await;
        created.insert(id_of(&p));
    }
    for (query, limit) in [
        ("sort=newest", 5),
        ("sort=price_asc", 4),
        ("sort=price_desc", 7),
        ("q=guitar", 6),
        ("q=guitar&sort=price_asc", 10),
    ] {
        let seen = all_pages(&app, query, limit).await;
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "{query}: an item came twice");
        assert_eq!(unique, created, "{query}: items skipped");
    }

    // Products added between pages neither repeat nor push earlier ones out.
    for query in ["sort=newest", "sort=price_asc", "q=guitar"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut n = 0;
        loop {
            let mut path = format!("/api/products?{query}&limit=5");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = app.get(&path, None).await.json();
            seen.extend(ids(&page));
            n += 1;
            create(
                &app,
                &token,
                with(
                    body(&format!("guitar new {query} {n}")),
                    json!({"price_cents": 1150}),
                ),
            )
            .await;
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "{query}: an item came twice");
        assert!(unique.is_superset(&created), "{query}: an item was skipped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relevance_pages_run_from_full_text_matches_into_typo_only_matches_without_gaps() {
    let app = TestApp::start().await;
    let (_, token) = seller(&app);
    let (mut exact, mut typos) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..7 {
        exact.insert(id_of(
            &create(&app, &token, body(&format!("violin {i}"))).await,
        ));
        // Not the word for the full text, one letter off for the trigram match.
        typos.insert(id_of(
            &create(&app, &token, body(&format!("violinn {i}"))).await,
        ));
    }
    let everything = ids(&app
        .get("/api/products?q=violin&limit=100", None)
        .await
        .json());
    assert_eq!(everything.len(), 14, "{everything:?}");
    // Full-text matches first, typo-only matches after them.
    let head: BTreeSet<String> = everything[..7].iter().cloned().collect();
    let tail: BTreeSet<String> = everything[7..].iter().cloned().collect();
    assert_eq!((head, tail), (exact, typos));
    // Page boundaries inside either group and on the border between them: the same order.
    for limit in [1, 3, 5, 7, 13] {
        let paged = all_pages(&app, "q=violin", limit).await;
        assert_eq!(paged, everything, "limit {limit}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_search_parameters_and_forged_cursors_get_400_and_metacharacters_are_just_text() {
    let app = TestApp::start().await;
    let (_, token) = seller(&app);
    for i in 0..3 {
        create(&app, &token, body(&format!("o'brien & sons {i}"))).await;
    }
    let forged = |v: Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    };
    let page = app.get("/api/products?limit=1", None).await.json();
    let newest_cursor = page["next_cursor"].as_str().unwrap().to_string();
    for query in [
        "colour=red".to_string(),
        "sort=cheapest".to_string(),
        "sort=relevance".to_string(),
        "sort=PRICE_ASC".to_string(),
        "limit=0".to_string(),
        "limit=101".to_string(),
        "limit=ten".to_string(),
        "limit=-1".to_string(),
        "min_price=-1".to_string(),
        "max_price=abc".to_string(),
        "min_price=500&max_price=100".to_string(),
        "in_stock=yes".to_string(),
        "seller_id=42".to_string(),
        "q=".to_string(),
        format!("q={}", "a".repeat(201)),
        "q=a&q=b".to_string(),
        "cursor=!!!".to_string(),
        "cursor=bm90LWpzb24".to_string(),
        format!("cursor={}", "A".repeat(2000)),
        format!(
            "cursor={}",
            forged(json!({"s": "newest", "t": "yesterday", "id": "x"}))
        ),
        format!(
            "cursor={}",
            forged(json!({"s": "newest", "t": 1, "id": Uuid::nil(), "x": 1}))
        ),
        format!("cursor={}", forged(json!({"s": "drop table products"}))),
        format!("sort=price_asc&cursor={newest_cursor}"),
    ] {
        let r = app.get(&format!("/api/products?{query}"), None).await;
        r.expect_problem(400);
    }
    // A well-formed cursor with made-up values is only a position.
    let made_up = forged(json!({"s": "price_asc", "p": 123, "id": Uuid::nil()}));
    app.get(
        &format!("/api/products?sort=price_asc&cursor={made_up}"),
        None,
    )
    .await
    .expect(200);

    for q in [
        "o'brien",
        "o''brien",
        "&",
        "sons & | ! ( ) : * <-> \\",
        "'; drop table products; --",
        "%_%",
        "\"unclosed",
        "-",
        "a:*",
        "!!!",
        "(((",
        "🦀 crab",
    ] {
        let encoded: String = form_encode(q);
        let r = app.get(&format!("/api/products?q={encoded}"), None).await;
        r.expect(200);
    }
    let r = app
        .get(&format!("/api/products?q={}", form_encode("o'brien")), None)
        .await;
    assert_eq!(ids(&r.json()).len(), 3);
    assert_eq!(product_rows(&app).await, 3);
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_search_of_more_than_eight_words_is_422_naming_q() {
    let app = TestApp::start().await;
    let (_, token) = seller(&app);
    create(&app, &token, body("red oak desk")).await;
    let eight = "red or oak or desk or lamp or chair or shelf or bed or rug";
    let r = app
        .get(&format!("/api/products?q={}", form_encode(eight)), None)
        .await;
    assert_eq!(ids(&r.json()).len(), 1);
    for q in [format!("{eight} or sofa"), "a-b-c-d-e-f-g-h-i".to_string()] {
        let doc = app
            .get(&format!("/api/products?q={}", form_encode(&q)), None)
            .await
            .expect_problem(422);
        assert!(doc["errors"]["q"].is_array(), "{q}: {doc}");
    }
}

/// Seeds `n` active products whose descriptions share five common words.
async fn seed_common_words(app: &TestApp, n: i64) {
    app.db(Db::Product)
        .await
        .execute(
            "insert into products (id, seller_id, title, description, category, price_cents, \
                 currency, stock)
             select gen_random_uuid(), gen_random_uuid(), 'item ' || g,
                    'made of cotton leather glass oak steel, number ' || g, 'c', g, 'EUR', 1
             from generate_series(1, $1::int8) g",
            &[&n],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_search_past_its_statement_timeout_is_503_and_is_not_run_again_on_the_primary() {
    // A 1 ms limit: ranking thousands of matches of OR'd common words takes longer.
    let timeout = ("product_search_timeout_ms".to_string(), "1".to_string());
    let app = TestApp::start_with(TestOptions {
        variables: vec![timeout.clone()],
        ..Default::default()
    })
    .await;
    seed_common_words(&app, 20_000).await;
    let q = form_encode("item or made or cotton or leather or glass or oak or steel");
    let doc = app
        .get(&format!("/api/products?q={q}"), None)
        .await
        .expect_problem(503);
    assert!(
        doc["detail"].as_str().unwrap().contains("timed out"),
        "{doc}"
    );
    // On a replica the timeout is the answer too, not a reason to run the statement again on
    // the primary (here empty, so it would answer 200).
    let replica = app.database_url(Db::Product);
    let via_replica = TestApp::start_with(TestOptions {
        variables: vec![timeout, ("product_db_replica_urls".to_string(), replica)],
        ..Default::default()
    })
    .await;
    via_replica
        .get(&format!("/api/products?q={q}"), None)
        .await
        .expect_problem(503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_default_to_twenty_and_accept_one_to_one_hundred() {
    let app = TestApp::start().await;
    let (_, token) = seller(&app);
    for i in 0..21 {
        create(&app, &token, body(&format!("pen {i}"))).await;
    }
    let page = app.get("/api/products", None).await.json();
    assert_eq!(ids(&page).len(), 20);
    assert!(page["next_cursor"].is_string());
    let page = app.get("/api/products?limit=100", None).await.json();
    assert_eq!(ids(&page).len(), 21);
    assert_eq!(page["next_cursor"], Value::Null);
    let page = app.get("/api/products?limit=1", None).await.json();
    assert_eq!(ids(&page).len(), 1);
}

// ------------------------------------------------------------------ query plans

/// The statements of `sql::search`, as text (the plan test below runs them).
mod product_sql_statements {
    use super::product_sql::*;

    fn spec(order: Order) -> SearchSpec {
        SearchSpec {
            q: None,
            category: None,
            seller_id: None,
            min_price: None,
            max_price: None,
            in_stock: false,
            order,
            fetch: 21,
            after: None,
        }
    }

    fn one(spec: &SearchSpec) -> Statement {
        let mut statements = search(spec);
        assert_eq!(statements.len(), 1, "{statements:?}");
        statements.remove(0)
    }

    const ID: &str = "00000000-0000-0000-0000-000000000000";

    #[test]
    fn browse_orders_newest_first_with_one_parameter() {
        let s = one(&spec(Order::Newest));
        assert!(
            s.sql.contains(
                "where status = 'active' order by created_at desc, id desc limit $1::int8"
            ),
            "{}",
            s.sql
        );
        assert_eq!(s.params, vec![Param::Int(21)]);
    }

    #[test]
    fn user_text_is_always_a_parameter() {
        let mut s = spec(Order::Relevance);
        s.q = Some("'; drop table products; --".into());
        s.category = Some("x' or '1'='1".into());
        for st in search(&s) {
            assert!(!st.sql.contains("drop table"));
            assert!(!st.sql.contains("'1'='1"));
            assert_eq!(st.params.len(), 3);
            assert!(st.sql.contains("order by score desc, id asc"));
        }
    }

    #[test]
    fn keysets_follow_the_order() {
        let mut s = spec(Order::PriceDesc);
        s.after = Some(After::Price {
            price_cents: 5,
            id: ID.into(),
        });
        assert!(
            one(&s)
                .sql
                .contains("(price_cents, id) < ($1::int8, $2::uuid)")
        );
        s.order = Order::PriceAsc;
        assert!(
            one(&s)
                .sql
                .contains("(price_cents, id) > ($1::int8, $2::uuid)")
        );
    }

    #[test]
    fn a_relevance_query_reads_full_text_matches_then_typo_only_matches() {
        let mut s = spec(Order::Relevance);
        s.q = Some("shoe".into());
        let statements = search(&s);
        assert_eq!(statements.len(), 2);
        let (full, typos) = (&statements[0], &statements[1]);
        assert!(
            full.sql
                .contains("search_tsv @@ websearch_to_tsquery('english', $1::text)")
        );
        assert!(full.sql.contains("(2.0 + ts_rank_cd("), "{}", full.sql);
        assert!(!full.sql.contains("<%") && !full.sql.contains("word_similarity"));
        assert!(
            typos
                .sql
                .contains("$1::text <% title and not coalesce(search_tsv @@")
        );
        assert!(
            typos
                .sql
                .contains("word_similarity($1::text, title)::real as score")
        );
        for st in &statements {
            assert!(
                st.sql
                    .ends_with("order by score desc, id asc limit $2::int8"),
                "{}",
                st.sql
            );
            assert_eq!(st.params, vec![Param::Text("shoe".into()), Param::Int(21)]);
        }
    }

    #[test]
    fn a_cursor_among_full_text_matches_continues_them_then_starts_the_typos() {
        let mut s = spec(Order::Relevance);
        s.q = Some("shoe".into());
        s.after = Some(After::Relevance {
            score: 2.25,
            id: ID.into(),
        });
        let statements = search(&s);
        assert_eq!(statements.len(), 2);
        assert!(
            statements[0].sql.contains(
                "ranked where (score < $2::real or (score = $2::real and id > $3::uuid))"
            )
        );
        assert!(statements[0].sql.contains("ts_rank_cd"));
        assert_eq!(statements[0].params.len(), 4);
        assert!(statements[1].sql.contains("word_similarity"));
        assert!(!statements[1].sql.contains("ranked where"));
    }

    #[test]
    fn a_cursor_among_typo_only_matches_continues_only_them() {
        let mut s = spec(Order::Relevance);
        s.q = Some("shoe".into());
        s.after = Some(After::Relevance {
            score: 0.5,
            id: ID.into(),
        });
        let st = one(&s);
        assert!(st.sql.contains("word_similarity"));
        assert!(st.sql.contains("ranked where (score < $2::real"));
        assert_eq!(
            st.params,
            vec![
                Param::Text("shoe".into()),
                Param::Real(0.5),
                Param::Uuid(ID.into()),
                Param::Int(21)
            ]
        );
    }

    #[test]
    fn text_search_in_another_order_is_one_statement_with_no_score() {
        let mut s = spec(Order::Newest);
        s.q = Some("shoe".into());
        let st = one(&s);
        assert!(
            !st.sql.contains("score") && !st.sql.contains("ranked"),
            "{}",
            st.sql
        );
        assert!(st.sql.contains(
            "(search_tsv @@ websearch_to_tsquery('english', $1::text) or $1::text <% title)"
        ));
        assert!(
            st.sql
                .ends_with("order by created_at desc, id desc limit $2::int8"),
            "{}",
            st.sql
        );
    }
}

/// The product search's statement shapes, each as the component builds it.
fn query_shapes(
    word: &str,
    typo: &str,
    category: &str,
    seller: &str,
) -> Vec<(String, product_sql::SearchSpec)> {
    use product_sql::{After, Order, SearchSpec};
    let base = SearchSpec {
        q: None,
        category: None,
        seller_id: None,
        min_price: None,
        max_price: None,
        in_stock: false,
        order: Order::Newest,
        fetch: 21,
        after: None,
    };
    let id = Uuid::now_v7().to_string();
    let now_us = chrono::Utc::now().timestamp_micros() - 3_600_000_000;
    let mut shapes = Vec::new();
    let mut add = |name: &str, f: &dyn Fn(&mut SearchSpec)| {
        let mut s = base.clone();
        f(&mut s);
        shapes.push((name.to_string(), s));
    };
    add("browse newest", &|_| {});
    add("browse newest, next page", &|s| {
        s.after = Some(After::Newest {
            created_us: now_us,
            id: id.clone(),
        })
    });
    add("browse price_asc", &|s| s.order = Order::PriceAsc);
    add("browse price_asc, next page", &|s| {
        s.order = Order::PriceAsc;
        s.after = Some(After::Price {
            price_cents: 5000,
            id: id.clone(),
        });
    });
    add("browse price_desc, next page", &|s| {
        s.order = Order::PriceDesc;
        s.after = Some(After::Price {
            price_cents: 5000,
            id: id.clone(),
        });
    });
    add("category newest", &|s| {
        s.category = Some(category.to_string())
    });
    add("category price_asc", &|s| {
        s.category = Some(category.to_string());
        s.order = Order::PriceAsc;
    });
    add("category price_desc, next page", &|s| {
        s.category = Some(category.to_string());
        s.order = Order::PriceDesc;
        s.after = Some(After::Price {
            price_cents: 5000,
            id: id.clone(),
        });
    });
    add("seller newest", &|s| s.seller_id = Some(seller.to_string()));
    add("seller price_asc", &|s| {
        s.seller_id = Some(seller.to_string());
        s.order = Order::PriceAsc;
    });
    add("price range in stock newest", &|s| {
        s.min_price = Some(1000);
        s.max_price = Some(2000);
        s.in_stock = true;
    });
    add("price range price_asc", &|s| {
        s.min_price = Some(1000);
        s.max_price = Some(2000);
        s.order = Order::PriceAsc;
    });
    add("search relevance", &|s| {
        s.q = Some(word.to_string());
        s.order = Order::Relevance;
    });
    add("search relevance with a typo", &|s| {
        s.q = Some(typo.to_string());
        s.order = Order::Relevance;
    });
    add("search relevance, next page", &|s| {
        s.q = Some(word.to_string());
        s.order = Order::Relevance;
        s.after = Some(After::Relevance {
            score: 0.5,
            id: id.clone(),
        });
    });
    add(
        "search relevance, next page among the full-text matches",
        &|s| {
            s.q = Some(word.to_string());
            s.order = Order::Relevance;
            s.after = Some(After::Relevance {
                score: 2.5,
                id: id.clone(),
            });
        },
    );
    add("search newest in a category, in stock", &|s| {
        s.q = Some(word.to_string());
        s.category = Some(category.to_string());
        s.in_stock = true;
        s.order = Order::Newest;
    });
    add("search price_desc", &|s| {
        s.q = Some(word.to_string());
        s.order = Order::PriceDesc;
    });
    shapes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_search_shape_is_an_index_scan_at_one_hundred_thousand_products() {
    let app = TestApp::start().await;
    let db = app.db(Db::Product).await;
    // Titles from a vocabulary of a thousand made-up words, 200 categories, 500 sellers,
    // 2% archived: selectivities like a real catalog's.
    db.batch_execute(
        "insert into products (id, seller_id, title, description, category, price_cents, \
             currency, stock, status, created_at)
         select gen_random_uuid(),
                ('00000000-0000-0000-0000-' || lpad((g % 500)::text, 12, '0'))::uuid,
                translate(substr(md5('w' || (g % 1000)), 1, 8), '0123456789', 'ghijklmnop')
                    || ' ' || translate(substr(md5('v' || (g / 1000)), 1, 7), '0123456789', 'ghijklmnop')
                    || ' ' || g,
                'Item ' || g || ' made of ' || (array['cotton','leather','glass','oak','steel'])[1 + g % 5],
                'category-' || (g % 200),
                (g * 7919) % 100000,
                'EUR',
                g % 7,
                case when g % 50 = 0 then 'archived' else 'active' end,
                now() - (g || ' seconds')::interval
         from generate_series(1, 100000) g;
         analyze products;",
    )
    .await
    .unwrap();
    let word: String = db
        .query_one(
            "select translate(substr(md5('w42'), 1, 8), '0123456789', 'ghijklmnop')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // One letter wrong at the end.
    let typo = format!(
        "{}{}",
        &word[..7],
        if word.ends_with('x') { 'y' } else { 'x' }
    );
    let seller = "00000000-0000-0000-0000-000000000007";

    for (name, spec) in query_shapes(&word, &typo, "category-7", seller) {
        for (step, product_sql::Statement { sql, params }) in
            product_sql::search(&spec).into_iter().enumerate()
        {
            let name = format!("{name}, statement {}", step + 1);
            let owned: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = params
                .into_iter()
                .map(|p| -> Box<dyn tokio_postgres::types::ToSql + Sync + Send> {
                    match p {
                        product_sql::Param::Text(s) => Box::new(s),
                        product_sql::Param::Int(i) => Box::new(i),
                        product_sql::Param::Real(r) => Box::new(r),
                        product_sql::Param::Uuid(s) => Box::new(Uuid::parse_str(&s).unwrap()),
                    }
                })
                .collect();
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                owned.iter().map(|b| b.as_ref() as _).collect();
            let rows = db
                .query(&format!("explain {sql}"), &refs)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}\n{sql}"));
            let plan: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
            let plan = plan.join("\n");
            // Shown with --nocapture: the plans are the evidence.
            eprintln!("--- {name}\n{plan}");
            assert!(
                !plan.contains("Seq Scan"),
                "{name} scans the table:\n{plan}\n{sql}"
            );
            assert!(plan.contains("Index"), "{name} uses no index:\n{plan}");
            // And the statement runs.
            db.query(&sql, &refs)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    // The component answers the same shapes over the seeded catalog.
    let r = app.get(&format!("/api/products?q={typo}"), None).await;
    r.expect(200);
    assert!(!ids(&r.json()).is_empty(), "the typo finds the word");
}

// ------------------------------------------------------------------ reservations

async fn fifty_concurrent_reservations_for_the_last_ten_units_sell_exactly_ten(kv: Kv) {
    let app = start(kv).await;
    let (_, token) = seller(&app);
    let p = create(&app, &token, with(body("last units"), json!({"stock": 10}))).await;
    let id = id_of(&p);

    let responses = join_all((0..50).map(|i| {
        let (app, id) = (&app, &id);
        async move {
            reserve(
                app,
                &format!("race-{i}"),
                json!([{"product_id": id, "quantity": 1}]),
            )
            .await
        }
    }))
    .await;
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for r in &responses {
        *by_status.entry(r.status).or_default() += 1;
        if r.status == 409 {
            let doc = r.expect_problem(409);
            assert!(doc["detail"].as_str().unwrap().contains(&id), "{doc}");
        }
    }
    assert_eq!(by_status, BTreeMap::from([(201, 10), (409, 40)]));
    assert_eq!(stock_in_db(&app, &id).await, 0);
    let page = app.get(&format!("/api/products/{id}"), None).await.json();
    assert_eq!(page["stock"], 0, "the read model followed the stock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_over_the_same_products_in_opposite_orders_never_deadlock() {
    let app = TestApp::start().await;
    let (_, token) = seller(&app);
    let a = id_of(&create(&app, &token, with(body("a"), json!({"stock": 100}))).await);
    let b = id_of(&create(&app, &token, with(body("b"), json!({"stock": 100}))).await);
    let responses = join_all((0..40).map(|i| {
        let items = if i % 2 == 0 {
            json!([{"product_id": a, "quantity": 1}, {"product_id": b, "quantity": 2}])
        } else {
            json!([{"product_id": b, "quantity": 2}, {"product_id": a, "quantity": 1}])
        };
        let app = &app;
        async move { reserve(app, &format!("cross-{i}"), items).await }
    }))
    .await;
    for r in &responses {
        r.expect(201);
    }
    assert_eq!(stock_in_db(&app, &a).await, 60);
    assert_eq!(stock_in_db(&app, &b).await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reservation_is_all_or_nothing_and_reports_price_title_and_short_products() {
    let app = TestApp::start().await;
    let (seller_id, token) = seller(&app);
    let seller_id = seller_id.to_string();
    let a = create(
        &app,
        &token,
        with(body("plenty"), json!({"stock": 10, "price_cents": 450})),
    )
    .await;
    let b = create(&app, &token, with(body("scarce"), json!({"stock": 1}))).await;
    let (a, b) = (id_of(&a), id_of(&b));

    let r = reserve(
        &app,
        "too-much",
        json!([{"product_id": a, "quantity": 2}, {"product_id": b, "quantity": 2}]),
    )
    .await;
    let doc = r.expect_problem(409);
    let detail = doc["detail"].as_str().unwrap();
    assert!(detail.contains(&b) && !detail.contains(&a), "{detail}");
    assert_eq!(
        doc["short_items"],
        json!([{"product_id": b, "requested": 2, "available": 1}])
    );
    assert_eq!(stock_in_db(&app, &a).await, 10, "nothing reserved");
    assert_eq!(stock_in_db(&app, &b).await, 1);

    let r = reserve(
        &app,
        "fits",
        json!([{"product_id": a, "quantity": 2}, {"product_id": b, "quantity": 1}, {"product_id": a, "quantity": 1}]),
    )
    .await;
    r.expect(201);
    assert_eq!(
        r.json(),
        json!({"reservation_id": "fits", "items": [
            {"product_id": a, "quantity": 2, "unit_price_cents": 450, "currency": "EUR", "title": "plenty", "seller_id": seller_id},
            {"product_id": b, "quantity": 1, "unit_price_cents": 1999, "currency": "EUR", "title": "scarce", "seller_id": seller_id},
            {"product_id": a, "quantity": 1, "unit_price_cents": 450, "currency": "EUR", "title": "plenty", "seller_id": seller_id},
        ]})
    );
    assert_eq!(stock_in_db(&app, &a).await, 7);
    assert_eq!(stock_in_db(&app, &b).await, 0);

    // Unknown products are 422, naming the line; nothing is reserved.
    let r = reserve(
        &app,
        "unknown",
        json!([{"product_id": a, "quantity": 1}, {"product_id": Uuid::now_v7(), "quantity": 1}]),
    )
    .await;
    let doc = r.expect_problem(422);
    assert!(doc["errors"]["items[1].product_id"].is_array(), "{doc}");
    assert_eq!(stock_in_db(&app, &a).await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeating_a_reservation_id_replays_the_first_result_and_reserves_nothing_more() {
    let app = TestApp::start().await;
    let (_, token) = seller(&app);
    let a = id_of(&create(&app, &token, with(body("a"), json!({"stock": 10}))).await);
    let first = reserve(&app, "same", json!([{"product_id": a, "quantity": 3}])).await;
    first.expect(201);
    let again = reserve(&app, "same", json!([{"product_id": a, "quantity": 3}])).await;
    again.expect(201);
    assert_eq!(again.json(), first.json());
    // Even with another body, the first result stands.
    let other = reserve(&app, "same", json!([{"product_id": a, "quantity": 9}])).await;
    assert_eq!(other.json(), first.json());
    assert_eq!(stock_in_db(&app, &a).await, 7);

    // Concurrent repeats of a new id reserve once.
    let responses = join_all(
        (0..10).map(|_| reserve(&app, "burst", json!([{"product_id": a, "quantity": 2}]))),
    )
    .await;
    for r in &responses {
        r.expect(201);
        assert_eq!(r.json(), responses[0].json());
    }
    assert_eq!(stock_in_db(&app, &a).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn releasing_returns_exactly_what_was_reserved_once() {
    let app = TestApp::start().await;
    let (_, token) = seller(&app);
    let a = id_of(&create(&app, &token, with(body("a"), json!({"stock": 10}))).await);
    let b = id_of(&create(&app, &token, with(body("b"), json!({"stock": 4}))).await);
    reserve(
        &app,
        "order-1",
        json!([{"product_id": a, "quantity": 3}, {"product_id": b, "quantity": 4}, {"product_id": a, "quantity": 1}]),
    )
    .await
    .expect(201);
    assert_eq!(
        (stock_in_db(&app, &a).await, stock_in_db(&app, &b).await),
        (6, 0)
    );

    release(&app, "order-1").await.expect(204);
    assert_eq!(
        (stock_in_db(&app, &a).await, stock_in_db(&app, &b).await),
        (10, 4)
    );
    // Idempotent, also when repeated concurrently, and for ids never reserved.
    let again = join_all((0..5).map(|_| release(&app, "order-1"))).await;
    for r in again {
        r.expect(204);
    }
    release(&app, "never-reserved").await.expect(204);
    assert_eq!(
        (stock_in_db(&app, &a).await, stock_in_db(&app, &b).await),
        (10, 4)
    );
    // A released reservation id stays spent: repeating it reserves nothing.
    reserve(&app, "order-1", json!([{"product_id": a, "quantity": 1}]))
        .await
        .expect(201);
    assert_eq!(stock_in_db(&app, &a).await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn internal_endpoints_accept_only_service_tokens_from_the_order_service() {
    let app = TestApp::start().await;
    let (_, token) = seller(&app);
    let a = id_of(&create(&app, &token, body("a")).await);
    let body = json!({"reservation_id": "x", "items": [{"product_id": a, "quantity": 1}]});
    let path = "/internal/products/reservations";
    let r = app.post(path, None, body.clone()).await;
    r.expect_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    app.post(path, Some("garbage"), body.clone())
        .await
        .expect_problem(401);
    let admin = app.token(Uuid::now_v7(), "admin");
    app.post(path, Some(&admin), body.clone())
        .await
        .expect_problem(403);
    let delivery = app.service_token("delivery", "product");
    app.post(path, Some(&delivery), body.clone())
        .await
        .expect_problem(403);
    // A token of order meant for another service.
    let misaddressed = app.service_token("order", "delivery");
    app.post(path, Some(&misaddressed), body.clone())
        .await
        .expect_problem(401);
    app.delete(&format!("{path}/x"), Some(&admin), None)
        .await
        .expect_problem(403);
    app.delete(&format!("{path}/x"), None, None)
        .await
        .expect_problem(401);
    assert_eq!(stock_in_db(&app, &a).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_reservations_get_a_problem_naming_the_field_and_reserve_nothing() {
    let app = TestApp::start().await;
    let (_, token) = seller(&app);
    let a = id_of(&create(&app, &token, body("a")).await);
    let service = app.service_token("order", "product");
    for (input, field) in [
        (json!({"reservation_id": "r", "items": []}), "items"),
        (
            json!({"reservation_id": "", "items": [{"product_id": a, "quantity": 1}]}),
            "reservation_id",
        ),
        (
            json!({"reservation_id": "r", "items": [{"product_id": a, "quantity": 0}]}),
            "items[0].quantity",
        ),
        (
            json!({"reservation_id": "r", "items": [{"product_id": a, "quantity": -1}]}),
            "items[0].quantity",
        ),
        (
            json!({"reservation_id": "r", "items": [{"product_id": a, "quantity": 2_000_000}]}),
            "items[0].quantity",
        ),
        (
            json!({"reservation_id": "r", "items": [{"product_id": "nope", "quantity": 1}]}),
            "items[0].product_id",
        ),
        (
            json!({"reservation_id": "r", "items": [{"product_id": a, "quantity": 1, "x": 1}]}),
            "items[0].x",
        ),
        (
            json!({"items": [{"product_id": a, "quantity": 1}]}),
            "reservation_id",
        ),
    ] {
        let doc = app
            .post(
                "/internal/products/reservations",
                Some(&service),
                input.clone(),
            )
            .await
            .expect_problem(422);
        let errors = doc["errors"].as_object().unwrap();
        assert!(
            errors.contains_key(field)
                || errors
                    .keys()
                    .any(|k| k.replace('.', "") == field.replace(['[', ']', '.'], "")),
            "{field} not named for {input}: {doc}"
        );
    }
    assert_eq!(stock_in_db(&app, &a).await, 5);
    let db = app.db(Db::Product).await;
    let n: i64 = db
        .query_one("select count(*) from reservations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

// ------------------------------------------------------------------ OpenAPI

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openapi_document_describes_every_operation_the_component_answers() {
    let app = TestApp::start().await;
    let r = app.get("/api/products/openapi.json", None).await;
    r.expect(200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().expect("paths");
    let expected: BTreeSet<(String, String)> = [
        ("/api/products", "get"),
        ("/api/products", "post"),
        ("/api/products/{id}", "get"),
        ("/api/products/{id}", "patch"),
        ("/api/products/{id}", "delete"),
        ("/api/products/healthz", "get"),
        ("/api/products/readyz", "get"),
        ("/api/products/openapi.json", "get"),
        ("/internal/products/reservations", "post"),
        ("/internal/products/reservations/{reservation_id}", "delete"),
    ]
    .iter()
    .map(|(p, m)| (p.to_string(), m.to_string()))
    .collect();
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((path.clone(), method.clone()));
                assert!(op["responses"].is_object(), "{method} {path} has responses");
            }
        }
    }
    assert_eq!(documented, expected);

    // Every documented operation exists on the component (no 404/405), and every status it
    // answers in this probe is documented.
    let (_, token) = seller(&app);
    let p = create(&app, &token, body("documented")).await;
    let id = id_of(&p);
    for (path, method) in &expected {
        let concrete = path
            .replace("{id}", &id)
            .replace("{reservation_id}", "never");
        let r = app
            .request(&method.to_uppercase(), &concrete, &[], Vec::new())
            .await;
        assert_ne!(r.status, 404, "{method} {path}");
        assert_ne!(r.status, 405, "{method} {path}");
        let responses = &doc["paths"][path.as_str()][method.as_str()]["responses"];
        assert!(
            responses.get(r.status.to_string()).is_some(),
            "{method} {path} answered {} which is not documented",
            r.status
        );
    }
    // Products in the document match what the component sends.
    let schema = &doc["components"]["schemas"]["Product"];
    let required: BTreeSet<String> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let sent: BTreeSet<String> = p.as_object().unwrap().keys().cloned().collect();
    assert_eq!(required, sent);
    let sort = &doc["paths"]["/api/products"]["get"]["parameters"];
    let names: BTreeSet<&str> = sort
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "q",
            "category",
            "seller_id",
            "min_price",
            "max_price",
            "in_stock",
            "sort",
            "limit",
            "cursor"
        ])
    );
}

// ------------------------------------------------------------------ key-value layout

/// FNV-1a (64-bit), as the component partitions documents (components/product/README.md).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn documents_are_spread_over_the_four_labels_by_a_stable_hash_of_the_product_id() {
    let app = TestApp::start().await;
    let (_, token) = seller(&app);
    // The harness keeps each label in `<tmp>/marketplace-<prefix>/<label>.db`, where the
    // prefix is also that of the app's database names.
    let db_url = app.database_url(Db::Product);
    let db_name = db_url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let prefix = db_name.strip_suffix("_product").expect("database name");
    let dir = std::env::temp_dir().join(format!("marketplace-{prefix}"));

    let mut per_label = [0usize; 4];
    let mut placed = Vec::new();
    for i in 0..40 {
        let id =
            Uuid::parse_str(&id_of(&create(&app, &token, body(&format!("p{i}"))).await)).unwrap();
        let label = (fnv1a(id.as_bytes()) % 4) as usize;
        per_label[label] += 1;
        placed.push((id, label));
    }
    let files: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let path = dir.join(format!("products{i}.db"));
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect();
    let contains =
        |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    for (id, label) in placed {
        let key = format!("product:v1:{id}");
        for (i, file) in files.iter().enumerate() {
            assert_eq!(contains(file, &key), i == label, "{key} in products{i}");
        }
    }
    assert!(
        per_label.iter().all(|n| *n > 0),
        "every label used: {per_label:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anyone_may_search_but_a_presented_token_must_be_valid() {
    let app = TestApp::start().await;
    let (_, token) = seller(&app);
    let made = create(&app, &token, body("open search")).await;
    let id = id_of(&made);
    let anonymous = app.get("/api/products?q=open", None).await;
    anonymous.expect(200);
    assert!(anonymous.json()["items"].to_string().contains(&id));
    app.get("/api/products?q=open", Some(&token))
        .await
        .expect(200);
    let r = app.get("/api/products?q=open", Some("not-a-token")).await;
    let doc = r.expect_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{doc}");
}
