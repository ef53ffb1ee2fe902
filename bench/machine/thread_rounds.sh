#!/usr/bin/env bash
# Two threads against one on the reference CNN, ROUNDS times, pinned to cores 0 and 1: each
# round's ratio, the machine's own gain from the second core in the same run (a compute loop
# in registers on every thread), and the hypervisor's steal time of the two cores over the
# round (/proc/stat, 10 ms ticks); then the median and range of the rounds. One round is not
# a figure on this shared machine: its ratio moves by ±0.1 from round to round.
#
#   bench/machine/thread_rounds.sh [ROUNDS] [BATCHES]
set -euo pipefail
source "$(dirname "$0")/../peers/common.sh"
rounds=${1:-10}
batches=${2:-150}
steal() { awk '/^cpu[01] / { s += $9 } END { print s }' /proc/stat; }
results=()
for r in $(seq "$rounds"); do
  before=$(steal)
  start=$(date +%s.%N)
  json=$(taskset -c 0,1 target/release/digits bench train --model cnn-ref --batches "$batches" --compare-threads 1,2 --json)
  results+=("$json")
  python3 - "$json" "$r" "$(( $(steal) - before ))" "$start" "$(date +%s.%N)" <<'PY'
import json, sys
run, r, steal, start, end = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
one, two = run["images_per_second"]
print(f"round {r}: 1 thread {one:5.0f} images/s, 2 threads {two:5.0f} images/s, "
      f"ratio {run['ratio_to_first'][1]:.2f}x, compute loop {run['compute_loop_ratio_to_first'][1]:.2f}x, "
      f"steal {steal} ticks in {end - start:.1f} s")
PY
done
python3 - "${results[@]}" <<'PY'
import json, statistics, sys
ratios = sorted(json.loads(a)["ratio_to_first"][1] for a in sys.argv[1:])
print(f"{len(ratios)} rounds: ratio {ratios[0]:.2f}-{ratios[-1]:.2f}x, median {statistics.median(ratios):.3f}x, "
      f"1.8x or more in {sum(r >= 1.8 for r in ratios)}")
PY
