//! Topics: create (validate, place, commit, ask brokers for the replicas, wait for leaders),
//! delete, list and describe, and the view of a topic with what brokers last reported.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mq_common::clock::now_ms;
use mq_common::ids::{BrokerId, GroupId, TopicName, broker_of_node};

use super::{BrokerView, ClusterManager};
use crate::config::MAX_PARTITIONS;
use crate::error::CmError;
use crate::placement;
use crate::reports::IN_SYNC_LAG;
use crate::state::{MetaCommand, MetaResponse, PartitionRecord, ReplicaRecord, TopicRecord};
use crate::topic_config::effective_configs;

/// A request to create a topic, validated by the caller's translation layer except for what
/// needs the cluster's state.
#[derive(Debug, Clone)]
pub struct CreateTopic {
    pub name: TopicName,
    pub partitions: u32,
    pub replication_factor: Option<u32>,
    pub configs: BTreeMap<String, String>,
}

/// A topic with what is known of its partitions right now.
#[derive(Debug, Clone)]
pub struct TopicView {
    pub topic: TopicRecord,
    pub partitions: Vec<PartitionView>,
}

#[derive(Debug, Clone)]
pub struct PartitionView {
    pub leader: Option<BrokerId>,
    pub high_watermark: Option<u64>,
    pub log_start_offset: Option<u64>,
    /// Per replica (in placement order): in sync, and entries behind the leader when known.
    pub replicas: Vec<(bool, Option<u64>)>,
}

impl ClusterManager {
    /// Creates a topic: validates, places, commits, asks brokers to create the replicas, and
    /// waits (bounded) for the partitions to elect leaders.
    pub async fn create_topic(&self, request: CreateTopic) -> Result<TopicView, CmError> {
        if request.partitions == 0 || request.partitions > MAX_PARTITIONS {
            return Err(CmError::invalid(
                "partitions",
                format!(
                    "must be between 1 and {MAX_PARTITIONS}, got {}",
                    request.partitions
                ),
            ));
        }
        let replication_factor = request
            .replication_factor
            .unwrap_or(self.config.default_replication_factor);
        if replication_factor == 0 {
            return Err(CmError::invalid("replication_factor", "must be at least 1"));
        }
        let configs = effective_configs(&request.configs)?;
        let placement = {
            let state = self.state.read().expect("state lock");
            if state.topics.contains_key(&request.name) {
                return Err(CmError::TopicExists {
                    topic: request.name.to_string(),
                });
            }
            let reports = self.reports.lock().expect("reports lock");
            let candidates = reports.candidates(&state, Instant::now());
            placement::place(&candidates, request.partitions, replication_factor).map_err(|e| {
                CmError::NotEnoughBrokers {
                    requested: e.requested,
                    live: e.live,
                }
            })?
        };
        let command = MetaCommand::CreateTopic {
            name: request.name.clone(),
            topic_id: uuid::Uuid::new_v4().to_string(),
            configs,
            placement,
            created_at_ms: now_ms(),
        };
        let topic = match self.propose(command).await? {
            MetaResponse::TopicCreated(topic) => topic,
            MetaResponse::TopicExists => {
                return Err(CmError::TopicExists {
                    topic: request.name.to_string(),
                });
            }
            other => {
                return Err(CmError::UnexpectedReply {
                    command: "create topic".into(),
                    reply: other.to_string(),
                });
            }
        };
        tracing::info!(topic = %topic.name, partitions = topic.partitions.len(), replication_factor, "topic created");
        Ok(self.await_leaders(topic).await)
    }

