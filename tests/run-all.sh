#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit tests, openraft's storage suite, and the
# process-level tests that start real nodes. The command README.md names and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup.sh

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

# One profile for everything (dev, with dependencies optimised): the binaries the process
# tests start are the ones built here.
step "build"
cargo build --workspace --all-targets

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast --failure-output final
    cargo test --workspace --doc
else
    cargo test --workspace --no-fail-fast
fi
