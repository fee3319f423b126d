//! The JWKS document: every public key of `jwt_public_keys`, old and new during a rotation.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

/// One Ed25519 public key as RFC 8037 writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub x: String,
    pub kid: String,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// Builds the JWKS from `kid:base64url(key)` entries; `Err` names a malformed entry's
/// position (a deployment error, never client input).
pub fn from_config(public_keys: &str) -> Result<Jwks, String> {
    let mut keys = Vec::new();
    let entries = public_keys.split(',').map(str::trim);
    for (i, entry) in entries.filter(|e| !e.is_empty()).enumerate() {
        let bad = |what| format!("jwt_public_keys entry {i}: {what}");
        let (kid, x) = entry
            .split_once(':')
            .ok_or_else(|| bad("expected kid:key"))?;
        let x = x.trim().trim_end_matches('=');
        if !URL_SAFE_NO_PAD.decode(x).is_ok_and(|key| key.len() == 32) {
            return Err(bad("not a 32-byte base64url key"));
        }
        keys.push(Jwk {
            kty: "OKP",
            crv: "Ed25519",
            x: x.to_string(),
            kid: kid.trim().to_string(),
            alg: "EdDSA",
            use_: "sig",
        });
    }
    if keys.is_empty() {
        return Err("jwt_public_keys is empty".into());
    }
    Ok(Jwks { keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg";
    const B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";

    #[test]
    fn publishes_every_configured_key_as_an_okp_ed25519_jwk() {
        let jwks = from_config(&format!("k1:{A}, k2:{B}")).unwrap();
        let doc = serde_json::to_value(&jwks).unwrap();
        assert_eq!(doc["keys"].as_array().unwrap().len(), 2);
        assert_eq!(
            doc["keys"][0],
            serde_json::json!({"kty":"OKP","crv":"Ed25519","x":A,"kid":"k1","alg":"EdDSA","use":"sig"})
        );
        assert_eq!(doc["keys"][1]["kid"], "k2");
    }

    #[test]
    fn refuses_malformed_configuration() {
        assert!(from_config("").is_err());
        assert!(from_config("nokid").is_err());
        assert!(from_config("k1:short").is_err());
    }
}
