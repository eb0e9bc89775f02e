//! Consumer-group calls (`mq.v1.ConsumerGroups`): membership heartbeats and offset commits for
//! `mq-consumer`, and the group administration `mqctl` uses. Any broker forwards them to the
//! consumer manager; not-leader answers are followed like other control calls. Requests and
//! replies are the protocol's own messages ([`crate::proto`]).

use mq_proto::v1 as pb;
use mq_proto::v1::consumer_groups_client::ConsumerGroupsClient;

use crate::routing::{repeatable, reroutable};
use crate::{Client, ClientError};

impl Client {
    control_call! { ConsumerGroupsClient, reroutable,
        /// Joins, stays in or leaves a group; answers the member's assignment.
        heartbeat(pb::GroupHeartbeatRequest) -> pb::GroupHeartbeatResponse;
    }
    control_call! { ConsumerGroupsClient, reroutable,
        /// Commits offsets for a group (fenced by member id and epoch).
        commit_offsets(pb::CommitOffsetsRequest) -> pb::CommitOffsetsResponse;
    }
    control_call! { ConsumerGroupsClient, repeatable,
        /// A group's committed offsets.
        fetch_offsets(pb::FetchOffsetsRequest) -> pb::FetchOffsetsResponse;
    }
    control_call! { ConsumerGroupsClient, repeatable,
        /// Every group with its member count and state.
        list_groups(pb::ListGroupsRequest) -> pb::ListGroupsResponse;
    }
    control_call! { ConsumerGroupsClient, repeatable,
        /// A group's members, assignments, committed offsets and lag.
        describe_group(pb::DescribeGroupRequest) -> pb::DescribeGroupResponse;
    }
    control_call! { ConsumerGroupsClient, reroutable,
        /// Moves a group's committed offsets (the group must have no members).
        reset_offsets(pb::ResetOffsetsRequest) -> pb::ResetOffsetsResponse;
    }
    control_call! { ConsumerGroupsClient, reroutable,
        /// Deletes a group and its offsets (the group must have no members).
        delete_group(pb::DeleteGroupRequest) -> pb::DeleteGroupResponse;
    }
}
