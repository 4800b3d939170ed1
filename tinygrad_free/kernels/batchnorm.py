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
The numba kernels take a block of channels at a time, sample by sample, so that each sample's
part of the block is one contiguous run: forward, the means, then the variances (each plane
summed in float64, reassociated so the sums vectorise, then added to its channel's sum in sample
order: a fixed order for a given machine and shape), then one pass writing xhat and y; backward,
one pass for the two sums and one for dx. Channels are independent, so on several threads
(``parallel.use_parallel``) each thread takes a block of them: the same order per channel, the
same bits at any thread count. On the fashion_mnist_cnn recipe's network (batch 64, one thread,
Intel Xeon, 2026-12-06) BatchNorm's forward and backward took 6.9 and 6.7 ms of a 39 ms training
step as array expressions. Going a channel at a time instead, each plane read a whole sample
apart from the last, was 1.3-2x slower on that network's activations (which a step leaves out
of cache; 7 x 7 planes worst: 196-byte runs, each waiting for memory; AMD EPYC, 2026-12-06).
The two agree to rounding (the sums in another order, in float64).
"""

import numpy as np

from ._nb import NJIT, NJIT_SUMS, njit, read_only
from .dense import d_relu
from .parallel import NJIT_PARALLEL, prange, thread_count, use_parallel

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


# The numba kernels work a block of channels [c0, c1) at a time, sample by sample: x[i, c0:c1] is
# one contiguous run, where a channel at a time reads runs of one plane (196 bytes on 7 x 7) a
# whole sample apart, and on a network's activations, out of cache, each of those waited for
# memory. Each channel's sums still go in the same order (sample by sample, each plane's sum
# reassociated), so the blocks a thread count makes change no bit.
@njit(**NJIT_SUMS)
def plane_sum(row):
    """The sum of a plane (in float64), reassociated so that it vectorises."""
    s = 0.0
    for k in range(row.shape[0]):
        s += row[k]
    return s


@njit(**NJIT_SUMS)
def block_stats(x3, c0, c1, eps, mean, var, invstd):
    """mean, var (biased) and invstd of channels [c0, c1) of x3 (N, C, H W): two passes, the sums
    in float64."""
    n, _, length = x3.shape
    m = n * length
    s = np.zeros(c1 - c0)
    for i in range(n):
        for c in range(c0, c1):
            s[c - c0] += plane_sum(x3[i, c])
    mu = s / m
    q = np.zeros(c1 - c0)
    for i in range(n):
        for c in range(c0, c1):
            row, u, t = x3[i, c], mu[c - c0], 0.0
            for k in range(length):
                d = row[k] - u
                t += d * d
            q[c - c0] += t
    for c in range(c0, c1):
        mean[c] = mu[c - c0]
        var[c] = q[c - c0] / m
        invstd[c] = 1.0 / np.sqrt(var[c] + eps)


@njit(**NJIT_SUMS)
def _forward_block(x3, c0, c1, gamma, beta, eps, xhat3, y3, mean, var, invstd, relu):
    block_stats(x3, c0, c1, eps, mean, var, invstd)
    zero = y3.dtype.type(0)
    for i in range(x3.shape[0]):
        for c in range(c0, c1):
            mu, inv, g, b = mean[c], invstd[c], gamma[c], beta[c]  # in x's dtype, as NumPy's
            xr, hr, yr = x3[i, c], xhat3[i, c], y3[i, c]
            for k in range(xr.shape[0]):
                h = (xr[k] - mu) * inv
                hr[k] = h
                v = h * g + b
                yr[k] = zero if relu and v < zero else v  # np.maximum(v, 0): NaN stays NaN


@njit(**NJIT_SUMS)
def _backward_block(g3, xhat3, gamma, invstd, dgamma, dbeta, dx3, y3, relu, c0, c1):
    n, _, length = g3.shape
    m = n * length
    one, zero = g3.dtype.type(1), g3.dtype.type(0)
    sg, sgx = np.zeros(c1 - c0), np.zeros(c1 - c0)
    for i in range(n):
        for c in range(c0, c1):
            gr, hr, yr = g3[i, c], xhat3[i, c], y3[i, c]
            s, t = 0.0, 0.0
            for k in range(length):
                v = gr[k]
                if relu:
                    v = d_relu(yr[k], v, one, zero)
                s += v
                t += v * hr[k]
            sg[c - c0] += s
            sgx[c - c0] += t
    for c in range(c0, c1):
        dgamma[c] += sgx[c - c0]
        dbeta[c] += sg[c - c0]
    if dx3 is None:
        return
    tp = dgamma.dtype.type
    for i in range(n):
        for c in range(c0, c1):
            scale, a, b = gamma[c] * invstd[c], tp(sg[c - c0] / m), tp(sgx[c - c0] / m)
            gr, hr, yr, dr = g3[i, c], xhat3[i, c], y3[i, c], dx3[i, c]
            for k in range(length):
                v = gr[k]
                if relu:
                    v = d_relu(yr[k], v, one, zero)
                dr[k] = scale * (v - a - hr[k] * b)


@njit(**NJIT)
def channel_block(c, parts, p):
    """Channels [c0, c1) of part p of ``parts``: the same split for a given thread count."""
    return p * c // parts, (p + 1) * c // parts


# The serial kernels take all channels as one block; the parallel ones one block per part.
@njit(**NJIT_SUMS)
def _forward(x3, gamma, beta, eps, xhat3, y3, mean, var, invstd, relu, parts):
    _forward_block(x3, 0, x3.shape[1], gamma, beta, eps, xhat3, y3, mean, var, invstd, relu)


@njit(**NJIT_PARALLEL)
def _forward_parallel(x3, gamma, beta, eps, xhat3, y3, mean, var, invstd, relu, parts):
    for p in prange(parts):
        c0, c1 = channel_block(x3.shape[1], parts, p)
        _forward_block(x3, c0, c1, gamma, beta, eps, xhat3, y3, mean, var, invstd, relu)


@njit(**NJIT_SUMS)
def _backward(g3, xhat3, gamma, invstd, dgamma, dbeta, dx3, y3, relu, parts):
    _backward_block(g3, xhat3, gamma, invstd, dgamma, dbeta, dx3, y3, relu, 0, g3.shape[1])


@njit(**NJIT_PARALLEL)
def _backward_parallel(g3, xhat3, gamma, invstd, dgamma, dbeta, dx3, y3, relu, parts):
    for p in prange(parts):
        c0, c1 = channel_block(g3.shape[1], parts, p)
        _backward_block(g3, xhat3, gamma, invstd, dgamma, dbeta, dx3, y3, relu, c0, c1)


@njit(**NJIT)
def _eval_block(x3, mean, scale, beta, y3, relu, c0, c1):
    zero = y3.dtype.type(0)
    for i in range(x3.shape[0]):
        for c in range(c0, c1):
            mu, sc, b = mean[c], scale[c], beta[c]
            xr, yr = x3[i, c], y3[i, c]
            for k in range(xr.shape[0]):
                v = (xr[k] - mu) * sc + b  # NumPy's three operations, each rounded (no contraction)
                yr[k] = zero if relu and v < zero else v


@njit(**NJIT)
def _eval(x3, mean, scale, beta, y3, relu, parts):
    _eval_block(x3, mean, scale, beta, y3, relu, 0, x3.shape[1])


@njit(**NJIT_PARALLEL)
def _eval_parallel(x3, mean, scale, beta, y3, relu, parts):
    for p in prange(parts):
        c0, c1 = channel_block(x3.shape[1], parts, p)
        _eval_block(x3, mean, scale, beta, y3, relu, c0, c1)


def _flat(a):
    """(N, C, H W) view of a C-contiguous array (a reshape that copied would lose the writes)."""
    if a is None:
        return None
    if not a.flags.c_contiguous:
        raise ValueError("batchnorm: the output arrays (xhat, y, dx) must be C-contiguous")
    return a.reshape(a.shape[0], a.shape[1], -1)


def channel_parts(x):
    """(kernel chooser, parts): channels on several threads, a block each, when there are several
    and enough work (``use_parallel``), else one block on this thread."""
    if x.shape[1] > 1 and use_parallel(x.size):
        return True, min(x.shape[1], thread_count())
    return False, 1


def batchnorm_forward_numba(x, gamma, beta, eps, xhat, y, relu=False):
    """numba twin of ``batchnorm_forward_numpy`` (to rounding). xhat and y must be C-contiguous."""
    _check(x, gamma, (xhat, y))
    x = read_only(np.ascontiguousarray(x))  # one compiled variant for data and a layer's output
    c = x.shape[1]
    mean, var, invstd = np.empty(c, x.dtype), np.empty(c, x.dtype), np.empty(c, x.dtype)
    threads, parts = channel_parts(x)
    run = _forward_parallel if threads else _forward
    x3 = x.reshape(x.shape[0], c, -1)
    run(x3, gamma, beta, float(eps), _flat(xhat), _flat(y), mean, var, invstd, bool(relu), parts)
    return mean, var, invstd


def batchnorm_backward_numba(gy, xhat, gamma, invstd, dgamma, dbeta, dx, y=None):
    """numba twin of ``batchnorm_backward_numpy`` (to rounding). xhat, dx and y C-contiguous."""
    _check(gy, gamma, (xhat, dx, y))
    gy = read_only(np.ascontiguousarray(gy))
    threads, parts = channel_parts(gy)
    run = _backward_parallel if threads else _backward
    xhat3 = _flat(xhat)
    # Without the ReLU, xhat stands in for y (never read): one compiled variant fewer per kernel.
    y3 = xhat3 if y is None else _flat(y)
    g3 = gy.reshape(gy.shape[0], gy.shape[1], -1)
    run(g3, xhat3, gamma, invstd, dgamma, dbeta, _flat(dx), y3, y is not None, parts)
    return dx


def batchnorm_eval_numba(x, mean, scale, beta, y, relu=False):
    """numba twin of ``batchnorm_eval_numpy``: the same bits, in one pass. y C-contiguous."""
    _check(x, mean, (y,))
    x = read_only(np.ascontiguousarray(x))
    threads, parts = channel_parts(x)
    run = _eval_parallel if threads else _eval
    run(x.reshape(x.shape[0], x.shape[1], -1), mean, scale, beta, _flat(y), bool(relu), parts)
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
        forward(x, gamma, beta, 1e-5, xhat, y, *stats, True, 2)
        for dx in (np.empty_like(x), None):  # y: the layer's own output, writable
            backward(x, xhat, gamma, stats[2], np.zeros(3, dtype), np.zeros(3, dtype), dx, y, True, 2)
    for run in (_eval, _eval_parallel):
        run(x, gamma, gamma, beta, y, True, 2)
