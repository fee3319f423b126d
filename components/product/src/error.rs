//! The product service's one error type and its one mapping to a problem document.

use marketplace_shared::pg::{self, Failure, describe};
use marketplace_shared::{FieldErrors, Problem};
use spin_sdk::pg4::PgError;

use crate::domain::Access;
use crate::domain::reservation::Refusal;
use crate::domain::search::SearchError;

/// The stock check of the migration (`stock >= 0`): the last line of defence against
/// overselling, so a violation is a conflict, not a defect.
const STOCK_CHECK: &str = "products_stock_check";
/// SQLSTATE `query_canceled`: a statement ran past its `statement_timeout`.
const QUERY_CANCELED: &str = "57014";

/// Everything a request can fail with.
#[derive(Debug)]
pub enum Error {
    /// A client error shaped where it was found (routing, token, body): passed through.
    Client(Problem),
    /// Invalid fields of a body (422, every one named).
    Invalid(FieldErrors),
    /// Search parameters refused (400 or 422).
    Search(SearchError),
    /// The product is unknown to the caller, someone else's or archived (404/403/409).
    Access(Access),
    /// The stock cannot cover a reservation (422 for unknown products, 409 when short).
    Refused(Refusal),
    /// The database did not answer, or another transaction won (503).
    DbUnavailable(String),
    /// A statement ran past its time limit (503: retrying later, or with fewer words, helps).
    TimedOut,
    /// The stock check refused a change (a concurrent writer took the stock first): 409.
    StockConflict,
    /// A deployment error (missing or malformed variable): 500.
    Config(String),
    /// A bug (a statement the database refused, a row that does not decode, ...): 500.
    Internal(String),
}

/// Client problems and domain refusals, each kept as it is until the one mapping below.
macro_rules! from {
    ($($source:ty => $variant:ident),+) => {
        $(impl From<$source> for Error {
            fn from(e: $source) -> Self {
                Error::$variant(e)
            }
        })+
    };
}
from!(Problem => Client, FieldErrors => Invalid, SearchError => Search, Access => Access,
    Refusal => Refused);

/// Postgres failures, classified once by `pg::Failure` (the timeout is told apart first so
/// that the replica fallback does not run a too-costly statement again elsewhere). Only the
/// description reaches the log: never a connection string or a parameter.
impl From<PgError> for Error {
    fn from(e: PgError) -> Self {
        if pg::sqlstate(&e).as_deref() == Some(QUERY_CANCELED) {
            return Error::TimedOut;
        }
        match Failure::of(&e) {
            Failure::Unavailable | Failure::Contended => Error::DbUnavailable(describe(&e)),
            Failure::Check {
                constraint: Some(c),
            } if c == STOCK_CHECK => Error::StockConflict,
            Failure::Unique { .. } | Failure::Check { .. } | Failure::Defect => {
                Error::Internal(format!("database: {}", describe(&e)))
            }
        }
    }
}

/// The one conversion into the answer; server-side causes are logged, never sent.
impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        match e {
            Error::Client(p) => p,
            Error::Invalid(errors) => Problem::validation(errors),
            Error::Search(SearchError::Malformed(detail)) => Problem::bad_request(detail),
            Error::Search(SearchError::Invalid(errors)) => Problem::validation(errors),
            Error::Access(Access::Unknown) => Problem::not_found("no such product"),
            Error::Access(Access::NotOwner) => {
                Problem::forbidden("this product belongs to another seller")
            }
            Error::Access(Access::Archived) => {
                Problem::conflict("archived products cannot be changed")
            }
            Error::Refused(Refusal::Unknown(errors)) => Problem::validation(errors),
            Error::Refused(Refusal::Short(short)) => Problem::insufficient_stock(short),
            Error::StockConflict => Problem::conflict("the stock changed; try again"),
            Error::TimedOut => {
                eprintln!("product: a statement ran past its time limit");
                Problem::service_unavailable("postgres (product database: statement timed out)")
            }
            Error::DbUnavailable(m) => {
                eprintln!("product: database unavailable: {m}");
                Problem::service_unavailable("postgres (product database)")
            }
            Error::Config(m) => internal("configuration error", &m),
            Error::Internal(m) => internal("internal error", &m),
        }
    }
}

/// A generic 500; the cause goes to the log only.
fn internal(what: &str, cause: &str) -> Problem {
    eprintln!("product: {what}: {cause}");
    Problem::internal()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: &str, constraint: Option<&str>) -> u16 {
        Problem::from(Error::from(pg::db_error(code, constraint))).status
    }

    #[test]
    fn database_failures_map_to_503_409_by_constraint_name_or_a_generic_500() {
        assert_eq!(status("40P01", None), 503, "deadlock");
        assert_eq!(status("53300", None), 503);
        assert_eq!(status("57014", None), 503, "statement timeout");
        assert_eq!(status("23514", Some(STOCK_CHECK)), 409);
        assert_eq!(status("23514", Some("products_title_check")), 500);
        assert_eq!(status("23505", Some("reservations_pkey")), 500);
        let text = PgError::QueryFailed(spin_sdk::pg4::QueryError::Text("closed".into()));
        assert_eq!(Problem::from(Error::from(text)).status, 503);
        let p = Problem::from(Error::from(pg::db_error("42703", None)));
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("secret"), "5xx bodies are generic");
    }

    #[test]
    fn a_connection_failure_is_logged_without_its_text() {
        let e = PgError::ConnectionFailed("postgres://u:hunter2@db/products refused".into());
        let Error::DbUnavailable(logged) = Error::from(e) else {
            panic!("a connection failure is a 503")
        };
        assert!(
            !logged.contains("hunter2") && !logged.contains("postgres://"),
            "{logged}"
        );
    }
}
