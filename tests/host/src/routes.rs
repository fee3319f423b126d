//! Route matching as in Spin's `spin-http` `routes.rs` (built on the same
//! `routefinder` crate): exact routes, `/...` trailing wildcards, `:name`
//! parameters; exact beats parameter beats wildcard, longest prefix wins;
//! a later duplicate route replaces an earlier one.
use std::collections::HashMap;

use anyhow::{Result, anyhow};

#[derive(Debug, Clone)]
struct RouteHandler {
    component_id: String,
    /// Route including the (always `/`) base.
    based_route: String,
    /// Route as written in the manifest.
    raw_route: String,
}

/// The application's router.
#[derive(Debug)]
pub struct Router {
    router: routefinder::Router<RouteHandler>,
    /// `(display route, component)` in manifest order, for start-up output.
    listing: Vec<(String, String)>,
}

/// What a request path matched.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub component_id: String,
    pub based_route: String,
    pub raw_route: String,
    pub named_wildcards: HashMap<String, String>,
    pub trailing_wildcard: String,
}

impl RouteMatch {
    /// Service chaining: the component is invoked as if matched by `/...`.
    pub fn synthetic(component_id: String, path: String) -> Self {
        Self {
            component_id,
            based_route: "/...".into(),
            raw_route: "/...".into(),
            named_wildcards: HashMap::new(),
            trailing_wildcard: path,
        }
    }

    /// `spin-component-route`: the raw route without a trailing `/...`.
    pub fn raw_route_or_prefix(&self) -> String {
        self.raw_route
            .strip_suffix("/...")
            .unwrap_or(&self.raw_route)
            .to_string()
    }
}

fn sanitize(s: &str) -> &str {
    s.strip_suffix('/').unwrap_or(s)
}

impl Router {
    /// Builds the router from `(component, route)` pairs.
    pub fn build<'a>(routes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut entries: Vec<(String, RouteHandler)> = Vec::new();
        for (component_id, raw_route) in routes {
            let abs = if raw_route.starts_with('/') {
                raw_route.to_string()
            } else {
                format!("/{raw_route}")
            };
            let based_route = sanitize(&abs).to_string();
            let handler = RouteHandler {
                component_id: component_id.to_string(),
                based_route,
                raw_route: raw_route.to_string(),
            };
            if let Some(pos) = entries.iter().position(|(r, _)| r == raw_route) {
                tracing::error!(
                    "duplicate route {raw_route}: component {} replaces {}",
                    component_id,
                    entries[pos].1.component_id
                );
                entries.remove(pos);
            }
            entries.push((raw_route.to_string(), handler));
        }
        let mut router = routefinder::Router::new();
        let mut listing = Vec::new();
        for (_, h) in entries {
            let (spec, display) = if let Some(prefix) = h.based_route.strip_suffix("/...") {
                (format!("{prefix}/*"), format!("{prefix} (wildcard)"))
            } else if let Some(prefix) = h.based_route.strip_suffix("/*") {
                (h.based_route.clone(), format!("{prefix} (wildcard)"))
            } else {
                (h.based_route.clone(), h.based_route.clone())
            };
            if h.based_route.starts_with("/.well-known/spin") {
                tracing::error!(
                    "Routes under /.well-known/spin/ are handled by the Spin runtime and will never be reached"
                );
            }
            listing.push((display, h.component_id.clone()));
            router.add(spec.as_str(), h.clone()).map_err(|e| {
                anyhow!(
                    "Error parsing route {} associated with component {}: {e}",
                    h.based_route,
                    h.component_id
                )
            })?;
        }
        Ok(Self { router, listing })
    }

    /// `(route, component)` pairs, for printing.
    pub fn routes(&self) -> &[(String, String)] {
        &self.listing
    }

    /// Best match for `path`, if any.
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let m = self.router.best_match(path)?;
        let h = m.handler();
        let captures = m.captures();
        let named_wildcards = captures
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let trailing_wildcard = captures
            .wildcard()
            .map(|s| match (s.is_empty(), path.ends_with('/')) {
                (true, false) => s.to_owned(),
                (true, true) => "/".to_owned(),
                (false, false) => format!("/{s}"),
                (false, true) => format!("/{s}/"),
            })
            .unwrap_or_default();
        Some(RouteMatch {
            component_id: h.component_id.clone(),
            based_route: h.based_route.clone(),
            raw_route: h.raw_route.clone(),
            named_wildcards,
            trailing_wildcard,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_wins() {
        let r = Router::build([
            ("all", "/..."),
            ("one", "/one/..."),
            ("onetwo", "/one/two/..."),
            ("exact", "/one/two"),
            ("param", "/users/:id"),
        ])
        .unwrap();
        assert_eq!(r.route("/one/two").unwrap().component_id, "exact");
        assert_eq!(r.route("/one/two/three").unwrap().component_id, "onetwo");
        let m = r.route("/one/x/").unwrap();
        assert_eq!(m.component_id, "one");
        assert_eq!(m.trailing_wildcard, "/x/");
        assert_eq!(r.route("/").unwrap().component_id, "all");
        let m = r.route("/users/42").unwrap();
        assert_eq!(m.component_id, "param");
        assert_eq!(m.named_wildcards.get("id").map(String::as_str), Some("42"));
        let r = Router::build([("x", "/x")]).unwrap();
        assert!(r.route("/y").is_none());
    }
}
