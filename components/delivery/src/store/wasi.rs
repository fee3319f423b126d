//! [`Bucket`]/[`Shards`] over `wasi:keyvalue` (store and atomics; draft2), as Spin implements
//! them on SQLite and Redis: increments are atomic; a swap's answer cannot be trusted on Redis
//! (see [`Bucket::cas_commit`]); `batch` is not used (see `get_many`).

use std::cell::OnceCell;

use spin_sdk::wit::wasi::keyvalue::{atomics, store};

use super::kv::{Bucket, KvError, KvResult, Shards};
use crate::domain::shard::{SHARDS, label};

/// One opened label.
pub struct WasiBucket {
    label: String,
    bucket: store::Bucket,
}

fn describe(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(m) => m,
    }
}

impl WasiBucket {
    fn err(&self, e: store::Error) -> KvError {
        KvError {
            label: self.label.clone(),
            cause: describe(e),
        }
    }
}

impl Bucket for WasiBucket {
    type Cas = atomics::Cas;

    fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.bucket.get(key).map_err(|e| self.err(e))
    }

    fn get_many(&self, keys: &[String]) -> KvResult<Vec<Option<Vec<u8>>>> {
        // One `get` per key: Spin's Redis store implements `batch::get-many` with a `KEYS`
        // command that Redis refuses, so the batch interface cannot be used on Spin.
        keys.iter().map(|k| self.get(k)).collect()
    }

    fn set(&self, key: &str, value: &[u8]) -> KvResult<()> {
        self.bucket.set(key, value).map_err(|e| self.err(e))
    }

    fn delete(&self, key: &str) -> KvResult<()> {
        self.bucket.delete(key).map_err(|e| self.err(e))
    }

    fn increment(&self, key: &str, delta: i64) -> KvResult<i64> {
        atomics::increment(&self.bucket, key, delta).map_err(|e| self.err(e))
    }

    fn cas_read(&self, key: &str) -> KvResult<(atomics::Cas, Option<Vec<u8>>)> {
        let cas = atomics::Cas::new(&self.bucket, key).map_err(|e| self.err(e))?;
        // `current` must be called: it is what arms the comparison (Redis `WATCH`).
        let current = cas.current().map_err(|e| self.err(e))?;
        Ok((cas, current))
    }

    fn cas_swap(&self, cas: atomics::Cas, value: &[u8]) -> KvResult<bool> {
        match atomics::swap(cas, value) {
            // Spin's Redis store answers `cas-failed` to every swap, written or not (it ends
            // the swap with `UNWATCH <key>`, which Redis refuses), and reports success for a
            // swap its `WATCH` aborted: its answer says nothing, so "maybe written" either way
            // and `cas_commit` reads the key back. (On SQLite `cas-failed` is truthful, and the
            // read-back agrees.)
            Ok(()) | Err(atomics::CasError::CasFailed(_)) => Ok(true),
            Err(atomics::CasError::StoreError(e)) => Err(self.err(e)),
        }
    }
}

/// The four labels, opened on first use within one request.
#[derive(Default)]
pub struct WasiShards {
    buckets: [OnceCell<WasiBucket>; SHARDS],
}

impl WasiShards {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Shards for WasiShards {
    type B = WasiBucket;

    fn shard(&self, index: usize) -> KvResult<&WasiBucket> {
        let cell = &self.buckets[index % SHARDS];
        if let Some(b) = cell.get() {
            return Ok(b);
        }
        let name = label(index % SHARDS);
        let bucket = store::open(&name).map_err(|e| KvError {
            label: name.clone(),
            cause: describe(e),
        })?;
        Ok(cell.get_or_init(|| WasiBucket {
            label: name,
            bucket,
        }))
    }

    fn pause(&self, attempt: u32) {
        // Randomised, growing back-off so that concurrent writers of one shipment spread out
        // instead of colliding in lock-step.
        let cap_ms = u64::from(attempt.min(10) + 1) * 2;
        let jitter = uuid::Uuid::new_v4().as_u128() as u64 % (cap_ms * 1000);
        std::thread::sleep(std::time::Duration::from_micros(jitter + 200));
    }
}
