#!/usr/bin/env bash
# The scale run of docs/PERFORMANCE.md ("A million cards"), in one command:
#
#   scripts/bench-million.sh [BINARY]      # CARDS (1000000), SECONDS_PER_PHASE (5), CONNECTIONS (64)
#
# One server (worker off, as in the other runs) on an empty SQLite file: register, suspend/resume
# and get are measured with `bench --url`; the file is filled through the API with CARDS
# registrations; the three are measured again; the server is killed with `kill -9`, started again
# on the full file and measured a third time. Then the file is checked (`PRAGMA quick_check`) and
# its cards counted against the registrations the runs had acknowledged. Prints each bench line
# (every figure a ratio to the `/healthz` of the same command) and the server's peak RSS (VmHWM)
# at each step. The file stays in the directory printed first, for a look afterwards.
set -euo pipefail
BIN=${1:-target/release/cardplane}
CARDS=${CARDS:-1000000}
SECONDS_PER_PHASE=${SECONDS_PER_PHASE:-5}
CONNECTIONS=${CONNECTIONS:-64}
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
echo "database: $DIR/cardplane.db"

SERVER=
start() {
  CARDPLANE_WORKER=0 "$BIN" serve --listen "127.0.0.1:$PORT" --database-url "sqlite://$DIR/cardplane.db" \
    >>"$DIR/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 600); do curl -sf "$URL/readyz" >/dev/null && return; sleep 0.1; done
  echo "the server did not become ready (see $DIR/server.log)" >&2
  exit 1
}
trap '[[ -n $SERVER ]] && kill $SERVER 2>/dev/null; true' EXIT
peak_rss() { awk '/VmHWM/ {printf "%.1f MB", $2 / 1024}' "/proc/$SERVER/status"; }

# What every acknowledged registration adds up to: the bench's `ok` counts, summed.
acknowledged=0
bench() { # label, then bench options
  local label=$1 line
  shift
  # The scenario's own line: a registration run ends with a `decryption floor` line that is a ratio
  # to the baseline too, but carries no `(ok N` count.
  line=$("$BIN" bench --url "$URL" --connections "$CONNECTIONS" "$@" 2>&1 | grep -E ' x baseline +\(ok ' | tail -n 1)
  printf '%-40s %s\n' "$label" "$(sed -E 's/^ +//' <<<"$line")"
  # Every run registers cards: the fresh ones of register, one per connection for the others.
  local ok
  ok=$(sed -nE 's/.*\(ok ([0-9]+),.*/\1/p' <<<"$line")
  if [[ $line == *"register:"* ]]; then acknowledged=$((acknowledged + ok)); else acknowledged=$((acknowledged + CONNECTIONS)); fi
}
measure() { # when
  bench "$1, register" --scenario register --seconds "$SECONDS_PER_PHASE" --cards 150000
  bench "$1, suspend/resume" --scenario lifecycle --seconds "$SECONDS_PER_PHASE"
  bench "$1, get" --scenario get --seconds "$SECONDS_PER_PHASE"
  echo "peak RSS so far: $(peak_rss)"
}

start
echo "server ready: peak RSS $(peak_rss)"
measure "empty database"
echo "filling with $CARDS registrations (prepared first: a minute or two)"
bench "the fill" --scenario register --seconds 3600 --baseline-seconds 2 --cards "$CARDS"
ls -l "$DIR"/cardplane.db*
measure "$CARDS cards"
kill -9 "$SERVER"
wait "$SERVER" 2>/dev/null || true
echo "killed with kill -9"
start
echo "restarted on the full file: peak RSS $(peak_rss)"
measure "$CARDS cards, after kill -9"
kill "$SERVER"
wait "$SERVER" 2>/dev/null || true
SERVER=
python3 - "$DIR/cardplane.db" "$acknowledged" <<'EOF'
import sqlite3, sys, time
path, acknowledged = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect(path)
began = time.monotonic()
check = db.execute("PRAGMA quick_check").fetchone()[0]
print(f"quick_check: {check} ({time.monotonic() - began:.1f} s)")
cards = db.execute("SELECT count(*) FROM cards").fetchone()[0]
print(f"cards in the file: {cards}; registrations acknowledged by the runs: {acknowledged}")
sys.exit(0 if check == "ok" and cards == acknowledged else 1)
EOF
