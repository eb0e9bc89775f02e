//! Key layout. Every key starts with the 8-byte big-endian group id, so lexicographic order is
//! (group, then numeric index) and one column family holds every group: a group's keys form one
//! contiguous range that a single `DeleteRange` removes.

use mq_common::ids::GroupId;

/// Column family of Raft log entries: `group ‖ raft_index` -> encoded entry.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Column family of small Raft state: `group ‖ tag` -> vote, last purged, committed.
pub const CF_RAFT_STATE: &str = "raft_state";
/// Column family of state-machine metadata: `group ‖ tag` -> last applied, membership, ...
pub const CF_SM_META: &str = "sm_meta";
/// Column family of partition offset indexes: `group ‖ base_offset` -> batch location.
pub const CF_OFFSET_INDEX: &str = "offset_index";
/// Column family of key-value state machines: `group ‖ user key` -> value.
pub const CF_KV: &str = "kv";

/// Every column family, in the order they are opened.
pub const COLUMN_FAMILIES: [&str; 5] = [
    CF_RAFT_LOG,
    CF_RAFT_STATE,
    CF_SM_META,
    CF_OFFSET_INDEX,
    CF_KV,
];

/// Tags of keys in [`CF_RAFT_STATE`].
pub mod state_tag {
    pub const VOTE: u8 = 1;
    pub const LAST_PURGED: u8 = 2;
    pub const COMMITTED: u8 = 3;
}

/// `group ‖ index`, both big-endian.
pub fn indexed(group: GroupId, index: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&group.0.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// `group ‖ tag`.
pub fn tagged(group: GroupId, tag: u8) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[..8].copy_from_slice(&group.0.to_be_bytes());
    key[8] = tag;
    key
}

/// `group ‖ suffix`, for key-value state machines.
pub fn prefixed(group: GroupId, suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + suffix.len());
    key.extend_from_slice(&group.0.to_be_bytes());
    key.extend_from_slice(suffix);
    key
}

/// The first key of `group` in any column family.
pub fn group_start(group: GroupId) -> [u8; 8] {
    group.0.to_be_bytes()
}

/// The first key after every key of `group` in any column family (exclusive upper bound).
pub fn group_end(group: GroupId) -> [u8; 8] {
    group
        .0
        .checked_add(1)
        .expect("group ids stay far below u64::MAX")
        .to_be_bytes()
}

/// The index part of an [`indexed`] key.
pub fn index_of(key: &[u8]) -> u64 {
    let bytes: [u8; 8] = key[8..16].try_into().expect("indexed keys are 16 bytes");
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_group_then_index() {
        let mut keys = [
            indexed(GroupId(2), 0).to_vec(),
            indexed(GroupId(1), 256).to_vec(),
            indexed(GroupId(1), 255).to_vec(),
            indexed(GroupId(1), u64::MAX).to_vec(),
        ];
        keys.sort();
        assert_eq!(index_of(&keys[0]), 255);
        assert_eq!(index_of(&keys[1]), 256);
        assert_eq!(index_of(&keys[2]), u64::MAX);
        assert_eq!(&keys[3][..8], &group_start(GroupId(2)));
        assert!(indexed(GroupId(1), u64::MAX).as_slice() < group_end(GroupId(1)).as_slice());
        assert!(tagged(GroupId(1), 255).as_slice() < group_end(GroupId(1)).as_slice());
    }
}
