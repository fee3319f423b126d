//! `allowed_outbound_hosts`, following Spin's
//! `outbound-networking-config/src/allowed_hosts.rs` (scheme, host with `*` and
//! `*.suffix`, port with `*`, ranges `a..b` and well-known defaults).
//! Not supported: CIDR host ranges and `self` (relative URLs).
use anyhow::{Context, Result, bail};

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    original: String,
    scheme: Option<String>, // None = any
    host: HostCfg,
    port: PortCfg,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostCfg {
    Any,
    AnySubdomain(String), // ".example.com"
    Exact(String),
    ToSelf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortCfg {
    Any,
    Port(u16),
    Range(u16, u16),
}

/// Spin's default port for a scheme.
pub fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowedHost {
    /// Parses `<scheme>://<host>[:<port>]`.
    pub fn parse(url: &str) -> Result<Self> {
        let original = url.to_string();
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            bail!(
                "{url:?} does not contain a scheme (e.g., 'http://' or '*://'): hosts must be in the form <scheme>://<host>[:<port>]"
            );
        };
        let (host, rest) = rest.rsplit_once(':').unwrap_or((rest, ""));
        let port = match rest.split_once('/') {
            Some((port, path)) => {
                if !path.is_empty() {
                    bail!("{url:?} has a path but is not allowed to");
                }
                port
            }
            None => rest,
        };
        let scheme_cfg = if scheme == "*" {
            None
        } else {
            if scheme.chars().any(|c| !c.is_alphabetic()) {
                bail!("scheme {scheme:?} contains non alphabetic character");
            }
            Some(scheme.to_string())
        };
        let host = host.trim();
        let host_cfg = if host == "*" {
            HostCfg::Any
        } else if host == "self" || host == "self.alt" {
            HostCfg::ToSelf
        } else if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                bail!("Invalid allowed host {host}: wildcards are allowed only as prefixes");
            }
            HostCfg::AnySubdomain(format!(".{domain}"))
        } else {
            if host.contains('*') {
                bail!("Invalid allowed host {host}: wildcards are allowed only as subdomains");
            }
            if matches!(host.split('/').nth(1), Some(p) if !p.is_empty()) {
                bail!("hosts must not contain paths");
            }
            HostCfg::Exact(host.trim_end_matches('/').to_string())
        };
        let port_cfg = if port.is_empty() {
            PortCfg::Port(well_known_port(scheme).with_context(|| {
                format!("no port was provided and the scheme {scheme:?} does not have a known default port number")
            })?)
        } else if port == "*" {
            PortCfg::Any
        } else if let Some((a, b)) = port.split_once("..") {
            PortCfg::Range(
                a.parse()
                    .with_context(|| format!("port range {port:?} contains non-number"))?,
                b.parse()
                    .with_context(|| format!("port range {port:?} contains non-number"))?,
            )
        } else {
            PortCfg::Port(
                port.parse()
                    .with_context(|| format!("port {port:?} is not a number"))?,
            )
        };
        Ok(Self {
            original,
            scheme: scheme_cfg,
            host: host_cfg,
            port: port_cfg,
        })
    }

    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host_ok = match &self.host {
            HostCfg::Any => true,
            HostCfg::AnySubdomain(suffix) => host.ends_with(suffix.as_str()),
            HostCfg::Exact(h) => h == host,
            HostCfg::ToSelf => false,
        };
        let port_ok = match &self.port {
            PortCfg::Any => true,
            other => match port.or_else(|| well_known_port(scheme)) {
                None => false,
                Some(p) => match other {
                    PortCfg::Port(x) => *x == p,
                    PortCfg::Range(a, b) => (*a..*b).contains(&p),
                    PortCfg::Any => true,
                },
            },
        };
        scheme_ok && host_ok && port_ok
    }
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.original)
    }
}

/// A component's resolved allow-list.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    hosts: Vec<AllowedHost>,
}

impl AllowedHosts {
    /// Parses resolved (template-expanded) entries.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self> {
        if entries.len() == 1 && entries[0].as_ref() == "insecure:allow-all" {
            bail!(
                "'insecure:allow-all' is not allowed - use '*://*:*' instead if you really want to allow all outbound traffic'"
            );
        }
        let hosts = entries
            .iter()
            .map(|e| AllowedHost::parse(e.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { hosts })
    }

    /// As Spin's `expand_wildcard_service_chaining`: a `*.spin.internal` entry stands for
    /// `<id>.spin.internal` of each of the app's components, so chaining to a component the
    /// app does not have is denied like any host not allowed.
    pub fn expand_service_chaining<S: AsRef<str>>(mut self, component_ids: &[S]) -> Self {
        self.hosts = self
            .hosts
            .into_iter()
            .flat_map(|h| match &h.host {
                HostCfg::AnySubdomain(suffix) if suffix == ".spin.internal" => component_ids
                    .iter()
                    .map(|id| AllowedHost {
                        host: HostCfg::Exact(format!("{}.spin.internal", id.as_ref())),
                        ..h.clone()
                    })
                    .collect(),
                _ => vec![h],
            })
            .collect();
        self
    }

    /// Whether `scheme://host[:port]` is allowed.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        self.hosts.iter().any(|h| h.allows(scheme, host, port))
    }
}

/// `<component>.spin.internal[:port]` → `<component>`.
pub fn service_chaining_target(host: &str) -> Option<String> {
    let (host, _) = host.rsplit_once(':').unwrap_or((host, ""));
    let (first, rest) = host.split_once('.')?;
    (rest == "spin.internal").then(|| first.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let a = AllowedHosts::parse(&[
            "postgres://db.local",
            "https://*.example.com",
            "http://user.spin.internal",
            "redis://*:*",
        ])
        .unwrap();
        assert!(a.allows("postgres", "db.local", Some(5432)));
        assert!(a.allows("postgres", "db.local", None));
        assert!(!a.allows("postgres", "db.local", Some(5433)));
        assert!(a.allows("https", "api.example.com", None));
        assert!(!a.allows("http", "api.example.com", None));
        assert!(a.allows("http", "user.spin.internal", None));
        assert!(!a.allows("http", "order.spin.internal", None));
        assert!(a.allows("redis", "anything", Some(1)));
        assert!(AllowedHosts::parse(&["insecure:allow-all"]).is_err());
        assert!(AllowedHosts::parse(&["example.com"]).is_err());
        assert_eq!(
            service_chaining_target("user.spin.internal:80").as_deref(),
            Some("user")
        );
        assert_eq!(service_chaining_target("example.com"), None);
    }

    #[test]
    fn wildcard_service_chaining_means_the_apps_components() {
        let a = AllowedHosts::parse(&["http://*.spin.internal", "https://*.example.com"])
            .unwrap()
            .expand_service_chaining(&["user", "order"]);
        assert!(a.allows("http", "user.spin.internal", None));
        assert!(a.allows("http", "order.spin.internal", None));
        assert!(!a.allows("http", "nope.spin.internal", None));
        assert!(!a.allows("https", "user.spin.internal", None));
        assert!(a.allows("https", "api.example.com", None));
    }
}
