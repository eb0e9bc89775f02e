//! The stored batch: what one Raft entry of a partition carries, on disk and on the wire
//! between replicas. A fixed header, then the records in their canonical encoding
//! (`mq_common::records`):
//!
//! ```text
//! offset size field
//!      0    1 magic (1)
//!      1    4 crc32c, big-endian, of every byte after this field
//!      5    1 compression codec (0: none)
//!      6    1 flags (0)
//!      7    4 record count
//!     11    8 first timestamp (ms)
//!     19    8 max timestamp (ms)
//!     27    8 producer id (0: none)
//!     35    4 base sequence
//!     39    4 length of the records section
//!     43      records
//! ```
//!
//! Offsets are not stored: a batch's base offset is assigned when its entry is applied.

use std::fmt;

use bytes::{Buf, Bytes};
use mq_common::records::{self, Record};
use serde::{Deserialize, Serialize};

const MAGIC: u8 = 1;
const CRC_RANGE_START: usize = 5;
/// Bytes before the records section.
pub const HEADER_LEN: usize = 43;

/// An encoded batch. Cheap to clone (shares its buffer).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBatch(Bytes);

impl fmt::Debug for StoredBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never dump record bytes into logs.
        write!(f, "StoredBatch({} bytes)", self.0.len())
    }
}

/// Why a stored batch cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch is {0} bytes, shorter than its header")]
    Truncated(usize),
    #[error("unknown batch format {0}")]
    UnknownFormat(u8),
    #[error("batch checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { stored: u32, computed: u32 },
    #[error("batch records section is {actual} bytes, header says {declared}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("unsupported compression codec {0}")]
    UnsupportedCodec(u8),
    #[error(transparent)]
    Records(#[from] records::DecodeError),
}

/// The client-supplied checksum of a batch did not match its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumMismatch {
    pub sent: u32,
    pub computed: u32,
}

impl StoredBatch {
    /// Encodes `records` into a batch. Records with timestamp 0 get `now_ms`. When `sent_crc`
    /// is given it must be the CRC-32C of the canonical encoding of `records` as sent.
    pub fn build(
        records: &[Record],
        now_ms: i64,
        sent_crc: Option<u32>,
    ) -> Result<Self, ChecksumMismatch> {
        let stamp = |r: &Record| {
            if r.timestamp_ms == 0 {
                now_ms
            } else {
                r.timestamp_ms
            }
        };
        let any_unstamped = records.iter().any(|r| r.timestamp_ms == 0);
        if let (Some(sent), true) = (sent_crc, any_unstamped) {
            // The stored bytes will differ from what the client hashed: check the sent form.
            let computed = records::records_crc32c(records);
            if computed != sent {
                return Err(ChecksumMismatch { sent, computed });
            }
        }
        let records_len: usize = records.iter().map(Record::encoded_len).sum();
        let mut buffer = Vec::with_capacity(HEADER_LEN + records_len);
        buffer.resize(HEADER_LEN, 0);
        if any_unstamped {
            let stamped: Vec<Record> = records
                .iter()
                .map(|r| Record {
                    timestamp_ms: stamp(r),
                    ..r.clone()
                })
                .collect();
            records::encode_records(&stamped, &mut buffer);
        } else {
            records::encode_records(records, &mut buffer);
        }
        let records_crc = crc32c::crc32c(&buffer[HEADER_LEN..]);
        if let (Some(sent), false) = (sent_crc, any_unstamped)
            && sent != records_crc
        {
            return Err(ChecksumMismatch {
                sent,
                computed: records_crc,
            });
        }
        let first_timestamp = records.first().map_or(now_ms, stamp);
        let max_timestamp = records.iter().map(stamp).max().unwrap_or(now_ms);
        buffer[0] = MAGIC;
        buffer[5] = 0; // codec: none
        buffer[6] = 0; // flags
        buffer[7..11].copy_from_slice(&(records.len() as u32).to_be_bytes());
        buffer[11..19].copy_from_slice(&first_timestamp.to_be_bytes());
        buffer[19..27].copy_from_slice(&max_timestamp.to_be_bytes());
        buffer[27..35].copy_from_slice(&0u64.to_be_bytes());
        buffer[35..39].copy_from_slice(&0u32.to_be_bytes());
        buffer[39..43].copy_from_slice(&(records_len as u32).to_be_bytes());
        // crc(header tail ‖ records) from the two parts, without a second pass over records.
        let header_crc = crc32c::crc32c(&buffer[CRC_RANGE_START..HEADER_LEN]);
        let crc = crc32c::crc32c_combine(header_crc, records_crc, records_len);
        buffer[1..5].copy_from_slice(&crc.to_be_bytes());
        Ok(Self(Bytes::from(buffer)))
    }

