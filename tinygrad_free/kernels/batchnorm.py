"""Batch normalisation of NCHW activations in training, per channel over (N, H, W), m = N H W
values each, optionally followed by a ReLU; forward and backward:

    forward:   mu = mean(x), var = mean((x - mu)^2) (biased), invstd = 1 / sqrt(var + eps),
               xhat = (x - mu) invstd,  y = gamma xhat + beta   (relu: y = max(gamma xhat + beta, 0))
    backward:  dy = gy                                          (relu: dy = gy [y > 0], from the output)
               dbeta += sum dy,  dgamma += sum dy xhat,
               dx = gamma invstd (dy - sum(dy) / m - xhat sum(dy xhat) / m)

The forward returns (mu, var, invstd) per channel (the layer moves its running statistics with
them) and writes xhat for the backward. The ReLU is the ``ReLU`` layer's own rule (NaN stays
NaN; the gradient is gy * (y > 0), so a NaN or inf gy stays NaN where y <= 0): the fused pair
computes the same numbers as BatchNorm then ReLU, without the ReLU's two passes over the
activations. The NumPy kernels are the array expressions ``nn.BatchNorm`` used: about eight
passes each way over the activations, the reductions over the axes (0, 2, 3) of an NCHW array.
The numba kernels take one channel at a time, its N planes each contiguous: forward, the mean,
then the variance (summed in float64, reassociated so the sums vectorise: a fixed order for a
given machine and shape), then one pass writing xhat and y; backward, one pass for the two sums
and one for dx. Channels are independent, so on several threads (``parallel.use_parallel``)
they are shared out whole: the same code per channel, the same bits at any thread count. On the
fashion_mnist_cnn recipe's network (batch 64, one thread, Intel Xeon, 2026-12-06) BatchNorm's
forward and backward took 6.9 and 6.7 ms of a 39 ms training step as array expressions. The two
agree to rounding (the sums in another order, in float64).
"""

import numpy as np

from ._nb import NJIT, NJIT_SUMS, njit, read_only
from .dense import d_relu
from .parallel import NJIT_PARALLEL, prange, use_parallel

_AXES, _SHAPE = (0, 2, 3), (1, -1, 1, 1)


def _check(x, gamma, out):
    if x.ndim != 4 or gamma.shape != (x.shape[1],) or any(a.shape != x.shape for a in out if a is not None):
        raise ValueError(
            f"batchnorm: x must be (N, C, H, W) with gamma and beta of shape (C,) and the outputs of x's "
            f"shape, got x {x.shape}, gamma {gamma.shape}"
        )


def batchnorm_forward_numpy(x, gamma, beta, eps, xhat, y, relu=False):
    """xhat <- (x - mean) invstd, y <- gamma xhat + beta per channel (``relu``: then max(y, 0));
    returns (mean, var, invstd)."""
    _check(x, gamma, (xhat, y))
    mean = x.mean(axis=_AXES)
    xc = x - mean.reshape(_SHAPE)
    var = np.mean(xc * xc, axis=_AXES)
    invstd = 1 / np.sqrt(var + x.dtype.type(eps))
    np.multiply(xc, invstd.reshape(_SHAPE), out=xhat)
    np.multiply(xhat, gamma.reshape(_SHAPE), out=y)
    y += beta.reshape(_SHAPE)
    if relu:
        np.maximum(y, 0, out=y)  # NaN stays NaN, as the ReLU layer's kernel
    return mean, var, invstd


def batchnorm_backward_numpy(gy, xhat, gamma, invstd, dgamma, dbeta, dx, y=None):
    """dgamma += sum dy xhat, dbeta += sum dy; dx (None: not wanted) <- the input's gradient.
    ``y``: the output of a forward with ``relu``, whose derivative dy = gy * (y > 0) comes first.
    Returns dx."""
    _check(gy, gamma, (xhat, dx, y))
    if y is not None:
        gy = gy * (y > 0)
    sum_g = gy.sum(axis=_AXES)
    sum_gx = (gy * xhat).sum(axis=_AXES)
    dgamma += sum_gx
    dbeta += sum_g
    if dx is None:
        return None
    m = xhat.size // xhat.shape[1]
    scale = (gamma * invstd).reshape(_SHAPE)
    dx[...] = scale * (gy - (sum_g / m).reshape(_SHAPE) - xhat * (sum_gx / m).reshape(_SHAPE))
    return dx


