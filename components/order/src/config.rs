//! The component's Spin variables, read once per request into one typed value.

use marketplace_shared::tokens::{Signer, Verifier};

use crate::domain::shard::ShardMap;
use crate::error::Error;

/// This service's name in service tokens.
pub const SERVICE: &str = "order";

/// The outbox relay's own identity (its CronJob's service tokens: `iss = sub = "relay"`):
/// accepted on `POST /internal/orders/outbox/relay` only, so the CronJob holds no key that
/// could reserve stock or create shipments.
pub const RELAY: &str = "relay";

pub struct Config {
    /// Connection strings of the physical order databases; index = position in `db_urls`.
    pub db_urls: Vec<String>,
    pub shards: ShardMap,
    pub verifier: Verifier,
    pub signer: Signer,
    pub product_url: String,
    pub delivery_url: String,
}

fn var(name: &str) -> Result<String, Error> {
    spin_sdk::variables::get(name)
        .map_err(|e| Error::Internal(format!("variable {name} unavailable: {e}")))
}

impl Config {
    pub fn load() -> Result<Self, Error> {
        let db_urls: Vec<String> = var("db_urls")?
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect();
        let shards = ShardMap::parse(&var("shard_map")?, db_urls.len())
            .map_err(|e| Error::Internal(format!("invalid shard map: {e}")))?;
        let verifier = Verifier::from_spin_variables(SERVICE).map_err(Error::Internal)?;
        let signer = Signer::from_config(&var("service_signing_key")?)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let url = |name| var(name).map(|u| u.trim_end_matches('/').to_string());
        Ok(Self {
            db_urls,
            shards,
            verifier,
            signer,
            product_url: url("product_service_url")?,
            delivery_url: url("delivery_service_url")?,
        })
    }
}
