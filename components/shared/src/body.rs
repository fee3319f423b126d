//! Untrusted JSON request bodies → typed values, or the contract's problem document.
//!
//! Order of checks follows the contract: size (413), media type (415), syntax (400), then
//! shape (422: unknown fields, missing fields, wrong types — each named by its JSON path).

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde_json::json;

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
    from_value(parse_value(body)?)
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
pub fn from_value<T: DeserializeOwned>(mut doc: serde_json::Value) -> Result<T, Problem> {
    if !doc.is_object() {
        return Err(Problem::invalid_field("body", "must be a JSON object"));
    }
    let mut errors = FieldErrors::new();
    let mut unknown = BTreeSet::new();
    // Field path → how many stand-ins were tried there.
    let mut patched: BTreeMap<String, usize> = BTreeMap::new();
    let mut named = 0;
    loop {
        // One deserialization, recording the paths of the fields it ignored.
        let mut on_ignored = |path: serde_ignored::Path<'_>| {
            unknown.insert(path.to_string());
        };
        let de = serde_ignored::Deserializer::new(&doc, &mut on_ignored);
        let e = match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(v) if errors.is_empty() && unknown.is_empty() => return Ok(v),
            Ok(_) => break,
            Err(e) => e,
        };
        let (field, message) = describe(&e);
        let inside_stand_in = patched.keys().any(|p| {
            let rest = field.strip_prefix(p.as_str());
            rest.is_some_and(|rest| rest.starts_with(['.', '[']))
        });
        let tries = patched.get(&field).map_or(0, |t| t + 1);
        patched.insert(field.clone(), tries);
        if tries == 0 && !inside_stand_in {
            errors.add(field.clone(), message);
            named += 1;
        }
        let stand_ins = [json!(""), json!(0), json!(false), json!([]), json!({})];
        let Some(stand_in) = stand_ins.into_iter().nth(tries) else {
            break;
        };
        if named >= MAX_FIELD_ERRORS || !set_at(&mut doc, &field, stand_in) {
            break;
        }
    }
    for path in unknown {
        errors.add(path, "unknown field");
    }
    Err(Problem::validation(errors))
}

/// The bad field's path (`items[0].quantity`, `email`) and the message for it.
fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> (String, String) {
    let path = e.path().to_string();
    let message = strip_position(e.inner());
    let root = path == "." || path.is_empty();
    // serde reports a missing field against its parent; name the field itself.
    let missing = message.strip_prefix("missing field `");
    match missing.and_then(|rest| rest.split('`').next()) {
        Some(name) if root => (name.to_string(), "is required".to_string()),
        Some(name) => (format!("{path}.{name}"), "is required".to_string()),
        None if root => ("body".to_string(), message),
        None => (path, message),
    }
}

/// Sets the value at a serde path (`a.b[2].c`) in `doc`, creating the last object member if
/// needed; false when the path does not lead into the document.
fn set_at(doc: &mut serde_json::Value, path: &str, new: serde_json::Value) -> bool {
    // A step is a member name or an index: `a.b[2].c` → `a`, `b`, `[2]`, `c`.
    let path = path.replace('[', ".[");
    let steps: Option<Vec<Result<usize, &str>>> = path
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix('[') {
            Some(i) => i.strip_suffix(']')?.parse().ok().map(Ok),
            None => Some(Err(s)),
        })
        .collect();
    let Some((last, parents)) = steps.as_deref().and_then(<[_]>::split_last) else {
        return false;
    };
    let at = parents.iter().try_fold(doc, |at, step| match step {
        Ok(i) => at.get_mut(*i),
        Err(name) => at.get_mut(*name),
    });
    match (last, at) {
        (Ok(i), Some(serde_json::Value::Array(items))) if *i < items.len() => items[*i] = new,
        (Err(name), Some(serde_json::Value::Object(members))) => {
            members.insert((*name).to_string(), new);
        }
        _ => return false,
    }
    true
}

/// True for `application/json` and `application/<x>+json`, with or without parameters.
pub fn is_json_media_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let (essence, _) = ct.split_once(';').unwrap_or((ct, ""));
    let essence = essence.trim().to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// serde_json appends "at line X column Y"; keep messages about the input, not the parser.
fn strip_position(e: &serde_json::Error) -> String {
    let mut s = e.to_string();
    s.truncate(s.find(" at line ").unwrap_or(s.len()));
    s
}

/// Maximum bracket depth outside strings, computed without building the document.
fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in body {
        // `escaped` is only ever set inside a string.
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, false, b'"') => in_string = !in_string,
            (false, _, b'[' | b'{') => {
                depth += 1;
                max = max.max(depth);
            }
            (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
#[allow(dead_code)] // The test bodies' fields are deserialized, not all read.
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Item {
        product_id: String,
        quantity: u32,
    }

    #[derive(Debug, Deserialize)]
    struct Body {
        items: Vec<Item>,
        note: Option<String>,
    }

    const JSON: Option<&str> = Some("application/json");

    #[test]
    fn accepts_a_valid_body_with_charset() {
        let body = br#"{"items":[{"product_id":"a","quantity":2}]}"#;
        let b: Body = parse_json(Some("application/json; charset=utf-8"), body).unwrap();
        assert_eq!(b.items[0].quantity, 2);
        assert!(b.note.is_none());
    }

    #[test]
    fn refuses_bodies_by_size_media_type_syntax_and_shape() {
        let big = format!("{{\"note\":\"{}\"}}", "x".repeat(MAX_BODY_BYTES));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let cases: [(&str, Option<&str>, &[u8], u16); 8] = [
            ("wrong media type", Some("text/plain"), b"{}", 415),
            ("no media type", None, b"{}", 415),
            ("oversized", JSON, big.as_bytes(), 413),
            ("malformed", JSON, b"{\"items\": [", 400),
            ("not UTF-8", JSON, b"\xff\xfe", 400),
            ("nested too deeply", JSON, deep.as_bytes(), 400),
            ("an array", JSON, b"[1,2]", 422),
            ("null", JSON, b"null", 422),
        ];
        for (case, ct, body, status) in cases {
            let p = parse_json::<Body>(ct, body).unwrap_err();
            assert_eq!(p.status, status, "{case}");
        }
    }

    #[test]
    fn names_every_unknown_missing_and_mistyped_field_with_422() {
        let cases: [(&str, &[&str]); 4] = [
            (
                r#"{"items":[{"product_id":"a","quantity":1,"colour":"red"}],"extra":1}"#,
                &["extra", "items.0.colour"],
            ),
            (r#"{"note":"x"}"#, &["items"]),
            (
                r#"{"items":[{"product_id":"a","quantity":-1}]}"#,
                &["items[0].quantity"],
            ),
            (
                r#"{"items":[{"product_id":1,"quantity":-1},{"quantity":2}]}"#,
                &[
                    "items[0].product_id",
                    "items[0].quantity",
                    "items[1].product_id",
                ],
            ),
        ];
        for (body, fields) in cases {
            let p = parse_json::<Body>(JSON, body.as_bytes()).unwrap_err();
            assert_eq!(p.status, 422, "{body}");
            let errors = p.errors.unwrap();
            for field in fields {
                assert!(errors.contains(field), "{field} not named: {errors:?}");
            }
        }
    }

    #[test]
    fn names_every_missing_and_mistyped_field_at_once() {
        #[derive(Debug, Deserialize)]
        struct Address {
            city: String,
            country: String,
        }
        #[derive(Debug, Deserialize)]
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
    }
}
