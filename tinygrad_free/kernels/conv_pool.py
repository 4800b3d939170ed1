"""A stride-1 convolution, its ReLU and a 2 x 2 max pooling of stride 2 in one kernel: the
``Conv2D(relu) -> MaxPool2D(2)`` blocks of the VGG-style convnets (Keras's mnist_convnet), which
``nn.Sequential`` runs through it.

Why: a convolution's output is its block's largest activation (mnist_convnet's first, batch 128,
32 x 26 x 26 floats: 11 MB), and apart it goes through memory six times: written by the
convolution, read by the pooling; the pooling's gradient written at full size (zeros but at the
argmax), then read with the output again by the convolution's backward, which writes dz. Fused,
a block of samples' convolution output is made in a scratch that stays in cache; the pooling
reads it there, and only the pooled quarter and its argmax leave. Measured on mnist_convnet
(batch 128, float32, one thread, Intel Xeon), forward and backward in ms, the two layers apart
against fused: first block 1.15 + 0.85 and 0.82 + 2.58 against 1.55 and 1.9; second block
4.33 + 0.56 and 0.27 + 9.18 against 4.1-4.3 and 8.4.

Forward, per block of samples: their wide columns (see below), z = W2 @ cols by the GEMM as
``conv`` does it, relu(z + b) in place, then y = the maximum over each window and argmax = that
maximum's flat index in the (Ho, Wo) plane, as ``MaxPool2D`` keeps it: ties go to the first in
row-major window order, the first NaN wins. A plane is pooled by selects that ignore NaN and
redone by the exact loop only if the ReLU's pass saw a NaN in it, as ``pool`` does.

Backward, per block: dz is zero except at each window's argmax, where it is gy * (y > 0): the
ReLU's derivative from the pooled value, which is relu(z) there (``dense.d_relu``: a NaN or inf
gradient stays NaN). Then dW^T += cols dz^T, db += the sums of dz and dx = col2im(W2^T dz), the
products of ``conv``'s backward on the same columns.

Blocks are shared out in ``conv.parts_of`` parts (whole blocks, a function of the shapes alone);
each part sums its own dW and db, added in part order, so one thread or several give the same
bits.

The NumPy twins compose ``conv``'s and ``pool``'s NumPy kernels; the backward rebuilds the
full-size gradient and a full-size y holding the pooled value at each argmax (zero elsewhere,
where the gradient is zero too). The two agree to rounding.
"""

import numpy as np

from . import blas, conv, dense, im2col, parallel, pool
from ._nb import NJIT, njit, none_as_empty, read_only
from .conv_activation import vector_sum
from .conv_blocks import finish_backward, part_bounds
from .parallel import NJIT_PARALLEL, prange


def _conv_size(x, W, ph, pw):
    return x.shape[2] + 2 * ph - W.shape[2] + 1, x.shape[3] + 2 * pw - W.shape[3] + 1


# --- NumPy ---------------------------------------------------------------------------------------
def conv_relu_pool_forward_numpy(x, W, b, ph, pw, y, argmax):
    """y <- maxpool2x2(relu(conv2d(x, W, stride 1, padding (ph, pw)) + b)); argmax <- the flat
    (Ho, Wo) index of each maximum. Returns y."""
    ho, wo = _conv_size(x, W, ph, pw)
    full = np.empty((x.shape[0], W.shape[0], ho, wo), x.dtype)
    conv.conv2d_forward_numpy(x, W, b, 1, 1, ph, pw, dense.RELU, full)
    return pool.maxpool2d_forward_numpy(full, 2, 2, 2, 2, y, argmax)


def conv_relu_pool_backward_numpy(x, W, y, argmax, gy, dW, beta, db, ph, pw, dx):
    """The backward of ``conv_relu_pool_forward_numpy`` from its input, its pooled output and
    argmax: dW <- (its gradient) + beta dW, db += (its gradient); dx <- the input's gradient
    when given. Returns dx."""
    ho, wo = _conv_size(x, W, ph, pw)
    shape = (x.shape[0], W.shape[0], ho, wo)
    g_full = pool.maxpool2d_backward_numpy(gy, argmax, np.empty(shape, x.dtype))
    y_full = pool.maxpool2d_backward_numpy(y, argmax, np.empty(shape, x.dtype))
    return conv.conv2d_backward_numpy(x, W, y_full, g_full, dense.RELU, dW, beta, db, 1, 1, ph, pw, dx)


