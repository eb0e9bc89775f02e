//! Quiescence: a partition group without writes stops ticking on every replica, so an idle
//! broker with thousands of partitions costs next to nothing (no heartbeat RPCs, no election
//! timers, no wakeups of openraft's per-group loop).
//!
//! - **Rounds** ([`run`], once per heartbeat interval on every node): for each group this node
//!   leads that is idle (no write for `quiesce_after`) and fully replicated and applied
//!   everywhere, the leader offers its state (term, last log index) to each follower. All
//!   offers to one node travel in one `RaftTransport.Quiesce` message: this message is the
//!   coalesced heartbeat of the quiet groups.
//! - **Followers** accept an offer only when their state matches it exactly (same leader and
//!   term, same last log index, all applied), and then stop ticking. The leader stops ticking
//!   once every follower accepted; a follower that refuses wakes a quiet leader, whose
//!   heartbeats bring the follower up to date.
//! - **Waking**: a write, a membership change or a leadership transfer on the leader (which
//!   first renews its lease with one ReadIndex round, since it let the lease lapse); any
//!   AppendEntries, snapshot or transfer reaching a quiet replica; a vote that the replica
//!   would honour; the peer watch's successor election when the leader's broker dies; and on
//!   a follower the backstop: no accepted offer for [`BACKSTOP_ROUNDS`] rounds (the leader is
//!   gone or cut off), one more round per lower-id follower so that they do not all campaign
//!   at once; it then campaigns at once (behind a pre-vote, which the other followers refuse
//!   while the leader's offers still reach them) and its election timer runs again.
//! - **The lease, kept by the offers**: a quiet replica's openraft lease has expired (nothing
//!   renewed it), so openraft alone would grant any pre-vote. While offers keep arriving, the
//!   transport refuses pre-votes and votes (other than leadership transfers) for the leader
//!   itself ([`Quiescence::holds_lease`]), as openraft does for a live leader: a replica that
//!   restarted, or was cut off and came back, cannot depose a live quiet leader.
//!
//! Safety never depends on any of this: it only turns timers off and on. Votes, logs and
//! commits stay openraft's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mq_common::ids::GroupId;
use mq_proto::internal::raft_transport_client::RaftTransportClient;
use mq_proto::internal::{QuiesceReply, QuiesceRequest, QuietGroup};
use openraft::async_runtime::WatchReceiver;
use openraft::raft::{ReadPolicy, VoteResponse};
use openraft::storage::RaftStateMachine;
use openraft::{Raft, ServerState};
use tokio_util::sync::CancellationToken;

use crate::transport::{GroupRegistry, Peers};
use crate::types::GroupTypes;

/// A quiet follower that accepted no offer for this many rounds wakes: its leader is gone or
/// cannot reach it, and its election timer must run again.
pub const BACKSTOP_ROUNDS: u32 = 3;

/// A process-wide epoch, so instants fit in atomics.
fn millis_now() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// One group's quiescence on this node, shared by its [`crate::RaftGroup`] handles, its
/// transport endpoint and the rounds.
pub(crate) struct Quiescence<C: GroupTypes, SM: RaftStateMachine<C>> {
    raft: Raft<C, SM>,
    node_id: u64,
    /// `None`: this group never quiesces.
    after: Option<Duration>,
    /// How long an accepted offer stands in for the leader's lease.
    lease: Duration,
    /// Whether the group's ticks are off on this replica.
    quiet: AtomicBool,
    /// When this replica last saw a write proposed (millis since the epoch).
    last_write: AtomicU64,
    /// When the last offer was accepted here (follower), or accepted by a majority (leader).
    confirmed: AtomicU64,
    /// Serializes wakes for writes, so every writer waits for the lease renewal.
    waking: tokio::sync::Mutex<()>,
}

