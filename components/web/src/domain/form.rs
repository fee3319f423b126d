//! `application/x-www-form-urlencoded` bodies and query strings as a small map.

use std::collections::HashMap;

/// Field name → value; the first occurrence of a name wins; names and values are capped so
/// a hostile body cannot grow the map without bound (bodies are at most 1 MiB anyway).
#[derive(Debug, Default, Clone)]
pub struct Form(HashMap<String, String>);

const MAX_FIELDS: usize = 64;
const MAX_VALUE_CHARS: usize = 4096;

impl Form {
    pub fn parse(raw: &[u8]) -> Self {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(raw).take(MAX_FIELDS) {
            let v: String = v.chars().take(MAX_VALUE_CHARS).collect();
            map.entry(k.into_owned()).or_insert(v);
        }
        Self(map)
    }

    /// The field's value, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// The field's value as sent (passwords are not trimmed).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Encodes pairs as a query string (empty values left out).
pub fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_decoded_trimmed_and_first_wins() {
        let f = Form::parse(b"q=red+shoe%21&q=other&blank=++&pw=+secret+");
        assert_eq!(f.get("q"), Some("red shoe!"));
        assert_eq!(f.get("blank"), None);
        assert_eq!(f.get("missing"), None);
        assert_eq!(f.raw("pw"), Some(" secret "));
    }

    #[test]
    fn query_strings_leave_empty_values_out() {
        assert_eq!(
            query_string([("q", "a b"), ("cursor", ""), ("sort", "newest")]),
            "q=a+b&sort=newest"
        );
    }
}
