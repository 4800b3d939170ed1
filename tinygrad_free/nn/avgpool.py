"""2-D average pooling (NCHW)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from . import _checks as check
from .module import Module

if TYPE_CHECKING:
    from .._typing import Array, OnnxBuilder


class AvgPool2D(Module):
    """y[n, c, oh, ow] = mean_{i<kh, j<kw} x[n, c, sh*oh + i, sw*ow + j], as PyTorch's
    ``nn.AvgPool2d(kernel_size, stride)`` (no padding, floor mode; ``stride`` defaults to the
    kernel size). Backward spreads dy / (kh kw) over each window. No parameters.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    kernel_files = ("pool",)
    _keeps_inputs = False  # backward needs what forward computed, not x

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        self.kernel_size = check.pair(kernel_size, "kernel_size", "AvgPool2D")
        self.stride = self.kernel_size if stride is None else check.pair(stride, "stride", "AvgPool2D")

    def forward(self, x: Array) -> Array:
        n, c, ho, wo = check.pool_geometry(self, x)
        y = np.empty((n, c, ho, wo), x.dtype)
        backend.ops().avgpool2d_forward(x, *self.kernel_size, *self.stride, y)
        if self.recording:
            self._x_shape, self._y_shape, self._dtype = x.shape, y.shape, x.dtype
        return y

    def backward(self, grad_out: Array) -> Array:
        dx = np.empty(self._x_shape, self._dtype)
        return backend.ops().avgpool2d_backward(grad_out, *self.kernel_size, *self.stride, dx)

    def get_config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride)}

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: AveragePool (no padding, floor mode)."""
        return [b.op("AveragePool", inputs[:1], kernel_shape=list(self.kernel_size), strides=list(self.stride))]
