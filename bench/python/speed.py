"""The Python package's speed, side by side in one run on the same cores with the Rust CLI,
PyTorch and scikit-learn (ratios are the figures; these machines are noisy):

- predict: ``load_model("cnn").predict`` on the 10,000 MNIST test images from numpy, against
  ``digits eval`` (the same prediction in the CLI) and PyTorch eager on the same CNN.
- read: ``digits.read(path)`` and ``digits.read(bytes)`` per image, against the same reading
  in Rust (the file read from disk, or the bytes, through ``read_digit``) in the same process,
  call by call: the overhead of Python.
- many: ``read_many`` over a folder of 280x280 PNGs on 1 and 2 threads, and ``digits predict
  DIR`` with ``--threads 1`` and ``2``.
- svc: ``digits.sklearn.SVC`` against ``sklearn.svm.SVC`` (C=5, gamma=0.05 on raw pixels, as
  bench/peers/peers.py) fitted on the same N training images, scored on the test set.

    bench/python/setup.sh                                          # once
    taskset -c 0,1 bench/.venv/bin/python bench/python/speed.py --threads 2 --rounds 3
    taskset -c 0 bench/.venv/bin/python bench/python/speed.py --threads 1 --only predict
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "target" / "release" / "digits"


def cli(threads, *args):
    out = subprocess.run(
        [str(DIGITS), "--threads", str(threads), *args], capture_output=True, text=True, check=True
    )
    return out.stdout


def best_time(f, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def bench_predict(a, rounds):
    import numpy as np
    import torch

    import digits

    sys.path.insert(0, str(ROOT / "bench" / "peers"))
    from torch_infer import default_cnn

    torch.set_num_threads(a.threads)
    images, labels = digits.mnist.load(split="test")
    model = digits.load_model("cnn")
    net = default_cnn()
    x = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
    assert (model.predict(images) == labels).mean() > 0.99
    rows = []
    for r in range(1, rounds + 1):
        ours = len(images) / best_time(lambda: model.predict(images))
        theirs = json.loads(cli(a.threads, "eval", "--model", "cnn", "--json"))["images_per_second"]
        with torch.inference_mode():
            # Batches of 1000 (faster for PyTorch here than 10,000 at once).
            torch_ips = len(images) / best_time(
                lambda: [net(b) for b in torch.split(x, 1000)], repeat=2
            )
        rows.append({"python": ours, "cli": theirs, "torch": torch_ips})
        print(
            f"predict round {r}: digits (Python) {ours:7.0f}/s | digits eval {theirs:7.0f}/s "
            f"({ours / theirs:.0%}) | PyTorch {torch.__version__} eager {torch_ips:6.0f}/s "
            f"({ours / torch_ips:.1f}x)",
            flush=True,
        )
    return rows


def bench_read(a, rounds, runs=3000):
    """Python's overhead per image: ``digits.read`` against the same reading in Rust (a path
    read from disk too), timed from Python in one process, call by call in a shuffled order
    (the machine's speed moves more between two processes, or two blocks of calls, than the
    overhead is). The Rust side is a native method that times the reading inside Rust: the
    difference is what the Python package adds, the crossing into Rust included. The image is a
    test digit on a 64x64 PNG, so that the pipeline's own time, and its noise, stay small."""
    import io

    import numpy as np
    from PIL import Image

    import digits

    images, _ = digits.mnist.load(split="test")
    canvas = Image.new("L", (64, 64), 255)
    canvas.paste(Image.fromarray(255 - images[0]).resize((40, 40), Image.BILINEAR), (12, 12))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    data = buf.getvalue()
    model = digits.load_model("cnn")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "digit.png")
        Path(path).write_bytes(data)
        assert digits.read(path, model).digit == int(digits.mnist.load(split="test")[1][0])
        for r in range(1, rounds + 1):
            names = ("rust_path", "path", "rust_bytes", "bytes", "inner_path", "inner_bytes")
            times = {k: [] for k in names}
            calls = {
                "rust_path": lambda: model._native.time_read(path, 1),
                "path": lambda: digits.read(path, model),
                "rust_bytes": lambda: model._native.time_read(data, 1),
                "bytes": lambda: digits.read(data, model),
            }
            order = list(calls)
            rng = np.random.default_rng(r)
            for _ in range(runs):
                # A new order each time: a call's place after another moves its time by more
                # than the overhead measured.
                rng.shuffle(order)
                for name in order:
                    t = time.perf_counter()
                    inner = calls[name]()
                    times[name].append(time.perf_counter() - t)
                    if name.startswith("rust"):
                        # What Rust itself took, inside the call.
                        times[f"inner_{name[5:]}"].append(inner[0])
            us = {k: float(np.median(v)) * 1e6 for k, v in times.items()}
            rows.append({f"{k}_us": v for k, v in us.items()})
            print(
                f"read round {r}: path: Rust {us['inner_path']:6.1f} us (called from Python "
                f"{us['rust_path']:6.1f}), read(path) {us['path']:6.1f} us "
                f"(+{us['path'] - us['inner_path']:.1f}) | bytes: Rust {us['inner_bytes']:6.1f} "
                f"us ({us['rust_bytes']:6.1f}), read(bytes) {us['bytes']:6.1f} us "
                f"(+{us['bytes'] - us['inner_bytes']:.1f})",
                flush=True,
            )
    return rows


