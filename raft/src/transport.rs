//! The Raft transport over gRPC (`mq.internal.v1.RaftTransport`).
//!
//! Client side: [`GrpcNetworkFactory`] gives each group's openraft a network whose clients
//! share [`Peers`]: one HTTP/2 channel per peer address, multiplexing every group. Server side:
//! [`RaftTransportService`] looks the group up in a [`GroupRegistry`] and hands the message to
//! that group's Raft. Messages are openraft's own request and response types, postcard-encoded.
//!
//! AppendEntries is the exception that carries the data: its entries travel as the leader's
//! log stored them ([`RocksLogStore::encoded`], encoded once for the log and every follower),
//! one `bytes` field each, at most [`MAX_APPEND_BYTES`] per message (openraft is told the rest
//! is still to send). The follower decodes them as slices of the received frame and stores
//! the same bytes ([`RocksLogStore::received`]).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use mq_common::ids::GroupId;
use mq_proto::internal::raft_transport_client::RaftTransportClient;
use mq_proto::internal::raft_transport_server::RaftTransport;
use mq_proto::internal::{QuiesceReply, QuiesceRequest, RaftMessage};
use openraft::entry::RaftEntry;
use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::impls::BasicNode;
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::{Raft, RaftTypeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::codec;
use crate::disk::DiskGuard;
use crate::log_store::RocksLogStore;
use crate::quiesce::{self, Quiescence, QuietGroupHandle};
use crate::types::GroupTypes;

/// Largest Raft message on the wire: a few maximal producer batches per AppendEntries.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 256 << 20;

/// Entry bytes per AppendEntries: past this the rest goes in the next message (a single larger
/// entry still goes, alone). Big enough to amortise a round trip, small enough that a
/// follower's decode and write do not hold up the heartbeats behind it.
pub const MAX_APPEND_BYTES: usize = 4 << 20;

/// One gRPC channel per peer address, shared by every group.
#[derive(Debug, Default)]
pub struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    /// The channel to `address` (host:port), created lazily: it connects on first use and
    /// reconnects by itself.
    pub fn channel(&self, address: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock().expect("peer map lock");
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{address}"))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// The kinds of message the transport carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcKind {
    Append,
    Vote,
    PreVote,
    InstallSnapshot,
    TransferLeader,
}

impl RpcKind {
    /// The metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Vote => "vote",
            Self::PreVote => "pre_vote",
            Self::InstallSnapshot => "install_snapshot",
            Self::TransferLeader => "transfer_leader",
        }
    }
}

/// The round-trip histogram of `kind` RPCs to `peer`.
fn rpc_histogram(kind: RpcKind, peer: Arc<str>) -> metrics::Histogram {
    metrics::histogram!("mq_raft_rpc_seconds", "rpc" => kind.name(), "peer" => peer)
}

/// A follower's handling of AppendEntries slower than this is logged.
const SLOW_APPEND_ENTRIES: Duration = Duration::from_millis(100);

/// Creates the network clients of one group on one node.
#[derive(Debug)]
pub struct GrpcNetworkFactory<C: RaftTypeConfig> {
    peers: Arc<Peers>,
    group: GroupId,
    local_node: u64,
    /// The group's log, whose encodings AppendEntries sends.
    log: RocksLogStore<C>,
}

impl<C: RaftTypeConfig> GrpcNetworkFactory<C> {
    pub fn new(peers: Arc<Peers>, group: GroupId, local_node: u64, log: RocksLogStore<C>) -> Self {
        Self {
            peers,
            group,
            local_node,
            log,
        }
    }
}

impl<C: GroupTypes> RaftNetworkFactory<C> for GrpcNetworkFactory<C> {
    type Network = GrpcNetwork<C>;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        GrpcNetwork {
            channel: self
                .peers
                .channel(&node.addr)
                .map_err(|err| err.to_string()),
            group: self.group,
            local_node: self.local_node,
            target,
            peer: node.addr.as_str().into(),
            append_seconds: rpc_histogram(RpcKind::Append, node.addr.as_str().into()),
            log: self.log.clone(),
        }
    }
}

