//! What every server process does the same way: config loading ([`config`]), binding and
//! serving with health and reflection ([`server`]), tracing ([`telemetry`]), runtime and
//! storage-engine metrics ([`process_metrics`]) and signals ([`shutdown`]).

pub mod config;
pub mod process_metrics;
pub mod server;
pub mod shutdown;
pub mod telemetry;
