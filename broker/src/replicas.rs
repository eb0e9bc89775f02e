//! The replicas this broker hosts: created and removed on the cluster manager's request,
//! persisted in the broker's own store (under [`GroupId::BROKER_LOCAL`]) so they restart with
//! the broker, found by group or by topic and partition.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use mq_common::ids::{GroupId, PartitionId, TopicName};
use mq_raft::codec;
use mq_raft::keys::{self, CF_KV};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch};
use tokio::sync::{Mutex, Notify};

use crate::error::BrokerError;
use crate::partition::{Partition, PartitionContext, ReplicaSpec};

#[derive(Default)]
struct Hosted {
    by_group: HashMap<GroupId, Arc<Partition>>,
    by_topic: HashMap<TopicName, BTreeMap<PartitionId, GroupId>>,
}

/// The partitions of one topic hosted here.
#[derive(Debug, Clone)]
pub struct HostedTopic {
    pub partition_count: u32,
    pub max_message_bytes: u32,
    pub partitions: BTreeMap<PartitionId, Arc<Partition>>,
}

pub struct Replicas {
    context: PartitionContext,
    hosted: RwLock<Hosted>,
    /// Serializes creation and removal, so a replica is never started twice.
    lifecycle: Mutex<()>,
    /// Notified whenever the leader of a hosted replica changes.
    leader_changed: Arc<Notify>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosted = self.hosted.read().expect("hosted lock");
        f.debug_struct("Replicas")
            .field("groups", &hosted.by_group.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Replicas {
    /// Restarts every replica recorded in the store.
    pub async fn open(context: PartitionContext) -> Result<Self, BrokerError> {
        let replicas = Self {
            context,
            hosted: RwLock::default(),
            lifecycle: Mutex::new(()),
            leader_changed: Arc::new(Notify::new()),
        };
        let specs = replicas.stored_specs()?;
        tracing::info!(replicas = specs.len(), "restarting hosted replicas");
        for spec in specs {
            replicas.start(spec).await?;
        }
        Ok(replicas)
    }

    /// Notified when the leader of any hosted replica changes.
    pub fn leader_changed(&self) -> Arc<Notify> {
        self.leader_changed.clone()
    }

    /// Hosts the replica described by `spec`. Idempotent for the same replica; a different
    /// replica of the same group (a new node id) replaces a stale one.
    pub async fn create(&self, spec: ReplicaSpec) -> Result<(), BrokerError> {
        let _guard = self.lifecycle.lock().await;
        if let Some(existing) = self.get(spec.group) {
            if existing.spec().node_id == spec.node_id {
                return Ok(());
            }
            tracing::warn!(group = %spec.group, old = existing.spec().node_id, new = spec.node_id, "replacing stale replica");
            self.remove_locked(spec.group).await?;
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.context.group.store.cf(CF_KV),
            spec_key(spec.group),
            codec::encode(&spec)?,
        );
        self.context.group.store.write_durable(batch)?;
        self.start(spec).await
    }

    /// Stops the replica of `group` and deletes its data. Idempotent.
    pub async fn remove(&self, group: GroupId) -> Result<(), BrokerError> {
        let _guard = self.lifecycle.lock().await;
        self.remove_locked(group).await
    }

    async fn remove_locked(&self, group: GroupId) -> Result<(), BrokerError> {
        let removed = {
            let mut hosted = self.hosted.write().expect("hosted lock");
            let removed = hosted.by_group.remove(&group);
            if let Some(partition) = &removed {
                let spec = partition.spec();
                if let Some(partitions) = hosted.by_topic.get_mut(&spec.topic) {
                    partitions.remove(&spec.partition);
                    if partitions.is_empty() {
                        hosted.by_topic.remove(&spec.topic);
                    }
                }
            }
            removed
        };
        self.context.group.registry.unregister(group);
        if let Some(partition) = removed {
            partition.shutdown().await;
            tracing::info!(%group, topic = %partition.spec().topic, partition = %partition.spec().partition, "replica removed");
        }
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.context.group.store.cf(CF_KV), spec_key(group));
        self.context.group.store.write_durable(batch)?;
        self.context.group.store.delete_group(group)?;
        Ok(())
    }

    async fn start(&self, spec: ReplicaSpec) -> Result<(), BrokerError> {
        let partition = Partition::start(&self.context, spec).await?;
        let spec = partition.spec().clone();
        {
            let mut hosted = self.hosted.write().expect("hosted lock");
            hosted.by_group.insert(spec.group, partition.clone());
            hosted
                .by_topic
                .entry(spec.topic.clone())
                .or_default()
                .insert(spec.partition, spec.group);
        }
        let mut leaders = Box::pin(partition.watch_leader());
        let notify = self.leader_changed.clone();
        tokio::spawn(async move {
            // Ends when the group shuts down (its metrics channel closes).
            while leaders.next().await.is_some() {
                notify.notify_one();
            }
        });
        Ok(())
    }

    pub fn get(&self, group: GroupId) -> Option<Arc<Partition>> {
        self.hosted
            .read()
            .expect("hosted lock")
            .by_group
            .get(&group)
            .cloned()
    }

    /// The hosted partitions of `topic`, or `None` when none is hosted here.
    pub fn topic(&self, topic: &TopicName) -> Option<HostedTopic> {
        let hosted = self.hosted.read().expect("hosted lock");
        let groups = hosted.by_topic.get(topic)?;
        let partitions: BTreeMap<PartitionId, Arc<Partition>> = groups
            .iter()
            .filter_map(|(partition, group)| {
                Some((*partition, hosted.by_group.get(group)?.clone()))
            })
            .collect();
        let first = partitions.values().next()?;
        Some(HostedTopic {
            partition_count: first.spec().partition_count,
            max_message_bytes: first.spec().max_message_bytes,
            partitions,
        })
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.hosted
            .read()
            .expect("hosted lock")
            .by_group
            .values()
            .cloned()
            .collect()
    }

    /// Hands the leadership of every partition led here to its best-placed voter, and waits
    /// (at most `timeout`) until none is led here: a stopping broker leaves no partition
    /// leaderless for an election timeout.
    pub async fn hand_off_leadership(&self, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let led: Vec<Arc<Partition>> =
                self.all().into_iter().filter(|p| p.is_leader()).collect();
            if led.is_empty() {
                return;
            }
            for partition in &led {
                if let Some(to) = partition.successor()
                    && let Err(err) = partition.transfer_leadership(to).await
                {
                    tracing::debug!(group = %partition.spec().group, %err, "leadership hand-off");
                }
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    still_leading = led.len(),
                    "leadership hand-off incomplete; stopping anyway"
                );
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Stops every Raft group (data stays).
    pub async fn shutdown(&self) {
        let _guard = self.lifecycle.lock().await;
        let partitions: Vec<_> = {
            let mut hosted = self.hosted.write().expect("hosted lock");
            hosted.by_topic.clear();
            hosted.by_group.drain().map(|(_, p)| p).collect()
        };
        for partition in partitions {
            self.context
                .group
                .registry
                .unregister(partition.spec().group);
            partition.shutdown().await;
        }
    }

    fn stored_specs(&self) -> Result<Vec<ReplicaSpec>, BrokerError> {
        let store = &self.context.group.store;
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(keys::group_end(GroupId::BROKER_LOCAL).to_vec());
        let start = keys::group_start(GroupId::BROKER_LOCAL);
        let mut specs = Vec::new();
        for item in store.db().iterator_cf_opt(
            store.cf(CF_KV),
            options,
            IteratorMode::From(&start, rocksdb::Direction::Forward),
        ) {
            let (_, value) = item.map_err(mq_raft::store::io_error)?;
            specs.push(codec::decode(&value)?);
        }
        Ok(specs)
    }
}

fn spec_key(group: GroupId) -> Vec<u8> {
    keys::prefixed(GroupId::BROKER_LOCAL, &group.0.to_be_bytes())
}
