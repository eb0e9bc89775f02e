//! [`LeaderFollower`]: the one way to call a replicated control plane (the cluster manager's,
//! or the consumer manager's, nodes) wherever its leader is. It owns the nodes' addresses and
//! remembers which node answered last; each call tries that node first, follows the leader a
//! refusal names (`NOT_LEADER` with a hint), and otherwise moves through the other nodes in
//! turn. The caller's [`CallPolicy`] says which refusals move a call on (any other is the
//! answer: a node that refuses bad input would refuse it everywhere), how long one node may
//! take, and when the call gives up. The broker's cluster link and `mq-client` both use it.
//!
//! It knows nothing of gRPC: a call gets a node's address and makes its own channel, so the
//! policy is tested with fake calls.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{ApiError, ErrorCode, LeaderHint};

/// Attempts of a [`CallPolicy::one_pass`] call at most: bounds a pass that keeps being sent
/// on to leaders outside the configured nodes.
pub const ONE_PASS_MAX_ATTEMPTS: usize = 8;

/// An error a control call ends with, as far as the follower must read it.
pub trait Refusal: From<ApiError> + fmt::Display {
    /// The leader the refusal names, when it names one.
    fn leader(&self) -> Option<&LeaderHint>;
}

impl Refusal for ApiError {
    fn leader(&self) -> Option<&LeaderHint> {
        self.leader.as_ref()
    }
}

/// How one call goes through the nodes; each caller chooses its own.
#[derive(Debug)]
pub struct CallPolicy<E> {
    /// The refusals that send the call on to another node (the leader they name, else the
    /// next node); any other refusal is the call's answer.
    pub move_on: fn(&E) -> bool,
    /// Longest wait for one node's answer; a node silent that long counts as `UNAVAILABLE`.
    /// `None`: up to the deadline.
    pub attempt_timeout: Option<Duration>,
    /// When the call gives up: an attempt still waiting then ends it with `TIMEOUT`, and no
    /// retry starts unless its pause ends before. `None`: no deadline.
    pub deadline: Option<Instant>,
    /// The pause before the first retry, doubled after each one up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// How often one call tries a node at most (a named leader too, so that a leader that
    /// stopped answering is not waited for twice); `None`: round and round until the deadline.
    pub passes: Option<usize>,
    /// Attempts at most, named leaders included.
    pub max_attempts: usize,
}

impl<E> CallPolicy<E> {
    /// Each node at most once (the configured ones and the leaders named on the way), at most
    /// [`ONE_PASS_MAX_ATTEMPTS`] attempts, no pause, each attempt bounded by
    /// `attempt_timeout`: for a caller with retries of its own.
    pub fn one_pass(move_on: fn(&E) -> bool, attempt_timeout: Duration) -> Self {
        Self {
            move_on,
            attempt_timeout: Some(attempt_timeout),
            deadline: None,
            backoff: Duration::ZERO,
            backoff_max: Duration::ZERO,
            passes: Some(1),
            max_attempts: ONE_PASS_MAX_ATTEMPTS,
        }
    }

    /// Node after node, round and round, until `deadline`, pausing `backoff` (doubled each
    /// time up to `backoff_max`) between attempts; an attempt may take whatever time is left.
    pub fn until(
        deadline: Instant,
        backoff: Duration,
        backoff_max: Duration,
        move_on: fn(&E) -> bool,
    ) -> Self {
        Self {
            move_on,
            attempt_timeout: None,
            deadline: Some(deadline),
            backoff,
            backoff_max,
            passes: None,
            max_attempts: usize::MAX,
        }
    }
}

/// Calls the nodes of a control plane, following its leader. Share it (it is `Sync`) so that
/// every call profits from where the last one was answered.
#[derive(Debug)]
pub struct LeaderFollower {
    addresses: Vec<String>,
    /// The node that answered the last call (with a value or a final refusal): tried first,
    /// as it is usually the leader.
    answered_last: Mutex<Option<String>>,
}

