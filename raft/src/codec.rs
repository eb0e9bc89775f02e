//! Encoding of Raft entries, votes and messages: postcard (compact, serde-driven). Both ends of
//! every encoding run the same binary version and pin the same openraft version.
//!
//! Entries are encoded once, when they are appended to the log; the same bytes go to RocksDB,
//! the tail cache and every follower. Decoding with [`decode_shared`] keeps the bulk of an
//! entry (the `Bytes` fields marked `#[serde(with = "mq_raft::codec::shared_bytes")]`) as
//! slices of the buffer it was decoded from, so a follower stores and applies the batch it
//! received without copying it.

use std::cell::RefCell;
use std::io;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn invalid(err: postcard::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

/// Encodes `value` into a buffer of exactly its size: entries carry MiB-sized batches, and a
/// growing buffer would copy and re-fault them a dozen times.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    let size = postcard::experimental::serialized_size(value).map_err(invalid)?;
    postcard::to_extend(value, Vec::with_capacity(size)).map_err(invalid)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(invalid)
}

thread_local! {
    /// The buffer [`decode_shared`] is decoding on this thread, if any.
    static SOURCE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Decodes `bytes` like [`decode`], except that [`shared_bytes`] fields come out as slices of
/// `bytes` instead of copies.
pub fn decode_shared<T: DeserializeOwned>(bytes: &Bytes) -> io::Result<T> {
    // Decoding is synchronous, so the source stays this thread's until it is restored (a
    // nested call puts the outer source back).
    let outer = SOURCE.with(|source| source.replace(Some(bytes.clone())));
    let decoded = postcard::from_bytes(bytes);
    SOURCE.with(|source| *source.borrow_mut() = outer);
    decoded.map_err(invalid)
}

/// Serde for a `Bytes` field that [`decode_shared`] decodes without a copy. The encoding is
/// the same as `Bytes`' own (a byte string), so it reads what was stored before it existed.
pub mod shared_bytes {
    use std::fmt;

    use bytes::Bytes;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    use super::SOURCE;

    pub fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        deserializer.deserialize_bytes(SharedBytes)
    }

    struct SharedBytes;

    impl<'de> Visitor<'de> for SharedBytes {
        type Value = Bytes;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
            Ok(share(v).unwrap_or_else(|| Bytes::copy_from_slice(v)))
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
            Ok(Bytes::copy_from_slice(v))
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
            Ok(Bytes::from(v))
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(byte) = seq.next_element::<u8>()? {
                bytes.push(byte);
            }
            Ok(Bytes::from(bytes))
        }
    }

    /// `v` as a slice of the buffer being decoded by `decode_shared`, when it lies inside it.
    fn share(v: &[u8]) -> Option<Bytes> {
        SOURCE.with(|source| {
            let source = source.borrow();
            let source = source.as_ref()?;
            let range = source.as_ptr_range();
            let inside = range.start <= v.as_ptr() && v.as_ptr_range().end <= range.end;
            // An empty slice may point anywhere; `slice_ref` handles it without a check.
            (inside || v.is_empty()).then(|| source.slice_ref(v))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Framed {
        tag: u32,
        #[serde(with = "shared_bytes")]
        body: Bytes,
        plain: Bytes,
    }

    #[test]
    fn shared_fields_slice_the_source_and_plain_ones_copy() {
        let value = Framed {
            tag: 7,
            body: Bytes::from(vec![1u8; 1000]),
            plain: Bytes::from_static(b"plain"),
        };
        let encoded = Bytes::from(encode(&value).unwrap());
        let shared: Framed = decode_shared(&encoded).unwrap();
        assert_eq!(shared, value);
        let inside = |b: &Bytes| encoded.as_ptr_range().contains(&b.as_ptr());
        assert!(
            inside(&shared.body),
            "the shared field is a slice of the source"
        );
        assert!(!inside(&shared.plain), "a plain Bytes field is copied");

        // Outside `decode_shared` the same field is copied, and decodes the same.
        let copied: Framed = decode(&encoded).unwrap();
        assert_eq!(copied, value);
        assert!(!inside(&copied.body));
        // The source is forgotten once the decode is over.
        SOURCE.with(|source| assert!(source.borrow().is_none()));
    }

    #[test]
    fn the_encoding_is_the_one_of_a_plain_bytes_field() {
        #[derive(Serialize)]
        struct Plain {
            tag: u32,
            body: Bytes,
            plain: Bytes,
        }
        let plain = Plain {
            tag: 1,
            body: Bytes::from_static(b"body"),
            plain: Bytes::from_static(b"p"),
        };
        let framed = Framed {
            tag: 1,
            body: Bytes::from_static(b"body"),
            plain: Bytes::from_static(b"p"),
        };
        assert_eq!(encode(&plain).unwrap(), encode(&framed).unwrap());
    }
}
