//! The SQL the product service sends, built as plain strings (std only, no I/O), so that
//! the integration tests can include this very file (`#[path = ...] mod`), unit-test it
//! (`product_sql_statements`) and `EXPLAIN` the exact statements on 100,000 products: a
//! query shape that would scan the table fails a test, not production.

/// A bind parameter, typed as its placeholder's cast says (`Uuid`: the canonical text form,
/// bound as a UUID).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
    Real(f32),
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

/// The parameters of a statement being built.
#[derive(Default)]
struct Builder {
    params: Vec<Param>,
}

impl Builder {
    /// Adds a parameter and returns its placeholder, cast as the parameter is typed.
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

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

/// Relevance scores of full-text matches start here; typo-only matches score
/// `word_similarity`, at most 1. The gap keeps the two groups apart in `score desc` order,
/// so a cursor's score alone says which group the previous page ended in.
pub const FULL_TEXT_SCORE_BASE: f32 = 2.0;

/// The statements of one page of `GET /api/products`, in order. Run them one after the other,
/// appending rows, and stop as soon as `spec.fetch` rows are in hand: each later statement
/// continues the order of the earlier ones.
///
/// A text query ranked by relevance is two statements: the full-text matches, then the
/// typo-only matches (a close trigram match of a word of the title that the full text
/// missed). Together they are exactly the rows of `search_tsv @@ tsq or q <% title` in
/// `score desc, id asc` order, but the trigram scan, about half of a text query's time,
/// runs only when the full text leaves the page short (BENCHMARKS.md, "Search").
///
/// Every shape filters `status = 'active'`, matching the partial indexes of the migration;
/// each order has an index whose key is exactly the order's key (plus equality filters),
/// so the first page and every keyset continuation are index range scans.
pub fn search(spec: &SearchSpec) -> Vec<Statement> {
    let (Some(q), Order::Relevance) = (&spec.q, spec.order) else {
        return vec![ordered(spec)];
    };
    let after = match &spec.after {
        Some(After::Relevance { score, id }) => Some((*score, id.as_str())),
        _ => None,
    };
    match after {
        // The previous page ended among the typo-only matches: only they are left.
        Some((score, _)) if score < FULL_TEXT_SCORE_BASE => {
            vec![ranked(spec, q, Group::Typos, after)]
        }
        _ => vec![
            ranked(spec, q, Group::FullText, after),
            ranked(spec, q, Group::Typos, None),
        ],
    }
}

/// The two groups of a relevance-ranked text query.
#[derive(Clone, Copy, PartialEq)]
enum Group {
    FullText,
    Typos,
}

fn tsquery(q: &str) -> String {
    format!("websearch_to_tsquery('{TS_CONFIG}', {q})")
}

/// The filters every shape shares besides the text match.
fn common_filters(b: &mut Builder, spec: &SearchSpec) -> Vec<String> {
    let mut filters = vec!["status = 'active'".to_string()];
    if let Some(c) = &spec.category {
        filters.push(format!("category = {}", b.bind(Param::Text(c.clone()))));
    }
    if let Some(s) = &spec.seller_id {
        filters.push(format!("seller_id = {}", b.bind(Param::Uuid(s.clone()))));
    }
    if let Some(min) = spec.min_price {
        filters.push(format!("price_cents >= {}", b.bind(Param::Int(min))));
    }
    if let Some(max) = spec.max_price {
        filters.push(format!("price_cents <= {}", b.bind(Param::Int(max))));
    }
    if spec.in_stock {
        filters.push("stock > 0".to_string());
    }
    filters
}

/// One group of a relevance-ranked text query, after `after` (a score and an id) if given.
fn ranked(spec: &SearchSpec, q: &str, group: Group, after: Option<(f32, &str)>) -> Statement {
    let mut b = Builder::default();
    let q = b.bind(Param::Text(q.to_string()));
    let tsq = tsquery(&q);
    let (matches, score) = match group {
        Group::FullText => (
            format!("search_tsv @@ {tsq}"),
            format!("({FULL_TEXT_SCORE_BASE:.1} + ts_rank_cd(search_tsv, {tsq}))::real"),
        ),
        // `word_similarity` is computed only for these rows: computed for every full-text
        // candidate it was most of a text query's time.
        Group::Typos => (
            format!("{q} <% title and not coalesce(search_tsv @@ {tsq}, false)"),
            format!("word_similarity({q}, title)::real"),
        ),
    };
    let mut filters = common_filters(&mut b, spec);
    filters.push(matches);
    // The score is computed once per matching row in the inner query; the outer one applies
    // the keyset on it, so a cursor compares the very value it was built from.
    let keyset = after
        .map(|(score, id)| {
            let s = b.bind(Param::Real(score));
            let id = b.bind(Param::Uuid(id.to_string()));
            format!(" where (score < {s} or (score = {s} and id > {id}))")
        })
        .unwrap_or_default();
    let fetch = b.bind(Param::Int(spec.fetch));
    Statement {
        sql: format!(
            "select * from (select {PRODUCT_COLUMNS}, {score} as score from products \
             where {}) ranked{keyset} order by score desc, id asc limit {fetch}",
            filters.join(" and ")
        ),
        params: b.params,
    }
}

/// Browsing, and text queries in a non-relevance order: one statement in the order's index.
fn ordered(spec: &SearchSpec) -> Statement {
    let mut b = Builder::default();
    let text = spec.q.as_ref().map(|q| {
        let q = b.bind(Param::Text(q.clone()));
        // Full-text match, or a close trigram match of a word of the title (typos).
        format!("(search_tsv @@ {} or {q} <% title)", tsquery(&q))
    });
    let mut filters = common_filters(&mut b, spec);
    filters.extend(text);
    // The order, and the comparison that means "after" in it (for the keyset).
    let (order_by, past) = match spec.order {
        // Relevance without `q` has no score (the parser refuses it; fall back to newest).
        Order::Newest | Order::Relevance => ("created_at desc, id desc", "<"),
        Order::PriceAsc => ("price_cents asc, id asc", ">"),
        Order::PriceDesc => ("price_cents desc, id desc", "<"),
    };
    match (&spec.after, spec.order) {
        (Some(After::Newest { created_us, id }), Order::Newest) => {
            let t = b.bind(Param::Int(*created_us));
            let id = b.bind(Param::Uuid(id.clone()));
            filters.push(format!(
                "(created_at, id) {past} (timestamptz 'epoch' + {t} * interval '1 microsecond', {id})"
            ));
        }
        (Some(After::Price { price_cents, id }), Order::PriceAsc | Order::PriceDesc) => {
            let p = b.bind(Param::Int(*price_cents));
            let id = b.bind(Param::Uuid(id.clone()));
            filters.push(format!("(price_cents, id) {past} ({p}, {id})"));
        }
        _ => {}
    }
    let fetch = b.bind(Param::Int(spec.fetch));
    Statement {
        sql: format!(
            "select {PRODUCT_COLUMNS} from products where {} order by {order_by} limit {fetch}",
            filters.join(" and ")
        ),
        params: b.params,
    }
}
