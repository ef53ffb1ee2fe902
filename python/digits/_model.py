"""Trained classifiers: the shipped ones by name, or model files."""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Dict, Optional, Union

import numpy as np

from . import _arrays, _digits

SHIPPED = tuple(_digits.shipped_models())
# Images classified per native call.
_PREDICT_CHUNK = 16384


class Model:
    """A digit classifier: ``predict`` and ``predict_proba`` on MNIST-style arrays.

    Arrays are ``(n, 28, 28)`` or ``(n, 784)``, uint8 in 0..255 or float in 0..1, white ink on
    black as in MNIST (use :func:`digits.read` for photos and drawings). Contiguous uint8 or
    float32 arrays are read in place. The GIL is released while the model works.

    >>> import numpy as np
    >>> model = load_model("cnn")
    >>> model.predict_proba(np.zeros((2, 784), np.float32)).shape
    (2, 10)
    """

    def __init__(self, native: _digits.NativeModel) -> None:
        self._native = native

    @property
    def kind(self) -> str:
        """``cnn``, ``cnn-large``, ``cnn-nopool``, ``cnn-ref``, ``cnn-small``, ``cnn-minute``,
        ``mlp``, ``svm`` or ``ensemble``."""
        return self._native.kind

    @property
    def spec(self) -> str:
        """The name or path it was loaded from."""
        return self._native.spec

    @property
    def parameter_count(self) -> int:
        return self._native.parameter_count

    @property
    def temperature(self) -> float:
        """Softmax temperature fitted on the validation split (calibrated confidence)."""
        return self._native.temperature

    @property
    def test_accuracy(self) -> Optional[float]:
        """MNIST test accuracy recorded in the file when it was trained."""
        return self._native.test_accuracy

    def predict_proba(self, X) -> np.ndarray:
        """Calibrated probabilities of the ten digits, ``(n, 10)`` float32."""
        a = _arrays.images_for_model(X)
        out = np.empty((a.shape[0], 10), np.float32)
        # In chunks (views, not copies): Ctrl+C is seen between them, within a second.
        for start in range(0, a.shape[0], _PREDICT_CHUNK):
            part = a[start : start + _PREDICT_CHUNK]
            if a.dtype == np.uint8:
                p = self._native.proba_u8(part)
            else:
                p = self._native.proba_f32(part)
            out[start : start + len(part)] = p.reshape(-1, 10)
        return out

    def predict(self, X) -> np.ndarray:
        """The likeliest digit of each image, ``(n,)`` int64."""
        return self.predict_proba(X).argmax(axis=1)

    def evaluate(
        self, split: str = "test", data_dir: Optional[Union[str, os.PathLike]] = None
    ) -> Dict[str, Any]:
        """Accuracy, loss, confusion matrix, per-class scores, calibration error and speed on
        MNIST ``test`` or ``validation`` (as ``digits eval --json``)."""
        path = None if data_dir is None else os.fspath(data_dir)
        return json.loads(self._native.evaluate(split, path))

    def realworld(
        self,
        per_style: int = 1000,
        numbers: int = 1000,
        number_style: str = "canvas",
        split: str = "test",
        seed: int = 1,
        data_dir: Optional[Union[str, os.PathLike]] = None,
        threads: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Accuracy on MNIST digits redrawn as people draw and photograph them (sixteen styles:
        thin and thick pens, coloured, ruled and cluttered paper, uneven light, a finger at the
        edge, ...) and on numbers of two to six digits, each read through the whole pipeline, as
        ``digits realworld --json``; ``misread_as_mnist`` says, per style, how many of the
        misread digits the model misreads as the MNIST image too (the rest are the redraw's and
        the reader's). ``split="validation"`` redraws the digits the shipped models held out, for
        choices that must not touch the test set. Ctrl+C stops it.
        """
        for name, value in (("per_style", per_style), ("numbers", numbers), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")
        path = None if data_dir is None else os.fspath(data_dir)
        return json.loads(
            self._native.realworld(
                per_style, numbers, number_style, split, seed, path, _threads(threads)
            )
        )

    def score_folder(
        self, folder: Union[str, os.PathLike], threads: Optional[int] = None
    ) -> Dict[str, Any]:
        """Accuracy on a folder of your own labelled images, as ``digits realworld --dir
        --json``: ``labels.csv`` (``file,label[,kind]``) says what each image holds; the
        result has the accuracy per kind and in all, the calibration error, the wrong answers
        at 95% confidence or more, and every misread file with what was read and how surely.
        """
        return json.loads(self._native.score_folder(os.fspath(folder), _threads(threads)))

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the model file atomically; every front end loads it."""
        self._native.save(os.fspath(path))

    def export_onnx(self, path: Union[str, os.PathLike]) -> int:
        """Write the network or ensemble as an ONNX file (opset 17) for ONNX Runtime and other
        engines; returns its size in bytes. Input ``pixels``: ``(n, 1, 28, 28)`` float32, bytes
        / 255; outputs ``logits`` and ``probabilities``, ``(n, 10)``. SVMs are refused.

        >>> import onnxruntime as ort                                    # doctest: +SKIP
        >>> load_model("cnn").export_onnx("cnn.onnx")                    # doctest: +SKIP
        >>> session = ort.InferenceSession("cnn.onnx")                   # doctest: +SKIP
        >>> pixels = images[:, None].astype(np.float32) / 255            # doctest: +SKIP
        >>> session.run(["probabilities"], {"pixels": pixels})[0].shape  # doctest: +SKIP
        (10000, 10)
        """
        return self._native.export_onnx(os.fspath(path))

    def __repr__(self) -> str:
        return f"Model(kind={self.kind!r}, spec={self.spec!r})"

    def __reduce__(self):
        # Pickled as the model file's bytes (joblib, multiprocessing, Ray send models so).
        return (_from_bytes, (self.spec, self._native.to_bytes()))


def _threads(threads: Optional[int]) -> int:
    """The native side's thread count (0: every core), as ``read_many`` takes it."""
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads!r}")
    return threads


def _from_bytes(spec: str, data: bytes) -> Model:
    return Model(_digits.NativeModel.from_bytes(spec, data))


@functools.cache
def _shipped(name: str) -> Model:
    return Model(_digits.NativeModel(name))


def load_model(spec: Union[str, os.PathLike, Model] = "cnn") -> Model:
    """A shipped model (``"cnn"``, ``"cnn-large"``, ``"ensemble"``, ``"ensemble-large"``,
    ``"mlp"``, ``"svm"``) or a model file.

    The file is verified on load: a truncated, corrupt or foreign file raises ``ValueError``
    naming it; one that cannot be read raises ``OSError``.
    """
    if isinstance(spec, Model):
        return spec
    text = os.fspath(spec)
    if text in SHIPPED and not os.path.exists(text):
        return _shipped(text)
    return Model(_digits.NativeModel(text))
