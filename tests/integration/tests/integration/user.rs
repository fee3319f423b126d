//! The user service, black-box: the built component in the test host against real PostgreSQL
//! and key-value stores. One test per rule of issue #3 and per row of the contract's table.
//!
//! Run: `make test`, or with your own servers
//! `MARKETPLACE_TEST_PG=... MARKETPLACE_TEST_REDIS=... cargo test -p marketplace-tests --test user`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use marketplace_shared::tokens::{Signer, Verifier};
use marketplace_tests::{ADMIN_EMAIL, AUDIENCE, Db, ISSUER, Kv, PASSWORD, TestApp, TestOptions};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

// ------------------------------------------------------------------ helpers

fn unique_email() -> String {
    format!("{}@example.test", Uuid::new_v4().simple())
}

/// Registers `email` with the standard password; returns the user document.
async fn register(app: &TestApp, email: &str) -> Value {
    app.post(
        "/api/auth/register",
        None,
        json!({"email": email, "password": PASSWORD, "display_name": "Ann Example"}),
    )
    .await
    .expect(201)
    .json()
}

async fn login(app: &TestApp, email: &str, password: &str) -> marketplace_tests::TestResponse {
    app.post(
        "/api/auth/login",
        None,
        json!({"email": email, "password": password}),
    )
    .await
}

/// Registers and logs in; returns (user id, access token, refresh token, email).
async fn account(app: &TestApp) -> (Uuid, String, String, String) {
    let email = unique_email();
    let user = register(app, &email).await;
    let pair = login(app, &email, PASSWORD).await.expect(200).json();
    (
        user["id"].as_str().unwrap().parse().unwrap(),
        pair["access_token"].as_str().unwrap().to_string(),
        pair["refresh_token"].as_str().unwrap().to_string(),
        email,
    )
}

async fn refresh(app: &TestApp, token: &str) -> marketplace_tests::TestResponse {
    app.post("/api/auth/refresh", None, json!({"refresh_token": token}))
        .await
}

fn assert_user_shape(user: &Value) {
    let obj = user.as_object().expect("user object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["created_at", "display_name", "email", "id", "role"],
        "{user}"
    );
    assert!(Uuid::parse_str(user["id"].as_str().unwrap()).is_ok());
    let created = user["created_at"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
}

/// The decoded (unverified) header and claims of a JWT.
fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let header = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    let claims = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&header).unwrap(),
        serde_json::from_slice(&claims).unwrap(),
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(sub: Uuid, role: &str) -> Value {
    json!({"sub": sub.to_string(), "role": role, "iss": ISSUER, "aud": AUDIENCE,
           "iat": now(), "exp": now() + 900, "jti": Uuid::now_v7().to_string()})
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner_hash = Sha256::new()
        .chain_update(&inner)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer)
        .chain_update(inner_hash)
        .finalize()
        .to_vec()
}

fn unsigned_jwt(header: Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Where the service keeps a subject's login failures (`domain::throttle`): the key of its
/// bucket among `buckets` under `prefix`, and the tag of its entry in that key.
fn throttle_slot(prefix: &str, buckets: u16, name: &str) -> (String, u64) {
    let digest = Sha256::digest(name.as_bytes());
    let bucket = u16::from_be_bytes([digest[0], digest[1]]) % buckets;
    let tag = u64::from_be_bytes(digest[2..10].try_into().unwrap());
    (format!("{prefix}/{bucket}"), tag)
}

/// The account window of an email: 1024 keys.
fn failures_key(email: &str) -> (String, u64) {
    throttle_slot("login-failures/account", 1024, &email.trim().to_lowercase())
}

/// A login from `peer` (what Spin puts in `spin-client-addr`), optionally through a proxy that
/// says `X-Forwarded-For: forwarded_for`.
async fn login_from(
    app: &TestApp,
    peer: &str,
    forwarded_for: Option<&str>,
    email: &str,
    password: &str,
) -> marketplace_tests::TestResponse {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri("http://127.0.0.1:3000/api/auth/login")
        .header("host", "127.0.0.1:3000")
        .header("content-type", "application/json");
    if let Some(f) = forwarded_for {
        builder = builder.header("x-forwarded-for", f);
    }
    let body = serde_json::to_vec(&json!({"email": email, "password": password})).unwrap();
    let req = builder.body(bytes::Bytes::from(body)).unwrap();
    let resp = app
        .app
        .handle_from(req, peer.parse().unwrap())
        .await
        .expect("host error");
    let (parts, body) = resp.into_parts();
    marketplace_tests::TestResponse {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// Asserts a 429 with a positive `Retry-After`; returns it.
#[track_caller]
fn retry_after_of(r: &marketplace_tests::TestResponse) -> u64 {
    r.expect_problem(429);
    let retry: u64 = r
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .unwrap();
    assert!(retry > 0);
    retry
}

/// A PHC string of `PASSWORD` with weaker Argon2id parameters than today's (m=8 MiB, t=1).
const WEAK_HASH: &str = "$argon2id$v=19$m=8192,t=1,p=1$d2Vhay1zYWx0LTE2Ynl0ZQ$xANZpkVQfknKjpjulmLH7K68cDAGHtQQYvW/VaU/Pus";

// ------------------------------------------------------------------ registration

#[tokio::test]
async fn registering_returns_201_with_the_user_and_stores_only_an_argon2id_hash() {
    let app = TestApp::start().await;
    let email = unique_email();

    let r = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": format!("  {}  ", email.to_uppercase()), "password": PASSWORD,
                   "display_name": " Ann "}),
        )
        .await;

    let user = r.expect(201).json();
    assert_user_shape(&user);
    assert_eq!(user["role"], "buyer");
    assert_eq!(user["display_name"], "Ann");
    assert_eq!(user["email"], email.to_uppercase());
    assert_eq!(
        r.header("location"),
        Some(format!("/api/users/{}", user["id"].as_str().unwrap()).as_str())
    );
    let db = app.db(Db::User).await;
    let row = db
        .query_one(
            "select password_hash from users where id = $1",
            &[&Uuid::parse_str(user["id"].as_str().unwrap()).unwrap()],
        )
        .await
        .unwrap();
    let hash: String = row.get(0);
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains(PASSWORD));
}

#[tokio::test]
async fn registering_may_ask_for_seller_but_never_for_admin_or_carrier() {
    let app = TestApp::start().await;

    let seller = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": unique_email(), "password": PASSWORD, "display_name": "S", "role": "seller"}),
        )
        .await;
    let admin = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": unique_email(), "password": PASSWORD, "display_name": "A", "role": "admin"}),
        )
        .await;
    let carrier = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": unique_email(), "password": PASSWORD, "display_name": "C", "role": "carrier"}),
        )
        .await;

    assert_eq!(seller.expect(201).json()["role"], "seller");
    assert!(admin.expect_problem(422)["errors"]["role"].is_array());
    assert!(carrier.expect_problem(422)["errors"]["role"].is_array());
}

#[tokio::test]
async fn registering_a_taken_email_in_another_case_and_with_spaces_is_409() {
    let app = TestApp::start().await;
    let email = unique_email();
    register(&app, &email).await;

    let r = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": format!(" {} ", email.to_uppercase()), "password": PASSWORD, "display_name": "B"}),
        )
        .await;

    r.expect_problem(409);
}