/// The network client of one group towards one peer node.
#[derive(Debug)]
pub struct GrpcNetwork<C: RaftTypeConfig> {
    channel: Result<Channel, String>,
    group: GroupId,
    local_node: u64,
    target: u64,
    /// The target's address, the `peer` label of the RPC histograms.
    peer: Arc<str>,
    /// The round-trip histogram of AppendEntries to the target (looked up once: it is
    /// recorded for every replication round).
    append_seconds: metrics::Histogram,
    log: RocksLogStore<C>,
}

/// How a call failed, before it is shaped into the error type openraft wants for that RPC.
enum CallError {
    Timeout(Duration),
    Unreachable(String),
    Network(String),
}

impl<C: GroupTypes> GrpcNetwork<C> {
    async fn call<Req, Resp>(
        &self,
        kind: RpcKind,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        self.call_with_entries(kind, request, Vec::new(), timeout)
            .await
    }

    /// Sends `request` with `entries` (encoded entries, AppendEntries only) and decodes the
    /// `Result` reply.
    async fn call_with_entries<Req, Resp>(
        &self,
        kind: RpcKind,
        request: &Req,
        entries: Vec<Bytes>,
        timeout: Duration,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let channel = self.channel.clone().map_err(CallError::Unreachable)?;
        let payload = codec::encode(request).map_err(|err| CallError::Network(err.to_string()))?;
        let message = RaftMessage {
            group_id: self.group.0,
            target_node_id: self.target,
            payload: payload.into(),
            entries,
        };
        let mut client = RaftTransportClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
        let call = async move {
            match kind {
                RpcKind::Append => client.append(message).await,
                RpcKind::Vote => client.vote(message).await,
                RpcKind::PreVote => client.pre_vote(message).await,
                RpcKind::InstallSnapshot => client.install_snapshot(message).await,
                RpcKind::TransferLeader => client.transfer_leader(message).await,
            }
        };
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(timeout, call).await;
        let took = started.elapsed().as_secs_f64();
        match kind {
            RpcKind::Append => self.append_seconds.record(took),
            _ => rpc_histogram(kind, self.peer.clone()).record(took),
        }
        let reply = match outcome {
            Err(_) => return Err(CallError::Timeout(timeout)),
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return Err(CallError::Unreachable(status.to_string()));
            }
            Ok(Err(status)) => return Err(CallError::Network(status.to_string())),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let outcome: Result<Resp, String> =
            codec::decode(&reply.payload).map_err(|err| CallError::Network(err.to_string()))?;
        outcome.map_err(CallError::Network)
    }

    fn rpc_error(&self, action: RPCTypes, err: CallError) -> RPCError<C> {
        match err {
            CallError::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id: self.local_node,
                target: self.target,
                timeout,
            }),
            CallError::Unreachable(msg) => RPCError::Unreachable(Unreachable::from_string(msg)),
            CallError::Network(msg) => RPCError::Network(NetworkError::from_string(msg)),
        }
    }
}

