"""Global average pooling: (N, C, H, W) -> (N, C)."""
import numpy as np

from .. import backend
from . import _checks as check
from .module import Module


class GlobalAvgPool2D(Module):
    """y[n, c] = mean over (h, w) of x[n, c, h, w]: PyTorch's ``AdaptiveAvgPool2d(1)`` followed
    by flattening (Keras's ``GlobalAveragePooling2D`` in channels-first layout).
    Backward spreads dy / (H W) over the plane. No parameters.
    """

    def __init__(self):
        super().__init__()

    def forward(self, x):
        n, c, _, _ = check.image_batch(self, x)
        y = np.empty((n, c), x.dtype)
        backend.ops().global_avgpool2d_forward(x, y)
        if self.training:
            self._x_shape, self._dtype = x.shape, x.dtype
        return y

    def backward(self, grad_out):
        check.gradient_shape(self, grad_out, self._x_shape[:2])
        dx = np.empty(self._x_shape, self._dtype)
        return backend.ops().global_avgpool2d_backward(grad_out, dx)

    def get_config(self):
        return {}
