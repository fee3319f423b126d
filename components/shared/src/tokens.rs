//! Access and service tokens: EdDSA (Ed25519) JWTs, verified locally in every service.
//!
//! Key formats (Spin variables, see docs/conventions.md):
//! - public keys: comma-separated `kid:base64url(32-byte public key)`;
//! - service public keys: comma-separated `service:kid:base64url(public key)`;
//! - signing keys: `kid:base64url(32-byte seed)`.
//!
//! Only `EdDSA` is accepted: `alg: none`, HS256 signed with the public key as a secret, and any
//! other algorithm are refused before a key is even looked up.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::problem::Problem;
use crate::wit::{Claims, Role, TokenError};

/// Seconds of clock skew tolerated on `exp`/`iat` between services.
pub const LEEWAY_SECS: u64 = 30;
/// Lifetime of a service token.
pub const SERVICE_TOKEN_TTL_SECS: i64 = 60;

/// A configuration value that could not be parsed (a deployment error, never client input).
#[derive(Debug, thiserror::Error)]
#[error("invalid key configuration: {0}")]
pub struct KeyConfigError(String);

/// The claims as they travel in the JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireClaims {
    pub sub: String,
    pub role: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

impl TokenError {
    /// Why, in words safe to show the caller.
    pub fn describe(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing bearer token",
            TokenError::Malformed => "malformed token",
            TokenError::BadSignature => "invalid token signature",
            TokenError::UnknownKey => "token signed by an unknown key",
            TokenError::Expired => "token expired",
            TokenError::WrongIssuer => "token from an unexpected issuer",
            TokenError::WrongAudience => "token for another audience",
            TokenError::WrongAlgorithm => "token algorithm not accepted",
        }
    }
}

fn key32(field: &str, s: &str) -> Result<[u8; 32], KeyConfigError> {
    let bytes = URL_SAFE_NO_PAD.decode(s.trim().trim_end_matches('='));
    bytes
        .map_err(|_| KeyConfigError(format!("{field}: not base64url")))?
        .try_into()
        .map_err(|_| KeyConfigError(format!("{field}: expected 32 bytes")))
}

struct PublicKey {
    kid: String,
    /// For service keys: the service the key belongs to.
    owner: Option<String>,
    key: DecodingKey,
}

/// Parses a comma-separated list of `kid:key` (`service:kid:key` when `owned`).
fn parse_keys(field: &str, value: &str, owned: bool) -> Result<Vec<PublicKey>, KeyConfigError> {
    let shape = if owned { "service:kid:key" } else { "kid:key" };
    let entries = value.split(',').map(str::trim).filter(|e| !e.is_empty());
    entries
        .map(|entry| {
            let parts: Vec<&str> = entry.splitn(2 + usize::from(owned), ':').collect();
            let (owner, kid, x) = match parts[..] {
                [kid, x] if !owned => (None, kid, x),
                [owner, kid, x] => (Some(owner.trim().to_string()), kid, x),
                _ => return Err(KeyConfigError(format!("{field}: expected {shape}"))),
            };
            key32(field, x)?;
            Ok(PublicKey {
                kid: kid.trim().to_string(),
                owner,
                key: DecodingKey::from_ed_components(x.trim())
                    .map_err(|e| KeyConfigError(e.to_string()))?,
            })
        })
        .collect()
}

/// Verifies tokens against the configured keys, issuer and audience.
pub struct Verifier {
    access_keys: Vec<PublicKey>,
    service_keys: Vec<PublicKey>,
    issuer: String,
    audience: String,
    /// This service's name: the `aud` of service tokens addressed to it.
    service_name: String,
}

impl Verifier {
    /// `public_keys` is the `jwt_public_keys` variable; `service_name` is this service
    /// (`user`, `product`, `order`, `delivery`).
    pub fn new(
        public_keys: &str,
        issuer: &str,
        audience: &str,
        service_name: &str,
    ) -> Result<Self, KeyConfigError> {
        let access_keys = parse_keys("jwt_public_keys", public_keys, false)?;
        if access_keys.is_empty() {
            return Err(KeyConfigError("jwt_public_keys is empty".into()));
        }
        Ok(Self {
            access_keys,
            service_keys: Vec::new(),
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            service_name: service_name.to_string(),
        })
    }

    /// Adds the trusted service keys (`service_public_keys`).
    pub fn with_service_keys(mut self, service_public_keys: &str) -> Result<Self, KeyConfigError> {
        let keys = parse_keys("service_public_keys", service_public_keys, true)?;
        self.service_keys.extend(keys);
        Ok(self)
    }

    /// Verifies a user access token (`marketplace:shared/tokens.verify-access-token`).
    pub fn verify_access_token(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = verify(token, &self.access_keys, &self.issuer, &self.audience)?;
        match claims.role {
            Role::Service => Err(TokenError::WrongAudience),
            _ => Ok(claims),
        }
    }

    /// Verifies a service token addressed to this service
    /// (`marketplace:shared/tokens.verify-service-token`).
    pub fn verify_service_token(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        // Key ids are per service (`service:kid:key`): two services may both use `s1`, so the
        // key is chosen by the (still unverified) issuer and kid together; the signature check
        // below then proves the issuer.
        let issuer = unverified_issuer(token);
        let owned = self
            .service_keys
            .iter()
            .filter(|k| issuer.is_none() || k.owner == issuer);
        let key = pick_key(owned, header.kid.as_deref())?;
        let owner = key.owner.clone().unwrap_or_default();
        let claims = verify(token, std::slice::from_ref(key), &owner, &self.service_name)?;
        if claims.role != Role::Service || claims.sub != owner {
            return Err(TokenError::WrongIssuer);
        }
        Ok(claims)
    }

