//! The key-value read model: one JSON [`Document`] per product in the label
//! [`read_model::kv_label`] names (`wasi:keyvalue`; runtime config maps labels to SQLite
//! files or Redis servers). Stores go through `marketplace_shared::kv::update` and keep the
//! higher version, so concurrent writers and lagging refills only move a document forward.

use marketplace_shared::kv::{self, KvError, Step};
use spin_sdk::wit::wasi::keyvalue::store::{self, Bucket};
use uuid::Uuid;

use crate::domain::Document;
use crate::domain::read_model::{self, KV_PARTITIONS};

/// How often a store retries a compare-and-swap that lost a race before giving up.
const CAS_ATTEMPTS: u32 = 16;

fn open(id: &Uuid) -> Result<Bucket, KvError> {
    let label = read_model::kv_label(id);
    store::open(&label).map_err(|e| KvError(format!("open {label}: {e:?}")))
}

fn decode(bytes: Option<&[u8]>) -> Option<Document> {
    // A document that does not decode (older format, corruption) counts as absent.
    bytes.and_then(|b| serde_json::from_slice(b).ok())
}

pub fn get(id: &Uuid) -> Result<Option<Document>, KvError> {
    let bytes = open(id)?
        .get(&read_model::kv_key(id))
        .map_err(|e| KvError(format!("get: {e:?}")))?;
    Ok(decode(bytes.as_deref()))
}

/// Stores `doc` unless the store already holds the same or a newer version.
pub fn put(doc: &Document) -> Result<(), KvError> {
    let id = doc.product.id;
    let bytes = serde_json::to_vec(doc).map_err(|e| KvError(e.to_string()))?;
    let stored = kv::update(
        &open(&id)?,
        &read_model::kv_key(&id),
        CAS_ATTEMPTS,
        |current| {
            if doc.supersedes(decode(current).as_ref()) {
                Step::Write(bytes.clone(), ())
            } else {
                Step::Done(())
            }
        },
    )?;
    stored.ok_or_else(|| KvError("compare-and-swap kept failing".into()))
}

/// Stores the document a write just produced; when that fails, invalidates it instead, so
/// that no reader keeps seeing the version before the write.
pub fn after_write(doc: &Document) {
    let id = doc.product.id;
    if let Err(e) = put(doc) {
        eprintln!("product: read model update failed for {id}: {e}");
        let key = read_model::kv_key(&id);
        let deleted = open(&id).and_then(|b| b.delete(&key).map_err(|e| KvError(format!("{e:?}"))));
        if let Err(e) = deleted {
            eprintln!("product: read model invalidation failed for {id}: {e}");
        }
    }
}

/// Checks that every label answers (readiness); names the first that does not.
pub fn ping() -> Result<(), KvError> {
    for i in 0..KV_PARTITIONS {
        let label = format!("products{i}");
        let failed = |e| KvError(format!("{label}: {e:?}"));
        store::open(&label)
            .map_err(failed)?
            .exists("readyz")
            .map_err(failed)?;
    }
    Ok(())
}