#[tokio::test]
async fn simultaneous_registrations_of_one_email_give_one_201_and_409s_never_two_accounts() {
    let app = TestApp::start().await;
    let email = unique_email();
    let body = json!({"email": email, "password": PASSWORD, "display_name": "Racer"});

    let responses = app
        .post_many(vec![("/api/auth/register".to_string(), None, body); 4])
        .await;

    let mut statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409]);
    let db = app.db(Db::User).await;
    let n: i64 = db
        .query_one(
            "select count(*) from users where email_normalized = $1",
            &[&email],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn registering_with_a_bootstrap_admin_email_in_any_case_makes_an_admin() {
    let app = TestApp::start().await;

    let user = register(&app, &format!(" {} ", ADMIN_EMAIL.to_uppercase())).await;

    assert_eq!(user["role"], "admin");
}

// ------------------------------------------------------------------ login and tokens

#[tokio::test]
async fn login_returns_an_eddsa_access_token_with_the_contract_claims_and_a_refresh_token() {
    let app = TestApp::start().await;
    let email = unique_email();
    let user = register(&app, &email).await;

    let pair = login(&app, &format!(" {} ", email.to_uppercase()), PASSWORD)
        .await
        .expect(200)
        .json();

    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    assert_eq!(pair["user"], user);
    let refresh_token = pair["refresh_token"].as_str().unwrap();
    assert_eq!(URL_SAFE_NO_PAD.decode(refresh_token).unwrap().len(), 32);
    let access = pair["access_token"].as_str().unwrap();
    let (header, claims) = jwt_parts(access);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], "k1");
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["role"], "buyer");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    let iat = claims["iat"].as_i64().unwrap();
    assert!((iat - now()).abs() < 60);
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 900);
    assert_eq!(
        Uuid::parse_str(claims["jti"].as_str().unwrap())
            .unwrap()
            .get_version_num(),
        7
    );
    // Another service verifies it locally with the published key.
    let jwks = app.get("/api/auth/jwks", None).await.expect(200).json();
    let key = &jwks["keys"][0];
    let verifier = Verifier::new(
        &format!(
            "{}:{}",
            key["kid"].as_str().unwrap(),
            key["x"].as_str().unwrap()
        ),
        ISSUER,
        AUDIENCE,
        "product",
    )
    .unwrap();
    assert!(verifier.verify_access_token(access).is_ok());
    let me = app
        .get("/api/users/me", Some(access))
        .await
        .expect(200)
        .json();
    assert_eq!(me, user);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_401_in_about_the_same_time() {
    let app = TestApp::start().await;
    let email = unique_email();
    register(&app, &email).await;

    let mut wrong = Duration::ZERO;
    let mut unknown = Duration::ZERO;
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let a = login(&app, &email, "wrong password!").await;
        wrong += t.elapsed();
        let t = Instant::now();
        let b = login(&app, &unique_email(), "wrong password!").await;
        unknown += t.elapsed();
        a.expect_problem(401);
        b.expect_problem(401);
        assert_eq!(a.header("www-authenticate"), Some("Bearer"));
        assert_eq!(b.header("www-authenticate"), Some("Bearer"));
        bodies.push((a.body.clone(), b.body.clone()));
    }

    for (a, b) in bodies {
        assert_eq!(a, b, "one message for both");
    }
    // Without the dummy verification an unknown email would answer many times faster.
    assert!(
        unknown * 3 > wrong,
        "unknown email {unknown:?} vs wrong password {wrong:?}"
    );
}

#[tokio::test]
async fn five_failed_logins_lock_the_account_with_429_and_retry_after_even_for_the_right_password()
{
    let app = TestApp::start().await;
    let email = unique_email();
    register(&app, &email).await;

    for _ in 0..5 {
        login(&app, &email, "wrong password!")
            .await
            .expect_problem(401);
    }
    let locked = login(&app, &email, PASSWORD).await;

    locked.expect_problem(429);
    let retry: u64 = locked.header("retry-after").unwrap().parse().unwrap();
    assert!((850..=900).contains(&retry), "{retry}");
}

#[tokio::test]
async fn four_failures_then_a_success_reset_the_count() {
    let app = TestApp::start().await;
    let email = unique_email();
    register(&app, &email).await;

    for _ in 0..4 {
        login(&app, &email, "wrong password!")
            .await
            .expect_problem(401);
    }
    login(&app, &email, PASSWORD).await.expect(200);
    for _ in 0..4 {
        login(&app, &email, "wrong password!")
            .await
            .expect_problem(401);
    }

    login(&app, &email, PASSWORD).await.expect(200);
}

#[tokio::test]
async fn unknown_emails_lock_like_accounts_so_429_reveals_nothing() {
    let app = TestApp::start().await;
    let email = unique_email();

    for _ in 0..5 {
        login(&app, &email, "wrong password!")
            .await
            .expect_problem(401);
    }

    login(&app, &email, "wrong password!")
        .await
        .expect_problem(429);
}

