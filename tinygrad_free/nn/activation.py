"""Element-wise activations: the functions, their gradients from the OUTPUT, and layers.

Each gradient is written in terms of y = f(z), so a layer caches its output and never
recomputes f in backward:

==========  =====================================  ======================================
name        f(z)                                   f'(z) from y
==========  =====================================  ======================================
identity    z                                      1
sigmoid     1 / (1 + e^-z)                         y (1 - y)
tanh        tanh z                                 1 - y^2
relu        max(z, 0)                              1 if y > 0 else 0
gelu        z Phi(z) = z erfc(-z / sqrt 2) / 2     from z: Phi(z) + z phi(z) (``kernels.gelu``)
gelu_tanh   z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) / 2    from z
==========  =====================================  ======================================

GELU is not one-to-one, so its derivative comes from the pre-activation z: a layer with GELU
(fused in ``Dense``/``Conv2D``, or the ``GELU`` layer) keeps z instead of y for its backward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from ..kernels.dense import GELU as GELU_CODE
from ..kernels.dense import GELU_TANH, IDENTITY, RELU, SIGMOID, TANH, from_input  # the kernels' codes: one table
from ..registry import Registry
from .module import Module

if TYPE_CHECKING:
    from .._typing import Array, OnnxBuilder

#: The activations by name (``linear`` is ``identity``), as the kernels' codes.
CODES: Registry[int] = Registry("activation")
CODES.add("identity", IDENTITY, "linear")
CODES.add("sigmoid", SIGMOID)
CODES.add("tanh", TANH)
CODES.add("relu", RELU)
CODES.add("gelu", GELU_CODE)
CODES.add("gelu_tanh", GELU_TANH)
NAMES = {c: name for name, c in CODES.items()}


def code(name: str | None) -> int:
    """The activation code of ``name`` (case-insensitive; ``None`` means identity)."""
    return IDENTITY if name is None else CODES.get(name)


class Activation(Module):
    """An element-wise activation as a layer: caches y in forward (GELU: its input), returns
    gy * f'(z) computed from it."""

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    kernel_files = ("dense",)
    _keeps_inputs = False  # backward needs what forward computed, not x

    code = IDENTITY

    def forward(self, x: Array) -> Array:
        x = np.asarray(x)
        z = x if x.dtype.kind == "f" else x.astype(np.float32)
        y = z.copy()
        backend.ops().bias_act(y, None, self.code)
        if self.recording:
            self._keep = z if from_input(self.code) else y  # what the derivative is computed from
        return y

    def backward(self, grad_out: Array) -> Array:
        if self.code == IDENTITY:
            return grad_out.copy()
        out = np.empty_like(self._keep)
        backend.ops().act_grad(self._keep, grad_out, self.code, out)
        return out

    def get_config(self) -> dict[str, Any]:
        return {}

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: Sigmoid, Tanh or Relu (Identity adds no node)."""
        return [b.activation(inputs[0], NAMES[self.code])]


class Identity(Activation):
    r"""y = z; dz = dy.

    $$ y = z, \qquad dz = dy $$
    """

    code = IDENTITY


class Sigmoid(Activation):
    r"""y = 1 / (1 + e^-z); dz = dy * y (1 - y), as ``torch.nn.Sigmoid``.

    $$ y = \frac{1}{1 + e^{-z}}, \qquad dz = dy \odot y \odot (1 - y) $$
    """

    code = SIGMOID


class Tanh(Activation):
    r"""y = tanh z; dz = dy * (1 - y^2), as ``torch.nn.Tanh``.

    $$ y = \tanh z, \qquad dz = dy \odot (1 - y^2) $$
    """

    code = TANH


class ReLU(Activation):
    r"""y = max(z, 0); dz = dy where y > 0, else 0 (0 at z = 0, as ``torch.nn.ReLU``).

    $$ y = \max(z, 0), \qquad dz = dy \odot [y > 0] $$
    """

    code = RELU


class GELU(Activation):
    """gelu(x) = x Phi(x), Phi the standard normal's distribution function (Hendrycks & Gimpel
    2016), as PyTorch's ``nn.GELU(approximate="none")``; ``approximate="tanh"`` is
    x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2, as ``nn.GELU(approximate="tanh")``.

    Backward: gy * (Phi(x) + x phi(x)) (tanh form: its own derivative), from the input x, which
    the layer keeps (GELU's output does not determine its input). The same activation fuses into
    ``Dense`` and ``Conv2D`` as ``activation="gelu"`` (or ``"gelu_tanh"``). float32 evaluates erfc
    and exp by vectorised approximations (``kernels.approx``, relative error < 1e-5), float64
    exactly.
    """

    _keeps_inputs = True  # its backward reads x: a top-level call keeps its own copy

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh' (as PyTorch's), got {approximate!r}")
        self.approximate = approximate
        self.code = GELU_CODE if approximate == "none" else GELU_TANH

    def get_config(self) -> dict[str, Any]:
        return {"approximate": self.approximate}

    def extra_repr(self) -> str:
        return "" if self.approximate == "none" else "approximate='tanh'"


ACTIVATION_LAYERS: dict[int, Callable[[], Activation]] = {
    IDENTITY: Identity,
    SIGMOID: Sigmoid,
    TANH: Tanh,
    RELU: ReLU,
    GELU_CODE: GELU,
    GELU_TANH: lambda: GELU("tanh"),
}


def get(name: str | None) -> Activation:
    """An activation layer by name: ``get("ReLU") -> ReLU()``, ``get("gelu_tanh") -> GELU("tanh")``."""
    return ACTIVATION_LAYERS[code(name)]()


class Softmax(Module):
    """Softmax over the last axis. Backward: gx = y * (gy - sum(gy * y)).

    For classification use raw logits with ``CrossEntropyLoss``/``MSELoss``, which apply the
    softmax themselves (fused and numerically stable); this layer is for when you need the
    probabilities inside a network.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    _keeps_inputs = False  # backward needs what forward computed, not x

    def forward(self, x: Array) -> Array:
        z = x - x.max(axis=-1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=-1, keepdims=True)
        if self.recording:
            self._y = z
        return z

    def backward(self, grad_out: Array) -> Array:
        y = self._y
        return y * (grad_out - (grad_out * y).sum(axis=-1, keepdims=True))

    def get_config(self) -> dict[str, Any]:
        return {}

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: Softmax over the last axis."""
        return [b.op("Softmax", inputs[:1], axis=-1)]
