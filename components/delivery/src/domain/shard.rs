//! Which key-value label holds a key: a stable hash, so every instance agrees without a lookup.
//!
//! The labels (`deliveries0` … `deliveries3`) are fixed virtual partitions; operators add
//! servers by pointing labels at new Redis instances in the runtime config, never by changing
//! the count (that would move every key).

/// Number of key-value labels the shipments are spread over.
pub const SHARDS: usize = 4;

/// FNV-1a 64: stable across builds, platforms and Rust versions (unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The shard (label index) of a routing key: a shipment id, an order id or a tracking number.
pub fn shard_of(routing_key: &str) -> usize {
    (fnv1a(routing_key.as_bytes()) % SHARDS as u64) as usize
}

/// The label name of shard `i`.
pub fn label(i: usize) -> String {
    format!("deliveries{i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_published_fnv1a() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn shards_are_stable_and_spread() {
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
