"""Mean over one axis of each sample: token pooling, (N, T, F) -> (N, F)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .module import Module

if TYPE_CHECKING:
    from .._typing import Array, OnnxBuilder


class Mean(Module):
    """y = x.mean(axis): the mean over one axis, the batch axis (0) excluded, as
    ``torch.mean(x, dim=axis, keepdim=keepdims)``. ``Mean(1)`` pools a (N, T, F) sequence into
    (N, F) (a ViT's mean pooling; Keras's ``GlobalAveragePooling1D``), ``Mean(-1)`` averages
    (N, C, L) over L. Backward: dy / size spread over the axis. No parameters.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    _keeps_inputs = False  # backward needs only the shape

    def __init__(self, axis: int = 1, keepdims: bool = False) -> None:
        super().__init__()
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or axis == 0:
            raise ValueError(f"Mean: axis must be a non-zero int (axis 0 is the batch axis; -1 the last), got {axis!r}")
        if not isinstance(keepdims, (bool, np.bool_)):
            raise ValueError(f"Mean: keepdims must be True or False, got {keepdims!r}")
        self.axis, self.keepdims = int(axis), bool(keepdims)

    def forward(self, x: Array) -> Array:
        ndim = getattr(x, "ndim", 0)
        axis = self.axis + ndim if self.axis < 0 else self.axis
        if not 1 <= axis < ndim:
            raise ValueError(
                f"{self!r}: axis {self.axis} is not an axis of the samples of an input of shape "
                f"{getattr(x, 'shape', type(x).__name__)} (the batch axis 0 cannot be averaged)"
            )
        if getattr(x, "dtype", np.dtype(object)).kind != "f":
            raise ValueError(f"{self!r}: expected a float32 or float64 array, got {getattr(x, 'dtype', type(x))}")
        if self.recording:
            self._x_shape, self._axis = x.shape, axis
        return x.mean(axis=axis, keepdims=self.keepdims)

    def backward(self, grad_out: Array) -> Array:
        shape, axis = self._x_shape, self._axis
        g = grad_out if self.keepdims else np.expand_dims(grad_out, axis)
        dx = np.empty(shape, grad_out.dtype)
        np.multiply(g, grad_out.dtype.type(1.0 / shape[axis]), out=dx)
        return dx

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis, "keepdims": self.keepdims}

    def extra_repr(self) -> str:
        return f"axis={self.axis}" + (", keepdims=True" if self.keepdims else "")

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: ReduceMean over the axis (its axes an input from opset 18, an attribute before)."""
        if b.opset >= 18:
            return [b.op("ReduceMean", [inputs[0], b.ints([self.axis], "axes")], keepdims=int(self.keepdims))]
        return [b.op("ReduceMean", inputs[:1], axes=[self.axis], keepdims=int(self.keepdims))]
