"""Batch normalisation in training, its ReLU and a 2 x 2 max pooling of stride 2 in one kernel:
the ``BatchNorm -> ReLU -> MaxPool2D(2)`` ending of a convolution block (the fashion_mnist_cnn
recipe's three blocks), which ``nn.Sequential`` runs through it.

Why: apart, the normalised output goes through memory four more times than it must. The
BatchNorm + ReLU kernel writes y at full size and the pooling reads it; backward, the pooling
writes its gradient at full size (zeros but at each window's argmax) and the BatchNorm kernel
reads it and y twice more. Fused, a plane of y is made in a scratch that stays in cache and is
pooled there, and backward reads the pooled gradient and the argmax instead of full-size arrays.

Forward, per block of channels, sample by sample as ``batchnorm``'s kernels go: the means and
variances (``block_stats``), then per plane one pass writing xhat = (x - mean) invstd and
relu(gamma xhat + beta) into the plane's scratch, then the 2 x 2 maxima and their flat (H, W)
indices, as ``MaxPool2D`` keeps them (``pool.max4``: ties to the first in row-major window order;
a plane that held a NaN is redone by the exact rule, the first NaN wins), and xhat at each argmax
(``xhat_at``, for the backward's sums: a quarter of xhat, read in order; gathered from xhat in
the backward, out of cache by then, the recipe's first BatchNorm's backward took 1.85 ms a batch
instead of 1.07). xhat, y and the argmax are the unfused layers' to the bit.

Backward: the gradient reaching the BatchNorm is dy = gy [y > 0] at each window's argmax (the
ReLU's rule from the pooled value, which is y there: ``dense.d_relu``) and zero elsewhere, so

    sum dy = sum over windows of dy,   sum dy xhat = sum over windows of dy xhat_at,
    dx = gamma invstd (dy - sum(dy) / m - xhat sum(dy xhat) / m)

is one pass writing gamma invstd (0 - a - xhat b) over the plane and the argmax places written
again with their dy. The zeros' products 0 * xhat count only where xhat is not finite (0 * inf
is NaN in the unfused sums): the dx pass watches for that, and a channel where it happens has its
sums redone over every place, as the unfused kernels sum them. Without dx (the network's first
layer) the sums are always taken that way.

Channels are independent: on several threads (``parallel.use_parallel``) each thread takes a
block of them, the same bits at any thread count. The NumPy twins compose ``batchnorm``'s and
``pool``'s NumPy kernels (backward from the full-size gradient and a full-size y holding the
pooled value at each argmax); the two agree to rounding (the sums in another order).

Measured on the recipe's network in its training step (batch 64, float32, one thread, AMD EPYC,
2026-12-06), the three BatchNorms' forward and backward, ms a step: 1.89 + 2.32, 1.57 + 1.36 and
1.06 + 0.48 (8.7 in all) with ReLU fused and the pooling apart, channel at a time; 1.41 + 1.04,
1.02 + 0.60 and 0.62 + 0.30 (5.0) with this kernel and ``batchnorm``'s channel blocks. Training
only: in eval mode the pooling runs as its own layer (``BatchNorm.fused_count``).
"""

import numpy as np

from . import pool
from ._nb import NJIT, NJIT_SUMS, njit, read_only
from .batchnorm import (
    batchnorm_backward_numpy,
    batchnorm_forward_numpy,
    block_stats,
    channel_block,
    channel_parts,
    plane_sum,
)
from .dense import d_relu
from .parallel import NJIT_PARALLEL, prange


