"""Layer normalisation over the last axis, forward and backward, on rows (R, F):

    forward:   mu = mean(x), var = mean((x - mu)^2), invstd = 1 / sqrt(var + eps),
               xhat = (x - mu) invstd,  y = gamma xhat + beta
    backward:  dgamma += sum_rows dy xhat,  dbeta += sum_rows dy,
               g = dy gamma,  dx = invstd (g - mean(g) - xhat mean(g xhat))

xhat (R, F) and invstd (R,) are written by the forward for the backward. The NumPy kernels are the
plain array expressions; the numba kernels do a row in two passes forward (the mean and variance
summed in float64 for float32 rows, then xhat and y) and two backward (the row's two means, then
dx), with the column sums of dgamma and dbeta accumulated on the way: one call per direction,
where the array expressions make about ten passes over the rows (a Transformer layer's two
LayerNorms took a quarter of its step that way). Tall inputs (``dense_parts.SPLIT_ROWS`` rows or
more) go in ``dense_parts.PARTS`` row parts, each with its own column sums (added in part order),
on numba's threads when there are several: the same bits either way.
"""

import numpy as np

from . import dense_parts, parallel
from ._nb import NJIT, NJIT_SUMS, njit
from .dense_parts import bounds
from .parallel import NJIT_PARALLEL, prange


def layernorm_forward_numpy(x, gamma, beta, eps, y, xhat, invstd):
    """y <- gamma (x - mean) / sqrt(var + eps) + beta row by row; xhat and invstd kept. Returns y."""
    xc = x - x.mean(axis=-1, keepdims=True)
    invstd[...] = (1 / np.sqrt(np.mean(xc * xc, axis=-1) + x.dtype.type(eps))).astype(invstd.dtype)
    np.multiply(xc, invstd[:, None], out=xhat)
    np.multiply(xhat, gamma, out=y)
    y += beta
    return y


def layernorm_backward_numpy(gy, xhat, invstd, gamma, dgamma, dbeta, dx):
    """dgamma += sum dy xhat, dbeta += sum dy (either may be None); dx (may be None) <- the
    input's gradient. Returns dx."""
    if dgamma is not None:
        dgamma += (gy * xhat).sum(axis=0)
    if dbeta is not None:
        dbeta += gy.sum(axis=0)
    if dx is None:
        return None
    g = gy * gamma
    np.multiply(
        invstd[:, None], g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True), out=dx
    )
    return dx


@njit(**NJIT_SUMS)
def _forward_rows(x, gamma, beta, eps, y, xhat, invstd, lo, hi):
    f = x.shape[1]
    for i in range(lo, hi):
        s = 0.0
        for j in range(f):
            s += x[i, j]
        mu = s / f
        v = 0.0
        for j in range(f):
            d = x[i, j] - mu
            v += d * d
        r = 1.0 / np.sqrt(v / f + eps)
        invstd[i] = r
        mu_t, r_t = x.dtype.type(mu), x.dtype.type(r)
        for j in range(f):
            h = (x[i, j] - mu_t) * r_t
            xhat[i, j] = h
            y[i, j] = h * gamma[j] + beta[j]


@njit(**NJIT_SUMS)
def _backward_rows(gy, xhat, invstd, gamma, ag, ab, dx, lo, hi):
    """ag, ab += this part's column sums of dy xhat and dy; dx rows lo:hi."""
    f = gy.shape[1]
    for i in range(lo, hi):
        for j in range(f):
            ag[j] += gy[i, j] * xhat[i, j]
            ab[j] += gy[i, j]
        if dx is not None:
            m1, m2 = 0.0, 0.0
            for j in range(f):
                g = gy[i, j] * gamma[j]
                m1 += g
                m2 += g * xhat[i, j]
            m1_t, m2_t = gy.dtype.type(m1 / f), gy.dtype.type(m2 / f)
            r = gy.dtype.type(invstd[i])
            for j in range(f):
                dx[i, j] = r * (gy[i, j] * gamma[j] - m1_t - xhat[i, j] * m2_t)


@njit(**NJIT)
def _forward(x, gamma, beta, eps, y, xhat, invstd, parts):
    for p in range(parts):
        lo, hi = bounds(x.shape[0], parts, p)
        _forward_rows(x, gamma, beta, eps, y, xhat, invstd, lo, hi)


