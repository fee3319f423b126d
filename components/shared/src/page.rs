//! Cursor pagination: `?limit=` (1..=100, default 20) and an opaque `?cursor=`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::problem::Problem;
use crate::query::Query;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// Reads `limit` from the query (400 when outside 1..=100).
pub fn limit(query: &Query) -> Result<u32, Problem> {
    Ok(query
        .int_in("limit", 1..=i64::from(MAX_LIMIT))?
        .map_or(DEFAULT_LIMIT, |v| v as u32))
}

/// Encodes a position (whatever the service keys its ordering by) as an opaque cursor.
pub fn encode_cursor<T: Serialize>(position: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default())
}

/// Decodes a cursor produced by [`encode_cursor`]; anything else is a 400.
pub fn decode_cursor<T: DeserializeOwned>(cursor: &str) -> Result<T, Problem> {
    let invalid = || Problem::bad_request("invalid cursor");
    if cursor.len() > 1024 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

/// A page of a list: `{"items": [...], "next_cursor": "..." | null}`.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = encode_cursor(&("2026-11-28T12:00:00Z", 42));
        let back: (String, i64) = decode_cursor(&c).unwrap();
        assert_eq!(back.1, 42);
        for garbage in ["!!!".to_string(), encode_cursor(&"x"), "A".repeat(1025)] {
            let refused = decode_cursor::<(String, i64)>(&garbage).unwrap_err();
            assert_eq!(refused.status, 400, "{garbage}");
        }
    }

    #[test]
    fn limit_defaults_and_bounds() {
        for (query, expected) in [("", Ok(20)), ("limit=0", Err(400)), ("limit=100", Ok(100))] {
            let got = limit(&Query::parse(query, &["limit"]).unwrap()).map_err(|p| p.status);
            assert_eq!(got, expected, "{query}");
        }
    }
}
