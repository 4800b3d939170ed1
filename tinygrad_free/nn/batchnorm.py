"""Batch normalisation over the channel axis of (N, C) or (N, C, H, W) inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from ..kernels import pool as pool_kernels
from . import _checks as check
from .activation import ReLU
from .maxpool import MaxPool2D
from .module import Module
from .parameter import Parameter

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from .._typing import Array, OnnxBuilder
    from .context import Context


class BatchNorm(Module):
    r"""y = gamma * (x - mean) / sqrt(var + eps) + beta per channel (axis 1), as PyTorch's
    ``BatchNorm1d`` (for (N, C)) and ``BatchNorm2d`` (for (N, C, H, W)), affine and tracking
    running statistics.

    $$
    \hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}, \qquad y = \gamma \, \hat x + \beta
    $$

    Training: the mean $\mu$ and the biased variance $\sigma^2$ are taken over the batch (and
    H, W), $m$ values per channel; the running statistics move in place as
    ``running = (1 - momentum) * running + momentum * batch_stat``, with the UNBIASED variance
    ($\sigma^2 m / (m - 1)$) in ``running_var``, exactly as PyTorch. Evaluation normalises with
    the running statistics. ``running_mean``/``running_var`` are buffers: saved and loaded with
    the model, never trained.

    Backward (training mode, sums over the $m$ values of a channel):

    $$
    d\beta \mathrel{+}= \sum dy, \qquad d\gamma \mathrel{+}= \sum dy \, \hat x, \qquad
    dx = \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}} \Big(dy - \frac{1}{m} \sum dy
    - \hat x \, \frac{1}{m} \sum dy \, \hat x\Big)
    $$

    In eval mode (a frozen BatchNorm inside a training model, PyTorch's fine-tuning idiom) the
    running statistics are constants: $\hat x = (x - \mu_\text{run}) / \sqrt{\sigma^2_\text{run} + \epsilon}$,
    $d\beta$ and $d\gamma$ as above, $dx = \gamma \, dy / \sqrt{\sigma^2_\text{run} + \epsilon}$.

    Followed by a ``ReLU`` in an ``nn.Sequential`` (Conv -> BatchNorm -> ReLU), training on
    images runs the two as one kernel (``kernels.batchnorm``): $y = \max(\gamma \hat x + \beta, 0)$
    written in the normalising pass, and backward takes $dy \, [y > 0]$ (the ReLU layer's rule) in
    its own passes: the two layers' numbers (the output to the bit, the gradients to the order of
    the sums), without the ReLU's passes over the activations. The Sequential passes the ReLU as
    ``forward(x, relu)`` (``fused_count`` says when). A ``MaxPool2D(2)`` (2 x 2, stride 2) after
    the ReLU joins them, ``forward(x, relu, pool)``: each plane is pooled in cache as it is
    normalised, and backward reads the pooled gradient and argmax instead of full-size arrays
    (``kernels.batchnorm_pool``), the three layers' numbers again. Inference on images (eval mode
    under ``no_grad``, as ``Trainer.evaluate`` and ``predict`` run) is one pass, the ReLU in it,
    the same bits as the array expressions; elsewhere (a frozen BatchNorm recording for a
    backward, (N, C) inputs) the ReLU and the pooling run as their own calls inside this one.

    Parameters
    ----------
    num_features : int
        The channels C (axis 1 of the input).
    eps : float
        Added to the variance before the square root.
    momentum : float in [0, 1]
        The weight of the batch statistic in the running statistics' update (PyTorch's; Keras's
        ``momentum=0.99`` is 0.01 here).
    dtype : numpy float dtype
        Of gamma, beta and the running statistics (float32 by default; float64 for gradient checks).
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    kernel_files = ("batchnorm", "batchnorm_pool")
    _keeps_inputs = False  # backward needs what forward computed, not x
    _fuses_next = True  # nn.Sequential asks fuses_with(the next module)

    running_mean: Array
    running_var: Array
    _y: Array | None  # a fused call's output (after the ReLU), whose sign the ReLU's derivative takes
    _pooled: tuple[Array, Array] | None  # a call fused with its pooling: argmax, xhat there (_y: pooled)
    _relu_ctx: Context | None  # an unfused call's own ReLU call, given forward(x, relu)
    _pool_ctx: Context | None  # an unfused call's own pooling call, given forward(x, relu, pool)

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, dtype: DTypeLike = np.float32
    ) -> None:
        super().__init__()
        self.num_features = check.positive_int(num_features, "num_features", "BatchNorm")
        if not (isinstance(eps, (int, float, np.integer, np.floating)) and eps > 0):
            raise ValueError(f"BatchNorm: eps must be a positive number, got {eps!r}")
        if not (isinstance(momentum, (int, float, np.integer, np.floating)) and 0 <= momentum <= 1):
            raise ValueError(f"BatchNorm: momentum must be in [0, 1], got {momentum!r}")
        self.eps, self.momentum = float(eps), float(momentum)
        dtype = check.float_dtype(dtype, "BatchNorm")
        self.gamma = Parameter(np.ones(self.num_features, dtype), "gamma", decay=False)
        self.beta = Parameter(np.zeros(self.num_features, dtype), "beta", decay=False)
        self.register_buffer("running_mean", np.zeros(self.num_features, dtype))
        self.register_buffer("running_var", np.ones(self.num_features, dtype))

    def _layout(self, x: Array) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(axes summed over, shape broadcasting a per-channel vector) for x."""
        if getattr(x, "ndim", 0) not in (2, 4) or x.shape[1] != self.num_features:
            raise ValueError(
                f"{self!r}: expected input of shape (batch, {self.num_features}) or "
                f"(batch, {self.num_features}, height, width), "
                f"got {getattr(x, 'shape', type(x).__name__)}"
            )
        check.same_dtype(self, x, self.gamma.data.dtype)
        return ((0,), (1, -1)) if x.ndim == 2 else ((0, 2, 3), (1, -1, 1, 1))

    def fuses_with(self, module: Module) -> bool:
        """Whether ``forward(x, module)`` runs this layer and ``module`` as one: ``module`` is a ReLU
        (and this class fuses: a subclass replacing forward or backward does not, see Module)."""
        return self._fuses_next and type(module) is ReLU

    def fused_count(self, following: Sequence[Module]) -> int:
        """1 for a ReLU first in ``following`` (``fuses_with``), 2 when a ``MaxPool2D`` of 2 x 2,
        stride 2, comes after it and this layer is training; else 0. (In eval mode the pooling
        has no kernel to share, and run as its own layer it starts after the Sequential has let
        go of this layer's input: at evaluation's large batches that input is the largest array.)"""
        if not following or not self.fuses_with(following[0]):
            return 0
        pool = following[1] if len(following) > 1 else None
        return 2 if self.training and type(pool) is MaxPool2D and pool.halves else 1

    def forward(self, x: Array, relu: Module | None = None, pool: Module | None = None) -> Array:
        """The normalisation; with ``relu`` (and ``pool``), modules this layer fuses with (passed
        by ``nn.Sequential``, see ``fused_count``), ``pool(relu(.))`` of it: in one kernel when
        training on images, else their own calls after this layer's."""
        axes, shape = self._layout(x)
        if relu is not None and pool is not None and self.training and x.ndim == 4 and min(x.shape[2:]) >= 2:
            return self._forward_pooled(x)
        if relu is not None and self.training and x.ndim == 4:
            y, relu_ctx = self._forward_images(x, relu=True), None
        elif not self.training and x.ndim == 4 and not self.recording:  # inference: one pass
            scale = self.gamma.data * (1 / np.sqrt(self.running_var + x.dtype.type(self.eps)))
            y = np.empty(x.shape, x.dtype)
            y = backend.ops().batchnorm_eval(x, self.running_mean, scale, self.beta.data, y, relu is not None)
            relu_ctx = None
        else:
            y = self._forward_images(x) if self.training and x.ndim == 4 else self._forward_rows(x, axes, shape)
            relu_ctx = None
            if relu is not None:  # not fusable here: the ReLU's own call, paired with this one
                y, relu_ctx = relu._forward_ctx(y)
        pool_ctx = None
        if pool is not None:  # not fusable here (or nothing to record): the pooling's own call
            y, pool_ctx = pool._forward_ctx(y)
        if self.recording:
            self._relu_ctx, self._pool_ctx = relu_ctx, pool_ctx
        return y

    def _forward_images(self, x: Array, relu: bool = False) -> Array:
        """Training on (N, C, H, W): the kernels, a channel at a time (kernels/batchnorm.py)."""
        m = self._values_per_channel(x)
        xhat, y = np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype)
        mean, var, invstd = backend.ops().batchnorm_forward(x, self.gamma.data, self.beta.data, self.eps, xhat, y, relu)
        self._update_running(mean, var, m)
        if self.recording:
            self._xhat, self._invstd, self._frozen = xhat, invstd, False
            self._y, self._pooled = (y if relu else None), None
        return y

    def _forward_pooled(self, x: Array) -> Array:
        """Training on (N, C, H, W) with the ReLU and a 2 x 2 pooling: kernels/batchnorm_pool.py."""
        m = self._values_per_channel(x)
        n, c, h, w = x.shape
        xhat, y = np.empty(x.shape, x.dtype), np.empty((n, c, h // 2, w // 2), x.dtype)
        argmax, xhat_at = np.empty(y.shape, pool_kernels.argmax_dtype(h, w)), np.empty(y.shape, x.dtype)
        mean, var, invstd = backend.ops().batchnorm_relu_pool_forward(
            x, self.gamma.data, self.beta.data, self.eps, xhat, y, argmax, xhat_at
        )
        self._update_running(mean, var, m)
        if self.recording:
            self._xhat, self._invstd, self._frozen = xhat, invstd, False
            self._y, self._pooled, self._relu_ctx, self._pool_ctx = y, (argmax, xhat_at), None, None
        return y

    def _values_per_channel(self, x: Array) -> int:
        m = x.size // self.num_features
        if m < 2:
            raise ValueError(
                f"{self!r}: training needs more than one value per channel to estimate a "
                f"variance, got input of shape {x.shape}"
            )
        return m

    def _update_running(self, mean: Array, var: Array, m: int) -> None:
        # In place: the buffers are the arrays that state_dict/save read.
        mom = var.dtype.type(self.momentum)
        running_mean, running_var = self.running_mean, self.running_var
        running_mean *= 1 - mom
        running_mean += mom * mean
        running_var *= 1 - mom
        running_var += (mom * m / (m - 1)) * var

    def _forward_rows(self, x: Array, axes: tuple[int, ...], shape: tuple[int, ...]) -> Array:
        """(N, C) in training, and both layouts in eval mode: array expressions."""
        gamma, beta = self.gamma.data.reshape(shape), self.beta.data.reshape(shape)
        if self.recording:
            self._y = self._pooled = None
        if not self.training:
            invstd = 1 / np.sqrt(self.running_var + x.dtype.type(self.eps))
            xc = x - self.running_mean.reshape(shape)
            if self.recording:  # a frozen BatchNorm: the statistics are constants of backward
                self._xhat, self._invstd, self._frozen = xc * invstd.reshape(shape), invstd, True
            # In place on xc, the same operations in the same order: inference at a large batch
            # (evaluation, 1024 images) holds the input and one array, not four.
            xc *= invstd.reshape(shape) * gamma
            xc += beta
            return xc
        m = self._values_per_channel(x)
        mean = x.mean(axis=axes)
        xc = x - mean.reshape(shape)
        var = np.mean(xc * xc, axis=axes)
        invstd = 1 / np.sqrt(var + x.dtype.type(self.eps))
        xhat = xc * invstd.reshape(shape)
        y = xhat * gamma + beta
        self._update_running(mean, var, m)
        if self.recording:
            self._xhat, self._invstd, self._frozen = xhat, invstd, False
        return y

    def backward(self, grad_out: Array, input_grad: bool = True) -> Array | None:
        if self._pool_ctx is not None:  # an unfused pooling that this call ran: its backward first
            grad_out = self._pool_ctx.module._backward_ctx(self._pool_ctx, grad_out)
        if self._relu_ctx is not None:  # likewise an unfused ReLU
            grad_out = self._relu_ctx.module._backward_ctx(self._relu_ctx, grad_out)
        xhat, invstd = self._xhat, self._invstd
        if xhat.ndim == 4 and not self._frozen:
            dx = np.empty(xhat.shape, xhat.dtype) if input_grad else None
            g, b, gamma = self.gamma.grad, self.beta.grad, self.gamma.data
            if self._pooled is not None:  # the call fused with its ReLU and pooling
                y, (argmax, xhat_at) = self._y, self._pooled
                ops = backend.ops()
                return ops.batchnorm_relu_pool_backward(grad_out, xhat, y, argmax, xhat_at, gamma, invstd, g, b, dx)
            return backend.ops().batchnorm_backward(grad_out, xhat, gamma, invstd, g, b, dx, self._y)
        axes, shape = ((0,), (1, -1)) if xhat.ndim == 2 else ((0, 2, 3), (1, -1, 1, 1))
        dbeta = grad_out.sum(axis=axes)
        dgamma = (grad_out * xhat).sum(axis=axes)
        self.gamma.grad += dgamma
        self.beta.grad += dbeta
        if not input_grad:
            return None
        scale = (self.gamma.data * invstd).reshape(shape)
        if self._frozen:
            return grad_out * scale
        m = xhat.size // self.num_features
        return scale * (grad_out - (dbeta / m).reshape(shape) - xhat * (dgamma / m).reshape(shape))

    def get_config(self) -> dict[str, Any]:
        return {
            "num_features": self.num_features,
            "eps": self.eps,
            "momentum": self.momentum,
            "dtype": str(self.gamma.data.dtype),
        }

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: BatchNormalization in inference mode, with the running statistics. ONNX's momentum
        weighs the old running value (PyTorch's 0.1 is its 0.9); inference does not read it."""
        stats = [b.param(t) for t in (self.gamma, self.beta, self.running_mean, self.running_var)]
        return [b.op("BatchNormalization", inputs[:1] + stats, epsilon=self.eps, momentum=1 - self.momentum)]

    def torch_tensors(self) -> dict[str, Array]:
        """PyTorch ``nn.BatchNorm1d/2d``'s tensors (weight = gamma, bias = beta, the running
        statistics). ``num_batches_tracked`` only matters for PyTorch's momentum=None, which this
        layer does not have: it is given as 0 and ignored when loading."""
        return {
            "weight": self.gamma.data,
            "bias": self.beta.data,
            "running_mean": self.running_mean,
            "running_var": self.running_var,
            "num_batches_tracked": np.zeros((), np.int64),
        }
