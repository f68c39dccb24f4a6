#!/usr/bin/env bash
# The performance targets' figures (docs/benchmarks.md "Targets"): every load-harness
# scenario at the sizes the targets name, against a fresh release server each time.
#
#   benches/targets.sh                      # SQLite
#   BRIGHTCHAT_BENCH_PG=postgres://postgres@127.0.0.1:5432/postgres benches/targets.sh
#   SERVER_BIN=/path/to/other/brightchat benches/targets.sh   # compare another build
#
# Takes about 15 minutes on two cores (most of it seeding 100,000 members). BIG_MEMBERS,
# BIG_OPS and BENCH_SECONDS shrink it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin brightchat --example load
SERVER_BIN=${SERVER_BIN:-target/release/brightchat}
SECONDS_EACH=${BENCH_SECONDS:-10}
BIG_MEMBERS=${BIG_MEMBERS:-100000}
BIG_OPS=${BIG_OPS:-100}

run() {
    if [ -n "${BRIGHTCHAT_BENCH_PG:-}" ]; then
        # A fresh database for each server the harness starts.
        local name="bench_$(date +%s%N)"
        psql -q "$BRIGHTCHAT_BENCH_PG" -c "CREATE DATABASE $name" >/dev/null
        BRIGHTCHAT_DATABASE_URL="${BRIGHTCHAT_BENCH_PG%/*}/$name" \
            target/release/examples/load --server-bin "$SERVER_BIN" "$@"
        psql -q "$BRIGHTCHAT_BENCH_PG" -c "DROP DATABASE $name WITH (FORCE)" >/dev/null
    else
        target/release/examples/load --server-bin "$SERVER_BIN" "$@"
    fi
}

run --scenario channel-send,dm-send,history,history-under-load,search --seconds "$SECONDS_EACH"
run --scenario fanout --subscribers 1000 --seconds "$SECONDS_EACH"
run --scenario fanout --subscribers 10000 --seconds "$SECONDS_EACH"
run --scenario idle-ws --idle 10000
run --scenario presence-wave --wave 1000
# Each start of `startup` makes a new server key for its fresh data dir, which a database
# that already knows another key refuses: on PostgreSQL (one database for the run) skip it.
if [ -z "${BRIGHTCHAT_BENCH_PG:-}" ]; then
    run --scenario startup
fi
run --scenario big-channel --big-members "$BIG_MEMBERS" --big-ops "$BIG_OPS" --seconds "$SECONDS_EACH"
