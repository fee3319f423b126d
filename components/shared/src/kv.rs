//! Key-value compare-and-swap as real Spin needs it (feature `spin`; docs/spin-runtime.md).
//!
//! Spin's Redis store answers `cas-failed` to **every** swap (it ends each with `UNWATCH
//! <key>`, which Redis refuses), written or not, and success to a swap its `WATCH` aborted.
//! So no swap's answer is trusted: [`swap_read_back`] reads the key back, and [`update`] is the
//! one retry loop every service uses on top of it.

use spin_sdk::wit::wasi::keyvalue::atomics::{self, Cas, CasError};
use spin_sdk::wit::wasi::keyvalue::store::Bucket;

/// A key-value failure: the label's store cannot be used (a dependency failure, 503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KvError(pub String);

fn failed(what: &str, e: impl std::fmt::Debug) -> KvError {
    KvError(format!("{what}: {e:?}"))
}

/// Swaps `value` into `key` through `cas` and says whether the store now holds exactly
/// `value` (read back, whatever the swap answered). `false`: another writer got in first,
/// or wrote on top of `value` before the read; callers whose value carries something of their
/// own (a version, an id) tell those cases apart on their next attempt.
pub fn swap_read_back(bucket: &Bucket, key: &str, cas: Cas, value: &[u8]) -> Result<bool, KvError> {
    match atomics::swap(cas, value) {
        Ok(()) | Err(CasError::CasFailed(_)) => {}
        Err(CasError::StoreError(e)) => return Err(failed("swap", e)),
    }
    let stored = bucket.get(key).map_err(|e| failed("get", e))?;
    Ok(stored.as_deref() == Some(value))
}

/// What [`update`]'s step decides about the value it was shown.
pub enum Step<R> {
    /// Nothing to write (already up to date, or refused): return `R`.
    Done(R),
    /// Write these bytes; return `R` once the store holds them.
    Write(Vec<u8>, R),
}

/// Read-modify-write of `key` by compare-and-swap: `step` sees the current value (`None`
/// when absent) and decides; a write is read back ([`swap_read_back`]), and a lost race runs
/// `step` again on the fresher value, up to `attempts` times. `Ok(None)`: every attempt lost
/// (heavy contention; the caller answers 503 or 429 with `Retry-After`).
pub fn update<R>(
    bucket: &Bucket,
    key: &str,
    attempts: u32,
    mut step: impl FnMut(Option<&[u8]>) -> Step<R>,
) -> Result<Option<R>, KvError> {
    for _ in 0..attempts {
        let cas = Cas::new(bucket, key).map_err(|e| failed("cas", e))?;
        let current = cas.current().map_err(|e| failed("cas current", e))?;
        match step(current.as_deref()) {
            Step::Done(r) => return Ok(Some(r)),
            Step::Write(value, r) => {
                if swap_read_back(bucket, key, cas, &value)? {
                    return Ok(Some(r));
                }
            }
        }
    }
    Ok(None)
}