impl<C: GroupTypes, SM: RaftStateMachine<C>> Quiescence<C, SM> {
    pub(crate) fn new(
        raft: Raft<C, SM>,
        node_id: u64,
        after: Option<Duration>,
        lease: Duration,
    ) -> Self {
        Self {
            raft,
            node_id,
            after,
            lease,
            quiet: AtomicBool::new(false),
            last_write: AtomicU64::new(millis_now()),
            confirmed: AtomicU64::new(0),
            waking: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn is_quiet(&self) -> bool {
        self.quiet.load(Ordering::Acquire)
    }

    /// Before a write (or a membership change, a leadership transfer, a linearizable read)
    /// on this replica: when it is a quiet leader, its ticks resume and its lease is renewed
    /// (one heartbeat round to a quorum) before the write goes on. A quiet follower stays
    /// quiet: the write is refused there and goes to the leader.
    pub(crate) async fn before_write(&self) {
        if self.after.is_none() {
            return;
        }
        self.last_write.store(millis_now(), Ordering::SeqCst);
        if !self.quiet.load(Ordering::SeqCst) || !self.raft.is_leader() {
            return;
        }
        let _waking = self.waking.lock().await;
        if !self.is_quiet() {
            return;
        }
        self.raft.runtime_config().tick(true);
        metrics::counter!("mq_raft_quiesce_wakes_total", "reason" => "write").increment(1);
        // Bounded: a leader cut off from its quorum must not hold every writer here (the
        // write itself then waits for a commit, as it would on any leader).
        let renewal = self.raft.ensure_linearizable(ReadPolicy::ReadIndex);
        match tokio::time::timeout(self.lease, renewal).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::debug!(node = self.node_id, %err, "lease renewal on wake"),
            Err(_) => tracing::debug!(node = self.node_id, "lease renewal on wake timed out"),
        }
        self.quiet.store(false, Ordering::Release);
    }

    /// Resumes ticking (an RPC that needs this replica awake, the backstop, a refused offer,
    /// a successor election).
    pub(crate) fn wake(&self, reason: &'static str) {
        if self.quiet.swap(false, Ordering::AcqRel) {
            self.raft.runtime_config().tick(true);
            metrics::counter!("mq_raft_quiesce_wakes_total", "reason" => reason).increment(1);
        }
    }

    /// How long since this replica last saw a write proposed.
    fn idle(&self) -> Duration {
        let last_write = self.last_write.load(Ordering::SeqCst);
        Duration::from_millis(millis_now().saturating_sub(last_write))
    }

    /// Stops ticking, unless a write arrived meanwhile.
    fn silence(&self) {
        let Some(after) = self.after else { return };
        if self.idle() < after || self.quiet.swap(true, Ordering::SeqCst) {
            return;
        }
        self.raft.runtime_config().tick(false);
        // A write that stored its time before `quiet` turned true saw the group awake and did
        // not wake it (`before_write` stores, then reads `quiet`; this swapped, then reads
        // the time: with both sequentially consistent, one of the two sees the other). Its
        // group would lead with ticks off: turn them back on.
        if self.idle() < after {
            self.quiet.store(false, Ordering::SeqCst);
            self.raft.runtime_config().tick(true);
        }
    }

    fn confirm(&self) {
        self.confirmed.store(millis_now(), Ordering::Release);
    }

    fn since_confirmed(&self) -> Duration {
        let confirmed = self.confirmed.load(Ordering::Acquire);
        Duration::from_millis(millis_now().saturating_sub(confirmed))
    }

    /// Whether a pre-vote or vote (not a leadership transfer) must be refused here as it would
    /// be under a live leader's lease: the replica is quiet and the leader's offers still
    /// arrive (or, on the leader, a majority still accepts them).
    pub(crate) fn holds_lease(&self) -> bool {
        self.is_quiet() && self.since_confirmed() < self.lease
    }

    /// The refusal of a vote under [`Self::holds_lease`]: what openraft answers under a live
    /// lease (this replica's vote and log; quiet, its log is all applied).
    pub(crate) fn refusal(&self) -> VoteResponse<C> {
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow_watched();
        VoteResponse::new(metrics.vote.clone(), metrics.last_applied.clone(), false)
    }

    /// This replica's part of the next round: what it offers as leader.
    fn offer(&self) -> Option<Offer> {
        let after = self.after?;
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow_watched();
        let membership = metrics.membership_config.membership();
        let followers: Vec<(u64, String)> = membership
            .nodes()
            .filter(|(id, _)| **id != self.node_id)
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        let view = LeaderView {
            leading: metrics.state == ServerState::Leader
                && metrics.current_leader == Some(self.node_id),
            idle: self.idle(),
            last_log_index: metrics.last_log_index,
            applied: metrics.last_applied.as_ref().map(|id| id.index()),
            membership_committed: metrics.membership_config.log_id()
                == metrics.committed_membership_config.log_id(),
            matched: followers
                .iter()
                .map(|(id, _)| {
                    metrics
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(id))
                        .and_then(|m| m.as_ref().map(|log_id| log_id.index()))
                })
                .collect(),
        };
        let last_log_index = may_offer(&view, after)?;
        Some(Offer {
            leader: self.node_id,
            term: metrics.current_term,
            last_log_index,
            voters: membership.voter_ids().count(),
            followers,
        })
    }

