//! Consumer-group membership: a background task that heartbeats the consumer manager,
//! resolves where newly assigned partitions start (the committed offset, or the reset policy
//! when none), publishes the assignment to the [`crate::Consumer`], commits on revocation and on
//! a timer, and reports partitions released only after the consumer stopped reading them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mq_client::{
    Client, ClientError, ErrorCode, Heartbeat, OffsetCommit, OffsetSpec, TopicPartition,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

/// A partition of a topic.
pub(crate) type Tp = (String, u32);

/// Where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The first offset still stored (no record is skipped).
    #[default]
    Earliest,
    /// The high watermark (only records committed from now on).
    Latest,
}

/// Settings of a group subscription. [`GroupConfig::new`] gives the defaults listed per field.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group_id: String,
    pub topics: Vec<String>,
    /// Static membership: a stable id of this instance (e.g. the pod name). A restart with the
    /// same id within the session timeout gets the same partitions back, without a rebalance.
    /// Default none.
    pub instance_id: Option<String>,
    /// Removed from the group after this long without a heartbeat. Default 10 s.
    pub session_timeout: Duration,
    /// How long a partition being moved away may take to be released. Default 60 s.
    pub rebalance_timeout: Duration,
    /// Commit the positions of processed records this often (a record counts as processed once
    /// the stream was polled again after yielding it), on revocation and on close: at-least-once.
    /// `None`: commit yourself with [`crate::Consumer::commit`]. Default 5 s.
    pub auto_commit: Option<Duration>,
    pub offset_reset: OffsetReset,
    /// "uniform" (default) or "range".
    pub assignor: String,
}

impl GroupConfig {
    pub fn new(
        group_id: impl Into<String>,
        topics: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            group_id: group_id.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            instance_id: None,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(60),
            auto_commit: Some(Duration::from_secs(5)),
            offset_reset: OffsetReset::Earliest,
            assignor: String::new(),
        }
    }
}

/// The partitions to read and where each starts (for partitions newly given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Assignment {
    pub partitions: BTreeMap<Tp, u64>,
}

#[derive(Debug, Default)]
struct Member {
    member_id: String,
    epoch: u32,
    /// Partitions this consumer may be reading: given ones, until the consumer confirmed it
    /// stopped reading them.
    held: BTreeSet<Tp>,
    /// Positions after the records the application processed.
    processed: HashMap<Tp, u64>,
}

/// The consumer's handle on its group membership.
pub(crate) struct Group {
    config: GroupConfig,
    client: Client,
    member: Arc<Mutex<Member>>,
    revoked: mpsc::UnboundedSender<Vec<(Tp, u64)>>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("group_id", &self.config.group_id)
            .finish_non_exhaustive()
    }
}

impl Group {
    /// Joins the group (the first heartbeat is answered before this returns) and starts the
    /// membership task; the receiver yields each new assignment.
    pub(crate) async fn join(
        client: Client,
        config: GroupConfig,
    ) -> Result<(Self, watch::Receiver<Assignment>), ClientError> {
        if config.topics.is_empty() {
            return Err(ClientError::InvalidArgument(
                "topics: subscribe to at least one topic".into(),
            ));
        }
        let member = Arc::new(Mutex::new(Member::default()));
        let (publish, assignments) = watch::channel(Assignment::default());
        let (revoked, revocations) = mpsc::unbounded_channel();
        let wake = Arc::new(Notify::new());
        let mut runner = Runner {
            client: client.clone(),
            config: config.clone(),
            member: member.clone(),
            publish,
            revocations,
            wake: wake.clone(),
            interval: Duration::from_secs(1),
        };
        runner.beat().await?;
        let task = tokio::spawn(runner.run());
        Ok((
            Self {
                config,
                client,
                member,
                revoked,
                wake,
                task,
            },
            assignments,
        ))
    }

    /// The consumer stopped reading these partitions (at these positions).
    pub(crate) fn released(&self, revoked: Vec<(Tp, u64)>) {
        if !revoked.is_empty() {
            let _ = self.revoked.send(revoked);
            self.wake.notify_one();
        }
    }

    /// Records that the application processed everything before `offset` of `tp`.
    pub(crate) fn processed(&self, tp: Tp, offset: u64) {
        self.member
            .lock()
            .expect("member lock")
            .processed
            .insert(tp, offset);
    }

