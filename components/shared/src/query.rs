//! Query strings → named parameters, refusing unknown or repeated names (400).

use std::collections::BTreeMap;

use crate::problem::Problem;

/// Decoded query parameters of one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query(BTreeMap<String, String>);

impl Query {
    /// Parses `query` (without the `?`), accepting only names in `allowed`, each at most once.
    pub fn parse(query: &str, allowed: &[&str]) -> Result<Self, Problem> {
        let refused = |detail: String| Err(Problem::bad_request(detail));
        let mut map = BTreeMap::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if !allowed.contains(&name.as_ref()) {
                return refused(format!("unknown query parameter `{name}`"));
            }
            if map.insert(name.to_string(), value.to_string()).is_some() {
                return refused(format!("query parameter `{name}` is repeated"));
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// An integer parameter within `range`, 400 otherwise.
    pub fn int_in(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>, Problem> {
        let parse = |raw: &str| match raw.parse::<i64>() {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(Problem::bad_request(format!(
                "`{name}` must be an integer from {} to {}",
                range.start(),
                range.end()
            ))),
        };
        self.get(name).map(parse).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_known_parameters() {
        let q = Query::parse("q=red%20shoes&limit=5", &["q", "limit"]).unwrap();
        assert_eq!(q.get("q"), Some("red shoes"));
        assert_eq!(q.int_in("limit", 1..=100).unwrap(), Some(5));
    }

    #[test]
    fn refuses_unknown_repeated_out_of_range_and_non_numeric_parameters() {
        for (query, allowed) in [("sort=x&evil=1", &["sort"][..]), ("q=a&q=b", &["q"])] {
            let refused = Query::parse(query, allowed).unwrap_err();
            assert_eq!(refused.status, 400, "{query}");
        }
        let q = Query::parse("limit=101&n=abc", &["limit", "n"]).unwrap();
        assert_eq!(q.int_in("limit", 1..=100).unwrap_err().status, 400);
        assert_eq!(q.int_in("n", 0..=1).unwrap_err().status, 400);
    }
}