    /// Wraps bytes read back from storage; nothing is checked until [`Self::header`] or
    /// [`Self::verify`].
    pub fn from_bytes(bytes: Bytes) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The header fields, after checking format and lengths (not the checksum).
    pub fn header(&self) -> Result<BatchHeader, BatchError> {
        if self.0.len() < HEADER_LEN {
            return Err(BatchError::Truncated(self.0.len()));
        }
        let mut header = &self.0[..HEADER_LEN];
        let magic = header.get_u8();
        if magic != MAGIC {
            return Err(BatchError::UnknownFormat(magic));
        }
        let crc = header.get_u32();
        let codec = header.get_u8();
        let _flags = header.get_u8();
        let record_count = header.get_u32();
        let first_timestamp_ms = header.get_i64();
        let max_timestamp_ms = header.get_i64();
        let _producer_id = header.get_u64();
        let _base_sequence = header.get_u32();
        let records_len = header.get_u32() as usize;
        if codec != 0 {
            return Err(BatchError::UnsupportedCodec(codec));
        }
        let actual = self.0.len() - HEADER_LEN;
        if actual != records_len {
            return Err(BatchError::LengthMismatch {
                declared: records_len,
                actual,
            });
        }
        Ok(BatchHeader {
            crc,
            record_count,
            first_timestamp_ms,
            max_timestamp_ms,
        })
    }

    /// Checks the checksum; returns the header.
    pub fn verify(&self) -> Result<BatchHeader, BatchError> {
        let header = self.header()?;
        let computed = crc32c::crc32c(&self.0[CRC_RANGE_START..]);
        if computed != header.crc {
            return Err(BatchError::ChecksumMismatch {
                stored: header.crc,
                computed,
            });
        }
        Ok(header)
    }

    /// Verifies the batch and decodes its records (sharing this batch's buffer).
    pub fn records(&self) -> Result<Vec<Record>, BatchError> {
        let header = self.verify()?;
        Ok(records::decode_records(
            self.0.slice(HEADER_LEN..),
            header.record_count as usize,
        )?)
    }
}

/// The fixed fields of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub crc: u32,
    pub record_count: u32,
    pub first_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
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
        let batch = StoredBatch::build(&records(), 0, None).unwrap();
        let header = batch.verify().unwrap();
        assert_eq!(header.record_count, 5);
        assert_eq!(header.first_timestamp_ms, 1000);
        assert_eq!(header.max_timestamp_ms, 1004);
        assert_eq!(batch.records().unwrap(), records());
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let batch = StoredBatch::build(&records(), 0, None).unwrap();
        for at in 1..batch.len() {
            let mut bytes = batch.as_bytes().to_vec();
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
        assert!(StoredBatch::build(&records, 0, Some(crc)).is_ok());
        let err = StoredBatch::build(&records, 0, Some(crc ^ 1)).unwrap_err();
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
        let batch = StoredBatch::build(&unstamped, 77, Some(crc)).unwrap();
        assert!(
            batch
                .records()
                .unwrap()
                .iter()
                .all(|r| r.timestamp_ms == 77)
        );
        assert!(StoredBatch::build(&unstamped, 77, Some(crc ^ 1)).is_err());
    }

    #[test]
    fn truncated_and_foreign_bytes_are_rejected() {
        assert!(matches!(
            StoredBatch::from_bytes(Bytes::from_static(b"short")).header(),
            Err(BatchError::Truncated(5))
        ));
        let mut bytes = StoredBatch::build(&records(), 0, None)
            .unwrap()
            .as_bytes()
            .to_vec();
        bytes[0] = 9;
        assert!(matches!(
            StoredBatch::from_bytes(Bytes::from(bytes)).header(),
            Err(BatchError::UnknownFormat(9))
        ));
    }
}
