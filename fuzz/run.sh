#!/usr/bin/env bash
# Runs the fuzz targets, seeded from the bad-input corpus and the examples.
#   fuzz/run.sh SECONDS [TARGET...]      (default: all four targets, one after another)
# Needs cargo-fuzz (`cargo install cargo-fuzz`); works on the stable toolchain through
# RUSTC_BOOTSTRAP, without sanitizers (safe Rust; a panic or an abort is what we look for).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx image json model)
export RUSTC_BOOTSTRAP=1
mkdir -p fuzz/corpus/idx fuzz/corpus/image fuzz/corpus/json fuzz/corpus/model
cp -n tests/corpus/idx/* fuzz/corpus/idx/
cp -n tests/corpus/images/* examples/*.png fuzz/corpus/image/
cp -n tests/corpus/json/* fuzz/corpus/json/
cp -n tests/corpus/models/* models/judge.safetensors fuzz/corpus/model/
for t in "${targets[@]}"; do
  max_len=65536
  [ "$t" = model ] && max_len=262144
  echo "== fuzz $t for ${seconds}s"
  log="fuzz/$t.log"
  status=0
  cargo fuzz run --sanitizer none --release "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=4096 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E "^(#[0-9]+\s+DONE|stat::number_of_executed_units|stat::peak_rss_mb|INFO: seed corpus|SUMMARY)|panicked at" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -30 "$log"
    echo "fuzz $t failed (exit $status); a failing input is kept in fuzz/artifacts/$t"
    exit 1
  fi
done
