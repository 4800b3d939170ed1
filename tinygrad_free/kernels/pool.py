"""Pooling kernels (NCHW, no padding, floor output size as PyTorch's default):
max pooling that records the argmax, average pooling, global average pooling; forward and backward.

Ho = (H - kh) // sh + 1 and Wo = (W - kw) // sw + 1.

* max:  y[n,c,oh,ow] = max over the window at (oh*sh, ow*sw); ``argmax`` holds the index
  h * W + w of that maximum inside the (H, W) plane, as PyTorch's ``return_indices``. Ties go to
  the first element in row-major window order; a NaN in the window wins (the first NaN), so NaN
  propagates as in PyTorch. Backward adds gy into dx at the recorded index (windows may overlap
  when the stride is smaller than the kernel, so contributions are summed).
* average: y = window mean; backward spreads gy / (kh kw) over the window.
* global average: y[n, c] = mean over (H, W); backward spreads gy / (H W).

The numba twins equal the NumPy kernels bit for bit except where NumPy's mean sums in another
order (average pooling forward, global average forward): there they agree to rounding.

numba max pooling, 2x2 windows with column stride 2 (the convnets' pooling): each plane is first
computed by a loop of selects with no NaN test in the comparison chain, which LLVM
vectorises, and only a plane that saw a NaN is redone by the exact loop. On the exact loop alone
the comparisons' branches mispredict on real activations: on Keras's mnist_convnet at batch 128
(float32, one thread) the forward took 6.6x (32 x 26 x 26 planes) and 4.6x (64 x 11 x 11) the
time it takes now. The backward adds into dx's planes viewed as flat rows, at the recorded flat
index, instead of dividing it into (h, w) per element: 2.4x faster at those shapes. With more
than one numba thread (``parallel.threaded``) max pooling shares out whole samples.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import parallel
from ._nb import NJIT, njit
from .parallel import NJIT_PARALLEL, prange


def _windows(x, kh, kw, sh, sw):
    """(N, C, Ho, Wo, kh, kw) read-only view of the pooling windows of x."""
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


def _out(x, kh, kw, sh, sw):
    return (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1


# --- NumPy ---------------------------------------------------------------------------------------
def maxpool2d_forward_numpy(x, kh, kw, sh, sw, y, argmax):
    """y <- window maxima of x; argmax (integers, y's shape) <- their flat index in the (H, W) plane."""
    win = _windows(x, kh, kw, sh, sw)
    n, c, ho, wo = win.shape[:4]
    flat = win.reshape(n, c, ho, wo, kh * kw)
    k = np.argmax(flat, axis=-1)  # first max; first NaN wins
    y[...] = np.take_along_axis(flat, k[..., None], axis=-1)[..., 0]
    i, j = np.divmod(k, kw)
    argmax[...] = (np.arange(ho)[:, None] * sh + i) * x.shape[3] + np.arange(wo) * sw + j
    return y


def maxpool2d_backward_numpy(gy, argmax, dx):
    """dx <- zeros, then dx[n, c].flat[argmax[n, c, ...]] += gy[n, c, ...]. Returns dx."""
    n, c, h, w = dx.shape
    out = np.zeros((n * c, h * w), dx.dtype)
    rows = np.repeat(np.arange(n * c), argmax[0, 0].size) if argmax.size else np.zeros(0, np.intp)
    np.add.at(out, (rows, argmax.reshape(-1)), gy.reshape(-1))
    dx[...] = out.reshape(dx.shape)
    return dx


def avgpool2d_forward_numpy(x, kh, kw, sh, sw, y):
    """y <- window means of x (the sum in row-major window order, divided by kh kw)."""
    win = _windows(x, kh, kw, sh, sw)
    y[...] = win.reshape(*win.shape[:4], kh * kw).sum(axis=-1) / (kh * kw)
    return y


def avgpool2d_backward_numpy(gy, kh, kw, sh, sw, dx):
    """dx <- each gy / (kh kw) added over its window. Returns dx."""
    ho, wo = gy.shape[2], gy.shape[3]
    g = gy / gy.dtype.type(kh * kw)
    dx[...] = 0
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw] += g
    return dx


def global_avgpool2d_forward_numpy(x, y):
    """y (N, C) <- mean of x (N, C, H, W) over H and W."""
    np.mean(x, axis=(2, 3), out=y)
    return y


