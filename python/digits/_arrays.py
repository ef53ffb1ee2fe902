"""Turning what users pass into what the native module takes, with errors that name the fix."""

from __future__ import annotations

import numpy as np


def images_for_model(X) -> np.ndarray:
    """``(n, 784)`` uint8 or float32, C-contiguous; no copy where ``X`` already is one."""
    a = np.asarray(X)
    if a.ndim == 3 and a.shape[1:] == (28, 28):
        a = a.reshape(a.shape[0], 784)
    elif not (a.ndim == 2 and a.shape[1] == 784):
        raise ValueError(
            f"expected images of shape (n, 28, 28) or (n, 784), got {a.shape}"
            + ("; wrap one image as X[None]" if a.shape in ((28, 28), (784,)) else "")
        )
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if np.issubdtype(a.dtype, np.floating):
        return np.ascontiguousarray(a, dtype=np.float32)
    if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        return bytes_from_integers(a)
    raise ValueError(f"images must be uint8 (0..255) or float (0..1), not {a.dtype}")


def bytes_from_integers(a: np.ndarray) -> np.ndarray:
    """Integer pixels in 0..255 as uint8."""
    if a.size and (a.min() < 0 or a.max() > 255):
        raise ValueError(f"integer pixels must be in 0..255, got {a.min()}..{a.max()}")
    return np.ascontiguousarray(a, dtype=np.uint8)


def images_as_bytes(X) -> np.ndarray:
    """``(n, 784)`` uint8: what training takes (floats in 0..1 are scaled to 0..255)."""
    a = images_for_model(X)
    if a.dtype == np.float32:
        check_unit_range(a)
        a = np.ascontiguousarray(np.rint(a * 255.0), dtype=np.uint8)
    return a


def check_unit_range(a: np.ndarray) -> None:
    if a.size and not (np.all(a >= 0.0) and np.all(a <= 1.0)):
        raise ValueError(
            "float pixels must be in 0..1 (NaN is not a pixel); "
            "divide 0..255 data by 255 or pass uint8"
        )


def picture(a: np.ndarray) -> np.ndarray:
    """A decoded picture (H x W grey, H x W x 3 or 4 colour) as uint8 for the reader."""
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"an image array is H x W (grey) or H x W x 3 / 4 (colour), got shape {a.shape}"
        )
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if np.issubdtype(a.dtype, np.floating):
        check_unit_range(a)
        return np.ascontiguousarray(np.rint(a * 255.0), dtype=np.uint8)
    if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        return bytes_from_integers(a)
    raise ValueError(f"image pixels must be uint8 (0..255) or float (0..1), not {a.dtype}")
