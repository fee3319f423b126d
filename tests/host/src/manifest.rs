//! Spin manifest v2 (`spin.toml`) and runtime-config parsing.
//!
//! Like Spin's manifest v2 schema, unknown keys are rejected at the top level,
//! in `[application]` and in components; trigger tables are open (Spin passes
//! them to the trigger). Trigger and inline-component IDs are assigned as
//! Spin's `normalize_manifest` does. Ids are checked like Spin's `spin-serde` `Id`
//! (component ids kebab-case, variable names lower snake_case, key-value labels either),
//! so a manifest `spin up` refuses is refused here too.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::variables::VariableDecl;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: toml::Value,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    trigger: BTreeMap<String, Vec<toml::Table>>,
    #[serde(default)]
    component: BTreeMap<String, toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    authors: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    trigger: toml::Table,
    #[serde(default)]
    #[allow(dead_code)]
    tool: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

/// `[component.<id>]` with exactly the fields Spin's manifest v2 schema
/// accepts (Spin rejects unknown component fields too).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: toml::Value,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    allowed_http_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    files: Vec<toml::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    exclude_files: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    ai_models: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    build: Option<toml::Table>,
    #[serde(default)]
    #[allow(dead_code)]
    tool: toml::Table,
    #[serde(default)]
    #[allow(dead_code)]
    dependencies_inherit_configuration: bool,
    #[serde(default)]
    dependencies: toml::Table,
}

/// A component of the application.
#[derive(Debug, Clone)]
pub struct ComponentDef {
    pub id: String,
    /// Absolute path of the Wasm file.
    pub source: PathBuf,
    pub description: Option<String>,
    /// Raw entries (templates not yet expanded).
    pub allowed_outbound_hosts: Vec<String>,
    pub key_value_stores: Vec<String>,
    pub variables: HashMap<String, String>,
    pub environment: Vec<(String, String)>,
}

/// An `[[trigger.http]]` entry.
#[derive(Debug, Clone)]
pub struct HttpTrigger {
    pub id: String,
    /// `None` for `route = { private = true }` (reachable only by chaining).
    pub route: Option<String>,
    pub component: String,
}

/// A loaded manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub dir: PathBuf,
    pub variables: HashMap<String, VariableDecl>,
    pub components: BTreeMap<String, ComponentDef>,
    pub http_triggers: Vec<HttpTrigger>,
}

fn parse_component(id: &str, table: toml::Table, dir: &Path) -> Result<ComponentDef> {
    let raw: RawComponent = toml::Value::Table(table)
        .try_into()
        .with_context(|| format!("invalid component {id:?}"))?;
    check_id(id, '-', false).with_context(|| format!("invalid component id {id:?}"))?;
    for label in raw.key_value_stores.iter().chain(&raw.sqlite_databases) {
        if check_id(label, '-', false).is_err() && check_id(label, '_', false).is_err() {
            bail!("component {id:?}: {label:?}: expected kebab-case or snake_case");
        }
    }
    for key in raw.variables.keys() {
        check_id(key, '_', true)
            .with_context(|| format!("component {id:?}: invalid variable name {key:?}"))?;
    }
    if !raw.sqlite_databases.is_empty() || !raw.ai_models.is_empty() {
        tracing::warn!(
            "component {id:?}: sqlite_databases / ai_models are not provided by spin-test-host"
        );
    }
    if !raw.dependencies.is_empty() {
        bail!("component {id:?}: component dependencies are not supported by spin-test-host");
    }
    if !raw.files.is_empty() {
        tracing::warn!("component {id:?}: `files` are not mounted by spin-test-host");
    }
    let source = match &raw.source {
        toml::Value::String(s) => dir.join(s),
        other => {
            bail!("component {id:?}: only local `source = \"file.wasm\"` is supported, got {other}")
        }
    };
    let mut allowed = raw.allowed_outbound_hosts;
    // Spin converts the deprecated `allowed_http_hosts` into outbound hosts.
    for h in raw.allowed_http_hosts {
        if h == "insecure:allow-all" {
            allowed.push("*://*:*".into());
        } else if h.contains("://") {
            allowed.push(h);
        } else {
            allowed.push(format!("https://{h}"));
            allowed.push(format!("http://{h}"));
        }
    }
    Ok(ComponentDef {
        id: id.to_string(),
        source,
        description: raw.description,
        allowed_outbound_hosts: allowed,
        key_value_stores: raw.key_value_stores,
        variables: raw.variables.into_iter().collect(),
        environment: raw.environment.into_iter().collect(),
    })
}

