"""Element-wise activations: the functions, their gradients from the OUTPUT, and layers.

Each gradient is written in terms of y = f(z), so a layer caches its output and never
recomputes f in backward:

==========  ==================  ======================
name        f(z)                f'(z) from y
==========  ==================  ======================
identity    z                   1
sigmoid     1 / (1 + e^-z)      y (1 - y)
tanh        tanh z              1 - y^2
relu        max(z, 0)           1 if y > 0 else 0
==========  ==================  ======================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from ..kernels.dense import IDENTITY, RELU, SIGMOID, TANH  # the codes numba dispatches on: one table
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
NAMES = {c: name for name, c in CODES.items()}


def code(name: str | None) -> int:
    """The activation code of ``name`` (case-insensitive; ``None`` means identity)."""
    return IDENTITY if name is None else CODES.get(name)


class Activation(Module):
    """An element-wise activation as a layer: caches y in forward, returns gy * f'(y)."""

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    _keeps_inputs = False  # backward needs what forward computed, not x

    code = IDENTITY

    def forward(self, x: Array) -> Array:
        x = np.asarray(x)
        y = x.copy() if x.dtype.kind == "f" else x.astype(np.float32)
        backend.ops().bias_act(y, None, self.code)
        if self.recording:
            self._y = y
        return y

    def backward(self, grad_out: Array) -> Array:
        if self.code == IDENTITY:
            return grad_out.copy()
        out = np.empty_like(self._y)
        backend.ops().act_grad(self._y, grad_out, self.code, out)
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


ACTIVATION_LAYERS = {IDENTITY: Identity, SIGMOID: Sigmoid, TANH: Tanh, RELU: ReLU}


def get(name: str | None) -> Activation:
    """An activation layer by name: ``get("ReLU") -> ReLU()``."""
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
