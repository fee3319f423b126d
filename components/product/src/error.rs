//! The product service's one error type and its one mapping to a problem document.

use marketplace_shared::Problem;

/// Everything a handler can fail with.
#[derive(Debug)]
pub enum Error {
    /// A client error, already shaped as the contract wants it (4xx).
    Client(Problem),
    /// The database did not answer (connection refused, pool exhausted): 503.
    DbUnavailable(String),
    /// A statement failed for a reason that is not the client's: 500 (or 409 by constraint).
    Db {
        code: Option<String>,
        message: String,
    },
    /// A deployment error (missing or malformed variable): 500.
    Config(String),
    /// A bug (a row that does not decode, ...): 500.
    Internal(String),
}

impl From<Problem> for Error {
    fn from(p: Problem) -> Self {
        Error::Client(p)
    }
}

/// The first line of a driver message, capped: enough to diagnose, never a backtrace.
pub fn short(message: &str) -> String {
    let line = message.lines().next().unwrap_or("");
    line.chars().take(300).collect()
}

impl From<spin_sdk::pg4::PgError> for Error {
    fn from(e: spin_sdk::pg4::PgError) -> Self {
        use spin_sdk::pg4::{PgError, QueryError};
        match e {
            PgError::ConnectionFailed(m) => Error::DbUnavailable(short(&m)),
            PgError::QueryFailed(QueryError::DbError(d)) => Error::Db {
                code: Some(d.code),
                message: short(&d.message),
            },
            PgError::QueryFailed(QueryError::Text(m)) => Error::Db {
                code: None,
                message: short(&m),
            },
            PgError::BadParameter(m) | PgError::ValueConversionFailed(m) | PgError::Other(m) => {
                Error::Db {
                    code: None,
                    message: short(&m),
                }
            }
        }
    }
}

impl Error {
    /// The one conversion into the answer; server-side causes are logged, never sent.
    pub fn into_problem(self) -> Problem {
        match self {
            Error::Client(p) => p,
            Error::DbUnavailable(m) => {
                eprintln!("product: database unavailable: {m}");
                Problem::service_unavailable("postgres (product database)")
            }
            Error::Db { code, message } => match code.as_deref() {
                // Unique violation: a concurrent writer got there first.
                Some("23505") => Problem::conflict("the resource already exists"),
                // Check violation (e.g. stock below zero): the state does not allow it.
                Some("23514") => Problem::conflict("the change conflicts with the current state"),
                // Deadlock, serialization failure, too many connections, shutdown, timeouts.
                Some(c)
                    if c == "40P01"
                        || c == "40001"
                        || c.starts_with("53")
                        || c.starts_with("57")
                        || c.starts_with("08") =>
                {
                    eprintln!("product: database busy ({c}): {message}");
                    Problem::service_unavailable("postgres (product database)")
                }
                _ => {
                    eprintln!("product: database error {code:?}: {message}");
                    Problem::internal()
                }
            },
            Error::Config(m) => {
                eprintln!("product: configuration error: {m}");
                Problem::internal()
            }
            Error::Internal(m) => {
                eprintln!("product: internal error: {m}");
                Problem::internal()
            }
        }
    }
}

/// Result of the component's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn db(code: &str) -> Error {
        Error::Db {
            code: Some(code.into()),
            message: "secret detail".into(),
        }
    }

    #[test]
    fn database_failures_map_to_503_409_or_a_generic_500() {
        assert_eq!(
            Error::DbUnavailable("down".into()).into_problem().status,
            503
        );
        assert_eq!(db("40P01").into_problem().status, 503);
        assert_eq!(db("53300").into_problem().status, 503);
        assert_eq!(db("23505").into_problem().status, 409);
        assert_eq!(db("23514").into_problem().status, 409);
        let p = db("42703").into_problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("secret"), "5xx bodies are generic");
        assert_eq!(Error::Config("x".into()).into_problem().status, 500);
    }

    #[test]
    fn client_problems_pass_through_and_logs_keep_one_short_line() {
        let p = Problem::not_found("no such product");
        assert_eq!(Error::from(p.clone()).into_problem(), p);
        let long = format!("first line {}\nbacktrace...", "x".repeat(1000));
        let s = short(&long);
        assert!(s.starts_with("first line") && s.chars().count() == 300 && !s.contains('\n'));
    }
}
