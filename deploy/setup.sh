#!/usr/bin/env bash
# Installs what building the project needs on a fresh Debian machine of this kind (the Rust
# toolchain is already there): clang and libclang for RocksDB's bindgen. Idempotent and quiet
# when everything is present. Sourced by run-standalone.sh and tests/run-all.sh.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
fi

missing=()
dpkg -s clang >/dev/null 2>&1 || missing+=(clang)
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
# The chaos suite puts nodes in network namespaces and cuts links with nftables (ip and tc
# come with iproute2).
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v tc >/dev/null 2>&1 || missing+=(iproute2)
# ... and skews a node's wall clock with libfaketime.
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (RocksDB's bindgen, the chaos suite)..." >&2
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get -o DPkg::Lock::Timeout=300 update -qq
    $sudo_cmd apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
fi

# One target directory outside the clone, reused by every build and test run: RocksDB's C++
# is compiled once per machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mq-target}"