# --- numba ---------------------------------------------------------------------------------------
# A block of nb samples at a time. Sample t's wide columns take cols[:, t sl : (t + 1) sl] with
# sl = Ho Wp: its padded plane (C, Hp + 1, Wp) read from tap (i, j) on, a contiguous run per row of
# cols. The scratch row under the plane keeps the last taps' runs inside it (zeros); the run's
# last Wp - Wo columns of each output row wrap around into the next row, and z = W2 @ cols holds
# the sample's output as a (Ho, Wp) plane whose first Wo columns are the convolution. Those are
# all the pooling reads; their gradient is zero, so the wrap-around adds nothing to dW or dx as
# long as x and W are finite (inf * 0 is NaN: the caller fuses only finite ones).
@njit(**NJIT)
def _bias_relu(z, b, m, sl, nans):
    """z[o, :m sl] <- relu(z + b[o]) in place, as conv's epilogue (NaN stays NaN), and nans[o, t]
    <- whether sample t's plane o holds a NaN: contiguous passes that vectorise, so the pooling's
    selects carry neither the ReLU nor a NaN test."""
    zero = z.dtype.type(0)
    for o in range(z.shape[0]):
        for t in range(m):
            row = z[o, t * sl : (t + 1) * sl]
            nan = False
            if b.shape[0] != 0:
                bo = b[o]
                for u in range(sl):
                    v = row[u] + bo
                    nan |= v != v
                    row[u] = zero if v < zero else v
            else:  # no bias (zero-length b): nothing added, so -0.0 stays -0.0 as in NumPy
                for u in range(sl):
                    v = row[u]
                    nan |= v != v
                    row[u] = zero if v < zero else v
            nans[o, t] = nan


@njit(**NJIT)
def _pool_plane(z4, o, t, wo, y, am, n):
    """y[n, o], am[n, o] (Hp, Wp) <- the 2 x 2 maxima of plane (o, t) of z4 (O, nb, Ho, Wp) and their
    flat (Ho, Wo) indices, by selects that ignore NaN (the arrays indexed whole, as ``pool``'s fast
    plane: measured on mnist_convnet's first layer, 0.6x the time of flat indexing)."""
    for q in range(y.shape[2]):
        r = 2 * q
        base = r * wo
        for p in range(y.shape[3]):
            a, c = z4[o, t, r, 2 * p], z4[o, t, r, 2 * p + 1]
            d, e = z4[o, t, r + 1, 2 * p], z4[o, t, r + 1, 2 * p + 1]
            m, k = pool.max4(a, c, d, e, wo)
            y[n, o, q, p] = m
            am[n, o, q, p] = base + 2 * p + k


@njit(**NJIT)
def _pool_plane_exact(z4, o, t, wo, y, am, n):
    """``_pool_plane`` with NumPy's argmax rule (the first maximum, or the first NaN): ``pool``'s
    exact row on the plane's (Ho, Wo) part, whose flat indices are then the (Ho, Wo) ones."""
    plane, yp, ap = z4[o, t, :, :wo], y[n, o], am[n, o]
    for q in range(yp.shape[0]):
        pool.maxpool_row_exact(plane, 2, 2, 2, 2, q, yp[q], ap[q])


@njit(**NJIT)
def _columns(x, s0, m, kh, kw, ph, pw, sl, xp, cols):
    for t in range(m):
        im2col.pad_one(x[s0 + t], ph, pw, xp)
        im2col.im2col_wide_one(xp, kh, kw, sl, cols, t * sl)


