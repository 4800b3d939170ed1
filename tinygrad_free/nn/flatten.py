"""Flatten: (N, C, H, W) -> (N, C*H*W), in C order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .module import Module

if TYPE_CHECKING:
    from .._typing import Array, OnnxBuilder


class Flatten(Module):
    """y = x.reshape(N, -1) in C (row-major) order, so (N, C, H, W) becomes (N, C*H*W) with the
    channel index slowest, as PyTorch's ``nn.Flatten()``; the result is a view when x is
    C-contiguous (which every layer's output is). Backward reshapes dy back. No parameters.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: Array) -> Array:
        if getattr(x, "ndim", 0) < 2:
            raise ValueError(
                f"{self!r}: expected input of shape (batch, ...) with at least 2 dimensions, "
                f"got {getattr(x, 'shape', type(x).__name__)}"
            )
        if self.recording:
            self._x_shape = x.shape
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))

    def backward(self, grad_out: Array) -> Array:
        return grad_out.reshape(self._x_shape)

    def get_config(self) -> dict[str, Any]:
        return {}

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: Flatten(axis=1), row-major as here."""
        return [b.op("Flatten", inputs[:1], axis=1)]
