//! Batch compression codecs: what a producer may compress `encoded_records` with and what a
//! broker stores and decompresses on read.
//!
//! Both codecs use their standard *frame* formats (LZ4 frame, Zstandard frame), so a client in
//! any language can produce them with its usual library (`lz4.frame`, `zstandard` in Python).

use std::io::Read;

use mq_proto::v1 as pb;

/// How the records of a batch are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None,
    Lz4,
    Zstd,
}

/// Why compressed records could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    #[error("unknown compression codec {0}")]
    UnknownCodec(u8),
    #[error("{codec} data is corrupt: {reason}")]
    Corrupt { codec: &'static str, reason: String },
    #[error("decompressed {codec} data exceeds the limit of {limit} bytes")]
    TooLarge { codec: &'static str, limit: usize },
}

/// The zstd level producers use: fast, and most of the ratio of higher levels for records.
const ZSTD_LEVEL: i32 = 3;

impl Compression {
    /// The codec's byte in a stored batch header.
    pub fn id(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Lz4 => 1,
            Self::Zstd => 2,
        }
    }

    pub fn from_id(id: u8) -> Result<Self, CompressionError> {
        match id {
            0 => Ok(Self::None),
            1 => Ok(Self::Lz4),
            2 => Ok(Self::Zstd),
            other => Err(CompressionError::UnknownCodec(other)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    pub fn to_proto(self) -> pb::Compression {
        match self {
            Self::None => pb::Compression::None,
            Self::Lz4 => pb::Compression::Lz4,
            Self::Zstd => pb::Compression::Zstd,
        }
    }

    pub fn from_proto(codec: pb::Compression) -> Self {
        match codec {
            pb::Compression::None => Self::None,
            pb::Compression::Lz4 => Self::Lz4,
            pb::Compression::Zstd => Self::Zstd,
        }
    }

    /// Compresses `data` (returned as is for `None`).
    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::None => data.to_vec(),
            Self::Lz4 => {
                let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(
                    lz4_flex::block::get_maximum_output_size(data.len()) + 64,
                ));
                std::io::Write::write_all(&mut encoder, data).expect("writing to a Vec");
                encoder.finish().expect("finishing into a Vec")
            }
            Self::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL).expect("compressing into a Vec"),
        }
    }

    /// Decompresses `data`, refusing output larger than `limit` bytes.
    pub fn decompress(self, data: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
        let name = self.name();
        let corrupt = |reason: String| CompressionError::Corrupt {
            codec: name,
            reason,
        };
        let mut out = Vec::new();
        let read = match self {
            Self::None => {
                if data.len() > limit {
                    return Err(CompressionError::TooLarge { codec: name, limit });
                }
                return Ok(data.to_vec());
            }
            Self::Lz4 => lz4_flex::frame::FrameDecoder::new(data)
                .take(limit as u64 + 1)
                .read_to_end(&mut out),
            Self::Zstd => zstd::stream::read::Decoder::new(data)
                .and_then(|decoder| decoder.take(limit as u64 + 1).read_to_end(&mut out)),
        };
        read.map_err(|err| corrupt(err.to_string()))?;
        if out.len() > limit {
            return Err(CompressionError::TooLarge { codec: name, limit });
        }
        Ok(out)
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "lz4" => Ok(Self::Lz4),
            "zstd" => Ok(Self::Zstd),
            other => Err(format!("unknown compression '{other}' (none, lz4 or zstd)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let data = sample();
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let packed = codec.compress(&data);
            if codec != Compression::None {
                assert!(packed.len() < data.len() / 2, "{codec:?} compresses");
            }
            assert_eq!(codec.decompress(&packed, data.len()).unwrap(), data);
            assert_eq!(Compression::from_id(codec.id()).unwrap(), codec);
        }
    }

    #[test]
    fn output_above_the_limit_is_refused() {
        let data = sample();
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let packed = codec.compress(&data);
            assert!(matches!(
                codec.decompress(&packed, data.len() - 1),
                Err(CompressionError::TooLarge { .. })
            ));
        }
    }

    #[test]
    fn garbage_is_reported_corrupt() {
        for codec in [Compression::Lz4, Compression::Zstd] {
            assert!(matches!(
                codec.decompress(b"definitely not compressed", 1 << 20),
                Err(CompressionError::Corrupt { .. })
            ));
        }
        assert_eq!(
            Compression::from_id(9),
            Err(CompressionError::UnknownCodec(9))
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn codec() -> impl Strategy<Value = Compression> {
        prop_oneof![Just(Compression::Lz4), Just(Compression::Zstd)]
    }

    proptest! {
        #[test]
        fn compressed_data_round_trips_within_its_limit(
            codec in codec(),
            data in vec(any::<u8>(), 0..2000),
        ) {
            let packed = codec.compress(&data);
            prop_assert_eq!(&codec.decompress(&packed, data.len())?, &data);
            if !data.is_empty() {
                let refused = codec.decompress(&packed, data.len() - 1);
                prop_assert!(
                    matches!(refused, Err(CompressionError::TooLarge { .. })),
                    "{:?}",
                    refused
                );
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_nor_exceed_the_limit(
            codec in codec(),
            data in vec(any::<u8>(), 0..300),
            limit in 0usize..4096,
        ) {
            if let Ok(out) = codec.decompress(&data, limit) {
                prop_assert!(out.len() <= limit);
            }
        }

        #[test]
        fn a_damaged_frame_is_refused_or_decodes_within_the_limit(
            codec in codec(),
            data in vec(any::<u8>(), 1..500),
            at in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut packed = codec.compress(&data);
            let i = at.index(packed.len());
            packed[i] ^= flip;
            // Frames carry checksums of their content (LZ4 when enabled, zstd optionally):
            // what matters is that damage never panics or allocates past the limit.
            if let Ok(out) = codec.decompress(&packed, data.len()) {
                prop_assert!(out.len() <= data.len());
            }
        }
    }
}
