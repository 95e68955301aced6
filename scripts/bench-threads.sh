#!/usr/bin/env bash
# Where a scenario's server CPU and WAL bytes go, per request (docs/PERFORMANCE.md).
#
#   scripts/bench-threads.sh [BINARY] SCENARIO [bench options...]
#
# Starts `serve` on a fresh SQLite file (worker on unless CARDPLANE_WORKER=0; logs at `info`, as
# `cardplane bench` runs it, unless CARDPLANE_LOG says otherwise), drives SCENARIO at it
# with `bench --url` (SECONDS per phase, CARDS registrations prepared; 6 and 40000 unless set), and
# prints the bench's line with, per request of the measured phase: the CPU time of the SQLite writer
# thread, of the syncer (the WAL's fsyncs) and of the checkpointer (from /proc/PID/task/*/stat), and
# the bytes the writer wrote (write(2)/pwrite(2), /proc/PID/task/TID/io `wchar`: the WAL, as the
# writer never checkpoints), and
# the CPU time of the runtime's threads (HTTP, JSON, cryptography, reads) and of the load generator
# from the end of the baseline, and the share of the machine's CPU left idle meanwhile.
# The writer is idle during the bench's baseline phase, so its totals belong to the scenario (and
# to the worker's deliveries, which run on it too). Run it twice with two binaries, alternating, to
# compare them: the machine's noise is larger than most differences.
set -euo pipefail
BIN=target/release/cardplane
if [[ $# -gt 0 && -x "$1" && ! "$1" =~ ^(register|lifecycle|get|mix)$ ]]; then BIN=$1; shift; fi
SCENARIO=${1:?usage: $0 [BINARY] SCENARIO [bench options]}; shift
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CARDPLANE_WORKER=${CARDPLANE_WORKER:-1} CARDPLANE_LOG=${CARDPLANE_LOG:-info} "$BIN" serve --listen "127.0.0.1:$PORT" \
  --database-url "sqlite://$DIR/cardplane.db" >"$DIR/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
runtime_ticks() { # CPU ticks of the runtime's threads (workers and blocking pool) so far
  for task in /proc/$SERVER/task/*; do
    # A thread may end between the listing and the read: skip it.
    [[ "$(cat "$task/comm" 2>/dev/null)" =~ ^(tokio-rt-worker|http-[0-9]+)$ ]] && awk '{print $14 + $15}' "$task/stat" 2>/dev/null
  done | awk '{s += $1} END {print s + 0}'
}
"$BIN" bench --url "http://127.0.0.1:$PORT" --scenario "$SCENARIO" --seconds "${SECONDS_PER_PHASE:-6}" \
  --cards "${CARDS:-40000}" "$@" >"$DIR/bench.log" 2>&1 &
BENCH=$!
# The runtime also serves the baseline phase: count its CPU from the moment that phase is printed.
until grep -q baseline "$DIR/bench.log" 2>/dev/null || ! kill -0 $BENCH 2>/dev/null; do sleep 0.05; done
runtime_before=$(runtime_ticks)
idle_ticks() { awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
read -r idle_before all_before < <(idle_ticks)
bench_ticks() { awk '{print $14 + $15}' "/proc/$BENCH/stat" 2>/dev/null; }
bench_before=$(bench_ticks)
# The load generator's own CPU: its /proc entry goes when it exits, so keep the last reading.
(while bench_ticks >"$DIR/bench.ticks.new" && mv "$DIR/bench.ticks.new" "$DIR/bench.ticks"; do sleep 0.1; done) &
wait $BENCH
runtime_after=$(runtime_ticks)
read -r idle_after all_after < <(idle_ticks)
bench_after=$(cat "$DIR/bench.ticks")
line=$(grep -E "^ +[a-z]+: " "$DIR/bench.log" | grep -v healthz | tail -1)
ok=$(sed -E 's/.*\(ok ([0-9]+).*/\1/' <<<"$line")
ticks=$(getconf CLK_TCK)
per_request() { # thread name (as /proc shows it, 15 characters at most), field
  for task in /proc/$SERVER/task/*; do
    [[ "$(cat "$task/comm" 2>/dev/null)" == "$1" ]] || continue
    case $2 in
      cpu) awk -v t="$ticks" -v ok="$ok" '{printf "%.0f", ($14 + $15) / t * 1e6 / ok}' "$task/stat" ;;
      wal) awk -v ok="$ok" '/^wchar/ {printf "%.0f", $2 / ok}' "$task/io" ;;
    esac
  done
}
grep -E "baseline|^ +[a-z]+: " "$DIR/bench.log" | sed -E 's/ +\(ok [0-9]+, failed [0-9]+\)//'
echo "  per request: writer $(per_request sqlite-writer cpu) µs CPU, $(per_request sqlite-writer wal) B written;" \
  "syncer $(per_request sqlite-syncer cpu) µs CPU; checkpointer $(per_request sqlite-checkpoi cpu) µs CPU;" \
  "runtime $(awk -v d=$((runtime_after - runtime_before)) -v t="$ticks" -v ok="$ok" 'BEGIN {printf "%.0f", d / t * 1e6 / ok}') µs CPU;" \
  "load generator $(awk -v d=$((bench_after - bench_before)) -v t="$ticks" -v ok="$ok" 'BEGIN {printf "%.0f", d / t * 1e6 / ok}') µs CPU;" \
  "machine idle $(awk -v i=$((idle_after - idle_before)) -v a=$((all_after - all_before)) 'BEGIN {printf "%.0f", 100 * i / a}')%"
