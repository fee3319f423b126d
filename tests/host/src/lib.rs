//! # spin-test-host
//!
//! A Spin-compatible development and test host for the marketplace
//! components, built on wasmtime, wasmtime-wasi and wasmtime-wasi-http. It
//! runs spin-sdk 5.2 components (`wasi:http/incoming-handler@0.2.0`) with the
//! Spin interfaces they import: `spin:postgres/postgres@4.0.0`,
//! `fermyon:spin/key-value@2.0.0`, `fermyon:spin/variables@2.0.0`,
//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` and
//! `wasi:http/outgoing-handler` (with `allowed_outbound_hosts` and
//! `*.spin.internal` service chaining). See `tests/host/README.md` for how
//! each behaviour maps to Spin and what is deliberately left out.
//!
//! ## Library API (in-process tests, no network needed)
//!
//! ```no_run
//! use spin_test_host::{App, HostOptions, InterceptAction};
//! # async fn demo() -> anyhow::Result<()> {
//! let mut opts = HostOptions::default();
//! opts.variables.insert("user_db_url".into(), "postgres://...".into());
//! let app = App::load("spin.toml", opts).await?;          // compiles + pre-instantiates
//! let resp = app
//!     .handle(http::Request::get("/api/users/health").body(bytes::Bytes::new())?)
//!     .await?;                                              // one fresh instance per request
//! assert_eq!(resp.status(), 200);
//!
//! // Fault injection in outbound calls (including `*.spin.internal` chaining):
//! app.set_outbound_interceptor(Some(std::sync::Arc::new(|req: &http::request::Parts| {
//!     (req.uri.host() == Some("order.spin.internal")).then_some(InterceptAction::ConnectionRefused)
//! })));
//!
//! // Serve over HTTP/1.1 like `spin up`:
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! tokio::spawn(app.clone().serve(listener));
//! # Ok(()) }
//! ```
//!
//! * [`HostOptions`]: runtime-config file, variable overrides, whether
//!   `SPIN_VARIABLE_*` environment variables are read, the outbound
//!   interceptor and where component stdout/stderr go.
//! * [`App::load`] parses `spin.toml`, resolves variables (refusing start-up
//!   on a missing required one), checks `key_value_stores` labels, compiles
//!   every component once (wasmtime's on-disk cache is enabled) and builds a
//!   `ProxyPre` per component on a pooling-allocator engine.
//! * [`App::handle`] routes one request exactly like Spin (including the
//!   `spin-*` headers) and returns the fully collected response.
//! * [`App::serve`] serves HTTP/1.1 on a listener, logging one line per
//!   request to stderr.
//!
//! If a request carries neither an absolute URI nor a `Host` header,
//! [`App::handle`] adds `Host: localhost` (Spin would reject it).
#![deny(unsafe_code)]

mod allowed_hosts;
mod host_impls;
mod kv;
pub mod manifest;
mod outbound;
mod pg;
mod routes;
mod server;
mod variables;

#[allow(missing_docs, clippy::all)]
pub(crate) mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use allowed_hosts::{AllowedHosts, service_chaining_target};
pub use manifest::{Manifest, RuntimeConfig};
pub use routes::{RouteMatch, Router};
pub use variables::{Template, validate_key};

/// Body type used inside the host (wasmtime-wasi-http's boxed body).
pub type Body = wasmtime_wasi_http::WasiBody;

/// Per-instance linear-memory cap.
pub const MAX_INSTANCE_MEMORY: usize = 128 << 20;

/// What the outbound interceptor tells the host to do with a request.
#[derive(Debug, Clone)]
pub enum InterceptAction {
    /// Fail as if the destination refused the connection
    /// (`error-code::connection-refused`).
    ConnectionRefused,
    /// Fail with `error-code::connection-timeout`.
    Timeout,
    /// Answer with this response without contacting the destination.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
}

impl InterceptAction {
    /// Shorthand for [`InterceptAction::Respond`] without headers.
    pub fn respond(status: u16, body: impl Into<Bytes>) -> Self {
        Self::Respond {
            status,
            headers: vec![],
            body: body.into(),
        }
    }
}

/// Called for every outbound HTTP request a component makes that its
/// `allowed_outbound_hosts` permits (including `*.spin.internal` chaining),
/// before it is sent; `None` lets the request through.
pub type OutboundInterceptor =
    Arc<dyn Fn(&http::request::Parts) -> Option<InterceptAction> + Send + Sync>;

