#!/usr/bin/env bash
# Instructions executed per request of a scenario, counted by callgrind: a figure the machine's
# noise does not move (two runs of one build agree within 0.3%), for A/B of changes too small to
# see in throughput (docs/PERFORMANCE.md).
#
#   scripts/instructions-per-request.sh [BINARY] [SCENARIO] [REQUESTS]   # register, 1000 by default
#   WHO=generator scripts/instructions-per-request.sh [BINARY] [SCENARIO] [REQUESTS]
#
# By default the server runs under `valgrind --tool=callgrind` on a fresh SQLite file and
# `bench --url` drives it at 16 connections; with WHO=generator the server runs natively and the
# load generator (`bench`) runs under callgrind, to count what it spends per request. The counters
# are zeroed when the baseline phase ends and read when the scenario's phase ends: for register
# when the REQUESTS prepared registrations are used up, for the other scenarios after REQUESTS
# seconds (20 by default), divided by the requests the bench counted. SCENARIO healthz counts the
# baseline phase itself (REQUESTS seconds of it), the no-op route every ratio is measured against.
# Under valgrind aws-lc takes its generic P-256 path (no ADX), so the ECDH's share is larger than
# on the machine; the rest compares like for like. Prints the profile's path for
# `callgrind_annotate --inclusive=no`.
set -euo pipefail
BIN=target/release/cardplane
if [[ $# -gt 0 && -x "$1" ]]; then BIN=$1; shift; fi
SCENARIO=${1:-register}
WHO=${WHO:-server}
case $SCENARIO in
  register) LENGTH=(--seconds 3600 --cards "${2:-1000}" --baseline-seconds 1) ;;
  # The baseline is the phase measured; a registration of one card ends the run after it.
  healthz) LENGTH=(--scenario register --cards 1 --seconds 1 --baseline-seconds "${2:-20}") ;;
  *) LENGTH=(--seconds "${2:-20}" --baseline-seconds 1) ;;
esac
[[ $SCENARIO == healthz ]] || LENGTH=(--scenario "$SCENARIO" "${LENGTH[@]}")
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# `measured` runs the command under callgrind when it is the one WHO names; it is started in the
# background and execs, so that $! is the process callgrind_control talks to.
measured() {
  local who=$1
  shift
  if [[ $who == "$WHO" ]]; then exec valgrind --tool=callgrind --callgrind-out-file="$DIR/callgrind.out" "$@"; fi
  exec "$@"
}
export CARDPLANE_LOG=info
measured server "$BIN" serve --listen "127.0.0.1:$PORT" --database-url "sqlite://$DIR/cardplane.db" \
  >"$DIR/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.2; done
measured generator "$BIN" bench --url "http://127.0.0.1:$PORT" --connections 16 "${LENGTH[@]}" >"$DIR/bench.log" 2>&1 &
LOAD=$!
MEASURED=$SERVER
[[ $WHO == generator ]] && MEASURED=$LOAD
# valgrind echoes the command line (which says --baseline-seconds) into the log: wait for the phase's line.
if [[ $SCENARIO == healthz ]]; then
  until curl -sf "http://127.0.0.1:$PORT/admin/v1/issuers" 2>/dev/null | grep -q BENCH; do sleep 0.1; done
  callgrind_control --zero $MEASURED >/dev/null 2>&1
  LINE="baseline GET"
else
  until grep -q "baseline GET" "$DIR/bench.log" 2>/dev/null; do sleep 0.1; done
  callgrind_control --zero $MEASURED >/dev/null 2>&1
  LINE="^ +$SCENARIO:"
fi
until grep -qE "$LINE" "$DIR/bench.log" 2>/dev/null; do sleep 0.1; done
callgrind_control --dump $MEASURED >/dev/null 2>&1
wait $LOAD
grep -E "$LINE" "$DIR/bench.log" | sed -E 's/  latency.*//'
REQUESTS=$(grep -E "$LINE" "$DIR/bench.log" | sed -E 's/.*\(ok ([0-9]+),.*/\1/')
awk -v n="$REQUESTS" -v who="$WHO" '/^summary/ {printf "instructions per request: %.0f (%s, all threads)\n", $2 / n, who}' \
  "$DIR/callgrind.out.1"
echo "profile: $DIR/callgrind.out.1"