    /// Where a partition whose position fell out of the stored range starts again.
    pub(crate) fn reset_spec(&self) -> OffsetSpec {
        reset_spec(self.config.offset_reset)
    }

    pub(crate) fn auto_commit(&self) -> bool {
        self.config.auto_commit.is_some()
    }

    /// Commits `positions` as this member, with its current epoch.
    pub(crate) async fn commit(&self, positions: Vec<(Tp, u64)>) -> Result<(), ClientError> {
        commit(&self.client, &self.config, &self.member, positions, 5).await
    }

    /// Stops the membership task and leaves the group (a static member keeps its partitions
    /// until its session times out).
    pub(crate) async fn leave(self) -> Result<(), ClientError> {
        self.task.abort();
        let member_id = self.member.lock().expect("member lock").member_id.clone();
        self.client
            .heartbeat(Heartbeat {
                group_id: self.config.group_id.clone(),
                member_id,
                instance_id: self.config.instance_id.clone(),
                leave: true,
                ..Heartbeat::default()
            })
            .await?;
        Ok(())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn commit(
    client: &Client,
    config: &GroupConfig,
    member: &Mutex<Member>,
    positions: Vec<(Tp, u64)>,
    max_attempts: u64,
) -> Result<(), ClientError> {
    if positions.is_empty() {
        return Ok(());
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (member_id, member_epoch) = {
            let member = member.lock().expect("member lock");
            (member.member_id.clone(), member.epoch)
        };
        let commit = OffsetCommit {
            group_id: config.group_id.clone(),
            member_id,
            member_epoch,
            offsets: positions
                .iter()
                .map(|((topic, partition), offset)| {
                    (TopicPartition::new(topic.clone(), *partition), *offset)
                })
                .collect(),
        };
        match client.commit_offsets(commit).await {
            // An assignment change crossed the commit: the next heartbeat brings the epoch.
            Err(error)
                if error.code() == ErrorCode::StaleMemberEpoch && attempts < max_attempts =>
            {
                tokio::time::sleep(Duration::from_millis(100 * attempts)).await;
            }
            other => return other,
        }
    }
}

struct Runner {
    client: Client,
    config: GroupConfig,
    member: Arc<Mutex<Member>>,
    publish: watch::Sender<Assignment>,
    revocations: mpsc::UnboundedReceiver<Vec<(Tp, u64)>>,
    wake: Arc<Notify>,
    interval: Duration,
}

impl Runner {
    async fn run(mut self) {
        let mut auto_commit = self.config.auto_commit.map(|every| {
            let mut timer = tokio::time::interval(every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer
        });
        let mut next_beat = tokio::time::Instant::now() + self.interval;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next_beat) => {}
                () = self.wake.notified() => {}
                _ = async { auto_commit.as_mut().expect("enabled").tick().await }, if auto_commit.is_some() => {
                    self.commit_processed().await;
                    continue;
                }
            }
            while let Ok(revoked) = self.revocations.try_recv() {
                self.release(revoked).await;
            }
            if let Err(error) = self.beat().await {
                tracing::debug!(group = %self.config.group_id, %error, "heartbeat failed");
            }
            next_beat = tokio::time::Instant::now() + self.interval;
        }
    }

