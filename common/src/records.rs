//! Records and their canonical encoding.
//!
//! The canonical encoding is part of the public contract (see `PartitionBatch.crc32c` in
//! `mq.proto`): a client may send the CRC-32C of it, and the broker stores exactly these bytes
//! inside its batches. For each record, all integers big-endian:
//!
//! ```text
//! i32 key length (-1: no key)     key bytes
//! i32 value length (-1: no value) value bytes
//! i64 timestamp_ms
//! u32 header count, then per header: u32 name length, name (UTF-8), u32 value length, value
//! ```

use bytes::{Buf, Bytes};

/// One record: what a producer sends and a consumer gets back (plus its offset).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub key: String,
    pub value: Bytes,
}

impl Record {
    /// A record with a key and a value, without timestamp (set when sent).
    pub fn keyed(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// A record without key (the broker or producer picks its partition), without timestamp
    /// (set when sent).
    pub fn unkeyed(value: impl Into<Bytes>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Milliseconds since the Unix epoch; 0 means "when sent" (the producer's or, for records
    /// sent as messages with 0, the broker's clock).
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = timestamp_ms;
        self
    }

    /// The size that `max.message.bytes` limits: key, value and headers.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.len())
                .sum::<usize>()
    }

    /// Bytes of the canonical encoding of this record.
    pub fn encoded_len(&self) -> usize {
        4 + self.key.as_ref().map_or(0, Bytes::len)
            + 4
            + self.value.as_ref().map_or(0, Bytes::len)
            + 8
            + 4
            + self
                .headers
                .iter()
                .map(|h| 8 + h.key.len() + h.value.len())
                .sum::<usize>()
    }
}

/// Appends the canonical encoding of `records` to `out`.
pub fn encode_records<'a>(records: impl IntoIterator<Item = &'a Record>, out: &mut Vec<u8>) {
    for record in records {
        put_optional(out, record.key.as_deref());
        put_optional(out, record.value.as_deref());
        out.extend_from_slice(&record.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&(record.headers.len() as u32).to_be_bytes());
        for header in &record.headers {
            out.extend_from_slice(&(header.key.len() as u32).to_be_bytes());
            out.extend_from_slice(header.key.as_bytes());
            out.extend_from_slice(&(header.value.len() as u32).to_be_bytes());
            out.extend_from_slice(&header.value);
        }
    }
}

/// CRC-32C of the canonical encoding of `records`.
pub fn records_crc32c<'a>(records: impl IntoIterator<Item = &'a Record>) -> u32 {
    let mut buffer = Vec::new();
    encode_records(records, &mut buffer);
    crc32c::crc32c(&buffer)
}

fn put_optional(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

/// The encoding of a record without key, value or headers: the least any record takes.
const MIN_ENCODED_LEN: usize = 4 + 4 + 8 + 4;

/// Why bytes are not a valid canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed record {index}: {problem}")]
pub struct DecodeError {
    pub index: usize,
    pub problem: &'static str,
}

/// Decodes `count` records from their canonical encoding. Keys, values and header values
/// share `data`'s buffer (no copy).
pub fn decode_records(mut data: Bytes, count: usize) -> Result<Vec<Record>, DecodeError> {
    // The count comes from a header: allocate for no more records than the data can hold.
    let mut records = Vec::with_capacity(count.min(data.len() / MIN_ENCODED_LEN));
    for index in 0..count {
        let fail = |problem| DecodeError { index, problem };
        let key = take_optional(&mut data).ok_or(fail("truncated key"))?;
        let value = take_optional(&mut data).ok_or(fail("truncated value"))?;
        if data.remaining() < 12 {
            return Err(fail("truncated timestamp or header count"));
        }
        let timestamp_ms = data.get_i64();
        let header_count = data.get_u32() as usize;
        // Each header needs at least 8 bytes: bound the allocation by what the data can hold.
        if header_count > data.remaining() / 8 {
            return Err(fail("header count exceeds the data"));
        }
        let mut headers = Vec::with_capacity(header_count);
        for _ in 0..header_count {
            let name = take_sized(&mut data).ok_or(fail("truncated header name"))?;
            let key =
                String::from_utf8(name.to_vec()).map_err(|_| fail("header name is not UTF-8"))?;
            let value = take_sized(&mut data).ok_or(fail("truncated header value"))?;
            headers.push(Header { key, value });
        }
        records.push(Record {
            key,
            value,
            headers,
            timestamp_ms,
        });
    }
    if data.has_remaining() {
        return Err(DecodeError {
            index: count,
            problem: "trailing bytes after the last record",
        });
    }
    Ok(records)
}

/// What one pass over encoded records learned (see [`scan_records`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodedSummary {
    /// Index and size (key + value + headers) of the largest record.
    pub largest: (usize, usize),
    pub first_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    /// Whether some record has timestamp 0 (to be stamped by the broker).
    pub unstamped: bool,
}

