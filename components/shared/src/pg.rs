//! PostgreSQL through Spin's `spin:postgres@4.0.0`, as real Spin behaves (docs/spin-runtime.md).
//!
//! Two facts of Spin shape this module:
//! - **A `query` that returns no rows never answers on Spin 4.0/4.1**: its host awaits the
//!   column list, which only the first row sends (factor-outbound-pg `client.rs`). [`query`]
//!   therefore pads every statement to at least one row and drops the padding.
//! - **An error the server reports while rows stream** (a unique violation of
//!   `INSERT … RETURNING`, a statement timeout) comes back as `query-failed(text(…))` holding
//!   the structured error's debug form, not as `query-failed(db-error(…))`. [`Failure`] reads
//!   the SQLSTATE and the constraint from either shape.

use spin_sdk::pg4::{Connection, DbValue, ParameterValue, PgError, QueryError, RowSet};

/// Marker column: true on real rows, NULL on the padding row.
const FOUND: &str = "__found";

/// Runs `sql` (one statement that returns rows: `select`, or `insert`/`update`/`delete` with
/// `returning`) and returns its rows in their order, also when there are none.
#[allow(clippy::result_large_err)] // The SDK's own error type, as `Connection::query` returns it.
pub fn query(conn: &Connection, sql: &str, params: &[ParameterValue]) -> Result<RowSet, PgError> {
    let padded = format!(
        "with __q as ({sql}) \
         select __m.* from (values (1)) as __pad(__pad) \
         left join (select true as {FOUND}, row_number() over () as __n, * from __q) as __m on true \
         order by __m.__n"
    );
    let mut set = conn.query(&padded, params)?;
    // The first two columns are the marker and the row number.
    set.columns.drain(..2.min(set.columns.len()));
    set.rows
        .retain(|row| matches!(row.first(), Some(DbValue::Boolean(true))));
    for row in &mut set.rows {
        row.drain(..2);
    }
    Ok(set)
}

/// Runs `sql` unpadded, **only** for a statement that returns a row whatever the data (`insert
/// … returning` without a conflict clause or `where`, an aggregate without `group by`): one
/// statement less to plan on the hot paths. One that can return no rows hangs the request on
/// Spin (the test host traps on it, so the tests catch a wrong use).
#[allow(clippy::result_large_err)]
pub fn query_always(
    conn: &Connection,
    sql: &str,
    params: &[ParameterValue],
) -> Result<RowSet, PgError> {
    conn.query(sql, params)
}

/// Runs `f` inside one transaction on `conn`: `begin`, then `commit` when `f` succeeds and
/// `rollback` when it fails, so no path can leave the connection inside a transaction (the
/// pool would hand it to the next request half-done). A failed `commit` is `f`'s error type
/// too; a failed `rollback` is logged (the server ends the transaction with the connection).
pub fn transaction<T, E: From<PgError>>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    conn.execute("begin", &[])?;
    end_transaction(conn, f(conn))
}

fn end_transaction<T, E: From<PgError>>(conn: &Connection, result: Result<T, E>) -> Result<T, E> {
    match result {
        Ok(value) => Ok(conn.execute("commit", &[]).map(|_| value)?),
        Err(e) => {
            if let Err(rollback) = conn.execute("rollback", &[]) {
                eprintln!("rollback failed: {}", describe(&rollback));
            }
            Err(e)
        }
    }
}

/// [`transaction`] for work that awaits another service while it holds its row locks (a
/// reservation or shipment call inside the placement).
pub async fn transaction_async<T, E: From<PgError>>(
    conn: &Connection,
    work: impl AsyncFnOnce() -> Result<T, E>,
) -> Result<T, E> {
    conn.execute("begin", &[])?;
    end_transaction(conn, work().await)
}

/// What a failed statement means for the caller, whichever shape Spin gave the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The database cannot be used right now (connection refused or lost, shutting down,
    /// out of connections or resources): a 503 naming it.
    Unavailable,
    /// A unique or exclusion constraint refused the row (SQLSTATE 23505/23P01).
    Unique { constraint: Option<String> },
    /// A check constraint refused the row (SQLSTATE 23514), e.g. stock below zero.
    Check { constraint: Option<String> },
    /// Another transaction won (serialization failure 40001, deadlock 40P01): retrying the
    /// request can succeed, so a 503 too.
    Contended,
    /// Anything else: the statement or the schema is wrong, a defect (500, cause logged).
    Defect,
}

impl Failure {
    pub fn of(e: &PgError) -> Self {
        let constraint = constraint(e);
        match sqlstate(e).as_deref() {
            Some("23505" | "23P01") => Failure::Unique { constraint },
            Some("23514") => Failure::Check { constraint },
            Some("40001" | "40P01") => Failure::Contended,
            // 08 connection exception, 53 insufficient resources, 57 operator intervention.
            Some(c) if ["08", "53", "57"].iter().any(|class| c.starts_with(class)) => {
                Failure::Unavailable
            }
            Some(_) => Failure::Defect,
            None => match e {
                // Failures outside the database protocol: refused, broken or closed connections.
                PgError::ConnectionFailed(_) | PgError::QueryFailed(QueryError::Text(_)) => {
                    Failure::Unavailable
                }
                _ => Failure::Defect,
            },
        }
    }

    /// True for a unique violation of exactly `name` (409 by constraint name).
    pub fn is_unique(&self, name: &str) -> bool {
        matches!(self, Failure::Unique { constraint: Some(c) } if c == name)
    }
}

