//! The one error type of the order service and its one mapping to a problem document.

use marketplace_shared::Problem;
use spin_sdk::pg4::{PgError, QueryError};

#[derive(Debug)]
pub enum Error {
    /// An answer about the request itself (4xx), already shaped for the client.
    Client(Problem),
    /// A dependency is down or misbehaving: 503 naming it; the cause is logged.
    Unavailable { dependency: String, cause: String },
    /// A defect or a deployment error: 500 with a generic body; the cause is logged.
    Internal(String),
}

impl From<Problem> for Error {
    fn from(p: Problem) -> Self {
        Error::Client(p)
    }
}

impl Error {
    /// A failed statement on physical database `db`. Connection-level failures (the database
    /// is down or went away mid-request) are 503s naming the shard; anything else is a defect.
    pub fn db(db: usize, e: PgError) -> Self {
        let dependency = format!("postgres order-db-{db}");
        match &e {
            PgError::ConnectionFailed(_) => Error::Unavailable {
                dependency,
                cause: describe(&e),
            },
            PgError::QueryFailed(QueryError::Text(_)) => Error::Unavailable {
                dependency,
                cause: describe(&e),
            },
            PgError::QueryFailed(QueryError::DbError(d))
                if d.code.starts_with("08") || d.code.starts_with("57P") || d.code == "53300" =>
            {
                Error::Unavailable {
                    dependency,
                    cause: describe(&e),
                }
            }
            _ => Error::Internal(format!("order-db-{db}: {}", describe(&e))),
        }
    }

    /// The SQLSTATE of a database error, if the failure was one.
    pub fn sqlstate(e: &PgError) -> Option<&str> {
        match e {
            PgError::QueryFailed(QueryError::DbError(d)) => Some(d.code.as_str()),
            _ => None,
        }
    }

    /// The problem document to answer with; server-side causes are logged, never sent.
    pub fn into_problem(self) -> Problem {
        match self {
            Error::Client(p) => p,
            Error::Unavailable { dependency, cause } => {
                eprintln!("order: dependency {dependency} unavailable: {cause}");
                Problem::service_unavailable(&dependency)
            }
            Error::Internal(cause) => {
                eprintln!("order: internal error: {cause}");
                Problem::internal()
            }
        }
    }
}

/// A database error in words, without the connection string (which holds a password).
fn describe(e: &PgError) -> String {
    match e {
        PgError::ConnectionFailed(_) => "connection failed".to_string(),
        PgError::BadParameter(m) => format!("bad parameter: {m}"),
        PgError::QueryFailed(QueryError::Text(t)) => format!("query failed: {t}"),
        PgError::QueryFailed(QueryError::DbError(d)) => {
            format!("query failed: {} ({})", d.message, d.code)
        }
        PgError::ValueConversionFailed(m) => format!("value conversion failed: {m}"),
        PgError::Other(m) => format!("other: {m}"),
    }
}
