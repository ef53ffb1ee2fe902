"""The peers' side of `digits compare --peers`: the SVM, MLP and CNN trained and timed with
scikit-learn, PyTorch and Keras on the same MNIST files, one JSON object per model on stdout
(progress on stderr).

Same data as ours: the first N training images (N = what our models train on after holding out
validation: 55,000, or 5,000 with --quick) and the first 10,000 (2,000 with --quick) test images,
pixels scaled to [0, 1]. Same architectures as ours (see crates/model/src/arch.rs) and epochs;
the peers' usual recipe otherwise (no augmentation). The SVM is the anchor of the SVM issue:
scikit-learn's SVC(C=5, gamma=0.05) on raw pixels (LIBSVM, one thread).

Usage: python peers.py --data-dir DIR [--models svm,mlp,cnn] [--threads N] [--epochs E] [--quick]
"""

import argparse
import gzip
import json
import os
import struct
import sys
import time


def read_idx(data_dir, name):
    import numpy as np

    for candidate in (name, name + ".gz"):
        path = os.path.join(data_dir, candidate)
        if os.path.exists(path):
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rb") as f:
                data = f.read()
            ndim = data[3]
            dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    sys.exit(f"{name} not found in {data_dir}")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def emit(framework, model, acc, n_train, n_test, t_train, t_pred, threads, recipe):
    print(
        json.dumps(
            {
                "framework": framework,
                "model": model,
                "accuracy": float(acc),
                "train_images": int(n_train),
                "test_images": int(n_test),
                "train_seconds": t_train,
                "predict_seconds": t_pred,
                "threads": threads,
                "recipe": recipe,
            }
        ),
        flush=True,
    )


def sklearn_svm(x, y, xt, yt):
    from sklearn.svm import SVC

    clf = SVC(C=5, gamma=0.05)
    log(f"scikit-learn SVC on {len(x)} images (this is the slow one)...")
    t = time.perf_counter()
    clf.fit(x.reshape(len(x), -1), y)
    t_train = time.perf_counter() - t
    t = time.perf_counter()
    p = clf.predict(xt.reshape(len(xt), -1))
    t_pred = time.perf_counter() - t
    emit(
        "scikit-learn",
        "svm",
        (p == yt).mean(),
        len(x),
        len(xt),
        t_train,
        t_pred,
        1,
        "SVC(C=5, gamma=0.05), raw pixels",
    )


def default_cnn():
    """Our default `cnn` in PyTorch (random weights): 3x3 convolutions 32-32, pool, 64-64, pool,
    each with batch norm, then dense 128 with batch norm and dropout 0.3."""
    from torch import nn

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(
        *block(1, 32),
        *block(32, 32),
        nn.MaxPool2d(2),
        *block(32, 64),
        *block(64, 64),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(7 * 7 * 64, 128),
        nn.BatchNorm1d(128),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(128, 10),
    )


def reference_cnn():
    """The tutorials' model (PyTorch's mnist/main.py; our `cnn-ref`, see
    crates/model/src/arch.rs) in PyTorch (random weights)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(12 * 12 * 64, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


EPOCHS = {"mlp": 30, "cnn": 15}


def torch_model(kind, x, y, xt, yt, epochs, threads):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    if kind == "mlp":
        net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 512),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(512, 256),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(256, 10),
        )
        lr = 2e-3
    else:
        net = default_cnn()
        lr = 3e-3
    X = torch.from_numpy(x[:, None, :, :].copy())
    Y = torch.from_numpy(y.astype("int64"))
    batch = 128
    steps = len(X) // batch
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=steps * epochs, pct_start=0.2
    )
    loss_fn = nn.CrossEntropyLoss()
    log(f"PyTorch {kind}: {epochs} epochs on {len(X)} images, {threads} threads...")
    t = time.perf_counter()
    g = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(X), generator=g)
        for s in range(steps):
            idx = order[s * batch : (s + 1) * batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(X[idx]), Y[idx]).backward()
            opt.step()
            sched.step()
    t_train = time.perf_counter() - t
    net.eval()
    XT = torch.from_numpy(xt[:, None, :, :].copy())
    t = time.perf_counter()
    with torch.no_grad():
        p = torch.cat([net(XT[i : i + 1000]).argmax(1) for i in range(0, len(XT), 1000)]).numpy()
    t_pred = time.perf_counter() - t
    emit(
        "PyTorch",
        kind,
        (p == yt).mean(),
        len(X),
        len(XT),
        t_train,
        t_pred,
        threads,
        f"AdamW + one-cycle, {epochs} epochs, batch 128, no augmentation",
    )


def keras_model(kind, x, y, xt, yt, epochs, threads):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    from keras import layers

    keras.utils.set_random_seed(1)
    if kind == "mlp":
        net = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                layers.Flatten(),
                layers.Dense(512, activation="relu"),
                layers.Dropout(0.2),
                layers.Dense(256, activation="relu"),
                layers.Dropout(0.2),
                layers.Dense(10),
            ]
        )
    else:

        def block(o):
            return [
                layers.Conv2D(o, 3, padding="same", use_bias=False),
                layers.BatchNormalization(momentum=0.9),
                layers.ReLU(),
            ]

        net = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                *block(32),
                *block(32),
                layers.MaxPooling2D(2),
                *block(64),
                *block(64),
                layers.MaxPooling2D(2),
                layers.Flatten(),
                layers.Dense(128),
                layers.BatchNormalization(momentum=0.9),
                layers.ReLU(),
                layers.Dropout(0.3),
                layers.Dense(10),
            ]
        )
    net.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    log(f"Keras {kind}: {epochs} epochs on {len(x)} images, {threads} threads...")
    t = time.perf_counter()
    net.fit(x[..., None], y, batch_size=128, epochs=epochs, verbose=0)
    t_train = time.perf_counter() - t
    t = time.perf_counter()
    p = net.predict(xt[..., None], batch_size=1000, verbose=0).argmax(1)
    t_pred = time.perf_counter() - t
    emit(
        "Keras",
        kind,
        (p == yt).mean(),
        len(x),
        len(xt),
        t_train,
        t_pred,
        threads,
        f"Adam 1e-3, {epochs} epochs, batch 128, no augmentation",
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--models", default="svm,mlp,cnn")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--frameworks", default="scikit-learn,pytorch,keras")
    args = ap.parse_args()
    n_train, n_test = (5000, 2000) if args.quick else (55000, 10000)
    x = read_idx(args.data_dir, "train-images-idx3-ubyte")[:n_train].astype("float32") / 255.0
    y = read_idx(args.data_dir, "train-labels-idx1-ubyte")[:n_train].astype("int64")
    xt = read_idx(args.data_dir, "t10k-images-idx3-ubyte")[:n_test].astype("float32") / 255.0
    yt = read_idx(args.data_dir, "t10k-labels-idx1-ubyte")[:n_test].astype("int64")
    models = args.models.split(",")
    frameworks = args.frameworks.split(",")
    for m in models:
        epochs = args.epochs or ((5 if m == "mlp" else 2) if args.quick else EPOCHS.get(m))
        if m == "svm" and "scikit-learn" in frameworks:
            sklearn_svm(x, y, xt, yt)
        elif m in ("mlp", "cnn"):
            if "pytorch" in frameworks:
                torch_model(m, x, y, xt, yt, epochs, args.threads)
            if "keras" in frameworks:
                keras_model(m, x, y, xt, yt, epochs, args.threads)


if __name__ == "__main__":
    main()
