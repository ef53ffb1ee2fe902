"""Reading a folder or bucket of millions of images on a Ray cluster with Ray Data.

Each worker is an actor that loads the model once and reads its batches with
:func:`digits.read_many` (on ``threads`` cores of its own); answers stay joined to the file
names. The same code runs on a laptop (``ray.init()``) and on a multi-node cluster
(``ray.init(address="auto")`` on a node of it, or ``RAY_ADDRESS`` set): Ray Data splits the files
over the nodes, and the paths may be local folders every node sees or ``s3://`` / ``gs://``
buckets.

>>> import ray, digits.ray                                       # doctest: +SKIP
>>> ray.init(num_cpus=2)                                         # doctest: +SKIP
>>> ds = digits.ray.read_images("scans/", model="cnn")           # doctest: +SKIP
>>> ds.write_parquet("answers/")                                 # doctest: +SKIP

To read a Dataset you already have (a column of encoded image bytes), map its batches through
:class:`Reader` yourself::

    ds.map_batches(digits.ray.Reader, fn_constructor_kwargs={"model": "cnn", "column": "bytes"},
                   batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=4))
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ._model import load_model
from ._read import ReadError, read_many

__all__ = ["Reader", "read_images"]


class Reader:
    """Reads a batch of encoded images (a numpy batch from Ray Data) into columns.

    The model is loaded once per worker, when Ray Data builds the actor. Out come the batch's
    ``path`` column (when it has one) and ``digit`` (-1 where the image could not be read),
    ``confidence``, ``uncertain`` and ``error`` (empty where read); with ``number=True``,
    ``number`` (a string) instead of ``digit``.
    """

    def __init__(
        self, model: str = "cnn", number: bool = False, threads: int = 1, column: str = "bytes"
    ) -> None:
        self.model = load_model(model)
        self.number = number
        self.threads = threads
        self.column = column

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        sources = [bytes(b) for b in batch[self.column]]
        answers = read_many(sources, self.model, threads=self.threads, number=self.number)
        ok = [not isinstance(a, ReadError) for a in answers]
        out: Dict[str, np.ndarray] = {}
        if "path" in batch:
            out["path"] = np.asarray(batch["path"])
        if self.number:
            out["number"] = np.array(
                [a.number if k else "" for a, k in zip(answers, ok)], dtype=object
            )
        else:
            out["digit"] = np.array(
                [a.digit if k else -1 for a, k in zip(answers, ok)], dtype=np.int8
            )
        out["confidence"] = np.array(
            [a.confidence if k else np.nan for a, k in zip(answers, ok)], dtype=np.float32
        )
        out["uncertain"] = np.array([a.uncertain if k else True for a, k in zip(answers, ok)])
        out["error"] = np.array(
            [a.message if not k else "" for a, k in zip(answers, ok)], dtype=object
        )
        return out


def read_images(
    paths: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]],
    model: str = "cnn",
    *,
    number: bool = False,
    workers: Optional[int] = None,
    threads_per_worker: int = 1,
    batch_size: int = 256,
):
    """A Ray Dataset of the answers for every image under ``paths`` (files, folders or bucket
    prefixes): columns ``path``, ``digit`` (or ``number``), ``confidence``, ``uncertain``,
    ``error``. ``workers`` actors (default: as many as the cluster's CPUs hold, less one CPU
    left for the tasks that read the files) each read on ``threads_per_worker`` cores. Nothing
    is read until the Dataset is consumed.
    """
    import ray

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: List[str] = [os.fspath(p) for p in paths]
    if workers is None:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = max(1, (cpus - 1) // max(1, threads_per_worker))
    ds = ray.data.read_binary_files(files, include_paths=True)
    return ds.map_batches(
        Reader,
        fn_constructor_kwargs={"model": model, "number": number, "threads": threads_per_worker},
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=threads_per_worker,
        compute=ray.data.ActorPoolStrategy(size=workers),
    )