async fn concurrent_failures_are_all_counted(kv: Kv) {
    let app = TestApp::start_with(TestOptions {
        kv,
        ..Default::default()
    })
    .await;
    let email = unique_email();
    register(&app, &email).await;
    let wrong = json!({"email": email, "password": "wrong password!"});

    let responses = app
        .post_many(vec![("/api/auth/login".to_string(), None, wrong); 6])
        .await;

    for r in &responses {
        assert!(
            r.status == 401 || r.status == 429,
            "{} {:?}",
            r.status,
            r.body
        );
    }
    login(&app, &email, PASSWORD).await.expect_problem(429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_purges_refresh_tokens_expired_a_month_ago_and_their_finished_logins() {
    let app = TestApp::start().await;
    let email = unique_email();
    register(&app, &email).await;
    let first = login(&app, &email, PASSWORD).await;
    first.expect(200);
    let first_refresh = first.json()["refresh_token"].as_str().unwrap().to_string();
    // That login began two months ago and its token expired 31 days ago.
    let db = app.db(Db::User).await;
    db.batch_execute(
        "update refresh_tokens set expires_at = now() - interval '31 days';
         update refresh_families set created_at = now() - interval '61 days';",
    )
    .await
    .unwrap();

    let second = login(&app, &email, PASSWORD).await;
    second.expect(200);

    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("select count(*) from refresh_tokens").await, 1);
    assert_eq!(count("select count(*) from refresh_families").await, 1);
    // The purged token is refused like any unknown one; the new login refreshes.
    refresh(&app, &first_refresh).await.expect_problem(401);
    let fresh = second.json()["refresh_token"].as_str().unwrap().to_string();
    refresh(&app, &fresh).await.expect(200);
}

#[tokio::test]
async fn concurrent_failed_logins_are_all_counted_in_the_sqlite_store() {
    concurrent_failures_are_all_counted(Kv::Sqlite).await;
}

#[tokio::test]
async fn concurrent_failed_logins_are_all_counted_in_the_redis_store() {
    concurrent_failures_are_all_counted(Kv::Redis).await;
}

/// Finds the Redis database the app's stores use: the one whose `key` holds an entry tagged
/// `tag` (other tests' databases may hold the same bucket key, never the same tag).
async fn redis_db_with(key: &str, tag: u64) -> redis::aio::MultiplexedConnection {
    let url = std::env::var("MARKETPLACE_TEST_REDIS").unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for index in 1..=1000 {
        let _: () = redis::cmd("SELECT")
            .arg(index)
            .query_async(&mut conn)
            .await
            .unwrap();
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if value.is_some_and(|v| bucket_entry(&v, tag).is_some()) {
            return conn;
        }
    }
    panic!("no Redis database holds {key} with {tag}");
}

/// The failures `[[at, id], …]` of the entry tagged `tag` in a stored bucket value.
fn bucket_entry(value: &[u8], tag: u64) -> Option<Vec<Value>> {
    let entries: Vec<Value> = serde_json::from_slice(value).ok()?;
    entries
        .into_iter()
        .find(|e| e["t"].as_u64() == Some(tag))
        .map(|e| e["f"].as_array().cloned().unwrap_or_default())
}

/// Moves every failure stored under `key` `secs` into the past.
async fn age_failures(conn: &mut redis::aio::MultiplexedConnection, key: &str, secs: i64) {
    let value: Vec<u8> = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
    let mut entries: Vec<Value> = serde_json::from_slice(&value).unwrap();
    for e in &mut entries {
        for f in e["f"].as_array_mut().unwrap() {
            f[0] = json!(f[0].as_i64().unwrap() - secs);
        }
    }
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(serde_json::to_vec(&entries).unwrap())
        .query_async(conn)
        .await
        .unwrap();
}

/// 50 simultaneous wrong passwords for one account: at most 5 reach Argon2 (401), the rest are
/// 429, and so is the right password right after. Returns the app and the account's email.
///
/// With `warm`, one wrong password comes first, so that the throttle's keys exist: on Spin's
/// SQLite store writers racing to *create* a key can both "win" (docs/architecture.md, "What
/// remains"); once a key exists, every swap compares.
async fn fifty_simultaneous_wrong_passwords(kv: Kv, warm: bool) -> (TestApp, String) {
    let app = TestApp::start_with(TestOptions {
        kv,
        ..Default::default()
    })
    .await;
    let email = unique_email();
    register(&app, &email).await;
    let wrong = json!({"email": email, "password": "wrong password!"});
    let before = if warm {
        login(&app, &email, "wrong password!")
            .await
            .expect_problem(401);
        1
    } else {
        0
    };

    let responses = app
        .post_many(vec![
            ("/api/auth/login".to_string(), None, wrong);
            50 - before
        ])
        .await;

    let unauthorized = before + responses.iter().filter(|r| r.status == 401).count();
    assert!(
        (1..=5).contains(&unauthorized),
        "{unauthorized} wrong passwords were checked"
    );
    for r in responses.iter().filter(|r| r.status != 401) {
        retry_after_of(r);
    }
    // The right password right after is refused too, until the window passes.
    let retry = retry_after_of(&login(&app, &email, PASSWORD).await);
    assert!(retry > 800, "{retry}");
    (app, email)
}

#[tokio::test]
async fn fifty_simultaneous_wrong_passwords_get_at_most_five_401s_in_the_sqlite_store() {
    fifty_simultaneous_wrong_passwords(Kv::Sqlite, true).await;
}

#[tokio::test]
async fn fifty_simultaneous_wrong_passwords_get_at_most_five_401s_in_the_redis_store() {
    // ... and the lock lifts once the window has passed.
    let (app, email) = fifty_simultaneous_wrong_passwords(Kv::Redis, false).await;
    let (key, tag) = failures_key(&email);
    let mut conn = redis_db_with(&key, tag).await;
    age_failures(&mut conn, &key, 901).await;
    login(&app, &email, PASSWORD).await.expect(200);
}

#[tokio::test]
async fn fifty_failed_logins_from_one_address_lock_out_that_address_only() {
    let app = TestApp::start_with(TestOptions {
        kv: Kv::Redis,
        variables: vec![("trusted_proxies".into(), "10.0.0.0/8".into())],
        ..Default::default()
    })
    .await;
    let email = unique_email();
    register(&app, &email).await;
    let (proxy, client) = ("10.0.0.1:4000", "198.51.100.7");
    let emails: Vec<String> = (0..55).map(|_| unique_email()).collect();

    // One client behind the ingress tries 55 random emails at once (forging an address to the
    // left of the one the ingress appends).
    let forwarded = format!("203.0.113.1, {client}");
    let responses = futures::future::join_all(
        emails
            .iter()
            .map(|e| login_from(&app, proxy, Some(&forwarded), e, "wrong password!")),
    )
    .await;

    let unauthorized = responses.iter().filter(|r| r.status == 401).count();
    assert!(
        (40..=50).contains(&unauthorized),
        "{unauthorized} failures were let through"
    );
    for r in responses.iter().filter(|r| r.status != 401) {
        retry_after_of(r);
    }
    // That client is locked out, through the proxy or directly, even with the right password.
    let retry = retry_after_of(
        &login_from(
            &app,
            proxy,
            Some(client),
            &unique_email(),
            "wrong password!",
        )
        .await,
    );
    assert!(retry <= 300, "{retry}");
    retry_after_of(&login_from(&app, &format!("{client}:5555"), None, &email, PASSWORD).await);
    // Another client behind the same proxy is not, and neither is a peer that is no proxy
    // but claims to forward for the locked client.
    login_from(
        &app,
        proxy,
        Some("198.51.100.8"),
        &unique_email(),
        "wrong!!",
    )
    .await
    .expect_problem(401);
    login_from(
        &app,
        "203.0.113.9:1234",
        Some(client),
        &unique_email(),
        "wrong!!",
    )
    .await
    .expect_problem(401);
    login_from(&app, "203.0.113.9:1234", Some(client), &email, PASSWORD)
        .await
        .expect(200);
}

#[tokio::test]
async fn failed_logins_for_ever_new_emails_keep_the_throttle_keys_few_and_small() {
    let app = TestApp::start_with(TestOptions {
        kv: Kv::Redis,
        ..Default::default()
    })
    .await;
    // 24 random emails whose failures share one key: more than a key keeps (16).
    let first = unique_email();
    let (key, first_tag) = failures_key(&first);
    let mut emails = vec![first];
    while emails.len() < 24 {
        let e = unique_email();
        if failures_key(&e).0 == key {
            emails.push(e);
        }
    }

    for e in &emails {
        login(&app, e, "wrong password!").await.expect_problem(401);
    }

    let last_tag = failures_key(emails.last().unwrap()).1;
    let mut conn = redis_db_with(&key, last_tag).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("login-failures/*")
        .query_async(&mut conn)
        .await
        .unwrap();
    // One account key and one address key, however many emails were tried.
    assert_eq!(keys.len(), 2, "{keys:?}");
    let value: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let entries: Vec<Value> = serde_json::from_slice(&value).unwrap();
    assert_eq!(entries.len(), 16, "{entries:?}");
    assert!(value.len() <= 2450, "{} bytes", value.len());
    // The oldest subject with as few failures as the others made room.
    assert!(bucket_entry(&value, first_tag).is_none());
}

#[tokio::test]
async fn the_lock_is_kept_in_the_shared_store_and_lifts_when_the_window_passes() {
    let app = TestApp::start_with(TestOptions {
        kv: Kv::Redis,
        ..Default::default()
    })
    .await;
    let email = unique_email();
    register(&app, &email).await;
    for _ in 0..5 {
        login(&app, &email, "wrong password!")
            .await
            .expect_problem(401);
    }
    login(&app, &email, PASSWORD).await.expect_problem(429);
    let (key, tag) = failures_key(&email);
    let mut conn = redis_db_with(&key, tag).await;
    assert_eq!(
        bucket_entry(&redis_get(&mut conn, &key).await, tag).map(|f| f.len()),
        Some(5)
    );

    // Fifteen minutes and one second later, as far as the stored failures are concerned.
    age_failures(&mut conn, &key, 901).await;

    login(&app, &email, PASSWORD).await.expect(200);
    assert!(
        bucket_entry(&redis_get(&mut conn, &key).await, tag).is_none(),
        "a successful login resets the failures"
    );
}

async fn redis_get(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<u8> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test]
async fn a_hash_with_weaker_parameters_is_upgraded_on_the_next_successful_login() {
    let app = TestApp::start().await;
    let email = unique_email();
    let user = register(&app, &email).await;
    let id = Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();
    let db = app.db(Db::User).await;
    db.execute(
        "update users set password_hash = $2 where id = $1",
        &[&id, &WEAK_HASH],
    )
    .await
    .unwrap();

    login(&app, &email, PASSWORD).await.expect(200);

    let hash: String = db
        .query_one("select password_hash from users where id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    login(&app, &email, PASSWORD).await.expect(200);
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_and_a_bearer_challenge() {
    let app = TestApp::start().await;
    let (id, good, _, _) = account(&app).await;
    let mut expired = claims(id, "buyer");
    expired["iat"] = json!(now() - 3600);
    expired["exp"] = json!(now() - 1800);
    let mut wrong_aud = claims(id, "buyer");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims(id, "buyer");
    wrong_iss["iss"] = json!("evil-issuer");
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        let mut c = claims(id, "admin");
        c["sub"] = json!(id.to_string());
        parts[1] = URL_SAFE_NO_PAD.encode(c.to_string());
        parts.join(".")
    };
    let alg_none = format!(
        "{}.",
        unsigned_jwt(
            json!({"alg": "none", "typ": "JWT", "kid": "k1"}),
            &claims(id, "admin")
        )
    );
    let hs256 = {
        let signing_input = unsigned_jwt(
            json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}),
            &claims(id, "admin"),
        );
        let public = app.user_signer().public_key_b64();
        let mac = hmac_sha256(public.as_bytes(), signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac))
    };
    let stranger = {
        let s = Signer::from_config("k1:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8").unwrap();
        s.sign(&claims(id, "buyer"))
    };
    let cases = [
        ("expired", app.token_with(expired)),
        ("wrong aud", app.token_with(wrong_aud)),
        ("wrong iss", app.token_with(wrong_iss)),
        ("tampered", tampered),
        ("alg none", alg_none),
        ("HS256 with the public key", hs256),
        ("signed by another key", stranger),
        ("garbage", "not.a.jwt".to_string()),
    ];

    for (what, token) in cases {
        let r = app.get("/api/users/me", Some(&token)).await;
        r.expect_problem(401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
    }
    let r = app.get("/api/users/me", None).await;
    r.expect_problem(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    app.get("/api/users/me", Some(&good)).await.expect(200);
}

#[tokio::test]
async fn jwks_publishes_old_and_new_keys_so_a_rotation_keeps_old_tokens_valid() {
    // k1 is the old key, still published; k2 is the new one and signs from now on.
    let old = Signer::from_config("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap();
    let old_public = old.public_key_b64();
    let new_seed = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";
    let new = Signer::from_config(&format!("k2:{new_seed}")).unwrap();
    let app = TestApp::start_with(TestOptions {
        variables: vec![
            (
                "jwt_public_keys".into(),
                format!("k1:{old_public},k2:{}", new.public_key_b64()),
            ),
            ("jwt_signing_key".into(), format!("k2:{new_seed}")),
        ],
        ..Default::default()
    })
    .await;
    let email = unique_email();
    let user = register(&app, &email).await;
    let id = Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();

    let jwks = app.get("/api/auth/jwks", None).await.expect(200).json();
    let pair = login(&app, &email, PASSWORD).await.expect(200).json();

    assert_eq!(
        jwks,
        json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": old_public, "kid": "k1", "alg": "EdDSA", "use": "sig"},
            {"kty": "OKP", "crv": "Ed25519", "x": new.public_key_b64(), "kid": "k2", "alg": "EdDSA", "use": "sig"},
        ]})
    );
    let new_token = pair["access_token"].as_str().unwrap();
    assert_eq!(jwt_parts(new_token).0["kid"], "k2");
    app.get("/api/users/me", Some(new_token)).await.expect(200);
    let old_token = old.sign(&claims(id, "buyer"));
    app.get("/api/users/me", Some(&old_token)).await.expect(200);
}

