//! RFC 9457 problem documents: the one shape every error answer takes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Field name → messages, for validation failures (`errors` in the document).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a message against a field (a JSON path such as `items[0].quantity`).
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.entry(field.into()).or_default().push(message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// `Ok(())` when nothing was recorded, else a 422 naming every bad field.
    pub fn into_result(self) -> Result<(), Problem> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Problem::validation(self))
        }
    }
}

/// One product a stock reservation could not cover: the `short_items` of a 409 (API v1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortItem {
    pub product_id: String,
    /// Units asked for, summed over the request's lines of this product.
    pub requested: i64,
    /// Units in stock when the reservation was refused.
    pub available: i64,
}

/// An error answer: status, RFC 9457 body (serialized in the document's field order) and the
/// headers the contract requires with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{status} {title}: {detail}")]
pub struct Problem {
    /// Short slug naming the problem type; the `type` URI is derived from it.
    #[serde(rename = "type", serialize_with = "type_uri")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Boxed, like `short_items`: rare, and `Problem` travels in every `Result`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Box<FieldErrors>>,
    /// The products short of stock, on a 409 for insufficient stock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_items: Option<Box<Vec<ShortItem>>>,
    /// Extra headers (`WWW-Authenticate`, `Allow`, `Retry-After`).
    #[serde(skip)]
    pub headers: Vec<(&'static str, String)>,
}

/// The `type` URI of a problem kind.
fn type_uri<S: serde::Serializer>(kind: &&str, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("https://marketplace.example/problems/{kind}"))
}

/// Media type of problem documents.
pub const CONTENT_TYPE: &str = "application/problem+json";

impl Problem {
    fn new(
        status: u16,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            errors: None,
            short_items: None,
            headers: Vec::new(),
        }
    }

    /// 400: malformed JSON or query string.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, "bad-request", "Bad request", detail)
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", "Unauthorized", detail)
            .with_header("www-authenticate", "Bearer".to_string())
    }

    /// 403: authenticated but not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(403, "forbidden", "Forbidden", detail)
    }

    /// 404: unknown resource, or one the caller may not know exists.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "not-found", "Not found", detail)
    }

    /// 405 with the `Allow` header listing the methods the path accepts.
    pub fn method_not_allowed(allowed: &[&str]) -> Self {
        let allowed = allowed.join(", ");
        let detail = format!("allowed: {allowed}");
        Self::new(405, "method-not-allowed", "Method not allowed", detail)
            .with_header("allow", allowed)
    }

    /// 409: the resource's state does not allow this.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(409, "conflict", "Conflict", detail)
    }

    /// 409 for insufficient stock, naming every short product in `short_items`.
    pub fn insufficient_stock(short_items: Vec<ShortItem>) -> Self {
        let ids: Vec<&str> = short_items.iter().map(|s| s.product_id.as_str()).collect();
        let detail = format!("insufficient stock for products: {}", ids.join(", "));
        let short_items = Some(Box::new(short_items));
        Self {
            short_items,
            ..Self::conflict(detail)
        }
    }

    /// 413: body over the 1 MiB limit.
    pub fn payload_too_large() -> Self {
        let detail = "the body is larger than 1 MiB";
        Self::new(413, "payload-too-large", "Payload too large", detail)
    }

    /// 415: body that is not `application/json`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "the body must be application/json",
        )
    }

    /// 422 naming every bad field.
    pub fn validation(errors: FieldErrors) -> Self {
        let detail = "one or more fields are invalid";
        let errors = Some(Box::new(errors));
        Self {
            errors,
            ..Self::new(422, "validation", "Invalid input", detail)
        }
    }

    /// 422 about a single field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = FieldErrors::new();
        errors.add(field, message);
        Self::validation(errors)
    }

    /// 422 without a particular field (e.g. an idempotency key reused with another body).
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(422, "unprocessable", "Unprocessable request", detail)
    }

    /// 429 with `Retry-After` in seconds.
    pub fn too_many_requests(retry_after_secs: u64, detail: impl Into<String>) -> Self {
        Self::new(429, "too-many-requests", "Too many requests", detail)
            .with_header("retry-after", retry_after_secs.max(1).to_string())
    }

    /// 503 naming the dependency that is down.
    pub fn service_unavailable(dependency: &str) -> Self {
        let detail = format!("dependency unavailable: {dependency}");
        Self::new(503, "service-unavailable", "Service unavailable", detail)
    }

    /// 500 with a generic body; callers log the cause themselves.
    pub fn internal() -> Self {
        let detail = "the server could not complete the request";
        Self::new(500, "internal", "Internal error", detail)
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The `application/problem+json` body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_document_names_every_field_in_rfc_9457_order() {
        let mut e = FieldErrors::new();
        e.add("title", "must not be empty");
        e.add("price_cents", "must be positive");
        let expected = concat!(
            r#"{"type":"https://marketplace.example/problems/validation","#,
            r#""title":"Invalid input","status":422,"detail":"one or more fields are invalid","#,
            r#""errors":{"price_cents":["must be positive"],"title":["must not be empty"]}}"#,
        );
        assert_eq!(Problem::validation(e).to_json(), expected.as_bytes());
    }

    #[test]
    fn insufficient_stock_names_every_short_product_and_other_problems_carry_no_list() {
        let doc = |p: Problem| serde_json::from_slice::<serde_json::Value>(&p.to_json()).unwrap();
        let short = serde_json::json!([{"product_id": "p1", "requested": 3, "available": 1}]);
        let items = serde_json::from_value(short.clone()).unwrap();
        let stock = doc(Problem::insufficient_stock(items));
        assert_eq!(stock["status"], 409);
        assert_eq!(stock["short_items"], short);
        for doc in [doc(Problem::conflict("x")), doc(Problem::unauthorized("x"))] {
            let lists = ["errors", "short_items"].map(|k| doc.get(k).cloned());
            assert_eq!(lists, [None, None], "{doc}");
        }
    }

    #[test]
    fn problems_carry_the_headers_the_contract_requires() {
        let allow = Problem::method_not_allowed(&["GET", "PATCH"]);
        assert_eq!(allow.headers, [("allow", "GET, PATCH".to_string())]);
        let challenge = Problem::unauthorized("missing token");
        assert_eq!(
            challenge.headers,
            [("www-authenticate", "Bearer".to_string())]
        );
        let retry = Problem::too_many_requests(0, "slow down");
        assert_eq!(retry.headers, [("retry-after", "1".to_string())]);
    }
}
