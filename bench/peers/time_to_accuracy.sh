#!/usr/bin/env bash
# Time to 99.2% test accuracy from a cold start, digits against the peers' usual recipes, in one
# run on the same machine and MNIST files. Ours: `digits train --model cnn-small` (a fixed
# recipe chosen on the validation split, scored once on the test set at the end), timed from
# process start to exit. Peers: bench/peers/time_to_accuracy.py, scored after every epoch.
#
#   bench/peers/setup.sh                       # once: PyTorch and Keras into bench/.venv
#   bench/peers/time_to_accuracy.sh [THREADS] [TARGET]
set -euo pipefail
source "$(dirname "$0")/common.sh"
threads=${1:-2}
target=${2:-0.992}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
start=$(date +%s.%N)
target/release/digits --threads "$threads" train --model cnn-small --out "$out/small.safetensors" | tee "$out/log" | grep -v '^epoch'
end=$(date +%s.%N)
acc=$(sed -n 's/.*test accuracy \([0-9.]*\)%.*/\1/p' "$out/log")
python3 - "$start" "$end" "$acc" "$target" <<'PY'
import sys
start, end, acc, target = map(float, sys.argv[1:])
ok = "reached" if acc / 100 >= target else "NOT reached"
print(f"digits cnn-small: {end - start:.1f} s from start to exit, test accuracy {acc:.2f}% ({ok} {100 * target:.1f}%)")
PY
for fw in pytorch keras; do
  "$py" bench/peers/time_to_accuracy.py --data-dir "$DIGITS_DATA_DIR" --framework "$fw" \
    --threads "$threads" --target "$target" 2>/dev/null
done
