//! The harness of the black-box tests: each [`TestApp`] is the real built components served by
//! the wasmtime test host (in-process, no network) over databases and key-value stores of its
//! own, created for it and removed when it is dropped.
//!
//! Needs `MARKETPLACE_TEST_PG` (an admin connection string of a PostgreSQL server the tests may
//! create databases on) and `MARKETPLACE_TEST_REDIS` (a Redis URL); `make test` starts both.
//! The components must be built first (`make build`).
//!
//! ```no_run
//! # async fn t() {
//! use marketplace_tests::{TestApp, Db};
//! let app = TestApp::start().await;
//! let r = app.get("/api/products/healthz", None).await;
//! assert_eq!(r.status, 200);
//! # }
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use marketplace_shared::tokens::Signer;
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use spin_test_host::{App, HostOptions};
use tokio::sync::OnceCell;
use uuid::Uuid;

pub use spin_test_host::{InterceptAction, OutboundInterceptor as Interceptor};

/// Issuer and audience the app is started with (the spin.toml defaults).
pub const ISSUER: &str = "marketplace-user-service";
pub const AUDIENCE: &str = "marketplace";
/// The email that `admin_emails` names in every test app.
pub const ADMIN_EMAIL: &str = "admin@marketplace.test";
/// A password that passes the contract's rules.
pub const PASSWORD: &str = "correct horse battery staple";

/// Number of physical order databases every test app gets.
pub const ORDER_SHARDS: usize = 2;

/// Which key-value backend the app's labels use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kv {
    /// Spin's default: SQLite files (here in a temporary directory of the test app).
    #[default]
    Sqlite,
    /// A real Redis server (`MARKETPLACE_TEST_REDIS`), one database index per test app.
    Redis,
}

/// The databases of a test app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    User,
    Product,
    Order(usize),
}

/// How to start a test app.
#[derive(Clone, Default)]
pub struct TestOptions {
    pub kv: Kv,
    /// Spin variables to override (by `[variables]` name).
    pub variables: Vec<(String, String)>,
    /// Fault injection on the components' outbound HTTP calls.
    pub interceptor: Option<Interceptor>,
    /// Append the components' stdout/stderr to this file (default: `MARKETPLACE_TEST_LOG`,
    /// else the host's stderr).
    pub log_file: Option<PathBuf>,
    /// Number of physical order databases (default [`ORDER_SHARDS`]); the shard map stays
    /// the default, even contiguous ranges. Each is a cheap clone of the migrated template.
    pub order_shards: Option<usize>,
}

/// One response, body collected.
#[derive(Debug, Clone)]
pub struct TestResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, showing the body when it differs; returns self for chaining.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    /// Asserts a problem document with this status (RFC 9457 shape and content type).
    #[track_caller]
    pub fn expect_problem(&self, status: u16) -> Value {
        self.expect(status);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "problem content type"
        );
        let doc = self.json();
        assert_eq!(doc["status"], status, "problem status field: {doc}");
        assert!(
            doc["type"].is_string() && doc["title"].is_string(),
            "problem shape: {doc}"
        );
        doc
    }
}

/// A running marketplace over fresh stores.
pub struct TestApp {
    pub app: App,
    databases: HashMap<String, String>,
    db_names: Vec<String>,
    variables: HashMap<String, String>,
    user_signer: Signer,
    service_signers: HashMap<String, Signer>,
    kv_dir: PathBuf,
    redis_db: Option<(String, i64)>,
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with `make test`, which starts PostgreSQL and Redis"
        )
    })
}

/// Repository root (the directory of spin.toml).
pub fn repo_root() -> PathBuf {
    // At run time first: cargo sets it for the checkout being tested, while the compile-time
    // value may name another clone sharing the build cache (a reused test binary).
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../..")
    .canonicalize()
    .expect("repository root")
}

/// `url` with another database name (keeps the rest, adds `sslmode=disable` if absent).
fn with_database(admin_url: &str, db: &str) -> String {
    let (base, query) = admin_url.split_once('?').unwrap_or((admin_url, ""));
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if !params.iter().any(|p| p.starts_with("sslmode=")) {
        params.push("sslmode=disable");
    }
    format!("{base}/{db}?{}", params.join("&"))
}

async fn admin_client() -> tokio_postgres::Client {
    connect(&required_env("MARKETPLACE_TEST_PG")).await
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to PostgreSQL: {e}"));
    tokio::spawn(conn);
    client
}

