//! `mqctl group ...`: list, describe, reset offsets, delete consumer groups.

use std::io::Write;

use mq_client::{Client, GroupDescription, ResetTo, TopicPartition};
use serde_json::json;

use super::{optional, print_json};
use crate::args::{GroupCommand, Output};

pub async fn run(
    client: &Client,
    command: GroupCommand,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        GroupCommand::List => list(client, output, out).await,
        GroupCommand::Describe { group } => {
            let described = client.describe_group(&group).await?;
            match output {
                Output::Json => print_json(out, &description_json(&described)),
                Output::Text => write_description(out, &described),
            }
        }
        GroupCommand::ResetOffsets {
            group,
            topic,
            partitions,
            to_earliest,
            to_latest,
            to_offset,
            to_timestamp,
            shift_by,
        } => {
            let to = if to_earliest {
                ResetTo::Earliest
            } else if to_latest {
                ResetTo::Latest
            } else if let Some(offset) = to_offset {
                ResetTo::Offset(offset)
            } else if let Some(ms) = to_timestamp {
                ResetTo::Timestamp(ms)
            } else if let Some(by) = shift_by {
                ResetTo::ShiftBy(by)
            } else {
                anyhow::bail!(
                    "name where to: --to-earliest, --to-latest, --to-offset, --to-timestamp or --shift-by"
                );
            };
            reset_offsets(client, &group, &topic, &partitions, to, output, out).await
        }
        GroupCommand::Delete { group } => {
            client.delete_group(&group).await?;
            if output == Output::Text {
                writeln!(out, "deleted group {group}")?;
            }
            Ok(())
        }
    }
}

async fn list(client: &Client, output: Output, out: &mut impl Write) -> anyhow::Result<()> {
    let groups = client.list_groups().await?;
    match output {
        Output::Json => print_json(
            out,
            &groups
                .iter()
                .map(|g| json!({"group": g.group_id, "members": g.members, "state": g.state}))
                .collect::<Vec<_>>(),
        )?,
        Output::Text => {
            writeln!(out, "{:<32} {:>7}  STATE", "GROUP", "MEMBERS")?;
            for g in groups {
                writeln!(out, "{:<32} {:>7}  {}", g.group_id, g.members, g.state)?;
            }
        }
    }
    Ok(())
}

fn description_json(described: &GroupDescription) -> serde_json::Value {
    json!({
        "group": described.group_id,
        "state": described.state,
        "assignor": described.assignor,
        "group_epoch": described.group_epoch,
        "members": described.members.iter().map(|m| json!({
            "member_id": m.member_id,
            "instance_id": m.instance_id,
            "member_epoch": m.member_epoch,
            "topics": m.topics,
            "assignment": refs_json(&m.assignment),
            "revoking": refs_json(&m.revoking),
            "last_heartbeat_ms_ago": m.last_heartbeat_ms_ago,
        })).collect::<Vec<_>>(),
        "offsets": described.offsets.iter().map(|o| json!({
            "topic": o.topic,
            "partition": o.partition,
            "committed": o.committed,
            "high_watermark": o.high_watermark,
            "lag": o.lag,
        })).collect::<Vec<_>>(),
    })
}

fn write_description(out: &mut impl Write, described: &GroupDescription) -> anyhow::Result<()> {
    writeln!(
        out,
        "group {}: {} (assignor {}, epoch {})",
        described.group_id, described.state, described.assignor, described.group_epoch
    )?;
    writeln!(
        out,
        "\n{:<38} {:<16} {:>5}  ASSIGNMENT  (REVOKING)",
        "MEMBER", "INSTANCE", "EPOCH"
    )?;
    for m in &described.members {
        writeln!(
            out,
            "{:<38} {:<16} {:>5}  {}  ({})",
            m.member_id,
            m.instance_id.as_deref().unwrap_or("-"),
            m.member_epoch,
            partitions_text(&m.assignment),
            partitions_text(&m.revoking)
        )?;
    }
    writeln!(
        out,
        "\n{:<32} {:>9} {:>12} {:>14} {:>10}",
        "TOPIC", "PARTITION", "COMMITTED", "HIGH-WATERMARK", "LAG"
    )?;
    for o in &described.offsets {
        writeln!(
            out,
            "{:<32} {:>9} {:>12} {:>14} {:>10}",
            o.topic,
            o.partition,
            optional(o.committed),
            optional(o.high_watermark),
            optional(o.lag)
        )?;
    }
    Ok(())
}

/// Resets a group's committed offsets of `topic` (`partitions`, or all) and prints the new
/// ones.
async fn reset_offsets(
    client: &Client,
    group: &str,
    topic: &str,
    partitions: &[u32],
    to: ResetTo,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let reset = client.reset_offsets(group, topic, partitions, to).await?;
    match output {
        Output::Json => print_json(
            out,
            &reset
                .iter()
                .map(|o| json!({"topic": o.topic, "partition": o.partition, "offset": o.offset}))
                .collect::<Vec<_>>(),
        )?,
        Output::Text => {
            for o in reset {
                writeln!(out, "{}/{} -> {}", o.topic, o.partition, o.offset)?;
            }
        }
    }
    Ok(())
}

fn partitions_text(refs: &[TopicPartition]) -> String {
    let listed: Vec<String> = refs
        .iter()
        .map(|r| format!("{}/{}", r.topic, r.partition))
        .collect();
    if listed.is_empty() {
        "-".to_owned()
    } else {
        listed.join(",")
    }
}

fn refs_json(refs: &[TopicPartition]) -> serde_json::Value {
    refs.iter()
        .map(|r| json!({"topic": r.topic, "partition": r.partition}))
        .collect()
}
