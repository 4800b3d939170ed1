"""im2col and col2im (NCHW), NumPy and numba: a convolution's input as columns, and back.

With K = C * kh * kw and L = Ho * Wo (Ho = (H + 2 ph - kh) // sh + 1, likewise Wo), sample n's
columns are a (K, L) matrix whose row ``(c * kh + i) * kw + j`` holds
x_padded[n, c, i + sh * oh, j + sw * ow] at column ``oh * Wo + ow`` (zero where the window covers
padding); ``im2col``/``col2im`` take the batch's as (N, K, L). col2im is im2col's adjoint: every
column entry is added into the input pixel it was copied from (entries from padding dropped).

The numba twins are bit-identical to the NumPy ones (col2im adds each input pixel's
contributions in the same (i, j) order). Their inner loops copy one output row between array
views, which LLVM vectorises; a per-element bounds test or offset arithmetic there made them
2-3x slower. ``conv`` calls the one-sample kernels on blocks of samples.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._nb import NJIT, njit


def out_size(size, kernel, stride, pad):
    """Output length along one axis: (size + 2 pad - kernel) // stride + 1 (PyTorch's formula)."""
    return (size + 2 * pad - kernel) // stride + 1


# --- NumPy ---------------------------------------------------------------------------------------
def im2col_numpy(x, kh, kw, sh, sw, ph, pw, cols):
    """cols (N, C*kh*kw, Ho*Wo) <- the (zero-padded) windows of x (N, C, H, W). Returns cols."""
    n, c, h, w = x.shape
    ho, wo = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # (N, C, Ho, Wo, kh, kw)
    cols.reshape(n, c, kh, kw, ho, wo)[...] = win.transpose(0, 1, 4, 5, 2, 3)
    return cols


def col2im_numpy(cols, kh, kw, sh, sw, ph, pw, dx):
    """dx (N, C, H, W) <- the sum of every column entry into the input pixel it was copied
    from (the adjoint of im2col; entries from padding are dropped). Overwrites dx, returns it."""
    n, c, h, w = dx.shape
    ho, wo = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    c6 = cols.reshape(n, c, kh, kw, ho, wo)
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dx.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw] += c6[:, :, i, j]
    dx[...] = dxp[:, :, ph : ph + h, pw : pw + w]
    return dx


# --- numba ---------------------------------------------------------------------------------------
# Padding is never materialised: im2col writes zeros where a window covers it and col2im skips
# those entries. A block's columns live in one C-contiguous (K, nb*L) array, sample t of the
# block at columns [t L, (t+1) L) (``off``); passing the whole block and an offset, rather than
# a slice, keeps the arrays' C layout, under which LLVM vectorises the copies.
@njit(**NJIT)
def _valid(j, pad, stride, size, n_out):
    """The output positions [lo, hi) whose input index o*stride - pad + j lies in [0, size)."""
    lo = 0 if j >= pad else (pad - j + stride - 1) // stride
    hi = (size - 1 + pad - j) // stride + 1 if size - 1 + pad - j >= 0 else 0
    return min(lo, n_out), max(min(hi, n_out), min(lo, n_out))


@njit(**NJIT)
def im2col_one(x, kh, kw, sh, sw, ph, pw, ho, wo, cols, off):
    """cols[:, off : off + L] <- the windows of one sample x (C, H, W)."""
    c_in, h, w = x.shape
    zero = cols.dtype.type(0)
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                lo, hi = _valid(j, pw, sw, w, wo)
                start = lo * sw + j - pw  # input column of output column lo
                for oh in range(ho):
                    hh = oh * sh - ph + i
                    dst = cols[row, off + oh * wo : off + (oh + 1) * wo]
                    if hh < 0 or hh >= h:
                        dst[:] = zero
                        continue
                    for q in range(lo):
                        dst[q] = zero
                    for q in range(hi, wo):
                        dst[q] = zero
                    d, src = dst[lo:hi], x[c, hh, start:]
                    if sw == 1:
                        for q in range(d.shape[0]):
                            d[q] = src[q]
                    else:
                        for q in range(d.shape[0]):
                            d[q] = src[q * sw]


@njit(**NJIT)
def col2im_one(cols, kh, kw, sh, sw, ph, pw, ho, wo, dx, off):
    """dx (C, H, W) <- col2im of one sample's columns cols[:, off : off + L]; overwrites dx.
    Each input pixel's contributions are added in (i, j) order, as in the NumPy kernel."""
    c_in, h, w = dx.shape
    dx[...] = 0
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                lo, hi = _valid(j, pw, sw, w, wo)
                start = lo * sw + j - pw
                for oh in range(ho):
                    hh = oh * sh - ph + i
                    if hh < 0 or hh >= h:
                        continue
                    src = cols[row, off + oh * wo + lo : off + oh * wo + hi]
                    d = dx[c, hh, start:]
                    if sw == 1:
                        for q in range(src.shape[0]):
                            d[q] += src[q]
                    else:
                        for q in range(src.shape[0]):
                            d[q * sw] += src[q]


