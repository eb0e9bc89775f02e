//! The stored batch: what one Raft entry of a partition carries, on disk and on the wire
//! between replicas. A fixed header, then the records in their canonical encoding
//! (`mq_common::records`):
//!
//! ```text
//! offset size field
//!      0    1 magic (1)
//!      1    4 crc32c, big-endian, of every byte after this field
//!      5    1 compression codec of the records section (0: none, 1: LZ4 frame, 2: zstd frame)
//!      6    1 flags (bit 0: compacted)
//!      7    4 record count (of a compacted batch: the offsets it spans)
//!     11    8 first timestamp (ms)
//!     19    8 max timestamp (ms)
//!     27    8 producer id (0: none)
//!     35    4 base sequence
//!     39    4 length of the records section
//!     43      records
//! ```
//!
//! A compressed batch stores the records section as the producer compressed it; the length and
//! the checksum cover the compressed bytes, and reads decompress.
//!
//! Offsets are not stored: a batch's base offset is assigned when its entry is applied, and
//! its records take the offsets after it in order.
//!
//! A compacted batch (written by the compaction of its replica, in place of the original
//! entry) keeps the header's count, timestamps and producer, so it spans the same offsets;
//! its records section (never compressed) is the number of records kept, the offset delta of
//! each from the base offset, then those records:
//!
//! ```text
//!      4 kept records k
//!   4 × k offset deltas
//!        k records
//! ```

use std::fmt;

use bytes::{Buf, Bytes};
use mq_common::compression::{Compression, CompressionError};
use mq_common::records::{self, EncodedSummary, Record};
use serde::{Deserialize, Serialize};

const MAGIC: u8 = 1;
/// Flag: the batch was compacted (see the module docs).
const COMPACTED: u8 = 1;
const CRC_RANGE_START: usize = 5;
/// Bytes before the records section.
pub const HEADER_LEN: usize = 43;
/// The most a compressed records section may expand to (the largest gRPC message).
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// The idempotent producer and sequence a batch carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProducerSeq {
    /// 0: no producer (not idempotent).
    pub producer_id: u64,
    pub base_sequence: u32,
}

/// An encoded batch: its header and its records section, each sharing the buffer it came from
/// (records sent already encoded are stored without a copy; a log entry decoded with
/// `mq_raft::codec::decode_shared`, as replication and log reads do, keeps them as slices of
/// the entry's bytes).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBatch {
    #[serde(with = "mq_raft::codec::shared_bytes")]
    header: Bytes,
    #[serde(with = "mq_raft::codec::shared_bytes")]
    records: Bytes,
}

impl fmt::Debug for StoredBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never dump record bytes into logs.
        write!(f, "StoredBatch({} bytes)", self.len())
    }
}