/// A migrated template database per service and migration set, reused across runs: cloning a
/// template is much faster than migrating a fresh database for every test.
async fn template_for(service: &str) -> String {
    static TEMPLATES: OnceCell<HashMap<String, String>> = OnceCell::const_new();
    let templates = TEMPLATES
        .get_or_init(|| async {
            let admin_url = required_env("MARKETPLACE_TEST_PG");
            let admin = admin_client().await;
            let mut map = HashMap::new();
            for svc in ["user", "product", "order"] {
                let migrations =
                    marketplace_migrate::load(&marketplace_migrate::service_dir(&repo_root(), svc))
                        .unwrap_or_default();
                let mut h = Sha256::new();
                for m in &migrations {
                    h.update(m.name.as_bytes());
                    h.update(m.sql.as_bytes());
                }
                let digest = format!("{:x}", h.finalize());
                let name = format!("tpl_{svc}_{}", &digest[..16]);
                // Serialise template creation across concurrent test processes.
                admin
                    .execute("select pg_advisory_lock(4242)", &[])
                    .await
                    .unwrap();
                let exists = admin
                    .query_opt("select 1 from pg_database where datname = $1", &[&name])
                    .await
                    .unwrap()
                    .is_some();
                if !exists {
                    let building = format!("{name}_building");
                    admin
                        .batch_execute(&format!("drop database if exists {building}"))
                        .await
                        .unwrap();
                    admin
                        .batch_execute(&format!("create database {building}"))
                        .await
                        .unwrap();
                    marketplace_migrate::apply(&with_database(&admin_url, &building), &migrations)
                        .await
                        .unwrap_or_else(|e| panic!("migrating {svc}: {e:#}"));
                    admin
                        .batch_execute(&format!("alter database {building} rename to {name}"))
                        .await
                        .unwrap();
                }
                admin
                    .execute("select pg_advisory_unlock(4242)", &[])
                    .await
                    .unwrap();
                map.insert(svc.to_string(), name);
            }
            map
        })
        .await;
    templates[service].clone()
}

fn random_seed() -> String {
    let mut seed = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut seed);
    URL_SAFE_NO_PAD.encode(seed)
}

fn unique_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let rand = &Uuid::new_v4().simple().to_string()[..8];
    format!("t{}_{n}_{rand}", std::process::id())
}

/// Every key-value label the manifest's components list (`default` is always there), so
/// that a label added to `spin.toml` gets a fresh store in every test without a list to keep.
fn kv_labels() -> Vec<String> {
    let manifest = spin_test_host::Manifest::load(&repo_root().join("spin.toml"))
        .unwrap_or_else(|e| panic!("reading spin.toml: {e:#}"));
    let mut labels: Vec<String> = manifest
        .components
        .values()
        .flat_map(|c| c.key_value_stores.iter().cloned())
        .filter(|l| l != "default")
        .collect();
    labels.sort();
    labels.dedup();
    labels
}

impl TestApp {
    /// Starts the app with SQLite key-value stores and no overrides.
    pub async fn start() -> TestApp {
        Self::start_with(TestOptions::default()).await
    }

