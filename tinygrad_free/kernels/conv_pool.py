"""A convolution with few taps (C_in kh kw <= ``DIRECT_TAPS``: an image network's first layer),
its ReLU and a 2 x 2 max pooling of stride 2 in one kernel: the ``Conv2D(relu) -> MaxPool2D(2)``
of the VGG-style convnets (Keras's mnist_convnet), which ``nn.Sequential`` runs through it.

Why: that convolution's output is the network's largest activation (batch 128, 32 x 26 x 26
floats: 11 MB), and apart it goes through memory six times: written by the convolution, read by
the pooling; the pooling's gradient written at full size (zeros but at the argmax), then read
with the output again by the convolution's backward, which writes dz. Fused, one sample's
convolution output (O x Ho Wo, 86 KB) is made in a scratch that stays in cache; the pooling
reads it there, and only the pooled quarter and its argmax leave. Measured on mnist_convnet's
first block (batch 128, float32, one thread, Intel Xeon): the convolution's and the pooling's
forward and backward took 1.15 + 0.85 + 0.82 + 2.58 ms apart (see ``benchmarks/results/
convnet.md`` for the epoch).

Forward, per sample: its compact columns (``im2col_one``, K = C kh kw rows), z = W2 @ cols by
the GEMM as ``conv`` does it, relu(z + b) in place, then y = the maximum over each window and
argmax = that maximum's flat index in the (Ho, Wo) plane, as ``MaxPool2D`` keeps it: ties go to
the first in row-major window order, the first NaN wins. A plane is pooled by selects that ignore
NaN and redone by the exact loop only if the ReLU's pass saw a NaN in it, as ``pool`` does.

Backward, per sample: dz is zero except at each window's argmax, where it is gy * (y > 0): the
ReLU's derivative from the pooled value, which is relu(z) there (``dense.d_relu``: a NaN or inf
gradient stays NaN). Then dW^T += cols dz^T, db += the sums of dz and dx = col2im(W2^T dz), the
products of ``conv``'s backward on the same columns.

Samples are cut into ``parts_of(N)`` parts, a function of the batch alone; each part sums its
own dW and db, added in part order, so one thread or several give the same bits.

The NumPy twins compose ``conv``'s and ``pool``'s NumPy kernels; the backward rebuilds the
full-size gradient and a full-size y holding the pooled value at each argmax (zero elsewhere,
where the gradient is zero too). The two agree to rounding. The caller (``nn.Sequential``)
fuses only finite inputs and weights: with an inf in x, the unfused GEMM's 0 * inf puts NaN in
dW, and the fused kernel, which never multiplies the zeros, would not.
"""

import numpy as np

from . import blas, conv, dense, im2col, parallel, pool
from ._nb import NJIT, njit
from .dense_parts import bounds
from .parallel import NJIT_PARALLEL, prange

