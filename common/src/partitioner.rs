//! The standard key hash: which partition a keyed record goes to.
//!
//! `partition = (murmur2(key, 0x9747b28c) & 0x7fffffff) % partitions`, with Austin Appleby's
//! 32-bit MurmurHash2 reading blocks little-endian: the hash Kafka's default partitioner uses,
//! so the same keys land on the same partition numbers as there. The proto documents the same
//! formula for clients in other languages.

/// The seed of the standard key hash.
pub const KEY_HASH_SEED: u32 = 0x9747_b28c;

/// The 32-bit hash of a key (as Kafka's `Utils.murmur2`, reinterpreted as unsigned).
pub fn key_hash(key: &[u8]) -> u32 {
    murmur2::murmur2(key, KEY_HASH_SEED)
}

/// The partition of `key` in a topic with `partitions` partitions (`partitions` > 0).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (key_hash(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's `UtilsTest.testMurmur2`: the same function, bit for bit.
    #[test]
    fn key_hash_matches_kafka_murmur2() {
        let cases: [(&str, i32); 6] = [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            ("abc", 479470107),
        ];
        for (key, expected) in cases {
            assert_eq!(key_hash(key.as_bytes()) as i32, expected, "key {key}");
        }
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        for partitions in [1, 3, 7, 100] {
            for i in 0..1000 {
                let key = format!("key-{i}");
                let p = partition_for_key(key.as_bytes(), partitions);
                assert!(p < partitions);
                assert_eq!(p, partition_for_key(key.as_bytes(), partitions));
            }
        }
    }
}
