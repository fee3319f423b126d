//! Money as people read and type it: minor units ↔ "12.34".

/// `1999, "EUR"` → `"19.99 EUR"` (two decimals, as every currency the catalog uses).
pub fn format(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", abs / 100, abs % 100)
}

/// `"12"`, `"12.5"`, `"12.50"` → cents; `None` for anything else (negatives included).
pub fn parse_major(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    let (whole, frac) = raw.split_once(['.', ',']).unwrap_or((raw, ""));
    if whole.is_empty() || whole.len() > 12 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    whole.checked_mul(100)?.checked_add(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_are_shown_with_two_decimals() {
        assert_eq!(format(1999, "EUR"), "19.99 EUR");
        assert_eq!(format(5, "USD"), "0.05 USD");
        assert_eq!(format(-250, "EUR"), "-2.50 EUR");
    }

    #[test]
    fn typed_prices_become_cents() {
        assert_eq!(parse_major("12"), Some(1200));
        assert_eq!(parse_major(" 12.5 "), Some(1250));
        assert_eq!(parse_major("12,05"), Some(1205));
        for bad in ["", "-1", "1.234", "abc", "1e3", ".5"] {
            assert_eq!(parse_major(bad), None, "{bad}");
        }
    }
}
