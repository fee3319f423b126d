//! The component's one error type and its one mapping to a problem document.

use marketplace_shared::{FieldErrors, Problem};

use crate::domain::{MAX_EVENTS_PER_SHIPMENT, TransitionError};

#[derive(Debug)]
pub enum Error {
    /// A problem already shaped for the client (authentication, body parsing, routing).
    Problem(Problem),
    /// 422 naming every bad field.
    Invalid(FieldErrors),
    /// 404: unknown shipment, or one the caller may not see.
    NotFound,
    /// 409: the state machine refuses the event.
    Transition(TransitionError),
    /// 409: the shipment's history holds [`MAX_EVENTS_PER_SHIPMENT`] events already.
    HistoryFull,
    /// 409: another state conflict.
    Conflict(String),
    /// 503: a key-value label failed (`cause` is logged, never shown).
    Store { label: String, cause: String },
    /// 503: too many concurrent writers on one shipment; the client may retry.
    Contention,
    /// 500: deployment configuration is wrong (logged, never shown).
    Config(String),
    /// 500: stored data could not be read back (logged, never shown).
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Problem> for Error {
    fn from(p: Problem) -> Self {
        Error::Problem(p)
    }
}

/// The problem document; 5xx causes are logged here and kept out of the body.
impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        match e {
            Error::Problem(p) => p,
            Error::Invalid(errors) => Problem::validation(errors),
            Error::NotFound => Problem::not_found("no such shipment"),
            Error::Transition(e) => Problem::conflict(e.to_string()),
            Error::HistoryFull => Problem::conflict(format!(
                "this shipment's history is full: at most {MAX_EVENTS_PER_SHIPMENT} events are \
                 recorded per shipment"
            )),
            Error::Conflict(detail) => Problem::conflict(detail),
            Error::Store { label, cause } => {
                eprintln!("key-value store {label} failed: {cause}");
                Problem::service_unavailable(&format!("key-value store {label}"))
            }
            Error::Contention => {
                eprintln!("gave up after too many compare-and-swap conflicts");
                Problem::service_unavailable("key-value store (contention)")
                    .with_header("retry-after", "1".to_string())
            }
            Error::Config(cause) => {
                eprintln!("configuration error: {cause}");
                Problem::internal()
            }
            Error::Corrupt(cause) => {
                eprintln!("stored data unreadable: {cause}");
                Problem::internal()
            }
        }
    }
}
