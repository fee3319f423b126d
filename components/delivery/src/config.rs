//! Spin variables, read once per request into one typed value.

use marketplace_shared::tokens::{Signer, Verifier};

use crate::error::{Error, Result};

/// This service's name: the `aud` of service tokens addressed to it, and the `iss`/`sub` of the
/// ones it signs.
pub const SERVICE: &str = "delivery";

/// The outbox relay's own identity (its CronJob): the one caller of
/// `POST /internal/deliveries/outbox/relay`, refused everywhere else.
pub const RELAY: &str = "relay";

/// The order service: the one caller of the other internal routes, and the reports' audience.
pub const ORDER: &str = "order";

pub struct Config {
    pub verifier: Verifier,
    /// Signs this service's tokens to the order service.
    pub signer: Signer,
    /// Base URL of the order service, without a trailing slash.
    pub order_service_url: String,
}

fn var(name: &str) -> Result<String> {
    spin_sdk::variables::get(name).map_err(|e| Error::Config(format!("variable {name}: {e}")))
}

impl Config {
    pub fn load() -> Result<Self> {
        let verifier = Verifier::from_spin_variables(SERVICE).map_err(Error::Config)?;
        let signer = Signer::from_config(&var("service_signing_key")?)
            .map_err(|e| Error::Config(format!("service_signing_key: {e}")))?;
        let url = var("order_service_url").unwrap_or_default();
        let order_service_url = match url.trim().trim_end_matches('/') {
            "" => "http://order.spin.internal",
            url => url,
        };
        Ok(Self {
            verifier,
            signer,
            order_service_url: order_service_url.to_string(),
        })
    }
}
