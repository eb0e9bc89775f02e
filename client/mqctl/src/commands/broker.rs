//! `mqctl broker ...`: list brokers with their state and load, decommission one.

use std::io::Write;

use mq_client::{BrokerStatus, Client};

use super::print_json;
use crate::args::{BrokerCommand, Output};

pub async fn run(
    client: &Client,
    command: BrokerCommand,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        BrokerCommand::List => {
            let brokers = client.list_brokers().await?;
            match output {
                Output::Json => print_json(out, &brokers)?,
                Output::Text => write_brokers(out, &brokers)?,
            }
        }
        BrokerCommand::Decommission { id } => {
            client.decommission_broker(id).await?;
            writeln!(
                out,
                "draining broker {id}; `mqctl broker list` shows its replicas moving away"
            )?;
        }
    }
    Ok(())
}

/// The brokers as a table (also in `mqctl cluster status`).
pub(super) fn write_brokers(out: &mut impl Write, brokers: &[BrokerStatus]) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:>6} {:<22} {:<8} {:>8} {:>7}  RACK",
        "ID", "ADDRESS", "STATE", "REPLICAS", "LEADERS"
    )?;
    for b in brokers {
        let state = match (b.broker.alive, b.draining) {
            (true, false) => "alive",
            (true, true) => "draining",
            (false, _) => "dead",
        };
        writeln!(
            out,
            "{:>6} {:<22} {:<8} {:>8} {:>7}  {}",
            b.broker.broker_id,
            b.broker.address,
            state,
            b.replicas,
            b.leaders,
            b.broker.rack.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}