NJIT_SUMS = dict(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
#: At most this many taps per output (C_in x kh x kw) are fused: an RGB 3 x 3 convolution is 27.
#: Beyond that the convolution is the GEMM's work, and ``conv``'s blocked kernels run it.
DIRECT_TAPS = 27
#: Parts of the batch (fewer for smaller batches): a function of nothing but the batch size.
PARTS = 4


def fusable(c_in, kh, kw):
    """Whether a stride-1 convolution with these taps is fused with its ReLU and pooling."""
    return c_in * kh * kw <= DIRECT_TAPS


def parts_of(n):
    """How many parts a batch of ``n`` samples is cut into."""
    return int(max(1, min(PARTS, n)))


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
@njit(**NJIT)
def _bias_relu(z, b, nans):
    """z (O, L) <- relu(z + b[:, None]) in place, as conv's epilogue (NaN stays NaN), and nans[o]
    <- whether channel o holds a NaN: one contiguous pass that vectorises, so the pooling's
    selects below carry neither the ReLU nor a NaN test."""
    zero = z.dtype.type(0)
    for o in range(z.shape[0]):
        bo = zero if b is None else b[o]
        row = z[o]
        nan = False
        for t in range(row.shape[0]):
            v = row[t] + bo if b is not None else row[t]
            nan |= v != v
            row[t] = zero if v < zero else v
        nans[o] = nan


@njit(**NJIT)
def _pool_plane(z3, o, y, am, n):
    """y[n, o], am[n, o] (Hp, Wp) <- the 2 x 2 maxima of channel o of z3 (O, Ho, Wo) and their
    flat indices, by selects that ignore NaN (the arrays indexed whole, as ``pool``'s fast plane:
    measured on mnist_convnet's first layer, 0.6x the time of flat indexing into (O, Ho Wo))."""
    wo = z3.shape[2]
    for q in range(y.shape[2]):
        r = 2 * q
        base = r * wo
        for p in range(y.shape[3]):
            a, c = z3[o, r, 2 * p], z3[o, r, 2 * p + 1]
            d, e = z3[o, r + 1, 2 * p], z3[o, r + 1, 2 * p + 1]
            m, k = a, 0
            t = c > m
            m = c if t else m
            k = 1 if t else k
            t = d > m
            m = d if t else m
            k = wo if t else k
            t = e > m
            m = e if t else m
            k = wo + 1 if t else k
            y[n, o, q, p] = m
            am[n, o, q, p] = base + 2 * p + k


@njit(**NJIT)
def _pool_plane_exact(z, o, wo, y, am, n):
    """``_pool_plane`` with NumPy's argmax rule: the first maximum, or the first NaN."""
    for q in range(y.shape[2]):
        for p in range(y.shape[3]):
            m, k = z[o, 2 * q * wo + 2 * p], 2 * q * wo + 2 * p
            for at in (2 * q * wo + 2 * p + 1, (2 * q + 1) * wo + 2 * p, (2 * q + 1) * wo + 2 * p + 1):
                if m != m:
                    break
                v = z[o, at]
                if v != v or v > m:
                    m, k = v, at
            y[n, o, q, p] = m
            am[n, o, q, p] = k


@njit(**NJIT)
def _forward_part(x, W2, b, kh, kw, ph, pw, ho, wo, y, am, lo, hi):
    o_n, k_n = W2.shape
    cols = np.empty((k_n, ho * wo), x.dtype)
    z = np.empty((o_n, ho * wo), x.dtype)
    z3 = z.reshape(o_n, ho, wo)
    nans = np.zeros(o_n, np.bool_)
    for n in range(lo, hi):
        im2col.im2col_one(x[n], kh, kw, 1, 1, ph, pw, ho, wo, cols, 0)
        blas.gemm(W2, cols, z, 0.0)
        _bias_relu(z, b, nans)
        for o in range(o_n):
            _pool_plane(z3, o, y, am, n)
            if nans[o]:  # the selects ignore NaN: redo the plane with the exact rule
                _pool_plane_exact(z, o, wo, y, am, n)


@njit(**NJIT)
def _forward(x, W2, b, kh, kw, ph, pw, ho, wo, y, am, parts):
    for p in range(parts):
        lo, hi = bounds(x.shape[0], parts, p)
        _forward_part(x, W2, b, kh, kw, ph, pw, ho, wo, y, am, lo, hi)


@njit(**NJIT_PARALLEL)
def _forward_parallel(x, W2, b, kh, kw, ph, pw, ho, wo, y, am, parts):
    for p in prange(parts):
        lo, hi = bounds(x.shape[0], parts, p)
        before = blas.threads_local(1)
        _forward_part(x, W2, b, kh, kw, ph, pw, ho, wo, y, am, lo, hi)
        blas.threads_local(before)


@njit(**NJIT_SUMS)
def _sum(a):
    """The sum of a 1-D array, reassociated so that it vectorises (the bias gradient's order)."""
    s = a.dtype.type(0)
    for t in range(a.shape[0]):
        s += a[t]
    return s


@njit(**NJIT)
def _backward_part(x, W2, y, am, gy, kh, kw, ph, pw, ho, wo, dWtp, dbp, dx, lo, hi):
    o_n, k_n = W2.shape
    hw = y.shape[2] * y.shape[3]
    cols = np.empty((k_n, ho * wo), x.dtype)
    dz = np.zeros((o_n, ho * wo), x.dtype)
    dpool = np.empty((o_n, hw), x.dtype)
    dcols = np.empty((k_n, ho * wo if dx is not None else 0), x.dtype)
    one, zero = x.dtype.type(1), x.dtype.type(0)
    for n in range(lo, hi):
        yn, gn, an = y[n].reshape(o_n, hw), gy[n].reshape(o_n, hw), am[n].reshape(o_n, hw)
        for o in range(o_n):
            for t in range(hw):  # the ReLU's derivative at each argmax, from the pooled value
                dpool[o, t] = dense.d_relu(yn[o, t], gn[o, t], one, zero)
            dbp[o] += _sum(dpool[o])
            for t in range(hw):
                dz[o, an[o, t]] = dpool[o, t]
        im2col.im2col_one(x[n], kh, kw, 1, 1, ph, pw, ho, wo, cols, 0)
        blas.gemm(cols, dz.T, dWtp, 1.0)  # transposed, as conv sums it: 3x faster at K = 9
        if dx is not None:
            blas.gemm(W2.T, dz, dcols, 0.0)
            im2col.col2im_one(dcols, kh, kw, 1, 1, ph, pw, ho, wo, dx[n], 0)
        for o in range(o_n):  # back to zeros for the next sample: only the argmax were written
            for t in range(hw):
                dz[o, an[o, t]] = zero


@njit(**NJIT)
def _combine(dWtp, dbp, dW2, beta, db):
    """dW2 <- the parts' transposed sums added in part order (+ dW2 when beta is 1); db += theirs."""
    parts, k_n, o_n = dWtp.shape
    for o in range(o_n):
        for k in range(k_n):
            s = dWtp[0, k, o]
            for p in range(1, parts):
                s += dWtp[p, k, o]
            dW2[o, k] = s if beta == 0 else dW2[o, k] + s  # beta 0: old values (even NaN) ignored
    if db is not None:
        for o in range(o_n):
            s = dbp[0, o]
            for p in range(1, parts):
                s += dbp[p, o]
            db[o] += s


@njit(**NJIT)
def _backward(x, W2, y, am, gy, kh, kw, ph, pw, ho, wo, dW2, beta, db, dx, parts):
    dWtp = np.zeros((parts, W2.shape[1], W2.shape[0]), x.dtype)
    dbp = np.zeros((parts, W2.shape[0]), x.dtype)
    for p in range(parts):
        lo, hi = bounds(x.shape[0], parts, p)
        _backward_part(x, W2, y, am, gy, kh, kw, ph, pw, ho, wo, dWtp[p], dbp[p], dx, lo, hi)
    _combine(dWtp, dbp, dW2, beta, db)


@njit(**NJIT_PARALLEL)
def _backward_parallel(x, W2, y, am, gy, kh, kw, ph, pw, ho, wo, dW2, beta, db, dx, parts):
    dWtp = np.zeros((parts, W2.shape[1], W2.shape[0]), x.dtype)
    dbp = np.zeros((parts, W2.shape[0]), x.dtype)
    for p in prange(parts):
        lo, hi = bounds(x.shape[0], parts, p)
        before = blas.threads_local(1)
        _backward_part(x, W2, y, am, gy, kh, kw, ph, pw, ho, wo, dWtp[p], dbp[p], dx, lo, hi)
        blas.threads_local(before)
    _combine(dWtp, dbp, dW2, beta, db)


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
    kernel(x, W2, b, W.shape[2], W.shape[3], ph, pw, ho, wo, y, argmax, parts_of(x.shape[0]))
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
    args = (W.shape[2], W.shape[3], ph, pw, ho, wo, dW2, float(beta), db, dx, parts_of(x.shape[0]))
    kernel(x, W2, y, argmax, gy, *args)
    return dx


# The table (see kernels/registry.py) and the warm-up: what Sequential hands over (an input that
# is data or a layer's read-only output, int32 argmax, with and without bias and dx), float32
# with and without the threads, float64 serially (the gradient checks).
from .registry import kernel, warmup_case  # noqa: E402

kernel("conv_relu_pool_forward", conv_relu_pool_forward_numpy, conv_relu_pool_forward_numba)
kernel("conv_relu_pool_backward", conv_relu_pool_backward_numpy, conv_relu_pool_backward_numba)


@warmup_case
def _warm_up(dtype):
    x = np.linspace(-1.0, 1.0, 2 * 6 * 5, dtype=dtype).reshape(2, 1, 6, 5)
    x_readonly = x.view()
    x_readonly.flags.writeable = False
    W, b = np.linspace(-1.0, 1.0, 2 * 9, dtype=dtype).reshape(2, 1, 3, 3), np.zeros(2, dtype)
    for on in (False, True) if dtype == np.float32 else (False,):
        for xin in (x, x_readonly):
            for bias in (b, None):
                y, am = np.empty((2, 2, 3, 1), dtype), np.empty((2, 2, 3, 1), np.int32)
                conv_relu_pool_forward_numba(xin, W, bias, 1, 0, y, am, on_threads=on)
                for dx in (np.empty_like(x), None):
                    db = None if bias is None else b.copy()
                    conv_relu_pool_backward_numba(xin, W, y, am, y, np.empty_like(W), 0.0, db, 1, 0, dx, on_threads=on)
