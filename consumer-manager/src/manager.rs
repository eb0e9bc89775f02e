//! [`ConsumerManager`]: the consumer manager without its transport. It runs the pure decisions
//! of [`crate::coordinator`] on the leader of its Raft group (one async lock per group, so
//! decisions on one group are taken one at a time, each on the state the previous one left),
//! commits their results, keeps member liveness in memory, and removes members that went
//! silent or hold partitions past their rebalance timeout.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mq_client::{Client, ClientConfig, OffsetSpec};
use mq_common::clock::now_ms;
use mq_common::ids::GroupId;
use mq_raft::{ControlGroup, GroupConfig, GroupContext, RaftTimings};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::assignor::Tp;
use crate::coordinator::{self, Heartbeat, Rejection, Reply};
use crate::error::CgError;
use crate::state::{Committed, Committer, GroupCommand, GroupResponse, Membership, RefusalCode};
use crate::types::{GroupsRaft, SharedState};

mod queues;

pub use queues::{Delivery, QueueStart, QueueView, WINDOW as QUEUE_WINDOW};

/// How often the leader looks for expired members.
const EXPIRY_TICK: Duration = Duration::from_millis(200);
/// How long the list of topics and their partition counts is reused.
const TOPICS_TTL: Duration = Duration::from_secs(1);
/// How long describing a group waits for a partition's high watermark.
const LAG_TIMEOUT: Duration = Duration::from_secs(2);

/// Process-wide pieces shared with the node's other groups.
#[derive(Debug, Clone)]
pub struct ConsumerManagerContext {
    pub group: GroupContext,
    /// Where this node serves; the consumer manager reads topics and offsets through it.
    pub advertised_address: String,
}

/// The consumer manager's Raft group: it runs on the cluster-manager voters.
#[derive(Debug, Clone)]
pub struct ConsumerManagerSettings {
    pub node_id: u64,
    /// Initial voters (node id → address); empty for a single voter at this node.
    pub voters: BTreeMap<u64, String>,
    pub timings: RaftTimings,
}

#[derive(Debug, Default)]
struct Seen {
    last_heartbeat: Option<Instant>,
    revoking_since: Option<Instant>,
}

#[derive(Debug, Default)]
struct Liveness {
    members: HashMap<(String, String), Seen>,
    leader_since: Option<Instant>,
}

/// A member as described to operators.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub member_epoch: u32,
    pub topics: BTreeSet<String>,
    pub assignment: BTreeSet<Tp>,
    pub revoking: BTreeSet<Tp>,
    pub last_heartbeat: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct PartitionLag {
    pub tp: Tp,
    pub committed: Option<u64>,
    pub high_watermark: Option<u64>,
    pub lag: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct GroupView {
    pub group: String,
    pub state: &'static str,
    pub assignor: &'static str,
    pub epoch: u32,
    pub members: Vec<MemberView>,
    pub offsets: Vec<PartitionLag>,
}

/// Where a reset moves committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(u64),
    Timestamp(i64),
    ShiftBy(i64),
}

pub struct ConsumerManager {
    raft: GroupsRaft,
    node_id: u64,
    state: SharedState,
    client: Client,
    liveness: Mutex<Liveness>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    topics: tokio::sync::Mutex<Option<(Instant, BTreeMap<String, u32>)>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    queues: queues::Runtimes,
}

