//! `mqctl cluster ...`: the cluster's status at a glance, and rebalancing.

use std::io::Write;

use mq_client::{Client, ClusterStatus};

use super::broker::write_brokers;
use super::print_json;
use crate::args::{ClusterCommand, Output};

pub async fn run(
    client: &Client,
    command: ClusterCommand,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status => {
            let status = client.cluster_status().await?;
            match output {
                Output::Json => print_json(out, &status),
                Output::Text => write_status(out, &status),
            }
        }
        ClusterCommand::Rebalance => rebalance(client, output, out).await,
    }
}

fn write_status(out: &mut impl Write, status: &ClusterStatus) -> anyhow::Result<()> {
    writeln!(out, "CLUSTER MANAGER")?;
    for m in &status.managers {
        let role = if status.manager_leader_id == Some(m.node_id) {
            "leader"
        } else if m.voter {
            "voter"
        } else {
            "learner"
        };
        writeln!(out, "  {:>4} {:<22} {role}", m.node_id, m.address)?;
    }
    if status.manager_leader_id.is_none() {
        writeln!(out, "  (no leader)")?;
    }
    writeln!(out, "\nBROKERS")?;
    write_brokers(out, &status.brokers)?;
    writeln!(
        out,
        "\nTOPICS {}  PARTITIONS {}  UNDER-REPLICATED {}  OFFLINE {}",
        status.topics,
        status.partitions,
        status.under_replicated.len(),
        status.offline.len()
    )?;
    for (topic, partition) in &status.under_replicated {
        writeln!(out, "  under-replicated {topic}/{partition}")?;
    }
    for (topic, partition) in &status.offline {
        writeln!(out, "  offline          {topic}/{partition}")?;
    }
    Ok(())
}

async fn rebalance(client: &Client, output: Output, out: &mut impl Write) -> anyhow::Result<()> {
    let moves = client.rebalance().await?;
    match output {
        Output::Json => print_json(out, &moves)?,
        Output::Text if moves.is_empty() => writeln!(out, "already balanced")?,
        Output::Text => {
            for m in &moves {
                writeln!(
                    out,
                    "moving {}/{} from broker {} to broker {}",
                    m.topic, m.partition, m.from_broker_id, m.to_broker_id
                )?;
            }
        }
    }
    Ok(())
}
