//! What a producer takes and what it reports back.

use bytes::Bytes;
use mq_client::Record;

/// A record to send: its topic, optionally its partition, and the record itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: String,
    /// Set: the record goes to this partition. Unset: by key hash, or sticky when keyless.
    pub partition: Option<u32>,
    /// Key, value, headers and timestamp (0: the producer's clock at `send`).
    pub record: Record,
}

impl ProducerRecord {
    /// An empty record (no key, no value) for `topic`.
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            record: Record::default(),
        }
    }

    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.record.key = Some(key.into());
        self
    }

    pub fn value(mut self, value: impl Into<Bytes>) -> Self {
        self.record.value = Some(value.into());
        self
    }

    /// Appends a header (names need not be unique).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.record = self.record.with_header(name, value);
        self
    }

    /// Milliseconds since the Unix epoch.
    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.record.timestamp_ms = timestamp_ms;
        self
    }

    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// Where an acknowledged record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub partition: u32,
    pub offset: u64,
    /// The record's timestamp as stored.
    pub timestamp_ms: i64,
}
