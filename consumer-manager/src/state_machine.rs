//! How the consumer manager's state lives in its Raft group: [`GroupsState`] as the group's
//! replicated state; each group's membership, each committed offset, each queue and each
//! queue partition under its own key in `kv` (`kind ‖ ids`), so a commit writes only the
//! offsets it changes. Everything else (the apply loop, snapshots, recovery) is `mq_raft`'s
//! [`mq_raft::KvStateMachine`].

use std::collections::BTreeMap;
use std::io;

use mq_raft::{Rows, codec};

use crate::assignor::Tp;
use crate::queue::{QueueConfig, Settled};
use crate::state::{
    Change, Committed, GroupCommand, GroupResponse, GroupsState, Membership, QueueState,
};

/// Key kinds in `kv`.
mod kind {
    pub const MEMBERSHIP: u8 = b'm';
    pub const OFFSET: u8 = b'o';
    pub const QUEUE: u8 = b'q';
    pub const QUEUE_PARTITION: u8 = b'p';
}

fn membership_key(group: &str) -> Vec<u8> {
    let mut key = vec![kind::MEMBERSHIP];
    key.extend_from_slice(group.as_bytes());
    key
}

/// `o ‖ group ‖ 0`: the prefix of a group's offsets (names never contain a 0 byte).
fn offsets_prefix(group: &str) -> Vec<u8> {
    let mut key = vec![kind::OFFSET];
    key.extend_from_slice(group.as_bytes());
    key.push(0);
    key
}

fn offset_key(group: &str, (topic, partition): &Tp) -> Vec<u8> {
    let mut key = offsets_prefix(group);
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

fn queue_key(queue: &str) -> Vec<u8> {
    let mut key = vec![kind::QUEUE];
    key.extend_from_slice(queue.as_bytes());
    key
}

/// `p ‖ queue ‖ 0`: the prefix of a queue's partitions.
fn queue_partitions_prefix(queue: &str) -> Vec<u8> {
    let mut key = vec![kind::QUEUE_PARTITION];
    key.extend_from_slice(queue.as_bytes());
    key.push(0);
    key
}

fn queue_partition_key(queue: &str, partition: u32) -> Vec<u8> {
    let mut key = queue_partitions_prefix(queue);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

impl Default for GroupResponse {
    /// The reply to entries without a command (blank, membership).
    fn default() -> Self {
        Self::Done
    }
}

impl mq_raft::ReplicatedState for GroupsState {
    type Command = GroupCommand;
    type Reply = GroupResponse;
    type Change = Change;

    fn apply(&mut self, _index: u64, command: GroupCommand) -> (GroupResponse, Vec<Change>) {
        GroupsState::apply(self, command)
    }

    fn persist(&self, change: &Change, rows: &mut Rows<'_>) -> io::Result<()> {
        match change {
            Change::Membership(group) => {
                let membership = &self.groups[group].membership;
                rows.put(&membership_key(group), &(group, membership))?;
            }
            Change::Offset(group, tp) => {
                let committed = &self.groups[group].offsets[tp];
                rows.put(&offset_key(group, tp), &(group, tp, committed))?;
            }
            Change::Queue(queue) => {
                let config = &self.queues[queue].config;
                rows.put(&queue_key(queue), &(queue, config))?;
            }
            Change::QueuePartition(queue, partition) => {
                let settled = &self.queues[queue].partitions[partition];
                rows.put(
                    &queue_partition_key(queue, *partition),
                    &(queue, partition, settled),
                )?;
            }
            Change::QueueRemoved(queue) => {
                rows.delete(&queue_key(queue));
                rows.delete_prefix(&queue_partitions_prefix(queue));
            }
            Change::GroupRemoved(group) => {
                rows.delete(&membership_key(group));
                rows.delete_prefix(&offsets_prefix(group));
            }
        }
        Ok(())
    }

    fn persist_all(&self, rows: &mut Rows<'_>) -> io::Result<()> {
        for (name, group) in &self.groups {
            self.persist(&Change::Membership(name.clone()), rows)?;
            for tp in group.offsets.keys() {
                self.persist(&Change::Offset(name.clone(), tp.clone()), rows)?;
            }
        }
        for (name, queue) in &self.queues {
            self.persist(&Change::Queue(name.clone()), rows)?;
            for partition in queue.partitions.keys() {
                self.persist(&Change::QueuePartition(name.clone(), *partition), rows)?;
            }
        }
        Ok(())
    }

    fn load_row(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        match key.first() {
            Some(&kind::MEMBERSHIP) => {
                let (group, membership): (String, Membership) = codec::decode(value)?;
                self.groups.entry(group).or_default().membership = membership;
            }
            Some(&kind::OFFSET) => {
                let (group, tp, committed): (String, Tp, Committed) = codec::decode(value)?;
                self.groups
                    .entry(group)
                    .or_default()
                    .offsets
                    .insert(tp, committed);
            }
            Some(&kind::QUEUE) => {
                let (queue, config): (String, QueueConfig) = codec::decode(value)?;
                queue_entry(self, queue).config = config;
            }
            Some(&kind::QUEUE_PARTITION) => {
                let (queue, partition, settled): (String, u32, Settled) = codec::decode(value)?;
                queue_entry(self, queue)
                    .partitions
                    .insert(partition, settled);
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unknown key in the consumer manager's state",
                ));
            }
        }
        Ok(())
    }
}

/// A queue being loaded (its config key sorts after its partition keys: 'q' > 'p').
fn queue_entry(state: &mut GroupsState, queue: String) -> &mut QueueState {
    state.queues.entry(queue).or_insert_with(|| QueueState {
        config: QueueConfig {
            topic: String::new(),
            ack_deadline_ms: 0,
            max_deliveries: 0,
            dead_letter_topic: String::new(),
            key_ordered: false,
        },
        partitions: BTreeMap::new(),
    })
}
