//! What each noun of `mqctl` does, one file per noun: `topic`, `cluster`, `broker`, `produce`,
//! `consume`, `group`, `queue` (with `dlq`). Each prints text or, with `--output json`, JSON.

use std::io::Write;

pub mod broker;
pub mod cluster;
pub mod consume;
pub mod group;
pub mod produce;
pub mod queue;
pub mod topic;

fn print_json(out: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// `value`, or `-` when there is none.
fn optional(value: Option<u64>) -> String {
    value.map_or("-".to_owned(), |v| v.to_string())
}
