"""Batch normalisation of NCHW activations in training, per channel over (N, H, W), m = N H W
values each; forward and backward:

    forward:   mu = mean(x), var = mean((x - mu)^2) (biased), invstd = 1 / sqrt(var + eps),
               xhat = (x - mu) invstd,  y = gamma xhat + beta
    backward:  dbeta += sum dy,  dgamma += sum dy xhat,
               dx = gamma invstd (dy - sum(dy) / m - xhat sum(dy xhat) / m)

The forward returns (mu, var, invstd) per channel (the layer moves its running statistics with
them) and writes xhat for the backward. The NumPy kernels are the array expressions
``nn.BatchNorm`` used: about eight passes each way over the activations, the reductions over
the axes (0, 2, 3) of an NCHW array. The numba kernels take one channel at a time, its N planes
each contiguous: forward, the mean, then the variance (summed in float64, reassociated so the
sums vectorise: a fixed order for a given machine and shape), then one pass writing xhat and y;
backward, one pass for the two sums and one for dx. On the fashion_mnist_cnn recipe's network
(batch 64, one thread, Intel Xeon, 2026-12-06) BatchNorm's forward and backward took 6.9 and
6.7 ms of a 39 ms training step as array expressions. The two agree to rounding (the sums in
another order, in float64).
"""

import numpy as np

from ._nb import NJIT_SUMS, njit

_AXES, _SHAPE = (0, 2, 3), (1, -1, 1, 1)


def _check(x, gamma, out):
    if x.ndim != 4 or gamma.shape != (x.shape[1],) or any(a.shape != x.shape for a in out if a is not None):
        raise ValueError(
            f"batchnorm: x must be (N, C, H, W) with gamma and beta of shape (C,) and the outputs of x's "
            f"shape, got x {x.shape}, gamma {gamma.shape}"
        )


def batchnorm_forward_numpy(x, gamma, beta, eps, xhat, y):
    """xhat <- (x - mean) invstd, y <- gamma xhat + beta per channel; returns (mean, var, invstd)."""
    _check(x, gamma, (xhat, y))
    mean = x.mean(axis=_AXES)
    xc = x - mean.reshape(_SHAPE)
    var = np.mean(xc * xc, axis=_AXES)
    invstd = 1 / np.sqrt(var + x.dtype.type(eps))
    np.multiply(xc, invstd.reshape(_SHAPE), out=xhat)
    np.multiply(xhat, gamma.reshape(_SHAPE), out=y)
    y += beta.reshape(_SHAPE)
    return mean, var, invstd


def batchnorm_backward_numpy(gy, xhat, gamma, invstd, dgamma, dbeta, dx):
    """dgamma += sum dy xhat, dbeta += sum dy; dx (None: not wanted) <- the input's gradient.
    Returns dx."""
    _check(gy, gamma, (xhat, dx))
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


@njit(**NJIT_SUMS)
def _forward(x3, gamma, beta, eps, xhat3, y3, mean, var, invstd):
    n, channels, length = x3.shape
    m = n * length
    for c in range(channels):
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
        for i in range(n):
            for k in range(length):
                h = (x3[i, c, k] - mu_c) * inv
                xhat3[i, c, k] = h
                y3[i, c, k] = h * g + b


@njit(**NJIT_SUMS)
def _backward(g3, xhat3, gamma, invstd, dgamma, dbeta, dx3):
    n, channels, length = g3.shape
    m = n * length
    for c in range(channels):
        sg, sgx = 0.0, 0.0
        for i in range(n):
            for k in range(length):
                v = g3[i, c, k]
                sg += v
                sgx += v * xhat3[i, c, k]
        dgamma[c] += sgx
        dbeta[c] += sg
        if dx3 is not None:
            t = dgamma.dtype.type
            scale, a, b = gamma[c] * invstd[c], t(sg / m), t(sgx / m)
            for i in range(n):
                for k in range(length):
                    dx3[i, c, k] = scale * (g3[i, c, k] - a - xhat3[i, c, k] * b)


def _flat(a):
    """(N, C, H W) view of a C-contiguous output array (a reshape that copied would lose the writes)."""
    if a is None:
        return None
    if not a.flags.c_contiguous:
        raise ValueError("batchnorm: the output arrays (xhat, y, dx) must be C-contiguous")
    return a.reshape(a.shape[0], a.shape[1], -1)


def batchnorm_forward_numba(x, gamma, beta, eps, xhat, y):
    """numba twin of ``batchnorm_forward_numpy`` (to rounding). xhat and y must be C-contiguous."""
    _check(x, gamma, (xhat, y))
    x = np.ascontiguousarray(x)
    c = x.shape[1]
    mean, var, invstd = np.empty(c, x.dtype), np.empty(c, x.dtype), np.empty(c, x.dtype)
    _forward(x.reshape(x.shape[0], c, -1), gamma, beta, float(eps), _flat(xhat), _flat(y), mean, var, invstd)
    return mean, var, invstd


def batchnorm_backward_numba(gy, xhat, gamma, invstd, dgamma, dbeta, dx):
    """numba twin of ``batchnorm_backward_numpy`` (to rounding). xhat and dx C-contiguous."""
    _check(gy, gamma, (xhat, dx))
    gy = np.ascontiguousarray(gy)
    _backward(gy.reshape(gy.shape[0], gy.shape[1], -1), _flat(xhat), gamma, invstd, dgamma, dbeta, _flat(dx))
    return dx


from .registry import kernel, warmup_case  # noqa: E402

kernel("batchnorm_forward", batchnorm_forward_numpy, batchnorm_forward_numba)
kernel("batchnorm_backward", batchnorm_backward_numpy, batchnorm_backward_numba)


@warmup_case
def _warm_up(dtype):
    x = np.linspace(-1.0, 1.0, 2 * 3 * 4 * 5, dtype=dtype).reshape(2, 3, 4, 5)
    x_readonly = x.view()
    x_readonly.flags.writeable = False
    gamma, beta = np.ones(3, dtype), np.zeros(3, dtype)
    xhat, y = np.empty_like(x), np.empty_like(x)
    for xin in (x, x_readonly):
        _, _, invstd = batchnorm_forward_numba(xin, gamma, beta, 1e-5, xhat, y)
        for dx in (np.empty_like(x), None):
            batchnorm_backward_numba(xin, xhat, gamma, invstd, np.zeros(3, dtype), np.zeros(3, dtype), dx)
