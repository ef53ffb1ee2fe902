"""ONNX Runtime's side of bench/peers/infer_speed.sh: our own model, exported with
`digits export cnn --onnx FILE`, run by ONNX Runtime on real MNIST test images and timed the way
`digits bench predict` times ours: one normalised image (median of RUNS) and 1000 images in one
call (best of 5). ONNX Runtime gets its best CPU settings: every graph optimisation, its
threads pinned to THREADS (intra-op), one inter-op thread, sequential execution.

Usage: python ort_infer.py --model FILE.onnx --data-dir DIR [--threads N] [--runs R] [--bulk B]
       [--json]
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import read_idx  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--bulk", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = a.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(a.model, options, providers=["CPUExecutionProvider"])
    x = read_idx(a.data_dir, "t10k-images-idx3-ubyte")[: a.bulk].astype("float32") / 255.0
    batch = {"pixels": x[:, None, :, :].copy()}
    one = {"pixels": batch["pixels"][:1].copy()}
    out = ["probabilities"]
    for _ in range(a.runs // 10 + 1):
        session.run(out, one)
    times = []
    for _ in range(a.runs):
        t = time.perf_counter()
        session.run(out, one)
        times.append(time.perf_counter() - t)
    bulk = []
    for _ in range(5):
        t = time.perf_counter()
        session.run(out, batch)
        bulk.append(time.perf_counter() - t)
    result = {
        "system": f"ONNX Runtime {ort.__version__}",
        "threads": a.threads,
        "single_us": statistics.median(times) * 1e6,
        "bulk_images_per_second": len(x) / min(bulk),
    }
    print(json.dumps(result) if a.json else result)


if __name__ == "__main__":
    main()
