//! The storage edges: PostgreSQL (`pg`, search statements in `sql`; writes on the primary,
//! each multi-statement change in one `pg::transaction`; stale-tolerant reads on a replica
//! first; connections are pooled by the host per address) and the key-value read model of
//! product pages (`kv`).

pub mod kv;
pub mod pg;
pub mod sql;

use marketplace_shared::pg as shared_pg;
use spin_sdk::pg4::{Connection, ParameterValue};
use uuid::Uuid;

use crate::config::Config;
use crate::domain::{Cursor, Search, Sort, Source};
use crate::error::{Error, Result};
pub use pg::Row;
use sql::Param;

/// Runs `read` on a replica, else on the primary; says which answered.
///
/// Replicas are tried in a rotating order so that load spreads over them; a replica that
/// fails (down, not answering, recovering) moves on to the next one and finally to the
/// primary, so a dead replica costs latency, never an error. A client error or a statement
/// past its time limit is the answer: running it elsewhere would cost as much again.
///
/// With `timeout_ms`, the connection is opened with `statement_timeout` set for the session
/// ([`with_statement_timeout`]): a pool of its own per database, so the bound costs no
/// statement per request and never reaches the writes.
pub fn with_read<T>(
    config: &Config,
    timeout_ms: Option<u32>,
    read: impl Fn(&Connection) -> Result<T>,
) -> Result<(T, Source)> {
    let attempt = |url: &str| -> Result<T> {
        let url = match timeout_ms {
            Some(ms) => with_statement_timeout(url, ms),
            None => url.to_string(),
        };
        read(&Connection::open(&url)?)
    };
    let n = config.replica_urls.len();
    let start = usize::from(Uuid::new_v4().as_bytes()[0]) % n.max(1);
    for i in 0..n {
        match attempt(&config.replica_urls[(start + i) % n]) {
            Ok(v) => return Ok((v, Source::Replica)),
            Err(e @ (Error::Client(_) | Error::TimedOut)) => return Err(e),
            Err(e) => eprintln!("product: replica {i} failed, trying the next: {e:?}"),
        }
    }
    Ok((attempt(&config.db_url)?, Source::Primary))
}

/// `url` with the session parameter `statement_timeout` in its `options` (libpq's and
/// tokio-postgres's connection-string parameter, `-c name=value`, percent-encoded): every
/// statement on such a connection is cancelled by the server after `ms` milliseconds.
pub fn with_statement_timeout(url: &str, ms: u32) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20statement_timeout%3D{ms}")
}

/// What the SQL builder needs for a page of `search` (the page size plus one row).
pub fn spec(search: &Search) -> sql::SearchSpec {
    let order = match search.sort {
        Sort::Relevance => sql::Order::Relevance,
        Sort::Newest => sql::Order::Newest,
        Sort::PriceAsc => sql::Order::PriceAsc,
        Sort::PriceDesc => sql::Order::PriceDesc,
    };
    let after = search.after.map(|c| match c {
        Cursor::Newest { t, id } => sql::After::Newest {
            created_us: t,
            id: id.to_string(),
        },
        Cursor::PriceAsc { p, id } | Cursor::PriceDesc { p, id } => sql::After::Price {
            price_cents: p,
            id: id.to_string(),
        },
        Cursor::Relevance { r, id } => sql::After::Relevance {
            score: r,
            id: id.to_string(),
        },
    });
    sql::SearchSpec {
        q: search.q.clone(),
        category: search.category.clone(),
        seller_id: search.seller_id.map(|s| s.to_string()),
        min_price: search.min_price,
        max_price: search.max_price,
        in_stock: search.in_stock,
        order,
        fetch: i64::from(search.limit) + 1,
        after,
    }
}

/// Where a page of `search` ended, for its `next_cursor`.
pub fn cursor_after(sort: Sort, row: &Row) -> Cursor {
    let (id, p, t) = (row.product.id, row.product.price_cents, row.created_us);
    match sort {
        Sort::Newest => Cursor::Newest { t, id },
        Sort::PriceAsc => Cursor::PriceAsc { p, id },
        Sort::PriceDesc => Cursor::PriceDesc { p, id },
        Sort::Relevance => Cursor::Relevance {
            r: row.score.unwrap_or(0.0),
            id,
        },
    }
}

/// One page of a search (up to `limit + 1` rows): the statements of [`sql::search`] in
/// order until the page is full. Run on a connection of [`with_read`] with a timeout, so the
/// database cancels each statement past the search time limit.
pub fn search(conn: &Connection, search: &Search) -> Result<Vec<Row>> {
    let spec = spec(search);
    let wanted = usize::try_from(spec.fetch).unwrap_or(usize::MAX);
    let mut page = Vec::new();
    for statement in sql::search(&spec) {
        if page.len() >= wanted {
            break;
        }
        let params: Vec<ParameterValue> = statement.params.into_iter().map(param).collect();
        page.extend(pg::rows(&shared_pg::query(conn, &statement.sql, &params)?)?);
    }
    page.truncate(wanted);
    Ok(page)
}

fn param(p: Param) -> ParameterValue {
    match p {
        Param::Text(s) => ParameterValue::Str(s),
        Param::Uuid(s) => ParameterValue::Uuid(s),
        Param::Int(i) => ParameterValue::Int64(i),
        Param::Real(r) => ParameterValue::Floating32(r),
    }
}

/// `select 1` on the primary (readiness).
pub fn ping(url: &str) -> Result<()> {
    shared_pg::query(&Connection::open(url)?, "select 1", &[])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_statement_timeout;

    #[test]
    fn the_search_time_limit_rides_in_the_connection_options() {
        assert_eq!(
            with_statement_timeout("postgres://u@h/db?sslmode=disable", 500),
            "postgres://u@h/db?sslmode=disable&options=-c%20statement_timeout%3D500"
        );
        assert_eq!(
            with_statement_timeout("postgres://u@h/db", 1),
            "postgres://u@h/db?options=-c%20statement_timeout%3D1"
        );
    }
}
