//! The one shape (docs/conventions.md, "Skeleton"): every component has the same modules for
//! the same jobs, no source file grows past 500 lines, and the domain stays free of I/O and
//! HTTP types. A component that drifts fails here, so the drift fails `make test`.

use std::fs;
use std::path::{Path, PathBuf};

use marketplace_tests::repo_root;

const COMPONENTS: [&str; 5] = ["user", "product", "order", "delivery", "web"];
/// Every component has these (a `handlers.rs` or a `handlers/` directory).
const REQUIRED: [&str; 7] = [
    "lib.rs",
    "config.rs",
    "error.rs",
    "routes.rs",
    "handlers",
    "domain/",
    "store/",
];
/// Only a component that calls other services has `clients.rs`; only one with an outbox, `relay.rs`.
const OPTIONAL: [&str; 2] = ["clients.rs", "relay.rs"];
const MAX_LINES: usize = 500;

/// The entries of `src/`: files as `name.rs`, directories as `name/`.
fn top_level(src: &Path) -> Vec<String> {
    let mut entries: Vec<String> = fs::read_dir(src)
        .unwrap_or_else(|e| panic!("{}: {e}", src.display()))
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                format!("{name}/")
            } else {
                name
            }
        })
        .collect();
    entries.sort();
    entries
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_component_has_the_one_skeleton() {
    let root = repo_root();
    let mut drift = Vec::new();
    for component in COMPONENTS {
        let src = root.join("components").join(component).join("src");
        let entries = top_level(&src);
        for required in REQUIRED {
            let present = if required == "handlers" {
                entries
                    .iter()
                    .any(|e| e == "handlers.rs" || e == "handlers/")
            } else {
                entries.iter().any(|e| e == required)
            };
            if !present {
                drift.push(format!("{component}: no src/{required}"));
            }
        }
        for entry in &entries {
            let known = REQUIRED.contains(&entry.as_str())
                || OPTIONAL.contains(&entry.as_str())
                || entry == "handlers.rs"
                || entry == "handlers/";
            if !known {
                drift.push(format!(
                    "{component}: src/{entry} is not part of the skeleton"
                ));
            }
        }
        for dir in ["domain", "store"] {
            if src.join(dir).is_dir() && !src.join(dir).join("mod.rs").is_file() {
                drift.push(format!("{component}: src/{dir}/ has no mod.rs"));
            }
        }
        let routes = fs::read_to_string(src.join("routes.rs")).unwrap_or_default();
        if !routes.contains("enum Route") || !routes.contains("#[cfg(test)]") {
            drift.push(format!(
                "{component}: routes.rs has no `enum Route` or no table test"
            ));
        }
    }
    assert!(
        drift.is_empty(),
        "components drifted from the skeleton:\n{}",
        drift.join("\n")
    );
}

#[test]
fn the_domain_does_no_io_and_knows_no_http() {
    let root = repo_root();
    let mut offences = Vec::new();
    for component in COMPONENTS {
        let mut files = Vec::new();
        let domain = root
            .join("components")
            .join(component)
            .join("src")
            .join("domain");
        if domain.is_dir() {
            rust_files(&domain, &mut files);
        }
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            for banned in [
                "spin_sdk",
                "Problem",
                "crate::store",
                "crate::clients",
                "crate::handlers",
            ] {
                if text.contains(banned) {
                    offences.push(format!(
                        "{}: mentions `{banned}`",
                        file.strip_prefix(&root).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "domain code reaches outside the domain:\n{}",
        offences.join("\n")
    );
}

#[test]
fn no_component_source_file_is_over_500_lines() {
    let root = repo_root();
    let mut files = Vec::new();
    rust_files(&root.join("components"), &mut files);
    let mut long: Vec<String> = files
        .iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "target"))
        .filter_map(|f| {
            let lines = fs::read_to_string(f).unwrap().lines().count();
            (lines > MAX_LINES).then(|| {
                format!(
                    "{} ({lines} lines)",
                    f.strip_prefix(&root).unwrap().display()
                )
            })
        })
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "split these files (at most {MAX_LINES} lines each):\n{}",
        long.join("\n")
    );
}
