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

/// Converts a parsed document into `T`, naming unknown, missing and mistyped fields (422).
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Problem> {
    if !value.is_object() {
        return Err(Problem::invalid_field("body", "must be a JSON object"));
    }
    let mut unknown = Vec::new();
    let result: Result<T, serde_path_to_error::Error<serde_json::Error>> = {
        let mut on_ignored = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let ignored = serde_ignored::Deserializer::new(&value, &mut on_ignored);
        serde_path_to_error::deserialize(ignored)
    };
    let mut errors = FieldErrors::new();
    for path in unknown {
        errors.add(path, "unknown field");
    }
    match result {
        Ok(v) if errors.is_empty() => Ok(v),
        Ok(_) => Err(Problem::validation(errors)),
        Err(e) => {
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
            errors.add(field, message);
            Err(Problem::validation(errors))
        }
    }
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
    fn refuses_non_object_documents() {
        assert_eq!(problem(JSON, "[1,2]").status, 422);
        assert_eq!(problem(JSON, "null").status, 422);
    }
}
