//! What a valid search is: its parameters, its sort orders and their cursors, and the
//! bound on how much one text query may ask of the database.

use std::ops::RangeInclusive;

use marketplace_shared::FieldErrors;
use marketplace_shared::page;
use marketplace_shared::query::Query;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::has_control;
use super::product::{MAX_CATEGORY_CHARS, MAX_PRICE_CENTS};

/// Longest search text, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Most words in one search text (`or` not counted). Each word is one more term the database
/// matches and ranks for every candidate row: on 100,000 products, a `q` of 18 common words
/// OR'd together cost 3.8 s of database time, one word 0.3 s (docs/reliability.md, "Security").
pub const MAX_QUERY_TERMS: usize = 8;
/// Why a search request is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchError {
    /// A parameter that is not what it must be (400), in words.
    Malformed(String),
    /// Well-formed but beyond the service's bounds (422, naming the parameter).
    Invalid(FieldErrors),
}

fn malformed(detail: impl Into<String>) -> SearchError {
    SearchError::Malformed(detail.into())
}

/// The number of words of a search text: runs of letters and digits, as the text-search
/// parser splits them (`a-b` is two), without the `or` operator.
pub fn terms(q: &str) -> usize {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !w.eq_ignore_ascii_case("or"))
        .count()
}

fn int_in(
    query: &Query,
    name: &str,
    range: RangeInclusive<i64>,
) -> Result<Option<i64>, SearchError> {
    let Some(raw) = query.get(name) else {
        return Ok(None);
    };
    match raw.parse::<i64>() {
        Ok(v) if range.contains(&v) => Ok(Some(v)),
        _ => Err(malformed(format!(
            "`{name}` must be an integer from {range:?}"
        ))),
    }
}

/// Sort orders of `GET /api/products`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    Relevance,
    Newest,
    PriceAsc,
    PriceDesc,
}

/// Where the previous page ended, in the sort's own key (opaque to clients).
///
/// The sort is part of the cursor, so a cursor cannot be replayed against another order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "s", rename_all = "snake_case", deny_unknown_fields)]
pub enum Cursor {
    /// Last `(created_at in µs since the epoch, id)` seen, newest first.
    Newest { t: i64, id: Uuid },
    /// Last `(price_cents, id)` seen, cheapest first.
    PriceAsc { p: i64, id: Uuid },
    /// Last `(price_cents, id)` seen, dearest first.
    PriceDesc { p: i64, id: Uuid },
    /// Last `(score, id)` seen, best first.
    Relevance { r: f32, id: Uuid },
}

impl Cursor {
    pub fn sort(&self) -> Sort {
        match self {
            Cursor::Newest { .. } => Sort::Newest,
            Cursor::PriceAsc { .. } => Sort::PriceAsc,
            Cursor::PriceDesc { .. } => Sort::PriceDesc,
            Cursor::Relevance { .. } => Sort::Relevance,
        }
    }
}

/// The query parameters `GET /api/products` accepts.
#[rustfmt::skip]
pub const SEARCH_PARAMS: &[&str] =
    &["q", "category", "seller_id", "min_price", "max_price", "in_stock", "sort", "limit", "cursor"];

/// A validated search or browse request.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub q: Option<String>,
    pub category: Option<String>,
    pub seller_id: Option<Uuid>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: bool,
    pub sort: Sort,
    pub limit: u32,
    pub after: Option<Cursor>,
}

