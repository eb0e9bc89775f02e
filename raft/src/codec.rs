//! Encoding of Raft entries, votes and messages: postcard (compact, serde-driven). Both ends of
//! every encoding run the same binary version and pin the same openraft version.

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn encode<T: Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
}