def global_avgpool2d_backward_numpy(gy, dx):
    """dx (N, C, H, W) <- gy[n, c] / (H W) everywhere."""
    dx[...] = (gy / gy.dtype.type(dx.shape[2] * dx.shape[3]))[:, :, None, None]
    return dx


# --- numba ---------------------------------------------------------------------------------------
@njit(**NJIT)
def _check(x, kh, kw, sh, sw, y):
    ho, wo = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    if kh <= 0 or kw <= 0 or sh <= 0 or sw <= 0 or ho <= 0 or wo <= 0:
        raise ValueError("pool2d: kernel and stride must be positive and the kernel no larger than the input")
    if y.shape[0] != x.shape[0] or y.shape[1] != x.shape[1] or y.shape[2] != ho or y.shape[3] != wo:
        raise ValueError("pool2d: the output must have shape (N, C, Ho, Wo)")


@njit(**NJIT)
def maxpool_row_exact(xs, kh, kw, sh, sw, oh, yr, ar):
    """One output row of one plane, NaN rule included (see the module docstring)."""
    w = xs.shape[1]
    h0 = oh * sh
    for ow in range(yr.shape[0]):
        w0 = ow * sw
        best = xs[h0, w0]
        at = h0 * w + w0
        for i in range(kh):
            for j in range(kw):
                v = xs[h0 + i, w0 + j]
                if v > best or (v != v and best == best):  # first NaN wins
                    best = v
                    at = (h0 + i) * w + w0 + j
        yr[ow] = best
        ar[ow] = at


@njit(**NJIT)
def max4(a, b, c, d, w):
    """(maximum, its offset) of the 2 x 2 window (a, b / c, d) with offsets 0, 1, w and w + 1: the
    first maximum in that order, by straight-line selects that ignore NaN (the callers redo a
    plane that held one)."""
    best, k = a, 0
    t = b > best
    best = b if t else best
    k = 1 if t else k
    t = c > best
    best = c if t else best
    k = w if t else k
    t = d > best
    best = d if t else best
    k = w + 1 if t else k
    return best, k


@njit(**NJIT)
def _maxpool_plane_2x2(x, s, ch, sh, y, argmax):
    """Plane (s, ch) of a 2x2, column-stride-2 pooling, ignoring NaN; returns whether the plane
    saw a NaN. Straight-line selects (no NaN test in the chain) let LLVM vectorise the loop:
    about 8x faster than the exact loop on random data, where the exact loop's branches
    mispredict. The arrays are indexed whole, with no view per plane or row: on Keras's
    mnist_convnet views and a call per row took 1.9x (32 x 26 x 26 planes) and 3.8x (64 x 11 x 11)
    the time, a view per plane 1.2x and 1.6x."""
    w = x.shape[3]
    nan = False
    for oh in range(y.shape[2]):
        r = oh * sh
        base = r * w
        for ow in range(y.shape[3]):
            a, b = x[s, ch, r, 2 * ow], x[s, ch, r, 2 * ow + 1]
            c, d = x[s, ch, r + 1, 2 * ow], x[s, ch, r + 1, 2 * ow + 1]
            nan |= (a != a) | (b != b) | (c != c) | (d != d)
            best, k = max4(a, b, c, d, w)
            y[s, ch, oh, ow] = best
            argmax[s, ch, oh, ow] = base + 2 * ow + k
    return nan


@njit(**NJIT)
def _maxpool_sample(x, s, kh, kw, sh, sw, y, argmax):
    """Every plane of sample s: x[s] (C, H, W) -> y[s], argmax[s] (C, Ho, Wo)."""
    fast = kh == 2 and kw == 2 and sw == 2
    for ch in range(x.shape[1]):
        # The fast plane gives the exact result unless it saw a NaN; then redo the plane.
        if not fast or _maxpool_plane_2x2(x, s, ch, sh, y, argmax):
            xp, yp, ap = x[s, ch], y[s, ch], argmax[s, ch]
            for oh in range(yp.shape[0]):
                maxpool_row_exact(xp, kh, kw, sh, sw, oh, yp[oh], ap[oh])


