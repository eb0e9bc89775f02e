//! `proptest` strategies for records and their encodings, shared by the property tests of
//! every crate that stores or decodes records.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::records::{Header, Record};

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

/// Any record: keys and values absent, empty or filled; any headers; any timestamp (0
/// included, which a broker stamps).
pub fn record() -> impl Strategy<Value = Record> {
    (
        proptest::option::of(bytes(24)),
        proptest::option::of(bytes(96)),
        vec(("\\PC{0,8}", bytes(16)), 0..3),
        prop_oneof![Just(0i64), any::<i64>()],
    )
        .prop_map(|(key, value, headers, timestamp_ms)| Record {
            key,
            value,
            headers: headers
                .into_iter()
                .map(|(key, value)| Header { key, value })
                .collect(),
            timestamp_ms,
        })
}

/// One to `max` records.
pub fn records(max: usize) -> impl Strategy<Value = Vec<Record>> {
    vec(record(), 1..=max)
}
