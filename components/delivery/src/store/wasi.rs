//! [`Bucket`]/[`Shards`] over `wasi:keyvalue` (store and atomics; draft2), as Spin implements
//! them on SQLite and Redis: increments are atomic; every swap is read back
//! (`marketplace_shared::kv::swap_read_back`); `batch` is not used: Spin's Redis
//! `batch::get-many` sends `KEYS k1 k2 …`, which Redis refuses, and panics on a one-key reply
//! (docs/spin-runtime.md), so keys are read one at a time.

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

    fn cas_commit(&self, key: &str, cas: atomics::Cas, value: &[u8]) -> KvResult<bool> {
        marketplace_shared::kv::swap_read_back(&self.bucket, key, cas, value).map_err(|e| KvError {
            label: self.label.clone(),
            cause: e.0,
        })
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
