//! [`Bucket`]/[`Shards`] over `wasi:keyvalue` (store and atomics; draft2), as Spin implements
//! them on SQLite and Redis: increments are atomic; every swap is read back
//! (`marketplace_shared::kv::swap_read_back`); `batch` is not used: Spin's Redis
//! `batch::get-many` sends `KEYS k1 k2 …`, which Redis refuses, and panics on a one-key reply
//! (docs/spin-runtime.md), so keys are read one at a time.

use std::cell::OnceCell;

use spin_sdk::wit::wasi::keyvalue::{atomics, store};

use super::kv::{Bucket, Shards};
use crate::domain::shard::{SHARDS, label};
use crate::error::{Error, Result};

pub struct WasiBucket {
    label: String,
    bucket: store::Bucket,
}

fn failure(label: &str, e: store::Error) -> Error {
    let cause = match e {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(m) => m,
    };
    Error::Store {
        label: label.to_string(),
        cause,
    }
}

impl Bucket for WasiBucket {
    type Cas = atomics::Cas;

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.bucket.get(key).map_err(|e| failure(&self.label, e))
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.bucket
            .set(key, value)
            .map_err(|e| failure(&self.label, e))
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.bucket.delete(key).map_err(|e| failure(&self.label, e))
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        atomics::increment(&self.bucket, key, delta).map_err(|e| failure(&self.label, e))
    }

    fn cas_read(&self, key: &str) -> Result<(atomics::Cas, Option<Vec<u8>>)> {
        let cas = atomics::Cas::new(&self.bucket, key).map_err(|e| failure(&self.label, e))?;
        // `current` must be called: it is what arms the comparison (Redis `WATCH`).
        let current = cas.current().map_err(|e| failure(&self.label, e))?;
        Ok((cas, current))
    }

    fn cas_commit(&self, key: &str, cas: atomics::Cas, value: &[u8]) -> Result<bool> {
        marketplace_shared::kv::swap_read_back(&self.bucket, key, cas, value)
            .map_err(|e| failure(&self.label, store::Error::Other(e.0)))
    }
}

/// The four labels, opened on first use within one request.
#[derive(Default)]
pub struct WasiShards {
    buckets: [OnceCell<WasiBucket>; SHARDS],
}

impl Shards for WasiShards {
    type B = WasiBucket;

    fn shard(&self, index: usize) -> Result<&WasiBucket> {
        let cell = &self.buckets[index % SHARDS];
        if let Some(b) = cell.get() {
            return Ok(b);
        }
        let name = label(index % SHARDS);
        let bucket = store::open(&name).map_err(|e| failure(&name, e))?;
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
