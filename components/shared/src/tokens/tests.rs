//! Token verification and signing: the rules the contract and the services rely on.

use super::*;

const SEED_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"; // bytes 0..32
const SEED_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8"; // bytes 32..64

fn signer(kid: &str, seed: &str) -> Signer {
    Signer::from_config(&format!("{kid}:{seed}")).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(role: &str, iss: &str, aud: &str, exp_in: i64) -> WireClaims {
    WireClaims {
        sub: Uuid::now_v7().to_string(),
        role: role.into(),
        iss: iss.into(),
        aud: aud.into(),
        iat: now(),
        exp: now() + exp_in,
        jti: Uuid::now_v7().to_string(),
    }
}

fn verifier(keys: &str) -> Verifier {
    Verifier::new(keys, "iss", "aud", "product").unwrap()
}

#[test]
fn accepts_a_valid_token_and_reads_its_claims() {
    let s = signer("k1", SEED_A);
    let v = verifier(&format!("k1:{}", s.public_key_b64()));
    let c = v
        .verify_access_token(&s.sign(&claims("seller", "iss", "aud", 900)))
        .unwrap();
    assert_eq!(c.role, Role::Seller);
}

#[test]
fn rotation_accepts_old_and_new_keys_together() {
    let (old, new) = (signer("k1", SEED_A), signer("k2", SEED_B));
    let v = verifier(&format!(
        "k1:{},k2:{}",
        old.public_key_b64(),
        new.public_key_b64()
    ));
    assert!(
        v.verify_access_token(&old.sign(&claims("buyer", "iss", "aud", 900)))
            .is_ok()
    );
    assert!(
        v.verify_access_token(&new.sign(&claims("buyer", "iss", "aud", 900)))
            .is_ok()
    );
}

#[test]
fn refuses_expired_wrong_issuer_wrong_audience_and_unknown_key() {
    let s = signer("k1", SEED_A);
    let v = verifier(&format!("k1:{}", s.public_key_b64()));
    assert_eq!(
        v.verify_access_token(&s.sign(&claims("buyer", "iss", "aud", -120)))
            .unwrap_err(),
        TokenError::Expired
    );
    assert_eq!(
        v.verify_access_token(&s.sign(&claims("buyer", "evil", "aud", 900)))
            .unwrap_err(),
        TokenError::WrongIssuer
    );
    assert_eq!(
        v.verify_access_token(&s.sign(&claims("buyer", "iss", "other", 900)))
            .unwrap_err(),
        TokenError::WrongAudience
    );
    let stranger = signer("k9", SEED_B);
    assert_eq!(
        v.verify_access_token(&stranger.sign(&claims("buyer", "iss", "aud", 900)))
            .unwrap_err(),
        TokenError::UnknownKey
    );
}

#[test]
fn refuses_a_tampered_token() {
    let s = signer("k1", SEED_A);
    let v = verifier(&format!("k1:{}", s.public_key_b64()));
    let token = s.sign(&claims("buyer", "iss", "aud", 900));
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    payload["role"] = "admin".into();
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    assert_eq!(
        v.verify_access_token(&parts.join(".")).unwrap_err(),
        TokenError::BadSignature
    );
}

#[test]
fn refuses_alg_none_and_hs256_signed_with_the_public_key() {
    let s = signer("k1", SEED_A);
    let v = verifier(&format!("k1:{}", s.public_key_b64()));
    let body =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("admin", "iss", "aud", 900)).unwrap());
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
        body
    );
    assert!(matches!(
        v.verify_access_token(&none).unwrap_err(),
        TokenError::WrongAlgorithm | TokenError::Malformed
    ));
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let hs = jsonwebtoken::encode(
        &header,
        &claims("admin", "iss", "aud", 900),
        &EncodingKey::from_secret(s.public_key_b64().as_bytes()),
    )
    .unwrap();
    assert_eq!(
        v.verify_access_token(&hs).unwrap_err(),
        TokenError::WrongAlgorithm
    );
}

#[test]
fn service_tokens_are_checked_against_their_owner_and_audience() {
    let order = signer("s1", SEED_B);
    let users = signer("k1", SEED_A);
    let v = verifier(&format!("k1:{}", users.public_key_b64()))
        .with_service_keys(&format!("order:s1:{}", order.public_key_b64()))
        .unwrap();
    let t = order.service_token("order", "product", now());
    assert_eq!(
        v.authenticate_service(Some(&format!("Bearer {t}")), &["order"])
            .unwrap(),
        "order"
    );
    // Addressed to another service.
    let other = order.service_token("order", "delivery", now());
    assert_eq!(
        v.authenticate_service(Some(&format!("Bearer {other}")), &["order"])
            .unwrap_err()
            .status,
        401
    );
    // A user token on an internal endpoint is 403; no token is 401.
    let user = users.sign(&claims("admin", "iss", "aud", 900));
    assert_eq!(
        v.authenticate_service(Some(&format!("Bearer {user}")), &["order"])
            .unwrap_err()
            .status,
        403
    );
    assert_eq!(
        v.authenticate_service(None, &["order"]).unwrap_err().status,
        401
    );
    // A service token is not a user token.
    assert!(v.authenticate(Some(&format!("Bearer {t}"))).is_err());
    // A trusted service outside the allowed list is 403.
    assert_eq!(
        v.authenticate_service(Some(&format!("Bearer {t}")), &["delivery"])
            .unwrap_err()
            .status,
        403
    );
}

#[test]
fn services_may_use_the_same_key_id() {
    let (order, delivery) = (signer("s1", SEED_A), signer("s1", SEED_B));
    let users = signer("k1", SEED_A);
    let v = Verifier::new(
        &format!("k1:{}", users.public_key_b64()),
        "iss",
        "aud",
        "delivery",
    )
    .unwrap()
    .with_service_keys(&format!(
        "order:s1:{},delivery:s1:{}",
        order.public_key_b64(),
        delivery.public_key_b64()
    ))
    .unwrap();
    let own = delivery.service_token("delivery", "delivery", now());
    let from_order = order.service_token("order", "delivery", now());
    assert_eq!(v.verify_service_token(&own).unwrap().sub, "delivery");
    assert_eq!(v.verify_service_token(&from_order).unwrap().sub, "order");
    // Claiming to be `delivery` with order's key still fails.
    let forged = order.service_token("delivery", "delivery", now());
    assert!(v.verify_service_token(&forged).is_err());
}

#[test]
fn authenticate_maps_header_problems_to_401_with_challenge() {
    let s = signer("k1", SEED_A);
    let v = verifier(&format!("k1:{}", s.public_key_b64()));
    for h in [
        None,
        Some("Basic abc"),
        Some("Bearer "),
        Some("Bearer not.a.jwt"),
    ] {
        let p = v.authenticate(h).unwrap_err();
        assert_eq!(p.status, 401, "{h:?}");
        assert!(p.headers.iter().any(|(n, _)| *n == "www-authenticate"));
    }
}