impl<C: GroupTypes> RaftNetworkV2<C> for GrpcNetwork<C> {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let entries = std::mem::take(&mut rpc.entries);
        let sent = entries_to_send(&entries, MAX_APPEND_BYTES, |entry| self.log.encoded(entry))
            .map_err(|err| {
                self.rpc_error(RPCTypes::AppendEntries, CallError::Network(err.to_string()))
            })?;
        let cut = (sent.len() < entries.len()).then(|| entries[sent.len() - 1].log_id());
        let reply: AppendEntriesResponse<C> = self
            .call_with_entries(RpcKind::Append, &rpc, sent, option.hard_ttl())
            .await
            .map_err(|err| self.rpc_error(RPCTypes::AppendEntries, err))?;
        Ok(match (reply, cut) {
            // The follower took what was sent; openraft sends the rest next.
            (AppendEntriesResponse::Success, Some(last_sent)) => {
                AppendEntriesResponse::PartialSuccess(Some(last_sent))
            }
            (reply, _) => reply,
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.call(RpcKind::Vote, &rpc, option.hard_ttl())
            .await
            .map_err(|err| self.rpc_error(RPCTypes::Vote, err))
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.call(RpcKind::PreVote, &rpc, option.hard_ttl())
            .await
            .map_err(|err| self.rpc_error(RPCTypes::Vote, err))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Self::SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let request = (vote, snapshot.meta, snapshot.snapshot);
        let send = self.call(RpcKind::InstallSnapshot, &request, option.hard_ttl());
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            outcome = send => outcome.map_err(|err| match self.rpc_error(RPCTypes::InstallSnapshot, err) {
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Network(n) => StreamingError::Network(n),
                RPCError::RemoteError(r) => StreamingError::Network(NetworkError::from_string(r.to_string())),
            }),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        self.call(RpcKind::TransferLeader, &req, option.hard_ttl())
            .await
            .map_err(|err| self.rpc_error(RPCTypes::TransferLeader, err))
    }
}

/// The encodings of the first of `entries` that fit in `max_bytes` (always at least one).
fn entries_to_send<E>(
    entries: &[E],
    max_bytes: usize,
    encoded: impl Fn(&E) -> io::Result<Bytes>,
) -> io::Result<Vec<Bytes>> {
    let mut sent = Vec::with_capacity(entries.len());
    let mut bytes = 0;
    for entry in entries {
        let frame = encoded(entry)?;
        if !sent.is_empty() && bytes + frame.len() > max_bytes {
            break;
        }
        bytes += frame.len();
        sent.push(frame);
    }
    Ok(sent)
}

/// The receiving end of one group on this node.
pub trait GroupRpc: Send + Sync + 'static {
    /// The Raft node id of this node in the group.
    fn node_id(&self) -> u64;
    /// Handles one encoded request (with its encoded entries, AppendEntries only); returns the
    /// encoded `Result` reply.
    fn handle(
        &self,
        kind: RpcKind,
        payload: Bytes,
        entries: Vec<Bytes>,
    ) -> BoxFuture<'static, io::Result<Vec<u8>>>;
}

/// [`GroupRpc`] for an openraft group whose snapshots are byte vectors.
pub struct RaftGroupRpc<C: GroupTypes, SM: RaftStateMachine<C>> {
    raft: Raft<C, SM>,
    node_id: u64,
    disk: DiskGuard,
    /// The group's log, which decodes and keeps the entries AppendEntries brings.
    log: RocksLogStore<C>,
    /// A quiet replica wakes for the messages that need it awake.
    quiet: Arc<Quiescence<C, SM>>,
}

impl<C: GroupTypes, SM: RaftStateMachine<C>> std::fmt::Debug for RaftGroupRpc<C, SM> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftGroupRpc")
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl<C: GroupTypes, SM: RaftStateMachine<C>> RaftGroupRpc<C, SM> {
    pub(crate) fn new(
        raft: Raft<C, SM>,
        node_id: u64,
        log: RocksLogStore<C>,
        quiet: Arc<Quiescence<C, SM>>,
    ) -> Self {
        Self {
            raft,
            node_id,
            disk: DiskGuard::unlimited(),
            log,
            quiet,
        }
    }

    /// Refuses entries and snapshots from the leader while `disk` is below its reserve: the
    /// leader backs off and retries, and this replica catches up once space returns. Without
    /// entries (heartbeats) appends are still taken, so the leader's term and commit index
    /// reach this replica and it does not call elections meanwhile.
    pub fn with_disk_guard(mut self, disk: DiskGuard) -> Self {
        self.disk = disk;
        self
    }
}

fn reply<T: Serialize, E: std::fmt::Display>(outcome: Result<T, E>) -> io::Result<Vec<u8>> {
    codec::encode(&outcome.map_err(|err| err.to_string()))
}

