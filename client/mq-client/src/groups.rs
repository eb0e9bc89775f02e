//! Consumer-group calls (`mq.v1.ConsumerGroups`): membership heartbeats and offset commits for
//! `mq-consumer`, and the group administration `mqctl` uses. Any broker forwards them to the
//! consumer manager; not-leader answers are followed like other control calls. Requests and
//! replies are the protocol's own messages ([`crate::proto`]).

use mq_proto::v1 as pb;
use mq_proto::v1::consumer_groups_client::ConsumerGroupsClient;

use crate::{Client, ClientError};

macro_rules! group_call {
    ($(#[$doc:meta])* $name:ident($request:ty) -> $response:ty;) => {
        $(#[$doc])*
        pub async fn $name(&self, request: $request) -> Result<$response, ClientError> {
            let response = self
                .control(|channel| {
                    let request = request.clone();
                    async move { ConsumerGroupsClient::new(channel).$name(request).await }
                })
                .await?;
            Ok(response.into_inner())
        }
    };
}

impl Client {
    group_call! {
        /// Joins, stays in or leaves a group; answers the member's assignment.
        heartbeat(pb::GroupHeartbeatRequest) -> pb::GroupHeartbeatResponse;
    }
    group_call! {
        /// Commits offsets for a group (fenced by member id and epoch).
        commit_offsets(pb::CommitOffsetsRequest) -> pb::CommitOffsetsResponse;
    }
    group_call! {
        /// A group's committed offsets.
        fetch_offsets(pb::FetchOffsetsRequest) -> pb::FetchOffsetsResponse;
    }
    group_call! {
        /// Every group with its member count and state.
        list_groups(pb::ListGroupsRequest) -> pb::ListGroupsResponse;
    }
    group_call! {
        /// A group's members, assignments, committed offsets and lag.
        describe_group(pb::DescribeGroupRequest) -> pb::DescribeGroupResponse;
    }
    group_call! {
        /// Moves a group's committed offsets (the group must have no members).
        reset_offsets(pb::ResetOffsetsRequest) -> pb::ResetOffsetsResponse;
    }
    group_call! {
        /// Deletes a group and its offsets (the group must have no members).
        delete_group(pb::DeleteGroupRequest) -> pb::DeleteGroupResponse;
    }
}
