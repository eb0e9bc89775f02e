//! Encoding of Raft entries, votes and messages: postcard (compact, serde-driven). Both ends of
//! every encoding run the same binary version and pin the same openraft version.

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes `value` into a buffer of exactly its size: entries carry MiB-sized batches, and a
/// growing buffer would copy and re-fault them a dozen times.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    let invalid = |err| io::Error::new(io::ErrorKind::InvalidData, err);
    let size = postcard::experimental::serialized_size(value).map_err(invalid)?;
    postcard::to_extend(value, Vec::with_capacity(size)).map_err(invalid)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
}