/// Options for [`App::load`].
#[derive(Clone)]
pub struct HostOptions {
    /// Spin runtime-config file (`--runtime-config-file`).
    pub runtime_config: Option<PathBuf>,
    /// Variable values (by `[variables]` name), taking precedence over the
    /// environment and defaults.
    pub variables: HashMap<String, String>,
    /// Read `SPIN_VARIABLE_<UPPERCASE_NAME>` from the process environment
    /// (default `true`, as `spin up` does).
    pub read_env: bool,
    /// Outbound HTTP interceptor (fault injection in tests).
    pub outbound_interceptor: Option<OutboundInterceptor>,
    /// Append component stdout/stderr here instead of the host's stderr.
    pub log_file: Option<PathBuf>,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            runtime_config: None,
            variables: HashMap::new(),
            read_env: true,
            outbound_interceptor: None,
            log_file: None,
        }
    }
}

impl std::fmt::Debug for HostOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostOptions")
            .field("runtime_config", &self.runtime_config)
            .field("variables", &self.variables.keys().collect::<Vec<_>>())
            .field("read_env", &self.read_env)
            .field("outbound_interceptor", &self.outbound_interceptor.is_some())
            .field("log_file", &self.log_file)
            .finish()
    }
}

/// A loaded application. Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

pub(crate) struct ComponentRuntime {
    pub(crate) id: String,
    pre: ProxyPre<InstanceState>,
    pub(crate) allowed_hosts: AllowedHosts,
    pub(crate) kv_labels: HashSet<String>,
    pub(crate) variables: variables::ComponentVariables,
    environment: Vec<(String, String)>,
}

enum LogSink {
    Stderr,
    File(Mutex<std::fs::File>),
}

pub(crate) struct AppInner {
    engine: Engine,
    manifest: Manifest,
    components: HashMap<String, Arc<ComponentRuntime>>,
    router: Router,
    pub(crate) kv: kv::KvManagers,
    pub(crate) pg: pg::PgPools,
    pub(crate) interceptor: RwLock<Option<OutboundInterceptor>>,
    log: LogSink,
}

/// Store data of one instance (one request).
pub(crate) struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    hooks: outbound::OutboundHooks,
    pub(crate) component: Arc<ComponentRuntime>,
    pub(crate) app: Arc<AppInner>,
    limits: StoreLimits,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

const OUTPUT_CAPACITY: usize = 64 << 20;

/// One engine per process: every [`App`] shares its pooling allocator (whose
/// slots reserve virtual memory) and compiled components are kept in memory,
/// keyed by file path, size and modification time, so loading the same app
/// many times in a test process compiles each component once.
fn shared_engine() -> Result<Engine> {
    static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    if let Some(e) = ENGINE.get() {
        return Ok(e.clone());
    }
    let engine = build_engine()?;
    Ok(ENGINE.get_or_init(|| engine).clone())
}

type ComponentKey = (PathBuf, u64, Option<std::time::SystemTime>);

fn component_cache() -> &'static Mutex<HashMap<ComponentKey, Component>> {
    static CACHE: std::sync::OnceLock<Mutex<HashMap<ComponentKey, Component>>> =
        std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

async fn load_component(engine: &Engine, path: &Path) -> Result<Component> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    if let Some(c) = component_cache()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
    {
        return Ok(c.clone());
    }
    let engine = engine.clone();
    let source = path.to_path_buf();
    let component = tokio::task::spawn_blocking(move || Component::from_file(&engine, &source))
        .await?
        .map_err(|e| anyhow!("{e:?}"))?;
    component_cache()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, component.clone());
    Ok(component)
}

fn build_engine() -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    match wasmtime::Cache::from_file(None) {
        Ok(cache) => {
            config.cache(Some(cache));
        }
        Err(e) => tracing::warn!("wasmtime compilation cache disabled: {e}"),
    }
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(256)
        .total_core_instances(2_048)
        .total_memories(512)
        .total_tables(1_024)
        .max_component_instance_size(10 << 20)
        .max_core_instance_size(10 << 20)
        .max_core_instances_per_component(200)
        .max_memories_per_component(32)
        .max_tables_per_component(20)
        .table_elements(100_000)
        .max_memory_size(MAX_INSTANCE_MEMORY);
    let mut pooled = config.clone();
    pooled.allocation_strategy(pooling);
    match Engine::new(&pooled) {
        Ok(engine) => Ok(engine),
        Err(e) => {
            tracing::warn!("pooling allocator unavailable ({e}); using on-demand allocation");
            Engine::new(&config).map_err(|e| anyhow!("{e}"))
        }
    }
}

fn wt<T>(r: wasmtime::Result<T>) -> Result<T> {
    r.map_err(|e| anyhow!("{e:?}"))
}

