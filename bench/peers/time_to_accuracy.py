"""Time to a test accuracy with the peers' usual recipes: the official examples people start
from, trained epoch by epoch on the same MNIST files and scored on the test set after every
epoch, stopping at the first epoch that reaches the target. The clock starts when the process
starts (imports and data loading count, as they do for `digits train`).

- pytorch: pytorch/examples mnist/main.py: conv32-conv64-maxpool-dropout-fc128-dropout-fc10,
  Adadelta lr 1.0, StepLR gamma 0.7, batch 64, inputs standardised (0.1307, 0.3081).
- keras: keras.io mnist_convnet: conv32-maxpool-conv64-maxpool-flatten-dropout 0.5-dense10,
  Adam, batch 128.

Usage: python time_to_accuracy.py --data-dir DIR --framework pytorch|keras [--threads N]
           [--target 0.992] [--max-epochs 15] [--json]
Prints a line per epoch and a summary (with --json: one object per epoch, then a summary
object with "reached_seconds").
"""

import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

from peers import read_idx, reference_cnn  # noqa: E402  (shared with the other peer scripts)


def elapsed():
    return time.perf_counter() - START


def report(framework, epochs, target, threads, as_json):
    """Runs `epochs` (a generator of test accuracies, one per epoch) until the target."""
    reached = None
    best = 0.0
    for epoch, acc in enumerate(epochs, 1):
        best = max(best, acc)
        if as_json:
            print(
                json.dumps(
                    {
                        "framework": framework,
                        "epoch": epoch,
                        "test_accuracy": acc,
                        "seconds": elapsed(),
                    }
                ),
                flush=True,
            )
        else:
            print(
                f"  {framework} epoch {epoch}: test accuracy {100 * acc:.2f}% at {elapsed():.1f} s",
                flush=True,
            )
        if acc >= target:
            reached = elapsed()
            break
    if as_json:
        print(
            json.dumps(
                {
                    "framework": framework,
                    "threads": threads,
                    "target": target,
                    "reached_seconds": reached,
                    "epochs": epoch,
                    "best_accuracy": best,
                }
            ),
            flush=True,
        )
    elif reached:
        print(f"{framework}: {reached:.1f} s to {100 * target:.1f}%", end=" ")
        print(f"({epoch} epochs, {threads} threads)")
    else:
        print(f"{framework}: did not reach {100 * target:.1f}% in {epoch} epochs", end=" ")
        print(f"(best {100 * best:.2f}%)")


def pytorch(args, x, y, xt, yt):
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    net = reference_cnn()

    def norm(a):
        return (torch.from_numpy(a[:, None].astype("float32") / 255.0) - 0.1307) / 0.3081

    X, Y, XT = norm(x), torch.from_numpy(y.astype("int64")), norm(xt)
    opt = torch.optim.Adadelta(net.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    g = torch.Generator().manual_seed(1)
    for _ in range(args.max_epochs):
        net.train()
        order = torch.randperm(len(X), generator=g)
        for s in range(0, len(X), 64):
            idx = order[s : s + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(X[idx]), Y[idx]).backward()
            opt.step()
        sched.step()
        net.eval()
        with torch.no_grad():
            p = torch.cat([net(XT[i : i + 1000]).argmax(1) for i in range(0, len(XT), 1000)])
        yield float((p.numpy() == yt).mean())


def keras(args, x, y, xt, yt):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras
    from keras import layers

    keras.utils.set_random_seed(1)
    net = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )
    net.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    X, XT = x[..., None].astype("float32") / 255.0, xt[..., None].astype("float32") / 255.0
    for _ in range(args.max_epochs):
        net.fit(X, y, batch_size=128, epochs=1, verbose=0)
        p = net.predict(XT, batch_size=1000, verbose=0).argmax(1)
        yield float((p == yt).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--framework", choices=["pytorch", "keras"], required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target", type=float, default=0.992)
    ap.add_argument("--max-epochs", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    x = read_idx(args.data_dir, "train-images-idx3-ubyte")
    y = read_idx(args.data_dir, "train-labels-idx1-ubyte")
    xt = read_idx(args.data_dir, "t10k-images-idx3-ubyte")
    yt = read_idx(args.data_dir, "t10k-labels-idx1-ubyte")
    run = pytorch if args.framework == "pytorch" else keras
    report(args.framework, run(args, x, y, xt, yt), args.target, args.threads, args.json)


if __name__ == "__main__":
    main()
