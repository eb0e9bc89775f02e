//! A cluster of real processes: `mq-cluster-manager` voters and `mq-broker` members, each on a
//! reserved loopback port with its own data directory and log, started, killed, paused and
//! restarted one by one.

use std::time::Duration;

use anyhow::{Context, bail};
use mq_client::{Client, ClientConfig, NewTopic, TopicDescription};

use crate::net::Net;
use crate::{Node, reserve_port, wait_until};

/// How a cluster is made.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub managers: usize,
    pub brokers: usize,
    /// Extra arguments of every cluster-manager node (e.g. `--set` of its timings).
    pub manager_args: Vec<String>,
    /// Extra arguments of every broker.
    pub broker_args: Vec<String>,
    /// Environment variables of every broker.
    pub broker_env: Vec<(String, String)>,
    /// Every node in a network namespace of its own (see [`Net`]), so links can be cut.
    pub namespaces: bool,
    /// Where every node's log is copied when the cluster is dropped.
    pub log_dir: Option<std::path::PathBuf>,
    /// A broker (id) whose data directory is a tmpfs of so many bytes.
    pub small_disk: Option<(u32, u64)>,
    /// Every broker behind a delaying proxy (see [`crate::Node::set_link_delay`]).
    pub delay_proxies: bool,
    /// Every node serves Prometheus metrics (see [`crate::Node::with_metrics`]).
    pub metrics: bool,
}

impl ClusterSpec {
    pub fn new(managers: usize, brokers: usize) -> Self {
        Self {
            managers,
            brokers,
            manager_args: Vec::new(),
            broker_args: Vec::new(),
            broker_env: Vec::new(),
            namespaces: false,
            log_dir: None,
            small_disk: None,
            delay_proxies: false,
            metrics: false,
        }
    }

    /// Every node serves Prometheus metrics.
    pub fn with_metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Keeps every node's log in `dir` (copied when the cluster is dropped).
    pub fn keep_logs_in(mut self, dir: &std::path::Path) -> Self {
        self.log_dir = Some(dir.to_owned());
        self
    }

    /// Puts broker `id`'s data directory on a tmpfs of `bytes` (needs root).
    pub fn broker_on_small_disk(mut self, id: u32, bytes: u64) -> Self {
        self.small_disk = Some((id, bytes));
        self
    }

    /// Puts every broker behind a delaying proxy.
    pub fn brokers_behind_delay_proxies(mut self) -> Self {
        self.delay_proxies = true;
        self
    }

    /// Runs every node in a network namespace of its own.
    pub fn in_namespaces(mut self) -> Self {
        self.namespaces = true;
        self
    }

