//! `mq-broker`: parses flags, loads the config, and runs a node until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;
use mq_broker::BrokerConfig;
use mq_common::config::{self, Override};

// Producer batches are MiB-sized buffers allocated and freed at a high rate; glibc's malloc
// maps and unmaps each one (page faults on every batch), mimalloc reuses them.
#[global_allocator]
static ALLOCATOR: MiMalloc = MiMalloc;

/// A message broker node. `mq-broker --standalone` runs a complete single-node broker with
/// data in ./data, serving clients on 127.0.0.1:7070.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Run broker and cluster manager in one process.
    #[arg(long)]
    standalone: bool,
    /// TOML config file; flags and MQ_<SECTION>__<KEY> variables override its keys.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (node.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on (server.listen).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address to advertise to clients and peers (server.advertised_address).
    #[arg(long, value_name = "HOST:PORT")]
    advertised_address: Option<String>,
    /// This broker's id (node.broker_id).
    #[arg(long)]
    broker_id: Option<u32>,
    /// Cluster-manager addresses, comma-separated (cluster.manager_addresses).
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    cluster_manager: Vec<String>,
    /// Any config key, e.g. --set storage.fsync=false (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl Args {
    fn overrides(&self) -> Result<Vec<Override>, config::ConfigError> {
        let mut overrides: Vec<Override> = Vec::new();
        if self.standalone {
            overrides.push(("node.standalone".into(), true.into()));
        }
        if let Some(dir) = &self.data_dir {
            overrides.push(("node.data_dir".into(), dir.display().to_string().into()));
        }
        if let Some(listen) = &self.listen {
            overrides.push(("server.listen".into(), listen.clone().into()));
        }
        if let Some(address) = &self.advertised_address {
            overrides.push(("server.advertised_address".into(), address.clone().into()));
        }
        if let Some(id) = self.broker_id {
            overrides.push(("node.broker_id".into(), id.into()));
        }
        if !self.cluster_manager.is_empty() {
            let addresses: Vec<config::Value> = self
                .cluster_manager
                .iter()
                .map(|a| a.clone().into())
                .collect();
            overrides.push(("cluster.manager_addresses".into(), addresses.into()));
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
    let config: BrokerConfig = match args
        .overrides()
        .and_then(|overrides| config::load(args.config.as_deref(), &overrides))
    {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    mq_common::shutdown::run_until_signal(move |shutdown| async move {
        mq_broker::run(config, shutdown).await?.wait().await
    })
}
