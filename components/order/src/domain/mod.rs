//! The order service's rules: plain Rust, no I/O, unit-tested natively.

pub mod key;
pub mod order;
pub mod outbox;
pub mod sales;
pub mod shard;
