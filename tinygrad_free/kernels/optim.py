"""Optimizer update kernels: one call updates a whole (flat) parameter buffer in place.

``tmp`` is a caller-owned scratch of shape (2, *w.shape) so the NumPy versions allocate
nothing per step; the numba versions run one fused loop and ignore it. ``g`` is the gradient
with any weight decay already added. The equations are in each optimizer's docstring.
"""

import numpy as np


def sgd_numpy(w, g, tmp, lr):
    np.multiply(g, lr, out=tmp[0])
    w -= tmp[0]


def momentum_numpy(w, g, u, tmp, lr, beta, nesterov):
    u *= beta
    u += g
    if nesterov:  # w <- w - lr * (g + beta * u)
        np.multiply(u, beta, out=tmp[0])
        tmp[0] += g
        tmp[0] *= lr
    else:  # w <- w - lr * u
        np.multiply(u, lr, out=tmp[0])
    w -= tmp[0]


def rmsprop_numpy(w, g, v, tmp, lr, beta, eps):
    t = tmp[0]
    v *= beta
    np.multiply(g, g, out=t)
    t *= 1 - beta
    v += t
    np.sqrt(v, out=t)
    t += eps
    np.divide(g, t, out=t)
    t *= lr
    w -= t


def _moments(g, m, v, t, b1, b2):
    m *= b1
    np.multiply(g, 1 - b1, out=t)
    m += t
    v *= b2
    np.multiply(g, g, out=t)
    t *= 1 - b2
    v += t


def adam_numpy(w, g, m, v, tmp, lr, b1, b2, eps, bc1, bc2):
    """w <- w - lr * (m / bc1) / (sqrt(v / bc2) + eps)."""
    t = tmp[0]
    _moments(g, m, v, t, b1, b2)
    np.divide(v, bc2, out=t)
    np.sqrt(t, out=t)
    t += eps
    np.divide(m, t, out=t)
    t *= lr / bc1
    w -= t


def nadam_numpy(w, g, m, v, tmp, lr, b1, b2, eps, bc2, cm, cg):
    """w <- w - lr * (cm * m + cg * g) / (sqrt(v / bc2) + eps), m and v updated first.

    Both NAdam variants have this form; only the coefficients cm, cg differ (see optim.nadam).
    """
    t, u = tmp[0], tmp[1]
    _moments(g, m, v, t, b1, b2)
    np.divide(v, bc2, out=t)
    np.sqrt(t, out=t)
    t += eps
    if cm != 0:  # u <- cm * (m + (cg / cm) g) without a third buffer
        np.multiply(g, cg / cm, out=u)
        u += m
        u *= cm
    else:
        np.multiply(g, cg, out=u)
    u /= t
    u *= lr
    w -= u


def weight_decay_numpy(g, w, wd, n_decay, out):
    """out <- g, plus wd * w on the first n_decay elements (the weight matrices come first)."""
    np.multiply(w[:n_decay], wd, out=out[:n_decay])
    out[:n_decay] += g[:n_decay]
    out[n_decay:] = g[n_decay:]
    return out


# --------------------------------------------------------------------------------------------
# numba twins: one fused pass over the flat buffer per call, no scratch (``tmp`` is accepted
# and ignored). They are the jitted functions themselves (they return None, so a Python
# wrapper would only add a call). The hyperparameters are cast to the arrays' dtype and the
# operations follow the NumPy kernels' order, so float32 results match them bit for bit
# (NumPy rounds a Python-float operand to float32 too, and no fast-math is used) -- except
# that adam/nadam multiply v by 1/bc2 instead of dividing (one division per element fewer:
# these two are division/sqrt-bound, and this makes them ~30% faster; <= 1 ulp difference).
# Arrays may be 1-D of any stride, or C-contiguous of any shape (updated through a raveled
# view); read-only arguments of other layouts are copied first.
# --------------------------------------------------------------------------------------------
from ._nb import NJIT, flat, flat_in, njit  # noqa: E402


@njit(**NJIT)
def _check_sizes(w, g, n):
    if w.shape[0] != n or g.shape[0] != n:
        raise ValueError("optimizer kernel: all arrays must have the same number of elements")


