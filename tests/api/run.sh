#!/usr/bin/env bash
# schemathesis (PyPI) against the live server's OpenAPI document: every operation, every check,
# with a corrections database, a models folder and an admin token, so that every endpoint is on.
# Usage: tests/api/run.sh [EXAMPLES]   (DIGITS_BIN defaults to target/release/digits)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${DIGITS_BIN:-$root/target/release/digits}"
examples="${1:-100}"
venv="$root/target/schemathesis-venv"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi
tmp="$(mktemp -d)"
port=$((20000 + RANDOM % 5000))
mkdir -p "$tmp/models"
DIGITS_ADMIN_TOKEN="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
export DIGITS_ADMIN_TOKEN
printf '%s\n' "$DIGITS_ADMIN_TOKEN" >"$tmp/admin.token"
"$bin" serve --port "$port" --feedback-db "$tmp/feedback.sqlite" --models-dir "$tmp/models" \
  --admin-token-file "$tmp/admin.token" --feedback-per-minute 1000000 --feedback-burst 1000000 \
  >"$tmp/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$tmp"' EXIT
# Run from the temporary folder, so that schemathesis' cache goes with it. One worker: with two
# threads, hypothesis' ast.parse can fail in CPython 3.11 ("AST constructor recursion depth
# mismatch", python/cpython#106905), an error in the tester, not in the API; one worker is as fast.
cd "$tmp"
"$venv/bin/schemathesis" --config-file "$root/tests/api/schemathesis.toml" run \
  "http://127.0.0.1:$port/api/openapi.json" --wait-for-schema 30 --checks all \
  --max-examples "$examples" --workers 1 --seed 1
if grep -qF "$DIGITS_ADMIN_TOKEN" "$tmp/server.log"; then
  echo "the admin token reached the server's log" >&2
  exit 1
fi
