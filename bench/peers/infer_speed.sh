#!/usr/bin/env bash
# Inference speed of the default CNN: digits against ONNX Runtime running our own model
# (exported with `digits export cnn --onnx`) and PyTorch eager f32 on the same architecture,
# side by side in one run on the same machine, pinned to the same cores, alternating ROUNDS
# times: one normalised image (median latency) and 1000 test images in one call (images/s).
# The CPU is printed first: ratios differ between CPUs.
#
#   bench/peers/setup.sh                       # once: PyTorch, ONNX Runtime into bench/.venv
#   bench/peers/infer_speed.sh [THREADS] [ROUNDS]
set -euo pipefail
source "$(dirname "$0")/common.sh"
threads=${1:-1}
rounds=${2:-3}
cores=$(seq -s, 0 $((threads - 1)))
onnx=$(mktemp --suffix .onnx)
trap 'rm -f "$onnx"' EXIT
target/release/digits export cnn --onnx "$onnx" >/dev/null
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $threads thread(s), $(date -u +%F)"
for r in $(seq "$rounds"); do
  ours=$(taskset -c "$cores" target/release/digits --threads "$threads" bench predict --model cnn --json)
  ort=$(taskset -c "$cores" "$py" bench/peers/ort_infer.py --model "$onnx" --data-dir "$DIGITS_DATA_DIR" --threads "$threads" --json 2>/dev/null | tail -1)
  torch=$(taskset -c "$cores" "$py" bench/peers/torch_infer.py --data-dir "$DIGITS_DATA_DIR" --threads "$threads" --json 2>/dev/null | tail -1)
  python3 - "$ours" "$ort" "$torch" "$r" <<'PY'
import json, sys
ours, r = json.loads(sys.argv[1]), sys.argv[4]
a1, a2 = ours["stages"]["classify_us"], ours["bulk_images_per_second"]
line = f"round {r}: digits ({ours['precision']}) {a1:4.0f} us, {a2:6.0f}/s"
for peer in map(json.loads, sys.argv[2:4]):
    b1, b2 = peer["single_us"], peer["bulk_images_per_second"]
    line += f" | {peer['system']} {b1:4.0f} us ({b1 / a1:.2f}x), {b2:6.0f}/s ({a2 / b2:.2f}x)"
print(line)
PY
done
