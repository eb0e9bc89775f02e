//! What every server process does the same way: config loading ([`config`]), binding and
//! serving with health and reflection ([`server`]), tracing ([`telemetry`]) and signals
//! ([`shutdown`]).

pub mod config;
pub mod server;
pub mod shutdown;
pub mod telemetry;
