//! The search form: what the browser sends → the product service's query parameters.
//! Ranking, typo tolerance and filtering are the product service's; this only translates.

use super::form::{Form, query_string};
use super::money;

/// The sort orders the product service offers, with their labels.
pub const SORTS: &[(&str, &str)] = &[
    ("relevance", "Best match"),
    ("newest", "Newest"),
    ("price_asc", "Price: low to high"),
    ("price_desc", "Price: high to low"),
];

pub const PAGE_SIZE: &str = "20";

/// A parsed search: every field as the person typed it (to refill the form) and the cents.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Search {
    pub q: String,
    pub category: String,
    pub min_price: String,
    pub max_price: String,
    pub in_stock: bool,
    pub sort: String,
    pub cursor: String,
    #[serde(skip)]
    min_cents: Option<i64>,
    #[serde(skip)]
    max_cents: Option<i64>,
}

impl Search {
    /// Parses the query string; the messages name the fields that could not be understood
    /// (those are then left out of the search rather than failing it).
    pub fn parse(query: &str) -> (Self, Vec<String>) {
        let f = Form::parse(query.as_bytes());
        let mut problems = Vec::new();
        let text = |name: &str, max: usize| -> String {
            f.get(name).unwrap_or("").chars().take(max).collect()
        };
        let mut s = Search {
            q: text("q", 200),
            category: text("category", 100),
            min_price: text("min_price", 20),
            max_price: text("max_price", 20),
            in_stock: matches!(f.get("in_stock"), Some("true" | "on" | "1")),
            sort: text("sort", 20),
            cursor: text("cursor", 500),
            ..Default::default()
        };
        for (raw, cents, label) in [
            (&s.min_price, &mut s.min_cents, "minimum price"),
            (&s.max_price, &mut s.max_cents, "maximum price"),
        ] {
            if !raw.is_empty() {
                *cents = money::parse_major(raw);
                if cents.is_none() {
                    problems.push(format!("The {label} must be an amount such as 12.50."));
                }
            }
        }
        if !s.sort.is_empty() && !SORTS.iter().any(|(k, _)| *k == s.sort) {
            problems.push("Unknown sort order; showing the default.".into());
            s.sort.clear();
        }
        if s.sort == "relevance" && s.q.is_empty() {
            s.sort.clear();
        }
        (s, problems)
    }

    /// The search's own fields as query pairs, with the prices `min` and `max`.
    fn pairs<'a>(&'a self, min: &'a str, max: &'a str) -> [(&'a str, &'a str); 6] {
        [
            ("q", self.q.as_str()),
            ("category", self.category.as_str()),
            ("min_price", min),
            ("max_price", max),
            ("in_stock", if self.in_stock { "true" } else { "" }),
            ("sort", self.sort.as_str()),
        ]
    }

    /// The query string for `GET /api/products`.
    pub fn api_query(&self) -> String {
        let min = self.min_cents.map(|c| c.to_string()).unwrap_or_default();
        let max = self.max_cents.map(|c| c.to_string()).unwrap_or_default();
        let tail = [("limit", PAGE_SIZE), ("cursor", self.cursor.as_str())];
        query_string(self.pairs(&min, &max).into_iter().chain(tail))
    }

    /// The storefront query string of this search at another page (`cursor`; "" = first).
    pub fn page_query(&self, cursor: &str) -> String {
        let pairs = self.pairs(&self.min_price, &self.max_price);
        query_string(pairs.into_iter().chain([("cursor", cursor)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_becomes_the_product_services_query() {
        let (s, problems) = Search::parse(
            "q=red+shoes&category=shoes&min_price=10&max_price=20.5&in_stock=on&sort=price_asc",
        );
        assert!(problems.is_empty());
        assert_eq!(
            s.api_query(),
            "q=red+shoes&category=shoes&min_price=1000&max_price=2050&in_stock=true&sort=price_asc&limit=20"
        );
    }

    #[test]
    fn unreadable_prices_and_sorts_are_named_and_left_out() {
        let (s, problems) = Search::parse("min_price=cheap&sort=random");
        assert_eq!(problems.len(), 2);
        assert_eq!(s.api_query(), "limit=20");
        assert_eq!(s.min_price, "cheap", "the form is refilled as typed");
    }

    #[test]
    fn the_next_page_keeps_the_search() {
        let (s, _) = Search::parse("q=lamp&cursor=abc");
        assert_eq!(s.page_query("next1"), "q=lamp&cursor=next1");
        assert_eq!(s.api_query(), "q=lamp&limit=20&cursor=abc");
    }

    #[test]
    fn relevance_needs_words_to_rank_by() {
        let (s, _) = Search::parse("sort=relevance");
        assert_eq!(s.api_query(), "limit=20");
    }
}
