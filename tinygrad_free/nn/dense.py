"""Fully connected layer with an optional fused activation: y = act(x @ W + b)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from .. import init as initializers
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
    them and nothing else ($f'$ is computed from the output $y$, see ``nn.activation``):

    $$
    dz = dy \odot f'(y), \qquad dW \mathrel{+}= x^\top dz, \qquad db \mathrel{+}= \sum_\text{batch} dz,
    \qquad dx = dz \, W^\top
    $$

    Each direction is one kernel call (``dense_forward`` / ``dense_backward``); with the numba
    backend that call runs the matrix products too, so no Python runs between them.

    Parameters
    ----------
    in_features, out_features : int
    activation : str or None
        identity (None), sigmoid, tanh or relu; case-insensitive. Fusing it here saves a pass
        over the activations and a cached array compared with a separate activation layer.
    init : str or callable
        ``random``, ``xavier`` or ``he`` (see ``tinygrad_free.init``); the bias starts at zero.
    bias : bool
    dtype : numpy float dtype (float32 by default; float64 for gradient checks)
    rng : None, int or numpy.random.Generator
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)

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

    def forward(self, x: Array) -> Array:
        W = self.W.data
        if getattr(x, "ndim", 0) != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"{self!r}: expected input of shape (batch, {self.in_features}), "
                f"got {getattr(x, 'shape', type(x).__name__)}"
            )
        if x.dtype != W.dtype:
            raise ValueError(
                f"{self!r}: expected {W.dtype} input (the layer's dtype), got {x.dtype}; "
                f"convert the data once, e.g. x.astype(np.{W.dtype})"
            )
        y = np.empty((x.shape[0], self.out_features), W.dtype)
        backend.ops().dense_forward(x, W, None if self.b is None else self.b.data, self.act_code, y)
        if self.recording:
            self._x, self._y = x, y
        return y

    def backward(self, grad_out: Array, input_grad: bool = True) -> Array | None:
        """Accumulate dW, db; return dx, or None with ``input_grad=False`` (the network's first
        layer, whose input is data: that GEMM is a sixth of a step's work for nothing)."""
        x, y = self._x, self._y
        # dz is private scratch, reused while the batch shape stays the same.
        if self._dz is None or self._dz.shape != y.shape:
            self._dz = np.empty_like(y)
        dW, beta = self.W.gemm_target()
        dx = np.empty(x.shape, x.dtype) if input_grad else None
        backend.ops().dense_backward(
            x, self.W.data, y, grad_out, self.act_code, self._dz, dW, beta, None if self.b is None else self.b.grad, dx
        )
        self.W.grad_written()
        return dx

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