/// Why a stored batch cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch header is {0} bytes, not {HEADER_LEN}")]
    Truncated(usize),
    #[error("unknown batch format {0}")]
    UnknownFormat(u8),
    #[error("batch checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { stored: u32, computed: u32 },
    #[error("batch records section is {actual} bytes, header says {declared}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error(transparent)]
    Compression(#[from] CompressionError),
    #[error(transparent)]
    Records(#[from] records::DecodeError),
    #[error("compacted batch: {0}")]
    Compacted(&'static str),
}

/// The client-supplied checksum of a batch did not match its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumMismatch {
    pub sent: u32,
    pub computed: u32,
}

fn check_sent(sent: Option<u32>, computed: u32) -> Result<(), ChecksumMismatch> {
    match sent {
        Some(sent) if sent != computed => Err(ChecksumMismatch { sent, computed }),
        _ => Ok(()),
    }
}

impl StoredBatch {
    /// Encodes `records` into a batch. Records with timestamp 0 get `now_ms`. When `sent_crc`
    /// is given it must be the CRC-32C of the canonical encoding of `records` as sent.
    pub fn build(
        records: &[Record],
        now_ms: i64,
        sent_crc: Option<u32>,
        producer: ProducerSeq,
    ) -> Result<Self, ChecksumMismatch> {
        let stamp = |r: &Record| {
            if r.timestamp_ms == 0 {
                now_ms
            } else {
                r.timestamp_ms
            }
        };
        let mut encoded = Vec::with_capacity(records.iter().map(Record::encoded_len).sum());
        if records.iter().any(|r| r.timestamp_ms == 0) {
            // The stored bytes will differ from what the client hashed: check the sent form.
            if let Some(sent) = sent_crc {
                check_sent(Some(sent), records::records_crc32c(records))?;
            }
            let stamped: Vec<Record> = records
                .iter()
                .map(|r| Record {
                    timestamp_ms: stamp(r),
                    ..r.clone()
                })
                .collect();
            records::encode_records(&stamped, &mut encoded);
            let crc = crc32c::crc32c(&encoded);
            Ok(Self::assemble(
                Bytes::from(encoded),
                records.len(),
                &stamped,
                crc,
                producer,
            ))
        } else {
            records::encode_records(records, &mut encoded);
            let crc = crc32c::crc32c(&encoded);
            check_sent(sent_crc, crc)?;
            Ok(Self::assemble(
                Bytes::from(encoded),
                records.len(),
                records,
                crc,
                producer,
            ))
        }
    }

    /// A batch from records sent already encoded, as checked by [`records::scan_records`]:
    /// stored as they are (one checksum pass), unless some need the broker's timestamp.
    pub fn from_encoded(
        encoded: Bytes,
        count: usize,
        summary: &EncodedSummary,
        now_ms: i64,
        sent_crc: Option<u32>,
        producer: ProducerSeq,
    ) -> Result<Self, ChecksumMismatch> {
        let crc = crc32c::crc32c(&encoded);
        check_sent(sent_crc, crc)?;
        if summary.unstamped {
            let decoded =
                records::decode_records(encoded, count).expect("scan_records accepted these bytes");
            return Self::build(&decoded, now_ms, None, producer);
        }
        Ok(Self::with_header(
            (encoded, Compression::None),
            count,
            summary.first_timestamp_ms,
            summary.max_timestamp_ms,
            crc,
            producer,
        ))
    }

    /// A batch from records sent compressed with `codec`: `plain` is their decompressed form,
    /// as checked by [`records::scan_records`], and `crc` the CRC-32C of `compressed`. Stored
    /// compressed, unless some record needs the broker's timestamp.
    pub fn from_compressed(
        (compressed, codec): (Bytes, Compression),
        plain: Vec<u8>,
        count: usize,
        summary: &EncodedSummary,
        (now_ms, crc): (i64, u32),
        producer: ProducerSeq,
    ) -> Self {
        if summary.unstamped {
            let decoded = records::decode_records(Bytes::from(plain), count)
                .expect("scan_records accepted these bytes");
            return Self::build(&decoded, now_ms, None, producer).expect("no checksum to mismatch");
        }
        Self::with_header(
            (compressed, codec),
            count,
            summary.first_timestamp_ms,
            summary.max_timestamp_ms,
            crc,
            producer,
        )
    }

    fn assemble(
        encoded: Bytes,
        count: usize,
        stamped: &[Record],
        records_crc: u32,
        producer: ProducerSeq,
    ) -> Self {
        let first = stamped.first().map_or(0, |r| r.timestamp_ms);
        let max = stamped.iter().map(|r| r.timestamp_ms).max().unwrap_or(0);
        Self::with_header(
            (encoded, Compression::None),
            count,
            first,
            max,
            records_crc,
            producer,
        )
    }

    /// The compacted form of a batch with header `original`: only `kept` (offset delta from
    /// the base offset, record) remain; it spans the same offsets, with the same timestamps
    /// and producer.
    pub fn compacted(original: &BatchHeader, kept: &[(u32, Record)]) -> Self {
        let mut section = Vec::with_capacity(
            4 + 4 * kept.len() + kept.iter().map(|(_, r)| r.encoded_len()).sum::<usize>(),
        );
        section.extend_from_slice(&(kept.len() as u32).to_be_bytes());
        for (delta, _) in kept {
            section.extend_from_slice(&delta.to_be_bytes());
        }
        records::encode_records(kept.iter().map(|(_, r)| r), &mut section);
        let crc = crc32c::crc32c(&section);
        let mut batch = Self::with_header(
            (Bytes::from(section), Compression::None),
            original.record_count as usize,
            original.first_timestamp_ms,
            original.max_timestamp_ms,
            crc,
            ProducerSeq {
                producer_id: original.producer_id,
                base_sequence: original.base_sequence,
            },
        );
        batch.set_flags(COMPACTED);
        batch
    }

    /// Sets the flags byte (and the checksum, which covers it).
    fn set_flags(&mut self, flags: u8) {
        let mut header = self.header.to_vec();
        header[6] = flags;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[CRC_RANGE_START..]), &self.records);
        header[1..5].copy_from_slice(&crc.to_be_bytes());
        self.header = Bytes::from(header);
    }

    /// Adds the header to a records section whose CRC-32C is `records_crc`.
    fn with_header(
        (records, codec): (Bytes, Compression),
        count: usize,
        first_timestamp_ms: i64,
        max_timestamp_ms: i64,
        records_crc: u32,
        producer: ProducerSeq,
    ) -> Self {
        let mut header = [0u8; HEADER_LEN];
        header[0] = MAGIC;
        header[5] = codec.id();
        header[6] = 0; // flags
        header[7..11].copy_from_slice(&(count as u32).to_be_bytes());
        header[11..19].copy_from_slice(&first_timestamp_ms.to_be_bytes());
        header[19..27].copy_from_slice(&max_timestamp_ms.to_be_bytes());
        header[27..35].copy_from_slice(&producer.producer_id.to_be_bytes());
        header[35..39].copy_from_slice(&producer.base_sequence.to_be_bytes());
        header[39..43].copy_from_slice(&(records.len() as u32).to_be_bytes());
        // crc(header tail ‖ records) from the two parts, without a second pass over records.
        let header_crc = crc32c::crc32c(&header[CRC_RANGE_START..]);
        let crc = crc32c::crc32c_combine(header_crc, records_crc, records.len());
        header[1..5].copy_from_slice(&crc.to_be_bytes());
        Self {
            header: Bytes::copy_from_slice(&header),
            records,
        }
    }

    /// Splits bytes laid out as header then records (see the module docs); nothing is checked
    /// until [`Self::header`] or [`Self::verify`].
    pub fn from_bytes(bytes: Bytes) -> Self {
        let split = HEADER_LEN.min(bytes.len());
        Self {
            header: bytes.slice(..split),
            records: bytes.slice(split..),
        }
    }

    /// The batch as one byte string: header then records.
    pub fn to_bytes(&self) -> Bytes {
        let mut bytes = Vec::with_capacity(self.len());
        bytes.extend_from_slice(&self.header);
        bytes.extend_from_slice(&self.records);
        Bytes::from(bytes)
    }

    pub fn len(&self) -> usize {
        self.header.len() + self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The header fields, after checking format and lengths (not the checksum).
    pub fn header(&self) -> Result<BatchHeader, BatchError> {
        if self.header.len() != HEADER_LEN {
            return Err(BatchError::Truncated(self.header.len()));
        }
        let mut header = &self.header[..];
        let magic = header.get_u8();
        if magic != MAGIC {
            return Err(BatchError::UnknownFormat(magic));
        }
        let crc = header.get_u32();
        let codec = header.get_u8();
        let flags = header.get_u8();
        let record_count = header.get_u32();
        let first_timestamp_ms = header.get_i64();
        let max_timestamp_ms = header.get_i64();
        let producer_id = header.get_u64();
        let base_sequence = header.get_u32();
        let records_len = header.get_u32() as usize;
        let compression = Compression::from_id(codec)?;
        if self.records.len() != records_len {
            return Err(BatchError::LengthMismatch {
                declared: records_len,
                actual: self.records.len(),
            });
        }
        Ok(BatchHeader {
            crc,
            compacted: flags & COMPACTED != 0,
            compression,
            record_count,
            first_timestamp_ms,
            max_timestamp_ms,
            producer_id,
            base_sequence,
        })
    }

    /// Checks the checksum; returns the header.
    pub fn verify(&self) -> Result<BatchHeader, BatchError> {
        let header = self.header()?;
        let computed = crc32c::crc32c_append(
            crc32c::crc32c(&self.header[CRC_RANGE_START..]),
            &self.records,
        );
        if computed != header.crc {
            return Err(BatchError::ChecksumMismatch {
                stored: header.crc,
                computed,
            });
        }
        Ok(header)
    }

    /// Verifies the batch and decodes its records with their offsets, the first offset being
    /// `base` (sharing this batch's buffer).
    pub fn records_at(&self, base: u64) -> Result<Vec<(u64, Record)>, BatchError> {
        let header = self.verify()?;
        let section = match header.compression {
            Compression::None => self.records.clone(),
            codec => Bytes::from(codec.decompress(&self.records, MAX_DECOMPRESSED_BYTES)?),
        };
        if !header.compacted {
            let records = records::decode_records(section, header.record_count as usize)?;
            return Ok((base..).zip(records).collect());
        }
        let malformed = BatchError::Compacted;
        let kept = section
            .get(..4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or(malformed("no record count"))?;
        let deltas_end = kept
            .checked_mul(4)
            .and_then(|n| n.checked_add(4))
            .filter(|end| *end <= section.len())
            .ok_or(malformed("offset deltas cut short"))?;
        let deltas: Vec<u32> = section[4..deltas_end]
            .chunks_exact(4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
            .collect();
        if deltas.windows(2).any(|w| w[0] >= w[1])
            || deltas.last().is_some_and(|d| *d >= header.record_count)
        {
            return Err(malformed("offset deltas out of order or beyond the span"));
        }
        let records = records::decode_records(section.slice(deltas_end..), kept)?;
        Ok(deltas
            .into_iter()
            .map(|delta| base + u64::from(delta))
            .zip(records)
            .collect())
    }

    /// Verifies the batch and decodes its records (without offsets).
    pub fn records(&self) -> Result<Vec<Record>, BatchError> {
        Ok(self
            .records_at(0)?
            .into_iter()
            .map(|(_, record)| record)
            .collect())
    }
}

/// The fixed fields of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub crc: u32,
    /// Rewritten by compaction: fewer records than the offsets it spans.
    pub compacted: bool,
    /// How the records section is compressed.
    pub compression: Compression,
    pub record_count: u32,
    pub first_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    /// The idempotent producer (0: none) and the sequence of the first record.
    pub producer_id: u64,
    pub base_sequence: u32,
}

#[cfg(test)]
mod tests {
    use mq_common::records::Header;

    use super::*;

    fn records() -> Vec<Record> {
        (0..5)
            .map(|i| Record {
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(vec![i as u8; 100])),
                headers: vec![Header {
                    key: "n".into(),
                    value: Bytes::from(i.to_string()),
                }],
                timestamp_ms: 1000 + i,
            })
            .collect()
    }

    #[test]
    fn a_built_batch_verifies_and_decodes_to_its_records() {
        let batch = StoredBatch::build(&records(), 0, None, ProducerSeq::default()).unwrap();
        let header = batch.verify().unwrap();
        assert_eq!(header.record_count, 5);
        assert_eq!(header.first_timestamp_ms, 1000);
        assert_eq!(header.max_timestamp_ms, 1004);
        assert_eq!(batch.records().unwrap(), records());
    }

    #[test]
    fn a_compacted_batch_keeps_its_span_and_the_offsets_of_what_it_kept() {
        let producer = ProducerSeq {
            producer_id: 9,
            base_sequence: 40,
        };
        let original = StoredBatch::build(&records(), 0, None, producer).unwrap();
        let header = original.verify().unwrap();
        let all = original.records_at(100).unwrap();
        let kept = vec![(1, all[1].1.clone()), (4, all[4].1.clone())];
        let compacted = StoredBatch::compacted(&header, &kept);
        let compacted_header = compacted.verify().unwrap();
        assert!(compacted_header.compacted && !header.compacted);
        assert_eq!(
            (
                compacted_header.record_count,
                compacted_header.max_timestamp_ms
            ),
            (5, 1004)
        );
        assert_eq!(
            (compacted_header.producer_id, compacted_header.base_sequence),
            (9, 40)
        );
        assert_eq!(
            compacted.records_at(100).unwrap(),
            vec![all[1].clone(), all[4].clone()]
        );
        let empty = StoredBatch::compacted(&header, &[]);
        assert!(empty.records_at(100).unwrap().is_empty());
        assert_eq!(empty.verify().unwrap().record_count, 5);
        // Every flipped byte of a compacted batch is caught too.
        for at in 1..compacted.len() {
            let mut bytes = compacted.to_bytes().to_vec();
            bytes[at] ^= 0x40;
            let corrupted = StoredBatch::from_bytes(Bytes::from(bytes));
            assert!(corrupted.records_at(0).is_err(), "flip at byte {at}");
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let batch = StoredBatch::build(&records(), 0, None, ProducerSeq::default()).unwrap();
        for at in 1..batch.len() {
            let mut bytes = batch.to_bytes().to_vec();
            bytes[at] ^= 0x40;
            let corrupted = StoredBatch::from_bytes(Bytes::from(bytes));
            assert!(
                corrupted.records().is_err(),
                "flip at byte {at} went unnoticed"
            );
        }
    }

    #[test]
    fn client_checksums_are_checked_as_sent() {
        let records = records();
        let crc = records::records_crc32c(&records);
        assert!(StoredBatch::build(&records, 0, Some(crc), ProducerSeq::default()).is_ok());
        let err =
            StoredBatch::build(&records, 0, Some(crc ^ 1), ProducerSeq::default()).unwrap_err();
        assert_eq!(err.computed, crc);

        // Unstamped records: the checksum covers timestamp 0, the stored batch the stamp.
        let unstamped: Vec<Record> = records
            .iter()
            .map(|r| Record {
                timestamp_ms: 0,
                ..r.clone()
            })
            .collect();
        let crc = records::records_crc32c(&unstamped);
        let batch = StoredBatch::build(&unstamped, 77, Some(crc), ProducerSeq::default()).unwrap();
        assert!(
            batch
                .records()
                .unwrap()
                .iter()
                .all(|r| r.timestamp_ms == 77)
        );
        assert!(StoredBatch::build(&unstamped, 77, Some(crc ^ 1), ProducerSeq::default()).is_err());
    }

    #[test]
    fn encoded_records_are_stored_as_sent() {
        let records = records();
        let mut encoded = Vec::new();
        records::encode_records(&records, &mut encoded);
        let encoded = Bytes::from(encoded);
        let summary = records::scan_records(&encoded, records.len()).unwrap();
        let crc = crc32c::crc32c(&encoded);
        let batch = StoredBatch::from_encoded(
            encoded.clone(),
            records.len(),
            &summary,
            0,
            Some(crc),
            ProducerSeq::default(),
        )
        .unwrap();
        assert_eq!(
            batch,
            StoredBatch::build(&records, 0, None, ProducerSeq::default()).unwrap()
        );
        assert_eq!(batch.records().unwrap(), records);
        // Shares the sender's buffer: no copy.
        assert_eq!(batch.records.as_ptr(), encoded.as_ptr());
        let err = StoredBatch::from_encoded(
            encoded,
            records.len(),
            &summary,
            0,
            Some(crc ^ 1),
            ProducerSeq::default(),
        )
        .unwrap_err();
        assert_eq!(err.computed, crc);
    }

    #[test]
    fn encoded_records_without_timestamps_get_the_brokers() {
        let unstamped: Vec<Record> = records().into_iter().map(|r| r.with_timestamp(0)).collect();
        let mut encoded = Vec::new();
        records::encode_records(&unstamped, &mut encoded);
        let summary = records::scan_records(&encoded, unstamped.len()).unwrap();
        let crc = crc32c::crc32c(&encoded);
        let batch = StoredBatch::from_encoded(
            Bytes::from(encoded),
            unstamped.len(),
            &summary,
            99,
            Some(crc),
            ProducerSeq::default(),
        )
        .unwrap();
        assert!(
            batch
                .records()
                .unwrap()
                .iter()
                .all(|r| r.timestamp_ms == 99)
        );
        assert_eq!(batch.header().unwrap().max_timestamp_ms, 99);
    }

    #[test]
    fn truncated_and_foreign_bytes_are_rejected() {
        assert!(matches!(
            StoredBatch::from_bytes(Bytes::from_static(b"short")).header(),
            Err(BatchError::Truncated(5))
        ));
        let mut bytes = StoredBatch::build(&records(), 0, None, ProducerSeq::default())
            .unwrap()
            .to_bytes()
            .to_vec();
        bytes[0] = 9;
        assert!(matches!(
            StoredBatch::from_bytes(Bytes::from(bytes)).header(),
            Err(BatchError::UnknownFormat(9))
        ));
    }
}

#[cfg(test)]
mod properties {
    use mq_common::strategies;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    /// A batch from arbitrary header fields and records section, with a correct checksum and
    /// length: garbage that gets past the checks every read makes first.
    fn sealed(fields: [u8; HEADER_LEN], codec: u8, flags: u8, section: Vec<u8>) -> StoredBatch {
        let mut header = fields;
        header[0] = MAGIC;
        header[5] = codec;
        header[6] = flags;
        header[39..43].copy_from_slice(&(section.len() as u32).to_be_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[CRC_RANGE_START..]), &section);
        header[1..5].copy_from_slice(&crc.to_be_bytes());
        StoredBatch::from_bytes(Bytes::from([&header[..], &section].concat()))
    }

    proptest! {
        #[test]
        fn built_batches_read_back_their_records_at_their_offsets(
            records in strategies::records(8),
            base in 0u64..u64::MAX / 2,
            now_ms in 1i64..i64::MAX,
        ) {
            let batch = StoredBatch::build(&records, now_ms, None, ProducerSeq::default()).unwrap();
            let read = StoredBatch::from_bytes(batch.to_bytes()).records_at(base)?;
            prop_assert_eq!(read.len(), records.len());
            for (i, ((offset, got), sent)) in read.iter().zip(&records).enumerate() {
                prop_assert_eq!(*offset, base + i as u64);
                let stamped = if sent.timestamp_ms == 0 { now_ms } else { sent.timestamp_ms };
                prop_assert_eq!(got, &Record { timestamp_ms: stamped, ..sent.clone() });
            }
        }

        #[test]
        fn any_flipped_bit_of_a_stored_batch_is_detected(
            records in strategies::records(4),
            compact in any::<bool>(),
            bit in any::<Index>(),
        ) {
            let mut batch = StoredBatch::build(&records, 1, None, ProducerSeq::default()).unwrap();
            if compact {
                let kept: Vec<(u32, Record)> =
                    records.iter().cloned().enumerate().skip(1).map(|(i, r)| (i as u32, r)).collect();
                batch = StoredBatch::compacted(&batch.header()?, &kept);
            }
            let mut bytes = batch.to_bytes().to_vec();
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            let damaged = StoredBatch::from_bytes(Bytes::from(bytes));
            prop_assert!(damaged.verify().is_err());
            prop_assert!(damaged.records_at(0).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..200), base in any::<u32>()) {
            let batch = StoredBatch::from_bytes(Bytes::from(data));
            let _ = batch.header();
            let _ = batch.records_at(u64::from(base));
        }

        #[test]
        fn sealed_garbage_is_refused_or_decoded_without_a_panic(
            fields in any::<[u8; HEADER_LEN]>(),
            codec in 0u8..4,
            flags in 0u8..2,
            section in vec(any::<u8>(), 0..300),
            base in any::<u32>(),
        ) {
            let batch = sealed(fields, codec, flags, section);
            if let Ok(read) = batch.records_at(u64::from(base)) {
                let header = batch.header()?;
                prop_assert!(read.len() <= header.record_count as usize);
                prop_assert!(read.windows(2).all(|w| w[0].0 < w[1].0));
            }
        }

        #[test]
        fn sealed_compacted_sections_with_any_deltas_never_panic(
            count in 0u32..16,
            kept in vec(any::<u32>(), 0..6),
            records in strategies::records(6),
            base in any::<u32>(),
        ) {
            let mut section = (kept.len() as u32).to_be_bytes().to_vec();
            for delta in &kept {
                section.extend_from_slice(&(delta % 20).to_be_bytes());
            }
            records::encode_records(&records, &mut section);
            let mut fields = [0u8; HEADER_LEN];
            fields[7..11].copy_from_slice(&count.to_be_bytes());
            let batch = sealed(fields, 0, COMPACTED, section);
            if let Ok(read) = batch.records_at(u64::from(base)) {
                prop_assert_eq!(read.len(), kept.len());
                prop_assert!(read.iter().all(|(o, _)| *o < u64::from(base) + u64::from(count)));
            }
        }
    }
}
