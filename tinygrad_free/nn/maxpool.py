"""2-D max pooling (NCHW) that keeps each window's argmax for the backward pass."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from ..kernels import pool as pool_kernels
from . import _checks as check
from .module import Module

if TYPE_CHECKING:
    from .._typing import Array, OnnxBuilder


class MaxPool2D(Module):
    """y[n, c, oh, ow] = max_{i<kh, j<kw} x[n, c, sh*oh + i, sw*ow + j], as PyTorch's
    ``nn.MaxPool2d(kernel_size, stride)`` (no padding, floor mode; ``stride`` defaults to the
    kernel size). Ties go to the first element of the window, NaN propagates.

    Forward records where each maximum came from; backward routes dy there (summing where
    overlapping windows picked the same pixel). No parameters.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    kernel_files = ("pool",)
    _keeps_inputs = False  # backward needs what forward computed, not x

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        self.kernel_size = check.pair(kernel_size, "kernel_size", "MaxPool2D")
        self.stride = self.kernel_size if stride is None else check.pair(stride, "stride", "MaxPool2D")

    def forward(self, x: Array) -> Array:
        n, c, ho, wo = check.pool_geometry(self, x)
        y = np.empty((n, c, ho, wo), x.dtype)
        argmax = np.empty((n, c, ho, wo), pool_kernels.argmax_dtype(*x.shape[2:]))
        backend.ops().maxpool2d_forward(x, *self.kernel_size, *self.stride, y, argmax)
        if self.recording:
            self._argmax, self._x_shape, self._dtype = argmax, x.shape, x.dtype
        return y

    def backward(self, grad_out: Array) -> Array:
        dx = np.empty(self._x_shape, self._dtype)
        return backend.ops().maxpool2d_backward(grad_out, self._argmax, dx)

    @property
    def halves(self) -> bool:
        """Whether this is the 2 x 2 pooling of stride 2 that a convolution or a BatchNorm before
        it can run in its own kernel (``Conv2D``, ``BatchNorm``: their ``fused_count``)."""
        return self.kernel_size == (2, 2) and self.stride == (2, 2)

    def get_config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride)}

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: MaxPool (no padding, floor mode)."""
        return [b.op("MaxPool", inputs[:1], kernel_shape=list(self.kernel_size), strides=list(self.stride))]
