#!/usr/bin/env bash
# Load figure for the API: `digits serve` on 127.0.0.1 with the shipped CNN, wrk posting a real
# PNG to /api/v1/predict for DURATION seconds; prints requests/s, latency percentiles, non-200
# answers and the server's resident memory before and after.
#   bench/load/run.sh [DURATION] [CONNECTIONS]        (needs: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-30}
connections=${2:-8}
port=18123
cargo build --release --quiet
target/release/digits serve --port "$port" >/dev/null &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$server/status"; }
echo "resident memory before: $(rss)"
wrk -t2 -c"$connections" -d"${duration}s" --latency -s bench/load/post.lua "http://127.0.0.1:$port/api/v1/predict"
echo "resident memory after: $(rss)"
echo "server metrics (non-200 answers would show here):"
curl -s "http://127.0.0.1:$port/metrics" | grep '^digits_requests_total'