impl LeaderFollower {
    pub fn new(addresses: Vec<String>) -> Self {
        Self {
            addresses,
            answered_last: Mutex::default(),
        }
    }

    /// The configured nodes.
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// Calls `call` with node addresses, as `policy` says, until a node answers: with a value,
    /// or with a refusal `policy.move_on` does not accept. When the policy's attempts, passes
    /// or deadline run out first, the last refusal is the answer.
    pub async fn call<T, E, F, Fut>(&self, policy: &CallPolicy<E>, mut call: F) -> Result<T, E>
    where
        E: Refusal,
        F: FnMut(&str) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut nodes = Nodes::new(self.order(), policy.passes);
        let started = Instant::now();
        let mut backoff = policy.backoff;
        let mut attempts = 0;
        let mut named: Option<String> = None;
        loop {
            let Some(address) = nodes.next(named.take()) else {
                return Err(ApiError::new(
                    ErrorCode::Unavailable,
                    "no control-plane address configured",
                )
                .into());
            };
            attempts += 1;
            let error = match self.attempt(policy, &address, started, &mut call).await {
                Ok(value) => {
                    self.answered(address);
                    return Ok(value);
                }
                Err(error) if !(policy.move_on)(&error) => {
                    self.answered(address);
                    return Err(error);
                }
                Err(error) => error,
            };
            named = error.leader().map(|leader| leader.address.clone());
            let out_of_time = policy
                .deadline
                .is_some_and(|deadline| Instant::now() + backoff >= deadline);
            if attempts >= policy.max_attempts || out_of_time || !nodes.any_left(named.as_deref()) {
                return Err(error);
            }
            tracing::debug!(%address, %error, ?backoff, "control-plane node cannot answer; trying another");
            if !backoff.is_zero() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(policy.backoff_max);
            }
        }
    }

    /// One attempt at `address`, bounded by the attempt timeout and the deadline.
    async fn attempt<T, E, F, Fut>(
        &self,
        policy: &CallPolicy<E>,
        address: &str,
        started: Instant,
        call: &mut F,
    ) -> Result<T, E>
    where
        E: Refusal,
        F: FnMut(&str) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let left = policy
            .deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let limit = match (policy.attempt_timeout, left) {
            (Some(timeout), Some(left)) => Some(timeout.min(left)),
            (timeout, left) => timeout.or(left),
        };
        let Some(limit) = limit else {
            return call(address).await;
        };
        match tokio::time::timeout(limit, call(address)).await {
            Ok(outcome) => outcome,
            Err(_) if left.is_some_and(|left| left <= limit) => Err(ApiError::new(
                ErrorCode::Timeout,
                format!("no answer within {:?}", started.elapsed()),
            )
            .into()),
            Err(_) => {
                tracing::debug!(%address, timeout = ?limit, "control-plane node did not answer");
                Err(ApiError::new(
                    ErrorCode::Unavailable,
                    format!("{address} did not answer within {limit:?}"),
                )
                .into())
            }
        }
    }

    /// The configured nodes in the order a call tries them: the one that answered last first,
    /// the others in their configured order.
    fn order(&self) -> Vec<String> {
        let mut order = self.addresses.clone();
        if let Some(last) = self
            .answered_last
            .lock()
            .expect("answered-last lock")
            .as_ref()
            && let Some(at) = order.iter().position(|address| address == last)
        {
            order[..=at].rotate_right(1);
        }
        order
    }

    fn answered(&self, address: String) {
        *self.answered_last.lock().expect("answered-last lock") = Some(address);
    }
}

/// The nodes one call may still try: the configured ones in turn, a named leader first, each
/// at most `passes` times.
#[derive(Debug)]
struct Nodes {
    order: Vec<String>,
    /// The position in `order` of the next configured node.
    next: usize,
    passes: Option<usize>,
    tries: HashMap<String, usize>,
}

