"""Layer normalisation over the last axis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from . import _checks as check
from .module import Module
from .parameter import Parameter

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from .._typing import Array, OnnxBuilder


class LayerNorm(Module):
    r"""y = gamma * (x - mean) / sqrt(var + eps) + beta, mean and biased variance over the last
    axis of each row, as PyTorch's ``nn.LayerNorm(num_features)`` (Ba et al. 2016). Training
    and evaluation compute the same thing (no running statistics).

    $$
    \hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}, \qquad y = \gamma \odot \hat x + \beta
    $$

    Backward ($\mu$, $\sigma^2$ and the means over the last axis, $g = dy \odot \gamma$):

    $$
    d\beta \mathrel{+}= \sum_\text{rows} dy, \qquad d\gamma \mathrel{+}= \sum_\text{rows} dy \odot \hat x,
    \qquad dx = \big(g - \operatorname{mean}(g) - \hat x \operatorname{mean}(g \odot \hat x)\big)
    / \sqrt{\sigma^2 + \epsilon}
    $$

    Parameters
    ----------
    num_features : int
        The size of the last axis.
    eps : float
        Added to the variance before the square root.
    dtype : numpy float dtype
        Of gamma and beta (float32 by default; float64 for gradient checks).
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    kernel_files = ("layernorm",)
    _keeps_inputs = False  # backward needs what forward computed, not x

    def __init__(self, num_features: int, eps: float = 1e-5, dtype: DTypeLike = np.float32) -> None:
        super().__init__()
        self.num_features = check.positive_int(num_features, "num_features", "LayerNorm")
        if not (isinstance(eps, (int, float, np.integer, np.floating)) and eps > 0):
            raise ValueError(f"LayerNorm: eps must be a positive number, got {eps!r}")
        self.eps = float(eps)
        dtype = check.float_dtype(dtype, "LayerNorm")
        self.gamma = Parameter(np.ones(self.num_features, dtype), "gamma", decay=False)
        self.beta = Parameter(np.zeros(self.num_features, dtype), "beta", decay=False)

    def forward(self, x: Array) -> Array:
        if getattr(x, "ndim", 0) < 1 or x.shape[-1] != self.num_features:
            raise ValueError(
                f"{self!r}: expected input of shape (..., {self.num_features}), "
                f"got {getattr(x, 'shape', type(x).__name__)}"
            )
        check.same_dtype(self, x, self.gamma.data.dtype)
        rows = x.reshape(-1, self.num_features)  # a view of a C-contiguous input
        y, xhat = np.empty_like(rows), np.empty_like(rows)
        invstd = np.empty(rows.shape[0], x.dtype)
        backend.ops().layernorm_forward(rows, self.gamma.data, self.beta.data, self.eps, y, xhat, invstd)
        if self.recording:
            self._xhat, self._invstd = xhat, invstd
        return y.reshape(x.shape)

    def backward(self, grad_out: Array, input_grad: bool = True) -> Array | None:
        xhat, invstd = self._xhat, self._invstd
        rows = grad_out.reshape(xhat.shape)
        dx = np.empty_like(xhat) if input_grad else None
        backend.ops().layernorm_backward(rows, xhat, invstd, self.gamma.data, self.gamma.grad, self.beta.grad, dx)
        return None if dx is None else dx.reshape(grad_out.shape)

    def get_config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "dtype": str(self.gamma.data.dtype)}

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: LayerNormalization over the last axis (opset 17 or later)."""
        b.require_opset(17, "LayerNorm (LayerNormalization)")
        args = inputs[:1] + [b.param(self.gamma), b.param(self.beta)]
        return [b.op("LayerNormalization", args, axis=-1, epsilon=self.eps)]

    def torch_tensors(self) -> dict[str, Array]:
        """PyTorch ``nn.LayerNorm``'s tensors (weight = gamma, bias = beta)."""
        return {"weight": self.gamma.data, "bias": self.beta.data}