    /// Asks the brokers of a new topic for its replicas and waits for every partition to have
    /// a leader, bounded by `create_topic_wait`: a topic of thousands of partitions takes
    /// longer to start everywhere, and the reconciler creates whatever is still missing.
    async fn await_leaders(&self, topic: TopicRecord) -> TopicView {
        let deadline = Instant::now() + self.config.create_topic_wait;
        if tokio::time::timeout_at(deadline.into(), self.create_replicas(&topic))
            .await
            .is_err()
        {
            self.reconcile.notify_one();
        }
        while Instant::now() < deadline {
            let view = self.view(&topic);
            if view.partitions.iter().all(|p| p.leader.is_some()) {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(topic = %topic.name, "not every partition has a leader yet");
        self.view(&topic)
    }

    /// Deletes a topic; brokers drop its replicas when the reconciler tells them.
    pub async fn delete_topic(&self, name: &TopicName) -> Result<(), CmError> {
        match self
            .propose(MetaCommand::DeleteTopic { name: name.clone() })
            .await?
        {
            MetaResponse::TopicNotFound => Err(CmError::TopicNotFound {
                topic: name.to_string(),
            }),
            _ => {
                tracing::info!(topic = %name, "topic deleted");
                self.reconcile.notify_one();
                Ok(())
            }
        }
    }

    pub fn list_topics(&self) -> Vec<TopicRecord> {
        self.state
            .read()
            .expect("state lock")
            .topics
            .values()
            .cloned()
            .collect()
    }

    /// A topic with fresh figures: leaders are asked for their replicas' state.
    pub async fn describe_topic(&self, name: &TopicName) -> Result<TopicView, CmError> {
        let topic = self.topic(name)?;
        self.refresh_reports(&topic).await;
        Ok(self.view(&topic))
    }

    pub fn topic(&self, name: &TopicName) -> Result<TopicRecord, CmError> {
        self.state
            .read()
            .expect("state lock")
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| CmError::TopicNotFound {
                topic: name.to_string(),
            })
    }

    /// Brokers and the named topics (all when `names` is empty).
    pub fn metadata(
        &self,
        names: &[TopicName],
    ) -> Result<(Vec<BrokerView>, Vec<TopicView>), CmError> {
        let topics = if names.is_empty() {
            self.list_topics()
        } else {
            names
                .iter()
                .map(|n| self.topic(n))
                .collect::<Result<_, _>>()?
        };
        let views = topics.iter().map(|t| self.view(t)).collect();
        Ok((self.brokers(), views))
    }

    /// The topic with what brokers last reported.
    pub(super) fn view(&self, topic: &TopicRecord) -> TopicView {
        let reports = self.reports.lock().expect("reports lock");
        let now = Instant::now();
        let partitions = topic
            .partitions
            .iter()
            .map(|partition| {
                let leader = reports.leader_report(partition.group, now);
                let replicas = partition
                    .replicas
                    .iter()
                    .map(|replica| match leader.map(|l| l.lag_of(replica.node_id)) {
                        Some(Some(lag)) => (lag <= IN_SYNC_LAG, Some(lag)),
                        _ => (false, None),
                    })
                    .collect();
                PartitionView {
                    leader: leader.map(|r| broker_of_node(r.node_id)),
                    high_watermark: leader.map(|r| r.high_watermark),
                    log_start_offset: leader.map(|r| r.log_start_offset),
                    replicas,
                }
            })
            .collect();
        TopicView {
            topic: topic.clone(),
            partitions,
        }
    }

    /// Asks each broker hosting a replica of `topic` for fresh status, and records it.
    async fn refresh_reports(&self, topic: &TopicRecord) {
        let mut by_broker: BTreeMap<BrokerId, Vec<GroupId>> = BTreeMap::new();
        for partition in &topic.partitions {
            for replica in &partition.replicas {
                by_broker
                    .entry(replica.broker)
                    .or_default()
                    .push(partition.group);
            }
        }
        let calls: Vec<_> = {
            let state = self.state.read().expect("state lock");
            by_broker
                .into_iter()
                .map(|(broker, groups)| {
                    let call = self.brokers.replica_status(&state, broker, groups);
                    async move { (broker, call.await.ok()) }
                })
                .collect()
        };
        let replies = futures::future::join_all(calls).await;
        let mut reports = self.reports.lock().expect("reports lock");
        for (broker, fresh) in replies {
            let (Some(fresh), Some((_, known))) = (fresh, reports.brokers.get_mut(&broker)) else {
                continue;
            };
            for report in fresh {
                match known.iter_mut().find(|r| r.group == report.group) {
                    Some(slot) => *slot = report,
                    None => known.push(report),
                }
            }
        }
    }

    /// Asks every broker of `topic` to create its replicas, concurrently.
    async fn create_replicas(&self, topic: &TopicRecord) {
        let calls = topic.partitions.iter().flat_map(|partition| {
            partition
                .replicas
                .iter()
                .map(move |replica| self.create_replica(topic, partition, replica))
        });
        futures::future::join_all(calls).await;
    }

    /// Asks `replica`'s broker to host it (and not to be asked again until it reports it or
    /// the hold-off passes).
    pub(super) async fn create_replica(
        &self,
        topic: &TopicRecord,
        partition: &PartitionRecord,
        replica: &ReplicaRecord,
    ) {
        let call = {
            let state = self.state.read().expect("state lock");
            self.brokers
                .create_replica(&state, topic, partition, replica)
        };
        self.reports
            .lock()
            .expect("reports lock")
            .requested
            .insert((replica.broker, partition.group), Instant::now());
        match call.await {
            Ok(()) => {
                tracing::debug!(topic = %topic.name, group = %partition.group, broker = %replica.broker, "replica created")
            }
            Err(err) => {
                tracing::warn!(topic = %topic.name, group = %partition.group, broker = %replica.broker, %err, "create replica failed")
            }
        }
    }
}
