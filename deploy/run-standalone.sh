#!/usr/bin/env bash
# Builds and runs a standalone node (broker + cluster manager in one process) with the
# embedded default config: data in ./data, clients served on 127.0.0.1:7070. Extra arguments
# go to mq-broker (e.g. --data-dir DIR, --listen HOST:PORT, --config FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup.sh
cargo build --bin mq-broker --bin mqctl
exec "$CARGO_TARGET_DIR/debug/mq-broker" --standalone "$@"
