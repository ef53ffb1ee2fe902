"""Keras reference CNN (the peers' tutorial model), trained and timed on the same MNIST files.

Usage: python keras_cnn.py --data-dir DIR [--threads N] [--epochs E | --batches B] [--json]
"""

import argparse
import json
import os
import time

from peers import read_idx  # the same IDX reader as the other peer scripts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument(
        "--batches", type=int, default=0, help="time this many batches instead of whole epochs"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras
    from keras import layers

    x = read_idx(args.data_dir, "train-images-idx3-ubyte").astype("float32")[..., None] / 255.0
    y = read_idx(args.data_dir, "train-labels-idx1-ubyte").astype("int64")
    xt = read_idx(args.data_dir, "t10k-images-idx3-ubyte").astype("float32")[..., None] / 255.0
    yt = read_idx(args.data_dir, "t10k-labels-idx1-ubyte").astype("int64")
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    batch = 128
    result = {
        "system": f"Keras {keras.__version__} / TensorFlow {tf.__version__}",
        "model": "cnn-ref",
        "threads": args.threads,
    }
    if args.batches:
        n = (args.batches + 2) * batch
        model.fit(
            x[: 2 * batch], y[: 2 * batch], batch_size=batch, epochs=1, verbose=0
        )  # warm-up / tracing
        start = time.perf_counter()
        model.fit(x[2 * batch : n], y[2 * batch : n], batch_size=batch, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
        result.update(images_per_second=args.batches * batch / seconds, batches=args.batches)
    else:
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=args.epochs, verbose=0)
        seconds = time.perf_counter() - start
        _, acc = model.evaluate(xt, yt, batch_size=1000, verbose=0)
        result.update(
            seconds=seconds,
            images_per_second=args.epochs * len(x) / seconds,
            test_accuracy=acc,
            epochs=args.epochs,
        )
    print(json.dumps(result) if args.json else result)


if __name__ == "__main__":
    main()
