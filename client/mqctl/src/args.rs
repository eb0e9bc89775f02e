//! The command line: every noun, verb and flag of `mqctl` (clap derive). The commands that run
//! them are in `commands/`, one file per noun.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(version, about = "Admin and debugging CLI for the message broker")]
pub struct Cli {
    /// Server address (host:port); any node of the cluster.
    #[arg(
        long,
        global = true,
        env = "MQ_SERVER",
        default_value = "127.0.0.1:7070"
    )]
    pub server: String,
    /// Output format of commands that print data.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Produce one message per line of standard input.
    Produce(ProduceArgs),
    /// Print messages of a topic, following new ones (as a member of a group with --group).
    Consume(ConsumeArgs),
    /// The cluster as a whole.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Brokers.
    #[command(subcommand)]
    Broker(BrokerCommand),
    /// Consumer groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Queue subscriptions.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Dead letters of queue subscriptions.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Cluster-manager members and leader, brokers, under-replicated and offline partitions.
    Status,
    /// Move replicas so every live broker holds about as many (e.g. after adding brokers).
    Rebalance,
}

#[derive(Debug, Subcommand)]
pub enum BrokerCommand {
    /// List brokers with their state and load.
    List,
    /// Drain a broker: its replicas move to other brokers; stop it once it holds none.
    Decommission { id: u32 },
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short = 'p')]
        partitions: Option<u32>,
        #[arg(long, short = 'r')]
        replication_factor: Option<u32>,
        /// Topic config, KEY=VALUE (repeatable), e.g. retention.ms=86400000 or max.message.bytes=2097152.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Show a topic's configs, partitions, leaders, replicas and offsets.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Key of every message (messages of one key go to one partition, in order).
    #[arg(long, short = 'k')]
    pub key: Option<String>,
    /// Partition to write to (default: by key, else round-robin per batch).
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// Lines per batch.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Only this partition (default: all).
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// Start at the first stored message (default: only new messages).
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start at this offset (needs --partition).
    #[arg(long, short = 'o', requires = "partition")]
    pub offset: Option<u64>,
    /// Stop after this many messages.
    #[arg(long, short = 'n')]
    pub num: Option<u64>,
    /// Consume as a member of this consumer group: its share of the partitions, from the
    /// group's committed offsets (the beginning when none), committing as it goes.
    #[arg(long, short = 'g', conflicts_with_all = ["partition", "offset", "from_beginning"])]
    pub group: Option<String>,
    /// Text format: %v value, %k key, %o offset, %p partition, %t timestamp (ms), %h headers,
    /// \t tab, %% a percent sign.
    #[arg(long, short = 'f', default_value = "%v")]
    pub format: String,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups with their member counts and states.
    List,
    /// Show a group's members, their partitions, committed offsets and lag.
    Describe { group: String },
    /// Move a group's committed offsets for a topic (the group must have no members).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// Only these partitions (repeatable; default: all).
        #[arg(long = "partition", short = 'p')]
        partitions: Vec<u32>,
        #[arg(long, group = "to")]
        to_earliest: bool,
        #[arg(long, group = "to")]
        to_latest: bool,
        #[arg(long, group = "to")]
        to_offset: Option<u64>,
        /// Time in ms since the Unix epoch.
        #[arg(long, group = "to")]
        to_timestamp: Option<i64>,
        /// Move by N (negative: back).
        #[arg(long, group = "to", allow_hyphen_values = true)]
        shift_by: Option<i64>,
    },
    /// Delete a group and its committed offsets (the group must have no members).
    Delete { group: String },
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Create a queue subscription: consumers share the topic's partitions, each message is
    /// leased to one of them.
    Create {
        name: String,
        #[arg(long)]
        topic: String,
        /// Lease length in ms (default 30000).
        #[arg(long, default_value_t = 0)]
        ack_deadline_ms: u32,
        /// Deliveries before a message goes to the dead-letter topic (default 5).
        #[arg(long, default_value_t = 0)]
        max_deliveries: u32,
        /// Default: TOPIC.NAME.dlq.
        #[arg(long)]
        dead_letter_topic: Option<String>,
        /// Never two messages of one key in flight.
        #[arg(long)]
        key_ordered: bool,
        /// Start with the records already stored (default: only new ones).
        #[arg(long)]
        from_earliest: bool,
    },
    /// List queue subscriptions.
    List,
    /// Show a queue's config and per-partition progress.
    Describe { name: String },
    /// Delete a queue subscription (its unsettled messages are dropped with it).
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Print a queue's dead letters (one JSON object per line, headers included).
    Inspect {
        queue: String,
        /// At most this many, oldest first.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Produce a queue's dead letters back to the partition they came from (without the
    /// dead-letter headers), from where the last redrive stopped.
    Redrive { queue: String },
}