@njit(**NJIT)
def _forward_part(x, W2, b, kh, kw, ph, pw, ho, wo, y, am, nb, lo, hi):
    o_n, k_n = W2.shape
    wp = x.shape[3] + 2 * pw
    sl = ho * wp
    xp = np.zeros((x.shape[1], x.shape[2] + 2 * ph + 1, wp), x.dtype)
    cols = np.empty((k_n, nb * sl), x.dtype)
    z = np.empty((o_n, nb * sl), x.dtype)
    z4 = z.reshape(o_n, nb, ho, wp)
    nans = np.zeros((o_n, nb), np.bool_)
    for s0 in range(lo, hi, nb):
        m = min(nb, hi - s0)
        _columns(x, s0, m, kh, kw, ph, pw, sl, xp, cols)
        blas.gemm(W2, cols[:, : m * sl], z[:, : m * sl], 0.0)
        _bias_relu(z, b, m, sl, nans)
        for t in range(m):
            for o in range(o_n):
                _pool_plane(z4, o, t, wo, y, am, s0 + t)
                if nans[o, t]:  # the selects ignore NaN: redo the plane with the exact rule
                    _pool_plane_exact(z4, o, t, wo, y, am, s0 + t)


@njit(**NJIT)
def _forward(x, W2, b, kh, kw, ph, pw, ho, wo, y, am, nb, parts):
    for p in range(parts):
        lo, hi = part_bounds(x.shape[0], nb, parts, p)
        _forward_part(x, W2, b, kh, kw, ph, pw, ho, wo, y, am, nb, lo, hi)


@njit(**NJIT_PARALLEL)
def _forward_parallel(x, W2, b, kh, kw, ph, pw, ho, wo, y, am, nb, parts):
    for p in prange(parts):
        lo, hi = part_bounds(x.shape[0], nb, parts, p)
        before = blas.threads_local(1)
        _forward_part(x, W2, b, kh, kw, ph, pw, ho, wo, y, am, nb, lo, hi)
        blas.threads_local(before)


@njit(**NJIT)
def _scatter(dz4, t, an, values, wo):
    """dz4[o, t] at each window's argmax an[o, q, p] (a flat (Ho, Wo) index) <- values[o, q, p].
    The index's place in its window (0, 1, Wo or Wo + 1) gives its row and column without a
    division (one per element took 2.5x the backward's time on mnist_convnet's first layer)."""
    for o in range(an.shape[0]):
        for q in range(an.shape[1]):
            for p in range(an.shape[2]):
                a = an[o, q, p] - (2 * q * wo + 2 * p)
                down = a >= wo
                dz4[o, t, 2 * q + (1 if down else 0), 2 * p + (a - wo if down else a)] = values[o, q, p]


@njit(**NJIT)
def _backward_part(x, W2, y, am, gy, kh, kw, ph, pw, ho, wo, nb, lo, hi, dWtp, dbp, dx):
    o_n, k_n = W2.shape
    hw = y.shape[2] * y.shape[3]
    wp = x.shape[3] + 2 * pw
    sl = ho * wp
    xp = np.zeros((x.shape[1], x.shape[2] + 2 * ph + 1, wp), x.dtype)
    want_dx = dx.shape[0] != 0  # a zero-length dx: none wanted
    dxp = np.zeros((x.shape[1], x.shape[2] + 2 * ph + 1, wp if want_dx else 0), x.dtype)
    cols = np.empty((k_n, nb * sl), x.dtype)
    dz = np.zeros((o_n, nb * sl), x.dtype)
    dz4 = dz.reshape(o_n, nb, ho, wp)
    dcols = np.empty((k_n, nb * sl if want_dx else 0), x.dtype)
    dpool = np.empty((o_n, hw), x.dtype)
    dpool3 = dpool.reshape(o_n, y.shape[2], y.shape[3])
    zeros = np.zeros((o_n, y.shape[2], y.shape[3]), x.dtype)
    one, zero = x.dtype.type(1), x.dtype.type(0)
    for s0 in range(lo, hi, nb):
        m = min(nb, hi - s0)
        _columns(x, s0, m, kh, kw, ph, pw, sl, xp, cols)
        for t in range(m):
            n = s0 + t
            yn, gn = y[n].reshape(o_n, hw), gy[n].reshape(o_n, hw)
            for o in range(o_n):
                for u in range(hw):  # the ReLU's derivative at each argmax, from the pooled value
                    dpool[o, u] = dense.d_relu(yn[o, u], gn[o, u], one, zero)
                dbp[o] += vector_sum(dpool[o])
            _scatter(dz4, t, am[n], dpool3, wo)
        blas.gemm(cols[:, : m * sl], dz[:, : m * sl].T, dWtp, 1.0)  # transposed, as conv sums it
        if want_dx:
            blas.gemm(W2.T, dz[:, : m * sl], dcols[:, : m * sl], 0.0)
            for t in range(m):
                im2col.col2im_wide_one(dcols, kh, kw, sl, dxp, t * sl)
                im2col.crop_one(dxp, ph, pw, dx[s0 + t])
        for t in range(m):  # back to zeros for the next block: only the argmax were written
            _scatter(dz4, t, am[s0 + t], zeros, wo)


