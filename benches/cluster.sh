#!/usr/bin/env bash
# Several nodes on one PostgreSQL database (docs/benchmarks.md "Several nodes"): channel-send
# throughput with one node and with two, and cross-node latency (requests on node 1, sockets
# on node 2) with and without Redis, against fresh release servers and a fresh database each
# run.
#
#   benches/cluster.sh                     # without Redis; 1 node vs 2 nodes
#   REDIS=1 benches/cluster.sh             # also with a private redis-server
#   BRIGHTCHAT_BENCH_PG=postgres://user@host:5432/postgres benches/cluster.sh
#   SERVER_BIN=/path/to/other/brightchat NO_BUILD=1 benches/cluster.sh
#
# REDIS=1 starts `redis-server` (on PATH) on a free loopback port, with no persistence, and
# stops it at the end. BENCH_SECONDS (default 10) is each phase's length, RATE (200) the
# cross-node steady rate, BURST (1000) its burst; ONLY=channel-send or ONLY=cross-node runs
# just those. About 1.5 minutes on two cores (2 with REDIS), most of it cross-node's.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release --bin brightchat --example load
fi
SERVER_BIN=${SERVER_BIN:-target/release/brightchat}
PG=${BRIGHTCHAT_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}
SECONDS_EACH=${BENCH_SECONDS:-10}
RATE=${RATE:-200}
BURST=${BURST:-1000}
unset BRIGHTCHAT_REDIS_URL

redis_pid=""
redis_dir=""
cleanup() {
    if [ -n "$redis_pid" ]; then
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
    if [ -n "$redis_dir" ]; then
        rm -rf "$redis_dir"
    fi
}
trap cleanup EXIT

# run LABEL [REDIS_URL] -- harness arguments: a fresh database for each run.
run() {
    local label=$1 redis=$2
    shift 2
    if [ -n "${ONLY:-}" ] && [[ "$label" != "$ONLY"* ]]; then
        return 0
    fi
    local name="cluster_$(date +%s%N)"
    psql -q "$PG" -c "CREATE DATABASE $name" >/dev/null
    echo "== $label"
    local status=0
    # An empty BRIGHTCHAT_REDIS_URL counts as unset.
    BRIGHTCHAT_DATABASE_URL="${PG%/*}/$name" BRIGHTCHAT_REDIS_URL="$redis" \
        target/release/examples/load --server-bin "$SERVER_BIN" "$@" || status=$?
    psql -q "$PG" -c "DROP DATABASE $name WITH (FORCE)" >/dev/null
    return $status
}

cross=(--scenario cross-node --seconds "$SECONDS_EACH" --rate "$RATE" --burst "$BURST")

run "channel-send, 1 node" "" --nodes 1 --scenario channel-send --seconds "$SECONDS_EACH"
run "channel-send, 2 nodes" "" --nodes 2 --scenario channel-send --seconds "$SECONDS_EACH"
run "cross-node, 1 node (same-node baseline)" "" --nodes 1 "${cross[@]}"
run "cross-node, 2 nodes, no Redis" "" --nodes 2 "${cross[@]}"

if [ -n "${REDIS:-}" ]; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis_dir=$(mktemp -d)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$redis_dir" --daemonize no >"$redis_dir/log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 50); do
        if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
        sleep 0.1
    done
    url="redis://127.0.0.1:$port"
    run "channel-send, 2 nodes, Redis" "$url" --nodes 2 --scenario channel-send --seconds "$SECONDS_EACH"
    run "cross-node, 1 node, Redis" "$url" --nodes 1 "${cross[@]}"
    run "cross-node, 2 nodes, Redis" "$url" --nodes 2 "${cross[@]}"
fi
