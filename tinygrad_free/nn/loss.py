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
from typing import TYPE_CHECKING, Any, ClassVar

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
    kernel_files = ("loss",)
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
    computed by one fused kernel. Sequences, logits (batch, length, classes) with labels
    (batch, length) (or one-hot (batch, length, classes)), are one row per position, as PyTorch's
    ``CrossEntropyLoss`` takes them after moving the classes last.

    Attributes
    ----------
    correct : int
        After ``forward``: the rows (positions) whose largest logit (the first, on ties) is at
        the label, i.e. the batch's accuracy times ``counted``. The kernel counts them while it
        finds each row's maximum, so a trainer's accuracy needs no pass of its own.
    counted : int
        After ``forward``: the rows the mean is over (all of them, but for ``CrossEntropyLoss``'s
        ignored labels).
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    _keeps_inputs = False
    kernel: ClassVar[str]  # name of the fused kernel in backend.ops()

    def __init__(self) -> None:
        super().__init__()
        self.correct = 0
        self.counted = 0
        self._scratch: Array | None = None  # the gradient buffer of calls that keep none

    def _run(self, z: Array, labels: Array, grad: Array) -> tuple[float, int, int]:
        """(loss, correct, counted) of the kernel on rows ``z`` (rows, classes)."""
        loss, correct = getattr(backend.ops(), self.kernel)(z, labels, grad)
        return loss, correct, z.shape[0]

    def forward(self, logits: ArrayLike, y: ArrayLike) -> float:
        z = np.asarray(logits)
        if z.ndim not in (2, 3):
            raise ValueError(
                f"{type(self).__name__}: logits must have shape (batch, classes) or (batch, length, classes), "
                f"got {z.shape}"
            )
        if z.dtype.kind != "f":
            raise ValueError(f"{type(self).__name__}: logits must be float32 or float64, got {z.dtype}")
        labels = self._labels(y, z.shape)
        if z.ndim == 3:  # one row per position
            z, labels = z.reshape(-1, z.shape[2]), labels.reshape(-1)
        recording = self.recording
        if recording:  # this call's own gradient, handed over by its backward
            grad = np.empty_like(z)
        else:
            if self._scratch is None or self._scratch.shape != z.shape or self._scratch.dtype != z.dtype:
                self._scratch = np.empty_like(z)
            grad = self._scratch
        # The kernel checks the label range and the logits' finiteness in its own pass over them.
        try:
            loss, correct, counted = self._run(z, labels, grad)
        except IndexError:
            raise ValueError(self._out_of_range(labels, z.shape[1])) from None
        if z.shape[0] and not counted:
            raise ValueError(
                f"{type(self).__name__}: every label is ignore_index ({getattr(self, 'ignore_index', None)}), so "
                "the mean is over no position (PyTorch gives nan); leave at least one position to learn from"
            )
        if z.shape[0] and math.isnan(loss):
            raise NonFiniteError(
                f"{type(self).__name__}: logits contain NaN or inf (the model diverged; "
                "lower the learning rate or check the input scaling)"
            )
        object.__setattr__(self, "correct", correct)  # the latest call's, not a per-call value
        object.__setattr__(self, "counted", counted)
        if recording:
            self._g = grad if grad.shape == np.shape(logits) else grad.reshape(np.shape(logits))
        return loss

    def _out_of_range(self, labels: Array, classes: int) -> str:
        return f"labels out of range: expected 0..{classes - 1}, got min {labels.min()}, max {labels.max()}"

    @staticmethod
    def _labels(y: ArrayLike, shape: tuple[int, ...]) -> Array:
        """Integer class indices from int labels (batch,) or one-hot targets (batch, classes)
        (with a length axis after the batch axis for sequences)."""
        C = shape[-1]
        y = np.asarray(y)
        if y.ndim == len(shape) and y.dtype.kind in "iufb":
            if y.shape != shape:
                raise ValueError(f"one-hot targets must have the logits' shape {shape}, got {y.shape}")
            labels = y.argmax(axis=-1)
            rows = y.reshape(-1, C)
            if not (np.all(rows.sum(axis=1) == 1) and np.all(rows[np.arange(len(rows)), labels.reshape(-1)] == 1)):
                raise ValueError(
                    f"{len(shape)}-D targets must be one-hot rows (a single 1, zeros elsewhere); "
                    f"pass integer labels of shape {shape[:-1]} otherwise"
                )
            return labels
        if y.shape != shape[:-1]:
            raise ValueError(
                f"labels must be int class indices of shape {shape[:-1]} or one-hot of shape {shape}, "
                f"got shape {y.shape}"
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
    large logits do not overflow.

    As ``torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=0.0)`` (mean reduction) on
    logits (batch, classes), or (batch, length, classes) with labels (batch, length) (PyTorch
    takes those as (batch, classes, length): ``z.transpose(1, 2)``). Positions labelled
    ``ignore_index`` (padding) take no part: no loss, a zero gradient, and the mean is over the
    B' others. With ``label_smoothing`` e the target is (1 - e) onehot(y) + e / C
    (Szegedy et al. 2016): L_b = -sum_k q_k log p_bk, dL/dz_b = (p_b - q) / B'.

    Parameters
    ----------
    ignore_index : int
        The label of positions to leave out (PyTorch's default, -100).
    label_smoothing : float in [0, 1]
    """

    kernel = "cross_entropy"

    def __init__(self, ignore_index: int = -100, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise ValueError(f"CrossEntropyLoss: ignore_index must be an int, got {ignore_index!r}")
        ok = isinstance(label_smoothing, (int, float, np.integer, np.floating)) and not isinstance(
            label_smoothing, bool
        )
        if not ok or not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
        self.ignore_index, self.label_smoothing = int(ignore_index), float(label_smoothing)

    def _run(self, z: Array, labels: Array, grad: Array) -> tuple[float, int, int]:
        loss, correct, counted = backend.ops().cross_entropy(z, labels, grad, self.ignore_index, self.label_smoothing)
        return loss, correct, counted

    def _out_of_range(self, labels: Array, classes: int) -> str:
        kept = labels[labels != self.ignore_index]
        return (
            f"labels out of range: expected 0..{classes - 1} (or ignore_index {self.ignore_index}), got min "
            f"{kept.min()}, max {kept.max()}"
        )

    def get_config(self) -> dict[str, Any]:
        return {"ignore_index": self.ignore_index, "label_smoothing": self.label_smoothing}

    def extra_repr(self) -> str:
        parts = [] if self.ignore_index == -100 else [f"ignore_index={self.ignore_index}"]
        parts += [f"label_smoothing={self.label_smoothing}"] if self.label_smoothing else []
        return ", ".join(parts)


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
