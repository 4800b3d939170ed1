"""Global average pooling: (N, C, H, W) -> (N, C)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from . import _checks as check
from .module import Module

if TYPE_CHECKING:
    from .._typing import Array, OnnxBuilder


class GlobalAvgPool2D(Module):
    """y[n, c] = mean over (h, w) of x[n, c, h, w]: PyTorch's ``AdaptiveAvgPool2d(1)`` followed
    by flattening (Keras's ``GlobalAveragePooling2D`` in channels-first layout).
    Backward spreads dy / (H W) over the plane. No parameters.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    kernel_files = ("pool",)
    _keeps_inputs = False  # backward needs what forward computed, not x

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: Array) -> Array:
        n, c, _, _ = check.image_batch(self, x)
        y = np.empty((n, c), x.dtype)
        backend.ops().global_avgpool2d_forward(x, y)
        if self.recording:
            self._x_shape, self._dtype = x.shape, x.dtype
        return y

    def backward(self, grad_out: Array) -> Array:
        dx = np.empty(self._x_shape, self._dtype)
        return backend.ops().global_avgpool2d_backward(grad_out, dx)

    def get_config(self) -> dict[str, Any]:
        return {}

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: GlobalAveragePool, (N, C, 1, 1), flattened to (N, C)."""
        return [b.op("Flatten", [b.op("GlobalAveragePool", inputs[:1])], axis=1)]