    /// A follower's answer to `offer`: accepted (and ticking stopped) when it matches.
    fn accept(&self, offer: &QuietGroup) -> bool {
        if self.after.is_none() {
            return false;
        }
        let matches = {
            let receiver = self.raft.metrics();
            let metrics = receiver.borrow_watched();
            follower_matches(
                &ReplicaView {
                    node_id: self.node_id,
                    following: matches!(
                        metrics.state,
                        ServerState::Follower | ServerState::Learner
                    ),
                    leader: metrics.current_leader,
                    term: metrics.current_term,
                    last_log_index: metrics.last_log_index,
                    applied: metrics.last_applied.as_ref().map(|id| id.index()),
                },
                offer,
            )
        };
        if matches {
            self.confirm();
            if !self.quiet.swap(true, Ordering::AcqRel) {
                self.raft.runtime_config().tick(false);
            }
        }
        matches
    }
}

/// What a leader offers its followers in a round.
#[derive(Debug, Clone)]
pub(crate) struct Offer {
    /// The leader's Raft node id.
    leader: u64,
    term: u64,
    last_log_index: u64,
    /// Voters in the group, the leader among them.
    voters: usize,
    /// Every other member (voter or learner): node id and address.
    followers: Vec<(u64, String)>,
}

/// The leader's state a quiescence decision reads.
#[derive(Debug, Clone, PartialEq)]
struct LeaderView {
    leading: bool,
    idle: Duration,
    last_log_index: Option<u64>,
    applied: Option<u64>,
    membership_committed: bool,
    /// Each follower's matched log index.
    matched: Vec<Option<u64>>,
}

/// The last log index a leader may offer: it leads, has seen no write for `after`, its
/// membership is committed, and its whole log is applied here and held by every follower.
fn may_offer(view: &LeaderView, after: Duration) -> Option<u64> {
    let last = view.last_log_index?;
    let settled = view.leading
        && view.idle >= after
        && view.membership_committed
        && view.applied == Some(last)
        && !view.matched.is_empty()
        && view.matched.iter().all(|m| *m == Some(last));
    settled.then_some(last)
}

/// A follower's state an offer is checked against.
#[derive(Debug, Clone, PartialEq)]
struct ReplicaView {
    node_id: u64,
    following: bool,
    leader: Option<u64>,
    term: u64,
    last_log_index: Option<u64>,
    applied: Option<u64>,
}

/// Whether a follower holds exactly what the offer's leader holds, and follows it.
fn follower_matches(view: &ReplicaView, offer: &QuietGroup) -> bool {
    view.following
        && view.node_id == offer.target_node_id
        && view.leader == Some(offer.leader_node_id)
        && view.term == offer.term
        && view.last_log_index == Some(offer.last_log_index)
        && view.applied == Some(offer.last_log_index)
}

/// How many rounds after the first a quiet follower's backstop waits: its place among the
/// voters other than the leader. Woken together, the followers of a dead leader would campaign
/// in the same instant (their election timers long expired) and split the vote, round after
/// round; staggered, the first wakes alone and the others, still quiet and out of the lease,
/// vote for it.
fn backstop_rank(node_id: u64, leader: Option<u64>, voters: impl Iterator<Item = u64>) -> u32 {
    voters
        .filter(|&id| id < node_id && Some(id) != leader)
        .count() as u32
}