def write_canvases(folder, n):
    """n MNIST test digits drawn black on a white 280x280 canvas, at a random size and place."""
    import numpy as np
    from PIL import Image

    import digits

    images, _ = digits.mnist.load(split="test")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        side = int(rng.integers(120, 240))
        digit = Image.fromarray(255 - images[i]).resize((side, side), Image.BILINEAR)
        canvas = Image.new("L", (280, 280), 255)
        x, y = (int(v) for v in rng.integers(0, 280 - side + 1, 2))
        canvas.paste(digit, (x, y))
        p = Path(folder) / f"{i:05d}.png"
        canvas.save(p)
        paths.append(str(p))
    return paths


def bench_many(a, rounds, n=1500):
    import digits

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        paths = write_canvases(folder, n)
        model = digits.load_model("cnn")
        digits.read_many(paths[:50], model)
        # Each figure is the best of three passes: a pass the machine's other work slowed
        # (single passes of the same work moved by 1.4x within a minute) is not our speed.
        for r in range(1, rounds + 1):
            one = n / best_time(lambda: digits.read_many(paths, model, threads=1))
            two = n / best_time(lambda: digits.read_many(paths, model, threads=2))
            cli1 = n / best_time(lambda: cli(1, "predict", folder))
            cli2 = n / best_time(lambda: cli(2, "predict", folder))
            rows.append({"read_many_1": one, "read_many_2": two, "cli_1": cli1, "cli_2": cli2})
            print(
                f"many round {r}: read_many 1 thread {one:5.0f}/s, 2 threads {two:5.0f}/s "
                f"({two / one:.2f}x) | digits predict DIR 1 thread {cli1:5.0f}/s, 2 threads "
                f"{cli2:5.0f}/s ({cli2 / cli1:.2f}x)",
                flush=True,
            )
    return rows


def bench_svc(a, n):
    import numpy as np
    import sklearn
    from sklearn.svm import SVC as SkSVC

    import digits
    from digits.sklearn import SVC

    X, y = digits.mnist.load(split="train")
    Xt, yt = digits.mnist.load(split="test")
    X, y = X[:n].reshape(n, 784), y[:n]
    Xt = Xt.reshape(len(Xt), 784)
    t = time.perf_counter()
    ours = SVC().fit(X, y)
    ours_fit = time.perf_counter() - t
    ours_acc = float((ours.predict(Xt) == yt).mean())
    t = time.perf_counter()
    theirs = SkSVC(C=5, gamma=0.05).fit(X.astype(np.float32) / 255.0, y)
    their_fit = time.perf_counter() - t
    their_acc = float((theirs.predict(Xt.astype(np.float32) / 255.0) == yt).mean())
    print(
        f"svc on {n} images: digits.sklearn.SVC fit {ours_fit:.1f}s, test {ours_acc:.2%} | "
        f"scikit-learn {sklearn.__version__} SVC fit {their_fit:.1f}s, test {their_acc:.2%} | "
        f"{their_fit / ours_fit:.0f}x faster to fit",
        flush=True,
    )
    return {
        "n": n,
        "ours_fit_s": ours_fit,
        "ours_accuracy": ours_acc,
        "sklearn_fit_s": their_fit,
        "sklearn_accuracy": their_acc,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="predict,read,many,svc")
    ap.add_argument("--svc-images", type=int, default=20000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not os.environ.get("DIGITS_DATA_DIR"):
        sys.exit("set DIGITS_DATA_DIR to the MNIST files")
    # The package's threads are rayon's; it reads this when the first pool starts.
    os.environ["RAYON_NUM_THREADS"] = str(a.threads)
    import platform

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in open("/proc/cpuinfo")
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"{cpu}, {a.threads} threads, {time.strftime('%Y-%m-%d')}")
    report = {"cpu": cpu, "threads": a.threads}
    only = a.only.split(",")
    if "predict" in only:
        report["predict"] = bench_predict(a, a.rounds)
    if "read" in only:
        report["read"] = bench_read(a, a.rounds)
    if "many" in only:
        report["many"] = bench_many(a, a.rounds)
    if "svc" in only:
        report["svc"] = bench_svc(a, a.svc_images)
    if a.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
