//! Nothing here: the tests of `spin-test-host` are in `tests/` (see Cargo.toml for why they
//! are a package apart). Their shared helpers are the host's own `tests/common`.
