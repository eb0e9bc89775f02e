//! [`Client`]: its settings, its shared state (channels, metadata cache, produce sequences)
//! and the channels to servers. The requests are in `routing.rs` (retries, control calls,
//! leader routing), `produce.rs`, `fetch.rs`, `admin.rs`, `groups.rs` and `queues.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use mq_common::control::LeaderFollower;
use mq_proto::v1::broker_client::BrokerClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::ClientError;
use crate::metadata::MetadataCache;
use crate::sequence::PartitionSequence;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Servers to bootstrap from (host:port); any node of the cluster will do.
    pub servers: Vec<String>,
    /// How long one operation may take, retries included.
    pub request_timeout: Duration,
    /// How long one attempt at a partition leader (produce, fetch, list offsets, opening a
    /// subscription) waits for its answer, beyond the wait a long-poll fetch asks for. A leader
    /// that is paused or cut off answers nothing; after this the client tries the next replica
    /// (produce, list offsets) or looks the leader up again (reads) and, where that is safe
    /// (reads, idempotent produce), sends again. A produce asks the broker to answer within
    /// four fifths of it (`TIMEOUT` if the write did not commit by then). Must not be zero.
    pub attempt_timeout: Duration,
    /// How long connecting to a server may take.
    pub connect_timeout: Duration,
    /// First backoff between retries; doubles up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Largest gRPC message sent or received.
    pub max_message_bytes: usize,
    /// Send a CRC-32C with every batch so the broker detects corruption on the way.
    pub send_checksums: bool,
    /// Idempotent produce: batches carry a producer id and sequence numbers, so a batch
    /// retried after a timeout or a leader change is never appended twice, and batches of one
    /// partition are appended in the order `produce` was called. At most
    /// [`MAX_IN_FLIGHT_PER_PARTITION`] batches per partition are then in flight; more wait.
    pub idempotent: bool,
}

/// Batches per partition an idempotent client keeps in flight: the number the broker
/// remembers per producer to recognise retries.
pub const MAX_IN_FLIGHT_PER_PARTITION: usize = 5;

impl ClientConfig {
    pub fn new(servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            servers: servers.into_iter().map(Into::into).collect(),
            request_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            retry_backoff: Duration::from_millis(20),
            retry_backoff_max: Duration::from_millis(500),
            max_message_bytes: 64 << 20,
            send_checksums: true,
            idempotent: true,
        }
    }
}

/// A connection to a cluster (or a standalone node). Clone it freely.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    channels: Mutex<HashMap<String, Channel>>,
    pub(crate) metadata: RwLock<MetadataCache>,
    /// Idempotent produce: the producer id and next sequence per (topic, partition).
    pub(crate) sequences: Mutex<HashMap<(String, u32), Arc<PartitionSequence>>>,
    /// The configured servers as the control plane's entry points, and which answered last.
    pub(crate) control: LeaderFollower,
}

impl Client {
    /// A client for `config.servers`. Connections are made when first needed.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        if config.servers.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no server address given".into(),
            ));
        }
        if config.attempt_timeout.is_zero() {
            return Err(ClientError::InvalidArgument(
                "attempt_timeout: must be more than zero".into(),
            ));
        }
        let client = Self {
            inner: Arc::new(Inner {
                control: LeaderFollower::new(config.servers.clone()),
                config,
                channels: Mutex::default(),
                metadata: RwLock::default(),
                sequences: Mutex::default(),
            }),
        };
        for server in &client.inner.config.servers {
            client.channel(server)?;
        }
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub(crate) fn channel(&self, address: &str) -> Result<Channel, ClientError> {
        let mut channels = self.inner.channels.lock().expect("channel map lock");
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let invalid = |reason: String| ClientError::InvalidAddress {
            address: address.to_owned(),
            reason,
        };
        let uri = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        let channel = Endpoint::from_shared(uri)
            .map_err(|err| invalid(err.to_string()))?
            .connect_timeout(self.inner.config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }

    pub(crate) fn broker(&self, channel: Channel) -> BrokerClient<Channel> {
        let max = self.inner.config.max_message_bytes;
        BrokerClient::new(channel)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }
}