impl<C, SM> GroupRpc for RaftGroupRpc<C, SM>
where
    C: GroupTypes,
    SM: RaftStateMachine<C, SnapshotData = Vec<u8>>,
{
    fn node_id(&self) -> u64 {
        self.node_id
    }

    fn handle(
        &self,
        kind: RpcKind,
        payload: Bytes,
        entries: Vec<Bytes>,
    ) -> BoxFuture<'static, io::Result<Vec<u8>>> {
        let raft = self.raft.clone();
        let disk = self.disk.clone();
        let log = self.log.clone();
        let quiet = self.quiet.clone();
        Box::pin(async move {
            let refuse_if_full = || {
                disk.check()
                    .map_err(|full| io::Error::new(io::ErrorKind::StorageFull, full))
            };
            match kind {
                RpcKind::Append => {
                    let mut request: AppendEntriesRequest<C> = codec::decode(&payload)?;
                    if !entries.is_empty() {
                        refuse_if_full()?;
                        request.entries = log.received(entries)?;
                    }
                    let started = std::time::Instant::now();
                    let outcome = raft.append_entries(request).await;
                    // A leader that sends again is awake: so must its followers be. Woken
                    // after the message renewed the leader's lease here, so the election
                    // timer does not start from a stale contact.
                    quiet.wake("append");
                    let took = started.elapsed();
                    metrics::histogram!("mq_raft_append_handle_seconds").record(took.as_secs_f64());
                    if took >= SLOW_APPEND_ENTRIES {
                        tracing::warn!(took_ms = took.as_millis() as u64, "slow AppendEntries");
                    }
                    reply(outcome)
                }
                RpcKind::Vote | RpcKind::PreVote => {
                    let request: VoteRequest<C> = codec::decode(&payload)?;
                    let transfer = kind == RpcKind::Vote && request.leadership_transfer;
                    if !transfer && quiet.holds_lease() {
                        return reply(Ok::<_, String>(quiet.refusal()));
                    }
                    quiet.wake("vote");
                    match kind {
                        RpcKind::Vote => reply(raft.vote(request).await),
                        _ => reply(raft.pre_vote(request).await),
                    }
                }
                RpcKind::InstallSnapshot => {
                    quiet.wake("snapshot");
                    refuse_if_full()?;
                    let (vote, meta, snapshot): (VoteOf<C>, SnapshotMetaOf<C>, Vec<u8>) =
                        codec::decode(&payload)?;
                    reply(
                        raft.install_full_snapshot(vote, Snapshot { meta, snapshot })
                            .await,
                    )
                }
                RpcKind::TransferLeader => {
                    quiet.wake("transfer");
                    let request: TransferLeaderRequest<C> = codec::decode(&payload)?;
                    reply(raft.handle_transfer_leader(request).await)
                }
            }
        })
    }
}

/// The groups hosted by this process, by group id.
#[derive(Clone, Default)]
pub struct GroupRegistry {
    groups: Arc<RwLock<HashMap<GroupId, Registered>>>,
}

/// A group's endpoints in the registry.
#[derive(Clone)]
struct Registered {
    rpc: Arc<dyn GroupRpc>,
    quiet: Arc<dyn QuietGroupHandle>,
}

