//! The one error type of the user service and its one mapping to a problem document.

use marketplace_shared::Problem;
use marketplace_shared::pg::{Failure, describe};
use spin_sdk::pg4::PgError;

/// The unique index that makes an email belong to at most one live account.
pub const EMAIL_UNIQUE_CONSTRAINT: &str = "users_email_normalized_key";
/// The key that makes a bootstrap-admin address belong to the first account that took it.
pub const RESERVATION_KEY: &str = "reserved_admin_emails_pkey";

/// Everything a user-service request can fail with.
#[derive(Debug)]
pub enum Error {
    /// A client error decided at the edge: body, query, token, validation.
    Client(Problem),
    /// Login with an unknown email or a wrong password: one answer for both.
    InvalidCredentials,
    /// Another live account has this email.
    EmailTaken,
    /// A bootstrap-admin address already reserved for another (possibly deleted) account.
    EmailReserved,
    /// The account's address is a bootstrap-admin one: it stays with the account.
    AdminAddressKept,
    /// Too many failed logins for this account; seconds until the window reopens.
    LoginsLocked { retry_after: u64 },
    /// Too many failed logins from this client address; seconds until its window reopens.
    AddressLocked { retry_after: u64 },
    /// A refresh token that is unknown, spent, expired or of a revoked login.
    RefreshRejected,
    /// The password given to confirm a sensitive change is wrong.
    WrongPassword,
    /// The token is valid but its account has been deleted.
    AccountGone,
    /// The caller is authenticated but not an admin.
    AdminOnly,
    /// No live user with this id.
    UserNotFound,
    /// PostgreSQL could not be reached (or dropped the connection).
    DatabaseUnavailable(String),
    /// The key-value store could not be used.
    KeyValueUnavailable(String),
    /// A bug or a deployment error (bad configuration); logged, never shown.
    Internal(String),
}

impl From<Problem> for Error {
    fn from(p: Problem) -> Self {
        Error::Client(p)
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        match e {
            Error::Client(p) => p,
            Error::InvalidCredentials => Problem::unauthorized("invalid email or password"),
            Error::EmailTaken => Problem::conflict("an account with this email already exists"),
            Error::EmailReserved => Problem::conflict("this email address is reserved"),
            Error::AdminAddressKept => Problem::conflict(
                "a bootstrap admin address stays with its account; the email cannot be changed",
            ),
            Error::LoginsLocked { retry_after } => Problem::too_many_requests(
                retry_after,
                "too many failed logins for this account; try again later",
            ),
            Error::AddressLocked { retry_after } => Problem::too_many_requests(
                retry_after,
                "too many failed logins from this address; try again later",
            ),
            Error::RefreshRejected => {
                Problem::unauthorized("the refresh token is invalid, expired or already used")
            }
            Error::WrongPassword => Problem::forbidden("the password is incorrect"),
            Error::AccountGone => Problem::unauthorized("the account no longer exists"),
            Error::AdminOnly => Problem::forbidden("only admins may do this"),
            Error::UserNotFound => Problem::not_found("no such user"),
            Error::DatabaseUnavailable(cause) => {
                eprintln!("user: database unavailable: {}", first_line(&cause));
                Problem::service_unavailable("postgres (user database)")
            }
            Error::KeyValueUnavailable(cause) => {
                eprintln!("user: key-value store unavailable: {}", first_line(&cause));
                Problem::service_unavailable("key-value store")
            }
            Error::Internal(cause) => {
                eprintln!("user: internal error: {}", first_line(&cause));
                Problem::internal()
            }
        }
    }
}

/// Host errors can carry multi-line causes and backtraces; one line is enough for the log.
fn first_line(cause: &str) -> &str {
    cause.lines().next().unwrap_or_default()
}

impl From<PgError> for Error {
    fn from(e: PgError) -> Self {
        match Failure::of(&e) {
            f if f.is_unique(EMAIL_UNIQUE_CONSTRAINT) => Error::EmailTaken,
            f if f.is_unique(RESERVATION_KEY) => Error::EmailReserved,
            Failure::Unavailable | Failure::Contended => Error::DatabaseUnavailable(describe(&e)),
            _ => Error::Internal(describe(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use marketplace_shared::pg::db_error;
    use spin_sdk::pg4::QueryError;

    #[test]
    fn each_failure_becomes_its_problem_locks_with_retry_after_and_no_cause_shows() {
        let pg = |code, constraint| Error::from(db_error(code, constraint));
        let taken = "an account with this email already exists";
        let reserved = "this email address is reserved";
        let db = "dependency unavailable: postgres (user database)";
        let internal = "the server could not complete the request";
        let account = "too many failed logins for this account; try again later";
        let address = "too many failed logins from this address; try again later";
        let refused = Error::from(PgError::ConnectionFailed("refused".into()));
        let closed = QueryError::Text("connection closed".into());
        for (e, status, detail) in [
            (pg("23505", Some(EMAIL_UNIQUE_CONSTRAINT)), 409, taken),
            (pg("23505", Some(RESERVATION_KEY)), 409, reserved),
            (pg("23505", Some("users_pkey")), 500, internal),
            (refused, 503, db),
            (pg("57P01", None), 503, db),
            (Error::from(PgError::QueryFailed(closed)), 503, db),
            (Error::Internal("secret detail".into()), 500, internal),
            (Error::LoginsLocked { retry_after: 42 }, 429, account),
            (Error::AddressLocked { retry_after: 42 }, 429, address),
        ] {
            let p = Problem::from(e);
            assert_eq!((p.status, p.detail.as_str()), (status, detail));
            let retry_after = (status == 429).then(|| ("retry-after", "42".to_string()));
            assert_eq!(p.headers, Vec::from_iter(retry_after), "{detail}");
        }
    }

    /// What Spin 4.1 reported for a wrong password (its component log, with the error's debug
    /// form logged raw); a URL is added, as a driver could name it. Only the class is logged.
    #[test]
    fn a_failed_connection_logs_only_its_class() {
        let spin = "Error occurred while creating a new object: db error\n\nCaused by:\n    \
                    0: db error\n    1: FATAL: password authentication failed for user \"pwuser\"\
                    \n\nStack backtrace:\n   0: <unknown>";
        for text in [
            spin.to_string(),
            format!("postgres://pwuser:S3cret@db:5432/x: {spin}"),
        ] {
            match Error::from(PgError::ConnectionFailed(text)) {
                Error::DatabaseUnavailable(cause) => assert_eq!(cause, "connection failed"),
                other => panic!("{other:?}"),
            }
        }
    }
}
