//! Makes the WIT shipped inside the `spin-sdk` 5.2.0 crate reachable to
//! `wasmtime::component::bindgen!` without copying it into this repository.
//!
//! `spin-sdk = "=5.2.0"` is a build-dependency of this crate, so Cargo has
//! downloaded (and unpacked) it before this script runs. The script finds that
//! unpacked crate, then writes into `OUT_DIR`:
//!
//! * `wit/world.wit` – a small world listing exactly the Spin interfaces the
//!   host implements (its packages come from the SDK's `wit/deps`),
//! * `wit/deps/*` – symlinks to every entry of the SDK's `wit/deps`,
//! * `bindings.rs` – the `bindgen!` invocation with the path of that folder,
//!   relative to this crate (bindgen's `path` only accepts a literal, so the
//!   literal is generated here and the crate `include!`s it). Relative, because
//!   the build cache is shared by clones at different paths (the Makefile links
//!   each clone's `target` to it) and Cargo reuses this script's output in all of
//!   them: an absolute path would name whichever clone ran the script.
use std::path::{Path, PathBuf};
use std::process::Command;

const SDK: &str = "spin-sdk";
const SDK_VERSION: &str = "5.2.0";

fn main() {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let sdk_dir = find_sdk().unwrap_or_else(|| {
        panic!(
            "could not find the unpacked {SDK} {SDK_VERSION} crate (looked in \
             $CARGO_HOME/registry/src/*/ and `cargo metadata`)"
        )
    });
    let sdk_wit = sdk_dir.join("wit");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", sdk_wit.display());

    let wit = out_dir.join("wit");
    let deps = wit.join("deps");
    let _ = std::fs::remove_dir_all(&wit);
    std::fs::create_dir_all(&deps).expect("create OUT_DIR/wit/deps");
    for entry in std::fs::read_dir(sdk_wit.join("deps")).expect("read spin-sdk wit/deps") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        // Only the packages the world below needs (transitively): the
        // WASI 0.3 release candidates use `future`/`stream` types that would
        // require wasmtime's component-model-async bindings.
        let wanted = matches!(
            name.as_str(),
            "spin-postgres@4.0.0" | "spin@2.0.0" | "keyvalue-2024-10-17"
        ) || name.ends_with("@0.2.0")
            || name.ends_with("-2023-10-18");
        if wanted {
            link_or_copy(&entry.path(), &deps.join(&name));
        }
    }
    std::fs::write(
        wit.join("world.wit"),
        r#"package spin-test-host:host;

/// The Spin host interfaces implemented by spin-test-host (WASI 0.2 and
/// wasi:http come from wasmtime-wasi / wasmtime-wasi-http).
world spin-host {
  import spin:postgres/postgres@4.0.0;
  import fermyon:spin/key-value@2.0.0;
  import fermyon:spin/variables@2.0.0;
  import wasi:keyvalue/store@0.2.0-draft2;
  import wasi:keyvalue/atomics@0.2.0-draft2;
  import wasi:keyvalue/batch@0.2.0-draft2;
}
"#,
    )
    .expect("write world.wit");

    let bindings = format!(
        r#"wasmtime::component::bindgen!({{
    path: {path:?},
    world: "spin-test-host:host/spin-host",
    imports: {{ default: async | trappable }},
    with: {{
        "spin:postgres/postgres.connection": crate::pg::Connection,
        "fermyon:spin/key-value.store": crate::kv::SpinStore,
        "wasi:keyvalue/store.bucket": crate::kv::Bucket,
        "wasi:keyvalue/atomics.cas": crate::kv::CasHandle,
    }},
}});
"#,
        path = relative_to_manifest(&wit).display().to_string()
    );
    std::fs::write(out_dir.join("bindings.rs"), bindings).expect("write bindings.rs");
}

/// `path` relative to `CARGO_MANIFEST_DIR` (through the checkout's own `target`).
fn relative_to_manifest(path: &Path) -> PathBuf {
    let base = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let (base, path): (Vec<_>, Vec<_>) = (base.components().collect(), path.components().collect());
    let common = base.iter().zip(&path).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..base.len() {
        rel.push("..");
    }
    for c in &path[common..] {
        rel.push(c);
    }
    rel
}

fn link_or_copy(src: &Path, dst: &Path) {
    #[cfg(unix)]
    {
        if std::os::unix::fs::symlink(src, dst).is_ok() {
            return;
        }
    }
    copy_recursively(src, dst);
}

fn copy_recursively(src: &Path, dst: &Path) {
    if src.is_dir() {
        std::fs::create_dir_all(dst).expect("mkdir");
        for e in std::fs::read_dir(src).expect("read_dir") {
            let e = e.expect("entry");
            copy_recursively(&e.path(), &dst.join(e.file_name()));
        }
    } else {
        std::fs::copy(src, dst).expect("copy");
    }
}

fn find_sdk() -> Option<PathBuf> {
    let dirname = format!("{SDK}-{SDK_VERSION}");
    // 1. The registry checkout Cargo unpacked the build-dependency into.
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(home) = cargo_home
        && let Ok(registries) = std::fs::read_dir(home.join("registry").join("src"))
    {
        for reg in registries.flatten() {
            let candidate = reg.path().join(&dirname);
            if candidate.join("wit").join("deps").is_dir() {
                return Some(candidate);
            }
        }
    }
    // 2. Ask Cargo (covers vendored sources and other layouts).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(manifest_dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Minimal scan for `"manifest_path":".../spin-sdk-5.2.0/Cargo.toml"`.
    let needle = format!("{dirname}/Cargo.toml");
    let idx = text.find(&needle)?;
    let start = text[..idx].rfind('"')? + 1;
    let manifest = PathBuf::from(&text[start..idx + needle.len()]);
    let dir = manifest.parent()?.to_path_buf();
    dir.join("wit").join("deps").is_dir().then_some(dir)
}
