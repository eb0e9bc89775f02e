//! How the cluster manager's state lives in its Raft group: [`ClusterState`] as the group's
//! replicated state, each entity under its own key in `kv` (`kind ‖ id`). Everything else (the
//! apply loop, snapshots, recovery) is `mq_raft`'s [`mq_raft::KvStateMachine`].

use std::io;

use mq_common::ids::{BrokerId, TopicName};
use mq_raft::{Rows, codec};

use crate::state::{BrokerRecord, Change, ClusterState, MetaCommand, MetaResponse, TopicRecord};

/// Key kinds in `kv`.
mod kind {
    pub const BROKER: u8 = b'b';
    pub const TOPIC: u8 = b't';
    pub const NEXT_GROUP: u8 = b'n';
}

impl Default for MetaResponse {
    /// The reply to entries without a command (blank, membership).
    fn default() -> Self {
        Self::Done
    }
}

impl mq_raft::ReplicatedState for ClusterState {
    type Command = MetaCommand;
    type Reply = MetaResponse;
    type Change = Change;

    // Topic and broker changes are rare and worth an operator's eye.
    const LOG_COMMANDS: bool = true;

    fn apply(&mut self, index: u64, command: MetaCommand) -> (MetaResponse, Vec<Change>) {
        ClusterState::apply(self, index, command)
    }

    fn persist(&self, change: &Change, rows: &mut Rows<'_>) -> io::Result<()> {
        match change {
            Change::Broker(id) => {
                let broker = self.brokers.get(id).expect("changed broker exists");
                rows.put(&broker_key(*id), broker)
            }
            Change::Topic(name) => {
                let topic = self.topics.get(name).expect("changed topic exists");
                rows.put(&topic_key(name), topic)
            }
            Change::TopicRemoved(name) => {
                rows.delete(&topic_key(name));
                Ok(())
            }
            Change::NextGroup => rows.put(&[kind::NEXT_GROUP], &self.next_group),
        }
    }

    fn persist_all(&self, rows: &mut Rows<'_>) -> io::Result<()> {
        for id in self.brokers.keys() {
            self.persist(&Change::Broker(*id), rows)?;
        }
        for name in self.topics.keys() {
            self.persist(&Change::Topic(name.clone()), rows)?;
        }
        self.persist(&Change::NextGroup, rows)
    }

    fn load_row(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        match key.first() {
            Some(&kind::BROKER) => {
                let broker: BrokerRecord = codec::decode(value)?;
                self.brokers.insert(broker.id, broker);
            }
            Some(&kind::TOPIC) => {
                let topic: TopicRecord = codec::decode(value)?;
                self.topics.insert(topic.name.clone(), topic);
            }
            Some(&kind::NEXT_GROUP) => self.next_group = codec::decode(value)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unknown key in the cluster manager's state",
                ));
            }
        }
        Ok(())
    }
}

fn broker_key(id: BrokerId) -> Vec<u8> {
    let mut key = vec![kind::BROKER];
    key.extend_from_slice(&id.0.to_be_bytes());
    key
}

fn topic_key(name: &TopicName) -> Vec<u8> {
    let mut key = vec![kind::TOPIC];
    key.extend_from_slice(name.as_str().as_bytes());
    key
}
