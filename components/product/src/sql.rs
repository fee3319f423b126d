//! The SQL the product service sends, built as plain strings (std only, no I/O).
//!
//! Kept free of any dependency so that the integration tests can include this very file
//! (`#[path = ...] mod`) and `EXPLAIN` the exact statements the component runs against
//! 100,000 products: a query shape that would scan the table fails a test, not production.

/// A bind parameter, typed as the placeholder's cast says.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// `$n::text`
    Text(String),
    /// `$n::int8`
    Int(i64),
    /// `$n::real`
    Real(f32),
    /// `$n::uuid` (canonical text form; bound as a UUID)
    Uuid(String),
}

/// Sort orders, as in the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Relevance,
    Newest,
    PriceAsc,
    PriceDesc,
}

/// Where the previous page ended (the key of its last row in the sort's order).
#[derive(Debug, Clone, PartialEq)]
pub enum After {
    /// `created_at` in µs since the epoch, and the id.
    Newest { created_us: i64, id: String },
    /// `price_cents` and the id (for both price orders).
    Price { price_cents: i64, id: String },
    /// The relevance score exactly as the previous page computed it, and the id.
    Relevance { score: f32, id: String },
}

/// A search or browse request, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpec {
    pub q: Option<String>,
    pub category: Option<String>,
    pub seller_id: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: bool,
    pub order: Order,
    /// Rows to fetch: the page size plus one, to know whether a next page exists.
    pub fetch: i64,
    pub after: Option<After>,
}

/// The columns of a product row, in the form the component decodes.
///
/// Timestamps travel as integer microseconds since the epoch: exact (keyset cursors compare
/// them for equality) and independent of how the host decodes `timestamptz`.
pub const PRODUCT_COLUMNS: &str = "id, seller_id, title, description, category, price_cents, \
     currency, stock, attributes, status, version, \
     (extract(epoch from created_at) * 1000000)::int8 as created_us, \
     (extract(epoch from updated_at) * 1000000)::int8 as updated_us";

/// The text-search configuration of `products.search_tsv` (see the migration).
pub const TS_CONFIG: &str = "english";

struct Builder {
    sql: String,
    params: Vec<Param>,
}

impl Builder {
    /// Adds a parameter and returns its placeholder.
    fn bind(&mut self, p: Param) -> String {
        let cast = match p {
            Param::Text(_) => "text",
            Param::Int(_) => "int8",
            Param::Real(_) => "real",
            Param::Uuid(_) => "uuid",
        };
        self.params.push(p);
        format!("${}::{cast}", self.params.len())
    }
}

/// The statement and parameters of one page of `GET /api/products`.
///
/// Every shape filters `status = 'active'`, matching the partial indexes of the migration;
/// each order has an index whose key is exactly the order's key (plus equality filters),
/// so the first page and every keyset continuation are index range scans.
pub fn search(spec: &SearchSpec) -> (String, Vec<Param>) {
    let mut b = Builder {
        sql: String::new(),
        params: Vec::new(),
    };
    let mut filters = vec!["status = 'active'".to_string()];
    // Only relevance ordering needs the score.
    let mut score = String::new();
    if let Some(q) = &spec.q {
        let q = b.bind(Param::Text(q.clone()));
        let tsq = format!("websearch_to_tsquery('{TS_CONFIG}', {q})");
        // Full-text match, or a close trigram match of a word of the title (typos).
        filters.push(format!("(search_tsv @@ {tsq} or {q} <% title)"));
        if spec.order == Order::Relevance {
            // Full-text matches rank above typo-only matches (word_similarity is at most 1), and
            // word_similarity runs only for rows the full text missed: computing it for every
            // candidate was most of a text query's time (BENCHMARKS.md, "Search").
            score = format!(
                "(case when search_tsv @@ {tsq} then 1 + ts_rank_cd(search_tsv, {tsq}) \
                 else word_similarity({q}, title) end)::real"
            );
        }
    }
    if let Some(c) = &spec.category {
        let p = b.bind(Param::Text(c.clone()));
        filters.push(format!("category = {p}"));
    }
    if let Some(s) = &spec.seller_id {
        let p = b.bind(Param::Uuid(s.clone()));
        filters.push(format!("seller_id = {p}"));
    }
    if let Some(min) = spec.min_price {
        let p = b.bind(Param::Int(min));
        filters.push(format!("price_cents >= {p}"));
    }
    if let Some(max) = spec.max_price {
        let p = b.bind(Param::Int(max));
        filters.push(format!("price_cents <= {p}"));
    }
    if spec.in_stock {
        filters.push("stock > 0".to_string());
    }
    let order_by = match spec.order {
        Order::Newest => "created_at desc, id desc",
        Order::PriceAsc => "price_cents asc, id asc",
        Order::PriceDesc => "price_cents desc, id desc",
        // Without `q` there is no score (the parser refuses this; fall back to newest).
        Order::Relevance if score.is_empty() => "created_at desc, id desc",
        Order::Relevance => "score desc, id asc",
    };
    let mut keyset = None;
    match (&spec.after, spec.order) {
        (Some(After::Newest { created_us, id }), Order::Newest) => {
            let t = b.bind(Param::Int(*created_us));
            let id = b.bind(Param::Uuid(id.clone()));
            keyset = Some(format!(
                "(created_at, id) < (timestamptz 'epoch' + {t} * interval '1 microsecond', {id})"
            ));
        }
        (Some(After::Price { price_cents, id }), Order::PriceAsc) => {
            let p = b.bind(Param::Int(*price_cents));
            let id = b.bind(Param::Uuid(id.clone()));
            keyset = Some(format!("(price_cents, id) > ({p}, {id})"));
        }
        (Some(After::Price { price_cents, id }), Order::PriceDesc) => {
            let p = b.bind(Param::Int(*price_cents));
            let id = b.bind(Param::Uuid(id.clone()));
            keyset = Some(format!("(price_cents, id) < ({p}, {id})"));
        }
        (Some(After::Relevance { score: s, id }), Order::Relevance) if !score.is_empty() => {
            let s = b.bind(Param::Real(*s));
            let id = b.bind(Param::Uuid(id.clone()));
            keyset = Some(format!("(score < {s} or (score = {s} and id > {id}))"));
        }
        _ => {}
    }
    let fetch = b.bind(Param::Int(spec.fetch));
    let where_ = filters.join(" and ");
    b.sql = if spec.order == Order::Relevance && !score.is_empty() {
        // The score is computed once per matching row in the inner query; the outer one
        // applies the keyset on it, so a cursor compares the very value it was built from.
        let score_filter = keyset.map(|k| format!(" where {k}")).unwrap_or_default();
        format!(
            "select * from (select {PRODUCT_COLUMNS}, {score} as score from products \
             where {where_}) ranked{score_filter} order by {order_by} limit {fetch}"
        )
    } else {
        let keyset = keyset.map(|k| format!(" and {k}")).unwrap_or_default();
        format!(
            "select {PRODUCT_COLUMNS} from products where {where_}{keyset} \
             order by {order_by} limit {fetch}"
        )
    };
    (b.sql, b.params)
}