/// What the rounds need of a group, whatever its types.
pub(crate) trait QuietGroupHandle: Send + Sync {
    fn offer(&self) -> Option<Offer>;
    fn accept(&self, offer: &QuietGroup) -> bool;
    /// A round's outcome for a group this node offered: how many followers accepted, and
    /// whether any refused.
    fn offered(&self, offer: &Offer, accepted: usize, refused: bool);
    /// The backstop: a quiet follower without accepted offers for [`BACKSTOP_ROUNDS`] rounds
    /// of `interval`, plus its [`backstop_rank`], wakes.
    fn check_backstop(&self, interval: Duration);
    fn is_quiet(&self) -> bool;
}

impl<C: GroupTypes, SM: RaftStateMachine<C>> QuietGroupHandle for Quiescence<C, SM> {
    fn offer(&self) -> Option<Offer> {
        Quiescence::offer(self)
    }

    fn accept(&self, offer: &QuietGroup) -> bool {
        Quiescence::accept(self, offer)
    }

    fn offered(&self, offer: &Offer, accepted: usize, refused: bool) {
        if refused {
            // The follower's state differs: heartbeats bring it up to date.
            self.wake("refused");
            return;
        }
        // A majority still accepting keeps the leader's lease; all accepting lets it sleep.
        if (accepted + 1) * 2 > offer.voters {
            self.confirm();
        }
        if accepted == offer.followers.len() {
            self.silence();
        }
    }

    fn check_backstop(&self, interval: Duration) {
        if !self.is_quiet() || self.raft.is_leader() {
            return;
        }
        let rank = {
            let receiver = self.raft.metrics();
            let metrics = receiver.borrow_watched();
            backstop_rank(
                self.node_id,
                metrics.current_leader,
                metrics.membership_config.membership().voter_ids(),
            )
        };
        if self.since_confirmed() >= interval * (BACKSTOP_ROUNDS + rank) {
            self.wake("backstop");
            // Campaign now rather than after a further election timeout; behind a pre-vote,
            // so a leader the other voters still hear from (their offers still arrive) keeps
            // its place.
            let raft = self.raft.clone();
            tokio::spawn(async move {
                if let Err(err) = raft.trigger().elect(true).await {
                    tracing::debug!(%err, "backstop election");
                }
            });
        }
    }

    fn is_quiet(&self) -> bool {
        Quiescence::is_quiet(self)
    }
}

/// The answer to a `Quiesce` message: every offered group whose replica here accepted.
pub(crate) fn answer(registry: &GroupRegistry, request: QuiesceRequest) -> QuiesceReply {
    let quiet_group_ids = request
        .groups
        .iter()
        .filter(|offer| {
            registry
                .quiescence(GroupId(offer.group_id))
                .is_some_and(|group| group.accept(offer))
        })
        .map(|offer| offer.group_id)
        .collect();
    QuiesceReply { quiet_group_ids }
}

/// Runs a round every `interval` until `shutdown`: the offers of the groups this node leads,
/// one message per peer, and the backstop of the groups it follows.
pub async fn run(
    registry: GroupRegistry,
    peers: Arc<Peers>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        round(&registry, &peers, interval).await;
    }
}

