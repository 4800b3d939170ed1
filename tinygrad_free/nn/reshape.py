"""Reshape and Permute: rearranging each sample's axes, the batch axis left first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .module import Module

if TYPE_CHECKING:
    from .._typing import Array, OnnxBuilder


def _ints(value: Any) -> tuple[int, ...] | None:
    try:
        items = tuple(value)
    except TypeError:
        return None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
        return None
    return tuple(int(v) for v in items)


class Reshape(Module):
    """y = x.reshape(N, *shape): each sample's values in C order, given a new shape; one entry
    may be -1 (inferred). As Keras's ``Reshape(target_shape)`` and PyTorch's
    ``x.reshape(N, *shape)`` (``nn.Unflatten(1, shape)`` after a flatten). A view when x is
    C-contiguous. Backward: dy reshaped to x's shape. No parameters.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)

    def __init__(self, shape: int | tuple[int, ...] | list[int]) -> None:
        super().__init__()
        items = _ints((shape,) if isinstance(shape, (int, np.integer)) else shape)
        if not items or any(v == 0 or v < -1 for v in items) or items.count(-1) > 1:
            raise ValueError(
                f"Reshape: shape must be a non-empty tuple of positive ints (the shape of one sample, without "
                f"the batch axis), at most one of them -1, got {shape!r}"
            )
        self.shape = items

    def forward(self, x: Array) -> Array:
        if getattr(x, "ndim", 0) < 1:
            raise ValueError(f"{self!r}: expected an array with a batch axis, got {getattr(x, 'shape', type(x))}")
        size = int(np.prod(x.shape[1:]))
        known = int(np.prod([v for v in self.shape if v != -1]))
        if (-1 in self.shape and (known == 0 or size % known)) or (-1 not in self.shape and known != size):
            raise ValueError(
                f"{self!r}: cannot reshape samples of shape {x.shape[1:]} ({size} values) into {self.shape}"
                + ("" if -1 in self.shape else f" ({known} values)")
            )
        if self.recording:
            self._x_shape = x.shape
        return x.reshape((x.shape[0],) + self.shape)

    def backward(self, grad_out: Array) -> Array:
        return grad_out.reshape(self._x_shape)

    def get_config(self) -> dict[str, Any]:
        return {"shape": list(self.shape)}

    def extra_repr(self) -> str:
        return str(self.shape)

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: Reshape to (batch, *shape) (0 keeps the batch axis)."""
        return [b.op("Reshape", [inputs[0], b.ints([0, *self.shape], "shape")])]


class Permute(Module):
    """y = x.transpose(0, *dims): the sample's axes reordered, the batch axis staying first, as
    Keras's ``Permute(dims)`` (axes counted from 1) and PyTorch's ``x.permute(0, *dims)``; e.g.
    ``Permute((2, 1))`` turns (N, C, L) into (N, L, C). The output is a C-contiguous copy, so the
    next layer reads it in order. Backward: dy permuted back. No parameters.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    _keeps_inputs = False  # its output is a copy; backward needs only the axes

    def __init__(self, dims: tuple[int, ...] | list[int]) -> None:
        super().__init__()
        items = _ints(dims)
        if not items or sorted(items) != list(range(1, len(items) + 1)):
            raise ValueError(
                f"Permute: dims must be a permutation of 1..k, the sample's axes (the batch axis 0 stays first), "
                f"got {dims!r}"
            )
        self.dims = items
        self._inverse = tuple(int(i) for i in np.argsort((0,) + items))

    def forward(self, x: Array) -> Array:
        if getattr(x, "ndim", 0) != len(self.dims) + 1:
            raise ValueError(
                f"{self!r}: expected input with {len(self.dims)} axes besides the batch axis, "
                f"got shape {getattr(x, 'shape', type(x).__name__)}"
            )
        return np.ascontiguousarray(x.transpose((0,) + self.dims))

    def backward(self, grad_out: Array) -> Array:
        return np.ascontiguousarray(grad_out.transpose(self._inverse))

    def get_config(self) -> dict[str, Any]:
        return {"dims": list(self.dims)}

    def extra_repr(self) -> str:
        return str(self.dims)

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: Transpose with the batch axis first."""
        return [b.op("Transpose", inputs[:1], perm=[0, *self.dims])]