// ------------------------------------------------------------------ refresh and logout

#[tokio::test]
async fn refreshing_rotates_the_pair_and_the_old_refresh_token_is_spent() {
    let app = TestApp::start().await;
    let (id, _, first, _) = account(&app).await;

    let pair = refresh(&app, &first).await.expect(200).json();

    let second = pair["refresh_token"].as_str().unwrap();
    assert_ne!(second, first);
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    assert_eq!(pair["user"]["id"], id.to_string());
    let access = pair["access_token"].as_str().unwrap();
    app.get("/api/users/me", Some(access)).await.expect(200);
    refresh(&app, second).await.expect(200);
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_is_401_and_revokes_that_login_only() {
    let app = TestApp::start().await;
    let (_, _, first, email) = account(&app).await;
    let other_login = login(&app, &email, PASSWORD).await.expect(200).json();
    let second = refresh(&app, &first).await.expect(200).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();

    let reuse = refresh(&app, &first).await;

    reuse.expect_problem(401);
    assert_eq!(reuse.header("www-authenticate"), Some("Bearer"));
    refresh(&app, &second).await.expect_problem(401);
    refresh(&app, other_login["refresh_token"].as_str().unwrap())
        .await
        .expect(200);
}

#[tokio::test]
async fn simultaneous_refreshes_of_one_token_never_both_succeed() {
    let app = TestApp::start().await;
    let (_, _, token, _) = account(&app).await;
    let body = json!({"refresh_token": token});

    let responses = app
        .post_many(vec![("/api/auth/refresh".to_string(), None, body); 3])
        .await;

    let ok = responses.iter().filter(|r| r.status == 200).count();
    assert!(ok <= 1, "{ok} rotations of one token");
    assert!(responses.iter().all(|r| r.status == 200 || r.status == 401));
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_sha256_hashes() {
    let app = TestApp::start().await;
    let (_, _, token, _) = account(&app).await;
    let db = app.db(Db::User).await;

    let rows = db
        .query("select token_hash from refresh_tokens", &[])
        .await
        .unwrap();

    let hashes: Vec<Vec<u8>> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(hashes, vec![Sha256::digest(token.as_bytes()).to_vec()]);
    let dump: i64 = db
        .query_one(
            "select count(*) from refresh_tokens t where row_to_json(t)::text like '%' || $1 || '%'",
            &[&token],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dump, 0);
}

#[tokio::test]
async fn an_expired_or_unknown_refresh_token_is_401() {
    let app = TestApp::start().await;
    let (_, _, token, _) = account(&app).await;
    let db = app.db(Db::User).await;
    db.execute(
        "update refresh_tokens set expires_at = now() - interval '1 second'",
        &[],
    )
    .await
    .unwrap();

    refresh(&app, &token).await.expect_problem(401);
    refresh(&app, &URL_SAFE_NO_PAD.encode([7u8; 32]))
        .await
        .expect_problem(401);
}

#[tokio::test]
async fn logout_is_204_ends_that_login_and_is_idempotent() {
    let app = TestApp::start().await;
    let (_, _, token, _) = account(&app).await;

    app.post("/api/auth/logout", None, json!({"refresh_token": token}))
        .await
        .expect(204);

    refresh(&app, &token).await.expect_problem(401);
    app.post("/api/auth/logout", None, json!({"refresh_token": token}))
        .await
        .expect(204);
    app.post(
        "/api/auth/logout",
        None,
        json!({"refresh_token": "never-issued"}),
    )
    .await
    .expect(204);
}

#[tokio::test]
async fn a_login_ends_at_its_absolute_lifetime_however_often_it_was_refreshed() {
    let app = TestApp::start().await;
    let (_, _, first, _) = account(&app).await;
    let second = refresh(&app, &first).await.expect(200).json();
    let second = second["refresh_token"].as_str().unwrap();
    // The login began 30 days and a minute ago (the default lifetime); its newest token was
    // issued just now and would live 30 days more on its own.
    let db = app.db(Db::User).await;
    db.batch_execute(
        "update refresh_families set created_at = now() - interval '30 days 1 minute'",
    )
    .await
    .unwrap();

    refresh(&app, second).await.expect_problem(401);
}

#[tokio::test]
async fn no_refresh_token_outlives_the_configured_session_lifetime() {
    let app = TestApp::start_with(TestOptions {
        variables: vec![("session_max_lifetime_secs".into(), "3600".into())],
        ..Default::default()
    })
    .await;
    let (_, _, first, _) = account(&app).await;
    refresh(&app, &first).await.expect(200);

    let db = app.db(Db::User).await;
    let sql = "select extract(epoch from t.expires_at - f.created_at)::float8 \
               from refresh_tokens t join refresh_families f on f.id = t.family_id";
    let rows = db.query(sql, &[]).await.unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let secs: f64 = row.get(0);
        assert!((3500.0..=3600.0).contains(&secs), "{secs}");
    }
}

// ------------------------------------------------------------------ the caller's account

#[tokio::test]
async fn a_user_reads_and_updates_their_profile_and_logs_in_with_the_new_email() {
    let app = TestApp::start().await;
    let (id, access, _, _) = account(&app).await;
    let new_email = unique_email();

    let updated = app
        .patch(
            "/api/users/me",
            Some(&access),
            json!({"display_name": "Renamed", "email": format!(" {new_email} "),
                   "current_password": PASSWORD}),
        )
        .await
        .expect(200)
        .json();

    assert_user_shape(&updated);
    assert_eq!(updated["id"], id.to_string());
    assert_eq!(updated["display_name"], "Renamed");
    assert_eq!(updated["email"], new_email);
    let me = app
        .get("/api/users/me", Some(&access))
        .await
        .expect(200)
        .json();
    assert_eq!(me, updated);
    login(&app, &new_email, PASSWORD).await.expect(200);
    let only_name = app
        .patch(
            "/api/users/me",
            Some(&access),
            json!({"display_name": "Again"}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(only_name["email"], new_email);
}

#[tokio::test]
async fn taking_another_accounts_email_is_409_and_a_bootstrap_admin_email_is_422() {
    let app = TestApp::start().await;
    let (_, access, _, _) = account(&app).await;
    let (_, _, _, other_email) = account(&app).await;

    app.patch(
        "/api/users/me",
        Some(&access),
        json!({"email": other_email.to_uppercase(), "current_password": PASSWORD}),
    )
    .await
    .expect_problem(409);
    let doc = app
        .patch(
            "/api/users/me",
            Some(&access),
            json!({"email": ADMIN_EMAIL, "current_password": PASSWORD}),
        )
        .await
        .expect_problem(422);
    assert!(doc["errors"]["email"].is_array());
}

#[tokio::test]
async fn changing_the_email_needs_the_current_password_403_when_wrong_422_when_missing() {
    let app = TestApp::start().await;
    let (_, access, _, email) = account(&app).await;
    let new_email = unique_email();

    let doc = app
        .patch("/api/users/me", Some(&access), json!({"email": new_email}))
        .await
        .expect_problem(422);
    assert!(doc["errors"]["current_password"].is_array(), "{doc}");
    let doc = app
        .patch(
            "/api/users/me",
            Some(&access),
            json!({"email": new_email, "current_password": ""}),
        )
        .await
        .expect_problem(422);
    assert!(doc["errors"]["current_password"].is_array(), "{doc}");
    app.patch(
        "/api/users/me",
        Some(&access),
        json!({"email": new_email, "display_name": "Thief", "current_password": "not my password"}),
    )
    .await
    .expect_problem(403);

    // Nothing changed, and the name alone needs no password.
    let me = app
        .get("/api/users/me", Some(&access))
        .await
        .expect(200)
        .json();
    assert_eq!(me["email"], email);
    assert_eq!(me["display_name"], "Ann Example");
    app.patch(
        "/api/users/me",
        Some(&access),
        json!({"display_name": "Ann"}),
    )
    .await
    .expect(200);
    let moved = app
        .patch(
            "/api/users/me",
            Some(&access),
            json!({"email": new_email, "current_password": PASSWORD}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(moved["email"], new_email);
}

#[tokio::test]
async fn wrong_passwords_for_an_email_change_count_as_failed_logins() {
    let app = TestApp::start().await;
    let (_, access, _, email) = account(&app).await;

    for _ in 0..5 {
        app.patch(
            "/api/users/me",
            Some(&access),
            json!({"email": unique_email(), "current_password": "not my password"}),
        )
        .await
        .expect_problem(403);
    }

    retry_after_of(
        &app.patch(
            "/api/users/me",
            Some(&access),
            json!({"email": unique_email(), "current_password": PASSWORD}),
        )
        .await,
    );
    retry_after_of(&login(&app, &email, PASSWORD).await);
}

#[tokio::test]
async fn changing_the_password_revokes_every_refresh_token_and_the_old_password() {
    let app = TestApp::start().await;
    let (_, access, first_login, email) = account(&app).await;
    let second_login = login(&app, &email, PASSWORD).await.expect(200).json();
    let new_password = "a brand new passphrase";

    app.post(
        "/api/users/me/password",
        Some(&access),
        json!({"current_password": PASSWORD, "new_password": new_password}),
    )
    .await
    .expect(204);

    refresh(&app, &first_login).await.expect_problem(401);
    refresh(&app, second_login["refresh_token"].as_str().unwrap())
        .await
        .expect_problem(401);
    login(&app, &email, PASSWORD).await.expect_problem(401);
    login(&app, &email, new_password).await.expect(200);
}

#[tokio::test]
async fn a_wrong_current_password_is_403_and_a_short_new_one_is_422() {
    let app = TestApp::start().await;
    let (_, access, _, email) = account(&app).await;

    app.post(
        "/api/users/me/password",
        Some(&access),
        json!({"current_password": "not my password", "new_password": "another passphrase"}),
    )
    .await
    .expect_problem(403);
    let doc = app
        .post(
            "/api/users/me/password",
            Some(&access),
            json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await
        .expect_problem(422);

    assert!(doc["errors"]["new_password"].is_array());
    login(&app, &email, PASSWORD).await.expect(200);
}

#[tokio::test]
async fn deleting_the_account_erases_personal_data_keeps_the_id_and_frees_the_email() {
    let app = TestApp::start().await;
    let (id, access, refresh_token, email) = account(&app).await;

    app.delete(
        "/api/users/me",
        Some(&access),
        Some(json!({"password": PASSWORD})),
    )
    .await
    .expect(204);

    login(&app, &email, PASSWORD).await.expect_problem(401);
    app.get("/api/users/me", Some(&access))
        .await
        .expect_problem(401);
    refresh(&app, &refresh_token).await.expect_problem(401);
    let db = app.db(Db::User).await;
    let row = db
        .query_one(
            "select email, email_normalized, display_name, password_hash, deleted_at is not null \
             from users where id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), None);
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert_eq!(row.get::<_, Option<String>>(2), None);
    assert_eq!(row.get::<_, Option<String>>(3), None);
    assert!(row.get::<_, bool>(4));
    let again = register(&app, &email).await;
    assert_ne!(again["id"], id.to_string());
    let admin = app.token(Uuid::now_v7(), "admin");
    app.get(&format!("/api/users/{id}"), Some(&admin))
        .await
        .expect_problem(404);
}

#[tokio::test]
async fn deleting_with_a_wrong_password_is_403_and_changes_nothing() {
    let app = TestApp::start().await;
    let (_, access, _, email) = account(&app).await;

    app.delete(
        "/api/users/me",
        Some(&access),
        Some(json!({"password": "not my password"})),
    )
    .await
    .expect_problem(403);

    app.get("/api/users/me", Some(&access)).await.expect(200);
    login(&app, &email, PASSWORD).await.expect(200);
}

#[tokio::test]
async fn wrong_confirmation_passwords_count_as_failed_logins() {
    let app = TestApp::start().await;
    let (_, access, _, email) = account(&app).await;

    for _ in 0..5 {
        app.post(
            "/api/users/me/password",
            Some(&access),
            json!({"current_password": "not my password", "new_password": "another passphrase"}),
        )
        .await
        .expect_problem(403);
    }

    app.delete(
        "/api/users/me",
        Some(&access),
        Some(json!({"password": PASSWORD})),
    )
    .await
    .expect_problem(429);
    login(&app, &email, PASSWORD).await.expect_problem(429);
}

// ------------------------------------------------------------------ admin

#[tokio::test]
async fn an_admin_reads_any_user_and_sets_roles_which_the_next_token_carries() {
    let app = TestApp::start().await;
    let (_, admin) = app.register_user("admin").await;
    let (id, _, refresh_token, email) = account(&app).await;

    let user = app
        .get(&format!("/api/users/{id}"), Some(&admin))
        .await
        .expect(200)
        .json();
    let updated = app
        .put(
            &format!("/api/users/{id}/role"),
            Some(&admin),
            json!({"role": "carrier"}),
        )
        .await
        .expect(200)
        .json();

    assert_user_shape(&user);
    assert_eq!(user["email"], email);
    assert_eq!(updated["role"], "carrier");
    let pair = refresh(&app, &refresh_token).await.expect(200).json();
    assert_eq!(
        jwt_parts(pair["access_token"].as_str().unwrap()).1["role"],
        "carrier"
    );
    for role in ["buyer", "seller", "admin"] {
        let r = app
            .put(
                &format!("/api/users/{id}/role"),
                Some(&admin),
                json!({"role": role}),
            )
            .await
            .expect(200)
            .json();
        assert_eq!(r["role"], role);
    }
}

#[tokio::test]
async fn admin_endpoints_refuse_others_with_403_unknown_ids_with_404_and_bad_roles_with_422() {
    let app = TestApp::start().await;
    let (id, buyer, _, _) = account(&app).await;
    let admin = app.token(Uuid::now_v7(), "admin");
    let seller = app.token(Uuid::now_v7(), "seller");
    let role = json!({"role": "admin"});

    app.get(&format!("/api/users/{id}"), Some(&buyer))
        .await
        .expect_problem(403);
    app.get(&format!("/api/users/{id}"), Some(&seller))
        .await
        .expect_problem(403);
    app.put(&format!("/api/users/{id}/role"), Some(&buyer), role.clone())
        .await
        .expect_problem(403);
    app.get(&format!("/api/users/{id}"), None)
        .await
        .expect_problem(401);
    app.get(&format!("/api/users/{}", Uuid::now_v7()), Some(&admin))
        .await
        .expect_problem(404);
    app.get("/api/users/not-a-uuid", Some(&admin))
        .await
        .expect_problem(404);
    app.put(
        &format!("/api/users/{}/role", Uuid::now_v7()),
        Some(&admin),
        role,
    )
    .await
    .expect_problem(404);
    for bad in ["service", "root", ""] {
        let doc = app
            .put(
                &format!("/api/users/{id}/role"),
                Some(&admin),
                json!({"role": bad}),
            )
            .await
            .expect_problem(422);
        assert!(doc["errors"]["role"].is_array());
    }
}

#[tokio::test]
async fn logging_in_with_a_bootstrap_admin_email_makes_and_keeps_the_account_admin() {
    let app = TestApp::start().await;
    let user = register(&app, ADMIN_EMAIL).await;
    let id = Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();
    let db = app.db(Db::User).await;
    db.execute("update users set role = 'buyer' where id = $1", &[&id])
        .await
        .unwrap();

    let pair = login(&app, ADMIN_EMAIL, PASSWORD).await.expect(200).json();

    assert_eq!(pair["user"]["role"], "admin");
    assert_eq!(
        jwt_parts(pair["access_token"].as_str().unwrap()).1["role"],
        "admin"
    );
}

/// An account made admin in the database, and an access token of it: the operator.
async fn operator(app: &TestApp) -> String {
    let (id, _, _, _) = account(app).await;
    let db = app.db(Db::User).await;
    db.execute("update users set role = 'admin' where id = $1", &[&id])
        .await
        .unwrap();
    app.token(id, "admin")
}

#[tokio::test]
async fn a_deleted_bootstrap_admins_address_stays_reserved_for_it() {
    let app = TestApp::start().await;
    register(&app, ADMIN_EMAIL).await;
    let pair = login(&app, ADMIN_EMAIL, PASSWORD).await.expect(200).json();
    let access = pair["access_token"].as_str().unwrap();
    app.delete(
        "/api/users/me",
        Some(access),
        Some(json!({"password": PASSWORD})),
    )
    .await
    .expect(204);

    let body =
        json!({"email": ADMIN_EMAIL.to_uppercase(), "password": PASSWORD, "display_name": "Eve"});
    app.post("/api/auth/register", None, body)
        .await
        .expect_problem(409);
    login(&app, ADMIN_EMAIL, PASSWORD).await.expect_problem(401);
}

#[tokio::test]
async fn a_bootstrap_admin_cannot_move_off_its_address_and_no_admin_moves_onto_a_listed_one() {
    let second = "second-admin@marketplace.test";
    let app = TestApp::start_with(TestOptions {
        variables: vec![("admin_emails".into(), format!("{ADMIN_EMAIL},{second}"))],
        ..Default::default()
    })
    .await;
    register(&app, ADMIN_EMAIL).await;
    let pair = login(&app, ADMIN_EMAIL, PASSWORD).await.expect(200).json();
    let access = pair["access_token"].as_str().unwrap();

    let moving_off = json!({"email": unique_email(), "current_password": PASSWORD});
    app.patch("/api/users/me", Some(access), moving_off)
        .await
        .expect_problem(409);
    let me = app
        .get("/api/users/me", Some(access))
        .await
        .expect(200)
        .json();
    assert_eq!(me["email"], ADMIN_EMAIL);
    // A change of case only is the same address.
    let same = json!({"email": ADMIN_EMAIL.to_uppercase(), "current_password": PASSWORD});
    app.patch("/api/users/me", Some(access), same)
        .await
        .expect(200);
    // Another admin may not take the listed, still unreserved, address either.
    let other = operator(&app).await;
    let onto = json!({"email": second, "current_password": PASSWORD});
    let doc = app
        .patch("/api/users/me", Some(&other), onto)
        .await
        .expect_problem(422);
    assert!(doc["errors"]["email"].is_array());
}

#[tokio::test]
async fn an_operator_demotes_a_bootstrap_admin_and_the_next_login_does_not_promote_it_again() {
    let app = TestApp::start().await;
    let user = register(&app, ADMIN_EMAIL).await;
    assert_eq!(user["role"], "admin");
    let id = user["id"].as_str().unwrap();
    let operator = operator(&app).await;

    let demoted = app
        .put(
            &format!("/api/users/{id}/role"),
            Some(&operator),
            json!({"role": "buyer"}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(demoted["role"], "buyer");

    let pair = login(&app, ADMIN_EMAIL, PASSWORD).await.expect(200).json();
    assert_eq!(pair["user"]["role"], "buyer");
    assert_eq!(
        jwt_parts(pair["access_token"].as_str().unwrap()).1["role"],
        "buyer"
    );
}

#[tokio::test]
async fn a_listed_address_without_a_reservation_is_claimed_by_its_account_at_login() {
    let app = TestApp::start().await;
    let user = register(&app, ADMIN_EMAIL).await;
    let id = Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();
    // As for an account that had the address before reservations existed.
    let db = app.db(Db::User).await;
    db.batch_execute("delete from reserved_admin_emails; update users set role = 'seller'")
        .await
        .unwrap();

    let pair = login(&app, ADMIN_EMAIL, PASSWORD).await.expect(200).json();

    assert_eq!(pair["user"]["role"], "admin");
    let sql = "select user_id from reserved_admin_emails where email_normalized = $1";
    let row = db.query_one(sql, &[&ADMIN_EMAIL]).await.unwrap();
    assert_eq!(row.get::<_, Uuid>(0), id);
}

// ------------------------------------------------------------------ bad input

/// Every endpoint with a body, with a valid body and what it needs to get past authentication.
async fn body_endpoints(app: &TestApp) -> Vec<(&'static str, String, Option<String>, Value)> {
    let (id, access, _, _) = account(app).await;
    let admin = app.token(Uuid::now_v7(), "admin");
    vec![
        (
            "POST",
            "/api/auth/register".into(),
            None,
            json!({"email": unique_email(), "password": PASSWORD, "display_name": "X"}),
        ),
        (
            "POST",
            "/api/auth/login".into(),
            None,
            json!({"email": unique_email(), "password": PASSWORD}),
        ),
        (
            "POST",
            "/api/auth/refresh".into(),
            None,
            json!({"refresh_token": "x"}),
        ),
        (
            "POST",
            "/api/auth/logout".into(),
            None,
            json!({"refresh_token": "x"}),
        ),
        (
            "PATCH",
            "/api/users/me".into(),
            Some(access.clone()),
            json!({"display_name": "Y"}),
        ),
        (
            "POST",
            "/api/users/me/password".into(),
            Some(access.clone()),
            json!({"current_password": PASSWORD, "new_password": "another passphrase"}),
        ),
        (
            "DELETE",
            "/api/users/me".into(),
            Some(access),
            json!({"password": PASSWORD}),
        ),
        (
            "PUT",
            format!("/api/users/{id}/role"),
            Some(admin),
            json!({"role": "seller"}),
        ),
    ]
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> marketplace_tests::TestResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(a) = auth.as_deref() {
        headers.push(("authorization", a));
    }
    if let Some(ct) = content_type {
        headers.push(("content-type", ct));
    }
    app.request(method, path, &headers, body).await
}

/// What the user database holds, to prove a refused request wrote nothing.
async fn snapshot(app: &TestApp) -> Vec<String> {
    let db = app.db(Db::User).await;
    let mut out = Vec::new();
    for table in ["users", "refresh_families", "refresh_tokens"] {
        let rows = db
            .query(
                &format!("select row_to_json(t)::text from {table} t order by 1"),
                &[],
            )
            .await
            .unwrap();
        out.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    out
}

#[tokio::test]
async fn every_body_endpoint_answers_each_class_of_bad_input_with_its_problem_and_writes_nothing() {
    let app = TestApp::start().await;
    let endpoints = body_endpoints(&app).await;
    let before = snapshot(&app).await;
    let json_ct = Some("application/json");

    for (method, path, token, valid) in &endpoints {
        let token = token.as_deref();
        let what = format!("{method} {path}");
        // Malformed JSON → 400.
        send(&app, method, path, token, json_ct, b"{\"email\": ".to_vec())
            .await
            .expect_problem(400);
        // Wrong or missing content type → 415.
        let bytes = serde_json::to_vec(valid).unwrap();
        send(&app, method, path, token, Some("text/plain"), bytes.clone())
            .await
            .expect_problem(415);
        send(&app, method, path, token, None, bytes)
            .await
            .expect_problem(415);
        // Oversized → 413.
        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(1024 * 1024 + 1));
        send(&app, method, path, token, json_ct, big.into_bytes())
            .await
            .expect_problem(413);
        // Not an object → 422.
        send(&app, method, path, token, json_ct, b"[]".to_vec())
            .await
            .expect_problem(422);
        // Unknown field → 422 naming it.
        let mut unknown = valid.clone();
        unknown["surprise"] = json!(1);
        let doc = send(
            &app,
            method,
            path,
            token,
            json_ct,
            serde_json::to_vec(&unknown).unwrap(),
        )
        .await
        .expect_problem(422);
        assert!(doc["errors"]["surprise"].is_array(), "{what}: {doc}");
        // Every required field missing → 422 naming it.
        for field in valid.as_object().unwrap().keys() {
            if path == "/api/users/me" && *method == "PATCH" {
                continue; // every field is optional there
            }
            let mut missing = valid.clone();
            missing.as_object_mut().unwrap().remove(field);
            let doc = send(
                &app,
                method,
                path,
                token,
                json_ct,
                serde_json::to_vec(&missing).unwrap(),
            )
            .await
            .expect_problem(422);
            assert!(doc["errors"][field].is_array(), "{what} {field}: {doc}");
        }
        // Wrong type and over-long string, field by field → 422 naming it.
        for field in valid.as_object().unwrap().keys() {
            let mut wrong_type = valid.clone();
            wrong_type[field] = json!(12);
            let doc = send(
                &app,
                method,
                path,
                token,
                json_ct,
                serde_json::to_vec(&wrong_type).unwrap(),
            )
            .await
            .expect_problem(422);
            assert!(doc["errors"][field].is_array(), "{what} {field}: {doc}");
            let mut long = valid.clone();
            long[field] = json!("x".repeat(300));
            let doc = send(
                &app,
                method,
                path,
                token,
                json_ct,
                serde_json::to_vec(&long).unwrap(),
            )
            .await
            .expect_problem(422);
            assert!(doc["errors"][field].is_array(), "{what} {field}: {doc}");
        }
        // Invalid email where there is one → 422.
        if valid.get("email").is_some() {
            let mut bad = valid.clone();
            bad["email"] = json!("not an email");
            let doc = send(
                &app,
                method,
                path,
                token,
                json_ct,
                serde_json::to_vec(&bad).unwrap(),
            )
            .await
            .expect_problem(422);
            assert!(doc["errors"]["email"].is_array(), "{what}: {doc}");
        }
    }

    assert_eq!(snapshot(&app).await, before, "a refused request wrote");
}

#[tokio::test]
async fn registration_names_every_bad_field_at_once() {
    let app = TestApp::start().await;

    let doc = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": "nope", "password": "short", "display_name": "  ", "role": "root"}),
        )
        .await
        .expect_problem(422);

    for field in ["email", "password", "display_name", "role"] {
        assert!(doc["errors"][field].is_array(), "{field}: {doc}");
    }
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow_unknown_paths_404_and_query_strings_400() {
    let app = TestApp::start().await;
    let id = Uuid::now_v7();
    let cases = [
        ("GET", "/api/auth/register".to_string(), "POST"),
        ("GET", "/api/auth/login".to_string(), "POST"),
        ("PUT", "/api/auth/refresh".to_string(), "POST"),
        ("GET", "/api/auth/logout".to_string(), "POST"),
        ("POST", "/api/auth/jwks".to_string(), "GET"),
        ("POST", "/api/users/me".to_string(), "GET, PATCH, DELETE"),
        ("GET", "/api/users/me/password".to_string(), "POST"),
        ("DELETE", format!("/api/users/{id}"), "GET"),
        ("GET", format!("/api/users/{id}/role"), "PUT"),
        ("POST", "/api/users/healthz".to_string(), "GET"),
    ];

    for (method, path, allow) in cases {
        let r = app.request(method, &path, &[], Vec::new()).await;
        r.expect_problem(405);
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
    app.get("/api/users/me/nothing", None)
        .await
        .expect_problem(404);
    app.get("/api/auth/nothing", None).await.expect_problem(404);
    // Paths match exactly: a trailing slash is another path.
    app.get("/api/users/me/", None).await.expect_problem(404);
    app.post("/api/auth/login/", None, json!({}))
        .await
        .expect_problem(404);
    app.get("/api/auth/jwks?x=1", None)
        .await
        .expect_problem(400);
}

// ------------------------------------------------------------------ operations

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    let app = TestApp::start().await;

    app.get("/api/users/healthz", None).await.expect(200);
    app.get("/api/users/readyz", None).await.expect(200);
}

#[tokio::test]
async fn readyz_and_requests_needing_the_database_answer_503_naming_it_when_it_is_down() {
    let app = TestApp::start_with(TestOptions {
        variables: vec![(
            "user_db_url".into(),
            "postgres://postgres@127.0.0.1:1/nothing?sslmode=disable".into(),
        )],
        ..Default::default()
    })
    .await;

    let ready = app.get("/api/users/readyz", None).await;
    let register = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": unique_email(), "password": PASSWORD, "display_name": "X"}),
        )
        .await;

    assert!(
        ready.expect_problem(503)["detail"]
            .as_str()
            .unwrap()
            .contains("database")
    );
    register.expect_problem(503);
    app.get("/api/users/healthz", None).await.expect(200);
}

/// A request that gets a documented answer from each operation (status checked by the caller).
async fn sample_requests(app: &TestApp) -> Vec<(String, String, marketplace_tests::TestResponse)> {
    let (id, access, refresh_token, email) = account(app).await;
    let admin = app.token(Uuid::now_v7(), "admin");
    let mut out = Vec::new();
    let mut push = |m: &str, p: &str, r| out.push((m.to_string(), p.to_string(), r));
    push(
        "post",
        "/api/auth/register",
        app.post(
            "/api/auth/register",
            None,
            json!({"email": unique_email(), "password": PASSWORD, "display_name": "Doc"}),
        )
        .await,
    );
    push(
        "post",
        "/api/auth/login",
        login(app, &email, PASSWORD).await,
    );
    push(
        "post",
        "/api/auth/refresh",
        refresh(app, &refresh_token).await,
    );
    push(
        "post",
        "/api/auth/logout",
        app.post(
            "/api/auth/logout",
            None,
            json!({"refresh_token": refresh_token}),
        )
        .await,
    );
    push(
        "get",
        "/api/auth/jwks",
        app.get("/api/auth/jwks", None).await,
    );
    push(
        "get",
        "/api/users/healthz",
        app.get("/api/users/healthz", None).await,
    );
    push(
        "get",
        "/api/users/readyz",
        app.get("/api/users/readyz", None).await,
    );
    push(
        "get",
        "/api/users/openapi.json",
        app.get("/api/users/openapi.json", None).await,
    );
    push(
        "get",
        "/api/users/me",
        app.get("/api/users/me", Some(&access)).await,
    );
    push(
        "patch",
        "/api/users/me",
        app.patch("/api/users/me", Some(&access), json!({"display_name": "D"}))
            .await,
    );
    push(
        "get",
        "/api/users/{id}",
        app.get(&format!("/api/users/{id}"), Some(&admin)).await,
    );
    push(
        "put",
        "/api/users/{id}/role",
        app.put(
            &format!("/api/users/{id}/role"),
            Some(&admin),
            json!({"role": "seller"}),
        )
        .await,
    );
    push(
        "post",
        "/api/users/me/password",
        app.post(
            "/api/users/me/password",
            Some(&access),
            json!({"current_password": PASSWORD, "new_password": "another passphrase"}),
        )
        .await,
    );
    push(
        "delete",
        "/api/users/me",
        app.delete(
            "/api/users/me",
            Some(&access),
            Some(json!({"password": "another passphrase"})),
        )
        .await,
    );
    // A few error answers, which must be documented too.
    push("get", "/api/users/me", app.get("/api/users/me", None).await);
    push(
        "get",
        "/api/users/{id}",
        app.get(&format!("/api/users/{}", Uuid::now_v7()), Some(&admin))
            .await,
    );
    push(
        "post",
        "/api/auth/login",
        login(app, &unique_email(), PASSWORD).await,
    );
    out
}

/// Resolves a `$ref` within the document.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap(),
        None => v,
    }
}

#[tokio::test]
async fn the_served_openapi_document_matches_what_the_component_does() {
    let app = TestApp::start().await;
    let served = app
        .get("/api/users/openapi.json", None)
        .await
        .expect(200)
        .json();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(
            marketplace_tests::repo_root().join("components/user/openapi.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(served, file);
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = served["paths"].as_object().unwrap();

    // Every row of the contract is documented.
    for (method, path) in [
        ("post", "/api/auth/register"),
        ("post", "/api/auth/login"),
        ("post", "/api/auth/refresh"),
        ("post", "/api/auth/logout"),
        ("get", "/api/auth/jwks"),
        ("get", "/api/users/me"),
        ("patch", "/api/users/me"),
        ("post", "/api/users/me/password"),
        ("delete", "/api/users/me"),
        ("get", "/api/users/{id}"),
        ("put", "/api/users/{id}/role"),
        ("get", "/api/users/healthz"),
        ("get", "/api/users/readyz"),
        ("get", "/api/users/openapi.json"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path}");
    }

    // The methods each path documents are exactly those the component allows.
    let id = Uuid::now_v7().to_string();
    for (path, ops) in paths {
        let mut documented: Vec<String> = ops
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        documented.sort();
        let concrete = path.replace("{id}", &id);
        let r = app.request("OPTIONS", &concrete, &[], Vec::new()).await;
        r.expect_problem(405);
        let mut allowed: Vec<String> = r
            .header("allow")
            .unwrap()
            .split(", ")
            .map(String::from)
            .collect();
        allowed.sort();
        assert_eq!(allowed, documented, "{path}");
    }

    // Each answer is documented for its operation, with the documented body shape.
    for (method, path, r) in sample_requests(&app).await {
        let op = &paths[&path][&method];
        let status = r.status.to_string();
        let documented = op["responses"].get(&status);
        assert!(
            documented.is_some(),
            "{method} {path} answered undocumented {status}"
        );
        let documented = deref(&served, documented.unwrap());
        match documented.get("content") {
            None => assert!(r.body.is_empty(), "{method} {path} {status} has a body"),
            Some(content) => {
                let (media, spec) = content.as_object().unwrap().iter().next().unwrap();
                assert_eq!(
                    r.header("content-type"),
                    Some(media.as_str()),
                    "{method} {path}"
                );
                let schema = deref(&served, &spec["schema"]);
                let body = r.json();
                for required in schema["required"].as_array().into_iter().flatten() {
                    let field = required.as_str().unwrap();
                    assert!(
                        body.get(field).is_some(),
                        "{method} {path} {status}: no {field}"
                    );
                }
                if schema["additionalProperties"] == json!(false) {
                    for key in body.as_object().unwrap().keys() {
                        assert!(
                            schema["properties"].get(key).is_some(),
                            "{method} {path} {status}: undocumented field {key}"
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_registration_names_every_missing_field_in_one_answer() {
    let app = TestApp::start().await;
    let r = app.post("/api/auth/register", None, json!({})).await;
    let doc = r.expect_problem(422);
    for field in ["email", "password", "display_name"] {
        assert!(doc["errors"][field].is_array(), "{field} not named: {doc}");
    }
    let r = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": 7, "display_name": "x", "colour": "red"}),
        )
        .await;
    let doc = r.expect_problem(422);
    for field in ["email", "password", "colour"] {
        assert!(doc["errors"][field].is_array(), "{field} not named: {doc}");
    }
}