@njit(**NJIT)
def _backward(x, W2, y, am, gy, kh, kw, ph, pw, ho, wo, dW2, beta, db, dx, nb, parts):
    dWtp = np.zeros((parts, W2.shape[1], W2.shape[0]), x.dtype)
    dbp = np.zeros((parts, W2.shape[0]), x.dtype)
    for p in range(parts):
        lo, hi = part_bounds(x.shape[0], nb, parts, p)
        _backward_part(x, W2, y, am, gy, kh, kw, ph, pw, ho, wo, nb, lo, hi, dWtp[p], dbp[p], dx)
    finish_backward(dWtp, dbp, dW2, beta, db)  # conv's: part order, transposed, beta


@njit(**NJIT_PARALLEL)
def _backward_parallel(x, W2, y, am, gy, kh, kw, ph, pw, ho, wo, dW2, beta, db, dx, nb, parts):
    dWtp = np.zeros((parts, W2.shape[1], W2.shape[0]), x.dtype)
    dbp = np.zeros((parts, W2.shape[0]), x.dtype)
    for p in prange(parts):
        lo, hi = part_bounds(x.shape[0], nb, parts, p)
        before = blas.threads_local(1)
        _backward_part(x, W2, y, am, gy, kh, kw, ph, pw, ho, wo, nb, lo, hi, dWtp[p], dbp[p], dx)
        blas.threads_local(before)
    finish_backward(dWtp, dbp, dW2, beta, db)  # conv's: part order, transposed, beta


def _blocks(x, W, ho, wp):
    """(nb, parts): samples per block, as many as have their columns and their output (K + O rows
    of Ho Wp) within ``conv.BLOCK_BYTES`` (measured on mnist_convnet, one thread: 2 samples for the
    first layer, 1 for the 32 -> 64 one, the fastest of 1-8 both ways), and the parts."""
    rows = x.shape[1] * W.shape[2] * W.shape[3] + W.shape[0]
    nb = conv.block_samples(rows, ho * wp, x.itemsize, x.shape[0])
    return nb, conv.parts_of(x.shape[0], nb)