def batchnorm_eval_numpy(x, mean, scale, beta, y, relu=False):
    """Inference with the running statistics: y <- (x - mean) scale + beta per channel, scale =
    gamma / sqrt(running_var + eps) from the caller (``relu``: then max(y, 0)). Returns y."""
    _check(x, mean, (y,))
    np.subtract(x, mean.reshape(_SHAPE), out=y)
    y *= scale.reshape(_SHAPE)
    y += beta.reshape(_SHAPE)
    if relu:
        np.maximum(y, 0, out=y)
    return y


@njit(**NJIT_SUMS)
def _forward_channel(x3, c, gamma, beta, eps, xhat3, y3, mean, var, invstd, relu):
    n, _, length = x3.shape
    m = n * length
    s = 0.0
    for i in range(n):
        for k in range(length):
            s += x3[i, c, k]
    mu = s / m
    q = 0.0
    for i in range(n):
        for k in range(length):
            d = x3[i, c, k] - mu
            q += d * d
    mean[c] = mu
    var[c] = q / m
    invstd[c] = 1.0 / np.sqrt(var[c] + eps)
    mu_c, inv, g, b = mean[c], invstd[c], gamma[c], beta[c]  # in x's dtype, as NumPy's
    zero = y3.dtype.type(0)
    for i in range(n):
        for k in range(length):
            h = (x3[i, c, k] - mu_c) * inv
            xhat3[i, c, k] = h
            v = h * g + b
            y3[i, c, k] = zero if relu and v < zero else v  # np.maximum(v, 0): NaN stays NaN


@njit(**NJIT_SUMS)
def _backward_channel(g3, xhat3, gamma, invstd, dgamma, dbeta, dx3, y3, relu, c):
    n, _, length = g3.shape
    m = n * length
    one, zero = g3.dtype.type(1), g3.dtype.type(0)
    sg, sgx = 0.0, 0.0
    for i in range(n):
        for k in range(length):
            v = g3[i, c, k]
            if relu:
                v = d_relu(y3[i, c, k], v, one, zero)
            sg += v
            sgx += v * xhat3[i, c, k]
    dgamma[c] += sgx
    dbeta[c] += sg
    if dx3 is not None:
        t = dgamma.dtype.type
        scale, a, b = gamma[c] * invstd[c], t(sg / m), t(sgx / m)
        for i in range(n):
            for k in range(length):
                v = g3[i, c, k]
                if relu:
                    v = d_relu(y3[i, c, k], v, one, zero)
                dx3[i, c, k] = scale * (v - a - xhat3[i, c, k] * b)


# The channel loops, serial and shared out over threads: each channel's work is the one compiled
# function above either way, so the thread count changes no bit.
@njit(**NJIT_SUMS)
def _forward(x3, gamma, beta, eps, xhat3, y3, mean, var, invstd, relu):
    for c in range(x3.shape[1]):
        _forward_channel(x3, c, gamma, beta, eps, xhat3, y3, mean, var, invstd, relu)


@njit(**NJIT_PARALLEL)
def _forward_parallel(x3, gamma, beta, eps, xhat3, y3, mean, var, invstd, relu):
    for c in prange(x3.shape[1]):
        _forward_channel(x3, c, gamma, beta, eps, xhat3, y3, mean, var, invstd, relu)


@njit(**NJIT_SUMS)
def _backward(g3, xhat3, gamma, invstd, dgamma, dbeta, dx3, y3, relu):
    for c in range(g3.shape[1]):
        _backward_channel(g3, xhat3, gamma, invstd, dgamma, dbeta, dx3, y3, relu, c)


@njit(**NJIT_PARALLEL)
def _backward_parallel(g3, xhat3, gamma, invstd, dgamma, dbeta, dx3, y3, relu):
    for c in prange(g3.shape[1]):
        _backward_channel(g3, xhat3, gamma, invstd, dgamma, dbeta, dx3, y3, relu, c)


@njit(**NJIT)
def _eval_channel(x3, mean, scale, beta, y3, relu, c):
    zero = y3.dtype.type(0)
    mu, sc, b = mean[c], scale[c], beta[c]
    for i in range(x3.shape[0]):
        for k in range(x3.shape[2]):
            v = (x3[i, c, k] - mu) * sc + b  # NumPy's three operations, each rounded (no contraction)
            y3[i, c, k] = zero if relu and v < zero else v


