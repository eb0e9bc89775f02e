//! The consumer manager's replicated state and the pure function that applies commands to it.
//!
//! Decisions about membership (who owns what) are made on the leader by
//! [`crate::coordinator`] and committed as whole [`Membership`] records guarded by a version
//! (compare-and-set), so two decisions taken on the same base can never both apply. Commits
//! are checked here, at apply, in log order on every node alike: that is what fences a zombie.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use mq_common::error::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::assignor::{Assignor, Tp};
use crate::queue::{QueueConfig, Settled};

/// Longest `metadata` stored with a committed offset.
pub const MAX_OFFSET_METADATA: usize = 4096;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupsState {
    pub groups: BTreeMap<String, Group>,
    pub queues: BTreeMap<String, QueueState>,
}

/// A queue subscription: its config and each partition's settled progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueState {
    pub config: QueueConfig,
    pub partitions: BTreeMap<u32, Settled>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub membership: Membership,
    pub offsets: BTreeMap<Tp, Committed>,
}

/// Who is in a group and what each member owns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    /// Raised by every committed change: the compare-and-set guard.
    pub version: u64,
    /// Raised whenever members or subscriptions change (the group's generation).
    pub epoch: u32,
    pub assignor: Assignor,
    /// The partition counts the targets were computed from.
    pub partitions: BTreeMap<String, u32>,
    pub members: BTreeMap<String, Member>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub instance_id: Option<String>,
    pub topics: BTreeSet<String>,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    /// Raised when a heartbeat answers the member a changed assignment; commits must carry
    /// it. It changes only in answers to the member itself, so the member always knows it
    /// (only a commit crossing a heartbeat answer can carry a stale one).
    pub epoch: u32,
    /// The assignment of the last answer to this member.
    pub told: BTreeSet<Tp>,
    /// What the member may hold: its assignment plus partitions it was asked to release and has
    /// not reported released yet. A partition is in at most one member's `owned`.
    pub owned: BTreeSet<Tp>,
    /// What the assignor wants it to own.
    pub target: BTreeSet<Tp>,
    /// A static member that left; it keeps its partitions until its session times out.
    pub away: bool,
}

impl Member {
    /// The partitions the member owns now (told to read).
    pub fn assignment(&self) -> BTreeSet<Tp> {
        self.owned.intersection(&self.target).cloned().collect()
    }

    /// Partitions it was asked to release and still holds.
    pub fn revoking(&self) -> BTreeSet<Tp> {
        self.owned.difference(&self.target).cloned().collect()
    }
}

impl Membership {
    /// "empty", "stable" (every member holds exactly its target) or "reconciling".
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "empty"
        } else if self.members.values().all(|m| m.owned == m.target) {
            "stable"
        } else {
            "reconciling"
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: u64,
    pub metadata: String,
    pub commit_time_ms: i64,
}

/// Who commits: a member (fenced by id, epoch and ownership) or a tool outside the membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Committer {
    Member { id: String, epoch: u32 },
    Outside,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum GroupCommand {
    /// Replaces a group's membership if its version is still `expected_version` (0 for a group
    /// that does not exist yet). `membership.version` must be `expected_version + 1`.
    PutMembership {
        group: String,
        expected_version: u64,
        membership: Membership,
    },
    Commit {
        group: String,
        committer: Committer,
        offsets: Vec<(Tp, Committed)>,
    },
    /// Removes a group and its offsets; only when it has no members.
    Delete {
        group: String,
    },
    /// Creates a queue subscription starting at `starts` (per partition).
    CreateQueue {
        name: String,
        config: QueueConfig,
        starts: BTreeMap<u32, u64>,
    },
    DeleteQueue {
        name: String,
    },
    /// Settles offsets (acked or dead-lettered) and moves floors over deleted records.
    Settle {
        queue: String,
        offsets: BTreeMap<u32, Vec<u64>>,
        skip_to: BTreeMap<u32, u64>,
    },
    /// Records how often unsettled messages were delivered.
    CountDeliveries {
        queue: String,
        counts: BTreeMap<u32, Vec<(u64, u32)>>,
    },
}

