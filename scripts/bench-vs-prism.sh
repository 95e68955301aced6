#!/usr/bin/env bash
# cardplane beside Prism, one machine, one sitting.
#
# Prism (Stoplight's mock server) is started on cardplane's own OpenAPI document, so it mocks
# exactly the calls cardplane serves; `cardplane bench --compare-with` then drives the same
# requests (same bodies, same token) at both, after the /healthz baseline, and prints every figure
# as a ratio. Prism answers from the document's examples and keeps nothing; cardplane decrypts,
# vaults and fsyncs every write. Usage:
#
#   scripts/bench-vs-prism.sh [bench options...]    # e.g. --scenario register --seconds 10
#
# Prism is installed with npm into target/prism (pinned below) the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

PRISM_VERSION=5.14.2
PRISM_DIR=target/prism
PRISM="$PRISM_DIR/node_modules/.bin/prism"
CARDPLANE=target/release/cardplane

if [[ ! -x $PRISM ]]; then
  mkdir -p "$PRISM_DIR"
  npm install --prefix "$PRISM_DIR" --no-audit --no-fund --silent "@stoplight/prism-cli@$PRISM_VERSION"
fi
cargo build --release --quiet -p cardplane

spec=$(mktemp --suffix .json)
log=$(mktemp)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$CARDPLANE" openapi > "$spec"
"$PRISM" mock --host 127.0.0.1 --port "$port" "$spec" > "$log" 2>&1 &
prism_pid=$!
trap 'kill $prism_pid 2>/dev/null || true; rm -f "$spec" "$log"' EXIT
for _ in $(seq 1 100); do
  if curl -fs -o /dev/null "http://127.0.0.1:$port/healthz"; then break; fi
  sleep 0.2
done
curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" || { cat "$log"; echo "Prism did not start" >&2; exit 1; }

"$CARDPLANE" bench --compare-with "http://127.0.0.1:$port" "$@"