/// One product by id (any status; the caller applies visibility).
pub const SELECT_PRODUCT: &str = "select id, seller_id, title, description, category, \
     price_cents, currency, stock, attributes, status, version, \
     (extract(epoch from created_at) * 1000000)::int8 as created_us, \
     (extract(epoch from updated_at) * 1000000)::int8 as updated_us \
     from products where id = $1::uuid";

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(order: Order) -> SearchSpec {
        SearchSpec {
            q: None,
            category: None,
            seller_id: None,
            min_price: None,
            max_price: None,
            in_stock: false,
            order,
            fetch: 21,
            after: None,
        }
    }

    #[test]
    fn browse_orders_newest_first_with_one_parameter() {
        let (sql, params) = search(&spec(Order::Newest));
        assert!(
            sql.contains(
                "where status = 'active' order by created_at desc, id desc limit $1::int8"
            )
        );
        assert_eq!(params, vec![Param::Int(21)]);
    }

    #[test]
    fn user_text_is_always_a_parameter() {
        let mut s = spec(Order::Relevance);
        s.q = Some("'; drop table products; --".into());
        s.category = Some("x' or '1'='1".into());
        let (sql, params) = search(&s);
        assert!(!sql.contains("drop table"));
        assert!(!sql.contains("'1'='1"));
        assert_eq!(params.len(), 3);
        assert!(sql.contains("order by score desc, id asc"));
    }

    #[test]
    fn keysets_follow_the_order() {
        let mut s = spec(Order::PriceDesc);
        s.after = Some(After::Price {
            price_cents: 5,
            id: "00000000-0000-0000-0000-000000000000".into(),
        });
        let (sql, _) = search(&s);
        assert!(sql.contains("(price_cents, id) < ($1::int8, $2::uuid)"));
        let mut s = spec(Order::Relevance);
        s.q = Some("shoe".into());
        s.after = Some(After::Relevance {
            score: 0.5,
            id: "00000000-0000-0000-0000-000000000000".into(),
        });
        let (sql, params) = search(&s);
        assert!(
            sql.contains("ranked where (score < $2::real or (score = $2::real and id > $3::uuid))")
        );
        assert_eq!(params.len(), 4);
    }

    #[test]
    fn text_search_in_another_order_needs_no_score() {
        let mut s = spec(Order::Newest);
        s.q = Some("shoe".into());
        let (sql, _) = search(&s);
        assert!(!sql.contains("score") && !sql.contains("ranked"), "{sql}");
        assert!(
            sql.ends_with("order by created_at desc, id desc limit $2::int8"),
            "{sql}"
        );
    }
}
