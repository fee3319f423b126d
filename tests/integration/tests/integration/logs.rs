//! Secrets in logs (issue #9): no password, access token, refresh token, service token,
//! signing-key seed or database credential appears in any log line of the components or in
//! any error body.
//!
//! One representative run — registration (also with refused passwords), failed and successful
//! logins, refresh and refresh reuse, password change, logout, forged and expired tokens,
//! order placement (service tokens between order, product and delivery, captured on the way),
//! carrier events reported back to the order service, the product and delivery services down
//! mid-placement, the outbox relays, account deletion, and every database unreachable — with
//! the components' stdout/stderr captured to a file. The databases are reached through
//! connection strings that carry a password (the test PostgreSQL trusts local connections, so
//! it is accepted and ignored), so a logged connection string is caught too. Then the log and
//! every error body are scanned for every secret of the run; a self-check proves the scanner
//! finds a planted one.
//!
//! Run: `make test`, or with `MARKETPLACE_TEST_PG` / `MARKETPLACE_TEST_REDIS` set,
//! `cargo test --workspace --test logs`.

use std::sync::{Arc, Mutex};

use marketplace_shared::tokens::Signer;
use marketplace_tests::{
    ADMIN_EMAIL, AUDIENCE, Db, ISSUER, InterceptAction, PASSWORD, TestApp, TestOptions,
    TestResponse,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// Secrets of the run: (what, value).
#[derive(Default, Clone)]
struct Secrets(Arc<Mutex<Vec<(String, String)>>>);

impl Secrets {
    fn add(&self, what: impl Into<String>, value: impl Into<String>) {
        let value = value.into();
        if value.len() < 8 {
            return;
        }
        let what = what.into();
        let mut all = self.0.lock().unwrap();
        // A JWT is also caught by its signature alone (a log that cuts the token short).
        if let Some(sig) = value.split('.').nth(2).filter(|s| s.len() >= 40) {
            all.push((format!("{what} (signature)"), sig.to_string()));
        }
        all.push((what, value));
    }

    fn token(&self, what: &str, r: &TestResponse) {
        let v = r.json();
        for field in ["access_token", "refresh_token"] {
            if let Some(t) = v[field].as_str() {
                self.add(format!("{what} {field}"), t);
            }
        }
    }

    fn list(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().clone()
    }
}

/// Every occurrence of a secret in `text`, as `what` (never the secret itself).
fn scan(text: &str, secrets: &[(String, String)]) -> Vec<String> {
    secrets
        .iter()
        .filter(|(_, v)| text.contains(v.as_str()))
        .map(|(what, _)| what.clone())
        .collect()
}

/// Secret-shaped strings in `text`, whoever they belong to: JWTs, bearer credentials,
/// connection strings with a password, private keys, and logged JSON bodies with credentials.
fn secret_shaped(text: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    let b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    // JWT: `eyJ…` (a base64url JSON header) and two more base64url segments.
    if text.match_indices("eyJ").any(|(i, _)| {
        let parts: Vec<&str> = text[i..]
            .split(|c: char| !(b64(c) || c == '.'))
            .next()
            .unwrap_or("")
            .split('.')
            .collect();
        parts.len() >= 3 && parts[..3].iter().all(|p| p.len() >= 10)
    }) {
        found.push("a JWT");
    }
    if text.match_indices("Bearer ").any(|(i, m)| {
        text[i + m.len()..]
            .chars()
            .take_while(|c| b64(*c) || *c == '.')
            .count()
            >= 20
    }) {
        found.push("a bearer credential");
    }
    if text.match_indices("://").any(|(i, m)| {
        let authority = text[i + m.len()..]
            .split(|c: char| c == '/' || c.is_whitespace())
            .next()
            .unwrap_or("");
        authority
            .split_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    }) {
        found.push("a connection string with a password");
    }
    for (needle, what) in [
        ("PRIVATE KEY", "a private key"),
        ("\"password\":", "a logged body with a password"),
        ("\"current_password\":", "a logged body with a password"),
        ("\"new_password\":", "a logged body with a password"),
        ("\"refresh_token\":", "a logged body with a refresh token"),
        ("\"access_token\":", "a logged body with an access token"),
    ] {
        if text.contains(needle) {
            found.push(what);
        }
    }
    found
}

struct Run {
    app: TestApp,
    secrets: Secrets,
    /// Every error body the run received: (request, body).
    errors: Vec<(String, String)>,
}

impl Run {
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> TestResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        let bytes = match &body {
            Some(b) => {
                headers.push(("content-type", "application/json"));
                serde_json::to_vec(b).unwrap()
            }
            None => Vec::new(),
        };
        let r = self.app.request(method, path, &headers, bytes).await;
        if r.status >= 400 {
            self.errors.push((
                format!("{method} {path} → {}", r.status),
                String::from_utf8_lossy(&r.body).into_owned(),
            ));
        }
        r
    }

    async fn post(&mut self, path: &str, token: Option<&str>, body: Value) -> TestResponse {
        self.send("POST", path, token, Some(body), &[]).await
    }

    async fn get(&mut self, path: &str, token: Option<&str>) -> TestResponse {
        self.send("GET", path, token, None, &[]).await
    }

    async fn login(&mut self, email: &str, password: &str, what: &str) -> TestResponse {
        let r = self
            .post(
                "/api/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        if r.status == 200 {
            self.secrets.token(what, &r);
        }
        r
    }

    async fn place(&mut self, token: &str, product: &str, key: &str) -> TestResponse {
        self.send(
            "POST",
            "/api/orders",
            Some(token),
            Some(json!({"items": [{"product_id": product, "quantity": 1}],
                "shipping_address": {"name": "Log Buyer", "line1": "1 Road", "city": "Town",
                                     "postal_code": "1000", "country": "DE"}})),
            &[("idempotency-key", key)],
        )
        .await
    }
}

