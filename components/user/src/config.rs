//! The Spin variables of the user service, read once per request into one typed value.

use marketplace_shared::tokens::{Signer, Verifier};

use crate::domain::admin::AdminEmails;
use crate::domain::client::TrustedProxies;
use crate::domain::login::SessionLifetime;
use crate::error::Error;

/// This service's name, the audience of service tokens addressed to it.
pub const SERVICE_NAME: &str = "user";

pub struct Config {
    pub db_url: String,
    pub issuer: String,
    pub audience: String,
    /// `jwt_public_keys`: every key that verifies access tokens (published in the JWKS).
    pub public_keys: String,
    pub verifier: Verifier,
    pub signer: Signer,
    /// `admin_emails`, comma-separated: the bootstrap admin addresses.
    pub admin_emails: AdminEmails,
    /// `trusted_proxies`: the peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// `session_max_lifetime_secs`: the absolute lifetime of a login (default 30 days).
    pub session_lifetime: SessionLifetime,
}

fn var(name: &str) -> Result<String, Error> {
    spin_sdk::variables::get(name).map_err(|e| Error::Internal(format!("variable {name}: {e}")))
}

/// A variable added after v1: a manifest that does not declare it (an older per-service
/// spin.toml) gets its default (empty, which each parser reads as its default) instead of
/// failing every request.
fn optional_var(name: &str) -> Result<String, Error> {
    match spin_sdk::variables::get(name) {
        Err(spin_sdk::variables::Error::Undefined(_)) => Ok(String::new()),
        other => other.map_err(|e| Error::Internal(format!("variable {name}: {e}"))),
    }
}

impl Config {
    /// Reads and parses every variable; a bad value is a deployment error (500, logged
    /// without the value, which may be a secret).
    pub fn load() -> Result<Self, Error> {
        let issuer = var("jwt_issuer")?;
        let audience = var("jwt_audience")?;
        let public_keys = var("jwt_public_keys")?;
        let verifier = Verifier::new(&public_keys, &issuer, &audience, SERVICE_NAME)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let signer = Signer::from_config(&var("jwt_signing_key")?)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Self {
            db_url: var("db_url")?,
            issuer,
            audience,
            public_keys,
            verifier,
            signer,
            admin_emails: AdminEmails::parse(&var("admin_emails")?),
            trusted_proxies: TrustedProxies::parse(&optional_var("trusted_proxies")?)
                .map_err(Error::Internal)?,
            session_lifetime: SessionLifetime::parse(&optional_var("session_max_lifetime_secs")?)
                .map_err(Error::Internal)?,
        })
    }
}
