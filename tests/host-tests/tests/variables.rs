//! `fermyon:spin/variables@2.0.0`: defaults, templates, environment,
//! overrides, required variables and name validation.
#[path = "../../host/tests/common/mod.rs"]
mod common;

use common::*;
use spin_test_host::{App, HostOptions};

#[tokio::test]
async fn default_and_template_expansion() {
    let (_dir, app) = probe_app(opts()).await;
    let (status, v) = get_json(&app, "/var/greeting").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["value"], "hello, world");
    let (_, v) = get_json(&app, "/var/api_key").await;
    assert_eq!(v["value"], "s3cret");
    let (_, v) = get_json(&app, "/var/must_set").await;
    assert_eq!(v["value"], "was-set");
}

#[tokio::test]
async fn explicit_override_wins() {
    let mut o = opts();
    o.variables.insert("greeting".into(), "bonjour".into());
    let (_dir, app) = probe_app(o).await;
    let (_, v) = get_json(&app, "/var/greeting").await;
    assert_eq!(v["value"], "bonjour, world");
}

#[tokio::test]
async fn environment_provider_and_precedence() {
    // Setting environment variables in-process is `unsafe` in edition 2024,
    // so the test re-runs itself in a child process with the variables set.
    let name = "SPIN_VARIABLE_FROM_ENV";
    if std::env::var("STH_CHILD").is_err() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "environment_provider_and_precedence",
                "--nocapture",
            ])
            .env("STH_CHILD", "1")
            .env(name, "from-the-environment")
            .env("SPIN_VARIABLE_MUST_SET", "env-required")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "child failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
        return;
    }
    // In the child: the environment provides values…
    let dir = TempDir::new("env");
    let manifest = write_fixture(dir.path(), "probe.toml", "spin.toml", &[]);
    let env_opts = HostOptions::default(); // read_env = true
    let app = App::load(&manifest, env_opts).await.unwrap();
    let (_, v) = get_json(&app, "/var/from_env").await;
    assert_eq!(v["value"], "from-the-environment");
    let (_, v) = get_json(&app, "/var/must_set").await;
    assert_eq!(v["value"], "env-required");
    // …explicit overrides beat the environment…
    let mut o = HostOptions::default();
    o.variables.insert("from_env".into(), "override".into());
    let app = App::load(&manifest, o).await.unwrap();
    let (_, v) = get_json(&app, "/var/from_env").await;
    assert_eq!(v["value"], "override");
    // …and with read_env = false the default applies.
    let mut o = opts();
    o.read_env = false;
    let app = App::load(&manifest, o).await.unwrap();
    let (_, v) = get_json(&app, "/var/from_env").await;
    assert_eq!(v["value"], "default-value");
}

#[tokio::test]
async fn missing_required_variable_refuses_startup() {
    let dir = TempDir::new("req");
    let manifest = write_fixture(dir.path(), "probe.toml", "spin.toml", &[]);
    let o = HostOptions {
        read_env: false,
        ..HostOptions::default()
    };
    let err = App::load(&manifest, o).await.err().expect("must refuse");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("no provider resolved required variable \"must_set\""),
        "{msg}"
    );
}

#[tokio::test]
async fn undeclared_and_invalid_names() {
    let (_dir, app) = probe_app(opts()).await;
    let (status, v) = get_json(&app, "/var/not_declared").await;
    assert_eq!(status, 404);
    assert_eq!(v["error"], "undefined", "{v}");
    // Spin's message as it is, no prefix (as `spin up` answers it, tests/agreement).
    assert_eq!(
        v["message"], "no variable for \"probe\".\"not_declared\"",
        "{v}"
    );
    // Declared in [variables] but not in this component's variables.
    let (_, v) = get_json(&app, "/var/chain_target").await;
    assert_eq!(v["error"], "undefined", "{v}");
    let (_, v) = get_json(&app, "/var/Bad-Name").await;
    assert_eq!(v["error"], "invalid-name", "{v}");
    assert_eq!(
        v["message"],
        "\"Bad-Name\": invalid character 'B'. Variable names may contain only lower-case \
         letters, numbers, and underscores.",
        "{v}"
    );
    let (_, v) = get_json(&app, "/var/a__b").await;
    assert_eq!(v["error"], "invalid-name", "{v}");
    // Another component sees only its own variables.
    let (_, v) = get_json(&app, "/api/var/greeting").await;
    assert_eq!(v["error"], "undefined", "{v}");
}

#[tokio::test]
async fn template_referencing_unknown_variable_is_rejected() {
    let dir = TempDir::new("tpl");
    std::fs::write(
        dir.path().join("spin.toml"),
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"{}\"\nvariables = {{ v = \"{{{{ nope }}}}\" }}\n",
            probe_wasm().display()
        ),
    )
    .unwrap();
    let err = App::load(dir.path().join("spin.toml"), opts())
        .await
        .err()
        .expect("must fail");
    assert!(
        format!("{err:#}").contains("unknown variable \"nope\""),
        "{err:#}"
    );
}
