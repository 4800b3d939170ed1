"""Losses: modules whose output is one number (the mean over the batch).

``loss = loss_fn(prediction, target)`` returns a Python float; ``loss_fn.backward()`` returns
dL/dprediction of that call (times ``grad``, 1.0 by default). A loss is a module like any other
(see ``nn.context``): each call with gradients enabled keeps its own gradient, a plain
``backward()`` takes the one pending call and refuses when there are several (a loss object used
for two heads: pair each call with ``loss, backprop = loss_fn.begin_update(z, y)``), and a call
under ``nn.no_grad()`` keeps nothing.

The classification losses take raw logits and fuse the softmax in (one kernel computes the
loss, the gradient and the batch's correct predictions).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from .. import backend
from ..registry import Registry
from .module import Module

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from .._typing import Array


class NonFiniteError(ValueError):
    """Logits contain NaN or inf: the run has diverged (a trainer stops on this)."""


class Loss(Module):
    """Base of the losses: a module whose forward returns a float and whose backward takes
    dL/dloss (a number, 1.0 when omitted) and returns dL/dprediction."""

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    _keeps_inputs = False  # a call keeps its gradient, not its inputs
    _g: Array  # the gradient a call keeps for its backward

    def forward(self, prediction: ArrayLike, target: ArrayLike) -> float:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(prediction, target)")

    def backward(self, grad: float = 1.0) -> Array:
        """dL/dprediction of the call this backward belongs to, times ``grad``."""
        g: Array = self._g
        return g if grad == 1.0 else g * grad

    def get_config(self) -> dict[str, Any]:
        return {}


class ClassificationLoss(Loss):
    """A loss on raw logits (batch, classes) and integer labels (batch,) or one-hot targets,
    computed by one fused kernel.

    Attributes
    ----------
    correct : int
        After ``forward``: the rows of the batch whose largest logit (the first, on ties) is at
        the label, i.e. the batch's accuracy times its size. The kernel counts them while it
        finds each row's maximum, so a trainer's accuracy needs no pass of its own.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    _keeps_inputs = False
    kernel: ClassVar[str]  # name of the fused kernel in backend.ops()

    def __init__(self) -> None:
        super().__init__()
        self.correct = 0
        self._scratch: Array | None = None  # the gradient buffer of calls that keep none

    def forward(self, logits: ArrayLike, y: ArrayLike) -> float:
        z = np.asarray(logits)
        if z.ndim != 2:
            raise ValueError(f"{type(self).__name__}: logits must have shape (batch, classes), got {z.shape}")
        if z.dtype.kind != "f":
            raise ValueError(f"{type(self).__name__}: logits must be float32 or float64, got {z.dtype}")
        labels = self._labels(y, z.shape)
        recording = self.recording
        if recording:  # this call's own gradient, handed over by its backward
            grad = np.empty_like(z)
        else:
            if self._scratch is None or self._scratch.shape != z.shape or self._scratch.dtype != z.dtype:
                self._scratch = np.empty_like(z)
            grad = self._scratch
        # The kernel checks the label range and the logits' finiteness in its own pass over them.
        try:
            loss, correct = getattr(backend.ops(), self.kernel)(z, labels, grad)
        except IndexError:
            raise ValueError(
                f"labels out of range: expected 0..{z.shape[1] - 1}, got min {labels.min()}, max {labels.max()}"
            ) from None
        if z.shape[0] and math.isnan(loss):
            raise NonFiniteError(
                f"{type(self).__name__}: logits contain NaN or inf (the model diverged; "
                "lower the learning rate or check the input scaling)"
            )
        object.__setattr__(self, "correct", correct)  # the latest call's, not a per-call value
        if recording:
            self._g = grad
        return cast(float, loss)

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


class CrossEntropyLoss(ClassificationLoss):
    r"""L = -(1/B) sum_b log softmax(z_b)[y_b], via log-sum-exp; dL/dz = (softmax(z) - onehot(y)) / B.

    $$
    L = -\frac{1}{B} \sum_b \log \operatorname{softmax}(z_b)_{y_b}, \qquad
    \frac{\partial L}{\partial z} = \frac{1}{B} \big(\operatorname{softmax}(z) - \operatorname{onehot}(y)\big)
    $$

    for logits $z$ of shape (B, classes); the log-softmax is taken through the log-sum-exp, so
    large logits do not overflow. As ``torch.nn.CrossEntropyLoss()`` (mean reduction) on logits.
    """

    kernel = "softmax_cross_entropy"


class SoftmaxMSELoss(ClassificationLoss):
    r"""The course assignment's "mean_squared_error": squared error of the softmax probabilities
    against the one-hot labels (``-l mean_squared_error`` in ``scripts/train.py``).

    $$
    L = \frac{1}{B} \sum_b \sum_k \big(p_{bk} - \operatorname{onehot}(y_b)_k\big)^2,
    \qquad p = \operatorname{softmax}(z)
    $$

    and with $q = 2 (p - \operatorname{onehot}(y)) / B$, row by row,

    $$
    \frac{\partial L}{\partial z} = p \odot \Big(q - \sum_k q_k p_k\Big)
    $$

    (For regression use ``MSELoss``.)
    """

    kernel = "softmax_squared_error"


class MSELoss(Loss):
    r"""Mean squared error for regression, as ``torch.nn.MSELoss()`` (mean reduction):
    L = (1/n) sum_i (prediction_i - target_i)^2 over all n elements; dL/dprediction = 2 (prediction - target) / n.

    $$
    L = \frac{1}{n} \sum_i (\hat y_i - y_i)^2, \qquad \frac{\partial L}{\partial \hat y} = \frac{2}{n} (\hat y - y)
    $$

    ``prediction`` ($\hat y$) and ``target`` ($y$) are float arrays of one shape (no
    broadcasting). For the assignment's squared error of softmax probabilities against labels
    see ``SoftmaxMSELoss``.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    _keeps_inputs = False

    def forward(self, prediction: ArrayLike, target: ArrayLike) -> float:
        p, t = np.asarray(prediction), np.asarray(target)
        if p.dtype.kind != "f":
            raise ValueError(f"MSELoss: the prediction must be a float array, got dtype {p.dtype}")
        if t.shape != p.shape:
            raise ValueError(
                f"MSELoss: target shape {t.shape} differs from the prediction's {p.shape}; give targets of the "
                "prediction's shape (no broadcasting; for class labels use CrossEntropyLoss or SoftmaxMSELoss)"
            )
        if t.dtype.kind not in "fiu":
            raise ValueError(f"MSELoss: the target must be numeric, got dtype {t.dtype}")
        diff = p - t.astype(p.dtype, copy=False)
        n = max(diff.size, 1)
        loss = float(np.vdot(diff, diff)) / n
        if not math.isfinite(loss) and diff.size:
            raise NonFiniteError("MSELoss: the prediction or target contains NaN or inf")
        if self.recording:
            diff *= p.dtype.type(2.0 / n)
            self._g = diff
        return loss


#: The classification losses by name (the CLI's ``-l``): ``mean_squared_error`` (alias ``mse``) is
#: the assignment's squared error of the softmax outputs.
LOSSES: Registry[type[Loss]] = Registry("loss")
LOSSES.add("cross_entropy", CrossEntropyLoss, "crossentropy")
LOSSES.add("mean_squared_error", SoftmaxMSELoss, "mse", "squared_error")


def get_loss(name: str) -> Loss:
    """A loss by name: cross_entropy or mean_squared_error (the assignment's, on softmax outputs; alias mse)."""
    return LOSSES.get(name)()
