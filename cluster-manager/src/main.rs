//! `mq-cluster-manager`: parses flags, loads the config, and runs one cluster-manager voter
//! until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mq_cluster_manager::ManagerNodeConfig;
use mq_common::config::{self, Override};

/// A cluster-manager node: one voter of the control plane's Raft group. Start three (or five)
/// with the same --voters list, then point brokers at them with --cluster-manager.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TOML config file; flags and MQ_<SECTION>__<KEY> variables override its keys.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// This node's id in the group (cluster_manager.node_id).
    #[arg(long)]
    node_id: Option<u64>,
    /// The group's voters on first start, the same on every voter (cluster_manager.voters).
    #[arg(long, value_name = "ID=HOST:PORT,...", value_delimiter = ',')]
    voters: Vec<String>,
    /// Data directory (data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on (server.listen).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address to advertise to brokers, clients and peers (server.advertised_address).
    #[arg(long, value_name = "HOST:PORT")]
    advertised_address: Option<String>,
    /// Any config key, e.g. --set cluster_manager.replace_delay=30s (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl Args {
    fn overrides(&self) -> Result<Vec<Override>, config::ConfigError> {
        let mut overrides: Vec<Override> = Vec::new();
        if let Some(id) = self.node_id {
            overrides.push(("cluster_manager.node_id".into(), id.into()));
        }
        if !self.voters.is_empty() {
            let voters: Vec<config::Value> = self.voters.iter().map(|v| v.clone().into()).collect();
            overrides.push(("cluster_manager.voters".into(), voters.into()));
        }
        if let Some(dir) = &self.data_dir {
            overrides.push(("data_dir".into(), dir.display().to_string().into()));
        }
        if let Some(listen) = &self.listen {
            overrides.push(("server.listen".into(), listen.clone().into()));
        }
        if let Some(address) = &self.advertised_address {
            overrides.push(("server.advertised_address".into(), address.clone().into()));
        }
        for text in &self.set {
            overrides.push(config::parse_override(text)?);
        }
        Ok(overrides)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    mq_common::telemetry::init("info,openraft=warn");
    let config: ManagerNodeConfig = match args
        .overrides()
        .and_then(|overrides| config::load(args.config.as_deref(), &overrides))
    {
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
    mq_common::shutdown::run_until_signal(move |shutdown| async move {
        mq_cluster_manager::node::run(config, shutdown)
            .await?
            .wait()
            .await
    })
}