impl std::fmt::Debug for GroupRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let groups = self.groups.read().expect("registry lock");
        f.debug_struct("GroupRegistry")
            .field("groups", &groups.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl GroupRegistry {
    pub(crate) fn register(
        &self,
        group: GroupId,
        rpc: Arc<dyn GroupRpc>,
        quiet: Arc<dyn QuietGroupHandle>,
    ) {
        self.groups
            .write()
            .expect("registry lock")
            .insert(group, Registered { rpc, quiet });
    }

    pub fn unregister(&self, group: GroupId) {
        self.groups.write().expect("registry lock").remove(&group);
    }

    fn get(&self, group: GroupId) -> Option<Arc<dyn GroupRpc>> {
        self.groups
            .read()
            .expect("registry lock")
            .get(&group)
            .map(|registered| registered.rpc.clone())
    }

    /// The quiescence of `group`, when hosted here.
    pub(crate) fn quiescence(&self, group: GroupId) -> Option<Arc<dyn QuietGroupHandle>> {
        self.groups
            .read()
            .expect("registry lock")
            .get(&group)
            .map(|registered| registered.quiet.clone())
    }

    /// Every hosted group's quiescence, for a round.
    pub(crate) fn quiescent_groups(&self) -> Vec<(GroupId, Arc<dyn QuietGroupHandle>)> {
        self.groups
            .read()
            .expect("registry lock")
            .iter()
            .map(|(group, registered)| (*group, registered.quiet.clone()))
            .collect()
    }
}

/// The `RaftTransport` gRPC service: routes each message to its group.
#[derive(Debug, Clone)]
pub struct RaftTransportService {
    registry: GroupRegistry,
}

impl RaftTransportService {
    pub fn new(registry: GroupRegistry) -> Self {
        Self { registry }
    }

    async fn route(
        &self,
        kind: RpcKind,
        message: RaftMessage,
    ) -> Result<Response<RaftMessage>, Status> {
        let group = GroupId(message.group_id);
        let rpc = self.registry.get(group).ok_or_else(|| {
            // UNAVAILABLE: the sender treats the peer as unreachable for this group and backs
            // off, e.g. while the replica is still being created here.
            Status::unavailable(format!("raft group {group} is not hosted here"))
        })?;
        if rpc.node_id() != message.target_node_id {
            return Err(Status::failed_precondition(format!(
                "raft group {group}: this node is {} here, not {}",
                rpc.node_id(),
                message.target_node_id
            )));
        }
        let payload = rpc
            .handle(kind, message.payload, message.entries)
            .await
            .map_err(|err| match err.kind() {
                // UNAVAILABLE: the leader backs off and retries, as for an unreachable peer.
                io::ErrorKind::StorageFull => Status::unavailable(format!(
                    "raft group {group} on node {}: {err}",
                    rpc.node_id()
                )),
                _ => Status::invalid_argument(format!("raft message of group {group}: {err}")),
            })?;
        Ok(Response::new(RaftMessage {
            group_id: group.0,
            target_node_id: 0,
            payload: payload.into(),
            entries: Vec::new(),
        }))
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftTransportService {
    async fn append(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.route(RpcKind::Append, request.into_inner()).await
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.route(RpcKind::Vote, request.into_inner()).await
    }

    async fn pre_vote(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.route(RpcKind::PreVote, request.into_inner()).await
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.route(RpcKind::InstallSnapshot, request.into_inner())
            .await
    }

    async fn transfer_leader(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.route(RpcKind::TransferLeader, request.into_inner())
            .await
    }

    async fn quiesce(
        &self,
        request: Request<QuiesceRequest>,
    ) -> Result<Response<QuiesceReply>, Status> {
        Ok(Response::new(quiesce::answer(
            &self.registry,
            request.into_inner(),
        )))
    }
}

/// The tonic server of [`RaftTransportService`] with this crate's message limits.
pub fn server(
    registry: GroupRegistry,
) -> mq_proto::internal::raft_transport_server::RaftTransportServer<RaftTransportService> {
    mq_proto::internal::raft_transport_server::RaftTransportServer::new(RaftTransportService::new(
        registry,
    ))
    .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_are_cut_by_bytes_but_never_empty() {
        let sizes = [3usize, 4, 2, 10, 1];
        let frames = |max| {
            entries_to_send(&sizes, max, |n| Ok(Bytes::from(vec![0u8; *n])))
                .unwrap()
                .iter()
                .map(Bytes::len)
                .collect::<Vec<_>>()
        };
        assert_eq!(frames(9), vec![3, 4, 2]);
        assert_eq!(frames(8), vec![3, 4]);
        assert_eq!(frames(100), sizes.to_vec());
        // A first entry larger than the limit still goes, alone.
        assert_eq!(frames(2), vec![3]);
        let none: [usize; 0] = [];
        assert!(
            entries_to_send(&none, 1, |n| Ok(Bytes::from(vec![0u8; *n])))
                .unwrap()
                .is_empty()
        );
    }
}
