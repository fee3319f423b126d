//! Operations: liveness, readiness and the OpenAPI document.

use marketplace_shared::http::{bytes, json};
use spin_sdk::http::Response;

use crate::config::Config;
use crate::error::Error;
use crate::store::{Db, Throttle};

/// The OpenAPI 3.1 document of this component.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Liveness: needs no dependency.
pub fn healthz() -> Response {
    json(200, &serde_json::json!({"status": "ok"}))
}

/// Readiness: the database and the key-value store answer.
pub fn readyz(cfg: &Config) -> Result<Response, Error> {
    Db::open(&cfg.db_url)?.ping()?;
    Throttle::open()?.ping()?;
    Ok(json(200, &serde_json::json!({"status": "ready"})))
}

pub fn openapi() -> Response {
    bytes(200, "application/json", OPENAPI.as_bytes().to_vec(), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_is_valid_json_for_openapi_3_1() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    }
}
