//! The history of a chaos run: every operation the workload's processes invoked and how it
//! completed, one JSON object per line, in the shape of Jepsen's histories.
//!
//! An operation is an `invoke` event followed by its completion from the same process: `ok`
//! (it took effect, with what it returned), `fail` (it definitely did not take effect) or
//! `info` (unknown: a timeout, a lost connection; it may or may not have taken effect). The
//! nemesis records its faults as events of process [`NEMESIS`].

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The process id of the nemesis's events.
pub const NEMESIS: u32 = u32::MAX;

/// How an event stands in its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum F {
    /// Appends one record (`key`, `value`) to `partition`; `ok` carries its `offset`.
    Send,
    /// Reads the next records of `partition` in order; `ok` carries them in `reads`.
    Poll,
    /// A plain consumer (re)starts reading `partition` at `offset`: its next poll of the
    /// partition must begin there.
    Assign,
    /// A group member commits its positions; `ok` carries them in `offsets`.
    Commit,
    /// Reads a group's committed offsets; `ok` carries them in `offsets`.
    Offsets,
    /// The read of every partition from its start to its end after the faults healed.
    FinalRead,
    /// A fault: `invoke` when it starts, `info` when it is healed.
    Nemesis,
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub process: u32,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub f: F,
    /// Nanoseconds since the run started (monotonic clock).
    pub time_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The unique value a send writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Whether a send's producer is idempotent (duplicates are then anomalies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent: Option<bool>,
    /// Records read, as `(offset, value)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<(u64, u64)>,
    /// A consumer group's name (group polls, commits, offsets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Committed offsets, as `(partition, offset)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offsets: Vec<(u32, u64)>,
    /// A fault's kind (nemesis events), e.g. `kill-leader`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// An error's text, or a fault's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For a healed fault: milliseconds from healing until every partition had a leader and
    /// all replicas in sync again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_ms: Option<u64>,
}

impl Event {
    /// An event with only the required fields; set the others with struct update syntax.
    pub fn new(process: u32, kind: Kind, f: F, time_ns: u64) -> Self {
        Self {
            process,
            kind,
            f,
            time_ns,
            partition: None,
            key: None,
            value: None,
            offset: None,
            idempotent: None,
            reads: Vec::new(),
            group: None,
            offsets: Vec::new(),
            fault: None,
            detail: None,
            recovered_ms: None,
        }
    }
}

/// Records a run's events in memory and, line by line, in a file (so a run that dies still
/// leaves its history). Clone it for every process.
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<Mutex<RecorderInner>>,
    started: Instant,
}

#[derive(Debug)]
struct RecorderInner {
    events: Vec<Event>,
    file: std::io::BufWriter<std::fs::File>,
}

impl Recorder {
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("create history {}", path.display()))?;
        Ok(Self {
            inner: Arc::new(Mutex::new(RecorderInner {
                events: Vec::new(),
                file: std::io::BufWriter::new(file),
            })),
            started: Instant::now(),
        })
    }

    /// Nanoseconds since the run started.
    pub fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// An event stamped now.
    pub fn event(&self, process: u32, kind: Kind, f: F) -> Event {
        Event::new(process, kind, f, self.now())
    }

    /// Appends `event` (its time is taken as given).
    pub fn record(&self, event: Event) {
        let line = serde_json::to_string(&event).expect("events serialize");
        let mut inner = self.inner.lock().expect("history lock");
        // A history that cannot be written is a failed run, found when it is flushed.
        let _ = writeln!(inner.file, "{line}");
        inner.events.push(event);
    }

    /// Every event so far, in the order recorded.
    pub fn events(&self) -> Vec<Event> {
        self.inner.lock().expect("history lock").events.clone()
    }

    pub fn flush(&self) -> anyhow::Result<()> {
        self.inner
            .lock()
            .expect("history lock")
            .file
            .flush()
            .context("write history")
    }
}

/// Reads a history file written by [`Recorder`].
pub fn read(path: &Path) -> anyhow::Result<Vec<Event>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("open history {}", path.display()))?;
    let mut events = Vec::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        events.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not an event", path.display(), number + 1))?,
        );
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let recorder = Recorder::create(&path).unwrap();
        recorder.record(Event {
            partition: Some(2),
            key: Some("k1".into()),
            value: Some(7),
            idempotent: Some(true),
            ..recorder.event(3, Kind::Invoke, F::Send)
        });
        recorder.record(Event {
            partition: Some(2),
            reads: vec![(0, 7), (1, 9)],
            ..recorder.event(4, Kind::Ok, F::Poll)
        });
        recorder.flush().unwrap();
        assert_eq!(read(&path).unwrap(), recorder.events());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(r#"{"process":3,"type":"invoke","f":"send","#),
            "{text}"
        );
    }
}