impl App {
    /// Loads `spin.toml`, resolves configuration and pre-instantiates every
    /// component.
    pub async fn load(manifest_path: impl AsRef<Path>, opts: HostOptions) -> Result<App> {
        let manifest_path = manifest_path.as_ref();
        let manifest = Manifest::load(manifest_path)?;
        let runtime_config = match &opts.runtime_config {
            Some(p) => RuntimeConfig::load(p)?,
            None => RuntimeConfig::default(),
        };
        let app_values =
            variables::resolve_app_variables(&manifest.variables, &opts.variables, opts.read_env)?;
        let kv = kv::KvManagers::new(&runtime_config.key_value_stores, &manifest.dir)?;
        for c in manifest.components.values() {
            for label in &c.key_value_stores {
                if !kv.is_defined(label) {
                    bail!(
                        "unknown key_value_stores label {label:?} for component {:?}",
                        c.id
                    );
                }
            }
        }
        let log = match &opts.log_file {
            Some(p) => LogSink::File(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening log file {}", p.display()))?,
            )),
            None => LogSink::Stderr,
        };

        let engine = shared_engine()?;
        let mut linker: Linker<InstanceState> = Linker::new(&engine);
        wt(wasmtime_wasi::p2::add_to_linker_async(&mut linker))?;
        wt(wasmtime_wasi_http::p2::add_only_http_to_linker_async(
            &mut linker,
        ))?;
        wt(bindings::SpinHost::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s))?;

        let mut components = HashMap::new();
        for c in manifest.components.values() {
            if !c.source.exists() {
                bail!(
                    "component {:?}: Wasm file {} does not exist (build the components first, \
                     e.g. `cargo build --target wasm32-wasip2 --release`)",
                    c.id,
                    c.source.display()
                );
            }
            let component = load_component(&engine, &c.source).await.with_context(|| {
                format!("compiling component {:?} ({})", c.id, c.source.display())
            })?;
            // Imports the host does not implement (e.g. `fermyon:spin/llm`)
            // link as traps, like calling an unconfigured Spin factor.
            let pre = match linker.instantiate_pre(&component) {
                Ok(pre) => pre,
                Err(first) => {
                    let mut stubbed = linker.clone();
                    wt(stubbed.define_unknown_imports_as_traps(&component))?;
                    stubbed
                        .instantiate_pre(&component)
                        .map_err(|_| anyhow!("linking component {:?}: {first:?}", c.id))?
                }
            };
            let pre = wt(ProxyPre::new(pre)).with_context(|| {
                format!(
                    "component {:?} does not export wasi:http/incoming-handler@0.2.x",
                    c.id
                )
            })?;
            let resolved_hosts = c
                .allowed_outbound_hosts
                .iter()
                .map(|h| Template::parse(h)?.resolve(&app_values))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("component {:?}: allowed_outbound_hosts", c.id))?;
            let allowed_hosts = AllowedHosts::parse(&resolved_hosts)
                .with_context(|| format!("component {:?}: allowed_outbound_hosts", c.id))?
                .expand_service_chaining(&manifest.components.keys().collect::<Vec<_>>());
            let vars = variables::ComponentVariables::new(
                &c.id,
                &c.variables,
                &app_values,
                &manifest.variables,
            )?;
            components.insert(
                c.id.clone(),
                Arc::new(ComponentRuntime {
                    id: c.id.clone(),
                    pre,
                    allowed_hosts,
                    kv_labels: c.key_value_stores.iter().cloned().collect(),
                    variables: vars,
                    environment: c.environment.clone(),
                }),
            );
        }
        let router = Router::build(
            manifest
                .http_triggers
                .iter()
                .filter_map(|t| t.route.as_deref().map(|r| (t.component.as_str(), r))),
        )?;
        Ok(App {
            inner: Arc::new(AppInner {
                engine,
                manifest,
                components,
                router,
                kv,
                pg: pg::PgPools::default(),
                interceptor: RwLock::new(opts.outbound_interceptor),
                log,
            }),
        })
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// `(route, component id)` pairs as `spin up` lists them.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.inner.router.routes().to_vec()
    }

    /// Replaces the outbound interceptor (takes effect for new requests).
    pub fn set_outbound_interceptor(&self, interceptor: Option<OutboundInterceptor>) {
        *self
            .inner
            .interceptor
            .write()
            .unwrap_or_else(|p| p.into_inner()) = interceptor;
    }

    /// `(label, description)` of the configured key-value stores.
    pub fn key_value_stores(&self) -> Vec<(String, String)> {
        self.inner.kv.summaries()
    }

    /// Number of PostgreSQL address pools currently kept (at most 16).
    pub fn postgres_pool_count(&self) -> usize {
        self.inner.pg.pool_count()
    }

    /// Handles one request in-process and returns the collected response.
    pub async fn handle(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        self.handle_from(req, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
            .await
    }

    /// Like [`App::handle`], with an explicit client address
    /// (`spin-client-addr`).
    pub async fn handle_from(
        &self,
        req: http::Request<Bytes>,
        client_addr: SocketAddr,
    ) -> Result<http::Response<Bytes>> {
        let (mut parts, body) = req.into_parts();
        if parts.uri.authority().is_none() && !parts.headers.contains_key(http::header::HOST) {
            parts.headers.insert(
                http::header::HOST,
                http::HeaderValue::from_static("localhost"),
            );
        }
        let body: Body = Full::new(body)
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed_unsync();
        let resp = self
            .inner
            .handle_request(
                http::Request::from_parts(parts, body),
                http::uri::Scheme::HTTP,
                client_addr,
            )
            .await?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| anyhow!("reading response body: {e}"))?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body))
    }

    /// Serves HTTP/1.1 on `listener` until the task is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> Result<()> {
        server::serve(self.inner.clone(), listener).await
    }
}