impl fmt::Display for GroupCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PutMembership {
                group, membership, ..
            } => write!(
                f,
                "put membership of {group} v{} epoch {} ({} members)",
                membership.version,
                membership.epoch,
                membership.members.len()
            ),
            Self::Commit { group, offsets, .. } => {
                write!(f, "commit {} offsets of {group}", offsets.len())
            }
            Self::Delete { group } => write!(f, "delete group {group}"),
            Self::CreateQueue { name, config, .. } => {
                write!(f, "create queue {name} on {}", config.topic)
            }
            Self::DeleteQueue { name } => write!(f, "delete queue {name}"),
            Self::Settle { queue, offsets, .. } => write!(
                f,
                "settle {} offsets of queue {queue}",
                offsets.values().map(Vec::len).sum::<usize>()
            ),
            Self::CountDeliveries { queue, counts } => write!(
                f,
                "count deliveries of {} offsets of queue {queue}",
                counts.values().map(Vec::len).sum::<usize>()
            ),
        }
    }
}

/// The outcome of a command, returned to the proposer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum GroupResponse {
    Done,
    /// The command was refused; nothing changed.
    Refused {
        code: RefusalCode,
        message: String,
    },
}

/// The reasons a command is refused at apply (a subset of [`ErrorCode`], serializable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalCode {
    /// The membership changed since the proposer read it: decide again.
    VersionConflict,
    GroupNotFound,
    UnknownMember,
    StaleMemberEpoch,
    FencedMember,
    GroupNotEmpty,
    QueueNotFound,
    QueueAlreadyExists,
}

impl RefusalCode {
    pub fn error_code(self) -> ErrorCode {
        match self {
            // The proposer retries on a conflict; if it ever leaks it is a transient state.
            Self::VersionConflict => ErrorCode::Unavailable,
            Self::GroupNotFound => ErrorCode::GroupNotFound,
            Self::UnknownMember => ErrorCode::UnknownMember,
            Self::StaleMemberEpoch => ErrorCode::StaleMemberEpoch,
            Self::FencedMember => ErrorCode::FencedMember,
            Self::GroupNotEmpty => ErrorCode::GroupNotEmpty,
            Self::QueueNotFound => ErrorCode::QueueNotFound,
            Self::QueueAlreadyExists => ErrorCode::QueueAlreadyExists,
        }
    }
}

/// What an applied command changed, for persistence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Membership(String),
    Offset(String, Tp),
    GroupRemoved(String),
    Queue(String),
    QueuePartition(String, u32),
    QueueRemoved(String),
}

fn refuse(code: RefusalCode, message: impl Into<String>) -> (GroupResponse, Vec<Change>) {
    (
        GroupResponse::Refused {
            code,
            message: message.into(),
        },
        Vec::new(),
    )
}

impl GroupsState {
    /// Applies `command`: the new state and what changed, or a refusal that changed nothing.
    pub fn apply(&mut self, command: GroupCommand) -> (GroupResponse, Vec<Change>) {
        match command {
            GroupCommand::PutMembership {
                group,
                expected_version,
                membership,
            } => self.put_membership(group, expected_version, membership),
            GroupCommand::Commit {
                group,
                committer,
                offsets,
            } => self.commit(group, &committer, offsets),
            GroupCommand::Delete { group } => self.delete_group(group),
            GroupCommand::CreateQueue {
                name,
                config,
                starts,
            } => self.create_queue(name, config, starts),
            GroupCommand::DeleteQueue { name } => match self.queues.remove(&name) {
                None => refuse(
                    RefusalCode::QueueNotFound,
                    format!("queue {name} does not exist"),
                ),
                Some(_) => (GroupResponse::Done, vec![Change::QueueRemoved(name)]),
            },
            GroupCommand::Settle {
                queue,
                offsets,
                skip_to,
            } => self.update_partitions(&queue, |partitions, changed| {
                for (partition, offsets) in offsets {
                    if let Some(settled) = partitions.get_mut(&partition) {
                        settled.settle(offsets);
                        changed.push(partition);
                    }
                }
                for (partition, offset) in skip_to {
                    if let Some(settled) = partitions.get_mut(&partition) {
                        settled.skip_to(offset);
                        changed.push(partition);
                    }
                }
            }),
            GroupCommand::CountDeliveries { queue, counts } => {
                self.update_partitions(&queue, |partitions, changed| {
                    for (partition, counts) in counts {
                        if let Some(settled) = partitions.get_mut(&partition) {
                            settled.count(counts);
                            changed.push(partition);
                        }
                    }
                })
            }
        }
    }

    /// A membership change, compare-and-set on its version.
    fn put_membership(
        &mut self,
        group: String,
        expected_version: u64,
        membership: Membership,
    ) -> (GroupResponse, Vec<Change>) {
        let current = self.groups.get(&group).map_or(0, |g| g.membership.version);
        if current != expected_version || membership.version != expected_version + 1 {
            return refuse(
                RefusalCode::VersionConflict,
                format!(
                    "group {group}: membership is at version {current}, not {expected_version}"
                ),
            );
        }
        self.groups.entry(group.clone()).or_default().membership = membership;
        (GroupResponse::Done, vec![Change::Membership(group)])
    }

