//! The one error type of the order service and its one mapping to a problem document.

use marketplace_shared::pg::{Failure, describe};
use marketplace_shared::{FieldErrors, OrderStatus, Problem};
use spin_sdk::pg4::PgError;

use crate::domain::key::KeyError;
use crate::domain::order::PricingError;

#[derive(Debug)]
pub enum Error {
    /// A 4xx already shaped: by the shared plumbing (authentication, query, body), from invalid
    /// input (422 naming every bad field, a bad `Idempotency-Key`: 400), or the product
    /// service's refusal of a reservation, passed on.
    Client(Problem),
    /// No such order, or not one the caller may know of (404).
    NotFound,
    /// The key was used with another request body (422).
    KeyReused,
    /// Another request with the key is still being processed (409).
    KeyBusy,
    /// Another cancel of the order is still being processed (409).
    CancelBusy,
    /// The order can no longer be cancelled (409): its status, or `None` when the delivery
    /// service refused because the parcel was picked up.
    TooLate(Option<OrderStatus>),
    /// A dependency is down or misbehaving: 503 naming it; the cause is logged.
    Unavailable { dependency: String, cause: String },
    /// A defect or a deployment error: 500 with a generic body; the cause is logged.
    Internal(String),
}

impl Error {
    /// A failed statement on database `db`: unavailable (down, gone mid-request) or a lost
    /// race is a 503 naming the shard; anything else is a defect.
    pub fn db(db: usize, e: PgError) -> Self {
        match Failure::of(&e) {
            Failure::Unavailable | Failure::Contended => {
                Error::unavailable(format!("postgres order-db-{db}"), describe(&e))
            }
            _ => Error::Internal(format!("order-db-{db}: {}", describe(&e))),
        }
    }

    pub fn unavailable(dependency: impl Into<String>, cause: impl Into<String>) -> Self {
        let (dependency, cause) = (dependency.into(), cause.into());
        Error::Unavailable { dependency, cause }
    }
}

impl From<Problem> for Error {
    fn from(p: Problem) -> Self {
        Error::Client(p)
    }
}

impl From<FieldErrors> for Error {
    fn from(e: FieldErrors) -> Self {
        Error::Client(Problem::validation(e))
    }
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        let mut p = Problem::bad_request(format!("Idempotency-Key header {}", e.message()));
        p.errors = Problem::invalid_field("Idempotency-Key", e.message()).errors;
        Error::Client(p)
    }
}

impl From<PricingError> for Error {
    fn from(e: PricingError) -> Self {
        let message = match e {
            PricingError::MixedCurrencies(c) => {
                let found = c.join(", ");
                format!("all items must be priced in one currency (found {found})")
            }
            PricingError::TotalTooLarge => "the order total is too large".into(),
            PricingError::Mismatch(m) => {
                let cause = format!("reservation does not match the request: {m}");
                return Error::unavailable("product-service", cause);
            }
        };
        Error::Client(Problem::invalid_field("items", message))
    }
}

const KEY_BUSY: &str = "a request with this Idempotency-Key is still being processed; retry later";

impl From<Error> for Problem {
    /// The problem document to answer with; server-side causes are logged, never sent.
    fn from(e: Error) -> Self {
        match e {
            Error::Client(p) => p,
            Error::NotFound => Problem::not_found("no such order"),
            Error::KeyReused => Problem::unprocessable(
                "this Idempotency-Key was already used with a different request body",
            ),
            Error::KeyBusy => Problem::conflict(KEY_BUSY),
            Error::CancelBusy => {
                Problem::conflict("a cancel of this order is still being processed; retry later")
            }
            Error::TooLate(Some(status)) => Problem::conflict(format!(
                "the order is {status} and can no longer be cancelled"
            )),
            Error::TooLate(None) => Problem::conflict(
                "the order's shipment has already been picked up; the order can no longer be cancelled",
            ),
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
