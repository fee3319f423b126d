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

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
