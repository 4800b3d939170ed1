"""Merge layers: several inputs of one shape in, one array out (``Add``, ``Multiply``) or joined
along an axis (``Concat``). Forward takes the arrays; backward returns one gradient per input."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .module import Module

if TYPE_CHECKING:
    from .._typing import Array, OnnxBuilder


def _same_shapes(layer: str, xs: tuple[Array, ...]) -> None:
    if len(xs) < 2:
        raise ValueError(f"{layer} takes at least 2 inputs, got {len(xs)}")
    shapes = [np.shape(x) for x in xs]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"{layer} needs inputs of one shape, got {shapes}")


class Add(Module):
    """y = x_1 + x_2 + ... + x_n (same shapes; no broadcasting). dL/dx_i = dL/dy for every i.

    The same gradient array is returned for every input: a caller must not modify it in place.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    _keeps_inputs = False  # backward needs only the split points

    def forward(self, *xs: Array) -> Array:
        _same_shapes("Add", xs)
        y = np.add(xs[0], xs[1])
        for x in xs[2:]:
            y += x
        if self.recording:
            self._n = len(xs)
        return y

    def backward(self, grad_out: Array) -> tuple[Array, ...]:
        return (grad_out,) * self._n

    def get_config(self) -> dict[str, Any]:
        return {}

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: a chain of Add nodes."""
        y = inputs[0]
        for x in inputs[1:]:
            y = b.op("Add", [y, x])
        return [y]


class Multiply(Module):
    """y = x_1 * x_2 * ... * x_n element-wise (same shapes). dL/dx_i = dL/dy * prod_{j != i} x_j."""

    _writes_inputs = False  # never writes into its inputs (see nn.context)

    def forward(self, *xs: Array) -> Array:
        _same_shapes("Multiply", xs)
        y = np.multiply(xs[0], xs[1])
        for x in xs[2:]:
            y *= x
        if self.recording:
            self._xs = xs
        return y

    def backward(self, grad_out: Array) -> tuple[Array, ...]:
        xs = self._xs
        grads = []
        for i in range(len(xs)):
            g = grad_out.copy()
            for j, x in enumerate(xs):
                if j != i:
                    g *= x
            grads.append(g)
        return tuple(grads)

    def get_config(self) -> dict[str, Any]:
        return {}

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: a chain of Mul nodes."""
        y = inputs[0]
        for x in inputs[1:]:
            y = b.op("Mul", [y, x])
        return [y]


class Concat(Module):
    """y = concatenate(x_1, ..., x_n) along ``axis`` (counted with the batch axis first, as in
    Keras's Concatenate; -1 is the feature axis). Backward splits dL/dy back into the pieces."""

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    _keeps_inputs = False  # backward needs only the split points

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"Concat: axis must be an int, got {axis!r}")
        self.axis = int(axis)

    def forward(self, *xs: Array) -> Array:
        if len(xs) < 2:
            raise ValueError(f"Concat takes at least 2 inputs, got {len(xs)}")
        ndim = np.ndim(xs[0])
        axis = self.axis + ndim if self.axis < 0 else self.axis
        if not 1 <= axis < ndim:
            raise ValueError(
                f"Concat: axis {self.axis} is the batch axis or out of range for inputs of "
                f"rank {ndim}; join along a feature axis (1..{ndim - 1} or -1)"
            )
        shapes = [np.shape(x) for x in xs]
        if any(len(s) != ndim or s[:axis] + s[axis + 1 :] != shapes[0][:axis] + shapes[0][axis + 1 :] for s in shapes):
            raise ValueError(f"Concat(axis={self.axis}) needs inputs that differ only along that axis, got {shapes}")
        y = np.concatenate(xs, axis=axis)
        if self.recording:
            self._splits = np.cumsum([s[axis] for s in shapes])[:-1]
            self._axis = axis
        return y

    def backward(self, grad_out: Array) -> tuple[Array, ...]:
        return tuple(np.split(grad_out, self._splits, axis=self._axis))

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}

    def extra_repr(self) -> str:
        return f"axis={self.axis}"

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: Concat along the same axis (batch axis first)."""
        return [b.op("Concat", inputs, axis=self.axis)]