    /// Commits offsets, fenced: a member must exist at the commit's epoch and own every
    /// partition it commits; a commit from outside the group only while it has no members.
    fn commit(
        &mut self,
        name: String,
        committer: &Committer,
        offsets: Vec<(Tp, Committed)>,
    ) -> (GroupResponse, Vec<Change>) {
        if let Some(refusal) = self.commit_refusal(&name, committer, &offsets) {
            return refusal;
        }
        let group = self.groups.entry(name.clone()).or_default();
        let mut changes = Vec::with_capacity(offsets.len());
        for (tp, committed) in offsets {
            changes.push(Change::Offset(name.clone(), tp.clone()));
            group.offsets.insert(tp, committed);
        }
        (GroupResponse::Done, changes)
    }

    fn commit_refusal(
        &self,
        name: &str,
        committer: &Committer,
        offsets: &[(Tp, Committed)],
    ) -> Option<(GroupResponse, Vec<Change>)> {
        let group = self.groups.get(name);
        match (committer, group) {
            (Committer::Member { id, .. }, None) => Some(refuse(
                RefusalCode::UnknownMember,
                format!("member {id} is not a member of group {name}"),
            )),
            (Committer::Member { id, epoch }, Some(group)) => {
                let Some(member) = group.membership.members.get(id) else {
                    return Some(refuse(
                        RefusalCode::UnknownMember,
                        format!("member {id} is not a member of group {name}"),
                    ));
                };
                if member.epoch != *epoch {
                    return Some(refuse(
                        RefusalCode::StaleMemberEpoch,
                        format!(
                            "member {id} of group {name} is at epoch {}, the commit carries {epoch}",
                            member.epoch
                        ),
                    ));
                }
                let (topic, partition) =
                    &offsets.iter().find(|(tp, _)| !member.owned.contains(tp))?.0;
                Some(refuse(
                    RefusalCode::FencedMember,
                    format!("member {id} of group {name} does not own {topic}/{partition}"),
                ))
            }
            (Committer::Outside, Some(group)) if !group.membership.members.is_empty() => {
                Some(refuse(
                    RefusalCode::GroupNotEmpty,
                    format!(
                        "group {name} has {} members: only they may commit",
                        group.membership.members.len()
                    ),
                ))
            }
            (Committer::Outside, _) => None,
        }
    }

    /// Deletes a group without members.
    fn delete_group(&mut self, name: String) -> (GroupResponse, Vec<Change>) {
        match self.groups.get(&name) {
            None => refuse(
                RefusalCode::GroupNotFound,
                format!("group {name} does not exist"),
            ),
            Some(group) if !group.membership.members.is_empty() => refuse(
                RefusalCode::GroupNotEmpty,
                format!(
                    "group {name} has {} members; stop them first",
                    group.membership.members.len()
                ),
            ),
            Some(_) => {
                self.groups.remove(&name);
                (GroupResponse::Done, vec![Change::GroupRemoved(name)])
            }
        }
    }

    /// Creates a queue whose partitions start at `starts`.
    fn create_queue(
        &mut self,
        name: String,
        config: QueueConfig,
        starts: BTreeMap<u32, u64>,
    ) -> (GroupResponse, Vec<Change>) {
        if self.queues.contains_key(&name) {
            return refuse(
                RefusalCode::QueueAlreadyExists,
                format!("queue {name} exists"),
            );
        }
        let partitions = starts
            .into_iter()
            .map(|(partition, start)| (partition, Settled::starting_at(start)))
            .collect::<BTreeMap<_, _>>();
        let mut changes = vec![Change::Queue(name.clone())];
        changes.extend(
            partitions
                .keys()
                .map(|p| Change::QueuePartition(name.clone(), *p)),
        );
        self.queues.insert(name, QueueState { config, partitions });
        (GroupResponse::Done, changes)
    }
}

