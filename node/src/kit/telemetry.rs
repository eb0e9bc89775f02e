//! Tracing setup for binaries. Libraries only emit spans and events.

use tracing_subscriber::EnvFilter;

/// Installs a formatting subscriber on stderr. The filter comes from `MQ_LOG` (then
/// `RUST_LOG`), defaulting to `default_filter`, e.g. `"info,openraft=warn"`.
pub fn init(default_filter: &str) {
    let filter = std::env::var("MQ_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    // A second init (tests embedding a server twice) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
