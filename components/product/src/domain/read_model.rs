//! The key-value read model of product pages: where a product's document lives, and which
//! of two documents of one product is newer.

use marketplace_shared::shard;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Product;

/// Number of key-value labels the read model is spread over (`products0` … `products3`).
pub const KV_PARTITIONS: usize = 4;

/// The key-value label holding the read-model document of `id`.
///
/// FNV-1a over the id's 16 bytes (`shard::label_index`), modulo [`KV_PARTITIONS`]: stable
/// across builds and platforms, so every instance agrees where a product lives. Labels are
/// virtual partitions: runtime config maps them to SQLite files or Redis servers, so adding
/// a Redis server means pointing some labels at it, with no code change.
pub fn kv_label(id: &Uuid) -> String {
    let index = shard::label_index(id.as_bytes(), KV_PARTITIONS);
    format!("products{index}")
}

/// The key of the read-model document of `id` within its label.
pub fn kv_key(id: &Uuid) -> String {
    format!("product:v1:{id}")
}

/// Where a read-model document was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Written by a write on the primary (or read from it): current as of that write.
    Primary,
    /// Refilled from a read replica, which may lag: trusted only for [`REPLICA_DOC_TTL_MS`].
    Replica,
}

/// How long a document refilled from a replica is served before it is read again.
///
/// Writes always store their own (primary) document, so this only matters when the store
/// lost that document (a Redis server added or flushed) and a lagging replica refilled it:
/// such a copy is at most replica lag + this old.
pub const REPLICA_DOC_TTL_MS: i64 = 5_000;

/// The read-model document: the product plus the row version it was taken from.
///
/// Versions only grow (every write bumps them), so a document is replaced only by a newer
/// one: a refill from a lagging replica can never overwrite what a write just stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub version: i64,
    pub source: Source,
    /// When the document was stored, in ms since the epoch.
    pub stored_at_ms: i64,
    pub product: Product,
}

impl Document {
    /// Whether `self` should replace `stored` in the key-value store.
    pub fn supersedes(&self, stored: Option<&Document>) -> bool {
        stored.is_none_or(|s| {
            self.version > s.version
                || (self.version == s.version
                    && s.source == Source::Replica
                    && self.stored_at_ms > s.stored_at_ms)
        })
    }

    /// Whether the document may be served at `now_ms` without asking the database.
    pub fn is_fresh(&self, now_ms: i64) -> bool {
        self.source == Source::Primary || now_ms - self.stored_at_ms < REPLICA_DOC_TTL_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Status, fixture};

    #[test]
    fn kv_labels_are_stable_and_spread() {
        // Pinned: changing the hash would orphan every stored document.
        assert_eq!(kv_label(&Uuid::nil()), "products1");
        assert_eq!(kv_label(&Uuid::from_u128(1)), "products2");
        assert_eq!(shard::fnv1a(&[0; 16]) % 4, 1);
        let labels = (0..64u128).map(|i| kv_label(&Uuid::from_u128(i * 7919)));
        assert_eq!(labels.collect::<std::collections::BTreeSet<_>>().len(), 4);
    }

    #[test]
    fn documents_only_move_forward() {
        let p = fixture(Uuid::nil(), 1, Status::Active);
        let doc = |version, source, stored_at_ms| Document {
            version,
            source,
            stored_at_ms,
            product: p.clone(),
        };
        let old = doc(1, Source::Primary, 10);
        let new = doc(2, Source::Replica, 5);
        assert!(new.supersedes(Some(&old)));
        assert!(!old.supersedes(Some(&new)));
        assert!(old.supersedes(None));
        // A replica copy is refreshed by a later read of the same version, a primary one is not.
        assert!(doc(2, Source::Replica, 9).supersedes(Some(&new)));
        assert!(!doc(1, Source::Replica, 99).supersedes(Some(&old)));
        assert!(new.is_fresh(5 + REPLICA_DOC_TTL_MS - 1));
        assert!(!new.is_fresh(5 + REPLICA_DOC_TTL_MS));
        assert!(old.is_fresh(i64::MAX));
    }
}
