"""1-D convolution over (N, C, L) with an optional fused activation, on the 2-D convolution's kernels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from .. import init as initializers
from ..kernels.dense import FROM_INPUT
from . import _checks as check
from . import activation as act
from .module import Module
from .parameter import Parameter

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from .._typing import Array, Initializer, OnnxBuilder, Seed


def _non_negative_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"Conv1D: {what} must be a non-negative integer, got {value!r}")
    return int(value)


class Conv1D(Module):
    """y[n, o, l] = act(b[o] + sum_{c,i} W[o, c, i] x_pad[n, c, s l + i]): PyTorch's ``nn.Conv1d``
    (groups=1, dilation=1) with zero padding, over (N, C_in, L) into (N, C_out, Lo),
    Lo = (L + 2 p - k) // s + 1. W is (C_out, C_in, k) exactly as PyTorch stores it.

    It runs the 2-D convolution's kernels (``kernels.conv``: im2col blocks and one GEMM each)
    on the input seen as (N, C, 1, L) and the weight as (C_out, C_in, 1, k), views both; the
    backward is ``Conv2D``'s (dz = dy act'(y); dW += sum_n dz[n] cols[n]^T; db += sum dz;
    dx = col2im(W^T dz)).

    Parameters
    ----------
    in_channels, out_channels, kernel_size : int
    stride : int, positive
    padding : int, >= 0 (zeros on both ends)
    activation : str or None
        As ``Dense``'s (identity, sigmoid, tanh, relu, gelu, gelu_tanh), fused.
    bias : bool
    init : str or callable
        fan_in = in_channels k, fan_out = out_channels k; the bias starts at zero.
    dtype : numpy float dtype
    rng : None, int or numpy.random.Generator
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    kernel_files = ("conv", "im2col", "dense")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        activation: str | None = None,
        bias: bool = True,
        init: str | Initializer = "xavier",
        dtype: DTypeLike = np.float32,
        rng: Seed = None,
    ) -> None:
        super().__init__()
        self.in_channels = check.positive_int(in_channels, "in_channels", "Conv1D")
        self.out_channels = check.positive_int(out_channels, "out_channels", "Conv1D")
        self.kernel_size = check.positive_int(kernel_size, "kernel_size", "Conv1D")
        self.stride = check.positive_int(stride, "stride", "Conv1D")
        self.padding = _non_negative_int(padding, "padding")
        self.act_code = act.code(activation)
        dtype = check.float_dtype(dtype, "Conv1D")
        shape = (self.out_channels, self.in_channels, self.kernel_size)
        w = initializers.get(init)(shape, initializers.as_generator(rng), dtype)
        self.W = Parameter(w, "W", decay=True)
        self.b: Parameter | None = Parameter(np.zeros(self.out_channels, dtype), "b", decay=False) if bias else None

    def output_length(self, length: int) -> int:
        return (length + 2 * self.padding - self.kernel_size) // self.stride + 1

    def forward(self, x: Array) -> Array:
        W = self.W.data
        if getattr(x, "ndim", 0) != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self!r}: expected input of shape (batch, {self.in_channels}, length), "
                f"got {getattr(x, 'shape', type(x).__name__)}"
            )
        check.same_dtype(self, x, W.dtype)
        n, c, length = x.shape
        if length + 2 * self.padding < self.kernel_size:
            raise ValueError(
                f"{self!r}: kernel {self.kernel_size} is longer than the padded input ({length} + 2 * {self.padding})"
            )
        lo = self.output_length(length)
        y = np.empty((n, self.out_channels, 1, lo), W.dtype)
        x4, W4 = x.reshape(n, c, 1, length), W.reshape(self.out_channels, c, 1, self.kernel_size)
        b = None if self.b is None else self.b.data
        s, p = self.stride, self.padding
        if self.act_code in FROM_INPUT:  # GELU keeps its pre-activation for the backward
            z = np.empty_like(y)
            backend.ops().conv2d_forward(x4, W4, b, 1, s, 0, p, self.act_code, y, z)
        else:
            z = y
            backend.ops().conv2d_forward(x4, W4, b, 1, s, 0, p, self.act_code, y)
        if self.recording:
            self._x, self._y = x4, z
        return y.reshape(n, self.out_channels, lo)

    def backward(self, grad_out: Array, input_grad: bool = True) -> Array | None:
        x4, y = self._x, self._y
        dW, beta = self.W.gemm_target()
        dx = np.empty(x4.shape, y.dtype) if input_grad else None
        W4 = self.W.data.reshape(self.out_channels, self.in_channels, 1, self.kernel_size)
        backend.ops().conv2d_backward(
            x4,
            W4,
            y,
            grad_out.reshape(y.shape),
            self.act_code,
            dW.reshape(W4.shape),
            beta,
            None if self.b is None else self.b.grad,
            1,
            self.stride,
            0,
            self.padding,
            dx,
        )
        self.W.grad_written()
        return None if dx is None else dx.reshape(x4.shape[0], x4.shape[1], x4.shape[3])

    def get_config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "activation": act.NAMES[self.act_code],
            "bias": self.b is not None,
            "dtype": str(self.W.data.dtype),
        }

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if self.stride != 1:
            s += f", stride={self.stride}"
        if self.padding:
            s += f", padding={self.padding}"
        if self.act_code != act.IDENTITY:
            s += f", activation={act.NAMES[self.act_code]!r}"
        return s + ("" if self.b is not None else ", bias=False")

    def torch_tensors(self) -> dict[str, Array]:
        """``nn.Conv1d``'s weight (out, in, k) and bias: ours, the same layout."""
        tensors = {"weight": self.W.data}
        if self.b is not None:
            tensors["bias"] = self.b.data
        return tensors

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: Conv over one axis, then the fused activation."""
        args = [inputs[0], b.param(self.W)] + ([] if self.b is None else [b.param(self.b)])
        y = b.op("Conv", args, kernel_shape=[self.kernel_size], strides=[self.stride], pads=[self.padding] * 2)
        return [b.activation(y, act.NAMES[self.act_code])]
