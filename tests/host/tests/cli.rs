//! The `spin-test-host up` binary.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use common::*;

#[test]
fn up_serves_prints_routes_and_logs_requests() {
    let dir = TempDir::new("cli");
    let manifest = write_fixture(dir.path(), "probe.toml", "spin.toml", &[]);
    let mut child = Command::new(host_binary())
        .args(["up", "-f"])
        .arg(&manifest)
        .args(["--listen", "127.0.0.1:0", "--variable", "must_set=from-cli"])
        .env_remove("SPIN_VARIABLE_MUST_SET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut base = None;
    let mut printed = String::new();
    for _ in 0..40 {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        printed.push_str(&line);
        if let Some(url) = line.trim().strip_prefix("Serving ") {
            base = Some(url.to_string());
        }
        if line.contains("/inline (wildcard)") {
            break;
        }
    }
    let base = base.unwrap_or_else(|| panic!("no `Serving` line in:\n{printed}"));
    assert!(printed.contains("Available Routes:"), "{printed}");
    assert!(
        printed.contains(&format!("  exact: {base}/exact")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("  api: {base}/api (wildcard)")),
        "{printed}"
    );

    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /var/must_set HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("from-cli"), "{resp}");

    child.kill().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    child.wait().unwrap();
    assert!(stderr.contains("GET /var/must_set 200"), "{stderr}");
}

#[test]
fn up_refuses_to_start_without_required_variable() {
    let dir = TempDir::new("cli-req");
    let manifest = write_fixture(dir.path(), "probe.toml", "spin.toml", &[]);
    let out = Command::new(host_binary())
        .args(["up", "--from"])
        .arg(&manifest)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("SPIN_VARIABLE_MUST_SET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no provider resolved required variable \"must_set\""),
        "{stderr}"
    );
}

/// The host binary. Cargo bakes its absolute path in at build time; the build cache is shared
/// by every clone (Makefile, CACHE_TARGET), so a test binary built in another clone may name a
/// path that is gone: then the binary beside this test's own directory (`target/debug`).
fn host_binary() -> std::path::PathBuf {
    let baked = std::path::PathBuf::from(env!("CARGO_BIN_EXE_spin-test-host"));
    if baked.exists() {
        return baked;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|debug| debug.join("spin-test-host"))
        .expect("target/debug")
}
