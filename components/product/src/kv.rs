//! The key-value read model: one JSON [`Document`] per product, spread over the labels
//! `products0` … `products3` by [`domain::kv_label`] (`wasi:keyvalue`).
//!
//! Runtime config maps each label to a SQLite file (laptop) or a Redis server (production);
//! several labels may share a server, so more servers are added by configuration only.
//! Stores go through compare-and-swap and keep the higher version, so concurrent writers
//! and refills from lagging replicas can only move a document forward. Each swap is read
//! back, whatever it answered: Spin's Redis store answers `cas-failed` to every swap and
//! success to one its `WATCH` aborted (docs/spin-runtime.md).

use spin_sdk::wit::wasi::keyvalue::atomics::{self, Cas, CasError};
use spin_sdk::wit::wasi::keyvalue::store::{self, Bucket};
use uuid::Uuid;

use crate::domain::{self, Document};

/// How often a store retries a compare-and-swap that lost a race before giving up.
const CAS_ATTEMPTS: usize = 16;

fn open(id: &Uuid) -> Result<Bucket, String> {
    let label = domain::kv_label(id);
    store::open(&label).map_err(|e| format!("open {label}: {e:?}"))
}

fn decode(bytes: Option<Vec<u8>>) -> Option<Document> {
    // A document that does not decode (older format, corruption) counts as absent.
    bytes.and_then(|b| serde_json::from_slice(&b).ok())
}

/// The stored document of `id`, if any.
pub fn get(id: &Uuid) -> Result<Option<Document>, String> {
    let bucket = open(id)?;
    let bytes = bucket
        .get(&domain::kv_key(id))
        .map_err(|e| format!("get: {e:?}"))?;
    Ok(decode(bytes))
}

/// Stores `doc` unless the store already holds the same or a newer version.
pub fn put(doc: &Document) -> Result<(), String> {
    let id = doc.product.id;
    let bucket = open(&id)?;
    let key = domain::kv_key(&id);
    let bytes = serde_json::to_vec(doc).map_err(|e| e.to_string())?;
    let mut cas = Cas::new(&bucket, &key).map_err(|e| format!("cas: {e:?}"))?;
    for _ in 0..CAS_ATTEMPTS {
        let current = decode(cas.current().map_err(|e| format!("cas current: {e:?}"))?);
        if !doc.supersedes(current.as_ref()) {
            return Ok(());
        }
        // The swap's answer cannot be trusted on Spin's Redis store (`cas-failed` for every
        // swap, written or not; success for one its `WATCH` aborted), so the key is read back
        // either way: done when the store holds this version or a newer one.
        let fresh = match atomics::swap(cas, &bytes) {
            Ok(()) => None,
            Err(CasError::CasFailed(fresh)) => Some(fresh),
            Err(CasError::StoreError(e)) => return Err(format!("swap: {e:?}")),
        };
        let stored = decode(bucket.get(&key).map_err(|e| format!("get: {e:?}"))?);
        if !doc.supersedes(stored.as_ref()) {
            return Ok(());
        }
        cas = match fresh {
            Some(fresh) => fresh,
            None => Cas::new(&bucket, &key).map_err(|e| format!("cas: {e:?}"))?,
        };
    }
    Err("compare-and-swap kept failing".into())
}

/// Removes the document of `id` (the next read refills it from the database).
pub fn delete(id: &Uuid) -> Result<(), String> {
    open(id)?
        .delete(&domain::kv_key(id))
        .map_err(|e| format!("delete: {e:?}"))
}

/// Stores the document a write just produced; when that fails, invalidates it instead, so
/// that no reader keeps seeing the version before the write.
pub fn after_write(doc: &Document) {
    if let Err(e) = put(doc) {
        eprintln!(
            "product: read model update failed for {}: {e}",
            doc.product.id
        );
        if let Err(e) = delete(&doc.product.id) {
            eprintln!(
                "product: read model invalidation failed for {}: {e}",
                doc.product.id
            );
        }
    }
}

/// Checks that every label answers (readiness); names the first that does not.
pub fn ping() -> Result<(), String> {
    for i in 0..domain::KV_PARTITIONS {
        let label = format!("products{i}");
        let bucket = store::open(&label).map_err(|e| format!("{label}: {e:?}"))?;
        bucket
            .exists("readyz")
            .map_err(|e| format!("{label}: {e:?}"))?;
    }
    Ok(())
}