# Wide columns, stride 1 (``conv`` takes them for every stride-1 layer). A sample is first
# copied into a padded scratch xp (C, Hp, Wp) whose border stays zero; its columns are then the
# Lw = (Ho - 1) Wp + Wo consecutive positions of each padded plane read flat, so row (c, i, j)
# is one contiguous copy, xp[c].flat[i Wp + j : i Wp + j + Lw], instead of Ho copies of Wo. Column
# oh Wp + ow is output (oh, ow) for ow < Wo; the Wp - Wo columns after each output row wrap into
# the next row: a GEMM computes them, and ``conv`` never reads them out (forward) and gives them
# a zero gradient (backward). On Keras's mnist_convnet (float32, one thread) the 32 -> 64
# layer's columns took 0.55 ms instead of 2.0 per batch of 128, col2im 0.6 instead of 2.0.
@njit(**NJIT)
def wide_span(ho, wo, wp):
    """Lw, the wide columns of one sample: (Ho - 1) Wp + Wo."""
    return (ho - 1) * wp + wo


@njit(**NJIT)
def pad_one(xs, ph, pw, xp):
    """xp[:, ph : ph + H, pw : pw + W] <- xs (C, H, W); xp's border is left as it is (zero)."""
    c_in, h, w = xs.shape
    for c in range(c_in):
        for hh in range(h):
            d, s = xp[c, ph + hh, pw : pw + w], xs[c, hh]
            for q in range(w):
                d[q] = s[q]


@njit(**NJIT)
def im2col_wide_one(xp, kh, kw, lw, cols, off):
    """cols[:, off : off + lw] <- the wide columns of one padded sample xp (C, Hp, Wp)."""
    c_in, wp = xp.shape[0], xp.shape[2]
    flat = xp.reshape(c_in, xp.shape[1] * wp)
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                src, dst = flat[c, i * wp + j : i * wp + j + lw], cols[(c * kh + i) * kw + j, off : off + lw]
                for q in range(lw):
                    dst[q] = src[q]


@njit(**NJIT)
def col2im_wide_one(dcols, kh, kw, lw, dxp, off):
    """dxp (C, Hp, Wp) <- every wide column entry of dcols[:, off : off + lw] added into the
    padded pixel it was copied from; overwrites dxp. Each pixel's contributions are added in
    (i, j) order, as in ``col2im_one``."""
    c_in, wp = dxp.shape[0], dxp.shape[2]
    dxp[...] = 0
    flat = dxp.reshape(c_in, dxp.shape[1] * wp)
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                src, dst = dcols[(c * kh + i) * kw + j, off : off + lw], flat[c, i * wp + j : i * wp + j + lw]
                for q in range(lw):
                    dst[q] += src[q]


@njit(**NJIT)
def crop_one(dxp, ph, pw, dxs):
    """dxs (C, H, W) <- dxp[:, ph : ph + H, pw : pw + W] (the gradient's padding dropped)."""
    c_in, h, w = dxs.shape
    for c in range(c_in):
        for hh in range(h):
            d, s = dxs[c, hh], dxp[c, ph + hh, pw : pw + w]
            for q in range(w):
                d[q] = s[q]


@njit(**NJIT)
def geometry(x, kh, kw, sh, sw, ph, pw):
    n, c, h, w = x.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ho <= 0 or wo <= 0 or sh <= 0 or sw <= 0 or ph < 0 or pw < 0:
        raise ValueError("conv2d: kernel larger than the padded input, or a non-positive stride")
    return ho, wo


@njit(**NJIT)
def _check_cols(x, kh, kw, sh, sw, ph, pw, cols):
    ho, wo = geometry(x, kh, kw, sh, sw, ph, pw)
    n, c = x.shape[0], x.shape[1]
    if cols.shape[0] != n or cols.shape[1] != c * kh * kw or cols.shape[2] != ho * wo:
        raise ValueError("conv2d: cols must have shape (N, C*kh*kw, Ho*Wo)")
    return ho, wo


@njit(**NJIT)
def _im2col(x, kh, kw, sh, sw, ph, pw, cols):
    ho, wo = _check_cols(x, kh, kw, sh, sw, ph, pw, cols)
    for s in range(x.shape[0]):
        im2col_one(x[s], kh, kw, sh, sw, ph, pw, ho, wo, cols[s], 0)


@njit(**NJIT)
def _col2im(cols, kh, kw, sh, sw, ph, pw, dx):
    ho, wo = _check_cols(dx, kh, kw, sh, sw, ph, pw, cols)
    for s in range(dx.shape[0]):
        col2im_one(cols[s], kh, kw, sh, sw, ph, pw, ho, wo, dx[s], 0)


def im2col_numba(x, kh, kw, sh, sw, ph, pw, cols):
    """numba twin of ``im2col_numpy`` (bit-identical)."""
    _im2col(x, kh, kw, sh, sw, ph, pw, cols)
    return cols


def col2im_numba(cols, kh, kw, sh, sw, ph, pw, dx):
    """numba twin of ``col2im_numpy`` (bit-identical)."""
    _col2im(cols, kh, kw, sh, sw, ph, pw, dx)
    return dx


# The table (see kernels/registry.py) and the warm-up: 4-D C-contiguous inputs, writable (data)
# or read-only (a layer's output).
from .registry import kernel, warmup_case  # noqa: E402

kernel("im2col", im2col_numpy, im2col_numba)
kernel("col2im", col2im_numpy, col2im_numba)


@warmup_case
def _warm_up(dtype):
    x = np.linspace(-1.0, 1.0, 2 * 2 * 5 * 5, dtype=dtype).reshape(2, 2, 5, 5)
    x_readonly = x.view()
    x_readonly.flags.writeable = False
    cols = np.empty((2, 2 * 9, 9), dtype)
    for xin in (x, x_readonly):
        im2col_numba(xin, 3, 3, 2, 2, 1, 1, cols)
    col2im_numba(cols, 3, 3, 2, 2, 1, 1, np.empty_like(x))