    pub async fn start_with(opts: TestOptions) -> TestApp {
        let admin_url = required_env("MARKETPLACE_TEST_PG");
        let prefix = unique_prefix();
        let admin = admin_client().await;

        // Databases, cloned from the migrated templates.
        let mut databases = HashMap::new();
        let mut db_names = Vec::new();
        let mut plan = vec![
            ("user".to_string(), "user"),
            ("product".to_string(), "product"),
        ];
        let order_shards = opts.order_shards.unwrap_or(ORDER_SHARDS);
        for i in 0..order_shards {
            plan.push((format!("order{i}"), "order"));
        }
        for (key, service) in plan {
            let template = template_for(service).await;
            let name = format!("{prefix}_{key}");
            // A template may not be copied while another session is connected to it.
            let mut attempts = 0;
            loop {
                match admin
                    .batch_execute(&format!("create database {name} template {template}"))
                    .await
                {
                    Ok(()) => break,
                    Err(e) if attempts < 50 => {
                        attempts += 1;
                        let _ = e;
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("creating database {name}: {e}"),
                }
            }
            databases.insert(key, with_database(&admin_url, &name));
            db_names.push(name);
        }

        // Keys.
        let user_seed = random_seed();
        let user_signer = Signer::from_config(&format!("k1:{user_seed}")).unwrap();
        let mut service_signers = HashMap::new();
        let mut service_seeds = HashMap::new();
        // `relay` is the outbox relay's own identity (its CronJobs): trusted, signing nothing
        // inside the app; tests use it to trigger relay runs.
        for svc in ["order", "delivery", "relay"] {
            let seed = random_seed();
            service_signers.insert(
                svc.to_string(),
                Signer::from_config(&format!("s1:{seed}")).unwrap(),
            );
            service_seeds.insert(svc, seed);
        }

        // Key-value stores.
        let kv_dir = std::env::temp_dir().join(format!("marketplace-{prefix}"));
        std::fs::create_dir_all(&kv_dir).unwrap();
        let mut runtime_config = String::new();
        let redis_db = match opts.kv {
            Kv::Sqlite => {
                for label in kv_labels() {
                    let path = kv_dir.join(format!("{label}.db"));
                    runtime_config.push_str(&format!(
                        "[key_value_store.{label}]\ntype = \"spin\"\npath = \"{}\"\n\n",
                        path.display()
                    ));
                }
                None
            }
            Kv::Redis => {
                let url = required_env("MARKETPLACE_TEST_REDIS");
                let index = redis_database_index(&url).await;
                let db_url = format!("{}/{index}", url.trim_end_matches('/'));
                for label in kv_labels() {
                    runtime_config.push_str(&format!(
                        "[key_value_store.{label}]\ntype = \"redis\"\nurl = \"{db_url}\"\n\n"
                    ));
                }
                Some((url, index))
            }
        };
        let runtime_config_path = kv_dir.join("runtime-config.toml");
        std::fs::write(&runtime_config_path, runtime_config).unwrap();

        let order_urls: Vec<String> = (0..order_shards)
            .map(|i| databases[&format!("order{i}")].clone())
            .collect();
        let mut variables: HashMap<String, String> = [
            (
                "jwt_public_keys",
                format!("k1:{}", user_signer.public_key_b64()),
            ),
            ("jwt_signing_key", format!("k1:{user_seed}")),
            ("admin_emails", ADMIN_EMAIL.to_string()),
            (
                "service_public_keys",
                format!(
                    "order:s1:{},delivery:s1:{},relay:s1:{}",
                    service_signers["order"].public_key_b64(),
                    service_signers["delivery"].public_key_b64(),
                    service_signers["relay"].public_key_b64()
                ),
            ),
            (
                "order_service_signing_key",
                format!("s1:{}", service_seeds["order"]),
            ),
            (
                "delivery_service_signing_key",
                format!("s1:{}", service_seeds["delivery"]),
            ),
            ("user_db_url", databases["user"].clone()),
            ("product_db_url", databases["product"].clone()),
            ("order_db_urls", order_urls.join(",")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in opts.variables {
            variables.insert(k, v);
        }

        let host_opts = HostOptions {
            runtime_config: Some(runtime_config_path),
            variables: variables.clone(),
            read_env: false,
            outbound_interceptor: opts.interceptor,
            log_file: opts
                .log_file
                .or_else(|| std::env::var_os("MARKETPLACE_TEST_LOG").map(PathBuf::from)),
        };
        let app = App::load(repo_root().join("spin.toml"), host_opts)
            .await
            .unwrap_or_else(|e| panic!("loading spin.toml (did you run `make build`?): {e:#}"));
        TestApp {
            app,
            databases,
            db_names,
            variables,
            user_signer,
            service_signers,
            kv_dir,
            redis_db,
        }
    }

    /// The Spin variables the app was started with.
    pub fn variables(&self) -> &HashMap<String, String> {
        &self.variables
    }

    /// The connection string of one of the app's databases.
    pub fn database_url(&self, db: Db) -> String {
        match db {
            Db::User => self.databases["user"].clone(),
            Db::Product => self.databases["product"].clone(),
            Db::Order(i) => self.databases[&format!("order{i}")].clone(),
        }
    }

    /// A direct client of one of the app's databases, for arranging and asserting.
    pub async fn db(&self, db: Db) -> tokio_postgres::Client {
        connect(&self.database_url(db)).await
    }

    /// Sends a raw request.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> TestResponse {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:3000{path}"))
            .header("host", "127.0.0.1:3000");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder.body(Bytes::from(body)).expect("request");
        let resp = self
            .app
            .handle(req)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: host error: {e:#}"));
        let (parts, body) = resp.into_parts();
        TestResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    async fn json_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = auth.as_deref() {
            headers.push(("authorization", a));
        }
        let bytes = match &body {
            Some(v) => {
                headers.push(("content-type", "application/json"));
                serde_json::to_vec(v).unwrap()
            }
            None => Vec::new(),
        };
        self.request(method, path, &headers, bytes).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> TestResponse {
        self.json_request("GET", path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> TestResponse {
        self.json_request("POST", path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> TestResponse {
        self.json_request("PUT", path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> TestResponse {
        self.json_request("PATCH", path, token, Some(body)).await
    }

    pub async fn delete(
        &self,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        self.json_request("DELETE", path, token, body).await
    }

    /// A valid access token for `user_id` with `role`, signed with the app's key.
    pub fn token(&self, user_id: Uuid, role: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        self.token_with(json!({
            "sub": user_id.to_string(), "role": role, "iss": ISSUER, "aud": AUDIENCE,
            "iat": now, "exp": now + 900, "jti": Uuid::now_v7().to_string(),
        }))
    }

    /// A token with arbitrary claims, signed with the app's real key (for negative tests).
    pub fn token_with(&self, claims: Value) -> String {
        self.user_signer.sign(&claims)
    }

    /// The app's access-token signer (to check key ids, public keys).
    pub fn user_signer(&self) -> &Signer {
        &self.user_signer
    }

    /// A service token from `from` (`order`, `delivery` or `relay`) addressed to `to`.
    pub fn service_token(&self, from: &str, to: &str) -> String {
        self.service_signers[from].service_token(from, to, chrono::Utc::now().timestamp())
    }

    /// Registers a user with `role` (`buyer`, `seller`; `admin` uses the admin email) through the
    /// user service and logs in; returns the id and the access token.
    pub async fn register_user(&self, role: &str) -> (Uuid, String) {
        let email = if role == "admin" {
            ADMIN_EMAIL.to_string()
        } else {
            format!("{}@example.test", Uuid::new_v4().simple())
        };
        let mut body = json!({"email": email, "password": PASSWORD, "display_name": "Test User"});
        if role == "buyer" || role == "seller" {
            body["role"] = json!(role);
        }
        let r = self.post("/api/auth/register", None, body).await;
        assert_eq!(
            r.status,
            201,
            "register: {}",
            String::from_utf8_lossy(&r.body)
        );
        let id: Uuid = r.json()["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("user id");
        let r = self
            .post(
                "/api/auth/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, 200, "login: {}", String::from_utf8_lossy(&r.body));
        let token = r.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_string();
        (id, token)
    }

    /// Sends `POST` requests concurrently and returns their responses in order.
    pub async fn post_many(
        &self,
        requests: Vec<(String, Option<String>, Value)>,
    ) -> Vec<TestResponse> {
        futures::future::join_all(
            requests
                .iter()
                .map(|(path, token, body)| self.post(path, token.as_deref(), body.clone())),
        )
        .await
    }
}

async fn redis_database_index(url: &str) -> i64 {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connecting to Redis");
    let n: i64 = redis::cmd("INCR")
        .arg("marketplace-test:db-counter")
        .query_async(&mut conn)
        .await
        .expect("INCR");
    // Database 0 holds the counter; make test starts Redis with 1024 databases.
    1 + n.rem_euclid(1000)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.db_names);
        let redis_db = self.redis_db.take();
        let kv_dir = self.kv_dir.clone();
        // Drop runs inside the test's runtime: clean up on a thread with a runtime of its own.
        let leaked = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut leaked = Vec::new();
                if let Ok(url) = std::env::var("MARKETPLACE_TEST_PG") {
                    let admin = connect(&url).await;
                    // Spin returns a connection to its pool as it is: a transaction a component
                    // left open would swallow the next request's statements. None may be.
                    if let Ok(rows) = admin
                        .query(
                            "select datname from pg_stat_activity \
                             where datname = any($1) and state like 'idle in transaction%'",
                            &[&names],
                        )
                        .await
                    {
                        leaked = rows.iter().map(|r| r.get::<_, String>(0)).collect();
                    }
                    for name in names {
                        let _ = admin
                            .batch_execute(&format!("drop database if exists {name} with (force)"))
                            .await;
                    }
                }
                if let Some((url, index)) = redis_db
                    && let Ok(client) =
                        redis::Client::open(format!("{}/{index}", url.trim_end_matches('/')))
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    let _: Result<(), _> = redis::cmd("FLUSHDB").query_async(&mut conn).await;
                }
                leaked
            })
        })
        .join()
        .unwrap_or_default();
        let _ = std::fs::remove_dir_all(kv_dir);
        if !leaked.is_empty() && !std::thread::panicking() {
            panic!(
                "a component left a transaction open on a pooled connection to {leaked:?} \
                 (Spin would hand it to the next request)"
            );
        }
    }
}
