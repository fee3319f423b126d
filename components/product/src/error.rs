//! The product service's one error type and its one mapping to a problem document.

use marketplace_shared::Problem;
use marketplace_shared::pg::{Failure, describe};

/// Everything a handler can fail with.
#[derive(Debug)]
pub enum Error {
    /// A client error, already shaped as the contract wants it (4xx).
    Client(Problem),
    /// The database did not answer (connection refused, pool exhausted): 503.
    DbUnavailable(String),
    /// A constraint refused the write (a concurrent writer got there first, stock below
    /// zero): 409 with this detail.
    DbConflict(&'static str),
    /// A statement failed for a reason that is not the client's: 500.
    Db(String),
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

impl From<spin_sdk::pg4::PgError> for Error {
    fn from(e: spin_sdk::pg4::PgError) -> Self {
        match Failure::of(&e) {
            Failure::Unavailable | Failure::Contended => Error::DbUnavailable(describe(&e)),
            Failure::Unique { .. } => Error::DbConflict("the resource already exists"),
            Failure::Check { .. } => {
                Error::DbConflict("the change conflicts with the current state")
            }
            Failure::Defect => Error::Db(describe(&e)),
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
            Error::DbConflict(detail) => Problem::conflict(detail),
            Error::Db(m) => {
                eprintln!("product: database error: {m}");
                Problem::internal()
            }
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
        Error::from(marketplace_shared::pg::db_error(code, None))
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
    fn client_problems_pass_through() {
        let p = Problem::not_found("no such product");
        assert_eq!(Error::from(p.clone()).into_problem(), p);
    }
}