/// Checks that `data` is exactly `count` records in the canonical encoding (header names
/// UTF-8), without decoding them; returns what a broker needs to accept them.
pub fn scan_records(data: &[u8], count: usize) -> Result<EncodedSummary, DecodeError> {
    let mut rest = data;
    let mut summary = EncodedSummary {
        max_timestamp_ms: i64::MIN,
        ..EncodedSummary::default()
    };
    for index in 0..count {
        let fail = |problem| DecodeError { index, problem };
        let key = skip_optional(&mut rest).ok_or(fail("truncated key"))?;
        let value = skip_optional(&mut rest).ok_or(fail("truncated value"))?;
        if rest.len() < 12 {
            return Err(fail("truncated timestamp or header count"));
        }
        let timestamp_ms = rest.get_i64();
        let header_count = rest.get_u32() as usize;
        if header_count > rest.len() / 8 {
            return Err(fail("header count exceeds the data"));
        }
        let mut size = key + value;
        for _ in 0..header_count {
            let name = skip_sized(&mut rest).ok_or(fail("truncated header name"))?;
            std::str::from_utf8(name).map_err(|_| fail("header name is not UTF-8"))?;
            let value = skip_sized(&mut rest).ok_or(fail("truncated header value"))?;
            size += name.len() + value.len();
        }
        if index == 0 {
            summary.first_timestamp_ms = timestamp_ms;
        }
        summary.max_timestamp_ms = summary.max_timestamp_ms.max(timestamp_ms);
        summary.unstamped |= timestamp_ms == 0;
        if size > summary.largest.1 || index == 0 {
            summary.largest = (index, size);
        }
    }
    if !rest.is_empty() {
        return Err(DecodeError {
            index: count,
            problem: "trailing bytes after the last record",
        });
    }
    Ok(summary)
}

/// Length of an optional field, advancing past it; `None` when truncated.
fn skip_optional(data: &mut &[u8]) -> Option<usize> {
    if data.len() < 4 {
        return None;
    }
    let len = data.get_i32();
    if len == -1 {
        return Some(0);
    }
    let len = usize::try_from(len).ok()?;
    (data.len() >= len).then(|| {
        data.advance(len);
        len
    })
}

fn skip_sized<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    if data.len() < 4 {
        return None;
    }
    let len = data.get_u32() as usize;
    (data.len() >= len).then(|| {
        let (field, rest) = data.split_at(len);
        *data = rest;
        field
    })
}

/// `None` when truncated; `Some(None)` for an absent field.
fn take_optional(data: &mut Bytes) -> Option<Option<Bytes>> {
    if data.remaining() < 4 {
        return None;
    }
    let len = data.get_i32();
    if len == -1 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    (data.remaining() >= len).then(|| Some(data.split_to(len)))
}

fn take_sized(data: &mut Bytes) -> Option<Bytes> {
    if data.remaining() < 4 {
        return None;
    }
    let len = data.get_u32() as usize;
    (data.remaining() >= len).then(|| data.split_to(len))
}

/// Records as the public protobuf messages carry them: the one conversion broker and clients
/// share.
pub mod proto {
    use mq_proto::v1 as pb;