@njit(**NJIT)
def _maxpool_forward(x, kh, kw, sh, sw, y, argmax):
    _check(x, kh, kw, sh, sw, y)
    for s in range(x.shape[0]):
        _maxpool_sample(x, s, kh, kw, sh, sw, y, argmax)


@njit(**NJIT_PARALLEL)
def maxpool_forward_parallel(x, kh, kw, sh, sw, y, argmax):
    _check(x, kh, kw, sh, sw, y)
    for s in prange(x.shape[0]):
        _maxpool_sample(x, s, kh, kw, sh, sw, y, argmax)


@njit(**NJIT)
def _check_backward(gy, argmax, dx):
    n, c, h, w = dx.shape
    if gy.shape != argmax.shape or gy.shape[0] != n or gy.shape[1] != c:
        raise ValueError("maxpool2d_backward: gy and argmax must have shape (N, C, Ho, Wo) of dx's N and C")
    # dx's planes as flat rows: argmax is already the flat index (no division per element).
    return dx.reshape(n, c, h * w)


@njit(**NJIT)
def _maxpool_backward_sample(gs, ars, d2):
    """One sample: d2 (C, H W) <- 0, then gy added at each recorded flat index."""
    d2[...] = 0
    for ch in range(gs.shape[0]):
        d = d2[ch]
        for oh in range(gs.shape[1]):
            for ow in range(gs.shape[2]):
                d[ars[ch, oh, ow]] += gs[ch, oh, ow]


@njit(**NJIT)
def _maxpool_backward(gy, argmax, dx):
    dx3 = _check_backward(gy, argmax, dx)
    for s in range(gy.shape[0]):
        _maxpool_backward_sample(gy[s], argmax[s], dx3[s])


@njit(**NJIT_PARALLEL)
def maxpool_backward_parallel(gy, argmax, dx):
    dx3 = _check_backward(gy, argmax, dx)
    for s in prange(gy.shape[0]):
        _maxpool_backward_sample(gy[s], argmax[s], dx3[s])


# Samples are independent, so on several threads each takes whole samples: the same arithmetic
# in the same order, bit for bit the serial kernels' result.
_maxpool_forward_k = parallel.threaded(_maxpool_forward, maxpool_forward_parallel)
_maxpool_backward_k = parallel.threaded(_maxpool_backward, maxpool_backward_parallel)


@njit(**NJIT)
def _avgpool_forward(x, kh, kw, sh, sw, y):
    _check(x, kh, kw, sh, sw, y)
    n, c = x.shape[0], x.shape[1]
    area = y.dtype.type(kh * kw)
    for s in range(n):
        for ch in range(c):
            for oh in range(y.shape[2]):
                for ow in range(y.shape[3]):
                    t = y.dtype.type(0)
                    for i in range(kh):
                        for j in range(kw):
                            t += x[s, ch, oh * sh + i, ow * sw + j]
                    y[s, ch, oh, ow] = t / area


@njit(**NJIT)
def _avgpool_backward(gy, kh, kw, sh, sw, dx):
    _check(dx, kh, kw, sh, sw, gy)
    n, c = dx.shape[0], dx.shape[1]
    area = dx.dtype.type(kh * kw)
    dx[...] = 0
    # (i, j) outermost: each pixel receives its windows' shares in the NumPy kernel's order.
    for i in range(kh):
        for j in range(kw):
            for s in range(n):
                for ch in range(c):
                    for oh in range(gy.shape[2]):
                        for ow in range(gy.shape[3]):
                            dx[s, ch, oh * sh + i, ow * sw + j] += gy[s, ch, oh, ow] / area


@njit(**NJIT)
def _global_avg_forward(x, y):
    n, c, h, w = x.shape
    if y.shape[0] != n or y.shape[1] != c:
        raise ValueError("global_avgpool2d: the output must have shape (N, C)")
    area = y.dtype.type(h * w)
    for s in range(n):
        for ch in range(c):
            t = y.dtype.type(0)
            for i in range(h):
                for j in range(w):
                    t += x[s, ch, i, j]
            y[s, ch] = t / area


@njit(**NJIT)
def _global_avg_backward(gy, dx):
    n, c, h, w = dx.shape
    if gy.shape[0] != n or gy.shape[1] != c:
        raise ValueError("global_avgpool2d_backward: gy must have shape (N, C)")
    area = dx.dtype.type(h * w)
    for s in range(n):
        for ch in range(c):
            g = gy[s, ch] / area
            for i in range(h):
                for j in range(w):
                    dx[s, ch, i, j] = g


