//! Queue-subscription calls (`mq.v1.Queues`): receive, ack, nack and lease extension for
//! `mq-consumer`'s queue consumer, and the queue administration `mqctl` uses. Any broker
//! forwards them to the consumer manager; not-leader answers are followed like other control
//! calls. Requests and replies are the protocol's own messages ([`crate::proto`]).

use mq_proto::v1 as pb;
use mq_proto::v1::queues_client::QueuesClient;

use crate::routing::{repeatable, reroutable};
use crate::{Client, ClientError};

impl Client {
    control_call! { QueuesClient, reroutable,
        /// Creates a queue subscription (and its dead-letter topic when missing).
        create_queue(pb::CreateQueueRequest) -> pb::CreateQueueResponse;
    }
    control_call! { QueuesClient, reroutable,
        /// Deletes a queue subscription and its state.
        delete_queue(pb::DeleteQueueRequest) -> pb::DeleteQueueResponse;
    }
    control_call! { QueuesClient, repeatable,
        /// Every queue subscription with its config.
        list_queues(pb::ListQueuesRequest) -> pb::ListQueuesResponse;
    }
    control_call! { QueuesClient, repeatable,
        /// A queue's config and per-partition progress.
        describe_queue(pb::DescribeQueueRequest) -> pb::DescribeQueueResponse;
    }
    control_call! { QueuesClient, reroutable,
        /// Settles leased messages (all or nothing; repeating an ack succeeds).
        ack(pb::AckRequest) -> pb::AckResponse;
    }
    control_call! { QueuesClient, reroutable,
        /// Gives leased messages back for redelivery after a delay.
        nack(pb::NackRequest) -> pb::NackResponse;
    }
    control_call! { QueuesClient, reroutable,
        /// Moves the deadline of leased messages.
        extend_leases(pb::ExtendLeasesRequest) -> pb::ExtendLeasesResponse;
    }

    /// Leases up to `request.max_messages` messages, waiting up to `request.max_wait_ms` for
    /// a first one (capped at half the client's request timeout, so the call never times out
    /// while waiting).
    pub async fn receive(
        &self,
        mut request: pb::ReceiveRequest,
    ) -> Result<pb::ReceiveResponse, ClientError> {
        let cap = self.config().request_timeout.as_millis() / 2;
        request.max_wait_ms = request
            .max_wait_ms
            .min(cap.min(u128::from(u32::MAX)) as u32);
        let response = self
            .control(reroutable, |channel| {
                let request = request.clone();
                async move { QueuesClient::new(channel).receive(request).await }
            })
            .await?;
        Ok(response.into_inner())
    }
}
