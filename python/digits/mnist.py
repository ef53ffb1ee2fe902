"""MNIST as numpy arrays, found and verified as the ``digits`` command line does."""

from __future__ import annotations

import os
from typing import Optional, Tuple, Union

import numpy as np

from . import _digits


def load(
    data_dir: Optional[Union[str, os.PathLike]] = None, split: str = "train"
) -> Tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)``: ``(n, 28, 28)`` and ``(n,)`` uint8 arrays.

    The files are looked for in ``data_dir``, else ``$DIGITS_DATA_DIR``, else the per-user cache
    (``digits data fetch`` downloads them there), and their SHA-256 is checked against the
    canonical values. ``split`` is ``"train"`` (60,000) or ``"test"`` (10,000).

    >>> images, labels = load(split="test")  # doctest: +SKIP
    >>> images.shape, labels[:3]              # doctest: +SKIP
    ((10000, 28, 28), array([7, 2, 1], dtype=uint8))
    """
    path = None if data_dir is None else os.fspath(data_dir)
    return _digits.load_mnist(split, path)
