//! Timestamps as the contract writes them: RFC 3339, UTC, `Z`.

use chrono::{DateTime, SecondsFormat, Utc};

/// Formats with millisecond precision and a `Z` (`2026-11-28T12:00:00.000Z`).
pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses any RFC 3339 timestamp (any offset) into UTC.
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Now, in UTC.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_z_and_parses_offsets() {
        let t = parse("2026-11-28T13:00:00+01:00").unwrap();
        assert_eq!(format(t), "2026-11-28T12:00:00.000Z");
        assert!(parse("yesterday").is_none());
    }
}