fn empty_response(status: http::StatusCode) -> Result<http::Response<Body>> {
    Ok(http::Response::builder().status(status).body(
        Full::new(Bytes::new())
            .map_err(|n| match n {})
            .boxed_unsync(),
    )?)
}

fn full_response(
    status: http::StatusCode,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Result<http::Response<Body>> {
    let mut b = http::Response::builder().status(status);
    if let Some(ct) = content_type {
        b = b.header(http::header::CONTENT_TYPE, ct);
    }
    Ok(b.body(
        Full::new(body.into())
            .map_err(|n| match n {})
            .boxed_unsync(),
    )?)
}

/// Spin's `set_req_uri`: make the URI absolute from the `Host` header.
fn set_req_uri(req: &mut http::Request<Body>, scheme: http::uri::Scheme) -> Result<()> {
    let mut parts = req.uri().clone().into_parts();
    let header_authority = req
        .headers()
        .get(http::header::HOST)
        .map(|h| -> Result<http::uri::Authority> {
            let s = h.to_str().context("'Host' header is not valid UTF-8")?;
            s.parse()
                .context("'Host' header contains an invalid authority")
        })
        .transpose()?;
    let authority = match (header_authority, parts.authority.take()) {
        (None, None) => bail!("no 'Host' header present in request"),
        (None, Some(a)) | (Some(a), None) => a,
        (Some(a1), Some(a2)) => {
            if a1 != a2 {
                bail!("authority in 'Host' header does not match authority in URI");
            }
            a1
        }
    };
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = http::Uri::from_parts(parts)?;
    Ok(())
}

/// Spin's `prepare_request_headers`: original headers plus `spin-*` ones.
fn prepare_request_headers(
    req: &http::Request<Body>,
    m: &RouteMatch,
    client_addr: SocketAddr,
) -> Result<Vec<(String, String)>> {
    let mut res = Vec::new();
    for (name, value) in req.headers() {
        res.push((
            name.to_string(),
            std::str::from_utf8(value.as_bytes())?.to_string(),
        ));
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .map(|h| std::str::from_utf8(h.as_bytes()))
        .transpose()?
        .unwrap_or("localhost");
    let uri = req.uri();
    let abs_path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let scheme = uri.scheme_str().unwrap_or("http");
    res.push(("spin-path-info".into(), m.trailing_wildcard.clone()));
    res.push((
        "spin-full-url".into(),
        format!("{scheme}://{host}{abs_path}"),
    ));
    res.push(("spin-matched-route".into(), m.based_route.clone()));
    res.push(("spin-base-path".into(), "/".into()));
    res.push(("spin-raw-component-route".into(), m.raw_route.clone()));
    res.push(("spin-component-route".into(), m.raw_route_or_prefix()));
    res.push(("spin-client-addr".into(), client_addr.to_string()));
    for (name, value) in &m.named_wildcards {
        res.push((
            format!(
                "spin-path-match-{}",
                name.to_ascii_lowercase().replace('_', "-")
            ),
            value.clone(),
        ));
    }
    Ok(res)
}

pub(crate) const CHAINED_CLIENT_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)), 0);

