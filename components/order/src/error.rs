//! The one error type of the order service and its one mapping to a problem document.

use marketplace_shared::Problem;
use marketplace_shared::pg::{Failure, describe};
use spin_sdk::pg4::PgError;

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
    /// is down or went away mid-request) and lost races are 503s naming the shard; anything
    /// else is a defect.
    pub fn db(db: usize, e: PgError) -> Self {
        match Failure::of(&e) {
            Failure::Unavailable | Failure::Contended => Error::Unavailable {
                dependency: format!("postgres order-db-{db}"),
                cause: describe(&e),
            },
            _ => Error::Internal(format!("order-db-{db}: {}", describe(&e))),
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
