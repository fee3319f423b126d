//! The storefront's own rules, with no I/O. Business rules (stock, prices, order states,
//! addresses) stay with the services; these only shape what a browser sends.

pub mod cart;
pub mod cookie;
pub mod csrf;
pub mod form;
pub mod listing;
pub mod money;
pub mod role;
pub mod search;
pub mod session;

/// Whether `raw` is a non-empty run of URL-safe characters (`A-Z a-z 0-9 - _`).
pub fn url_safe(raw: &str) -> bool {
    !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