def _pooled_shape(x):
    return (x.shape[0], x.shape[1], x.shape[2] // 2, x.shape[3] // 2)


def _check(x, gamma, xhat, y, argmax, xhat_at, dx=None):
    if x.ndim != 4 or x.shape[2] < 2 or x.shape[3] < 2 or gamma.shape != (x.shape[1],):
        raise ValueError(
            f"batchnorm_relu_pool: x must be (N, C, H, W) with H, W >= 2 and gamma of shape (C,), got x "
            f"{x.shape}, gamma {gamma.shape}"
        )
    shape = _pooled_shape(x)
    if xhat.shape != x.shape or (dx is not None and dx.shape != x.shape):
        raise ValueError(f"batchnorm_relu_pool: xhat and dx must have x's shape {x.shape}")
    if y.shape != shape or argmax.shape != shape or xhat_at.shape != shape:
        raise ValueError(
            f"batchnorm_relu_pool: y, argmax and xhat_at must have shape {shape}, got {y.shape}, {argmax.shape} "
            f"and {xhat_at.shape}"
        )
    if not all(a.flags.c_contiguous for a in (xhat, y, argmax, xhat_at) + (() if dx is None else (dx,))):
        raise ValueError("batchnorm_relu_pool: xhat, y, argmax, xhat_at and dx must be C-contiguous")


# --- NumPy ---------------------------------------------------------------------------------------
def batchnorm_relu_pool_forward_numpy(x, gamma, beta, eps, xhat, y, argmax, xhat_at):
    """xhat <- (x - mean) invstd; y <- maxpool2x2(relu(gamma xhat + beta)); argmax <- the flat
    (H, W) index of each maximum; xhat_at <- xhat there. Returns (mean, var, invstd)."""
    _check(x, gamma, xhat, y, argmax, xhat_at)
    full = np.empty(x.shape, x.dtype)
    stats = batchnorm_forward_numpy(x, gamma, beta, eps, xhat, full, relu=True)
    pool.maxpool2d_forward_numpy(full, 2, 2, 2, 2, y, argmax)
    n, c = x.shape[:2]
    flat_at = np.take_along_axis(xhat.reshape(n, c, -1), argmax.reshape(n, c, -1).astype(np.intp), axis=2)
    xhat_at[...] = flat_at.reshape(xhat_at.shape)
    return stats


def batchnorm_relu_pool_backward_numpy(gy, xhat, y, argmax, xhat_at, gamma, invstd, dgamma, dbeta, dx):
    """The backward of ``batchnorm_relu_pool_forward_numpy`` from xhat, the pooled output, its
    argmax and xhat_at (unused here: the composed kernels read xhat): dgamma += sum dy xhat,
    dbeta += sum dy; dx (None: not wanted) <- the input's gradient. Returns dx."""
    _check(xhat, gamma, xhat, y, argmax, xhat_at, dx)
    g_full = pool.maxpool2d_backward_numpy(gy, argmax, np.empty(xhat.shape, xhat.dtype))
    y_full = pool.maxpool2d_backward_numpy(y, argmax, np.empty(xhat.shape, xhat.dtype))
    return batchnorm_backward_numpy(g_full, xhat, gamma, invstd, dgamma, dbeta, dx, y_full)


# --- numba ---------------------------------------------------------------------------------------
@njit(**NJIT)
def _pool_plane(plane, nan, y, am, i, c):
    """y[i, c], am[i, c] <- the 2 x 2 maxima of plane (H, W) and their flat indices: selects that
    ignore NaN (``pool.max4``), then, if the plane held a NaN, the exact rule."""
    w = plane.shape[1]
    for q in range(y.shape[2]):
        r = 2 * q
        for p in range(y.shape[3]):
            a, b = plane[r, 2 * p], plane[r, 2 * p + 1]
            d, e = plane[r + 1, 2 * p], plane[r + 1, 2 * p + 1]
            best, k = pool.max4(a, b, d, e, w)
            y[i, c, q, p] = best
            am[i, c, q, p] = r * w + 2 * p + k
    if nan:
        for q in range(y.shape[2]):
            pool.maxpool_row_exact(plane, 2, 2, 2, 2, q, y[i, c, q], am[i, c, q])


@njit(**NJIT_SUMS)
def _forward_block(x3, c0, c1, gamma, beta, eps, xhat3, y, am, a3, at3, mean, var, invstd, w):
    block_stats(x3, c0, c1, eps, mean, var, invstd)
    length = x3.shape[2]
    zero = xhat3.dtype.type(0)
    row = np.empty(length, xhat3.dtype)
    plane = row.reshape(length // w, w)
    for i in range(x3.shape[0]):  # sample by sample, a contiguous run of channels each (batchnorm)
        for c in range(c0, c1):
            mu, inv, g, b = mean[c], invstd[c], gamma[c], beta[c]  # in x's dtype, as batchnorm's
            xr, hr = x3[i, c], xhat3[i, c]
            nan = False
            for k in range(length):  # batchnorm's normalising pass, y into the plane's scratch
                h = (xr[k] - mu) * inv
                hr[k] = h
                v = h * g + b
                nan |= v != v
                row[k] = zero if v < zero else v
            _pool_plane(plane, nan, y, am, i, c)
            ar, atr = a3[i, c], at3[i, c]  # xhat at each argmax, from the plane just written
            for u in range(ar.shape[0]):
                atr[u] = hr[ar[u]]


@njit(**NJIT_SUMS)
def _forward(x3, gamma, beta, eps, xhat3, y, am, a3, at3, mean, var, invstd, w, parts):
    _forward_block(x3, 0, x3.shape[1], gamma, beta, eps, xhat3, y, am, a3, at3, mean, var, invstd, w)


@njit(**NJIT_PARALLEL)
def _forward_parallel(x3, gamma, beta, eps, xhat3, y, am, a3, at3, mean, var, invstd, w, parts):
    for p in prange(parts):
        c0, c1 = channel_block(x3.shape[1], parts, p)
        _forward_block(x3, c0, c1, gamma, beta, eps, xhat3, y, am, a3, at3, mean, var, invstd, w)


@njit(**NJIT_SUMS)
def _sums_everywhere(g3, y3, a3, xhat3, c):
    """(sum dy, sum dy xhat) of channel c over every place of its planes, dy = gy [y > 0] at each
    argmax and 0 elsewhere, the zeros' products 0 * xhat included (NaN where xhat is not finite),
    as the unfused kernels sum them."""
    one, zero = g3.dtype.type(1), g3.dtype.type(0)
    dy = np.zeros(xhat3.shape[2], xhat3.dtype)
    sg, sgx = 0.0, 0.0
    for i in range(g3.shape[0]):
        for u in range(g3.shape[2]):
            dy[a3[i, c, u]] = d_relu(y3[i, c, u], g3[i, c, u], one, zero)
        sg += plane_sum(dy)
        hr, t = xhat3[i, c], 0.0
        for k in range(dy.shape[0]):
            t += dy[k] * hr[k]
        sgx += t
        for u in range(g3.shape[2]):
            dy[a3[i, c, u]] = zero
    return sg, sgx


@njit(**NJIT_SUMS)
def _dx_plane(gr, yr, ar, hr, scale, a, b, dr):
    """dx of one plane (see the module docstring); returns whether some xhat was not finite."""
    one, zero = gr.dtype.type(1), gr.dtype.type(0)
    bad = False
    for k in range(hr.shape[0]):
        h = hr[k]
        bad |= (h - h) != zero  # NaN for inf and NaN
        dr[k] = scale * (zero - a - h * b)
    for u in range(gr.shape[0]):
        k = ar[u]
        v = d_relu(yr[u], gr[u], one, zero)
        dr[k] = scale * (v - a - hr[k] * b)
    return bad


@njit(**NJIT_SUMS)
def _backward_block(g3, y3, a3, at3, xhat3, gamma, invstd, dgamma, dbeta, dx3, c0, c1):
    n, _, length = xhat3.shape
    m = n * length
    one, zero = g3.dtype.type(1), g3.dtype.type(0)
    tp = dgamma.dtype.type
    sg, sgx = np.zeros(c1 - c0), np.zeros(c1 - c0)
    # No dx wanted: nothing to watch xhat in, so every channel is summed everywhere.
    exact = np.full(c1 - c0, dx3.shape[0] == 0)
    if dx3.shape[0] != 0:
        for i in range(n):  # the sums over the windows, at each argmax
            for c in range(c0, c1):
                gr, yr, atr = g3[i, c], y3[i, c], at3[i, c]
                s, t = 0.0, 0.0
                for u in range(gr.shape[0]):
                    v = d_relu(yr[u], gr[u], one, zero)
                    s += v
                    t += v * atr[u]
                sg[c - c0] += s
                sgx[c - c0] += t
        for i in range(n):
            for c in range(c0, c1):
                a, b = tp(sg[c - c0] / m), tp(sgx[c - c0] / m)
                scale = gamma[c] * invstd[c]
                exact[c - c0] |= _dx_plane(g3[i, c], y3[i, c], a3[i, c], xhat3[i, c], scale, a, b, dx3[i, c])
    for c in range(c0, c1):
        if exact[c - c0]:  # a channel with a non-finite xhat (or no dx): summed as the unfused
            sg[c - c0], sgx[c - c0] = _sums_everywhere(g3, y3, a3, xhat3, c)
            if dx3.shape[0] != 0:
                a, b = tp(sg[c - c0] / m), tp(sgx[c - c0] / m)
                for i in range(n):
                    _dx_plane(g3[i, c], y3[i, c], a3[i, c], xhat3[i, c], gamma[c] * invstd[c], a, b, dx3[i, c])
        dgamma[c] += sgx[c - c0]
        dbeta[c] += sg[c - c0]


@njit(**NJIT_SUMS)
def _backward(g3, y3, a3, at3, xhat3, gamma, invstd, dgamma, dbeta, dx3, parts):
    _backward_block(g3, y3, a3, at3, xhat3, gamma, invstd, dgamma, dbeta, dx3, 0, xhat3.shape[1])


@njit(**NJIT_PARALLEL)
def _backward_parallel(g3, y3, a3, at3, xhat3, gamma, invstd, dgamma, dbeta, dx3, parts):
    for p in prange(parts):
        c0, c1 = channel_block(xhat3.shape[1], parts, p)
        _backward_block(g3, y3, a3, at3, xhat3, gamma, invstd, dgamma, dbeta, dx3, c0, c1)


def _flat(a):
    """(N, C, H W) view of a C-contiguous array (``_check`` has made sure of that)."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def batchnorm_relu_pool_forward_numba(x, gamma, beta, eps, xhat, y, argmax, xhat_at):
    """numba twin of ``batchnorm_relu_pool_forward_numpy``: the same xhat, y and argmax to the bit."""
    _check(x, gamma, xhat, y, argmax, xhat_at)
    x = read_only(np.ascontiguousarray(x))  # one compiled variant for data and a layer's output
    c = x.shape[1]
    mean, var, invstd = np.empty(c, x.dtype), np.empty(c, x.dtype), np.empty(c, x.dtype)
    threads, parts = channel_parts(x)
    run = _forward_parallel if threads else _forward
    outs = (_flat(xhat), y, argmax, _flat(argmax), _flat(xhat_at), mean, var, invstd)
    run(_flat(x), gamma, beta, float(eps), *outs, x.shape[3], parts)
    return mean, var, invstd


def batchnorm_relu_pool_backward_numba(gy, xhat, y, argmax, xhat_at, gamma, invstd, dgamma, dbeta, dx):
    """numba twin of ``batchnorm_relu_pool_backward_numpy`` (to rounding)."""
    _check(xhat, gamma, xhat, y, argmax, xhat_at, dx)
    if gy.shape != y.shape:
        raise ValueError(f"batchnorm_relu_pool: gy must have y's shape {y.shape}, got {gy.shape}")
    gy = read_only(np.ascontiguousarray(gy))
    threads, parts = channel_parts(xhat)
    run = _backward_parallel if threads else _backward
    # No dx: a (0, C, H W) array, so that one compiled variant serves both.
    dx3 = np.empty((0, xhat.shape[1], xhat.shape[2] * xhat.shape[3]), xhat.dtype) if dx is None else _flat(dx)
    run(_flat(gy), _flat(y), _flat(argmax), _flat(xhat_at), _flat(xhat), gamma, invstd, dgamma, dbeta, dx3, parts)
    return dx


from .registry import kernel, warmup_case  # noqa: E402

kernel("batchnorm_relu_pool_forward", batchnorm_relu_pool_forward_numpy, batchnorm_relu_pool_forward_numba)
kernel("batchnorm_relu_pool_backward", batchnorm_relu_pool_backward_numpy, batchnorm_relu_pool_backward_numba)


@warmup_case
def _warm_up(dtype):
    x = np.linspace(-1.0, 1.0, 2 * 3 * 4 * 5, dtype=dtype).reshape(2, 3, 4, 5)
    gamma, beta = np.ones(3, dtype), np.zeros(3, dtype)
    xhat, y = np.empty_like(x), np.empty((2, 3, 2, 2), dtype)
    am, at = np.empty(y.shape, pool.argmax_dtype(4, 5)), np.empty_like(y)
    x3, xhat3 = read_only(x).reshape(2, 3, 20), xhat.reshape(2, 3, 20)
    stats = [np.empty(3, dtype) for _ in range(3)]
    # Both loops: the thread count at warm-up is not the one training will run at.
    for forward, backward in ((_forward, _backward), (_forward_parallel, _backward_parallel)):
        forward(x3, gamma, beta, 1e-5, xhat3, y, am, am.reshape(2, 3, 4), at.reshape(2, 3, 4), *stats, 5, 2)
        g3, y3, a3 = read_only(y).reshape(2, 3, 4), y.reshape(2, 3, 4), am.reshape(2, 3, 4)
        for dx3 in (np.empty_like(xhat3), np.empty((0, 3, 20), dtype)):
            zeros = np.zeros(3, dtype), np.zeros(3, dtype)
            backward(g3, y3, a3, at.reshape(2, 3, 4), xhat3, gamma, stats[2], *zeros, dx3, 2)
