"""PyTorch's side of bench/peers/train_speed.sh: the reference CNN (the tutorials' model, our
`cnn-ref`: see crates/model/src/arch.rs) trained on the same MNIST files with Adam at 1e-3 in
batches of 128, in PyTorch's CPU configurations from plain to fastest: eager f32, channels-last,
bf16 autocast (oneDNN; AMX where the CPU has it), and `torch.compile` of the best of those where
it compiles here (offline, with the machine's C compiler). Each times the same BATCHES batches
after a warm-up; the fastest is reported as `images_per_second`, every one under `configs`.
A configuration that reads less than half as fast as the fastest so far over a probe of
PROBE batches is not timed further (bf16 autocast on a CPU without native bf16 is emulated,
about 8x slower, and timing it in full took minutes a round); its probe's figure is reported.

Usage: python torch_train.py --data-dir DIR [--threads N] [--batches B] [--json]
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import log, read_idx, reference_cnn  # noqa: E402

BATCH = 128
PROBE = 5


def time_config(x, y, batches, channels_last, bf16, compiled):
    """Images per second over `batches` steps after three warm-up steps (compilation there)."""
    import torch

    torch.manual_seed(1)
    net = reference_cnn().train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    model = torch.compile(net) if compiled else net

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()

    xs = [x[i * BATCH : (i + 1) * BATCH].contiguous(memory_format=fmt) for i in range(batches + 3)]
    ys = [y[i * BATCH : (i + 1) * BATCH] for i in range(batches + 3)]
    for i in range(3):
        step(xs[i], ys[i])
    start = time.perf_counter()
    for i in range(3, batches + 3):
        step(xs[i], ys[i])
    return batches * BATCH / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    n = (a.batches + 3) * BATCH
    x = torch.from_numpy(
        read_idx(a.data_dir, "train-images-idx3-ubyte")[:n, None].astype("float32") / 255.0
    )
    y = torch.from_numpy(read_idx(a.data_dir, "train-labels-idx1-ubyte")[:n].astype("int64"))
    configs = {}
    for name, channels_last, bf16 in [
        ("eager f32", False, False),
        ("eager f32 channels-last", True, False),
        ("eager bf16 autocast channels-last", True, True),
        ("eager bf16 autocast", False, True),
    ]:
        fastest, probe_batches = max(configs.values(), default=0.0), min(PROBE, a.batches)
        probe = time_config(x, y, probe_batches, channels_last, bf16, False)
        if probe < fastest / 2:
            configs[name] = probe
            log(
                f"{name}: {probe:.0f} images/s over {probe_batches} batches, under half the fastest"
            )
            continue
        configs[name] = time_config(x, y, a.batches, channels_last, bf16, False)
        log(f"{name}: {configs[name]:.0f} images/s")
    if not a.no_compile:
        best = max(configs, key=configs.get)
        channels_last, bf16 = "channels-last" in best, "bf16" in best
        name = f"torch.compile {best.removeprefix('eager ')}"
        try:
            configs[name] = time_config(x, y, a.batches, channels_last, bf16, True)
            log(f"{name}: {configs[name]:.0f} images/s")
        except Exception as e:  # noqa: BLE001 - a compiler that does not work here is a finding
            log(f"{name}: does not run here ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
    best = max(configs, key=configs.get)
    result = {
        "system": f"PyTorch {torch.__version__} ({best})",
        "model": "cnn-ref",
        "threads": a.threads,
        "batches": a.batches,
        "images_per_second": configs[best],
        "configs": configs,
    }
    print(json.dumps(result) if a.json else result)


if __name__ == "__main__":
    main()
