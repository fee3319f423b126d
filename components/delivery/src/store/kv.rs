//! The key-value operations the shipment log needs, behind a trait the service owns: the
//! Spin implementation is [`super::wasi`]; tests use an in-memory one.

use crate::error::Result;

/// One label (`deliveriesN`): plain reads and writes plus the two atomic operations; a failure
/// is an `Error::Store` naming the label (503).
pub trait Bucket {
    /// A compare-and-swap handle: remembers (or, on Redis, `WATCH`es) what was read.
    type Cas;

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    fn set(&self, key: &str, value: &[u8]) -> Result<()>;
    fn delete(&self, key: &str) -> Result<()>;
    /// Atomically adds `delta` (a missing key counts as 0) and returns the new value.
    fn increment(&self, key: &str, delta: i64) -> Result<i64>;
    /// Starts a compare-and-swap: the key's current value and a handle to swap it.
    fn cas_read(&self, key: &str) -> Result<(Self::Cas, Option<Vec<u8>>)>;
    /// Swaps and says whether `value` is in the store, whatever the swap answered (on Spin,
    /// `marketplace_shared::kv::swap_read_back`). `Ok(false)` also when another writer built
    /// on `value` before the read: callers whose value carries an id or slot look for it.
    fn cas_commit(&self, key: &str, cas: Self::Cas, value: &[u8]) -> Result<bool>;
}

/// The labels the shipments are spread over.
pub trait Shards {
    type B: Bucket;

    /// The bucket of label `deliveries{index}`.
    fn shard(&self, index: usize) -> Result<&Self::B>;

    /// Waits a little before compare-and-swap attempt `attempt` (randomised back-off).
    fn pause(&self, attempt: u32);
}

/// An in-memory store with the compare-and-swap of Spin's Redis store, for native tests
/// (including multi-threaded ones).
#[cfg(test)]
pub mod memory {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;
    use crate::error::Error;

    #[derive(Default)]
    pub struct MemBucket {
        pub map: Mutex<HashMap<String, Vec<u8>>>,
        /// Fails every operation when set (to test "nothing half-written").
        pub broken: AtomicBool,
        /// Plain reads served (to test what a read costs).
        pub gets: AtomicUsize,
    }

    impl MemBucket {
        /// Runs `f` on the map, or fails when the bucket is broken.
        fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Vec<u8>>) -> R) -> Result<R> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(Error::Store {
                    label: "mem".into(),
                    cause: "broken".into(),
                });
            }
            Ok(f(&mut self.map.lock().unwrap()))
        }
    }

    impl Bucket for MemBucket {
        /// The value `cas_read` saw.
        type Cas = Option<Vec<u8>>;

        fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
            let value = self.with(|m| m.get(key).cloned())?;
            self.gets.fetch_add(1, Ordering::SeqCst);
            Ok(value)
        }
        fn set(&self, key: &str, value: &[u8]) -> Result<()> {
            self.with(|m| m.insert(key.to_string(), value.to_vec()))
                .map(drop)
        }
        fn delete(&self, key: &str) -> Result<()> {
            self.with(|m| m.remove(key)).map(drop)
        }
        fn increment(&self, key: &str, delta: i64) -> Result<i64> {
            self.with(|m| {
                let old = m
                    .get(key)
                    .map_or(0, |v| i64::from_le_bytes(v[..].try_into().unwrap()));
                m.insert(key.to_string(), (old + delta).to_le_bytes().to_vec());
                old + delta
            })
        }
        fn cas_read(&self, key: &str) -> Result<(Self::Cas, Option<Vec<u8>>)> {
            let seen = self.get(key)?;
            Ok((seen.clone(), seen))
        }
        /// The swap (nothing written when the value changed since `cas_read`), then, as a
        /// separate step another thread may run between, the read-back.
        fn cas_commit(&self, key: &str, seen: Self::Cas, value: &[u8]) -> Result<bool> {
            self.with(|m| {
                if m.get(key) == seen.as_ref() {
                    m.insert(key.to_string(), value.to_vec());
                }
            })?;
            std::thread::yield_now();
            Ok(self.get(key)?.as_deref() == Some(value))
        }
    }

    #[derive(Default)]
    pub struct MemShards {
        pub buckets: [MemBucket; crate::domain::shard::SHARDS],
    }

    impl Shards for MemShards {
        type B = MemBucket;
        fn shard(&self, index: usize) -> Result<&MemBucket> {
            Ok(&self.buckets[index])
        }
        fn pause(&self, _attempt: u32) {
            std::thread::yield_now();
        }
    }
}
