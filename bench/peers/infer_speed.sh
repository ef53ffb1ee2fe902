#!/usr/bin/env bash
# Inference speed of the default CNN, digits against PyTorch, side by side in one run on the
# same machine, pinned to the same cores, alternating ROUNDS times: one normalised image
# (median latency) and 1000 test images in one call (images/s).
#
#   bench/peers/setup.sh                       # once: PyTorch into bench/.venv
#   bench/peers/infer_speed.sh [THREADS] [ROUNDS]
set -euo pipefail
source "$(dirname "$0")/common.sh"
threads=${1:-1}
rounds=${2:-3}
cores=$(seq -s, 0 $((threads - 1)))
for r in $(seq "$rounds"); do
  ours=$(taskset -c "$cores" target/release/digits --threads "$threads" bench predict --model cnn --json)
  torch=$(taskset -c "$cores" "$py" bench/peers/torch_infer.py --data-dir "$DIGITS_DATA_DIR" --threads "$threads" --json 2>/dev/null | tail -1)
  python3 - "$ours" "$torch" "$r" <<'PY'
import json, sys
ours, torch, r = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
a1, b1 = ours["stages"]["classify_us"], torch["single_us"]
a2, b2 = ours["bulk_images_per_second"], torch["bulk_images_per_second"]
print(f"round {r}: one image: digits {a1:6.0f} us | {torch['system']} {b1:6.0f} us | {b1 / a1:.2f}x   "
      f"1000 images: digits {a2:6.0f}/s | {b2:6.0f}/s | {a2 / b2:.2f}x")
PY
done