impl AppInner {
    /// Spin's `HttpServer::handle`.
    pub(crate) async fn handle_request(
        self: &Arc<Self>,
        mut req: http::Request<Body>,
        scheme: http::uri::Scheme,
        client_addr: SocketAddr,
    ) -> Result<http::Response<Body>> {
        if let Some(host) = req.headers().get(http::header::HOST)
            && let Ok(h) = host.to_str()
            && service_chaining_target(h).is_some()
        {
            req.headers_mut().remove(http::header::HOST);
        }
        let path = req.uri().path().to_string();
        if let Some(well_known) = path.strip_prefix("/.well-known/spin/") {
            return match well_known {
                "health" => full_response(http::StatusCode::OK, None, "OK"),
                "info" => {
                    let info = serde_json::json!({
                        "name": self.manifest.name,
                        "version": self.manifest.version,
                        "description": self.manifest.description,
                        "host": "spin-test-host",
                    });
                    full_response(
                        http::StatusCode::OK,
                        Some("application/json"),
                        serde_json::to_vec_pretty(&info)?,
                    )
                }
                _ => empty_response(http::StatusCode::NOT_FOUND),
            };
        }
        match self.router.route(&path) {
            Some(m) => self.handle_trigger_route(req, m, scheme, client_addr).await,
            None => empty_response(http::StatusCode::NOT_FOUND),
        }
    }

    /// Spin's `handle_trigger_route` (also the entry point of chaining).
    pub(crate) async fn handle_trigger_route(
        self: &Arc<Self>,
        mut req: http::Request<Body>,
        m: RouteMatch,
        scheme: http::uri::Scheme,
        client_addr: SocketAddr,
    ) -> Result<http::Response<Body>> {
        set_req_uri(&mut req, scheme)?;
        match self.execute(req, &m, client_addr).await {
            Ok(resp) => Ok(resp),
            Err(e) => {
                tracing::error!("Error processing request: {e:?}");
                self.write_log(&m.component_id, "host", format!("error: {e:#}").as_bytes());
                empty_response(http::StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    pub(crate) fn has_component(&self, id: &str) -> bool {
        self.components.contains_key(id)
    }

    fn write_log(&self, component: &str, stream: &str, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(bytes);
        let mut out = String::new();
        for line in text.lines() {
            if stream == "stdout" {
                out.push_str(&format!("[{component}] {line}\n"));
            } else {
                out.push_str(&format!("[{component} {stream}] {line}\n"));
            }
        }
        match &self.log {
            LogSink::Stderr => {
                let _ = std::io::stderr().write_all(out.as_bytes());
            }
            LogSink::File(f) => {
                let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
                let _ = f.write_all(out.as_bytes());
            }
        }
    }

    async fn execute(
        self: &Arc<Self>,
        mut req: http::Request<Body>,
        m: &RouteMatch,
        client_addr: SocketAddr,
    ) -> Result<http::Response<Body>> {
        let component = self
            .components
            .get(&m.component_id)
            .with_context(|| format!("unknown component ID {:?}", m.component_id))?
            .clone();
        let headers = prepare_request_headers(&req, m, client_addr)?;
        let map = req.headers_mut();
        map.clear();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes())?,
                http::HeaderValue::from_str(&v)?,
            );
        }
        let scheme = if req.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
            wasmtime_wasi_http::p2::bindings::http::types::Scheme::Https
        } else {
            wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http
        };

        let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        for (k, v) in &component.environment {
            wasi.env(k, v);
        }
        let state = InstanceState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: outbound::OutboundHooks::new(self.clone(), component.clone()),
            component: component.clone(),
            app: self.clone(),
            limits: StoreLimitsBuilder::new()
                .memory_size(MAX_INSTANCE_MEMORY)
                .build(),
            stdout,
            stderr,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = wt(store.data_mut().http().new_incoming_request(scheme, req))?;
        let out = wt(store.data_mut().http().new_response_outparam(sender))?;
        let pre = component.pre.clone();
        let app = self.clone();
        let component_id = component.id.clone();
        let task = tokio::task::spawn(async move {
            let result = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, out)
                    .await
            }
            .await;
            let data = store.data();
            app.write_log(&component_id, "stdout", &data.stdout.contents());
            app.write_log(&component_id, "stderr", &data.stderr.contents());
            if let Err(e) = &result {
                app.write_log(
                    &component_id,
                    "host",
                    format!("guest trapped: {e:?}").as_bytes(),
                );
            }
            result
        });
        match receiver.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => Err(anyhow!("guest returned error code {code:?}")),
            Err(_) => {
                let e = match task.await {
                    Ok(Ok(())) => anyhow!("guest never invoked `response-outparam::set` method"),
                    Ok(Err(e)) => anyhow!("{e:?}"),
                    Err(e) => anyhow!(e),
                };
                Err(e.context("guest never invoked `response-outparam::set` method"))
            }
        }
    }
}