    pub fn broker_env(mut self, name: &str, value: &str) -> Self {
        self.broker_env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn manager_set(mut self, key_value: &str) -> Self {
        self.manager_args
            .extend(["--set".to_owned(), key_value.to_owned()]);
        self
    }

    pub fn broker_set(mut self, key_value: &str) -> Self {
        self.broker_args
            .extend(["--set".to_owned(), key_value.to_owned()]);
        self
    }
}

/// A running cluster. Broker `i` has broker id `i + 1`; manager `i` has node id `i + 1`.
/// In namespaces, manager `i` is host `i` of [`Cluster::net`] and broker `i` host
/// `managers + i`.
#[derive(Debug)]
pub struct Cluster {
    pub managers: Vec<Node>,
    pub brokers: Vec<Node>,
    spec: ClusterSpec,
    /// The namespaced network, when the spec asked for one (dropped after the nodes).
    pub net: Option<Net>,
}

/// Cluster-manager and broker settings that make failure detection and healing take
/// seconds, for tests of them: brokers heartbeat every 300 ms, are dead after 2 s of silence,
/// and replaced 3 s later.
pub fn fast_healing(spec: ClusterSpec) -> ClusterSpec {
    spec.manager_set("cluster_manager.broker_session_timeout=2s")
        .manager_set("cluster_manager.replace_delay=3s")
        .manager_set("cluster_manager.reconcile_interval=500ms")
        .broker_set("cluster.heartbeat_interval=300ms")
}

const READY: Duration = Duration::from_secs(60);

impl Cluster {
    /// Starts every node and waits until all serve (brokers serve once registered).
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Self> {
        let net = if spec.namespaces {
            Some(Net::create(spec.managers + spec.brokers)?)
        } else {
            None
        };
        let manager_host = |i: usize| {
            net.as_ref()
                .map_or_else(|| "127.0.0.1".to_owned(), |net| net.host_ip(i).to_string())
        };
        let manager_ports: Vec<u16> = (0..spec.managers).map(|_| reserve_port()).collect();
        let voters = manager_ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}={}:{port}", i + 1, manager_host(i)))
            .collect::<Vec<_>>()
            .join(",");
        let manager_addresses = manager_ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}:{port}", manager_host(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut managers = Vec::new();
        for (i, port) in manager_ports.iter().enumerate() {
            let mut args = vec![
                "--node-id".to_owned(),
                (i + 1).to_string(),
                "--voters".to_owned(),
                voters.clone(),
            ];
            args.extend(spec.manager_args.iter().cloned());
            let mut node = Node::new(&format!("cm{}", i + 1), "mq-cluster-manager", *port, args)?;
            if let Some(net) = &net {
                node = node.in_namespace(net.namespace(i), net.host_ip(i));
            }
            if let Some(dir) = &spec.log_dir {
                node = node.keep_log_in(dir);
            }
            if spec.metrics {
                node = node.with_metrics();
            }
            managers.push(node);
        }
        let mut cluster = Self {
            managers,
            brokers: Vec::new(),
            spec: spec.clone(),
            net,
        };
        for _ in 0..spec.brokers {
            let broker = cluster.broker_node(&manager_addresses)?;
            cluster.brokers.push(broker);
        }
        if let Some((id, bytes)) = spec.small_disk {
            cluster.broker(id).on_small_disk(bytes)?;
        }
        // Voters serve once they know a leader, which needs a majority of them up: start all
        // before waiting for any.
        for node in &mut cluster.managers {
            node.spawn()?;
        }
        for node in &mut cluster.brokers {
            node.spawn()?;
        }
        for node in cluster
            .managers
            .iter_mut()
            .chain(cluster.brokers.iter_mut())
        {
            node.wait_ready_within(READY).await?;
        }
        Ok(cluster)
    }

    fn broker_node(&self, manager_addresses: &str) -> anyhow::Result<Node> {
        let id = self.brokers.len() + 1;
        let mut args = vec![
            "--broker-id".to_owned(),
            id.to_string(),
            "--cluster-manager".to_owned(),
            manager_addresses.to_owned(),
        ];
        args.extend(self.spec.broker_args.iter().cloned());
        let mut node = Node::new(&format!("broker{id}"), "mq-broker", reserve_port(), args)?;
        for (name, value) in &self.spec.broker_env {
            node = node.with_env(name, value);
        }
        if let Some(dir) = &self.spec.log_dir {
            node = node.keep_log_in(dir);
        }
        if let Some(net) = &self.net {
            let host = self.spec.managers + id - 1;
            if host >= self.spec.managers + self.spec.brokers {
                bail!("a namespaced cluster has no host for broker {id}");
            }
            node = node.in_namespace(net.namespace(host), net.host_ip(host));
        }
        if self.spec.delay_proxies {
            node.behind_delay_proxy();
        }
        if self.spec.metrics {
            node = node.with_metrics();
        }
        Ok(node)
    }

    /// The [`Net`] host index of broker `id`.
    pub fn broker_host(&self, id: u32) -> usize {
        self.spec.managers + id as usize - 1
    }

    /// Adds one more broker (the next id) and waits until it serves; returns its id.
    pub async fn add_broker(&mut self) -> anyhow::Result<u32> {
        let mut broker = self.broker_node(&self.manager_addresses())?;
        broker.spawn()?;
        broker.wait_ready_within(READY).await?;
        self.brokers.push(broker);
        Ok(self.brokers.len() as u32)
    }

    /// Cluster-manager addresses, comma-separated (the brokers' `--cluster-manager`).
    pub fn manager_addresses(&self) -> String {
        self.managers
            .iter()
            .map(Node::address)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts a cluster and runs `test` on it. When the test fails, every node's log is
    /// printed; when it passes, it still fails if a node panicked.
    pub async fn run(
        spec: ClusterSpec,
        test: impl AsyncFnOnce(&mut Cluster) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut cluster = Self::start(spec).await?;
        let outcome = test(&mut cluster).await;
        match &outcome {
            Err(_) => cluster.print_logs(),
            Ok(()) => cluster.assert_no_panic(),
        }
        outcome
    }

    /// Prints every node's log to stderr.
    pub fn print_logs(&self) {
        for node in self.managers.iter().chain(&self.brokers) {
            eprintln!(
                "---- log of node {} ----\n{}\n---- end of log ----",
                node.name(),
                node.log()
            );
        }
    }

    /// Broker addresses, for clients.
    pub fn broker_addresses(&self) -> Vec<String> {
        self.brokers.iter().map(Node::address).collect()
    }

    /// A client bootstrapping from every broker.
    pub fn client(&self) -> Client {
        Client::new(ClientConfig::new(self.broker_addresses())).expect("client")
    }

    /// A client bootstrapping from the cluster-manager nodes.
    pub fn manager_client(&self) -> Client {
        Client::new(ClientConfig::new(
            self.managers.iter().map(Node::address).collect::<Vec<_>>(),
        ))
        .expect("client")
    }

    /// The broker with id `id`.
    pub fn broker(&mut self, id: u32) -> &mut Node {
        &mut self.brokers[id as usize - 1]
    }

    /// The index of the cluster-manager leader, as the live managers agree on it.
    pub async fn manager_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let client = self.manager_client();
        wait_until("a cluster-manager leader", timeout, || {
            let client = client.clone();
            async move {
                let status = client.cluster_status().await.ok()?;
                status.manager_leader_id.map(|id| id as usize - 1)
            }
        })
        .await
    }

    /// Creates `topic` with `partitions` partitions, replication factor 3, and waits until
    /// every partition has a leader and all replicas in sync.
    pub async fn create_replicated_topic(
        &self,
        client: &Client,
        topic: &str,
        partitions: u32,
        timeout: Duration,
    ) -> anyhow::Result<TopicDescription> {
        client
            .create_topic(
                topic,
                NewTopic::default()
                    .partitions(partitions)
                    .replication_factor(3),
            )
            .await?;
        self.wait_fully_replicated(client, topic, timeout).await
    }

    /// Waits until every partition of `topic` has a leader and all replicas in sync.
    pub async fn wait_fully_replicated(
        &self,
        client: &Client,
        topic: &str,
        timeout: Duration,
    ) -> anyhow::Result<TopicDescription> {
        wait_until(
            &format!("every partition of {topic} led and in sync"),
            timeout,
            || async {
                let topic = client.describe_topic(topic).await.ok()?;
                topic
                    .partitions
                    .iter()
                    .all(|p| p.leader_id.is_some() && p.replicas.iter().all(|r| r.in_sync))
                    .then_some(topic)
            },
        )
        .await
    }

    /// The broker id leading `partition` of `topic`, once one does.
    pub async fn leader_of(
        &self,
        client: &Client,
        topic: &str,
        partition: u32,
        timeout: Duration,
    ) -> anyhow::Result<u32> {
        wait_until(
            &format!("a leader of {topic}/{partition}"),
            timeout,
            || async {
                let topic = client.describe_topic(topic).await.ok()?;
                topic.partitions.get(partition as usize)?.leader_id
            },
        )
        .await
    }

    /// Fails if any node panicked.
    pub fn assert_no_panic(&self) {
        for node in self.managers.iter().chain(&self.brokers) {
            node.assert_no_panic();
        }
    }

    /// Index of the broker node named `name`.
    pub fn broker_index(&self, name: &str) -> anyhow::Result<usize> {
        self.brokers
            .iter()
            .position(|n| n.name() == name)
            .with_context(|| format!("no broker named {name}"))
    }

    /// Restarts a stopped node and waits until it serves.
    pub async fn restart(node: &mut Node) -> anyhow::Result<()> {
        if node.is_running() {
            bail!("node {} is still running", node.name());
        }
        node.spawn()?;
        node.wait_ready_within(READY).await
    }
}