@njit(**NJIT_PARALLEL)
def _forward_parallel(x, gamma, beta, eps, y, xhat, invstd, parts):
    for p in prange(parts):
        lo, hi = bounds(x.shape[0], parts, p)
        _forward_rows(x, gamma, beta, eps, y, xhat, invstd, lo, hi)


@njit(**NJIT)
def _add_parts(ag, ab, dgamma, dbeta):
    """The parts' column sums, added in part order."""
    for p in range(ag.shape[0]):
        for j in range(ag.shape[1]):
            if dgamma is not None:
                dgamma[j] += ag[p, j]
            if dbeta is not None:
                dbeta[j] += ab[p, j]


@njit(**NJIT)
def _backward(gy, xhat, invstd, gamma, dgamma, dbeta, dx, parts):
    ag, ab = np.zeros((parts, gy.shape[1]), gy.dtype), np.zeros((parts, gy.shape[1]), gy.dtype)
    for p in range(parts):
        lo, hi = bounds(gy.shape[0], parts, p)
        _backward_rows(gy, xhat, invstd, gamma, ag[p], ab[p], dx, lo, hi)
    _add_parts(ag, ab, dgamma, dbeta)


@njit(**NJIT_PARALLEL)
def _backward_parallel(gy, xhat, invstd, gamma, dgamma, dbeta, dx, parts):
    ag, ab = np.zeros((parts, gy.shape[1]), gy.dtype), np.zeros((parts, gy.shape[1]), gy.dtype)
    for p in prange(parts):
        lo, hi = bounds(gy.shape[0], parts, p)
        _backward_rows(gy, xhat, invstd, gamma, ag[p], ab[p], dx, lo, hi)
    _add_parts(ag, ab, dgamma, dbeta)


def _parts(rows):
    """Tall inputs (``dense_parts.SPLIT_ROWS`` rows or more) in ``PARTS`` row parts, others whole."""
    return dense_parts.PARTS if dense_parts.tall(rows) else 1


def layernorm_forward_numba(x, gamma, beta, eps, y, xhat, invstd, on_threads=None):
    """numba twin of ``layernorm_forward_numpy``; tall inputs in row parts, on numba's threads when
    ``on_threads`` (None: when there are several); the same bits either way."""
    parts = _parts(x.shape[0])
    threads = parts > 1 and parallel.use_parallel(y.size) if on_threads is None else on_threads
    (_forward_parallel if threads else _forward)(x, gamma, beta, float(eps), y, xhat, invstd, parts)
    return y


def layernorm_backward_numba(gy, xhat, invstd, gamma, dgamma, dbeta, dx, on_threads=None):
    """numba twin of ``layernorm_backward_numpy`` (row parts as the forward's)."""
    parts = _parts(gy.shape[0])
    threads = parts > 1 and parallel.use_parallel(gy.size) if on_threads is None else on_threads
    (_backward_parallel if threads else _backward)(gy, xhat, invstd, gamma, dgamma, dbeta, dx, parts)
    return dx


# The table (see kernels/registry.py) and the warm-up: C-contiguous rows, writable or read-only
# (a layer's output), gradients with and without dx.
from .registry import kernel, warmup_case  # noqa: E402

kernel("layernorm_forward", layernorm_forward_numpy, layernorm_forward_numba)
kernel("layernorm_backward", layernorm_backward_numpy, layernorm_backward_numba)


@warmup_case
def _warm_up(dtype):
    x = np.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4)
    x_readonly = x.view()
    x_readonly.flags.writeable = False
    gamma, beta = np.ones(4, dtype), np.zeros(4, dtype)
    y, xhat, invstd = np.empty_like(x), np.empty_like(x), np.empty(3, dtype)
    for on in (False, True) if dtype == np.float32 else (False,):
        for xin in (x, x_readonly):
            layernorm_forward_numba(xin, gamma, beta, 1e-5, y, xhat, invstd, on_threads=on)
            for dx in (np.empty_like(x), None):
                layernorm_backward_numba(xin, xhat, invstd, gamma, np.zeros(4, dtype), np.zeros(4, dtype), dx, on)
