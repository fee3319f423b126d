//! The built components import only what Spin 3.6 (containerd-shim-spin v0.24) and Spin 4
//! provide, and export the HTTP handler Spin calls (docs/spin-sdk.md). A component that
//! imported, say, `marketplace:shared/tokens` or `spin:postgres@4.2.0` would build fine and
//! fail only when deployed; this catches it at test time.

use marketplace_tests::repo_root;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// Interfaces both Spin 3.6 and Spin 4 provide to an HTTP component.
fn spin_provides(import: &str) -> bool {
    let (interface, version) = import.split_once('@').unwrap_or((import, ""));
    let wasi_02 =
        version.starts_with("0.2.") && !version.contains("draft") && !version.contains("rc");
    match interface {
        i if i.starts_with("wasi:cli/")
            || i.starts_with("wasi:clocks/")
            || i.starts_with("wasi:io/")
            || i.starts_with("wasi:random/")
            || i.starts_with("wasi:filesystem/")
            || i.starts_with("wasi:sockets/") =>
        {
            wasi_02 && version <= "0.2.6"
        }
        "wasi:http/types" | "wasi:http/outgoing-handler" => wasi_02 && version <= "0.2.6",
        "spin:postgres/postgres" => version == "4.0.0",
        "fermyon:spin/key-value" | "fermyon:spin/variables" => version == "2.0.0",
        "wasi:keyvalue/store" | "wasi:keyvalue/atomics" | "wasi:keyvalue/batch" => {
            version == "0.2.0-draft2"
        }
        _ => false,
    }
}

#[test]
fn each_component_imports_only_interfaces_spin_provides_and_exports_the_http_handler() {
    let engine = Engine::new(&Config::new()).unwrap();
    for svc in ["user", "product", "order", "delivery"] {
        let path = repo_root().join(format!(
            "target/wasm32-wasip2/release/marketplace_{svc}.wasm"
        ));
        let component = Component::from_file(&engine, &path)
            .unwrap_or_else(|e| panic!("{} (run `make build`): {e:#}", path.display()));
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let refused: Vec<&String> = imports.iter().filter(|i| !spin_provides(i)).collect();
        assert!(
            refused.is_empty(),
            "{svc} imports what Spin 3.6 does not provide: {refused:?}"
        );
        assert!(
            !imports.iter().any(|i| i.starts_with("marketplace:")),
            "{svc} imports the marketplace WIT package from the host: {imports:?}"
        );
        let exports: Vec<String> = ty
            .exports(&engine)
            .map(|(name, _)| name.to_string())
            .collect();
        assert!(
            exports
                .iter()
                .any(|e| e.starts_with("wasi:http/incoming-handler@0.2.")),
            "{svc} does not export wasi:http/incoming-handler@0.2.x: {exports:?}"
        );
    }
}

#[test]
fn the_allow_list_refuses_spin_4_only_interfaces() {
    assert!(spin_provides("spin:postgres/postgres@4.0.0"));
    assert!(!spin_provides("spin:postgres/postgres@4.2.0"));
    assert!(!spin_provides("spin:key-value/key-value@3.0.0"));
    assert!(!spin_provides("wasi:http/types@0.3.0-rc-2026-03-15"));
    assert!(!spin_provides("marketplace:shared/tokens@0.1.0"));
    assert!(spin_provides("wasi:io/streams@0.2.6"));
}
