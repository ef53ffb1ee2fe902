"""Handwritten-digit recognition with a Rust core.

Read digits and numbers from files, bytes, PIL images or numpy arrays, classify MNIST-style
arrays with the shipped models, load MNIST, and train or evaluate models, all through the same
library as the ``digits`` command line, web app and desktop app.

>>> import digits
>>> digits.read("examples/seven.png").digit
7
>>> model = digits.load_model("cnn")
>>> images, labels = digits.mnist.load(split="test")   # doctest: +SKIP
>>> (model.predict(images) == labels).mean()            # doctest: +SKIP
0.9968
"""

from __future__ import annotations

from . import mnist
from ._digits import NumberReading, Reading, build_info, precision, set_precision
from ._model import Model, load_model
from ._read import ReadError, read, read_many, read_number
from ._train import evaluate, train

__all__ = [
    "Model",
    "NumberReading",
    "ReadError",
    "Reading",
    "build_info",
    "evaluate",
    "load_model",
    "mnist",
    "precision",
    "read",
    "read_many",
    "read_number",
    "set_precision",
    "train",
]
__version__ = "0.1.0"
