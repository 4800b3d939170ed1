"""Fully connected layer with an optional fused activation: y = act(x @ W + b)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from .. import init as initializers
from ..kernels.dense import FROM_INPUT
from ..kernels.dense_parts import beside, tall
from . import activation as act
from .module import Module
from .parameter import Parameter

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from .._typing import Array, Initializer, OnnxBuilder, Seed


def _positive_int(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"Dense: {what} must be a positive integer, got {value!r}")
    return int(value)


class Dense(Module):
    r"""y = act(x @ W + b), with W of shape (in_features, out_features).

    $$
    y = f(x W + b), \qquad x: (B, n_\text{in}), \quad W: (n_\text{in}, n_\text{out}), \quad b: (n_\text{out})
    $$

    with $f$ the fused activation (identity by default). Forward caches x and y; backward uses
    them and nothing else ($f'$ is computed from the output $y$, see ``nn.activation``; GELU's from
    the pre-activation, which the layer then keeps instead):

    $$
    dz = dy \odot f'(y), \qquad dW \mathrel{+}= x^\top dz, \qquad db \mathrel{+}= \sum_\text{batch} dz,
    \qquad dx = dz \, W^\top
    $$

    An input of more than two dimensions, (N, T, F) or any (..., F), is taken as
    ``torch.nn.Linear`` takes it: the layer acts on the last axis, the leading ones are one
    batch of rows (a view, no copy, for a C-contiguous input), and the output is (..., out).
    Tall inputs (``kernels.dense_parts.SPLIT_ROWS`` = 2048 rows or more: a batch of sequences)
    run in row parts, on numba's threads when there are several, with the same bits either way.
    On fewer rows, with several threads, a large layer's backward (``kernels.dense_parts.BESIDE_GRAIN``
    multiply-adds or more in each product) computes dW on one thread beside dx on another, the
    same bits.

    Each direction is one kernel call (``dense_forward`` / ``dense_backward``); with the numba
    backend that call runs the matrix products too, so no Python runs between them.

    Parameters
    ----------
    in_features, out_features : int
    activation : str or None
        identity (None), sigmoid, tanh, relu, gelu or gelu_tanh; case-insensitive. Fusing it here saves a pass
        over the activations and a cached array compared with a separate activation layer.
    init : str or callable
        ``random``, ``xavier`` or ``he`` (see ``tinygrad_free.init``); the bias starts at zero.
    bias : bool
    dtype : numpy float dtype (float32 by default; float64 for gradient checks)
    rng : None, int or numpy.random.Generator
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    kernel_files = ("dense", "dense_parts")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str | None = None,
        init: str | Initializer = "xavier",
        bias: bool = True,
        dtype: DTypeLike = np.float32,
        rng: Seed = None,
    ) -> None:
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        self.act_code = act.code(activation)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(
                f"Dense: dtype must be float32 or float64 (the kernels are built for these two), got {dtype}"
            )
        self.init_name = init if isinstance(init, str) else getattr(init, "__name__", "custom")
        w = initializers.get(init)((self.in_features, self.out_features), initializers.as_generator(rng), dtype)
        self.W = Parameter(w, "W", decay=True)
        self.b: Parameter | None = Parameter(np.zeros(self.out_features, dtype), "b", decay=False) if bias else None
        self._dz: Array | None = None
        self._keeps_z = self.act_code in FROM_INPUT

    def forward(self, x: Array) -> Array:
        W = self.W.data
        ndim = getattr(x, "ndim", 0)
        if ndim < 2 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{self!r}: expected input of shape (batch, {self.in_features}), "
                f"got {getattr(x, 'shape', type(x).__name__)} (an input with more axes, (batch, ..., "
                f"{self.in_features}), is taken row by row over its last axis)"
            )
        if x.dtype != W.dtype:
            raise ValueError(
                f"{self!r}: expected {W.dtype} input (the layer's dtype), got {x.dtype}; "
                f"convert the data once, e.g. x.astype(np.{W.dtype})"
            )
        lead = None
        if ndim != 2:  # (..., F): the leading axes are one batch of rows
            lead = x.shape[:-1]
            x = x.reshape(-1, self.in_features)
        y = np.empty((x.shape[0], self.out_features), W.dtype)
        b = None if self.b is None else self.b.data
        ops = backend.ops()
        forward = ops.dense_forward_parts if tall(x.shape[0]) else ops.dense_forward  # a batch of sequences
        if self._keeps_z:  # GELU: the derivative needs the pre-activation
            z = np.empty_like(y)
            forward(x, W, b, self.act_code, y, z)
        else:
            z = y
            forward(x, W, b, self.act_code, y)
        if self.recording:
            self._x, self._y = x, z
        return y if lead is None else y.reshape(lead + (self.out_features,))

    def backward(self, grad_out: Array, input_grad: bool = True) -> Array | None:
        """Accumulate dW, db; return dx, or None with ``input_grad=False`` (the network's first
        layer, whose input is data: that GEMM is a sixth of a step's work for nothing)."""
        x, y = self._x, self._y
        lead = None
        if grad_out.ndim != 2:  # it has the output's shape (..., out): rows as in forward
            lead = grad_out.shape[:-1]
            grad_out = grad_out.reshape(y.shape)
        # dz is private scratch, reused while the batch shape stays the same.
        if self._dz is None or self._dz.shape != y.shape:
            self._dz = np.empty_like(y)
        dW, beta = self.W.gemm_target()
        dx = np.empty(x.shape, x.dtype) if input_grad else None
        ops = backend.ops()
        rows = x.shape[0]
        parts = tall(rows) or (input_grad and beside(rows, self.in_features, self.out_features))
        backward = ops.dense_backward_parts if parts else ops.dense_backward
        backward(
            x, self.W.data, y, grad_out, self.act_code, self._dz, dW, beta, None if self.b is None else self.b.grad, dx
        )
        self.W.grad_written()
        return dx if dx is None or lead is None else dx.reshape(lead + (self.in_features,))

    def get_config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "activation": act.NAMES[self.act_code],
            "bias": self.b is not None,
            "dtype": str(self.W.data.dtype),
        }

    def extra_repr(self) -> str:
        s = f"{self.in_features}, {self.out_features}"
        if self.act_code != act.IDENTITY:
            s += f", activation={act.NAMES[self.act_code]!r}"
        return s + ("" if self.b is not None else ", bias=False")

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: Gemm (W, (in, out), is its B), then the fused activation."""
        args = [inputs[0], b.param(self.W)] + ([] if self.b is None else [b.param(self.b)])
        return [b.activation(b.op("Gemm", args), act.NAMES[self.act_code])]

    def torch_tensors(self) -> dict[str, Array]:
        """PyTorch ``nn.Linear``'s tensors as views of ours: its weight (out, in) is W transposed."""
        tensors = {"weight": self.W.data.T}
        if self.b is not None:
            tensors["bias"] = self.b.data
        return tensors