@njit(**NJIT)
def sgd_numba(w, g, tmp, lr):
    """w <- w - lr * g. numba twin of ``sgd_numpy``."""
    w1, g1 = flat(w), flat_in(g)
    n = w1.shape[0]
    _check_sizes(w1, g1, n)
    lr_ = w1.dtype.type(lr)
    for i in range(n):
        w1[i] -= g1[i] * lr_


@njit(**NJIT)
def momentum_numba(w, g, u, tmp, lr, beta, nesterov):
    """u <- beta u + g; w <- w - lr u (or lr (g + beta u) if nesterov). numba twin."""
    w1, g1, u1 = flat(w), flat_in(g), flat(u)
    n = w1.shape[0]
    _check_sizes(u1, g1, n)
    dt = w1.dtype.type
    lr_, beta_ = dt(lr), dt(beta)
    if nesterov:
        for i in range(n):
            gi = g1[i]
            ui = u1[i] * beta_ + gi
            u1[i] = ui
            w1[i] -= (ui * beta_ + gi) * lr_
    else:
        for i in range(n):
            ui = u1[i] * beta_ + g1[i]
            u1[i] = ui
            w1[i] -= ui * lr_


@njit(**NJIT)
def rmsprop_numba(w, g, v, tmp, lr, beta, eps):
    """v <- beta v + (1 - beta) g^2; w <- w - lr g / (sqrt(v) + eps). numba twin."""
    w1, g1, v1 = flat(w), flat_in(g), flat(v)
    n = w1.shape[0]
    _check_sizes(v1, g1, n)
    dt = w1.dtype.type
    lr_, beta_, omb, eps_ = dt(lr), dt(beta), dt(1 - beta), dt(eps)
    for i in range(n):
        gi = g1[i]
        vi = v1[i] * beta_ + gi * gi * omb
        v1[i] = vi
        w1[i] -= gi / (np.sqrt(vi) + eps_) * lr_


@njit(**NJIT)
def adam_numba(w, g, m, v, tmp, lr, b1, b2, eps, bc1, bc2):
    """w <- w - lr * (m / bc1) / (sqrt(v / bc2) + eps), m and v updated first. numba twin."""
    w1, g1, m1, v1 = flat(w), flat_in(g), flat(m), flat(v)
    n = w1.shape[0]
    _check_sizes(m1, g1, n)
    _check_sizes(v1, g1, n)
    dt = w1.dtype.type
    b1_, omb1, b2_, omb2 = dt(b1), dt(1 - b1), dt(b2), dt(1 - b2)
    eps_, inv_bc2, step = dt(eps), dt(1 / bc2), dt(lr / bc1)
    for i in range(n):
        gi = g1[i]
        mi = m1[i] * b1_ + gi * omb1
        vi = v1[i] * b2_ + gi * gi * omb2
        m1[i] = mi
        v1[i] = vi
        w1[i] -= mi / (np.sqrt(vi * inv_bc2) + eps_) * step


@njit(**NJIT)
def nadam_numba(w, g, m, v, tmp, lr, b1, b2, eps, bc2, cm, cg):
    """w <- w - lr * (cm m + cg g) / (sqrt(v / bc2) + eps), m and v updated first. numba twin."""
    w1, g1, m1, v1 = flat(w), flat_in(g), flat(m), flat(v)
    n = w1.shape[0]
    _check_sizes(m1, g1, n)
    _check_sizes(v1, g1, n)
    dt = w1.dtype.type
    b1_, omb1, b2_, omb2 = dt(b1), dt(1 - b1), dt(b2), dt(1 - b2)
    eps_, inv_bc2, lr_ = dt(eps), dt(1 / bc2), dt(lr)
    if cm != 0:  # cm * (m + (cg / cm) g), the NumPy kernel's rounding
        cm_, ratio = dt(cm), dt(cg / cm)
        for i in range(n):
            gi = g1[i]
            mi = m1[i] * b1_ + gi * omb1
            vi = v1[i] * b2_ + gi * gi * omb2
            m1[i] = mi
            v1[i] = vi
            w1[i] -= (gi * ratio + mi) * cm_ / (np.sqrt(vi * inv_bc2) + eps_) * lr_
    else:
        cg_ = dt(cg)
        for i in range(n):
            gi = g1[i]
            mi = m1[i] * b1_ + gi * omb1
            vi = v1[i] * b2_ + gi * gi * omb2
            m1[i] = mi
            v1[i] = vi
            w1[i] -= gi * cg_ / (np.sqrt(vi * inv_bc2) + eps_) * lr_