impl GroupsState {
    /// Runs `update` on the partitions of queue `name` (it lists the partitions it changed).
    fn update_partitions(
        &mut self,
        name: &str,
        update: impl FnOnce(&mut BTreeMap<u32, Settled>, &mut Vec<u32>),
    ) -> (GroupResponse, Vec<Change>) {
        let Some(queue) = self.queues.get_mut(name) else {
            return refuse(
                RefusalCode::QueueNotFound,
                format!("queue {name} does not exist"),
            );
        };
        let mut changed = Vec::new();
        update(&mut queue.partitions, &mut changed);
        changed.sort_unstable();
        changed.dedup();
        let changes = changed
            .into_iter()
            .map(|partition| Change::QueuePartition(name.to_owned(), partition))
            .collect();
        (GroupResponse::Done, changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: u32) -> Tp {
        (topic.to_owned(), partition)
    }

    fn committed(offset: u64) -> Committed {
        Committed {
            offset,
            metadata: String::new(),
            commit_time_ms: 1,
        }
    }

    fn with_member(owned: &[Tp]) -> GroupsState {
        let mut state = GroupsState::default();
        let mut membership = Membership {
            version: 1,
            ..Membership::default()
        };
        membership.members.insert(
            "m1".into(),
            Member {
                epoch: 3,
                owned: owned.iter().cloned().collect(),
                target: owned.iter().cloned().collect(),
                ..Member::default()
            },
        );
        let (reply, _) = state.apply(GroupCommand::PutMembership {
            group: "g".into(),
            expected_version: 0,
            membership,
        });
        assert_eq!(reply, GroupResponse::Done);
        state
    }

    fn refusal(reply: &GroupResponse) -> Option<RefusalCode> {
        match reply {
            GroupResponse::Refused { code, .. } => Some(*code),
            GroupResponse::Done => None,
        }
    }

    #[test]
    fn commits_are_fenced_by_member_epoch_and_ownership() {
        let mut state = with_member(&[tp("t", 0)]);
        let before = state.clone();
        let commit = |id: &str, epoch: u32, partition: u32| GroupCommand::Commit {
            group: "g".into(),
            committer: Committer::Member {
                id: id.into(),
                epoch,
            },
            offsets: vec![(tp("t", partition), committed(10))],
        };
        for (command, expected) in [
            (commit("zombie", 3, 0), RefusalCode::UnknownMember),
            (commit("m1", 2, 0), RefusalCode::StaleMemberEpoch),
            (commit("m1", 3, 1), RefusalCode::FencedMember),
            (
                GroupCommand::Commit {
                    group: "g".into(),
                    committer: Committer::Outside,
                    offsets: vec![(tp("t", 0), committed(10))],
                },
                RefusalCode::GroupNotEmpty,
            ),
            (
                GroupCommand::Delete { group: "g".into() },
                RefusalCode::GroupNotEmpty,
            ),
            (
                GroupCommand::Delete {
                    group: "nope".into(),
                },
                RefusalCode::GroupNotFound,
            ),
        ] {
            let (reply, changes) = state.apply(command.clone());
            assert_eq!(refusal(&reply), Some(expected), "{command}");
            assert!(changes.is_empty());
            assert_eq!(
                state, before,
                "a refused command changed the state: {command}"
            );
        }
        let (reply, changes) = state.apply(commit("m1", 3, 0));
        assert_eq!(reply, GroupResponse::Done);
        assert_eq!(changes, vec![Change::Offset("g".into(), tp("t", 0))]);
        assert_eq!(state.groups["g"].offsets[&tp("t", 0)].offset, 10);
    }

    #[test]
    fn membership_is_compare_and_set() {
        let mut state = with_member(&[]);
        let stale = GroupCommand::PutMembership {
            group: "g".into(),
            expected_version: 0,
            membership: Membership {
                version: 1,
                ..Membership::default()
            },
        };
        assert_eq!(
            refusal(&state.apply(stale).0),
            Some(RefusalCode::VersionConflict)
        );
        let next = GroupCommand::PutMembership {
            group: "g".into(),
            expected_version: 1,
            membership: Membership {
                version: 2,
                ..Membership::default()
            },
        };
        assert_eq!(state.apply(next).0, GroupResponse::Done);
        assert!(state.groups["g"].membership.members.is_empty());
        // Empty now: tools may commit and the group may be deleted.
        let outside = GroupCommand::Commit {
            group: "g".into(),
            committer: Committer::Outside,
            offsets: vec![(tp("t", 0), committed(5))],
        };
        assert_eq!(state.apply(outside).0, GroupResponse::Done);
        let (reply, changes) = state.apply(GroupCommand::Delete { group: "g".into() });
        assert_eq!(reply, GroupResponse::Done);
        assert_eq!(changes, vec![Change::GroupRemoved("g".into())]);
        assert!(state.groups.is_empty());
    }
}
