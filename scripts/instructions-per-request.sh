#!/usr/bin/env bash
# Instructions the server executes per request of a scenario, counted by callgrind: a figure the
# machine's noise does not move (two runs of one build agree within 0.3%), for A/B of changes too
# small to see in throughput (docs/PERFORMANCE.md).
#
#   scripts/instructions-per-request.sh [BINARY] [SCENARIO] [REQUESTS]   # register, 1000 by default
#
# Starts `serve` under `valgrind --tool=callgrind` on a fresh SQLite file, drives it with
# `bench --url` at 16 connections, zeroes the counters when the baseline phase ends, and dumps them
# when the scenario's phase ends: for register when the REQUESTS prepared registrations are used
# up, for the other scenarios after REQUESTS seconds (20 by default), divided by the requests the
# bench counted. Under valgrind aws-lc takes its generic P-256 path (no ADX), so the ECDH's share is
# larger than on the machine; the rest compares like for like. Prints the profile's path for
# `callgrind_annotate --inclusive=no`.
set -euo pipefail
BIN=target/release/cardplane
if [[ $# -gt 0 && -x "$1" ]]; then BIN=$1; shift; fi
SCENARIO=${1:-register}
if [[ $SCENARIO == register ]]; then
  REQUESTS=${2:-1000}
  LENGTH=(--seconds 3600 --cards "$REQUESTS")
else
  LENGTH=(--seconds "${2:-20}")
fi
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CARDPLANE_LOG=info valgrind --tool=callgrind --callgrind-out-file="$DIR/callgrind.out" \
  "$BIN" serve --listen "127.0.0.1:$PORT" --database-url "sqlite://$DIR/cardplane.db" >"$DIR/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.2; done
"$BIN" bench --url "http://127.0.0.1:$PORT" --scenario "$SCENARIO" --connections 16 --baseline-seconds 1 \
  "${LENGTH[@]}" >"$DIR/bench.log" 2>&1 &
BENCH=$!
until grep -q baseline "$DIR/bench.log" 2>/dev/null; do sleep 0.1; done
callgrind_control --zero $SERVER >/dev/null 2>&1
wait $BENCH
callgrind_control --dump $SERVER >/dev/null 2>&1
grep -E "^ +$SCENARIO:" "$DIR/bench.log" | sed -E 's/  latency.*//'
REQUESTS=$(grep -E "^ +$SCENARIO:" "$DIR/bench.log" | sed -E 's/.*\(ok ([0-9]+),.*/\1/')
awk -v n="$REQUESTS" '/^summary/ {printf "instructions per request: %.0f (server, all threads)\n", $2 / n}' "$DIR/callgrind.out.1"
echo "profile: $DIR/callgrind.out.1"