@njit(**NJIT)
def _weight_decay(g, w, wd, n_decay, out):
    g1, w1, o1 = flat_in(g), flat_in(w), flat(out)
    n = o1.shape[0]
    _check_sizes(g1, w1, n)
    k = n_decay  # slice semantics of w[:n_decay]
    if k < 0:
        k = max(n + k, 0)
    k = min(k, n)
    wd_ = o1.dtype.type(wd)
    for i in range(k):
        o1[i] = w1[i] * wd_ + g1[i]
    for i in range(k, n):
        o1[i] = g1[i]


def weight_decay_numba(g, w, wd, n_decay, out):
    """out <- g, plus wd * w on the first n_decay elements. numba twin of ``weight_decay_numpy``."""
    _weight_decay(g, w, wd, n_decay, out)
    return out


# --------------------------------------------------------------------------------------------
# Parallel twins: the serial kernel above on each chunk of the flat buffer, in a prange; the same
# result bit for bit (see kernels.parallel, which also decides when they run).
# --------------------------------------------------------------------------------------------
from .parallel import NJIT_PARALLEL, chunk, n_chunks, prange, threaded  # noqa: E402


@njit(**NJIT_PARALLEL)
def sgd_parallel(w, g, tmp, lr):
    w1, g1 = flat(w), flat_in(g)
    n = w1.shape[0]
    _check_sizes(w1, g1, n)
    for c in prange(n_chunks(n)):
        lo, hi = chunk(n, c)
        sgd_numba(w1[lo:hi], g1[lo:hi], tmp, lr)


@njit(**NJIT_PARALLEL)
def momentum_parallel(w, g, u, tmp, lr, beta, nesterov):
    w1, g1, u1 = flat(w), flat_in(g), flat(u)
    n = w1.shape[0]
    _check_sizes(u1, g1, n)
    for c in prange(n_chunks(n)):
        lo, hi = chunk(n, c)
        momentum_numba(w1[lo:hi], g1[lo:hi], u1[lo:hi], tmp, lr, beta, nesterov)


@njit(**NJIT_PARALLEL)
def rmsprop_parallel(w, g, v, tmp, lr, beta, eps):
    w1, g1, v1 = flat(w), flat_in(g), flat(v)
    n = w1.shape[0]
    _check_sizes(v1, g1, n)
    for c in prange(n_chunks(n)):
        lo, hi = chunk(n, c)
        rmsprop_numba(w1[lo:hi], g1[lo:hi], v1[lo:hi], tmp, lr, beta, eps)


@njit(**NJIT_PARALLEL)
def adam_parallel(w, g, m, v, tmp, lr, b1, b2, eps, bc1, bc2):
    w1, g1, m1, v1 = flat(w), flat_in(g), flat(m), flat(v)
    n = w1.shape[0]
    _check_sizes(m1, g1, n)
    _check_sizes(v1, g1, n)
    for c in prange(n_chunks(n)):
        lo, hi = chunk(n, c)
        adam_numba(w1[lo:hi], g1[lo:hi], m1[lo:hi], v1[lo:hi], tmp, lr, b1, b2, eps, bc1, bc2)


@njit(**NJIT_PARALLEL)
def nadam_parallel(w, g, m, v, tmp, lr, b1, b2, eps, bc2, cm, cg):
    w1, g1, m1, v1 = flat(w), flat_in(g), flat(m), flat(v)
    n = w1.shape[0]
    _check_sizes(m1, g1, n)
    _check_sizes(v1, g1, n)
    for c in prange(n_chunks(n)):
        lo, hi = chunk(n, c)
        nadam_numba(w1[lo:hi], g1[lo:hi], m1[lo:hi], v1[lo:hi], tmp, lr, b1, b2, eps, bc2, cm, cg)