    /// Commits as this member; on a stale epoch, heartbeats (the answer carries the current
    /// epoch; the partitions are still reported held) and tries again.
    async fn commit(&mut self, positions: Vec<(Tp, u64)>) -> Result<(), ClientError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match commit(
                &self.client,
                &self.config,
                &self.member,
                positions.clone(),
                1,
            )
            .await
            {
                Err(error) if error.code() == ErrorCode::StaleMemberEpoch && attempts < 3 => {
                    self.beat().await?;
                }
                other => return other,
            }
        }
    }

    /// Commits the revoked partitions (auto-commit) and stops reporting them held.
    async fn release(&mut self, revoked: Vec<(Tp, u64)>) {
        if self.config.auto_commit.is_some()
            && let Err(error) = self.commit(revoked.clone()).await
        {
            tracing::warn!(group = %self.config.group_id, %error, "commit on revocation failed");
        }
        let mut member = self.member.lock().expect("member lock");
        for (tp, _) in revoked {
            member.held.remove(&tp);
            member.processed.remove(&tp);
        }
    }

    async fn commit_processed(&mut self) {
        let positions: Vec<(Tp, u64)> = {
            let member = self.member.lock().expect("member lock");
            let assigned = &self.publish.borrow().partitions;
            member
                .processed
                .iter()
                .filter(|(tp, _)| assigned.contains_key(*tp))
                .map(|(tp, offset)| (tp.clone(), *offset))
                .collect()
        };
        if let Err(error) = self.commit(positions).await {
            tracing::debug!(group = %self.config.group_id, %error, "auto-commit failed");
        }
    }

    /// One heartbeat; publishes the assignment it answers.
    async fn beat(&mut self) -> Result<(), ClientError> {
        let (member_id, member_epoch, owned) = {
            let member = self.member.lock().expect("member lock");
            (member.member_id.clone(), member.epoch, member.held.clone())
        };
        let heartbeat = Heartbeat {
            group_id: self.config.group_id.clone(),
            member_id,
            member_epoch,
            instance_id: self.config.instance_id.clone(),
            topics: self.config.topics.clone(),
            owned: owned
                .iter()
                .map(|(topic, partition)| TopicPartition::new(topic.clone(), *partition))
                .collect(),
            session_timeout: self.config.session_timeout,
            rebalance_timeout: self.config.rebalance_timeout,
            leave: false,
            assignor: self.config.assignor.clone(),
        };
        let response = match self.client.heartbeat(heartbeat).await {
            Ok(response) => response,
            Err(error) if error.code() == ErrorCode::UnknownMember => {
                // Removed from the group: whatever it held may be someone else's now. Stop
                // reading everything and join again as a new member.
                tracing::warn!(group = %self.config.group_id, %error, "fenced; joining again");
                self.publish.send_replace(Assignment::default());
                *self.member.lock().expect("member lock") = Member::default();
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        self.interval = response.heartbeat_interval.max(Duration::from_millis(100));
        let given: BTreeSet<Tp> = response
            .assignment
            .into_iter()
            .map(|r| (r.topic, r.partition))
            .collect();
        let current = self.publish.borrow().partitions.clone();
        let added: Vec<Tp> = given
            .iter()
            .filter(|tp| !current.contains_key(*tp))
            .cloned()
            .collect();
        let starts = if added.is_empty() {
            BTreeMap::new()
        } else {
            self.start_offsets(&added).await?
        };
        {
            let mut member = self.member.lock().expect("member lock");
            member.member_id = response.member_id;
            member.epoch = response.member_epoch;
            member.held.extend(added.iter().cloned());
        }
        let next = Assignment {
            partitions: given
                .into_iter()
                .map(|tp| {
                    let start = current.get(&tp).or_else(|| starts.get(&tp)).copied();
                    (tp, start.unwrap_or_default())
                })
                .collect(),
        };
        if next.partitions != current {
            tracing::info!(group = %self.config.group_id, partitions = next.partitions.len(), "assignment");
            self.publish.send_replace(next);
        }
        Ok(())
    }

    /// The committed offset of each partition, or where the reset policy points.
    async fn start_offsets(&self, partitions: &[Tp]) -> Result<BTreeMap<Tp, u64>, ClientError> {
        let refs: Vec<TopicPartition> = partitions
            .iter()
            .map(|(topic, partition)| TopicPartition::new(topic.clone(), *partition))
            .collect();
        let committed = match self
            .client
            .fetch_offsets(&self.config.group_id, &refs)
            .await
        {
            Ok(offsets) => offsets,
            Err(error) if error.code() == ErrorCode::GroupNotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        let mut starts: BTreeMap<Tp, u64> = committed
            .into_iter()
            .map(|c| ((c.topic, c.partition), c.offset))
            .collect();
        for (topic, partition) in partitions {
            if starts.contains_key(&(topic.clone(), *partition)) {
                continue;
            }
            let spec = reset_spec(self.config.offset_reset);
            let resolved = self.client.list_offset(topic, *partition, spec).await?;
            starts.insert((topic.clone(), *partition), resolved.offset);
        }
        Ok(starts)
    }
}

fn reset_spec(reset: OffsetReset) -> OffsetSpec {
    match reset {
        OffsetReset::Earliest => OffsetSpec::Earliest,
        OffsetReset::Latest => OffsetSpec::Latest,
    }
}
