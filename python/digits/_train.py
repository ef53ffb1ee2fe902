"""Training and evaluation on MNIST, as ``digits train`` and ``digits eval`` do them."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Union

from . import _digits
from ._model import Model, load_model


class _Progress:
    """Shows the native training events: a tqdm bar per epoch (in a notebook, its widget)
    when tqdm is installed, lines of text otherwise."""

    def __init__(self) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            tqdm = None
        self._tqdm = tqdm
        self._bar = None
        self._epochs = ""

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __call__(self, event: str, value: Any) -> None:
        if event == "batch":
            epoch, done, total, loss, ips = value
            if self._tqdm is None:
                return
            if self._bar is None:
                self._bar = self._tqdm(total=total, desc=f"epoch {epoch + 1}", unit="batch")
            self._bar.update(done - self._bar.n)
            self._bar.set_postfix(loss=f"{loss:.4f}", images_per_s=f"{ips:.0f}", refresh=False)
        elif event == "machine":
            done, total = value
            if self._tqdm is not None:
                if self._bar is None:
                    self._bar = self._tqdm(total=total, desc="svm", unit="machine")
                self._bar.update(done - self._bar.n)
        elif event == "epoch":
            self._close()
            s = json.loads(value)
            print(
                f"epoch {s['epoch']}: train loss {s['train_loss']:.4f}, "
                f"train acc {100 * s['train_accuracy']:.2f}%, val loss {s['validation_loss']:.4f}, "
                f"val acc {100 * s['validation_accuracy']:.2f}%, {s['seconds']:.1f}s "
                f"({s['images_per_second']:.0f} images/s)"
            )
        elif event == "note":
            self._close()
            print(value)


def train(
    model: str = "cnn-small",
    epochs: Optional[int] = None,
    out: Optional[Union[str, os.PathLike]] = None,
    progress: bool = True,
    *,
    seed: int = 1,
    split_seed: int = 1,
    validation: int = 5000,
    limit: Optional[int] = None,
    resume: bool = False,
    max_batches: Optional[int] = None,
    data_dir: Optional[Union[str, os.PathLike]] = None,
    teacher: Optional[Union[str, os.PathLike]] = None,
    teacher_weight: float = 0.5,
) -> Optional[Model]:
    """Train ``model`` (``cnn-small``, ``cnn-minute``, ``cnn``, ``cnn-large``, ``cnn-nopool``,
    ``cnn-ref``, ``mlp``, ``svm``, or ``best`` and ``record``: the ensembles) on MNIST exactly
    as ``digits train`` does, save it to ``out`` (default ``runs/NAME.safetensors``) and return
    it, its test accuracy recorded (``judge``, the number reader's judge, is saved but returns
    None: it is no digit classifier).

    A checkpoint is written beside ``out`` after every epoch; ``resume=True`` continues from it.
    ``teacher`` (a shipped name such as ``ensemble-large``, or a file) distils: the network also
    learns from that model's probabilities, ``teacher_weight`` of each target.
    Ctrl+C stops after the current batch with ``KeyboardInterrupt``, the checkpoint kept.

    >>> m = train("cnn-small", epochs=1, out="runs/cnn-small.safetensors")  # doctest: +SKIP
    >>> m.test_accuracy                                                      # doctest: +SKIP
    0.9868
    """
    for name, value in (("epochs", epochs), ("limit", limit), ("max_batches", max_batches)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if out is None:
        out = os.path.join("runs", f"{'ensemble' if model == 'best' else model}.safetensors")
    out = os.fspath(out)
    parent = os.path.dirname(out)
    if parent:
        os.makedirs(parent, exist_ok=True)
    reporter = _Progress() if progress else None
    try:
        _digits.train(
            model,
            out,
            epochs,
            seed,
            split_seed,
            validation,
            limit,
            resume,
            max_batches,
            None if data_dir is None else os.fspath(data_dir),
            reporter,
            None if teacher is None else os.fspath(teacher),
            teacher_weight,
        )
    finally:
        if reporter is not None:
            reporter._close()
    if model == "judge":
        return None
    return Model(_digits.NativeModel(out))


def evaluate(
    model: Union[str, os.PathLike, Model] = "cnn",
    split: str = "test",
    data_dir: Optional[Union[str, os.PathLike]] = None,
) -> Dict[str, Any]:
    """Score a model on MNIST ``test`` or ``validation`` (as ``digits eval --json``): accuracy,
    errors, loss, confusion matrix, per-class precision / recall / F1, calibration error, speed.

    >>> evaluate("cnn")["accuracy"]   # doctest: +SKIP
    0.9968
    """
    return load_model(model).evaluate(split, data_dir)
