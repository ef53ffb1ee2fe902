#!/usr/bin/env bash
# Training speed of the reference CNN, digits against Keras, side by side in one run on the
# same machine and the same MNIST files: each system times the same number of batches of 128
# images, alternating, ROUNDS times, pinned to the same CPU cores.
#
#   bench/peers/setup.sh                       # once: Keras/TensorFlow into bench/.venv
#   bench/peers/train_speed.sh [THREADS] [BATCHES] [ROUNDS]
set -euo pipefail
source "$(dirname "$0")/common.sh"
threads=${1:-1}
batches=${2:-100}
rounds=${3:-3}
cores=$(seq -s, 0 $((threads - 1)))
for r in $(seq "$rounds"); do
  ours=$(taskset -c "$cores" target/release/digits --threads "$threads" bench train --model cnn-ref --batches "$batches" --json)
  keras=$(taskset -c "$cores" "$py" bench/peers/keras_cnn.py --data-dir "$DIGITS_DATA_DIR" --threads "$threads" --batches "$batches" --json 2>/dev/null | tail -1)
  python3 - "$ours" "$keras" "$r" <<'PY'
import json, sys
ours, keras, r = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
a, b = ours["images_per_second"], keras["images_per_second"]
print(f"round {r}: digits {a:7.0f} images/s | {keras['system']} {b:7.0f} images/s | ratio {a / b:.2f}x")
PY
done