impl Search {
    /// Reads the parameters of `GET /api/products` (the route has already refused names
    /// outside [`SEARCH_PARAMS`] and repeated ones).
    pub fn parse(query: &Query) -> Result<Self, SearchError> {
        let q = match query.get("q").map(str::trim) {
            None => None,
            Some("") => return Err(malformed("`q` must not be empty")),
            Some(q) if q.chars().count() > MAX_QUERY_CHARS => {
                return Err(malformed(format!(
                    "`q` must be at most {MAX_QUERY_CHARS} characters"
                )));
            }
            Some(q) if has_control(q, false) => {
                return Err(malformed("`q` must not contain control characters"));
            }
            Some(q) if terms(q) > MAX_QUERY_TERMS => {
                let mut errors = FieldErrors::new();
                errors.add("q", format!("must have at most {MAX_QUERY_TERMS} words"));
                return Err(SearchError::Invalid(errors));
            }
            Some(q) => Some(q.to_string()),
        };
        let category = match query.get("category") {
            None => None,
            Some(c)
                if c.trim().is_empty()
                    || c.chars().count() > MAX_CATEGORY_CHARS
                    || has_control(c, false) =>
            {
                return Err(malformed(format!(
                    "`category` must be 1 to {MAX_CATEGORY_CHARS} printable characters"
                )));
            }
            Some(c) => Some(c.trim().to_string()),
        };
        let seller_id = query
            .get("seller_id")
            .map(Uuid::parse_str)
            .transpose()
            .map_err(|_| malformed("`seller_id` must be a UUID"))?;
        let min_price = int_in(query, "min_price", 0..=MAX_PRICE_CENTS)?;
        let max_price = int_in(query, "max_price", 0..=MAX_PRICE_CENTS)?;
        if let (Some(min), Some(max)) = (min_price, max_price)
            && min > max
        {
            return Err(malformed("`min_price` must not be above `max_price`"));
        }
        let in_stock = match query.get("in_stock") {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(malformed("`in_stock` must be true or false")),
        };
        let sort = match query.get("sort") {
            None if q.is_some() => Sort::Relevance,
            None => Sort::Newest,
            Some(s) => serde_json::from_value(s.into()).map_err(|_| {
                malformed("`sort` must be one of relevance, newest, price_asc, price_desc")
            })?,
        };
        if sort == Sort::Relevance && q.is_none() {
            return Err(malformed("`sort=relevance` needs `q`"));
        }
        let limit = int_in(query, "limit", 1..=i64::from(page::MAX_LIMIT))?
            .map_or(page::DEFAULT_LIMIT, |v| v as u32);
        let after = match query.get("cursor") {
            None => None,
            Some(c) => match page::decode_cursor::<Cursor>(c) {
                Ok(cursor) if cursor.sort() == sort => Some(cursor),
                _ => return Err(malformed("invalid cursor")),
            },
        };
        Ok(Search {
            q,
            category,
            seller_id,
            min_price,
            max_price,
            in_stock,
            sort,
            limit,
            after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parses a query string as the route does (unknown and repeated names are 400 there).
    fn parse(query: &str) -> Result<Search, SearchError> {
        let query = Query::parse(query, SEARCH_PARAMS).map_err(|p| malformed(p.detail))?;
        Search::parse(&query)
    }

    #[test]
    fn search_defaults_follow_the_contract() {
        let s = parse("").unwrap();
        assert_eq!((s.sort, s.limit, s.in_stock), (Sort::Newest, 20, false));
        assert_eq!(parse("q=red%20shoes").unwrap().sort, Sort::Relevance);
        let s = parse("q=x&sort=price_desc&in_stock=true&min_price=5&max_price=9").unwrap();
        assert_eq!(
            (s.sort, s.in_stock, s.min_price, s.max_price),
            (Sort::PriceDesc, true, Some(5), Some(9))
        );
    }

    #[test]
    fn a_text_of_more_than_eight_words_is_refused_naming_q() {
        assert_eq!(terms("red leather-chair or  oak, desk"), 5);
        assert_eq!(terms("a-b-c-d"), 4, "the parser splits on punctuation");
        for (q, ok) in [
            ("one+two+three+four+five+six+seven+eight", true),
            ("one+two+three+four+five+six+seven+eight+nine", false),
            ("a-b-c-d-e-f-g-h-i", false),
            // `or` is the operator, not a word: eight words OR'd together are fine.
            ("a+or+b+or+c+or+d+or+e+or+f+or+g+or+h", true),
        ] {
            match parse(&format!("q={q}")) {
                Ok(_) if ok => {}
                Err(SearchError::Invalid(errors)) if !ok => assert!(errors.contains("q"), "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_cursor_only_continues_its_own_sort_and_keeps_the_exact_score() {
        let id = Uuid::nil();
        let c = page::encode_cursor(&Cursor::PriceAsc { p: 5, id });
        let forged = page::encode_cursor(&json!({"s": "newest", "t": "x", "id": "y"}));
        assert!(parse(&format!("sort=price_asc&cursor={c}")).is_ok());
        for q in [
            format!("sort=price_desc&cursor={c}"),
            format!("cursor={forged}"),
        ] {
            assert!(matches!(parse(&q), Err(SearchError::Malformed(_))), "{q}");
        }
        let r = 0.123_456_79_f32;
        let cursor = Cursor::Relevance { r, id };
        let back: Cursor = page::decode_cursor(&page::encode_cursor(&cursor)).unwrap();
        assert_eq!(back, cursor);
    }
}
