"""scikit-learn estimators on the Rust core: ``CNNClassifier``, ``MLPClassifier``, ``SVC``.

They follow scikit-learn's conventions (``fit`` / ``predict`` / ``predict_proba`` / ``score``,
``get_params`` / ``set_params``, ``classes_``, cloneable), so ``cross_val_score``,
``GridSearchCV`` and ``Pipeline`` work on MNIST pixels. ``X`` holds 28x28 digits, white ink on
black as in MNIST: ``(n, 784)`` or ``(n, 28, 28)``, uint8 in 0..255 or float in 0..1. ``y`` holds
up to ten classes of any labels.

>>> from sklearn.model_selection import cross_val_score            # doctest: +SKIP
>>> import digits.sklearn, digits.mnist                            # doctest: +SKIP
>>> X, y = digits.mnist.load(split="train")                        # doctest: +SKIP
>>> cross_val_score(digits.sklearn.SVC(), X[:6000], y[:6000], cv=3)  # doctest: +SKIP
array([0.96..., 0.96..., 0.96...])
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from . import _arrays, _digits
from ._model import Model

__all__ = ["CNNClassifier", "MLPClassifier", "SVC"]

_PIXELS = 784


def _digits_layout(X):
    """(n, 28, 28) arrays flattened to (n, 784); anything else as given."""
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise TypeError(
            "Sparse input is not supported: digits are dense 28x28 pixels; pass X.toarray()"
        )
    a = np.asarray(X) if not hasattr(X, "__array__") else X
    shape = getattr(a, "shape", ())
    if len(shape) == 3 and tuple(shape[1:]) == (28, 28):
        return np.asarray(a).reshape(shape[0], _PIXELS)
    return a


def _features(X, estimator: BaseEstimator, y=None):
    """``X`` (and ``y``) checked as scikit-learn checks them, with the standard messages,
    then held to what the estimators read: 784 pixels of a 28x28 digit."""
    a = _digits_layout(X)
    if y is None:
        a = check_array(a, dtype="numeric", ensure_all_finite=True)
    else:
        a, y = check_X_y(a, y, dtype="numeric", ensure_all_finite=True)
        check_classification_targets(y)
        if len(np.unique(y)) < 2:
            raise ValueError(
                f"Classifier can't train when only one class is present: {np.unique(y).tolist()}"
            )
    if a.size and a.min() < 0:
        raise ValueError(
            f"Negative values in data passed to {type(estimator).__name__}: pixels are "
            "0..255 (uint8) or 0..1 (float)"
        )
    if a.shape[1] != _PIXELS:
        raise ValueError(
            f"X has {a.shape[1]} feature(s), but {type(estimator).__name__} reads 28x28 digits "
            f"(784 pixels, MNIST layout)"
        )
    return a, y


class _DigitsClassifier(ClassifierMixin, BaseEstimator):
    """What the three estimators share: label coding, arrays, the fitted native model."""

    _recipe = ""

    def _fit_options(self) -> dict:
        return {}

    def fit(self, X, y):
        """Train on ``X`` (28x28 digits) and ``y`` (up to ten classes); a share
        ``validation_fraction`` of it is held out to calibrate the confidence."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        a, y = _features(X, self, y)
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) > 10:
            raise ValueError(f"at most ten classes can be learnt, y has {len(classes)}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        pixels = _arrays.images_as_bytes(a)
        validation = int(round(len(a) * self.validation_fraction))
        validation = min(validation, len(a) - 1)
        native = _digits.fit(
            self._recipe,
            pixels,
            np.ascontiguousarray(codes, dtype=np.uint8),
            validation,
            seed=int(self.random_state if self.random_state is not None else 1),
            **self._fit_options(),
        )
        self.model_ = Model(native)
        self.classes_ = classes
        self.n_features_in_ = _PIXELS
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities of ``classes_`` for each digit, ``(n, n_classes)``."""
        check_is_fitted(self, "model_")
        p = self.model_.predict_proba(_features(X, self)[0])[:, : len(self.classes_)]
        total = p.sum(axis=1, keepdims=True)
        return p / np.where(total > 0, total, 1.0)

    def predict(self, X) -> np.ndarray:
        """The likeliest class of each digit."""
        p = self.predict_proba(X)
        return self.classes_[p.argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.positive_only = True
        tags.classifier_tags.multi_class = True
        return tags


class CNNClassifier(_DigitsClassifier):
    """The project's convolutional networks: ``architecture`` ``"cnn"`` (the shipped one's,
    99.68% on MNIST in 15 epochs), ``"cnn-small"`` (trains in seconds) or ``"cnn-ref"``.

    Parameters: ``epochs`` (None: the architecture's own), ``validation_fraction`` held out
    to calibrate confidence, ``random_state`` (seed of initialisation, shuffling, augmentation).
    """

    def __init__(
        self,
        architecture: str = "cnn-small",
        epochs: Optional[int] = None,
        validation_fraction: float = 0.1,
        random_state: Optional[int] = None,
    ) -> None:
        self.architecture = architecture
        self.epochs = epochs
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    @property
    def _recipe(self) -> str:  # type: ignore[override]
        if self.architecture not in ("cnn", "cnn-small", "cnn-ref"):
            raise ValueError(
                f"architecture must be cnn, cnn-small or cnn-ref, got {self.architecture!r}"
            )
        return self.architecture

    def _fit_options(self) -> dict:
        return {"epochs": self.epochs}


class MLPClassifier(_DigitsClassifier):
    """The project's multilayer perceptron (784-512-256-10, dropout 0.2; 99.09% on MNIST in
    30 epochs).

    Parameters: ``epochs`` (None: 30), ``validation_fraction``, ``random_state``.
    """

    _recipe = "mlp"

    def __init__(
        self,
        epochs: Optional[int] = None,
        validation_fraction: float = 0.1,
        random_state: Optional[int] = None,
    ) -> None:
        self.epochs = epochs
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def _fit_options(self) -> dict:
        return {"epochs": self.epochs}


class SVC(_DigitsClassifier):
    """The project's RBF-kernel SVM (its own SMO solver, one-vs-one): on ``n_components``
    principal components of (``deskew``) deskewed pixels, so a kernel costs ~50 multiply-adds.

    Parameters: ``C``, ``gamma`` (on PCA coordinates of pixels in 0..1), ``n_components``,
    ``deskew``, ``validation_fraction`` (held out to calibrate ``predict_proba``),
    ``random_state`` (the PCA's random start). The defaults were chosen on MNIST's validation
    split (98.81% on the test set).
    """

    _recipe = "svm"

    def __init__(
        self,
        C: float = 10.0,
        gamma: float = 0.035,
        n_components: int = 50,
        deskew: bool = True,
        validation_fraction: float = 0.1,
        random_state: Optional[int] = None,
    ) -> None:
        self.C = C
        self.gamma = gamma
        self.n_components = n_components
        self.deskew = deskew
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def _fit_options(self) -> dict:
        if not (self.C > 0 and self.gamma > 0):
            raise ValueError(f"C and gamma must be positive, got C={self.C}, gamma={self.gamma}")
        return {
            "svm_c": float(self.C),
            "svm_gamma": float(self.gamma),
            "svm_components": int(self.n_components),
            "svm_deskew": bool(self.deskew),
        }