impl std::fmt::Debug for ConsumerManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerManager")
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl ConsumerManager {
    /// Starts the consumer manager's Raft group on the shared store (initializing it with
    /// `settings.voters` on first start) and its expiry task.
    pub async fn start(
        context: ConsumerManagerContext,
        settings: ConsumerManagerSettings,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, CgError> {
        let spec = ControlGroup {
            group: GroupId::CONSUMER_MANAGER,
            node_id: settings.node_id,
            config: GroupConfig::control("consumer-manager", &settings.timings)?,
            voters: settings.voters.clone(),
            address: context.advertised_address.clone(),
        };
        let (raft, state) = GroupsRaft::start_control(&context.group, spec).await?;
        let client = Client::new(ClientConfig::new([context.advertised_address.clone()]))?;
        let manager = Arc::new(Self {
            raft,
            node_id: settings.node_id,
            state,
            client,
            liveness: Mutex::default(),
            locks: Mutex::default(),
            topics: tokio::sync::Mutex::default(),
            tasks: Mutex::default(),
            queues: queues::Runtimes::default(),
        });
        let expiry = tokio::spawn(manager.clone().run_expiry(shutdown));
        manager.tasks.lock().expect("tasks lock").push(expiry);
        Ok(manager)
    }

    pub fn leader(&self) -> Option<u64> {
        self.raft.leader()
    }

    pub async fn shutdown(&self) {
        let tasks: Vec<_> = self.tasks.lock().expect("tasks lock").drain(..).collect();
        for task in tasks {
            task.abort();
        }
        self.queues.clear().await;
        self.raft.shutdown().await;
    }

    // ---- membership -----------------------------------------------------------------------

    /// Applies a member's heartbeat (join, stay, leave) and answers its assignment.
    pub async fn heartbeat(&self, group: &str, request: Heartbeat) -> Result<Reply, CgError> {
        let lock = self.group_lock(group);
        let _decide = lock.lock().await;
        self.ensure_current().await?;
        let leave = request.leave;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = self.membership(group);
            let wanted: BTreeSet<String> = current
                .members
                .values()
                .flat_map(|m| m.topics.iter().cloned())
                .chain(request.topics.iter().cloned())
                .collect();
            let partitions = self.partition_counts(&wanted).await?;
            let new_id = uuid::Uuid::new_v4().to_string();
            let (next, reply) =
                match coordinator::heartbeat(&current, request.clone(), &new_id, &partitions) {
                    Ok(decided) => decided,
                    Err(Rejection::UnknownMember(id)) if leave => {
                        return Ok(Reply {
                            member_id: id,
                            member_epoch: 0,
                            assignment: BTreeSet::new(),
                        });
                    }
                    Err(rejection) => return Err(rejection.into()),
                };
            match self.put_membership(group, &current, next).await {
                Err(CgError::Refused {
                    code: RefusalCode::VersionConflict,
                    ..
                }) if attempts < 3 => continue,
                Err(error) => return Err(error),
                Ok(()) => {}
            }
            let mut liveness = self.liveness.lock().expect("liveness lock");
            let key = (group.to_owned(), reply.member_id.clone());
            if leave && request.instance_id.is_none() {
                liveness.members.remove(&key);
            } else {
                liveness.members.entry(key).or_default().last_heartbeat = Some(Instant::now());
            }
            if let Some(old) = request.member_id.filter(|old| *old != reply.member_id) {
                liveness.members.remove(&(group.to_owned(), old));
            }
            return Ok(reply);
        }
    }

    fn membership(&self, group: &str) -> Membership {
        self.state
            .read()
            .expect("state lock")
            .groups
            .get(group)
            .map(|g| g.membership.clone())
            .unwrap_or_default()
    }

    /// Commits `next` if it differs from `current` (guarded by `current`'s version).
    async fn put_membership(
        &self,
        group: &str,
        current: &Membership,
        mut next: Membership,
    ) -> Result<(), CgError> {
        next.version = current.version;
        if next == *current {
            return Ok(());
        }
        next.version = current.version + 1;
        tracing::info!(
            group,
            epoch = next.epoch,
            members = next.members.len(),
            state = next.state(),
            "membership changes"
        );
        self.propose(GroupCommand::PutMembership {
            group: group.to_owned(),
            expected_version: current.version,
            membership: next,
        })
        .await
    }

    async fn run_expiry(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(EXPIRY_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.leader() != Some(self.node_id) {
                self.liveness.lock().expect("liveness lock").leader_since = None;
                continue;
            }
            for (group, expired) in self.expired_members() {
                if let Err(error) = self.remove_members(&group, &expired).await {
                    tracing::debug!(group, %error, "removing expired members failed; next tick");
                }
            }
        }
    }

    /// Members silent past their session timeout or holding partitions to release past their
    /// rebalance timeout, per group.
    fn expired_members(&self) -> Vec<(String, BTreeSet<String>)> {
        let now = Instant::now();
        let state = self.state.read().expect("state lock");
        let mut liveness = self.liveness.lock().expect("liveness lock");
        // A new leader has heard from no one yet: everyone's session starts now.
        let leader_since = *liveness.leader_since.get_or_insert(now);
        let mut expired = Vec::new();
        for (name, group) in &state.groups {
            let mut gone = BTreeSet::new();
            for (id, member) in &group.membership.members {
                let seen = liveness
                    .members
                    .entry((name.clone(), id.clone()))
                    .or_default();
                let last = seen
                    .last_heartbeat
                    .unwrap_or(leader_since)
                    .max(leader_since);
                let session = Duration::from_millis(u64::from(member.session_timeout_ms));
                let revoking = !member.revoking().is_empty();
                let since = match (revoking, seen.revoking_since) {
                    (false, _) => None,
                    (true, Some(since)) => Some(since),
                    (true, None) => Some(now),
                };
                seen.revoking_since = since;
                let rebalance = Duration::from_millis(u64::from(member.rebalance_timeout_ms));
                if now.duration_since(last) > session {
                    tracing::info!(group = name, member = id, "session timed out");
                    gone.insert(id.clone());
                } else if since
                    .is_some_and(|since| now.duration_since(since.max(leader_since)) > rebalance)
                {
                    tracing::info!(
                        group = name,
                        member = id,
                        "did not release partitions within its rebalance timeout"
                    );
                    gone.insert(id.clone());
                }
            }
            if !gone.is_empty() {
                expired.push((name.clone(), gone));
            }
        }
        expired
    }

    async fn remove_members(&self, group: &str, expired: &BTreeSet<String>) -> Result<(), CgError> {
        let lock = self.group_lock(group);
        let _decide = lock.lock().await;
        let current = self.membership(group);
        let present: BTreeSet<String> = expired
            .iter()
            .filter(|id| current.members.contains_key(*id))
            .cloned()
            .collect();
        if present.is_empty() {
            return Ok(());
        }
        let topics: BTreeSet<String> = current
            .members
            .values()
            .flat_map(|m| m.topics.iter().cloned())
            .collect();
        let partitions = self.partition_counts(&topics).await?;
        let next = coordinator::remove_members(&current, &present, &partitions);
        self.put_membership(group, &current, next).await?;
        let mut liveness = self.liveness.lock().expect("liveness lock");
        for id in present {
            liveness.members.remove(&(group.to_owned(), id));
        }
        Ok(())
    }

    fn group_lock(&self, group: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("locks lock")
            .entry(group.to_owned())
            .or_default()
            .clone()
    }

    /// Partition counts of the existing topics among `topics`.
    async fn partition_counts(
        &self,
        topics: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, u32>, CgError> {
        let mut cached = self.topics.lock().await;
        let fresh = cached
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < TOPICS_TTL);
        if !fresh {
            let all = self
                .client
                .list_topics()
                .await?
                .into_iter()
                .map(|t| (t.name, t.partitions))
                .collect();
            *cached = Some((Instant::now(), all));
        }
        let all = &cached.as_ref().expect("filled above").1;
        Ok(topics
            .iter()
            .filter_map(|t| all.get(t).map(|n| (t.clone(), *n)))
            .collect())
    }

    // ---- offsets ---------------------------------------------------------------------------

    pub async fn commit(
        &self,
        group: &str,
        committer: Committer,
        offsets: Vec<(Tp, u64, String)>,
    ) -> Result<(), CgError> {
        let commit_time_ms = now_ms();
        let offsets = offsets
            .into_iter()
            .map(|(tp, offset, metadata)| {
                (
                    tp,
                    Committed {
                        offset,
                        metadata,
                        commit_time_ms,
                    },
                )
            })
            .collect();
        self.propose(GroupCommand::Commit {
            group: group.to_owned(),
            committer,
            offsets,
        })
        .await
    }

    /// Committed offsets of `group` (all, or the `partitions` named), read on the leader after
    /// confirming it still leads.
    pub async fn fetch_offsets(
        &self,
        group: &str,
        partitions: &[Tp],
    ) -> Result<Vec<(Tp, Committed)>, CgError> {
        self.ensure_current().await?;
        let state = self.state.read().expect("state lock");
        let Some(found) = state.groups.get(group) else {
            return Err(CgError::GroupNotFound {
                group: group.to_owned(),
            });
        };
        Ok(found
            .offsets
            .iter()
            .filter(|(tp, _)| partitions.is_empty() || partitions.contains(tp))
            .map(|(tp, c)| (tp.clone(), c.clone()))
            .collect())
    }

    /// Every group: name, member count, state.
    pub async fn list_groups(&self) -> Result<Vec<(String, usize, &'static str)>, CgError> {
        self.ensure_current().await?;
        let state = self.state.read().expect("state lock");
        Ok(state
            .groups
            .iter()
            .map(|(name, g)| {
                (
                    name.clone(),
                    g.membership.members.len(),
                    g.membership.state(),
                )
            })
            .collect())
    }

    pub async fn describe_group(&self, group: &str) -> Result<GroupView, CgError> {
        self.ensure_current().await?;
        let found = self
            .state
            .read()
            .expect("state lock")
            .groups
            .get(group)
            .cloned()
            .ok_or_else(|| CgError::GroupNotFound {
                group: group.to_owned(),
            })?;
        let members = {
            let liveness = self.liveness.lock().expect("liveness lock");
            found
                .membership
                .members
                .iter()
                .map(|(id, m)| MemberView {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    member_epoch: m.epoch,
                    topics: m.topics.clone(),
                    assignment: m.assignment(),
                    revoking: m.revoking(),
                    last_heartbeat: liveness
                        .members
                        .get(&(group.to_owned(), id.clone()))
                        .and_then(|s| s.last_heartbeat)
                        .map(|at| at.elapsed()),
                })
                .collect()
        };
        // Every partition with a committed offset or a subscriber, with its lag.
        let mut partitions: BTreeSet<Tp> = found.offsets.keys().cloned().collect();
        for (topic, count) in &found.membership.partitions {
            partitions.extend((0..*count).map(|p| (topic.clone(), p)));
        }
        let lags = futures::future::join_all(partitions.into_iter().map(|tp| {
            let committed = found.offsets.get(&tp).map(|c| c.offset);
            async move {
                let asked = self.client.list_offset(&tp.0, tp.1, OffsetSpec::Latest);
                let resolved = tokio::time::timeout(LAG_TIMEOUT, asked)
                    .await
                    .ok()
                    .and_then(Result::ok);
                let lag = resolved.as_ref().map(|r| {
                    r.high_watermark
                        .saturating_sub(committed.unwrap_or(r.log_start_offset))
                });
                PartitionLag {
                    high_watermark: resolved.map(|r| r.high_watermark),
                    tp,
                    committed,
                    lag,
                }
            }
        }))
        .await;
        Ok(GroupView {
            group: group.to_owned(),
            state: found.membership.state(),
            assignor: found.membership.assignor.name(),
            epoch: found.membership.epoch,
            members,
            offsets: lags,
        })
    }

    /// Moves the committed offsets of `topic`'s `partitions` (all when empty); only for a group
    /// without members. Returns the new offsets.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[u32],
        to: ResetTo,
    ) -> Result<Vec<(Tp, Committed)>, CgError> {
        let count = self.client.partition_count(topic).await?;
        if let Some(bad) = partitions.iter().find(|p| **p >= count) {
            return Err(CgError::invalid(
                "partitions",
                format!("topic {topic} has {count} partitions; {bad} is not one of them"),
            ));
        }
        let chosen: Vec<u32> = if partitions.is_empty() {
            (0..count).collect()
        } else {
            partitions.to_vec()
        };
        let committed: BTreeMap<Tp, Committed> = self
            .state
            .read()
            .expect("state lock")
            .groups
            .get(group)
            .map(|g| g.offsets.clone())
            .unwrap_or_default();
        let mut offsets = Vec::with_capacity(chosen.len());
        for partition in chosen {
            let tp = (topic.to_owned(), partition);
            let spec = match to {
                ResetTo::Timestamp(ms) => OffsetSpec::Timestamp(ms),
                ResetTo::Earliest => OffsetSpec::Earliest,
                _ => OffsetSpec::Latest,
            };
            let resolved = self.client.list_offset(topic, partition, spec).await?;
            let (start, end) = (resolved.log_start_offset, resolved.high_watermark);
            let wanted = match to {
                ResetTo::Earliest | ResetTo::Latest | ResetTo::Timestamp(_) => resolved.offset,
                ResetTo::Offset(offset) => offset,
                ResetTo::ShiftBy(by) => {
                    let base = committed.get(&tp).map_or(start, |c| c.offset);
                    base.saturating_add_signed(by)
                }
            };
            offsets.push((tp, wanted.clamp(start, end), String::new()));
        }
        self.commit(group, Committer::Outside, offsets.clone())
            .await?;
        self.fetch_offsets(
            group,
            &offsets.into_iter().map(|(tp, _, _)| tp).collect::<Vec<_>>(),
        )
        .await
    }

    pub async fn delete_group(&self, group: &str) -> Result<(), CgError> {
        self.propose(GroupCommand::Delete {
            group: group.to_owned(),
        })
        .await?;
        self.locks.lock().expect("locks lock").remove(group);
        Ok(())
    }

    // ---- raft --------------------------------------------------------------------------------

    /// Confirms this node leads and its state includes everything committed before now.
    async fn ensure_current(&self) -> Result<(), CgError> {
        Ok(self.raft.ensure_current().await?)
    }

    fn not_leader(&self) -> CgError {
        self.raft.not_leader().into()
    }

    async fn propose(&self, command: GroupCommand) -> Result<(), CgError> {
        match self.raft.propose(command).await? {
            GroupResponse::Done => Ok(()),
            GroupResponse::Refused { code, message } => Err(CgError::Refused { code, message }),
        }
    }

    /// The heartbeat interval told to members: a third of the session timeout, at most 3 s.
    pub fn heartbeat_interval_ms(session_timeout_ms: u32) -> u32 {
        (session_timeout_ms / 3).min(3_000)
    }
}
