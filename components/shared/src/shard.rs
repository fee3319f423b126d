//! Which key-value label a key lives in: one hash for every service that spreads keys over
//! labels (`products0..3`, `deliveries0..3`).

/// FNV-1a, 64 bits: stable across builds, platforms and Rust versions (unlike
/// `DefaultHasher`), so a key stays in its label after any upgrade.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The index (`0..labels`) of the label that holds the key whose routing bytes are `key`.
/// Each service chooses its routing bytes once, for good: they decide where stored data is.
pub fn label_index(key: &[u8], labels: usize) -> usize {
    (fnv1a(key) % labels.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_published_fnv1a() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn keys_spread_over_every_label_and_stay_put() {
        let mut seen = [0usize; 4];
        for i in 0..400u32 {
            let key = format!("shipment-{i}");
            let index = label_index(key.as_bytes(), 4);
            assert_eq!(index, label_index(key.as_bytes(), 4));
            seen[index] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
        assert_eq!(label_index(b"anything", 0), 0);
    }
}