impl Manifest {
    /// Reads and validates `spin.toml`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading manifest {}", path.display()))?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        Self::parse(&text, &dir).with_context(|| format!("invalid manifest {}", path.display()))
    }

    /// Parses manifest text; relative sources are resolved against `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<Self> {
        let raw: RawManifest = toml::from_str(text)?;
        match raw.spin_manifest_version {
            toml::Value::Integer(2) => {}
            toml::Value::String(ref s) if s == "2" => {}
            other => bail!(
                "unsupported spin_manifest_version {other}: spin-test-host reads manifest version 2 only"
            ),
        }
        for name in raw.variables.keys() {
            check_id(name, '_', true).with_context(|| format!("invalid variable name {name:?}"))?;
        }
        let mut components = BTreeMap::new();
        for (id, table) in raw.component {
            components.insert(id.clone(), parse_component(&id, table, dir)?);
        }
        // Trigger and inline-component IDs as Spin's `normalize_manifest`
        // assigns them.
        let mut trigger_ids: std::collections::HashSet<String> = raw
            .trigger
            .values()
            .flatten()
            .filter_map(|t| t.get("id").and_then(|v| v.as_str()).map(str::to_string))
            .collect();
        let mut http_triggers = Vec::new();
        for (kind, triggers) in raw.trigger {
            if kind != "http" {
                tracing::warn!("trigger type {kind:?} is ignored by spin-test-host");
                continue;
            }
            let mut trigger_counter = 1;
            let mut inline_counter = 1;
            for (idx, mut t) in triggers.into_iter().enumerate() {
                let route = match t.remove("route") {
                    Some(toml::Value::String(r)) => Some(r),
                    Some(toml::Value::Table(tb)) => {
                        if tb.get("private").and_then(|v| v.as_bool()) == Some(true) {
                            None
                        } else {
                            bail!(
                                "route must be a string pattern or '{{ private = true }}' (trigger #{idx})"
                            )
                        }
                    }
                    _ => bail!("[[trigger.http]] #{idx} has no `route`"),
                };
                let explicit_id = t
                    .remove("id")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .filter(|s| !s.is_empty());
                let component_value = t.remove("component");
                let id = match (&explicit_id, &component_value) {
                    (Some(id), _) => id.clone(),
                    (None, Some(toml::Value::String(c)))
                        if !trigger_ids.contains(&format!("{c}-{kind}-trigger")) =>
                    {
                        let id = format!("{c}-{kind}-trigger");
                        trigger_ids.insert(id.clone());
                        id
                    }
                    _ => loop {
                        let id = format!("{kind}-trigger{trigger_counter}");
                        trigger_counter += 1;
                        if trigger_ids.insert(id.clone()) {
                            break id;
                        }
                    },
                };
                let component = match component_value {
                    Some(toml::Value::String(c)) => c,
                    Some(toml::Value::Table(inline)) => {
                        let mut cid = format!("{id}-component");
                        if components.contains_key(&cid) {
                            cid = loop {
                                let c = format!("inline-component{inline_counter}");
                                inline_counter += 1;
                                if !components.contains_key(&c) {
                                    break c;
                                }
                            };
                        }
                        components.insert(cid.clone(), parse_component(&cid, inline, dir)?);
                        cid
                    }
                    _ => bail!("[[trigger.http]] #{idx} has no `component`"),
                };
                if t.contains_key("static_response") {
                    bail!("static_response triggers are not supported by spin-test-host");
                }
                if let Some(exec) = t.get("executor")
                    && exec.get("type").and_then(|v| v.as_str()) == Some("wagi")
                {
                    bail!("the wagi executor is not supported by spin-test-host");
                }
                http_triggers.push(HttpTrigger {
                    id,
                    route,
                    component,
                });
            }
        }
        for t in &http_triggers {
            if !components.contains_key(&t.component) {
                bail!(
                    "trigger {:?} references unknown component {:?}",
                    t.id,
                    t.component
                );
            }
        }
        let variables = raw
            .variables
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    VariableDecl {
                        default: v.default,
                        required: v.required,
                        secret: v.secret,
                    },
                )
            })
            .collect();
        Ok(Self {
            name: raw.application.name,
            version: raw.application.version,
            description: raw.application.description,
            dir: dir.to_path_buf(),
            variables,
            components,
            http_triggers,
        })
    }
}

