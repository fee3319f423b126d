//! The integration tests: one test binary (one link of the host and wasmtime), one module per
//! service or concern. Shared helpers live on the test app (`marketplace_tests`, src/lib.rs).
//!
//! `logs` holds one ignored test that `make test` runs after all the others (it reads the
//! component logs the whole run captured).

mod authz;
mod delivery;
mod health;
mod hostile;
mod imports;
mod logs;
mod order;
mod product;
mod shape;
mod user;