async fn round(registry: &GroupRegistry, peers: &Peers, interval: Duration) {
    let groups = registry.quiescent_groups();
    let mut offers: Vec<(GroupId, Arc<dyn QuietGroupHandle>, Offer)> = Vec::new();
    let mut by_peer: HashMap<String, Vec<QuietGroup>> = HashMap::new();
    let mut quiet = 0usize;
    for (group, handle) in groups {
        handle.check_backstop(interval);
        if handle.is_quiet() {
            quiet += 1;
        }
        let Some(offer) = handle.offer() else {
            continue;
        };
        for (node_id, address) in &offer.followers {
            by_peer
                .entry(address.clone())
                .or_default()
                .push(QuietGroup {
                    group_id: group.0,
                    target_node_id: *node_id,
                    leader_node_id: offer.leader,
                    term: offer.term,
                    last_log_index: offer.last_log_index,
                });
        }
        offers.push((group, handle, offer));
    }
    metrics::gauge!("mq_raft_quiet_groups").set(quiet as f64);
    if offers.is_empty() {
        return;
    }
    let sends = by_peer.into_iter().map(|(address, groups)| async move {
        let offered: Vec<u64> = groups.iter().map(|g| g.group_id).collect();
        let answer = match peers.channel(&address) {
            Ok(channel) => {
                let mut client = RaftTransportClient::new(channel);
                tokio::time::timeout(interval, client.quiesce(QuiesceRequest { groups }))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|reply| reply.into_inner().quiet_group_ids)
            }
            Err(_) => None,
        };
        (address, offered, answer)
    });
    let answers = futures::future::join_all(sends).await;
    // Per group: followers that accepted, and whether one that answered refused.
    let mut outcome: HashMap<u64, (usize, bool)> = HashMap::new();
    for (address, offered, answer) in answers {
        let Some(accepted) = answer else {
            tracing::debug!(%address, "quiesce offers unanswered");
            continue;
        };
        let accepted: std::collections::HashSet<u64> = accepted.into_iter().collect();
        for group in offered {
            let entry = outcome.entry(group).or_default();
            if accepted.contains(&group) {
                entry.0 += 1;
            } else {
                entry.1 = true;
            }
        }
    }
    for (group, handle, offer) in &offers {
        let (accepted, refused) = outcome.get(&group.0).copied().unwrap_or_default();
        handle.offered(offer, accepted, refused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled() -> LeaderView {
        LeaderView {
            leading: true,
            idle: Duration::from_secs(5),
            last_log_index: Some(9),
            applied: Some(9),
            membership_committed: true,
            matched: vec![Some(9), Some(9)],
        }
    }

    #[test]
    fn a_leader_offers_only_when_idle_applied_and_fully_replicated() {
        let after = Duration::from_secs(3);
        assert_eq!(may_offer(&settled(), after), Some(9));
        let not = |change: fn(&mut LeaderView)| {
            let mut view = settled();
            change(&mut view);
            may_offer(&view, after)
        };
        assert_eq!(not(|v| v.leading = false), None);
        assert_eq!(not(|v| v.idle = Duration::from_secs(2)), None);
        assert_eq!(not(|v| v.applied = Some(8)), None);
        assert_eq!(not(|v| v.matched[1] = Some(8)), None);
        assert_eq!(not(|v| v.matched[0] = None), None);
        assert_eq!(not(|v| v.membership_committed = false), None);
        assert_eq!(not(|v| v.last_log_index = None), None);
        // A group without followers has nothing to offer.
        assert_eq!(not(|v| v.matched.clear()), None);
    }

    #[test]
    fn followers_of_a_leader_wake_one_round_apart_in_id_order() {
        let voters = || [1u64, 2, 3].into_iter();
        assert_eq!(backstop_rank(2, Some(1), voters()), 0);
        assert_eq!(backstop_rank(3, Some(1), voters()), 1);
        assert_eq!(backstop_rank(1, Some(2), voters()), 0);
        assert_eq!(backstop_rank(3, Some(2), voters()), 1);
        assert_eq!(backstop_rank(3, None, voters()), 2);
    }

    #[test]
    fn a_follower_accepts_only_an_exact_match() {
        let view = ReplicaView {
            node_id: 2,
            following: true,
            leader: Some(1),
            term: 4,
            last_log_index: Some(9),
            applied: Some(9),
        };
        let offer = QuietGroup {
            group_id: 7,
            target_node_id: 2,
            leader_node_id: 1,
            term: 4,
            last_log_index: 9,
        };
        assert!(follower_matches(&view, &offer));
        let refused = |change: fn(&mut ReplicaView, &mut QuietGroup)| {
            let (mut view, mut offer) = (view.clone(), offer);
            change(&mut view, &mut offer);
            !follower_matches(&view, &offer)
        };
        assert!(refused(|v, _| v.following = false));
        assert!(refused(|_, o| o.target_node_id = 3));
        assert!(refused(|v, _| v.leader = Some(3)));
        assert!(refused(|v, _| v.leader = None));
        assert!(refused(|_, o| o.term = 5));
        assert!(refused(|v, _| v.last_log_index = Some(8)));
        assert!(refused(|v, _| v.last_log_index = Some(10)));
        assert!(refused(|v, _| v.applied = Some(8)));
    }
}
