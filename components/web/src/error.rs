//! The storefront's one error type and its one mapping ([`Error::into_page`]): an HTML error
//! page in words (people, not clients, read it), never a raw problem document.

use marketplace_shared::Problem;

use crate::clients::ApiError;
use crate::domain::cart::CartError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum Error {
    /// A problem the person can understand or act on (4xx): status and what to say (`detail`).
    Page(u16, String),
    /// The session's tokens no longer work (a 401 from a service): sign in again.
    SignIn,
    /// A service or the key-value store is down: 503 naming it; the cause is logged.
    Unavailable { dependency: String, cause: String },
    /// A defect or a deployment error: 500 with a generic page; the cause is logged.
    Internal(String),
}

/// What an error page shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ErrorPage {
    pub status: u16,
    pub title: &'static str,
    pub detail: String,
}

impl Error {
    pub fn page(status: u16, detail: impl Into<String>) -> Self {
        Error::Page(status, detail.into())
    }

    /// The page to render; server-side causes are logged, never shown.
    pub fn into_page(self) -> ErrorPage {
        let (status, detail) = match self {
            Error::Page(status, detail) => (status, detail),
            Error::SignIn => (401, "Please sign in again.".into()),
            Error::Unavailable { dependency, cause } => {
                eprintln!("web: dependency {dependency} unavailable: {cause}");
                let later = "is not answering right now. Please try again in a moment.";
                (503, format!("The {dependency} {later}"))
            }
            Error::Internal(cause) => {
                eprintln!("web: internal error: {cause}");
                let sorry = "Something went wrong on our side. Please try again.";
                (500, sorry.into())
            }
        };
        ErrorPage {
            status,
            title: title(status),
            detail,
        }
    }
}

/// A heading for each status people may meet.
pub fn title(status: u16) -> &'static str {
    match status {
        400 => "That request was not understood",
        401 => "Please sign in",
        403 => "Not allowed",
        404 => "Not found",
        409 => "That cannot be done now",
        413 => "Too much at once",
        422 => "Please check what you entered",
        429 => "Too many attempts",
        503 => "Temporarily unavailable",
        _ => "Something went wrong",
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        match e.status {
            401 => Error::SignIn,
            502..=504 | 0 => Error::Unavailable {
                dependency: format!("{} service", e.service),
                cause: format!("{}: {}", e.status, e.detail),
            },
            400..=499 => Error::Page(e.status, e.detail_or_default()),
            _ => Error::Internal(format!(
                "{} service answered {}: {}",
                e.service, e.status, e.detail
            )),
        }
    }
}

/// Routing refusals (404, 405, 400 for the query): their detail in words.
impl From<Problem> for Error {
    fn from(p: Problem) -> Self {
        Error::page(p.status, p.detail)
    }
}

impl From<CartError> for Error {
    fn from(e: CartError) -> Self {
        Error::page(422, e.message())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Unavailable {
            dependency: format!("session store ({})", e.label),
            cause: e.cause,
        }
    }
}
