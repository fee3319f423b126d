//! Routing, `spin-*` headers, reserved paths, instance isolation, logging and
//! serving over TCP.
#[path = "../../host/tests/common/mod.rs"]
mod common;

use common::*;
use serde_json::Value;

fn header<'a>(v: &'a Value, name: &str) -> &'a str {
    v["headers"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no header {name} in {v}"))
}

#[tokio::test]
async fn exact_route_beats_wildcard_and_most_specific_prefix_wins() {
    let (_dir, app) = probe_app(opts()).await;
    let cases = [
        ("/exact", "exact"),
        ("/exact/more", "probe"),
        ("/api", "api"),
        ("/api/other/thing", "api"),
        ("/api/items", "items"),
        ("/api/items/42/headers", "items"),
        ("/users/7/anything", "param"),
        ("/", "probe"),
        ("/something/else", "probe"),
        ("/inline/x", "inline"),
    ];
    for (path, who) in cases {
        let (status, v) = get_json(&app, path).await;
        assert_eq!(status, 200, "{path}: {v}");
        assert_eq!(v["who"].as_str(), Some(who), "{path}: {v}");
    }
}

#[tokio::test]
async fn unmatched_path_is_404_and_private_component_is_unroutable() {
    let dir = TempDir::new("noroute");
    std::fs::write(
        dir.path().join("spin.toml"),
        format!(
            r#"spin_manifest_version = 2
[application]
name = "x"
[[trigger.http]]
route = "/only"
component = "c"
[[trigger.http]]
route = {{ private = true }}
component = "p"
[component.c]
source = "{0}"
[component.p]
source = "{0}"
"#,
            probe_wasm().display()
        ),
    )
    .unwrap();
    let app = spin_test_host::App::load(dir.path().join("spin.toml"), opts())
        .await
        .unwrap();
    let (status, body) = request(&app, "GET", "/nothing", "").await;
    assert_eq!(status, 404);
    assert!(body.is_empty());
    assert_eq!(request(&app, "GET", "/only", "").await.0, 200);
    assert_eq!(request(&app, "GET", "/only/sub", "").await.0, 404);
    assert_eq!(app.routes(), vec![("/only".to_string(), "c".to_string())]);
}

#[tokio::test]
async fn spin_headers_for_wildcard_route() {
    let (_dir, app) = probe_app(opts()).await;
    let (status, v) = get_json(&app, "/api/items/42/headers?x=1&y=2").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        header(&v, "spin-full-url"),
        "http://test.local:3000/api/items/42/headers?x=1&y=2"
    );
    assert_eq!(header(&v, "spin-path-info"), "/42/headers");
    assert_eq!(header(&v, "spin-matched-route"), "/api/items/...");
    assert_eq!(header(&v, "spin-raw-component-route"), "/api/items/...");
    assert_eq!(header(&v, "spin-component-route"), "/api/items");
    assert_eq!(header(&v, "spin-base-path"), "/");
    assert_eq!(header(&v, "spin-client-addr"), "127.0.0.1:0");
    // wasmtime-wasi-http (and so Spin) strips forbidden headers such as
    // `host` from the incoming request; components use `spin-full-url`.
    assert!(v["headers"].get("host").is_none(), "{v}");
}

#[tokio::test]
async fn spin_headers_for_exact_and_parameter_routes() {
    let (_dir, app) = probe_app(opts()).await;
    let (_, v) = get_json(&app, "/exact?action=headers").await;
    assert_eq!(header(&v, "spin-path-info"), "");
    assert_eq!(header(&v, "spin-matched-route"), "/exact");
    assert_eq!(header(&v, "spin-component-route"), "/exact");

    let (_, v) = get_json(&app, "/users/42/headers").await;
    assert_eq!(header(&v, "spin-matched-route"), "/users/:user_id/...");
    assert_eq!(header(&v, "spin-component-route"), "/users/:user_id");
    assert_eq!(header(&v, "spin-path-info"), "/headers");
    assert_eq!(header(&v, "spin-path-match-user-id"), "42");

    // Trailing slash is kept in path-info, as Spin does.
    let (_, v) = get_json(&app, "/api/").await;
    assert_eq!(v["who"], "api");
}

#[tokio::test]
async fn client_address_is_passed_through() {
    let (_dir, app) = probe_app(opts()).await;
    let req = http::Request::get("/headers")
        .header("host", "h")
        .body(bytes::Bytes::new())
        .unwrap();
    let resp = app
        .handle_from(req, "10.1.2.3:4567".parse().unwrap())
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(header(&v, "spin-client-addr"), "10.1.2.3:4567");
}

#[tokio::test]
async fn well_known_spin_paths_are_reserved() {
    let (_dir, app) = probe_app(opts()).await;
    let (status, body) = request(&app, "GET", "/.well-known/spin/health", "").await;
    assert_eq!((status, &body[..]), (200, &b"OK"[..]));
    let (status, v) = get_json(&app, "/.well-known/spin/info").await;
    assert_eq!(status, 200);
    assert_eq!(v["name"], "probe-app");
    // Other well-known paths are 404 even though `/...` would match them.
    assert_eq!(
        request(&app, "GET", "/.well-known/spin/other", "").await.0,
        404
    );
}

#[tokio::test]
async fn every_request_gets_a_fresh_instance() {
    let (_dir, app) = probe_app(opts()).await;
    for _ in 0..5 {
        let (status, v) = get_json(&app, "/state").await;
        assert_eq!(status, 200);
        assert_eq!(v["count"], 1, "instance state leaked between requests");
    }
    // Concurrent requests are isolated too.
    let futs: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { get_json(&app, "/state").await })
        })
        .collect();
    for f in futs {
        assert_eq!(f.await.unwrap().1["count"], 1);
    }
}

