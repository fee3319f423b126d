//! Which key-value label holds a key: a stable hash, so every instance agrees without a lookup.
//!
//! The labels (`deliveries0` … `deliveries3`) are fixed virtual partitions; operators add
//! servers by pointing labels at new Redis instances in the runtime config, never by changing
//! the count (that would move every key).

pub const SHARDS: usize = 4;

/// The shard (label index) of a routing key: a shipment id, an order id or a tracking number.
/// The routing bytes are the key's text, for good: they decide where stored shipments are.
pub fn shard_of(routing_key: &str) -> usize {
    marketplace_shared::shard::label_index(routing_key.as_bytes(), SHARDS)
}

pub fn label(i: usize) -> String {
    format!("deliveries{i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_fnv1a_of_the_text_so_stored_shipments_stay_in_their_label() {
        // FNV-1a 64 of "a" is 0xaf63_dc4c_8601_ec8c: the hash the service always used.
        assert_eq!(shard_of("a"), (0xaf63_dc4c_8601_ec8c_u64 % 4) as usize);
        let a = shard_of("0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b");
        assert_eq!(a, shard_of("0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b"));
        let mut counts = [0usize; SHARDS];
        for i in 0..4000 {
            counts[shard_of(&uuid::Uuid::from_u128(i * 7919).to_string())] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert_eq!(label(2), "deliveries2");
    }
}
