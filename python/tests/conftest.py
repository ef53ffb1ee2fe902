"""Shared fixtures: the repository's example images, and MNIST where DIGITS_DATA_DIR has it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES


@pytest.fixture(scope="session")
def mnist_test():
    """The MNIST test set, or a skip that says how to get it."""
    import digits

    if not os.environ.get("DIGITS_DATA_DIR"):
        pytest.skip("set DIGITS_DATA_DIR to the MNIST files to run this test")
    return digits.mnist.load(split="test")


def scribbles(n: int, seed: int = 0, size: int = 96):
    """``n`` PNGs of random thick strokes on white (any ink will do where only agreement
    between two ways of reading is checked)."""
    from io import BytesIO

    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = Image.new("L", (size, size), 255)
        draw = ImageDraw.Draw(img)
        points = [tuple(int(v) for v in rng.integers(16, size - 16, 2)) for _ in range(4)]
        draw.line(points, fill=0, width=int(rng.integers(5, 10)))
        buf = BytesIO()
        img.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out