#[tokio::test]
async fn guest_trap_is_a_500_and_the_host_keeps_serving() {
    let (_dir, app) = probe_app(opts()).await;
    let (status, body) = request(&app, "GET", "/trap", "").await;
    assert_eq!(status, 500);
    assert!(body.is_empty());
    assert_eq!(request(&app, "GET", "/exact", "").await.0, 200);
}

#[tokio::test]
async fn component_output_goes_to_log_file_prefixed_with_component_id() {
    let dir = TempDir::new("log");
    let log = dir.path().join("components.log");
    let mut o = opts();
    o.log_file = Some(log.clone());
    let (_d, app) = probe_app(o).await;
    assert_eq!(request(&app, "GET", "/log", "").await.0, 200);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("[probe] probe says hello on stdout"),
        "{text}"
    );
    assert!(
        text.contains("[probe stderr] probe says hello on stderr"),
        "{text}"
    );
}

#[tokio::test]
async fn request_body_and_method_reach_the_component() {
    let (_dir, app) = probe_app(opts()).await;
    let (status, body) = request(&app, "PUT", "/x/echo?q=1", "payload").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["method"].as_str().unwrap().ends_with("Put"), "{v}");
    assert_eq!(v["path"], "/x/echo");
    assert_eq!(v["query"], "q=1");
    assert_eq!(v["body"], "payload");
}

#[tokio::test]
async fn serves_http1_over_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, app) = probe_app(opts()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(app.clone().serve(listener));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /api/items/1/headers HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains(&format!("http://{addr}/api/items/1/headers")),
        "{text}"
    );
    assert!(text.contains("\"spin-client-addr\":\"127.0.0.1:"), "{text}");
    server.abort();
}

#[tokio::test]
async fn missing_wasm_is_a_clear_load_error() {
    let dir = TempDir::new("nowasm");
    std::fs::write(
        dir.path().join("spin.toml"),
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"missing.wasm\"\n",
    )
    .unwrap();
    let err = spin_test_host::App::load(dir.path().join("spin.toml"), opts())
        .await
        .err()
        .expect("must fail");
    assert!(format!("{err:#}").contains("does not exist"), "{err:#}");
}

#[tokio::test]
async fn unknown_top_level_manifest_key_is_rejected() {
    let dir = TempDir::new("badkey");
    std::fs::write(
        dir.path().join("spin.toml"),
        "spin_manifest_version = 2\nbogus = 1\n[application]\nname = \"x\"\n",
    )
    .unwrap();
    let err = spin_test_host::App::load(dir.path().join("spin.toml"), opts())
        .await
        .err()
        .expect("must fail");
    assert!(format!("{err:#}").contains("bogus"), "{err:#}");
}

#[tokio::test]
async fn unknown_component_field_is_rejected_and_inline_ids_follow_spin() {
    let dir = TempDir::new("badfield");
    std::fs::write(
        dir.path().join("spin.toml"),
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"{}\"\nallowed_outbound_host = []\n",
            probe_wasm().display()
        ),
    )
    .unwrap();
    let err = spin_test_host::App::load(dir.path().join("spin.toml"), opts())
        .await
        .err()
        .expect("must fail");
    assert!(
        format!("{err:#}").contains("allowed_outbound_host"),
        "{err:#}"
    );

    let (_dir, app) = probe_app(opts()).await;
    assert!(
        app.routes().contains(&(
            "/inline (wildcard)".to_string(),
            "inline-component".to_string()
        )),
        "{:?}",
        app.routes()
    );
    let ids: Vec<&str> = app
        .manifest()
        .http_triggers
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    assert!(ids.contains(&"probe-http-trigger"), "{ids:?}");
    assert!(ids.contains(&"inline"), "{ids:?}");
}

/// Spin (`spin-serde`'s `Id`) refuses these at load time; so must the host, or a manifest
/// that only the host accepts reaches production (it happened: `products-0`).
#[tokio::test]
async fn ids_spin_refuses_are_refused_at_load_time() {
    let cases = [
        (
            "key_value_stores = [\"products-0\"]",
            "expected kebab-case or snake_case",
        ),
        (
            "key_value_stores = [\"Products\"]",
            "expected kebab-case or snake_case",
        ),
        ("variables = { Db_url = \"x\" }", "invalid variable name"),
    ];
    for (line, message) in cases {
        let dir = TempDir::new("badid");
        std::fs::write(
            dir.path().join("spin.toml"),
            format!(
                "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"{}\"\n{line}\n",
                probe_wasm().display()
            ),
        )
        .unwrap();
        let err = spin_test_host::App::load(dir.path().join("spin.toml"), opts())
            .await
            .err()
            .unwrap_or_else(|| panic!("{line}: must fail"));
        assert!(format!("{err:#}").contains(message), "{line}: {err:#}");
    }
    let dir = TempDir::new("badcomponent");
    std::fs::write(
        dir.path().join("spin.toml"),
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c-1\"\n[component.c-1]\nsource = \"{}\"\n",
            probe_wasm().display()
        ),
    )
    .unwrap();
    let err = spin_test_host::App::load(dir.path().join("spin.toml"), opts())
        .await
        .err()
        .expect("a component id with a digit-led word must fail");
    assert!(
        format!("{err:#}").contains("must start with an ASCII letter"),
        "{err:#}"
    );
}
