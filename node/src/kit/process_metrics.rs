//! Gauges and counters sampled once a second for the Prometheus endpoint: the tokio runtime
//! (how busy its workers were, the injection queue, live tasks) and the store's RocksDB
//! engine (write stalls, flushes, compactions).

use std::time::{Duration, Instant};

use mq_raft::{EngineCounters, Store};
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(1);

/// Samples until `shutdown`.
pub fn spawn(store: Store, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let runtime = tokio::runtime::Handle::current().metrics();
        let mut busy = busy_total(&runtime);
        let mut sampled = Instant::now();
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let (now, now_busy) = (Instant::now(), busy_total(&runtime));
            let share = (now_busy - busy).as_secs_f64() / (now - sampled).as_secs_f64();
            (busy, sampled) = (now_busy, now);
            metrics::gauge!("mq_runtime_workers").set(runtime.num_workers() as f64);
            metrics::gauge!("mq_runtime_workers_busy").set(share);
            metrics::counter!("mq_runtime_busy_micros_total").absolute(busy.as_micros() as u64);
            metrics::gauge!("mq_runtime_global_queue_depth")
                .set(runtime.global_queue_depth() as f64);
            metrics::gauge!("mq_runtime_alive_tasks").set(runtime.num_alive_tasks() as f64);
            engine(store.engine_counters());
        }
    });
}

/// Time all workers spent busy since the runtime started.
fn busy_total(runtime: &tokio::runtime::RuntimeMetrics) -> Duration {
    (0..runtime.num_workers())
        .map(|worker| runtime.worker_total_busy_duration(worker))
        .sum()
}

fn engine(counters: EngineCounters) {
    metrics::counter!("mq_rocksdb_stall_micros_total").absolute(counters.stall_micros);
    metrics::counter!("mq_rocksdb_flushes_total").absolute(counters.flushes);
    metrics::counter!("mq_rocksdb_flush_write_bytes_total").absolute(counters.flush_write_bytes);
    metrics::counter!("mq_rocksdb_flush_micros_total").absolute(counters.flush_micros);
    metrics::counter!("mq_rocksdb_compactions_total").absolute(counters.compactions);
    metrics::counter!("mq_rocksdb_compaction_write_bytes_total")
        .absolute(counters.compaction_write_bytes);
    metrics::counter!("mq_rocksdb_compaction_micros_total").absolute(counters.compaction_micros);
}
