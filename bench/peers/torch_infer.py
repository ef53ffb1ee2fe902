"""PyTorch's side of bench/peers/infer_speed.sh: the default `cnn` architecture (see
crates/model/src/arch.rs) in eval mode, timed on real MNIST test images the way
`digits bench predict` times ours: one normalised image (median of RUNS) and 1000 images in
one call (best of 5). Weights are random: speed does not depend on them.

Usage: python torch_infer.py --data-dir DIR [--threads N] [--runs R] [--bulk B] [--json]
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import default_cnn, read_idx  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--bulk", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    net = default_cnn().eval()
    x = read_idx(a.data_dir, "t10k-images-idx3-ubyte")[: a.bulk].astype("float32") / 255.0
    X = torch.from_numpy(x[:, None, :, :].copy())
    one = X[:1]
    with torch.inference_mode():
        for _ in range(a.runs // 10 + 1):
            net(one)
        times = []
        for _ in range(a.runs):
            t = time.perf_counter()
            net(one)
            times.append(time.perf_counter() - t)
        best = min(
            (lambda t: (net(X), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5)
        )
    out = {
        "system": f"PyTorch {torch.__version__}",
        "threads": a.threads,
        "single_us": statistics.median(times) * 1e6,
        "bulk_images_per_second": len(X) / best,
    }
    print(json.dumps(out) if a.json else out)


if __name__ == "__main__":
    main()
