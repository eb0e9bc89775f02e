//! `mq-cluster-manager`: parses flags, loads the config, and runs one cluster-manager voter
//! until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use mq_node::args::{CommonArgs, list_override};
use mq_node::kit::config::Override;
use mq_node::kit::{shutdown, telemetry};
use mq_node::manager_node::{self, ManagerNodeConfig};

/// A cluster-manager node: one voter of the control plane's Raft group. Start three (or five)
/// with the same --voters list, then point brokers at them with --cluster-manager.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// This node's id in the group (cluster_manager.node_id).
    #[arg(long)]
    node_id: Option<u64>,
    /// The group's voters on first start, the same on every voter (cluster_manager.voters).
    #[arg(long, value_name = "ID=HOST:PORT,...", value_delimiter = ',')]
    voters: Vec<String>,
    #[command(flatten)]
    common: CommonArgs,
}

impl Args {
    /// The overrides of this binary's own flags.
    fn own_overrides(&self) -> Vec<Override> {
        let mut overrides: Vec<Override> = Vec::new();
        if let Some(id) = self.node_id {
            overrides.push(("cluster_manager.node_id".into(), id.into()));
        }
        overrides.extend(list_override("cluster_manager.voters", &self.voters));
        overrides
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    telemetry::init("info,openraft=warn");
    let config: ManagerNodeConfig = match args.common.load("data_dir", args.own_overrides()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = config.cluster_manager.initial_voters() {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    shutdown::run_until_signal(move |shutdown| async move {
        manager_node::run(config, shutdown).await?.wait().await
    })
}
