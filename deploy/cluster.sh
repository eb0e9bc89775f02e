#!/usr/bin/env bash
# A local cluster on loopback: 3 cluster-manager voters (127.0.0.1:7080-7082) and 3 brokers
# (127.0.0.1:7070-7072, so mqctl's default server is broker 1). Data and logs go to
# ./cluster-data/<node>/ (override with MQ_CLUSTER_DIR).
#
#   deploy/cluster.sh start            build, then start every node not running
#   deploy/cluster.sh status           which nodes run (pid) and `mqctl cluster status`
#   deploy/cluster.sh stop NODE        SIGTERM one node (graceful: leadership handed off)
#   deploy/cluster.sh kill NODE        SIGKILL one node
#   deploy/cluster.sh restart NODE     start one stopped or killed node again
#   deploy/cluster.sh down             kill every node and delete ./cluster-data
#
# NODE is cm1, cm2, cm3, broker1, broker2 or broker3. Extra MQ_... variables reach every node.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup.sh

DIR="${MQ_CLUSTER_DIR:-$PWD/cluster-data}"
BIN="$CARGO_TARGET_DIR/debug"
MANAGERS=(cm1 cm2 cm3)
BROKERS=(broker1 broker2 broker3)
VOTERS="1=127.0.0.1:7080,2=127.0.0.1:7081,3=127.0.0.1:7082"
MANAGER_ADDRESSES="127.0.0.1:7080,127.0.0.1:7081,127.0.0.1:7082"

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# The command line of a node.
command_of() {
    local node=$1 n=${1: -1}
    case $node in
        cm[1-3]) echo "$BIN/mq-cluster-manager --node-id $n --voters $VOTERS \
            --listen 127.0.0.1:$((7079 + n)) --data-dir $DIR/$node/data \
            --set cluster_manager.default_replication_factor=3" ;;
        broker[1-3]) echo "$BIN/mq-broker --broker-id $n --cluster-manager $MANAGER_ADDRESSES \
            --listen 127.0.0.1:$((7069 + n)) --data-dir $DIR/$node/data" ;;
        *) echo "unknown node '$node' (cm1-3, broker1-3)" >&2; exit 2 ;;
    esac
}

pid_of() {
    local file="$DIR/$1/pid"
    [ -f "$file" ] && kill -0 "$(cat "$file")" 2>/dev/null && cat "$file"
}

start_node() {
    local node=$1
    command_of "$node" >/dev/null
    if pid=$(pid_of "$node"); then
        echo "$node already running (pid $pid)"
        return
    fi
    mkdir -p "$DIR/$node"
    # shellcheck disable=SC2046
    nohup $(command_of "$node") >>"$DIR/$node/node.log" 2>&1 &
    echo $! >"$DIR/$node/pid"
    echo "$node started (pid $!, log $DIR/$node/node.log)"
}

signal_node() {
    local signal=$1 node=$2
    command_of "$node" >/dev/null
    local pid
    if ! pid=$(pid_of "$node"); then
        echo "$node is not running" >&2
        exit 1
    fi
    kill "-$signal" "$pid"
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$DIR/$node/pid"; echo "$node stopped ($signal)"; return; }
        sleep 0.1
    done
    echo "$node did not stop within 30 s" >&2
    exit 1
}

case "${1:-}" in
    start)
        cargo build --bin mq-broker --bin mq-cluster-manager --bin mqctl
        for node in "${MANAGERS[@]}" "${BROKERS[@]}"; do start_node "$node"; done
        echo "clients: --server 127.0.0.1:7070 (any broker); status: $0 status"
        ;;
    status)
        for node in "${MANAGERS[@]}" "${BROKERS[@]}"; do
            if pid=$(pid_of "$node"); then echo "$node running (pid $pid)"; else echo "$node stopped"; fi
        done
        "$BIN/mqctl" --server 127.0.0.1:7070 cluster status || true
        ;;
    stop) [ $# -eq 2 ] || usage; signal_node TERM "$2" ;;
    kill) [ $# -eq 2 ] || usage; signal_node KILL "$2" ;;
    restart) [ $# -eq 2 ] || usage; start_node "$2" ;;
    down)
        for node in "${MANAGERS[@]}" "${BROKERS[@]}"; do
            if pid=$(pid_of "$node"); then kill -KILL "$pid"; fi
        done
        rm -rf "$DIR"
        echo "cluster removed"
        ;;
    *) usage ;;
esac