    use super::{Header, Record};

    /// A record sent as a `Record` message.
    pub fn from_record(record: pb::Record) -> Record {
        Record {
            key: record.key,
            value: record.value,
            headers: record
                .headers
                .into_iter()
                .map(|h| Header {
                    key: h.key,
                    value: h.value,
                })
                .collect(),
            timestamp_ms: record.timestamp_ms,
        }
    }

    /// A record as a `Record` message.
    pub fn to_record(record: Record) -> pb::Record {
        pb::Record {
            key: record.key,
            value: record.value,
            headers: record
                .headers
                .into_iter()
                .map(|h| pb::Header {
                    key: h.key,
                    value: h.value,
                })
                .collect(),
            timestamp_ms: record.timestamp_ms,
        }
    }

    /// A record read at `offset`, as a `ConsumedRecord` message.
    pub fn to_consumed(offset: u64, record: Record) -> pb::ConsumedRecord {
        let record = to_record(record);
        pb::ConsumedRecord {
            offset,
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp_ms: record.timestamp_ms,
        }
    }

    /// A `ConsumedRecord` message as its offset and record.
    pub fn from_consumed(record: pb::ConsumedRecord) -> (u64, Record) {
        let offset = record.offset;
        let record = from_record(pb::Record {
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp_ms: record.timestamp_ms,
        });
        (offset, record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record {
                key: Some(Bytes::from_static(b"k1")),
                value: Some(Bytes::from_static(b"hello")),
                headers: vec![Header {
                    key: "trace".into(),
                    value: Bytes::from_static(b"abc"),
                }],
                timestamp_ms: 1_700_000_000_000,
            },
            Record {
                key: None,
                value: None,
                headers: vec![],
                timestamp_ms: -5,
            },
            Record {
                key: Some(Bytes::new()),
                value: Some(Bytes::new()),
                headers: vec![],
                timestamp_ms: 0,
            },
        ]
    }

    #[test]
    fn encoding_round_trips_and_keeps_absent_apart_from_empty() {
        let records = sample();
        let mut buffer = Vec::new();
        encode_records(&records, &mut buffer);
        assert_eq!(
            buffer.len(),
            records.iter().map(Record::encoded_len).sum::<usize>()
        );
        let decoded = decode_records(Bytes::from(buffer), records.len()).unwrap();
        assert_eq!(decoded, records);
    }

    #[test]
    fn the_encoding_is_the_documented_byte_layout() {
        let record = Record {
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![Header {
                key: "h".into(),
                value: Bytes::from_static(b"v"),
            }],
            timestamp_ms: 1,
        };
        let mut buffer = Vec::new();
        encode_records([&record], &mut buffer);
        let expected: Vec<u8> = [
            &[0, 0, 0, 1][..],
            b"k",
            &[0xff, 0xff, 0xff, 0xff],
            &[0, 0, 0, 0, 0, 0, 0, 1],
            &[0, 0, 0, 1],
            &[0, 0, 0, 1],
            b"h",
            &[0, 0, 0, 1],
            b"v",
        ]
        .concat();
        assert_eq!(buffer, expected);
        assert_eq!(records_crc32c([&record]), crc32c::crc32c(&expected));
    }

    #[test]
    fn protobuf_conversions_round_trip() {
        for record in sample() {
            let consumed = proto::to_consumed(7, record.clone());
            assert_eq!(proto::from_consumed(consumed), (7, record));
        }
    }

