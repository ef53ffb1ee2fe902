"""Reading digits and numbers from what users have: files, bytes, PIL images, numpy arrays."""

from __future__ import annotations

import itertools
import os
from typing import Any, Iterable, List, Optional, Union

import numpy as np

from . import _arrays
from ._digits import NumberReading, Reading
from ._model import Model, _threads, load_model

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]

# Sources converted and read in one native call; between calls Ctrl+C is seen at once.
_CHUNK = 512


class ReadError(ValueError):
    """A source that could not be read: not an image, too large, no ink found, ...

    :func:`read` raises it; :func:`read_many` returns it in place of that source's reading so
    that one bad file loses none of the others.
    """

    def __init__(self, message: str, index: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.index = index

    def __repr__(self) -> str:
        return f"ReadError({self.message!r})"


def _native_source(source: Source):
    """What the native reader takes: a path string, bytes, or a uint8 picture array."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, bytes):
        return source
    if isinstance(source, (bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, np.ndarray):
        return _arrays.picture(source)
    if hasattr(source, "convert") and hasattr(source, "size") and hasattr(source, "mode"):
        # A PIL image: its pixels as RGBA (palette, grey and alpha modes included).
        return np.asarray(source.convert("RGBA"))
    raise ValueError(
        f"cannot read a {type(source).__name__}: pass a path, bytes, a PIL image or a numpy array"
    )


def _read_chunk(
    model: Model, chunk: List[Source], number: bool, threads: int, start: int, top: int = 1
):
    converted, answers = [], [None] * len(chunk)
    for i, source in enumerate(chunk):
        try:
            converted.append((i, _native_source(source)))
        except ValueError as e:
            answers[i] = ReadError(str(e), start + i)
    read = model._native.read_many([s for _, s in converted], number, threads, top)
    for (i, _), answer in zip(converted, read):
        answers[i] = ReadError(answer, start + i) if isinstance(answer, str) else answer
    return answers


def read_many(
    sources: Iterable[Source],
    model: Union[str, os.PathLike, Model] = "cnn",
    threads: Optional[int] = None,
    number: bool = False,
    top: int = 1,
) -> List[Union[Reading, NumberReading, ReadError]]:
    """Read many sources in parallel on ``threads`` cores (default: all), in input order.

    ``sources`` is any iterable (a list, a generator over a folder); each answer is a
    :class:`Reading` (a :class:`NumberReading` with ``number=True``) or a :class:`ReadError`
    naming what was wrong with that source. Each reading's ``top`` lists its ``top`` likeliest
    digits.

    >>> answers = read_many(["examples/seven.png", b"not an image"])
    >>> answers[0].digit, type(answers[1]).__name__
    (7, 'ReadError')
    """
    workers = _threads(threads)
    m = load_model(model)
    out: List[Any] = []
    it = iter(sources)
    while True:
        chunk = list(itertools.islice(it, _CHUNK))
        if not chunk:
            return out
        out.extend(_read_chunk(m, chunk, number, workers, len(out), top))


def _read_one(source: Source, model, number: bool, top: int):
    m = model if type(model) is Model else load_model(model)
    try:
        native = source if type(source) in (str, bytes) else _native_source(source)
    except ValueError as e:
        raise ReadError(str(e), 0) from None
    answer = m._native.read_one(native, number, top)
    if type(answer) is str:
        raise ReadError(answer, 0)
    return answer


def read(source: Source, model: Union[str, os.PathLike, Model] = "cnn", top: int = 1) -> Reading:
    """Read the single digit in an image: a path, encoded bytes (PNG, JPEG, BMP, GIF, WebP,
    TIFF), a PIL image, or a numpy array (H x W grey, H x W x 3 / 4 colour; uint8, or float in
    0..1). The image goes through the same normalisation as ``digits predict``; the reading's
    ``top`` lists the ``top`` likeliest digits with their probabilities.

    Raises :class:`ReadError` (a ``ValueError``) when it holds no readable digit.

    >>> r = read("examples/seven.png")
    >>> r.digit, r.uncertain, r.probabilities.shape, r.normalized.shape
    (7, False, (10,), (28, 28))
    >>> [d for d, p in read("examples/seven.png", top=2).top][0]
    7
    """
    return _read_one(source, model, False, top)


def read_number(
    source: Source, model: Union[str, os.PathLike, Model] = "cnn", top: int = 1
) -> NumberReading:
    """Read a number written on one line, digit by digit (as ``digits predict --number``); each
    digit's reading lists its ``top`` likeliest digits.

    >>> read_number("examples/number-899092.png").number
    '899092'
    """
    return _read_one(source, model, True, top)
