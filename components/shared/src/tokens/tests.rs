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

/// `service`'s verifier, configured as the Spin variables write keys: `kid:key` for each of
/// `users`, `service:kid:key` for each of `services`.
fn verifier(service: &str, users: &[&Signer], services: &[(&str, &Signer)]) -> Verifier {
    let key = |s: &Signer| format!("{}:{}", s.kid, s.public_key_b64());
    let access: Vec<String> = users.iter().map(|s| key(s)).collect();
    let owned: Vec<String> = services
        .iter()
        .map(|(n, s)| format!("{n}:{}", key(s)))
        .collect();
    Verifier::new(&access.join(","), "iss", "aud", service)
        .and_then(|v| v.with_service_keys(&owned.join(",")))
        .unwrap()
}

#[test]
fn accepts_valid_tokens_from_every_configured_key_and_reads_their_claims() {
    // Rotation: old and new keys are accepted together.
    let (old, new) = (signer("k1", SEED_A), signer("k2", SEED_B));
    let v = verifier("product", &[&old, &new], &[]);
    for (s, role) in [(&old, Role::Seller), (&new, Role::Buyer)] {
        let token = s.sign(&claims(role.as_str(), "iss", "aud", 900));
        let claims = v.verify_access_token(&token).unwrap();
        assert_eq!(claims.role, role, "{}", s.kid);
    }
}

#[test]
fn refuses_expired_tampered_misaddressed_and_foreign_tokens() {
    use TokenError::*;
    let (s, k9) = (signer("k1", SEED_A), signer("k9", SEED_B));
    let v = verifier("product", &[&s], &[]);
    let sign = |s: &Signer, iss, aud, exp_in| s.sign(&claims("buyer", iss, aud, exp_in));
    let buyer = sign(&s, "iss", "aud", 900);
    let buyer: Vec<&str> = buyer.split('.').collect();
    let admin = s.sign(&claims("admin", "iss", "aud", 900));
    let admin = admin.split('.').nth(1).unwrap();
    // A buyer's header and signature around an admin's payload.
    let tampered = format!("{}.{admin}.{}", buyer[0], buyer[2]);
    let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
    let none = format!("{none}.{admin}.");
    // HS256 signed with the public key as the secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let secret = EncodingKey::from_secret(s.public_key_b64().as_bytes());
    let hs = jsonwebtoken::encode(&header, &claims("admin", "iss", "aud", 900), &secret);
    let cases = [
        ("expired", sign(&s, "iss", "aud", -120), Expired),
        ("issuer", sign(&s, "evil", "aud", 900), WrongIssuer),
        ("audience", sign(&s, "iss", "other", 900), WrongAudience),
        ("unknown key", sign(&k9, "iss", "aud", 900), UnknownKey),
        ("tampered", tampered, BadSignature),
        // `none` is no algorithm jsonwebtoken knows: the header does not parse.
        ("alg none", none, Malformed),
        ("hs256", hs.unwrap(), WrongAlgorithm),
    ];
    for (case, token, expected) in cases {
        let refused = v.verify_access_token(&token).unwrap_err();
        assert_eq!(refused, expected, "{case}");
    }
}

#[test]
fn service_tokens_are_checked_against_their_owner_and_audience() {
    let (order, users) = (signer("s1", SEED_B), signer("k1", SEED_A));
    let v = verifier("product", &[&users], &[("order", &order)]);
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    let t = bearer(&order.service_token("order", "product", now()));
    let caller = v.authenticate_service(t.as_deref(), &["order"]);
    assert_eq!(caller.unwrap(), "order");
    let elsewhere = bearer(&order.service_token("order", "delivery", now()));
    let user = bearer(&users.sign(&claims("admin", "iss", "aud", 900)));
    let cases = [
        ("addressed to another service", &elsewhere, "order", 401),
        ("a user token", &user, "order", 403),
        ("no token", &None, "order", 401),
        ("a service outside the allowed list", &t, "delivery", 403),
    ];
    for (case, header, allowed, status) in cases {
        let p = v.authenticate_service(header.as_deref(), &[allowed]);
        assert_eq!(p.unwrap_err().status, status, "{case}");
    }
    // A service token is not a user token.
    assert!(v.authenticate(t.as_deref()).is_err());
}

#[test]
fn services_may_use_the_same_key_id() {
    let (order, delivery) = (signer("s1", SEED_A), signer("s1", SEED_B));
    let users = signer("k1", SEED_A);
    let services = [("order", &order), ("delivery", &delivery)];
    let v = verifier("delivery", &[&users], &services);
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
    let v = verifier("product", &[&signer("k1", SEED_A)], &[]);
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

#[test]
fn malformed_key_configuration_names_the_variable_and_the_expected_shape() {
    let key = format!("k1:{}", signer("k1", SEED_A).public_key_b64());
    let cases: [(&str, &str, &str); 5] = [
        ("", "", "jwt_public_keys is empty"),
        ("k1", "", "jwt_public_keys: expected kid:key"),
        ("k1:abc", "", "jwt_public_keys: expected 32 bytes"),
        (
            &key,
            "o:s1",
            "service_public_keys: expected service:kid:key",
        ),
        (&key, "o:s1:*", "service_public_keys: not base64url"),
    ];
    for (access, services, expected) in cases {
        let v = Verifier::new(access, "iss", "aud", "product");
        let e = v.and_then(|v| v.with_service_keys(services)).err().unwrap();
        let expected = format!("invalid key configuration: {expected}");
        assert_eq!(e.to_string(), expected);
    }
}