/// A gRPC connection to a node, e.g. for [`replica_status`].
pub async fn connect(address: &str) -> anyhow::Result<tonic::transport::Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
            .connect()
            .await?,
    )
}

/// Every replica the broker on `channel` hosts, as that broker reports it (its Raft node id,
/// the leader it knows, the term, voters, high watermark, ...).
pub async fn replica_status(
    channel: &tonic::transport::Channel,
) -> anyhow::Result<Vec<mq_proto::internal::ReplicaStatus>> {
    use mq_proto::internal as ipb;
    let status = ipb::replica_manager_client::ReplicaManagerClient::new(channel.clone())
        .get_replica_status(ipb::GetReplicaStatusRequest { group_ids: vec![] })
        .await?
        .into_inner();
    Ok(status.replicas)
}

/// Every record of a partition as one replica has it: fetched from that broker directly (any
/// replica serves reads up to its own high watermark) from its log start offset, with its high
/// watermark.
pub async fn read_replica(
    address: &str,
    topic: &str,
    partition: u32,
) -> anyhow::Result<(u64, Vec<(u64, mq_client::Record)>)> {
    use mq_proto::internal as ipb;
    use mq_proto::v1 as pb;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut broker =
        pb::broker_client::BrokerClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let mut replicas = ipb::replica_manager_client::ReplicaManagerClient::new(channel);
    // Retention may move the log start while we read: start again from the new one.
    'from_log_start: loop {
        let status = replicas
            .get_replica_status(ipb::GetReplicaStatusRequest { group_ids: vec![] })
            .await?
            .into_inner();
        let Some(replica) = status
            .replicas
            .iter()
            .find(|r| r.topic == topic && r.partition == partition)
        else {
            bail!("{address} hosts no replica of {topic}/{partition}");
        };
        let mut records = Vec::new();
        let mut offset = replica.log_start_offset;
        loop {
            let response = match broker
                .fetch(pb::FetchRequest {
                    topic: topic.to_owned(),
                    partition,
                    offset,
                    max_records: 0,
                    max_bytes: 0,
                    max_wait_ms: 0,
                    coalesce_by_key: false,
                })
                .await
            {
                Ok(response) => response.into_inner(),
                Err(status) if status.code() == tonic::Code::OutOfRange => continue 'from_log_start,
                Err(status) => return Err(status.into()),
            };
            for record in response.records {
                records.push(mq_common::records::proto::from_consumed(record));
            }
            offset = response.next_offset;
            if offset >= response.high_watermark {
                return Ok((response.high_watermark, records));
            }
        }
    }
}

/// Waits until every replica of every partition of `topic` holds the same records, and
/// returns how many each partition holds. Call it with no produce under way.
pub async fn replicas_identical(
    cluster: &Cluster,
    client: &Client,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<usize>> {
    let description = cluster
        .wait_fully_replicated(client, topic, timeout)
        .await?;
    let mut counts = Vec::new();
    for partition in &description.partitions {
        let addresses: Vec<String> = partition
            .replicas
            .iter()
            .map(|r| r.address.clone())
            .collect();
        let logs = wait_until(
            &format!("the replicas of {topic}/{} to agree", partition.partition),
            timeout,
            || {
                let addresses = addresses.clone();
                async move {
                    let mut logs = Vec::new();
                    for address in &addresses {
                        logs.push(
                            read_replica(address, topic, partition.partition)
                                .await
                                .ok()?,
                        );
                    }
                    logs.windows(2).all(|w| w[0] == w[1]).then_some(logs)
                }
            },
        )
        .await?;
        counts.push(logs[0].1.len());
    }
    Ok(counts)
}
