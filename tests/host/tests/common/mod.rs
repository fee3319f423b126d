//! Shared helpers of spin-test-host's integration tests (tests/host/tests and
//! tests/host-tests/tests).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde_json::Value;
use spin_test_host::{App, HostOptions};

/// Path of the built probe component; panics with build instructions if it
/// is missing.
pub fn probe_wasm() -> PathBuf {
    let manifest_dir = manifest_dir_at_run_time();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("../../target"));
    let wasm = target.join("wasm32-wasip2/release/probe_component.wasm");
    if !wasm.exists() {
        panic!(
            "{} is missing: build the fixture component first with\n    \
             cargo build --target wasm32-wasip2 --release -p probe-component\n\
             (the Makefile builds all Wasm before running tests)",
            wasm.display()
        );
    }
    std::fs::canonicalize(wasm).unwrap()
}

/// A unique scratch directory (removed on drop).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "spin-test-host-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture(name: &str) -> String {
    // From tests/host or tests/host-tests alike (both use this module).
    let p = manifest_dir_at_run_time()
        .join("../host/tests/fixtures")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Writes fixture `name` into `dir` as `file`, replacing `@KEY@` markers
/// (`@PROBE_WASM@` always).
pub fn write_fixture(dir: &Path, name: &str, file: &str, replacements: &[(&str, &str)]) -> PathBuf {
    let mut text = fixture(name).replace("@PROBE_WASM@", probe_wasm().to_str().unwrap());
    for (k, v) in replacements {
        text = text.replace(&format!("@{k}@"), v);
    }
    // The probe component lists only `default` unless a test configures more.
    text = text.replace("@PROBE_STORES@", r#"["default"]"#);
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

/// Options with the fixture's required variable set and the environment
/// ignored (tests stay independent of the caller's environment).
pub fn opts() -> HostOptions {
    let mut o = HostOptions {
        read_env: false,
        ..HostOptions::default()
    };
    o.variables.insert("must_set".into(), "was-set".into());
    o
}

/// Loads `probe.toml` in a fresh directory.
pub async fn probe_app(opts: HostOptions) -> (TempDir, App) {
    let dir = TempDir::new("app");
    let manifest = write_fixture(dir.path(), "probe.toml", "spin.toml", &[]);
    let app = App::load(&manifest, opts).await.expect("load probe app");
    (dir, app)
}

pub async fn request(app: &App, method: &str, path: &str, body: &str) -> (u16, Bytes) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test.local:3000")
        .body(Bytes::from(body.to_string()))
        .unwrap();
    let resp = app.handle(req).await.expect("handle");
    (resp.status().as_u16(), resp.into_body())
}

pub async fn get_json(app: &App, path: &str) -> (u16, Value) {
    let (status, body) = request(app, "GET", path, "").await;
    let v = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, v)
}

pub async fn post_json(app: &App, path: &str, body: &Value) -> (u16, Value) {
    let (status, body) = request(app, "POST", path, &body.to_string()).await;
    let v = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, v)
}

/// Admin URL of the test PostgreSQL (`MARKETPLACE_TEST_PG`); fails the test
/// when unset.
pub fn pg_admin_url() -> String {
    std::env::var("MARKETPLACE_TEST_PG").unwrap_or_else(|_| {
        panic!(
            "MARKETPLACE_TEST_PG is not set: these tests need a PostgreSQL admin URL such as \
             postgres://postgres@127.0.0.1:15432/postgres?sslmode=disable"
        )
    })
}

/// Redis URL for tests (`MARKETPLACE_TEST_REDIS`); fails the test when unset.
pub fn redis_url() -> String {
    std::env::var("MARKETPLACE_TEST_REDIS").unwrap_or_else(|_| {
        panic!(
            "MARKETPLACE_TEST_REDIS is not set: these tests need a Redis URL such as \
             redis://127.0.0.1:56379"
        )
    })
}

/// A uniquely named database, dropped by [`TestDb::drop_db`].
pub struct TestDb {
    pub admin_url: String,
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create(tag: &str) -> TestDb {
        let admin_url = pg_admin_url();
        let name = format!(
            "sth_{tag}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                % 1_000_000_000
        );
        let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
            .await
            .expect("connect to MARKETPLACE_TEST_PG");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut cfg: tokio_postgres::Config = admin_url.parse().unwrap();
        cfg.dbname(&name);
        let url = with_dbname(&admin_url, &name);
        TestDb {
            admin_url,
            name,
            url,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    pub async fn drop_db(self) {
        let (client, conn) = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .unwrap();
    }
}

/// Replaces the database of a `postgres://` URL.
pub fn with_dbname(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// This crate's directory, from cargo at run time: the compile-time value may name another
/// clone sharing the build cache when cargo reuses a test binary.
fn manifest_dir_at_run_time() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
}
