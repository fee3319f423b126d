//! The key-value operations the shipment log needs, behind a trait the service owns: the
//! Spin implementation is [`super::wasi`]; tests use an in-memory one.

/// A failure of one key-value label (a dependency failure: 503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvError {
    pub label: String,
    pub cause: String,
}

impl From<KvError> for crate::error::Error {
    fn from(e: KvError) -> Self {
        crate::error::Error::Store {
            label: e.label,
            cause: e.cause,
        }
    }
}

pub type KvResult<T> = Result<T, KvError>;

/// One label (`deliveriesN`): plain reads and writes plus the two atomic operations.
pub trait Bucket {
    /// A compare-and-swap handle: remembers (or, on Redis, `WATCH`es) what was read.
    type Cas;

    fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>>;
    fn set(&self, key: &str, value: &[u8]) -> KvResult<()>;
    fn delete(&self, key: &str) -> KvResult<()>;
    /// Atomically adds `delta` (a missing key counts as 0) and returns the new value.
    fn increment(&self, key: &str, delta: i64) -> KvResult<i64>;
    /// Starts a compare-and-swap: the key's current value and a handle to swap it.
    fn cas_read(&self, key: &str) -> KvResult<(Self::Cas, Option<Vec<u8>>)>;
    /// Compare-and-swap that says whether `value` is in the store, whatever the swap answered
    /// (Spin's Redis store answers `cas-failed` to every swap and success to one its `WATCH`
    /// aborted): on Spin, `marketplace_shared::kv::swap_read_back`. `Ok(false)` when someone
    /// else wrote first, or wrote on top of `value` before the read; callers whose value
    /// carries something of their own (an id, a slot) look for it on their next attempt to
    /// tell that case apart.
    fn cas_commit(&self, key: &str, cas: Self::Cas, value: &[u8]) -> KvResult<bool>;
}

/// The labels the shipments are spread over.
pub trait Shards {
    type B: Bucket;

    /// The bucket of label `deliveries{index}`.
    fn shard(&self, index: usize) -> KvResult<&Self::B>;

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

    #[derive(Default)]
    pub struct MemBucket {
        pub map: Mutex<HashMap<String, Vec<u8>>>,
        /// Fails every operation when set (to test "nothing half-written").
        pub broken: AtomicBool,
        /// Plain reads served (to test what a read costs).
        pub gets: AtomicUsize,
    }

    impl MemBucket {
        fn check(&self) -> KvResult<()> {
            if self.broken.load(Ordering::SeqCst) {
                Err(KvError {
                    label: "mem".into(),
                    cause: "broken".into(),
                })
            } else {
                Ok(())
            }
        }
    }

    impl Bucket for MemBucket {
        /// The value `cas_read` saw.
        type Cas = Option<Vec<u8>>;

        fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
            self.check()?;
            self.gets.fetch_add(1, Ordering::SeqCst);
            Ok(self.map.lock().unwrap().get(key).cloned())
        }
        fn set(&self, key: &str, value: &[u8]) -> KvResult<()> {
            self.check()?;
            self.map
                .lock()
                .unwrap()
                .insert(key.to_string(), value.to_vec());
            Ok(())
        }
        fn delete(&self, key: &str) -> KvResult<()> {
            self.check()?;
            self.map.lock().unwrap().remove(key);
            Ok(())
        }
        fn increment(&self, key: &str, delta: i64) -> KvResult<i64> {
            self.check()?;
            let mut m = self.map.lock().unwrap();
            let cur = m
                .get(key)
                .map(|v| i64::from_le_bytes(v.clone().try_into().unwrap()))
                .unwrap_or(0);
            m.insert(key.to_string(), (cur + delta).to_le_bytes().to_vec());
            Ok(cur + delta)
        }
        fn cas_read(&self, key: &str) -> KvResult<(Self::Cas, Option<Vec<u8>>)> {
            let seen = self.get(key)?;
            Ok((seen.clone(), seen))
        }
        /// The swap (nothing written when the value changed since `cas_read`), then, as a
        /// separate step another thread may run between, the read-back.
        fn cas_commit(&self, key: &str, seen: Self::Cas, value: &[u8]) -> KvResult<bool> {
            self.check()?;
            {
                let mut m = self.map.lock().unwrap();
                if m.get(key) == seen.as_ref() {
                    m.insert(key.to_string(), value.to_vec());
                }
            }
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
        fn shard(&self, index: usize) -> KvResult<&MemBucket> {
            Ok(&self.buckets[index])
        }
        fn pause(&self, _attempt: u32) {
            std::thread::yield_now();
        }
    }
}