    /// The caller of a public endpoint, from its `Authorization` header (401 otherwise).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, Problem> {
        let token = bearer(authorization).map_err(unauthorized)?;
        let claims = self.verify_access_token(token).map_err(unauthorized)?;
        let user_id =
            Uuid::parse_str(&claims.sub).map_err(|_| unauthorized(TokenError::Malformed))?;
        Ok(Principal {
            user_id,
            role: claims.role,
        })
    }

    /// The calling service of an internal endpoint: 401 without a valid token, 403 for a
    /// valid user token, 403 for a service not in `allowed`.
    pub fn authenticate_service(
        &self,
        authorization: Option<&str>,
        allowed: &[&str],
    ) -> Result<String, Problem> {
        let token = bearer(authorization).map_err(unauthorized)?;
        let forbidden = |detail| Err(Problem::forbidden(detail));
        match self.verify_service_token(token) {
            Ok(claims) if allowed.contains(&claims.sub.as_str()) => Ok(claims.sub),
            Ok(_) => forbidden("this service may not call this endpoint"),
            Err(_) if self.verify_access_token(token).is_ok() => {
                forbidden("internal endpoints accept only service tokens")
            }
            Err(e) => Err(unauthorized(e)),
        }
    }

    /// The verifier of a service with internal endpoints, from the Spin variables every such
    /// component declares (`jwt_public_keys`, `jwt_issuer`, `jwt_audience`,
    /// `service_public_keys`). The error names the variable or key that is wrong.
    #[cfg(feature = "spin")]
    pub fn from_spin_variables(service_name: &str) -> Result<Self, String> {
        let var = |name: &str| {
            spin_sdk::variables::get(name).map_err(|e| format!("variable {name}: {e}"))
        };
        let keys = var("jwt_public_keys")?;
        let (issuer, audience) = (var("jwt_issuer")?, var("jwt_audience")?);
        let service_keys = var("service_public_keys")?;
        Verifier::new(&keys, &issuer, &audience, service_name)
            .and_then(|v| v.with_service_keys(&service_keys))
            .map_err(|e| e.to_string())
    }
}

/// An authenticated user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

fn unauthorized(e: TokenError) -> Problem {
    Problem::unauthorized(e.describe())
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(authorization: Option<&str>) -> Result<&str, TokenError> {
    let value = authorization.ok_or(TokenError::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(token.trim())
}

/// The `iss` claim of a JWT, read without verifying anything (only to choose a key).
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("iss")?.as_str().map(str::to_string)
}

/// The key named `kid`, or the only key when the token names none.
fn pick_key<'a>(
    mut keys: impl Iterator<Item = &'a PublicKey>,
    kid: Option<&str>,
) -> Result<&'a PublicKey, TokenError> {
    match kid {
        Some(kid) => keys.find(|k| k.kid == kid),
        None => keys.next().filter(|_| keys.next().is_none()),
    }
    .ok_or(TokenError::UnknownKey)
}

fn verify(
    token: &str,
    keys: &[PublicKey],
    issuer: &str,
    audience: &str,
) -> Result<Claims, TokenError> {
    if token.len() > 8192 {
        return Err(TokenError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::WrongAlgorithm,
        _ => TokenError::Malformed,
    })?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::WrongAlgorithm);
    }
    let key = pick_key(keys.iter(), header.kid.as_deref())?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.leeway = LEEWAY_SECS;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let decoded = jsonwebtoken::decode::<WireClaims>(token, &key.key, &validation);
    let c = decoded
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => TokenError::Expired,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
            _ => TokenError::Malformed,
        })?
        .claims;
    let role = Role::parse(&c.role).ok_or(TokenError::Malformed)?;
    Ok(Claims {
        sub: c.sub,
        role,
        iss: c.iss,
        aud: c.aud,
        iat: c.iat,
        exp: c.exp,
        jti: c.jti,
    })
}

/// Signs tokens with one Ed25519 key (the user service's access tokens, a service's own tokens).
pub struct Signer {
    kid: String,
    key: EncodingKey,
    public: [u8; 32],
}

impl Signer {
    /// From `kid:base64url(seed)`.
    pub fn from_config(value: &str) -> Result<Self, KeyConfigError> {
        let (kid, seed) = value
            .trim()
            .split_once(':')
            .ok_or_else(|| KeyConfigError("signing key: expected kid:seed".into()))?;
        let signing = SigningKey::from_bytes(&key32("signing key", seed)?);
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| KeyConfigError(e.to_string()))?;
        Ok(Self {
            kid: kid.trim().to_string(),
            key: EncodingKey::from_ed_der(der.as_bytes()),
            public: signing.verifying_key().to_bytes(),
        })
    }

    /// base64url of the public key, as it appears in `jwt_public_keys` and the JWKS `x`.
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public)
    }

    /// Signs `claims` with `alg: EdDSA` and this key's `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        // Signing with a well-formed Ed25519 key and serialisable claims cannot fail.
        jsonwebtoken::encode(&header, claims, &self.key).unwrap_or_default()
    }

    /// A service token from `service` to `audience`, valid for a minute.
    pub fn service_token(&self, service: &str, audience: &str, now: i64) -> String {
        self.sign(&WireClaims {
            sub: service.to_string(),
            role: Role::Service.as_str().to_string(),
            iss: service.to_string(),
            aud: audience.to_string(),
            iat: now,
            exp: now + SERVICE_TOKEN_TTL_SECS,
            jti: Uuid::now_v7().to_string(),
        })
    }
}

#[cfg(test)]
mod tests;