fn secret_password(what: &str) -> String {
    format!("{what}-{}", Uuid::new_v4().simple())
}

/// `url` with `user:password@` as its credentials.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let rest = rest.split_once('@').map(|(_, r)| r).unwrap_or(rest);
    format!("{scheme}://postgres:{password}@{rest}")
}

fn recording_interceptor(
    secrets: &Secrets,
    fail_host: Arc<Mutex<Option<&'static str>>>,
) -> marketplace_tests::Interceptor {
    let secrets = secrets.clone();
    Arc::new(move |p: &http::request::Parts| {
        if let Some(auth) = p.headers.get("authorization").and_then(|v| v.to_str().ok()) {
            let token = auth.trim_start_matches("Bearer ").to_string();
            secrets.add(
                format!("service token {} {}", p.method, p.uri.path()),
                token,
            );
        }
        let failing = *fail_host.lock().unwrap();
        (failing.is_some() && p.uri.host() == failing).then_some(InterceptAction::ConnectionRefused)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_of_a_representative_run_reaches_a_log_line_or_an_error_body() {
    let dir = std::env::temp_dir().join(format!("marketplace-logs-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("components.log");
    let secrets = Secrets::default();

    // The databases of `base`, reached by `app` through connection strings with a password.
    let base = TestApp::start().await;
    let db_password = secret_password("DbPassw0rd");
    secrets.add("database password", &db_password);
    let mut variables = Vec::new();
    for (name, db) in [("user_db_url", Db::User), ("product_db_url", Db::Product)] {
        let url = with_password(&base.database_url(db), &db_password);
        secrets.add(format!("{name} connection string"), &url);
        variables.push((name.to_string(), url));
    }
    let order_urls = [Db::Order(0), Db::Order(1)]
        .map(|db| with_password(&base.database_url(db), &db_password))
        .join(",");
    secrets.add("order_db_urls", &order_urls);
    variables.push(("order_db_urls".into(), order_urls));
    let fail_host = Arc::new(Mutex::new(None));
    let app = TestApp::start_with(TestOptions {
        variables,
        interceptor: Some(recording_interceptor(&secrets, fail_host.clone())),
        log_file: Some(log.clone()),
        ..Default::default()
    })
    .await;
    for key in [
        "jwt_signing_key",
        "order_service_signing_key",
        "delivery_service_signing_key",
    ] {
        let value = app.variables()[key].clone();
        secrets.add(format!("{key} seed"), value.split_once(':').unwrap().1);
        secrets.add(key, value);
    }
    let mut run = Run {
        app,
        secrets: secrets.clone(),
        errors: Vec::new(),
    };

    // ------------------------------------------------------------ accounts and logins
    secrets.add("the shared test password", PASSWORD);
    let (_, admin) = run.app.register_user("admin").await;
    secrets.add("admin access token", &admin);
    let email = format!("{}@example.test", Uuid::new_v4().simple());
    let p1 = secret_password("Passw0rd-one");
    let p2 = secret_password("Passw0rd-two");
    let short = format!("S{}", &Uuid::new_v4().simple().to_string()[..8]);
    let long = format!(
        "L{}",
        "k".repeat(150) + Uuid::new_v4().simple().to_string().as_str()
    );
    let wrong = secret_password("Wr0ng");
    for (what, p) in [
        ("password one", &p1),
        ("password two", &p2),
        ("short password", &short),
        ("long password", &long),
        ("wrong password", &wrong),
    ] {
        secrets.add(what, p.as_str());
    }
    for (password, status) in [(&short, 422), (&long, 422), (&p1, 201), (&p2, 409)] {
        let r = run
            .post(
                "/api/auth/register",
                None,
                json!({"email": email, "password": password, "display_name": "Log User"}),
            )
            .await;
        r.expect(status);
    }
    for _ in 0..3 {
        run.login(&email, &wrong, "wrong").await.expect(401);
    }
    run.login("nobody@example.test", &p1, "unknown")
        .await
        .expect(401);
    let first = run.login(&email, &p1, "first login").await;
    first.expect(200);
    let refresh1 = first.json()["refresh_token"].as_str().unwrap().to_string();
    let r = run
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": refresh1}),
        )
        .await;
    r.expect(200);
    secrets.token("refreshed", &r);
    run.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": refresh1}),
    )
    .await
    .expect(401);
    let second = run.login(&email, &p1, "second login").await;
    second.expect(200);
    let access = second.json()["access_token"].as_str().unwrap().to_string();
    let refresh2 = second.json()["refresh_token"].as_str().unwrap().to_string();
    run.post(
        "/api/users/me/password",
        Some(&access),
        json!({"current_password": wrong, "new_password": p2}),
    )
    .await
    .expect(403);
    run.post(
        "/api/users/me/password",
        Some(&access),
        json!({"current_password": p1, "new_password": short}),
    )
    .await
    .expect(422);
    run.post(
        "/api/users/me/password",
        Some(&access),
        json!({"current_password": p1, "new_password": p2}),
    )
    .await
    .expect(204);
    run.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": refresh2}),
    )
    .await
    .expect(401);
    let third = run.login(&email, &p2, "third login").await;
    third.expect(200);
    let buyer = third.json()["access_token"].as_str().unwrap().to_string();
    let refresh3 = third.json()["refresh_token"].as_str().unwrap().to_string();
    run.post("/api/auth/logout", None, json!({"refresh_token": refresh3}))
        .await
        .expect(204);

    // Forged, expired and misplaced tokens.
    let now = chrono::Utc::now().timestamp();
    let forged = Signer::from_config(&format!(
        "k1:{}",
        "A".repeat(42) + "E" // a valid 32-byte seed the app does not trust
    ))
    .unwrap()
    .sign(
        &json!({"sub": Uuid::now_v7().to_string(), "role": "admin", "iss": ISSUER,
                  "aud": AUDIENCE, "iat": now, "exp": now + 900, "jti": "f"}),
    );
    let expired = run.app.token_with(
        json!({"sub": Uuid::now_v7().to_string(), "role": "admin", "iss": ISSUER,
                           "aud": AUDIENCE, "iat": now - 4000, "exp": now - 3000, "jti": "e"}),
    );
    secrets.add("forged token", &forged);
    secrets.add("expired token", &expired);
    for t in [&forged, &expired] {
        run.get("/api/users/me", Some(t)).await.expect(401);
        run.get("/api/orders", Some(t)).await.expect(401);
    }
    run.post("/internal/orders/outbox/relay", Some(&buyer), json!({}))
        .await
        .expect(403);
    let misaddressed = run.app.service_token("order", "product");
    secrets.add("misaddressed service token", &misaddressed);
    run.post("/internal/deliveries", Some(&misaddressed), json!({}))
        .await
        .expect(401);

    // ------------------------------------------------------------ orders and deliveries
    let seller_email = format!("{}@example.test", Uuid::new_v4().simple());
    let seller_password = secret_password("Seller-passw0rd");
    secrets.add("seller password", &seller_password);
    run.post(
        "/api/auth/register",
        None,
        json!({"email": seller_email, "password": seller_password, "display_name": "S",
               "role": "seller"}),
    )
    .await
    .expect(201);
    let s = run.login(&seller_email, &seller_password, "seller").await;
    let seller = s.json()["access_token"].as_str().unwrap().to_string();
    let r = run
        .post(
            "/api/products",
            Some(&seller),
            json!({"title": "Log lamp", "description": "A lamp", "category": "lamps",
                   "price_cents": 1000, "currency": "EUR", "stock": 100}),
        )
        .await;
    r.expect(201);
    let product = r.json()["id"].as_str().unwrap().to_string();
    let placed = run.place(&buyer, &product, "first").await;
    placed.expect(201);
    let shipment = placed.json()["shipment_id"].as_str().unwrap().to_string();
    let carrier = run.app.token(Uuid::now_v7(), "carrier");
    secrets.add("carrier token", &carrier);
    for (i, status) in ["picked_up", "in_transit"].iter().enumerate() {
        run.post(
            &format!("/api/deliveries/{shipment}/events"),
            Some(&carrier),
            json!({"event_id": format!("log-{i}"), "status": status}),
        )
        .await
        .expect(201);
    }
    // Faults: the product service, then the delivery service, unreachable mid-placement.
    *fail_host.lock().unwrap() = Some("product.spin.internal");
    let r = run.place(&buyer, &product, "product-down").await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    *fail_host.lock().unwrap() = Some("delivery.spin.internal");
    run.place(&buyer, &product, "delivery-down")
        .await
        .expect(201);
    let order_relay = run.app.service_token("relay", "order");
    secrets.add("order relay token", &order_relay);
    run.post(
        "/internal/orders/outbox/relay",
        Some(&order_relay),
        json!({}),
    )
    .await
    .expect(200);
    *fail_host.lock().unwrap() = Some("order.spin.internal");
    run.post(
        &format!("/api/deliveries/{shipment}/events"),
        Some(&carrier),
        json!({"event_id": "log-out", "status": "out_for_delivery"}),
    )
    .await
    .expect(201);
    *fail_host.lock().unwrap() = None;
    let delivery_relay = run.app.service_token("relay", "delivery");
    secrets.add("delivery relay token", &delivery_relay);
    run.post(
        "/internal/deliveries/outbox/relay",
        Some(&delivery_relay),
        json!({}),
    )
    .await
    .expect(200);
    run.post(
        "/internal/orders/outbox/relay",
        Some(&order_relay),
        json!({}),
    )
    .await
    .expect(200);

    // ------------------------------------------------------------ leaving
    run.send(
        "DELETE",
        "/api/users/me",
        Some(&buyer),
        Some(json!({"password": wrong})),
        &[],
    )
    .await
    .expect(403);
    run.send(
        "DELETE",
        "/api/users/me",
        Some(&buyer),
        Some(json!({"password": p2})),
        &[],
    )
    .await
    .expect(204);
    run.login(&email, &p2, "deleted").await.expect(401);

    // ------------------------------------------------------------ every database down
    let down_password = secret_password("DownDbPassw0rd");
    secrets.add("unreachable database password", &down_password);
    let down =
        |db: &str| format!("postgres://postgres:{down_password}@127.0.0.1:1/{db}?sslmode=disable");
    let mut down_vars = vec![
        ("user_db_url".to_string(), down("users")),
        ("product_db_url".to_string(), down("products")),
        (
            "order_db_urls".to_string(),
            format!("{},{}", down("o0"), down("o1")),
        ),
    ];
    for (_, v) in &down_vars {
        secrets.add("unreachable connection string", v.as_str());
    }
    down_vars.push(("product_db_replica_urls".to_string(), down("replica")));
    let mut dead = Run {
        app: TestApp::start_with(TestOptions {
            variables: down_vars,
            log_file: Some(log.clone()),
            ..Default::default()
        })
        .await,
        secrets: secrets.clone(),
        errors: Vec::new(),
    };
    let dead_buyer = dead.app.token(Uuid::now_v7(), "buyer");
    secrets.add("buyer token of the dead app", &dead_buyer);
    for path in [
        "/api/users/readyz",
        "/api/products/readyz",
        "/api/orders/readyz",
    ] {
        dead.get(path, None).await.expect(503);
    }
    dead.login(ADMIN_EMAIL, PASSWORD, "dead").await.expect(503);
    dead.get(&format!("/api/products/{product}"), None)
        .await
        .expect(503);
    dead.get("/api/products?q=lamp", None).await.expect(503);
    dead.get("/api/orders", Some(&dead_buyer)).await.expect(503);
    let r = dead.place(&dead_buyer, &product, "dead").await;
    assert!(r.status == 503, "{}", r.status);

    // ------------------------------------------------------------ the scan
    let secrets = secrets.list();
    assert!(
        secrets.len() > 40,
        "the run collected {} secrets",
        secrets.len()
    );
    assert!(
        secrets
            .iter()
            .any(|(w, _)| w.starts_with("service token POST /internal/products")),
        "service tokens were captured"
    );
    assert!(
        secrets
            .iter()
            .any(|(w, _)| w.starts_with("service token POST /internal/orders")),
        "delivery's reports were captured"
    );
    drop(run.app);
    drop(dead.app);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let components: Vec<&str> = ["[user", "[product", "[order", "[delivery"]
        .into_iter()
        .filter(|c| text.contains(c))
        .collect();
    assert!(
        components.len() >= 3,
        "the run should have made at least three components log (got {components:?}):\n{text:.2000}"
    );
    let mut hits = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for what in scan(line, &secrets) {
            hits.push(format!("log line {}: {what}", i + 1));
        }
    }
    for (i, line) in text.lines().enumerate() {
        for what in secret_shaped(line) {
            hits.push(format!("log line {}: {what}: {line:.200}", i + 1));
        }
    }
    for (request, body) in run.errors.iter().chain(dead.errors.iter()) {
        for what in scan(body, &secrets) {
            hits.push(format!("error body of {request}: {what}"));
        }
    }
    // The scanner finds what it looks for.
    let planted = format!("[order stderr] calling product with Authorization: Bearer {buyer}");
    assert!(
        !scan(&planted, &secrets).is_empty() && !scan(&format!("pw={p2}"), &secrets).is_empty(),
        "the scanner misses a planted secret"
    );
    for planted in [
        format!("[order stderr] sending {misaddressed}"),
        format!("[user stderr] refresh {{\"refresh_token\":\"{refresh3}\"}}"),
        "[product stderr] connecting to postgres://app:hunter2@db:5432/products".to_string(),
        format!("[delivery stderr] authorization: Bearer {}", "x".repeat(30)),
    ] {
        assert!(
            !secret_shaped(&planted).is_empty(),
            "the pattern scanner misses {planted}"
        );
    }
    for benign in [
        "[order stderr] order: dependency postgres order-db-1 unavailable: connection failed",
        "[user stderr] user: refresh token reuse detected; its login was revoked",
        "[product stderr] product: database unavailable: error connecting to server",
    ] {
        assert!(secret_shaped(benign).is_empty(), "false positive: {benign}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        hits.is_empty(),
        "secrets leaked ({} hits):\n{}",
        hits.len(),
        hits.join("\n")
    );
    drop(base);
}

/// The components' output of the whole `make test` run: every test app appends it to
/// `MARKETPLACE_TEST_LOG`, and `make test` runs this test last, over that file. Ignored in a
/// plain `cargo test`, where no such file exists.
#[test]
#[ignore = "run by `make test` after every other test, over the captured log of the run"]
fn the_captured_logs_of_the_whole_test_run_hold_nothing_secret_shaped() {
    let path = std::env::var("MARKETPLACE_TEST_LOG")
        .expect("MARKETPLACE_TEST_LOG names the captured log of the run (`make test` sets it)");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    assert!(
        text.lines().count() > 10,
        "the run captured almost no component output: is MARKETPLACE_TEST_LOG reaching the host?"
    );
    let offending: Vec<(usize, Vec<&str>)> = text
        .lines()
        .enumerate()
        .map(|(n, line)| (n + 1, secret_shaped(line)))
        .filter(|(_, found)| !found.is_empty())
        .collect();
    assert!(
        offending.is_empty(),
        "secret-shaped values in {path} (line, what): {offending:?}"
    );
}
