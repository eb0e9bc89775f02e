//! [`ProducerConfig`].

use std::time::Duration;

use mq_client::{ClientConfig, Compression};

/// Producer settings. [`ProducerConfig::new`] gives the defaults listed per field.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Servers, timeouts and retry backoff of the underlying client. `client.idempotent`
    /// (default on) turns idempotent produce on or off.
    pub client: ClientConfig,
    /// Most bytes of records (encoded, before compression) per batch. Default 1 MiB. A batch
    /// is sent when it is full, when `linger` has passed since its first record, or on flush.
    pub batch_bytes: usize,
    /// How long a batch waits for more records before it is sent. Default 5 ms; zero sends
    /// what has queued as soon as the partition has a free in-flight slot.
    pub linger: Duration,
    /// Most bytes of records (encoded) waiting or in flight. Default 64 MiB.
    pub buffer_bytes: usize,
    /// How long `send`/`enqueue` waits for buffer space before failing with
    /// `ClientError::BufferFull`. Default 60 s.
    pub max_block: Duration,
    /// How long a record may take from `send` to its acknowledgement, retries included.
    /// Default 120 s.
    pub delivery_timeout: Duration,
    /// Codec batches are compressed with. Default none.
    pub compression: Compression,
    /// Largest record (key + value + headers + framing) accepted locally; larger ones fail
    /// with `ClientError::RecordTooLarge` before anything is sent. Default 1 MiB, the
    /// broker's default `max.message.bytes`.
    pub max_record_bytes: usize,
}

impl ProducerConfig {
    pub fn new(servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            client: ClientConfig::new(servers),
            batch_bytes: 1 << 20,
            linger: Duration::from_millis(5),
            buffer_bytes: 64 << 20,
            max_block: Duration::from_secs(60),
            delivery_timeout: Duration::from_secs(120),
            compression: Compression::None,
            max_record_bytes: 1 << 20,
        }
    }
}