@njit(**NJIT)
def _eval(x3, mean, scale, beta, y3, relu):
    for c in range(x3.shape[1]):
        _eval_channel(x3, mean, scale, beta, y3, relu, c)


@njit(**NJIT_PARALLEL)
def _eval_parallel(x3, mean, scale, beta, y3, relu):
    for c in prange(x3.shape[1]):
        _eval_channel(x3, mean, scale, beta, y3, relu, c)


def _flat(a):
    """(N, C, H W) view of a C-contiguous array (a reshape that copied would lose the writes)."""
    if a is None:
        return None
    if not a.flags.c_contiguous:
        raise ValueError("batchnorm: the output arrays (xhat, y, dx) must be C-contiguous")
    return a.reshape(a.shape[0], a.shape[1], -1)


def _threads(x):
    """Channels on several threads when there are several and enough work (``use_parallel``)."""
    return x.shape[1] > 1 and use_parallel(x.size)


def batchnorm_forward_numba(x, gamma, beta, eps, xhat, y, relu=False):
    """numba twin of ``batchnorm_forward_numpy`` (to rounding). xhat and y must be C-contiguous."""
    _check(x, gamma, (xhat, y))
    x = read_only(np.ascontiguousarray(x))  # one compiled variant for data and a layer's output
    c = x.shape[1]
    mean, var, invstd = np.empty(c, x.dtype), np.empty(c, x.dtype), np.empty(c, x.dtype)
    run = _forward_parallel if _threads(x) else _forward
    run(x.reshape(x.shape[0], c, -1), gamma, beta, float(eps), _flat(xhat), _flat(y), mean, var, invstd, bool(relu))
    return mean, var, invstd


def batchnorm_backward_numba(gy, xhat, gamma, invstd, dgamma, dbeta, dx, y=None):
    """numba twin of ``batchnorm_backward_numpy`` (to rounding). xhat, dx and y C-contiguous."""
    _check(gy, gamma, (xhat, dx, y))
    gy = read_only(np.ascontiguousarray(gy))
    run = _backward_parallel if _threads(gy) else _backward
    xhat3 = _flat(xhat)
    # Without the ReLU, xhat stands in for y (never read): one compiled variant fewer per kernel.
    y3 = xhat3 if y is None else _flat(y)
    run(gy.reshape(gy.shape[0], gy.shape[1], -1), xhat3, gamma, invstd, dgamma, dbeta, _flat(dx), y3, y is not None)
    return dx


def batchnorm_eval_numba(x, mean, scale, beta, y, relu=False):
    """numba twin of ``batchnorm_eval_numpy``: the same bits, in one pass. y C-contiguous."""
    _check(x, mean, (y,))
    x = read_only(np.ascontiguousarray(x))
    run = _eval_parallel if _threads(x) else _eval
    run(x.reshape(x.shape[0], x.shape[1], -1), mean, scale, beta, _flat(y), bool(relu))
    return y


from .registry import kernel, warmup_case  # noqa: E402

kernel("batchnorm_forward", batchnorm_forward_numpy, batchnorm_forward_numba)
kernel("batchnorm_backward", batchnorm_backward_numpy, batchnorm_backward_numba)
kernel("batchnorm_eval", batchnorm_eval_numpy, batchnorm_eval_numba)


@warmup_case
def _warm_up(dtype):
    x = np.linspace(-1.0, 1.0, 2 * 3 * 4 * 5, dtype=dtype).reshape(2, 3, 20)
    x.flags.writeable = False  # the inputs the kernels read reach them read-only (read_only)
    gamma, beta = np.ones(3, dtype), np.zeros(3, dtype)
    xhat, y = np.empty_like(x), np.empty_like(x)
    stats = [np.empty(3, dtype) for _ in range(3)]
    # Both loops: the thread count at warm-up is not the one training will run at.
    for forward, backward in ((_forward, _backward), (_forward_parallel, _backward_parallel)):
        forward(x, gamma, beta, 1e-5, xhat, y, *stats, True)
        for dx in (np.empty_like(x), None):  # y: the layer's own output, writable
            backward(x, xhat, gamma, stats[2], np.zeros(3, dtype), np.zeros(3, dtype), dx, y, True)
    for run in (_eval, _eval_parallel):
        run(x, gamma, gamma, beta, y, True)
