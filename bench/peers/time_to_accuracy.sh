#!/usr/bin/env bash
# Time to a test accuracy (99.2% unless told) from a cold start, digits against the peers' usual
# recipes, in one run on the same machine and MNIST files. Ours: `digits train --model
# cnn-small`, or `cnn-minute` for targets of 99.5% and above (fixed recipes chosen on the
# validation split, scored once on the test set at the end), timed from process start to exit.
# Peers: bench/peers/time_to_accuracy.py, scored after every epoch.
#
#   bench/peers/setup.sh                       # once: PyTorch and Keras into bench/.venv
#   bench/peers/time_to_accuracy.sh [THREADS] [TARGET]
set -euo pipefail
source "$(dirname "$0")/common.sh"
threads=${1:-2}
target=${2:-0.992}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
model=$(python3 -c "import sys; print('cnn-minute' if float(sys.argv[1]) >= 0.995 else 'cnn-small')" "$target")
start=$(date +%s.%N)
target/release/digits --threads "$threads" train --model "$model" --out "$out/ours.safetensors" | tee "$out/log" | grep -v '^epoch'
end=$(date +%s.%N)
acc=$(sed -n 's/.*test accuracy \([0-9.]*\)%.*/\1/p' "$out/log")
python3 - "$model" "$start" "$end" "$acc" "$target" <<'PY'
import sys
model = sys.argv[1]
start, end, acc, target = map(float, sys.argv[2:])
ok = "reached" if acc / 100 >= target else "NOT reached"
print(f"digits {model}: {end - start:.1f} s from start to exit, test accuracy {acc:.2f}% ({ok} {100 * target:.1f}%)")
PY
for fw in pytorch keras; do
  "$py" bench/peers/time_to_accuracy.py --data-dir "$DIGITS_DATA_DIR" --framework "$fw" \
    --threads "$threads" --target "$target" 2>/dev/null
done