/// The SQLSTATE of a database error, structured or flattened into text.
pub fn sqlstate(e: &PgError) -> Option<String> {
    match e {
        PgError::QueryFailed(QueryError::DbError(d)) => Some(d.code.clone()),
        // The debug form of the flattened error: `… code: "23505", message: …`. Inside its
        // `as-text` field quotes are escaped (`\"`), so only the record's own field matches.
        PgError::QueryFailed(QueryError::Text(t)) => after(t, "code: \"")
            .map(|rest| rest.chars().take(5).collect::<String>())
            .filter(|c| c.len() == 5 && c.chars().all(|ch| ch.is_ascii_alphanumeric())),
        _ => None,
    }
}

/// The constraint a database error names, structured or flattened into text.
pub fn constraint(e: &PgError) -> Option<String> {
    match e {
        PgError::QueryFailed(QueryError::DbError(d)) => d
            .extras
            .iter()
            .find(|(k, _)| k == "constraint")
            .map(|(_, v)| v.clone()),
        // The flattened `extras: [("constraint", "users_email_normalized_key"), …]`.
        PgError::QueryFailed(QueryError::Text(t)) => after(t, "(\"constraint\", \"")
            .and_then(|rest| rest.split('"').next().map(String::from)),
        _ => None,
    }
}

fn after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    text.find(marker).map(|i| &text[i + marker.len()..])
}

/// A failure in words for the log: SQLSTATE and message, never a connection string (which
/// holds a password) nor parameter values.
pub fn describe(e: &PgError) -> String {
    match e {
        PgError::ConnectionFailed(_) => "connection failed".to_string(),
        PgError::BadParameter(_) => "bad parameter".to_string(),
        PgError::ValueConversionFailed(_) => "value conversion failed".to_string(),
        PgError::QueryFailed(QueryError::DbError(d)) => {
            format!("query failed: {} {}", d.code, d.message)
        }
        PgError::QueryFailed(QueryError::Text(t)) => match sqlstate(e) {
            Some(code) => format!("query failed: {code}"),
            None => format!("query failed: {}", t.lines().next().unwrap_or_default()),
        },
        PgError::Other(_) => "other postgres error".to_string(),
    }
}

/// A structured database error as Spin reports one, for the services' error-mapping tests.
/// Its message says "secret detail", so a test can check that it never reaches a 5xx body.
pub fn db_error(code: &str, constraint: Option<&str>) -> PgError {
    PgError::QueryFailed(QueryError::DbError(spin_sdk::pg4::DbError {
        as_text: String::new(),
        severity: "ERROR".into(),
        code: code.into(),
        message: "secret detail".into(),
        detail: None,
        extras: constraint
            .map(|c| vec![("constraint".to_string(), c.to_string())])
            .unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text real Spin 4.1 returned for a duplicate email (from its component log).
    const FLATTENED: &str = r#"Error::QueryFailed(QueryError::DbError(DbError { as-text: "Error { kind: Db, cause: Some(DbError { severity: \"ERROR\", code: SqlState(E23505), message: \"duplicate key value violates unique constraint \\\"users_email_normalized_key\\\"\", constraint: Some(\"users_email_normalized_key\") }) }", severity: "ERROR", code: "23505", message: "duplicate key value violates unique constraint \"users_email_normalized_key\"", detail: Some("Key (email_normalized)=(a@b.test) already exists."), extras: [("constraint", "users_email_normalized_key"), ("routine", "_bt_check_unique"), ("table", "users")] }))"#;

    #[test]
    fn a_unique_violation_flattened_into_text_is_read_like_a_structured_one() {
        let key = "users_email_normalized_key";
        let flat = PgError::QueryFailed(QueryError::Text(FLATTENED.into()));
        for e in [flat, db_error("23505", Some(key))] {
            assert_eq!(sqlstate(&e).as_deref(), Some("23505"));
            let failure = Failure::of(&e);
            assert!(failure.is_unique(key), "{failure:?}");
            assert!(!failure.is_unique("other_key"));
        }
    }

    #[test]
    fn every_service_classifies_the_same_codes_the_same_way() {
        let text = |t: &str| PgError::QueryFailed(QueryError::Text(t.into()));
        let unique = Failure::Unique { constraint: None };
        let cases = [
            (db_error("23505", None), unique),
            (db_error("23514", None), Failure::Check { constraint: None }),
            (db_error("40P01", None), Failure::Contended),
            (db_error("40001", None), Failure::Contended),
            (db_error("57P01", None), Failure::Unavailable),
            (db_error("08006", None), Failure::Unavailable),
            (db_error("53300", None), Failure::Unavailable),
            (db_error("42601", None), Failure::Defect),
            (db_error("22P02", None), Failure::Defect),
            (text("connection closed"), Failure::Unavailable),
            (PgError::ConnectionFailed("no".into()), Failure::Unavailable),
            (PgError::BadParameter("x".into()), Failure::Defect),
        ];
        for (e, expected) in cases {
            assert_eq!(Failure::of(&e), expected, "{e:?}");
        }
    }

    #[test]
    fn descriptions_hold_no_connection_string_or_parameter() {
        let connection = PgError::ConnectionFailed("postgres://u:secret@h/db".into());
        for e in [connection, PgError::BadParameter("value 'secret'".into())] {
            assert!(!describe(&e).contains("secret"), "{e:?}");
        }
        let flat = PgError::QueryFailed(QueryError::Text(FLATTENED.into()));
        assert_eq!(describe(&flat), "query failed: 23505");
    }
}
