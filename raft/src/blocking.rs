//! Blocking work (RocksDB reads and scans, snapshot builds, durable writes) run off the async
//! workers on tokio's blocking pool, measured: how many jobs wait for a thread
//! (`mq_blocking_queued`), how long they waited (`mq_blocking_wait_seconds`) and ran
//! (`mq_blocking_run_seconds`), by job kind. tokio's own blocking-queue gauge needs
//! `tokio_unstable`.

use std::time::Instant;

use tokio::task::JoinHandle;

/// Runs `job` on the blocking pool; `kind` names it in the metrics.
pub fn spawn<R, F>(kind: &'static str, job: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let queued = metrics::gauge!("mq_blocking_queued");
    queued.increment(1.0);
    let submitted = Instant::now();
    tokio::task::spawn_blocking(move || {
        queued.decrement(1.0);
        let started = Instant::now();
        metrics::histogram!("mq_blocking_wait_seconds", "kind" => kind)
            .record((started - submitted).as_secs_f64());
        let result = job();
        metrics::histogram!("mq_blocking_run_seconds", "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        result
    })
}