def _check(x, W, y, argmax, ph, pw):
    if x.ndim != 4 or W.ndim != 4 or x.shape[1] != W.shape[1]:
        raise ValueError("conv_relu_pool: x must be (N, C, H, W) and W (O, C, kh, kw) with the same C")
    ho, wo = _conv_size(x, W, ph, pw)
    shape = (x.shape[0], W.shape[0], ho // 2, wo // 2)
    if y.shape != shape or argmax.shape != shape:
        raise ValueError(f"conv_relu_pool: y and argmax must have shape {shape}, got {y.shape} and {argmax.shape}")
    if not (x.flags.c_contiguous and y.flags.c_contiguous and argmax.flags.c_contiguous):
        raise ValueError("conv_relu_pool: x, y and argmax must be C-contiguous")
    return np.ascontiguousarray(W).reshape(W.shape[0], -1), ho, wo


def _on_threads(size):
    return blas.LOCAL_THREADS and parallel.use_parallel(size)


@blas.on_one_thread_unless_mkl
def conv_relu_pool_forward_numba(x, W, b, ph, pw, y, argmax, on_threads=None):
    """numba twin of ``conv_relu_pool_forward_numpy`` (see the module docstring). ``on_threads``:
    the parts on numba's threads (True), on this one (False), or decide (None). Without a GEMM
    numba can call, the NumPy kernel."""
    if not blas.AVAILABLE:
        return conv_relu_pool_forward_numpy(x, W, b, ph, pw, y, argmax)
    W2, ho, wo = _check(x, W, y, argmax, ph, pw)
    threads = _on_threads(4 * y.size) if on_threads is None else on_threads
    kernel = _forward_parallel if threads else _forward
    nb, parts = _blocks(x, W, ho, x.shape[3] + 2 * pw)
    # read-only x, an empty array for no b: one compiled variant for data and a layer's output, with
    # a bias or without
    x, b = read_only(x), none_as_empty(b, (0,), y.dtype)
    kernel(x, W2, b, W.shape[2], W.shape[3], ph, pw, ho, wo, y, argmax, nb, parts)
    return y


@blas.on_one_thread_unless_mkl
def conv_relu_pool_backward_numba(x, W, y, argmax, gy, dW, beta, db, ph, pw, dx, on_threads=None):
    """numba twin of ``conv_relu_pool_backward_numpy``."""
    if not blas.AVAILABLE:
        return conv_relu_pool_backward_numpy(x, W, y, argmax, gy, dW, beta, db, ph, pw, dx)
    W2, ho, wo = _check(x, W, y, argmax, ph, pw)
    if gy.shape != y.shape or dW.shape != W.shape or not dW.flags.c_contiguous:
        raise ValueError("conv_relu_pool: gy must have y's shape, dW be C-contiguous of W's shape")
    if dx is not None and (dx.shape != x.shape or not dx.flags.c_contiguous):
        raise ValueError("conv_relu_pool: dx must be C-contiguous of x's shape")
    gy = np.ascontiguousarray(gy)
    threads = _on_threads(4 * y.size) if on_threads is None else on_threads
    kernel = _backward_parallel if threads else _backward
    dW2 = dW.reshape(W2.shape)
    nb, parts = _blocks(x, W, ho, x.shape[3] + 2 * pw)
    x, db1, dx1 = read_only(x), none_as_empty(db, (0,), y.dtype), none_as_empty(dx, (0,) + x.shape[1:], y.dtype)
    kernel(x, W2, y, argmax, gy, W.shape[2], W.shape[3], ph, pw, ho, wo, dW2, float(beta), db1, dx1, nb, parts)
    return dx


# The table (see kernels/registry.py) and the warm-up: what Sequential hands over (an input,
# data or a layer's output, as a read-only view; int32 argmax, with and without bias and dx), float32
# with and without the threads, float64 serially (the gradient checks).
from .registry import kernel, warmup_case  # noqa: E402

kernel("conv_relu_pool_forward", conv_relu_pool_forward_numpy, conv_relu_pool_forward_numba)
kernel("conv_relu_pool_backward", conv_relu_pool_backward_numpy, conv_relu_pool_backward_numba)


@warmup_case
def _warm_up(dtype):
    x = np.linspace(-1.0, 1.0, 2 * 6 * 5, dtype=dtype).reshape(2, 1, 6, 5)  # reaches the kernels read-only
    W, b = np.linspace(-1.0, 1.0, 2 * 9, dtype=dtype).reshape(2, 1, 3, 3), np.zeros(2, dtype)
    for on in (False, True) if dtype == np.float32 else (False,):
        for bias in (b, None):
            y, am = np.empty((2, 2, 3, 1), dtype), np.empty((2, 2, 3, 1), np.int32)
            conv_relu_pool_forward_numba(x, W, bias, 1, 0, y, am, on_threads=on)
            for dx in (np.empty_like(x), None):
                db = None if bias is None else b.copy()
                conv_relu_pool_backward_numba(x, W, y, am, y, np.empty_like(W), 0.0, db, 1, 0, dx, on_threads=on)
