//! The storefront's own rules, with no I/O: the cart, sessions and their cookie, CSRF
//! tokens, form, role and search parsing, money display. Business rules (stock, prices, order
//! states, address validation) stay with the services; these only shape what a browser sends.

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
