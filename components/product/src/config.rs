//! Spin variables, read once per request into one typed value.

use std::cell::OnceCell;

use marketplace_shared::tokens::Verifier;

use crate::error::Error;

/// This service's name: the audience of service tokens addressed to it.
pub const SERVICE_NAME: &str = "product";

/// `search_timeout_ms` when the variable is not set: a common word ranks in well under this
/// on 100,000 products, while eight of them OR'd together need seconds (docs/reliability.md).
pub const DEFAULT_SEARCH_TIMEOUT_MS: u32 = 500;

pub struct Config {
    /// The primary PostgreSQL database: every write, and reads when no replica answers.
    pub db_url: String,
    /// Read replicas (`db_replica_urls`, comma-separated; empty = none).
    pub replica_urls: Vec<String>,
    /// The longest one search statement may run, in ms (`search_timeout_ms`): the bound on
    /// what one search can cost the database, whatever it asks for.
    pub search_timeout_ms: u32,
    /// Access tokens of users and service tokens of `order`, built on first use: anonymous
    /// product pages, the busiest path, never need it (decoding the keys is most of the
    /// configuration's cost).
    verifier: OnceCell<Verifier>,
}

fn var(name: &str) -> Result<String, Error> {
    spin_sdk::variables::get(name).map_err(|e| Error::Config(format!("variable {name}: {e}")))
}

impl Config {
    pub fn load() -> Result<Self, Error> {
        Ok(Self {
            db_url: var("db_url")?,
            replica_urls: parse_list(&var("db_replica_urls").unwrap_or_default()),
            search_timeout_ms: match var("search_timeout_ms").unwrap_or_default().trim() {
                "" => DEFAULT_SEARCH_TIMEOUT_MS,
                v => v
                    .parse()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| Error::Config(format!("search_timeout_ms: {v:?}")))?,
            },
            verifier: OnceCell::new(),
        })
    }

    /// The token verifier (from the `jwt_*` and `service_public_keys` variables).
    pub fn verifier(&self) -> Result<&Verifier, Error> {
        if let Some(v) = self.verifier.get() {
            return Ok(v);
        }
        let v = Verifier::from_spin_variables(SERVICE_NAME)
            .map_err(|e| Error::Config(format!("token keys: {e}")))?;
        Ok(self.verifier.get_or_init(|| v))
    }
}

/// Splits a comma-separated list, dropping blanks.
pub fn parse_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn replica_lists_drop_blanks() {
        assert!(super::parse_list("").is_empty());
        assert_eq!(super::parse_list(" a , ,b"), vec!["a", "b"]);
    }
}