#: Buffers from which the updates with a square root and a division per element (RMSProp, Adam,
#: Nadam) take their parallel twins: measured inside the training step, not on the kernel alone.
#: ``python benchmarks/bench_grains.py`` (results/grains.md) times the MLP 784-w-w-w-10 at widths
#: 128-1024 at two threads with the serial update against two threads with the parallel one,
#: alternated in one process. Three runs on an Intel Xeon with AVX-512 and MKL (2026-12-06), Adam's
#: parallel update as the step's time over the serial one's at batch 16 / 64: 1.06 / 1.00,
#: 1.09 / 1.03 and 1.11 / 1.03 at 134,794 parameters (the reference MLP); 1.02 / 0.97, 0.99 / 0.96
#: and 1.02 / 0.98 at 226,762 (the crossover: within 2% either way); 0.90-0.93 at 335,114;
#: 0.81-0.92 at 0.9-2.9 million.
#: Timed alone, in a loop of itself (the second thread awake, the buffer in both cores' caches),
#: the update of 134,794 parameters is faster on two threads (``kernels.parallel``); in a step,
#: which leaves the second thread asleep since the last update, it is not.
ROOT_GRAIN = 196_608
#: The same for the updates with neither (SGD, momentum), bound by memory: SGD's parallel update
#: 1.23-1.27 / 1.05-1.08 at 134,794 parameters, 1.08-1.12 / 1.01-1.02 at 335,114, 0.96-0.99 at
#: 932,362, 0.90-0.97 at 2.9 million.
PLAIN_GRAIN = 786_432

#: What the numba backend calls: the parallel twin for buffers of the kernel's grain on several
#: threads (``kernels.parallel``), else the serial kernel.
sgd_threaded = threaded(sgd_numba, sgd_parallel, PLAIN_GRAIN)
momentum_threaded = threaded(momentum_numba, momentum_parallel, PLAIN_GRAIN)
rmsprop_threaded = threaded(rmsprop_numba, rmsprop_parallel, ROOT_GRAIN)
adam_threaded = threaded(adam_numba, adam_parallel, ROOT_GRAIN)
nadam_threaded = threaded(nadam_numba, nadam_parallel, ROOT_GRAIN)


# The table (see kernels/registry.py) and the warm-up: flat 1-D buffers with a (2, n) scratch,
# Python floats/ints/bools as hyperparameters; the serial kernels, then their parallel twins
# (taken for large buffers when numba has several threads; too small here to be chosen, so
# called directly).
from .registry import kernel, warmup_case  # noqa: E402

kernel("sgd", sgd_numpy, sgd_threaded)
kernel("momentum", momentum_numpy, momentum_threaded)
kernel("rmsprop", rmsprop_numpy, rmsprop_threaded)
kernel("adam", adam_numpy, adam_threaded)
kernel("nadam", nadam_numpy, nadam_threaded)
kernel("weight_decay", weight_decay_numpy, weight_decay_numba)


@warmup_case
def _warm_up(dtype):
    w, g, m, v = (np.full(5, 0.5, dtype) for _ in range(4))
    tmp = np.empty((2, 5), dtype)
    weight_decay_numba(g, w, 1e-4, 3, np.empty_like(g))
    for sgd, momentum, rmsprop, adam, nadam in (
        (sgd_threaded, momentum_threaded, rmsprop_threaded, adam_threaded, nadam_threaded),
        (sgd_parallel, momentum_parallel, rmsprop_parallel, adam_parallel, nadam_parallel),
    ):
        sgd(w, g, tmp, 0.1)
        for nesterov in (False, True):
            momentum(w, g, m, tmp, 0.1, 0.9, nesterov)
        rmsprop(w, g, v, tmp, 1e-3, 0.9, 1e-8)
        adam(w, g, m, v, tmp, 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001)
        nadam(w, g, m, v, tmp, 1e-3, 0.9, 0.999, 1e-8, 0.001, 9.0, 1.0)
