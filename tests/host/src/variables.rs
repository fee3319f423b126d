//! Application variables, as Spin's `spin-expressions` resolves them.
//!
//! `[variables]` entries are resolved once at start-up (providers in order:
//! explicit overrides from [`crate::HostOptions::variables`], then
//! `SPIN_VARIABLE_<UPPERCASE_NAME>` environment variables when
//! [`crate::HostOptions::read_env`] is set, then the manifest default); a
//! required variable without a value refuses start-up, like `spin up`.
//! Components see variables only through their `[component.x.variables]`
//! templates.
use std::collections::HashMap;

use anyhow::{Context, Result, bail};

/// A `{{ name }}` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Expr(String),
}

impl Template {
    /// Parses a template (`literal {{ var }} literal`).
    pub fn parse(s: &str) -> Result<Self> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .with_context(|| format!("invalid template {s:?}: unmatched '{{{{'"))?;
            let name = after[..end].trim();
            validate_key(name).map_err(|e| anyhow::anyhow!("invalid template {s:?}: {e}"))?;
            parts.push(Part::Expr(name.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// True when the template contains no `{{ }}` expression.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// Names of the variables the template references.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Expands the template with resolved values.
    pub fn resolve(&self, values: &HashMap<String, String>) -> Result<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Expr(e) => out.push_str(
                    values
                        .get(e)
                        .with_context(|| format!("invalid variable name: {e}"))?,
                ),
            }
        }
        Ok(out)
    }
}

/// Spin's variable-name rules (`spin_expressions::Key::validate`); the error
/// text is the one Spin puts in `error::invalid-name`.
pub fn validate_key(key: &str) -> std::result::Result<(), String> {
    let reason = if key.is_empty() {
        Some("must not be empty".to_string())
    } else if let Some(invalid) = key
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == &'_'))
    {
        Some(format!(
            "invalid character {invalid:?}. Variable names may contain only lower-case letters, numbers, and underscores."
        ))
    } else if !key.as_bytes()[0].is_ascii_lowercase() {
        Some("must start with a lowercase ASCII letter".to_string())
    } else if !key.as_bytes()[key.len() - 1].is_ascii_alphanumeric() {
        Some("must end with a lowercase ASCII letter or digit".to_string())
    } else if key.contains("__") {
        Some("must not contain multiple consecutive underscores".to_string())
    } else {
        None
    };
    match reason {
        Some(r) => Err(format!("{key:?}: {r}")),
        None => Ok(()),
    }
}

/// An application variable declared in `[variables]`.
#[derive(Debug, Clone, Default)]
pub struct VariableDecl {
    pub default: Option<String>,
    pub required: bool,
    pub secret: bool,
}

/// Resolves every application variable (start-up time, like Spin's
/// `PreparedResolver`).
pub fn resolve_app_variables(
    decls: &HashMap<String, VariableDecl>,
    overrides: &HashMap<String, String>,
    read_env: bool,
) -> Result<HashMap<String, String>> {
    let mut values = HashMap::new();
    for (name, decl) in decls {
        validate_key(name).map_err(|e| anyhow::anyhow!("invalid variable name: {e}"))?;
        if decl.required && decl.default.is_some() {
            bail!("variable {name:?}: a variable cannot be both required and have a default");
        }
        let env_name = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
        let value = overrides
            .get(name)
            .cloned()
            .or_else(|| {
                if read_env {
                    std::env::var(&env_name).ok()
                } else {
                    None
                }
            })
            .or_else(|| decl.default.clone());
        match value {
            Some(v) => {
                values.insert(name.clone(), v);
            }
            None => bail!(
                "provider error: no provider resolved required variable {name:?} \
                 (set it with the environment variable {env_name} or a variable override)"
            ),
        }
    }
    for name in overrides.keys() {
        if !decls.contains_key(name) {
            tracing::warn!("variable override {name:?} is not declared in [variables]; ignored");
        }
    }
    Ok(values)
}

/// Per-component `[component.x.variables]`, with templates already expanded.
#[derive(Debug, Clone, Default)]
pub struct ComponentVariables {
    values: HashMap<String, String>,
}

/// The error variants of `fermyon:spin/variables@2.0.0` (mapped by the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariableError {
    InvalidName(String),
    Undefined(String),
}

impl ComponentVariables {
    /// Validates templates against the app variables and expands them.
    pub fn new(
        component_id: &str,
        templates: &HashMap<String, String>,
        app_values: &HashMap<String, String>,
        decls: &HashMap<String, VariableDecl>,
    ) -> Result<Self> {
        let mut values = HashMap::new();
        for (key, raw) in templates {
            validate_key(key).map_err(|e| {
                anyhow::anyhow!("component {component_id:?}: invalid variable name: {e}")
            })?;
            let t = Template::parse(raw)
                .with_context(|| format!("component {component_id:?} variable {key:?}"))?;
            for v in t.variables() {
                if !decls.contains_key(v) {
                    bail!(
                        "component {component_id:?} variable {key:?}: invalid variable template: unknown variable {v:?}"
                    );
                }
            }
            values.insert(key.clone(), t.resolve(app_values)?);
        }
        Ok(Self { values })
    }

    /// `variables.get(name)` as Spin answers it.
    pub fn get(&self, component_id: &str, name: &str) -> Result<String, VariableError> {
        validate_key(name).map_err(VariableError::InvalidName)?;
        self.values.get(name).cloned().ok_or_else(|| {
            VariableError::Undefined(format!("no variable for {component_id:?}.{name:?}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for k in ["a", "abc", "a1b2c3", "a_1", "a_1_b_3"] {
            validate_key(k).unwrap();
        }
        for k in ["", "aX", "1bc", "_x", "x.y", "x_", "a__b", "x-y"] {
            validate_key(k).unwrap_err();
        }
    }

    #[test]
    fn templates() {
        let t = Template::parse("postgres://{{ host }}:{{port}}/db").unwrap();
        let vals = HashMap::from([
            ("host".to_string(), "h".to_string()),
            ("port".to_string(), "1".to_string()),
        ]);
        assert_eq!(t.resolve(&vals).unwrap(), "postgres://h:1/db");
        assert!(Template::parse("plain").unwrap().is_literal());
        assert!(Template::parse("{{ oops").is_err());
    }
}
