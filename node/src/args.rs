//! The flags both server binaries take, and how flags become config overrides.

use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::kit::config::{self, ConfigError, Override};

/// Flags every server binary takes. Each names the config key it sets; `--set` sets any key
/// and wins over the others.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// TOML config file; flags and MQ_<SECTION>__<KEY> variables override its keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory, where the node's RocksDB lives (node.data_dir of mq-broker, data_dir of
    /// mq-cluster-manager).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on (server.listen).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Address to advertise to clients and peers (server.advertised_address).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertised_address: Option<String>,
    /// Any config key, e.g. --set storage.fsync=false (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl CommonArgs {
    /// The overrides of these flags, after the binary's own (`first`): the data directory
    /// under `data_dir_key`, then listen and advertised addresses, then `--set`.
    pub fn overrides(
        &self,
        data_dir_key: &str,
        first: Vec<Override>,
    ) -> Result<Vec<Override>, ConfigError> {
        let mut overrides = first;
        if let Some(dir) = &self.data_dir {
            overrides.push((data_dir_key.into(), dir.display().to_string().into()));
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

    /// Loads the config: defaults, the `--config` file, `MQ_..` variables, then the flags.
    pub fn load<T>(&self, data_dir_key: &str, first: Vec<Override>) -> Result<T, ConfigError>
    where
        T: Serialize + DeserializeOwned + Default,
    {
        let overrides = self.overrides(data_dir_key, first)?;
        config::load(self.config.as_deref(), &overrides)
    }
}

/// A list flag (`--voters a,b`) as one override, when given.
pub fn list_override(key: &str, values: &[String]) -> Option<Override> {
    if values.is_empty() {
        return None;
    }
    let values: Vec<config::Value> = values.iter().map(|v| v.clone().into()).collect();
    Some((key.into(), values.into()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Args {
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn flags_become_overrides_and_set_wins() {
        let args = Args::parse_from([
            "bin",
            "--data-dir",
            "/d",
            "--listen",
            "127.0.0.1:1",
            "--set",
            "server.listen=127.0.0.1:2",
        ]);
        let first = vec![("node.broker_id".to_owned(), 7.into())];
        let overrides = args.common.overrides("node.data_dir", first).unwrap();
        let keys: Vec<&str> = overrides.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "node.broker_id",
                "node.data_dir",
                "server.listen",
                "server.listen"
            ]
        );
        assert_eq!(overrides[3].1.as_str(), Some("127.0.0.1:2"));
        assert!(
            Args::parse_from(["bin", "--set", "novalue"])
                .common
                .overrides("data_dir", Vec::new())
                .is_err()
        );
    }
}
