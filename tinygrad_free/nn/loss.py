"""Classification losses on raw logits, with the softmax fused in (mean over the batch).

``loss = loss_fn(logits, y)`` returns a Python float and caches dL/dlogits;
``loss_fn.backward()`` returns it (scaled by ``grad``, 1.0 by default).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

import numpy as np

from .. import backend

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from .._typing import Array


class NonFiniteError(ValueError):
    """Logits contain NaN or inf: the run has diverged (a trainer stops on this)."""


class Loss:
    """Base of the losses: validates inputs, runs the fused kernel, caches the gradient.

    Attributes
    ----------
    correct : int
        After ``forward``: the rows of the batch whose largest logit (the first, on ties) is at
        the label, i.e. the batch's accuracy times its size. The kernel counts them while it
        finds each row's maximum, so a trainer's accuracy needs no pass of its own.
    """

    kernel: str | None = None  # name of the fused kernel in backend.ops()

    def __init__(self) -> None:
        self._grad: Array | None = None
        self.correct = 0

    def __call__(self, logits: ArrayLike, y: ArrayLike) -> float:
        return self.forward(logits, y)

    def forward(self, logits: ArrayLike, y: ArrayLike) -> float:
        z = np.asarray(logits)
        if z.ndim != 2:
            raise ValueError(f"{type(self).__name__}: logits must have shape (batch, classes), got {z.shape}")
        if z.dtype.kind != "f":
            raise ValueError(f"{type(self).__name__}: logits must be float32 or float64, got {z.dtype}")
        labels = self._labels(y, z.shape)
        if self._grad is None or self._grad.shape != z.shape or self._grad.dtype != z.dtype:
            self._grad = np.empty_like(z)
        # The kernel checks the label range and the logits' finiteness in its own pass over them.
        try:
            loss, self.correct = getattr(backend.ops(), cast(str, self.kernel))(z, labels, self._grad)
        except IndexError:
            raise ValueError(
                f"labels out of range: expected 0..{z.shape[1] - 1}, got min {labels.min()}, max {labels.max()}"
            ) from None
        if z.shape[0] and math.isnan(loss):
            raise NonFiniteError(
                f"{type(self).__name__}: logits contain NaN or inf (the model diverged; "
                "lower the learning rate or check the input scaling)"
            )
        return loss

    def backward(self, grad: float = 1.0) -> Array:
        """dL/dlogits of the last forward, times ``grad``. A fresh array each call."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._grad * grad if grad != 1.0 else self._grad.copy()

    @staticmethod
    def _labels(y: ArrayLike, shape: tuple[int, ...]) -> Array:
        """Integer class indices from int labels (batch,) or one-hot targets (batch, classes)."""
        B, C = shape
        y = np.asarray(y)
        if y.ndim == 2:
            if y.shape != shape:
                raise ValueError(f"one-hot targets must have the logits' shape {shape}, got {y.shape}")
            labels = y.argmax(axis=1)
            if not (np.all(y.sum(axis=1) == 1) and np.all(y[np.arange(B), labels] == 1)):
                raise ValueError(
                    "2-D targets must be one-hot rows (a single 1, zeros elsewhere); "
                    "pass integer labels of shape (batch,) otherwise"
                )
            return labels
        if y.ndim != 1 or y.shape[0] != B:
            raise ValueError(
                f"labels must be int class indices of shape ({B},) or one-hot of shape {shape}, got shape {y.shape}"
            )
        if y.dtype.kind not in "iu":
            raise ValueError(f"labels must be integers, got dtype {y.dtype}")
        return y


class CrossEntropyLoss(Loss):
    """L = -(1/B) sum_b log softmax(z_b)[y_b], via log-sum-exp; dL/dz = (softmax(z) - onehot(y)) / B."""

    kernel = "softmax_cross_entropy"


class MSELoss(Loss):
    """The course's "mean_squared_error": squared error of the softmax probabilities.

    L = (1/B) sum_b sum_k (p_bk - onehot(y_b)_k)^2 with p = softmax(z); with q = 2 (p - onehot) / B,
    dL/dz = p * (q - sum_k q_k p_k).
    """

    kernel = "softmax_squared_error"


LOSSES = {
    "cross_entropy": CrossEntropyLoss,
    "crossentropy": CrossEntropyLoss,
    "mean_squared_error": MSELoss,
    "mse": MSELoss,
    "squared_error": MSELoss,
}


def get_loss(name: str) -> Loss:
    """A loss by name: cross_entropy or mean_squared_error (aliases: mse)."""
    key = str(name).lower()
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of cross_entropy, mean_squared_error")
    return LOSSES[key]()
