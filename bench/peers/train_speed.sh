#!/usr/bin/env bash
# Training speed of the reference CNN: digits against Keras and against PyTorch in its fastest
# CPU configuration (bench/peers/torch_train.py tries eager f32, channels-last, bf16 autocast and
# torch.compile, and reports the fastest), side by side in one run on the same machine and the
# same MNIST files: each times the same number of batches of 128 images, alternating, ROUNDS
# times, pinned to the same CPU cores. The CPU is printed first: ratios differ between CPUs.
#
#   bench/peers/setup.sh                       # once: Keras/TensorFlow, PyTorch into bench/.venv
#   bench/peers/train_speed.sh [THREADS] [BATCHES] [ROUNDS]
#   PEERS=torch bench/peers/train_speed.sh ... # only PyTorch (PEERS=keras: only Keras)
set -euo pipefail
source "$(dirname "$0")/common.sh"
threads=${1:-1}
batches=${2:-100}
rounds=${3:-3}
peers=${PEERS:-keras,torch}
cores=$(seq -s, 0 $((threads - 1)))
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $threads thread(s), $(date -u +%F)"
for r in $(seq "$rounds"); do
  results=("$(taskset -c "$cores" target/release/digits --threads "$threads" bench train --model cnn-ref --batches "$batches" --json)")
  if [[ $peers == *keras* ]]; then
    results+=("$(taskset -c "$cores" "$py" bench/peers/keras_cnn.py --data-dir "$DIGITS_DATA_DIR" --threads "$threads" --batches "$batches" --json 2>/dev/null | tail -1)")
  fi
  if [[ $peers == *torch* ]]; then
    results+=("$(taskset -c "$cores" "$py" bench/peers/torch_train.py --data-dir "$DIGITS_DATA_DIR" --threads "$threads" --batches "$batches" --json 2>/dev/null | tail -1)")
  fi
  python3 - "$r" "${results[@]}" <<'PY'
import json, sys
r, ours, peers = sys.argv[1], json.loads(sys.argv[2]), [json.loads(p) for p in sys.argv[3:]]
a = ours["images_per_second"]
line = f"round {r}: digits {a:5.0f} images/s"
for p in peers:
    b = p["images_per_second"]
    line += f" | {p['system']} {b:5.0f} images/s, ratio {a / b:.2f}x"
print(line)
PY
done