def maxpool2d_forward_numba(x, kh, kw, sh, sw, y, argmax):
    """numba twin of ``maxpool2d_forward_numpy`` (bit-identical, argmax included)."""
    _maxpool_forward_k(x, kh, kw, sh, sw, y, argmax)
    return y


def maxpool2d_backward_numba(gy, argmax, dx):
    """numba twin of ``maxpool2d_backward_numpy`` (bit-identical: contributions in the same order)."""
    if dx.flags.c_contiguous:
        _maxpool_backward_k(gy, argmax, dx)
    else:  # the kernel views dx's planes as flat rows
        out = np.empty(dx.shape, dx.dtype)
        _maxpool_backward_k(gy, argmax, out)
        dx[...] = out
    return dx


def avgpool2d_forward_numba(x, kh, kw, sh, sw, y):
    """numba twin of ``avgpool2d_forward_numpy``."""
    _avgpool_forward(x, kh, kw, sh, sw, y)
    return y


def avgpool2d_backward_numba(gy, kh, kw, sh, sw, dx):
    """numba twin of ``avgpool2d_backward_numpy`` (bit-identical)."""
    _avgpool_backward(gy, kh, kw, sh, sw, dx)
    return dx


def global_avgpool2d_forward_numba(x, y):
    """numba twin of ``global_avgpool2d_forward_numpy`` (agrees to rounding)."""
    _global_avg_forward(x, y)
    return y


def global_avgpool2d_backward_numba(gy, dx):
    """numba twin of ``global_avgpool2d_backward_numpy`` (bit-identical)."""
    _global_avg_backward(gy, dx)
    return dx


def argmax_dtype(h, w):
    """The integers a max pooling layer keeps its argmax in for (H, W) planes: int32 while a
    plane's flat index fits (any real image), else int64. Half the bytes of int64 to write
    in the forward and read in the backward: on mnist_convnet's first pooling (batch 128,
    32 x 26 x 26 planes) the argmax is 2.8 MB instead of 5.5."""
    return np.dtype(np.int32) if h * w <= np.iinfo(np.int32).max else np.dtype(np.int64)


# The table (see kernels/registry.py) and the warm-up: 4-D inputs, writable or read-only; the
# int32 argmax the pooling layer keeps (``argmax_dtype``); the threaded max pooling for float32.
from .registry import kernel, warmup_case  # noqa: E402

kernel("maxpool2d_forward", maxpool2d_forward_numpy, maxpool2d_forward_numba)
kernel("maxpool2d_backward", maxpool2d_backward_numpy, maxpool2d_backward_numba)
kernel("avgpool2d_forward", avgpool2d_forward_numpy, avgpool2d_forward_numba)
kernel("avgpool2d_backward", avgpool2d_backward_numpy, avgpool2d_backward_numba)
kernel("global_avgpool2d_forward", global_avgpool2d_forward_numpy, global_avgpool2d_forward_numba)
kernel("global_avgpool2d_backward", global_avgpool2d_backward_numpy, global_avgpool2d_backward_numba)


@warmup_case
def _warm_up(dtype):
    x = np.linspace(-1.0, 1.0, 2 * 2 * 5 * 5, dtype=dtype).reshape(2, 2, 5, 5)
    x_readonly = x.view()
    x_readonly.flags.writeable = False
    p = np.empty((2, 2, 2, 2), dtype)
    arg = np.empty(p.shape, argmax_dtype(5, 5))
    g = np.empty((2, 2), dtype)
    for xin in (x, x_readonly):
        maxpool2d_forward_numba(xin, 2, 2, 2, 2, p, arg)
        avgpool2d_forward_numba(xin, 2, 2, 2, 2, p)
        global_avgpool2d_forward_numba(xin, g)
    maxpool2d_backward_numba(p, arg, np.empty_like(x))
    avgpool2d_backward_numba(p, 2, 2, 2, 2, np.empty_like(x))
    global_avgpool2d_backward_numba(g, np.empty_like(x))
    if dtype == np.float32:
        maxpool_forward_parallel(x, 2, 2, 2, 2, p, arg)
        maxpool_backward_parallel(p, arg, np.empty_like(x))
