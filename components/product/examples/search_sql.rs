//! Prints the SQL the product service sends for search query strings, for the benchmark's
//! database ceiling (`bench/bench.py` runs these very statements under pgbench).
//!
//! Reads one query string of `GET /api/products` per line (`q=lamp&sort=relevance`) and
//! writes one JSON line per input: the page's statements in order, parameters inlined as
//! typed literals (the service sends each as an unnamed statement, so PostgreSQL plans it
//! with the values known, as it does these), and the rows the page needs (`fetch`).
//!
//! `cargo run -q -p marketplace-product --example search_sql < queries.txt`

use std::io::{BufRead, Write};

use marketplace_product::domain::Search;
use marketplace_product::domain::search::SEARCH_PARAMS;
use marketplace_product::store::{
    self,
    sql::{self, Param, Statement},
};
use marketplace_shared::query::Query;

fn literal(param: &Param) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    match param {
        Param::Text(s) => format!("{}::text", quote(s)),
        Param::Int(i) => format!("{i}::int8"),
        Param::Real(r) => format!("'{r:?}'::real"),
        Param::Uuid(s) => format!("{}::uuid", quote(s)),
    }
}

/// The statement with `$n::cast` placeholders replaced by literals (highest `n` first, so
/// `$1` never eats the start of `$12`).
fn inline(statement: &Statement) -> String {
    let mut sql = statement.sql.clone();
    for (i, param) in statement.params.iter().enumerate().rev() {
        sql = sql.replace(&format!("${}::{}", i + 1, param.cast()), &literal(param));
    }
    sql
}

fn main() {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let search = Query::parse(line.trim(), SEARCH_PARAMS)
            .map_err(|p| p.detail)
            .and_then(|q| Search::parse(&q).map_err(|e| format!("{e:?}")))
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        let spec = store::spec(&search);
        let statements: Vec<String> = sql::search(&spec).iter().map(inline).collect();
        let record =
            serde_json::json!({ "query": line, "fetch": spec.fetch, "statements": statements });
        writeln!(out, "{record}").expect("stdout");
    }
}