impl Nodes {
    fn new(order: Vec<String>, passes: Option<usize>) -> Self {
        Self {
            order,
            next: 0,
            passes,
            tries: HashMap::new(),
        }
    }

    fn may_try(&self, address: &str) -> bool {
        self.passes
            .is_none_or(|passes| self.tries.get(address).copied().unwrap_or(0) < passes)
    }

    /// Whether [`Self::next`] has a node to give.
    fn any_left(&self, named: Option<&str>) -> bool {
        named.is_some_and(|leader| self.may_try(leader))
            || self.order.iter().any(|address| self.may_try(address))
    }

    /// The node to try next: `named` when it may still be tried, else the next configured
    /// node that may; `None` when there is none.
    fn next(&mut self, named: Option<String>) -> Option<String> {
        let address = match named.filter(|leader| self.may_try(leader)) {
            Some(leader) => leader,
            None => {
                let count = self.order.len();
                let skip = (0..count)
                    .find(|skip| self.may_try(&self.order[(self.next + skip) % count]))?;
                let at = (self.next + skip) % count;
                self.next = at + 1;
                self.order[at].clone()
            }
        };
        *self.tries.entry(address.clone()).or_default() += 1;
        Some(address)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Moves on as the broker's link does.
    fn elsewhere(error: &ApiError) -> bool {
        matches!(
            error.code,
            ErrorCode::NotLeader | ErrorCode::LeaderNotAvailable | ErrorCode::Unavailable
        )
    }

    fn follower() -> LeaderFollower {
        LeaderFollower::new(vec!["a".into(), "b".into(), "c".into()])
    }

    fn not_leader(leader: &str) -> ApiError {
        ApiError::new(ErrorCode::NotLeader, "not the leader").with_leader(Some(LeaderHint {
            id: 1,
            address: leader.into(),
        }))
    }

    fn unavailable() -> ApiError {
        ApiError::new(ErrorCode::Unavailable, "down")
    }

    /// A fake control plane: `answer(address)` is each node's answer; records the addresses
    /// called, in order.
    async fn run(
        follower: &LeaderFollower,
        policy: &CallPolicy<ApiError>,
        answer: impl Fn(&str) -> Result<&'static str, ApiError>,
    ) -> (Result<&'static str, ApiError>, Vec<String>) {
        let called = Arc::new(Mutex::new(Vec::new()));
        let outcome = follower
            .call(policy, |address| {
                called.lock().expect("called").push(address.to_owned());
                let outcome = answer(address);
                async move { outcome }
            })
            .await;
        let called = called.lock().expect("called").clone();
        (outcome, called)
    }

    fn one_pass() -> CallPolicy<ApiError> {
        CallPolicy::one_pass(elsewhere, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn a_named_leader_is_tried_next() {
        let (outcome, called) = run(&follower(), &one_pass(), |address| match address {
            "a" => Err(not_leader("c")),
            "c" => Ok("from c"),
            _ => Err(unavailable()),
        })
        .await;
        assert_eq!(outcome.expect("answered"), "from c");
        assert_eq!(called, ["a", "c"], "b skipped: the leader was named");
    }

    #[tokio::test]
    async fn the_node_that_answered_last_is_tried_first() {
        let follower = follower();
        let answer = |address: &str| match address {
            "b" => Ok("from b"),
            _ => Err(unavailable()),
        };
        let (_, first) = run(&follower, &one_pass(), answer).await;
        assert_eq!(first, ["a", "b"]);
        let (outcome, second) = run(&follower, &one_pass(), answer).await;
        assert_eq!(outcome.expect("answered"), "from b");
        assert_eq!(second, ["b"]);
        // A final refusal is an answer too: that node is tried first next time.
        let (_, third) = run(&follower, &one_pass(), |address| match address {
            "b" => Err(unavailable()),
            _ => Err(ApiError::invalid("topic", "empty")),
        })
        .await;
        assert_eq!(third, ["b", "a"]);
        let (_, fourth) = run(&follower, &one_pass(), |_| Err(unavailable())).await;
        assert_eq!(fourth, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_refusal_that_does_not_move_on_is_the_answer_as_it_came() {
        let (outcome, called) = run(&follower(), &one_pass(), |_| {
            Err(ApiError::invalid("topic", "empty"))
        })
        .await;
        let error = outcome.expect_err("refused");
        assert_eq!(error.code, ErrorCode::InvalidArgument);
        assert_eq!(error.message, ApiError::invalid("topic", "empty").message);
        assert_eq!(called, ["a"], "bad input is refused everywhere");
    }

    #[tokio::test]
    async fn one_pass_tries_each_node_once_and_answers_the_last_refusal() {
        let (outcome, called) = run(&follower(), &one_pass(), |address| {
            Err(ApiError::new(
                ErrorCode::LeaderNotAvailable,
                address.to_owned(),
            ))
        })
        .await;
        let error = outcome.expect_err("no leader");
        assert_eq!(
            (error.code, error.message.as_str()),
            (ErrorCode::LeaderNotAvailable, "c")
        );
        assert_eq!(called, ["a", "b", "c"]);
        // A leader named again after it failed is not waited for twice in one pass.
        let (outcome, called) = run(&follower(), &one_pass(), |address| match address {
            "c" => Err(unavailable()),
            _ => Err(not_leader("c")),
        })
        .await;
        assert_eq!(outcome.expect_err("no answer").code, ErrorCode::NotLeader);
        assert_eq!(called, ["a", "c", "b"]);
        // Leaders named one after the other outside the configured nodes: the attempts are
        // bounded.
        let (outcome, called) = run(&follower(), &one_pass(), |address| {
            Err(not_leader(&format!("{address}+")))
        })
        .await;
        assert_eq!(outcome.expect_err("no answer").code, ErrorCode::NotLeader);
        assert_eq!(called.len(), ONE_PASS_MAX_ATTEMPTS, "{called:?}");
        assert_eq!(called[..3], ["a", "a+", "a++"]);
    }

    #[tokio::test]
    async fn a_silent_node_counts_as_unavailable_after_the_attempt_timeout() {
        let follower = follower();
        let policy = CallPolicy::one_pass(elsewhere, Duration::from_millis(50));
        let called = Mutex::new(Vec::new());
        let outcome = follower
            .call(&policy, |address| {
                called.lock().expect("called").push(address.to_owned());
                let silent = address == "a";
                async move {
                    if silent {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, ApiError>("answered")
                }
            })
            .await;
        assert_eq!(outcome.expect("b answers"), "answered");
        assert_eq!(*called.lock().expect("called"), ["a", "b"]);
    }

    #[tokio::test]
    async fn until_a_deadline_goes_round_and_round_then_answers_the_last_refusal() {
        let started = Instant::now();
        let policy = CallPolicy::until(
            started + Duration::from_millis(200),
            Duration::from_millis(5),
            Duration::from_millis(20),
            elsewhere,
        );
        let (outcome, called) = run(&follower(), &policy, |_| Err(unavailable())).await;
        assert_eq!(outcome.expect_err("down").code, ErrorCode::Unavailable);
        assert!(called.len() > 3, "retried past one pass: {called:?}");
        assert_eq!(called[..4], ["a", "b", "c", "a"]);
        // Not past the deadline: no retry starts unless its pause ends before.
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(150) && elapsed < Duration::from_millis(700),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn an_attempt_unanswered_at_the_deadline_ends_the_call_with_timeout() {
        let policy = CallPolicy::until(
            Instant::now() + Duration::from_millis(50),
            Duration::from_millis(5),
            Duration::from_millis(20),
            elsewhere,
        );
        let outcome = follower()
            .call(&policy, |_| async {
                std::future::pending::<()>().await;
                Ok::<(), ApiError>(())
            })
            .await;
        assert_eq!(outcome.expect_err("silent").code, ErrorCode::Timeout);
    }
}