/// Spin's `spin_serde::id::Id<DELIM, LOWER>`: words separated by `delim`, each non-empty,
/// starting with an ASCII letter, then ASCII letters and digits, all lower or all upper case
/// (only lower case when `lower`). `products-0` fails: its second word starts with a digit.
fn check_id(id: &str, delim: char, lower: bool) -> Result<()> {
    if id.is_empty() {
        bail!("empty");
    }
    let wrong = if delim == '-' { '_' } else { '-' };
    if id.contains(wrong) {
        bail!("words must be separated with {delim:?}, not {wrong:?}");
    }
    for word in id.split(delim) {
        let mut chars = word.chars();
        let Some(first) = chars.next() else {
            bail!("{delim:?}-separated words must not be empty");
        };
        if !first.is_ascii_alphabetic() {
            bail!("{delim:?}-separated words must start with an ASCII letter; got {first:?}");
        }
        let upper = first.is_ascii_uppercase();
        for ch in chars {
            if ch.is_ascii_digit() {
                continue;
            }
            if !ch.is_ascii_alphanumeric() {
                bail!("{delim:?}-separated words may only contain alphanumeric ASCII; got {ch:?}");
            }
            if ch.is_ascii_uppercase() != upper {
                bail!(
                    "{delim:?}-separated words must be all lowercase or all UPPERCASE; got {word:?}"
                );
            }
        }
        if lower && upper {
            bail!("Lower-case identifiers must be all lowercase; got {id:?}");
        }
    }
    Ok(())
}

/// One `[key_value_store.<label>]` entry of the runtime config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvStoreConfig {
    /// `type = "spin"`: SQLite at `path` (in memory when no path is given).
    Sqlite(Option<PathBuf>),
    /// `type = "redis"`, `url = "redis://..."`.
    Redis(String),
}

#[derive(Debug, Deserialize)]
struct RawKvStore {
    #[serde(rename = "type")]
    type_: String,
    #[serde(flatten)]
    rest: toml::Table,
}

/// The parts of Spin's runtime config the host understands.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    pub key_value_stores: HashMap<String, KvStoreConfig>,
}

impl RuntimeConfig {
    /// Reads a runtime-config file; relative SQLite paths are resolved against
    /// the file's directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading runtime config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base)
            .with_context(|| format!("invalid runtime config {}", path.display()))
    }

    /// Parses runtime-config text.
    pub fn parse(text: &str, base: &Path) -> Result<Self> {
        let table: toml::Table = toml::from_str(text)?;
        let mut key_value_stores = HashMap::new();
        for (key, value) in table {
            if key != "key_value_store" {
                tracing::warn!("runtime config section {key:?} is ignored by spin-test-host");
                continue;
            }
            let stores: BTreeMap<String, RawKvStore> = value
                .try_into()
                .context("could not parse key-value runtime config")?;
            for (label, raw) in stores {
                let cfg = match raw.type_.as_str() {
                    "spin" => {
                        let path = raw.rest.get("path").and_then(|v| v.as_str()).map(|p| {
                            let p = PathBuf::from(p);
                            if p.is_absolute() { p } else { base.join(p) }
                        });
                        KvStoreConfig::Sqlite(path)
                    }
                    "redis" => KvStoreConfig::Redis(
                        raw.rest
                            .get("url")
                            .and_then(|v| v.as_str())
                            .with_context(|| {
                                format!("could not configure key-value store with label '{label}': missing `url`")
                            })?
                            .to_string(),
                    ),
                    other => bail!(
                        "could not configure key-value store with label '{label}': the store type '{other}' is not supported by spin-test-host"
                    ),
                };
                key_value_stores.insert(label, cfg);
            }
        }
        Ok(Self { key_value_stores })
    }
}
