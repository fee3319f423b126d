//! Untrusted JSON request bodies → typed values, or the contract's problem document.
//!
//! Order of checks follows the contract: size (413), media type (415), syntax (400), then
//! shape (422: unknown fields, missing fields, wrong types — each named by its JSON path).

use serde::de::DeserializeOwned;

use crate::problem::{FieldErrors, Problem};

/// The largest body any endpoint accepts (contract: 413 above 1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How deep JSON may nest before it is refused; real payloads need fewer than 10 levels.
pub const MAX_DEPTH: usize = 32;

/// Parses a JSON request body into `T`.
///
/// `content_type` is the request's `Content-Type` header (parameters like `charset` allowed).
/// Unknown fields anywhere in the document are refused with 422.
pub fn parse_json<T: DeserializeOwned>(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<T, Problem> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Problem::payload_too_large());
    }
    if !is_json_media_type(content_type) {
        return Err(Problem::unsupported_media_type());
    }
    let value = parse_value(body)?;
    from_value(value)
}

/// Parses bytes as a JSON document (400 when they are not one), refusing absurd nesting.
pub fn parse_value(body: &[u8]) -> Result<serde_json::Value, Problem> {
    if nesting_depth(body) > MAX_DEPTH {
        return Err(Problem::bad_request(
            "the JSON document is nested too deeply",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request(format!("malformed JSON: {}", strip_position(&e))))
}

/// How many bad fields one answer names at most (each costs one more deserialization).
const MAX_FIELD_ERRORS: usize = 32;

/// Converts a parsed document into `T`, naming **every** unknown, missing and mistyped field
/// (422), as the contract asks.
///
/// serde stops at the first error, so each bad field is named, then patched in a copy of the
/// document with a stand-in value (`""`, `0`, `false`, `[]`, `{}`, in that order, until one
/// has the right type) and the copy is deserialized again, until it passes or
/// [`MAX_FIELD_ERRORS`] fields are named. Errors inside a stand-in are not reported.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Problem> {
    if !value.is_object() {
        return Err(Problem::invalid_field("body", "must be a JSON object"));
    }
    let mut doc = value;
    let mut errors = FieldErrors::new();
    let mut unknown: Vec<String> = Vec::new();
    // Field path → how many stand-ins were tried there.
    let mut patched: Vec<(String, usize)> = Vec::new();
    let mut named = 0;
    loop {
        let (result, ignored) = attempt::<T>(&doc);
        for path in ignored {
            if !unknown.contains(&path) {
                unknown.push(path);
            }
        }
        let e = match result {
            Ok(v) if errors.is_empty() && unknown.is_empty() => return Ok(v),
            Ok(_) => break,
            Err(e) => e,
        };
        let (field, message) = describe(&e);
        let inside_stand_in = patched.iter().any(|(p, _)| {
            field.len() > p.len()
                && field.starts_with(p.as_str())
                && matches!(field.as_bytes()[p.len()], b'.' | b'[')
        });
        let tries = match patched.iter_mut().find(|(p, _)| *p == field) {
            Some((_, tries)) => {
                *tries += 1;
                *tries
            }
            None => {
                if !inside_stand_in {
                    errors.add(field.clone(), message);
                    named += 1;
                }
                patched.push((field.clone(), 0));
                0
            }
        };
        let Some(stand_in) = STAND_INS.get(tries) else {
            break;
        };
        if named >= MAX_FIELD_ERRORS || !set_at(&mut doc, &field, stand_in()) {
            break;
        }
    }
    for path in unknown {
        errors.add(path, "unknown field");
    }
    Err(Problem::validation(errors))
}

/// Stand-in values for a bad field, tried in order until one has the right type.
const STAND_INS: [fn() -> serde_json::Value; 5] = [
    || serde_json::json!(""),
    || serde_json::json!(0),
    || serde_json::json!(false),
    || serde_json::json!([]),
    || serde_json::json!({}),
];

type Attempt<T> = (
    Result<T, serde_path_to_error::Error<serde_json::Error>>,
    Vec<String>,
);

/// One deserialization of `doc`: the result and the paths of the fields it ignored.
fn attempt<T: DeserializeOwned>(doc: &serde_json::Value) -> Attempt<T> {
    let mut ignored = Vec::new();
    let result = {
        let mut on_ignored = |path: serde_ignored::Path<'_>| ignored.push(path.to_string());
        let de = serde_ignored::Deserializer::new(doc, &mut on_ignored);
        serde_path_to_error::deserialize(de)
    };
    (result, ignored)
}

/// The bad field's path (`items[0].quantity`, `email`) and the message for it.
fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> (String, String) {
    let path = e.path().to_string();
    let message = strip_position(e.inner());
    // serde reports a missing field against its parent; name the field itself.
    let field = match missing_field_name(&message) {
        Some(name) if path == "." || path.is_empty() => name.to_string(),
        Some(name) => format!("{path}.{name}"),
        None if path == "." || path.is_empty() => "body".to_string(),
        None => path,
    };
    let message = if message.starts_with("missing field") {
        "is required".to_string()
    } else {
        message
    };
    (field, message)
}

/// Sets the value at a serde path (`a.b[2].c`) in `doc`, creating the last object member if
/// needed; false when the path does not lead into the document.
fn set_at(doc: &mut serde_json::Value, path: &str, new: serde_json::Value) -> bool {
    let mut steps: Vec<Result<usize, &str>> = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            steps.push(Err(name));
        }
        while !rest.is_empty() {
            let Some((index, after)) = rest.split_once(']') else {
                return false;
            };
            let Ok(index) = index.parse() else {
                return false;
            };
            steps.push(Ok(index));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut at = doc;
    for step in parents {
        let next = match step {
            Ok(i) => at.get_mut(*i),
            Err(name) => at.get_mut(*name),
        };
        let Some(next) = next else { return false };
        at = next;
    }
    match (last, at) {
        (Ok(i), serde_json::Value::Array(items)) if *i < items.len() => items[*i] = new,
        (Err(name), serde_json::Value::Object(members)) => {
            members.insert((*name).to_string(), new);
        }
        _ => return false,
    }
    true
}

/// True for `application/json` and `application/<x>+json`, with or without parameters.
pub fn is_json_media_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn missing_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// serde_json appends "at line X column Y"; keep messages about the input, not the parser.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Maximum bracket depth outside strings, computed without building the document.
fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        product_id: String,
        quantity: u32,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        items: Vec<Item>,
        note: Option<String>,
    }

    fn problem(ct: Option<&str>, body: &str) -> Problem {
        parse_json::<Body>(ct, body.as_bytes()).unwrap_err()
    }

    const JSON: Option<&str> = Some("application/json");

    #[test]
    fn accepts_a_valid_body_with_charset() {
        let b: Body = parse_json(
            Some("application/json; charset=utf-8"),
            br#"{"items":[{"product_id":"a","quantity":2}]}"#,
        )
        .unwrap();
        assert_eq!(b.items[0].quantity, 2);
        assert!(b.note.is_none());
    }

    #[test]
    fn refuses_wrong_or_missing_content_type_with_415() {
        assert_eq!(problem(Some("text/plain"), "{}").status, 415);
        assert_eq!(problem(None, "{}").status, 415);
    }

    #[test]
    fn refuses_oversized_bodies_with_413() {
        let big = format!("{{\"note\":\"{}\"}}", "x".repeat(MAX_BODY_BYTES));
        assert_eq!(problem(JSON, &big).status, 413);
    }

    #[test]
    fn refuses_malformed_json_with_400() {
        assert_eq!(problem(JSON, "{\"items\": [").status, 400);
        assert_eq!(
            parse_json::<Body>(JSON, b"\xff\xfe").unwrap_err().status,
            400
        );
    }

    #[test]
    fn refuses_deep_nesting_with_400() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(problem(JSON, &deep).status, 400);
    }

    #[test]
    fn names_unknown_fields_with_422() {
        let p = problem(
            JSON,
            r#"{"items":[{"product_id":"a","quantity":1,"colour":"red"}],"extra":1}"#,
        );
        assert_eq!(p.status, 422);
        let errors = p.errors.unwrap();
        assert!(errors.contains("extra"), "{errors:?}");
        assert!(
            errors.contains("items.0.colour") || errors.contains("items[0].colour"),
            "{errors:?}"
        );
    }

    #[test]
    fn names_missing_and_mistyped_fields_with_422() {
        let p = problem(JSON, r#"{"note":"x"}"#);
        assert_eq!(p.status, 422);
        assert!(p.errors.unwrap().contains("items"));
        let p = problem(JSON, r#"{"items":[{"product_id":"a","quantity":-1}]}"#);
        assert_eq!(p.status, 422);
        assert!(p.errors.unwrap().contains("items[0].quantity"));
    }

    #[test]
    fn names_every_missing_and_mistyped_field_at_once() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Address {
            city: String,
            country: String,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Register {
            email: String,
            password: String,
            count: u32,
            tags: Vec<String>,
            address: Address,
        }
        let p = parse_json::<Register>(JSON, br#"{"count": "many", "extra": 1}"#).unwrap_err();
        assert_eq!(p.status, 422);
        let errors = p.errors.unwrap();
        for field in ["email", "password", "count", "tags", "address", "extra"] {
            assert!(errors.contains(field), "{field} not named: {errors:?}");
        }
        // Nothing inside a stand-in (the missing address) is named.
        assert!(!errors.contains("address.city"), "{errors:?}");
        let p = parse_json::<Body>(
            JSON,
            br#"{"items":[{"product_id":1,"quantity":-1},{"quantity":2}]}"#,
        )
        .unwrap_err();
        let errors = p.errors.unwrap();
        for field in [
            "items[0].product_id",
            "items[0].quantity",
            "items[1].product_id",
        ] {
            assert!(errors.contains(field), "{field} not named: {errors:?}");
        }
    }

    #[test]
    fn refuses_non_object_documents() {
        assert_eq!(problem(JSON, "[1,2]").status, 422);
        assert_eq!(problem(JSON, "null").status, 422);
    }
}
