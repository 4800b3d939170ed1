"""2-D convolution (NCHW) with an optional fused activation: y = act(conv2d(x, W) + b)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from .. import init as initializers
from ..kernels import pool as pool_kernels
from ..kernels import winograd
from ..kernels.dense import FROM_INPUT, RELU
from . import _checks as check
from . import activation as act
from .maxpool import MaxPool2D
from .module import Module
from .parameter import Parameter

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from .._typing import Array, Initializer, OnnxBuilder, Seed
    from .context import Context


class Conv2D(Module):
    r"""y[n, o] = act(b[o] + sum_{c,i,j} W[o, c, i, j] x_pad[n, c, sh*oh + i, sw*ow + j]).

    $$
    y_{n,o,h,w} = f\Big(b_o + \sum_{c,i,j} W_{o,c,i,j} \; x^\text{pad}_{n, c, s_h h + i, s_w w + j}\Big)
    $$

    The cross-correlation of PyTorch's ``nn.Conv2d`` (groups=1, dilation=1) with zero padding:
    x is (N, C_in, H, W), W is (C_out, C_in, kh, kw) exactly as PyTorch stores it (so its
    weights copy in unchanged), y is (N, C_out, Ho, Wo) with
    $H_o = \lfloor (H + 2 p_h - k_h) / s_h \rfloor + 1$ (and $W_o$ likewise).

    Forward turns x into columns (im2col) a block of samples at a time and multiplies each block
    by the weights in one GEMM, the bias and activation fused after it (``kernels.conv``);
    backward keeps only x and y from the forward and rebuilds each block's columns:

    $$
    dz = dy \odot f'(y), \qquad dW \mathrel{+}= \sum_n dz_n \, \text{cols}_n^\top, \qquad
    db \mathrel{+}= \sum_{n,h,w} dz, \qquad dx_n = \text{col2im}(W^\top dz_n)
    $$

    ($dx$ is skipped with ``input_grad=False``.)

    Followed by a 2 x 2 ``MaxPool2D`` of stride 2 in an ``nn.Sequential``, a ReLU convolution of
    stride 1 runs with that pooling as one kernel (``kernels.conv_pool``), which keeps its
    full-size output in cache: the same numbers to rounding, the pooling's argmax rule included
    (the Sequential passes the pooling as ``forward(x, pool)``; ``fuses_with`` says when).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride : int or (int, int), positive
    padding : int or (int, int), >= 0 (zeros on both sides)
    activation : str or None
        identity (None), sigmoid, tanh, relu, gelu or gelu_tanh, fused as in ``Dense`` (GELU keeps
        its pre-activation for the backward).
    bias : bool
    init : str or callable
        ``random``, ``xavier`` or ``he`` with fan_in = in_channels*kh*kw and
        fan_out = out_channels*kh*kw (PyTorch's and Keras's fans); the bias starts at zero.
    dtype : numpy float dtype (float32 by default; float64 for gradient checks)
    rng : None, int or numpy.random.Generator
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    kernel_files = ("conv", "conv_pool", "im2col", "dense", "pool", "winograd")
    _fuses_next = True  # nn.Sequential asks fuses_with(the next module)
    _argmax: Array | None  # a fused call's pooling argmax (its _y is then the pooled output)
    _pool_ctx: Context | None  # an unfused call's own pooling call, given forward(x, pool)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        activation: str | None = None,
        bias: bool = True,
        init: str | Initializer = "xavier",
        dtype: DTypeLike = np.float32,
        rng: Seed = None,
    ) -> None:
        super().__init__()
        self.in_channels = check.positive_int(in_channels, "in_channels", "Conv2D")
        self.out_channels = check.positive_int(out_channels, "out_channels", "Conv2D")
        self.kernel_size = check.pair(kernel_size, "kernel_size", "Conv2D")
        self.stride = check.pair(stride, "stride", "Conv2D")
        self.padding = check.pair(padding, "padding", "Conv2D", minimum=0)
        self.act_code = act.code(activation)
        dtype = check.float_dtype(dtype, "Conv2D")
        self.init_name = init if isinstance(init, str) else getattr(init, "__name__", "custom")
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        w = initializers.get(init)(shape, initializers.as_generator(rng), dtype)
        self.W = Parameter(w, "W", decay=True)
        self.b: Parameter | None = Parameter(np.zeros(self.out_channels, dtype), "b", decay=False) if bias else None

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """(Ho, Wo) for an input of this height and width."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1

    def fuses_with(self, module: Module) -> bool:
        """Whether ``forward(x, module)`` runs this layer and ``module`` as one kernel: ``module``
        is a MaxPool2D of 2 x 2, stride 2, and this a ReLU convolution of stride 1 that the
        Winograd kernels do not take (and this class fuses: a subclass replacing forward or
        backward does not, see Module). Where they apply (3 x 3, 16 input channels or more), the
        convolution by Winograd and the pooling apart take less time than the fused im2col kernel:
        mnist_convnet's epoch 0.80x / 0.81x at one / two threads (AMD EPYC, docs/results/speed-cnn.md)."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return (
            self._fuses_next
            and type(module) is MaxPool2D
            and module.halves
            and self.act_code == RELU
            and (sh, sw) == (1, 1)
            and not winograd.applies(self.in_channels, kh, kw, sh, sw)
        )

    def forward(self, x: Array, pool: Module | None = None) -> Array:
        """y = act(conv2d(x, W) + b); with ``pool`` (a module this layer ``fuses_with``, passed by
        ``nn.Sequential``), ``pool(y)``, in one kernel when the input and the weights are finite
        (else the two in turn: with an inf in x the separate backward's 0 * inf puts NaN in dW,
        which the fused one, never multiplying the zeros, would not)."""
        W = self.W.data
        n, _, h, w = check.image_batch(self, x, self.in_channels)
        check.same_dtype(self, x, W.dtype)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if h + 2 * ph < kh or w + 2 * pw < kw:
            raise ValueError(
                f"{self!r}: kernel {self.kernel_size} is larger than the padded input "
                f"{(h + 2 * ph, w + 2 * pw)} (input {(h, w)} plus padding {self.padding} on "
                f"each side); need height + 2*padding >= kernel height, likewise for width"
            )
        ho, wo = self.output_shape(h, w)
        b = None if self.b is None else self.b.data
        if pool is not None and ho >= 2 and wo >= 2 and np.isfinite(W).all() and np.isfinite(x).all():
            y = np.empty((n, self.out_channels, ho // 2, wo // 2), W.dtype)
            argmax = np.empty(y.shape, pool_kernels.argmax_dtype(ho, wo))
            backend.ops().conv_relu_pool_forward(x, W, b, ph, pw, y, argmax)
            if self.recording:
                self._x, self._y, self._argmax, self._pool_ctx = x, y, argmax, None
            return y
        y = np.empty((n, self.out_channels, ho, wo), W.dtype)
        if self.act_code in FROM_INPUT:  # GELU: the derivative needs the pre-activation, kept in z
            z = np.empty_like(y)
            backend.ops().conv2d_forward(x, W, b, sh, sw, ph, pw, self.act_code, y, z)
        else:
            z = y
            backend.ops().conv2d_forward(x, W, b, sh, sw, ph, pw, self.act_code, y)
        pool_ctx = None
        if pool is not None:  # not fusable here: the pooling's own call, paired with this one
            y, pool_ctx = pool._forward_ctx(y)
        if self.recording:
            self._x, self._y, self._argmax, self._pool_ctx = x, z, None, pool_ctx
        return y

    def backward(self, grad_out: Array, input_grad: bool = True) -> Array | None:
        """Accumulate dW, db; return dx, or None with ``input_grad=False`` (the network's first
        layer, whose input is data: its col2im and GEMMs would be wasted)."""
        x, y, argmax = self._x, self._y, self._argmax
        dW, beta = self.W.gemm_target()
        dx = np.empty(x.shape, y.dtype) if input_grad else None
        (sh, sw), (ph, pw) = self.stride, self.padding
        if argmax is not None:  # the fused call: y is the pooled output
            backend.ops().conv_relu_pool_backward(
                x, self.W.data, y, argmax, grad_out, dW, beta, None if self.b is None else self.b.grad, ph, pw, dx
            )
            self.W.grad_written()
            return dx
        if self._pool_ctx is not None:
            grad_out = self._pool_ctx.module._backward_ctx(self._pool_ctx, grad_out)
        backend.ops().conv2d_backward(
            x,
            self.W.data,
            y,
            grad_out,
            self.act_code,
            dW,
            beta,
            None if self.b is None else self.b.grad,
            sh,
            sw,
            ph,
            pw,
            dx,
        )
        self.W.grad_written()
        return dx

    def get_config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "activation": act.NAMES[self.act_code],
            "bias": self.b is not None,
            "dtype": str(self.W.data.dtype),
        }

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.act_code != act.IDENTITY:
            s += f", activation={act.NAMES[self.act_code]!r}"
        return s + ("" if self.b is not None else ", bias=False")

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: Conv (W in ONNX's and PyTorch's layout; pads [top, left, bottom, right]), then the
        fused activation."""
        (ph, pw), args = self.padding, [inputs[0], b.param(self.W)]
        args += [] if self.b is None else [b.param(self.b)]
        y = b.op("Conv", args, kernel_shape=list(self.kernel_size), strides=list(self.stride), pads=[ph, pw, ph, pw])
        return [b.activation(y, act.NAMES[self.act_code])]

    def torch_tensors(self) -> dict[str, Array]:
        """PyTorch ``nn.Conv2d``'s tensors: the same layout, the arrays themselves."""
        tensors = {"weight": self.W.data}
        if self.b is not None:
            tensors["bias"] = self.b.data
        return tensors