    #[test]
    fn scanning_agrees_with_decoding() {
        let records = sample();
        let mut buffer = Vec::new();
        encode_records(&records, &mut buffer);
        let summary = scan_records(&buffer, records.len()).unwrap();
        assert_eq!(summary.largest, (0, 2 + 5 + 5 + 3));
        assert_eq!(summary.first_timestamp_ms, 1_700_000_000_000);
        assert_eq!(summary.max_timestamp_ms, 1_700_000_000_000);
        assert!(summary.unstamped, "the third record has timestamp 0");
        for cut in 0..buffer.len() {
            assert_eq!(
                scan_records(&buffer[..cut], records.len()).is_ok(),
                decode_records(Bytes::copy_from_slice(&buffer[..cut]), records.len()).is_ok(),
                "cut at {cut}"
            );
        }
        assert!(
            scan_records(&buffer, records.len() - 1).is_err(),
            "trailing record"
        );
        assert!(
            scan_records(&buffer, records.len() + 1).is_err(),
            "missing record"
        );
        let mut bad_name = Vec::new();
        encode_records(
            [&Record::unkeyed("v").with_header("\u{1F600}", "x")],
            &mut bad_name,
        );
        let at = bad_name.len() - 1 - 4 - 4;
        bad_name[at] = 0xff;
        assert!(scan_records(&bad_name, 1).is_err(), "non-UTF-8 header name");
    }

    #[test]
    fn truncated_or_padded_data_is_rejected() {
        let records = sample();
        let mut buffer = Vec::new();
        encode_records(&records, &mut buffer);
        for cut in [1, 5, buffer.len() - 1] {
            let err = decode_records(Bytes::copy_from_slice(&buffer[..cut]), records.len());
            assert!(err.is_err(), "cut at {cut} must fail");
        }
        buffer.push(0);
        assert!(decode_records(Bytes::from(buffer), records.len()).is_err());
        // A huge header count must not allocate.
        let mut bad = Vec::new();
        encode_records(
            [&Record {
                headers: vec![],
                ..Default::default()
            }],
            &mut bad,
        );
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_records(Bytes::from(bad), 1).is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::strategies;

    fn encoded(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_records(records, &mut out);
        out
    }

    proptest! {
        #[test]
        fn encodings_decode_and_scan_to_what_was_encoded(records in strategies::records(8)) {
            let data = encoded(&records);
            prop_assert_eq!(data.len(), records.iter().map(Record::encoded_len).sum::<usize>());
            prop_assert_eq!(&decode_records(Bytes::from(data.clone()), records.len())?, &records);
            let summary = scan_records(&data, records.len())?;
            prop_assert_eq!(summary.first_timestamp_ms, records[0].timestamp_ms);
            prop_assert_eq!(
                summary.max_timestamp_ms,
                records.iter().map(|r| r.timestamp_ms).max().unwrap()
            );
            prop_assert_eq!(summary.unstamped, records.iter().any(|r| r.timestamp_ms == 0));
            prop_assert_eq!(summary.largest.1, records.iter().map(Record::size).max().unwrap());
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_scan_agrees_with_decode(
            data in vec(any::<u8>(), 0..400),
            count in 0usize..6,
        ) {
            let decoded = decode_records(Bytes::from(data.clone()), count);
            let scanned = scan_records(&data, count);
            prop_assert_eq!(decoded.as_ref().err(), scanned.as_ref().err());
            if let Ok(records) = decoded {
                prop_assert_eq!(records.len(), count);
                prop_assert_eq!(encoded(&records), data);
            }
        }

        #[test]
        fn a_count_far_beyond_the_data_is_refused_without_allocating_for_it(
            records in strategies::records(3),
            count in 1usize << 32..usize::MAX,
        ) {
            let data = encoded(&records);
            prop_assert!(decode_records(Bytes::from(data.clone()), count).is_err());
            prop_assert!(scan_records(&data, count).is_err());
        }

        #[test]
        fn a_cut_short_or_extended_encoding_is_refused(
            records in strategies::records(6),
            cut in any::<Index>(),
            extra in vec(any::<u8>(), 1..8),
        ) {
            let data = encoded(&records);
            let short = &data[..cut.index(data.len())];
            prop_assert!(scan_records(short, records.len()).is_err());
            prop_assert!(decode_records(Bytes::copy_from_slice(short), records.len()).is_err());
            let long = [data.as_slice(), &extra].concat();
            prop_assert!(scan_records(&long, records.len()).is_err());
            prop_assert!(decode_records(Bytes::from(long), records.len()).is_err());
        }
    }
}
