"""The numba convolution's work, block by block (``conv`` holds the layout's reasons and the
measurements): a batch is cut into parts of whole blocks of nb samples; per block the columns
are built (compact: ``im2col.im2col_one``; wide, at stride 1: through a padded scratch,
``im2col.im2col_wide_one``), multiplied by one GEMM and dropped while they sit in the cache.
``forward``/``backward`` run the parts one after the other on the calling thread,
``forward_parallel``/``backward_parallel`` on numba's threads, each part with its own scratch
and partial sums, added in part order so the thread count changes no bit. "None" (no bias, no
pre-activation kept, no db, no dx) comes as a zero-length array (``_nb.none_as_empty``): one
compiled variant of each kernel where None and arrays made four.
"""

import numpy as np

from . import blas, dense
from ._nb import NJIT, njit
from .conv_activation import fold_grad, fold_grad_wide, unfold_bias_act, unfold_bias_gelu
from .im2col import col2im_one, col2im_wide_one, crop_one, geometry, im2col_one, im2col_wide_one, pad_one, wide_span
from .parallel import NJIT_PARALLEL, prange


@njit(**NJIT)
def part_bounds(n, nb, parts, p):
    """Samples [lo, hi) of part p: whole blocks of nb, the blocks shared out as evenly as
    possible."""
    blocks = (n + nb - 1) // nb
    return min(n, (p * blocks // parts) * nb), min(n, ((p + 1) * blocks // parts) * nb)


@njit(**NJIT)
def _layout(geo, w, wide):
    """(span, rs): a sample's columns and an output row's stride in them (see ``unfold_bias_act``)."""
    kh, kw, sh, sw, ph, pw, ho, wo = geo
    if wide:
        return wide_span(ho, wo, w + 2 * pw), w + 2 * pw
    return ho * wo, wo


@njit(**NJIT)
def _columns(x, s0, m, geo, span, wide, xp, cols):
    """cols[:, t span : (t + 1) span] <- sample s0 + t's columns, t < m (wide: through xp)."""
    kh, kw, sh, sw, ph, pw, ho, wo = geo
    for t in range(m):
        if wide:
            pad_one(x[s0 + t], ph, pw, xp)
            im2col_wide_one(xp, kh, kw, span, cols, t * span)
        else:
            im2col_one(x[s0 + t], kh, kw, sh, sw, ph, pw, ho, wo, cols, t * span)


@njit(**NJIT)
def _forward_part(x, W2, b, geo, code, y3, pre3, nb, lo, hi, wide, xp, cols, z):
    """Samples [lo, hi), a block of nb at a time: cols <- im2col; z <- W2 @ cols (one GEMM);
    y <- act(z + b) (ReLU, identity and GELU here; GELU keeps z + b in pre3).
    geo: (kh, kw, sh, sw, ph, pw, Ho, Wo); wide: wide columns (stride 1) through xp."""
    span, rs = _layout(geo, x.shape[3], wide)
    wo = geo[7]
    for s0 in range(lo, hi, nb):
        m = min(nb, hi - s0)
        _columns(x, s0, m, geo, span, wide, xp, cols)
        blas.gemm(W2, cols[:, : m * span], z[:, : m * span], 0.0)
        if pre3.shape[0] != 0 and (code == dense.GELU or code == dense.GELU_TANH):
            unfold_bias_gelu(z, b, code == dense.GELU_TANH, y3, pre3, s0, m, span, rs, wo)
        elif pre3.shape[0] != 0:
            unfold_bias_act(z, b, dense.IDENTITY, pre3, s0, m, span, rs, wo)
            unfold_bias_act(z, b, code, y3, s0, m, span, rs, wo)
        else:
            unfold_bias_act(z, b, code, y3, s0, m, span, rs, wo)


@njit(**NJIT)
def _backward_part(x, W2, y3, gy3, code, geo, dx, nb, lo, hi, wide, xp, dxp, cols, dz, dcols, dWt, acc):
    """Samples [lo, hi), a block at a time: cols <- im2col (rebuilt); dz <- gy act'(y) and
    acc += its sums; dWt += cols dz^T; dcols <- W2^T dz and dx <- col2im(dcols)."""
    kh, kw, sh, sw, ph, pw, ho, wo = geo
    span, rs = _layout(geo, x.shape[3], wide)
    for s0 in range(lo, hi, nb):
        m = min(nb, hi - s0)
        _columns(x, s0, m, geo, span, wide, xp, cols)
        if wide:
            fold_grad_wide(y3, gy3, code, s0, m, dz, acc, span, rs, wo)
        else:
            fold_grad(y3, gy3, code, s0, m, dz, acc)
        blas.gemm(cols[:, : m * span], dz[:, : m * span].T, dWt, 1.0)
        if dx.shape[0] != 0:
            blas.gemm(W2.T, dz[:, : m * span], dcols[:, : m * span], 0.0)
            for t in range(m):
                if wide:
                    col2im_wide_one(dcols, kh, kw, span, dxp, t * span)
                    crop_one(dxp, ph, pw, dx[s0 + t])
                else:
                    col2im_one(dcols, kh, kw, sh, sw, ph, pw, ho, wo, dx[s0 + t], t * span)


@njit(**NJIT)
def _padded(x, ph, pw, wide, sets, dtype):
    """``sets`` zeroed padded scratch planes (C, Hp, Wp) for wide columns (a stub otherwise)."""
    if not wide:
        return np.zeros((sets, 1, 1, 1), dtype)
    return np.zeros((sets, x.shape[1], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), dtype)


@njit(**NJIT)
def _forward_scratch(x, W2, b, kh, kw, sh, sw, ph, pw, y3, nb, sets, wide):
    """Checks, (Ho, Wo) and ``sets`` sets of scratch (one per part at once): xp (sets, C, Hp,
    Wp), cols (sets, K, nb span), z (sets, O, nb span)."""
    ho, wo = geometry(x, kh, kw, sh, sw, ph, pw)
    if b.shape[0] != 0 and b.shape[0] != W2.shape[0]:
        raise ValueError("conv2d: b must have W.shape[0] elements")
    span, _ = _layout((kh, kw, sh, sw, ph, pw, ho, wo), x.shape[3], wide)
    cols = np.empty((sets, W2.shape[1], nb * span), y3.dtype)
    z = np.empty((sets, W2.shape[0], nb * span), y3.dtype)
    return ho, wo, _padded(x, ph, pw, wide, sets, y3.dtype), cols, z


@njit(**NJIT)
def _finish_forward(y3, code):
    if code == dense.RELU or code == dense.IDENTITY or code == dense.GELU or code == dense.GELU_TANH:
        return False
    return dense.bias_act_2d(y3.reshape(y3.shape[0] * y3.shape[1], y3.shape[2]), None, code)


@njit(**NJIT)
def forward(x, W2, b, kh, kw, sh, sw, ph, pw, code, y3, pre3, nb, parts, wide):
    """The forward, part after part on the calling thread (its BLAS may use its own threads)."""
    n = x.shape[0]
    ho, wo, xp, cols, z = _forward_scratch(x, W2, b, kh, kw, sh, sw, ph, pw, y3, nb, 1, wide)
    geo = (kh, kw, sh, sw, ph, pw, ho, wo)
    for p in range(parts):
        lo, hi = part_bounds(n, nb, parts, p)
        _forward_part(x, W2, b, geo, code, y3, pre3, nb, lo, hi, wide, xp[0], cols[0], z[0])
    return _finish_forward(y3, code)


@njit(**NJIT_PARALLEL)
def forward_parallel(x, W2, b, kh, kw, sh, sw, ph, pw, code, y3, pre3, nb, parts, wide):
    """The same parts on numba's threads, each part's GEMMs on its own thread alone."""
    n = x.shape[0]
    ho, wo, xp, cols, z = _forward_scratch(x, W2, b, kh, kw, sh, sw, ph, pw, y3, nb, parts, wide)
    geo = (kh, kw, sh, sw, ph, pw, ho, wo)
    for p in prange(parts):
        lo, hi = part_bounds(n, nb, parts, p)
        before = blas.threads_local(1)
        _forward_part(x, W2, b, geo, code, y3, pre3, nb, lo, hi, wide, xp[p], cols[p], z[p])
        blas.threads_local(before)
    return _finish_forward(y3, code)


@njit(**NJIT)
def _backward_scratch(x, W2, y3, db, kh, kw, sh, sw, ph, pw, dx, nb, parts, sets, wide):
    """Checks, (Ho, Wo), ``sets`` sets of scratch (xp, dxp, cols, dz, dcols) and each part's
    partial sums (dWt (parts, K, O), acc (parts, O), zeroed)."""
    ho, wo = geometry(x, kh, kw, sh, sw, ph, pw)
    o_out, k = W2.shape
    if db.shape[0] != 0 and db.shape[0] != o_out:
        raise ValueError("conv2d: db must have W.shape[0] elements")
    span, _ = _layout((kh, kw, sh, sw, ph, pw, ho, wo), x.shape[3], wide)
    cols = np.empty((sets, k, nb * span), y3.dtype)
    dz = np.empty((sets, o_out, nb * span), y3.dtype)
    dcols = np.empty((sets, k, nb * span), y3.dtype) if dx.shape[0] != 0 else cols
    xp = _padded(x, ph, pw, wide, sets, y3.dtype)
    dxp = _padded(x, ph, pw, wide and dx.shape[0] != 0, sets, y3.dtype)
    return ho, wo, xp, dxp, cols, dz, dcols, np.zeros((parts, k, o_out), y3.dtype), np.zeros((parts, o_out), y3.dtype)


@njit(**NJIT)
def all_finite(a):
    for v in a.ravel():
        if not np.isfinite(v):
            return False
    return True


@njit(**NJIT)
def finish_backward(dWt, acc, dW2, beta, db):
    """dW2 <- the parts' dW2^T summed in part order, transposed (+ beta dW2); db += acc's sum."""
    parts, k, o_out = dWt.shape
    for p in range(1, parts):
        dWt[0] += dWt[p]
        acc[0] += acc[p]
    for o in range(o_out):
        for r in range(k):
            dW2[o, r] = dWt[0, r, o] + dW2[o, r] if beta != 0 else dWt[0, r, o]
    for o in range(db.shape[0]):  # none for a zero-length db (no db wanted)
        db[o] += acc[0, o]


# The weight gradient is summed transposed, dW2^T = sum cols dz^T (K x O): MKL's GEMM runs that
# orientation 3x faster than dz cols^T when K is small (the first layer's K = 9) and as fast
# otherwise.
#
# Wide columns are exact because their wrap-around columns meet zeros: dz is 0 there, so they
# add cols * 0 to dW and W2^T 0 to dx. A non-finite value makes that 0 a NaN (inf * 0), so the
# wide backward is taken only with a finite W, and a non-finite weight gradient is recomputed
# with compact columns (the kernels return True and write nothing to dW or db: ``_redo``).
@njit(**NJIT)
def _redo(dWt, wide):
    """After the parts: whether a wide call's weight gradient is not finite (W2 was checked
    before they ran)."""
    return wide and not all_finite(dWt)


@njit(**NJIT)
def backward(x, W2, y3, gy3, code, dW2, beta, db, kh, kw, sh, sw, ph, pw, dx, nb, parts, wide):
    """The backward, part after part on the calling thread. Returns ``_redo``'s answer."""
    n = x.shape[0]
    ho, wo, xp, dxp, cols, dz, dcols, dWt, acc = _backward_scratch(
        x, W2, y3, db, kh, kw, sh, sw, ph, pw, dx, nb, parts, 1, wide
    )
    if wide and not all_finite(W2):
        return True
    geo = (kh, kw, sh, sw, ph, pw, ho, wo)
    for p in range(parts):
        lo, hi = part_bounds(n, nb, parts, p)
        _backward_part(
            x, W2, y3, gy3, code, geo, dx, nb, lo, hi, wide, xp[0], dxp[0], cols[0], dz[0], dcols[0], dWt[p], acc[p]
        )
    if _redo(dWt, wide):
        return True
    finish_backward(dWt, acc, dW2, beta, db)
    return False


@njit(**NJIT_PARALLEL)
def backward_parallel(x, W2, y3, gy3, code, dW2, beta, db, kh, kw, sh, sw, ph, pw, dx, nb, parts, wide):
    """The same parts on numba's threads, each part's GEMMs on its own thread alone."""
    n = x.shape[0]
    ho, wo, xp, dxp, cols, dz, dcols, dWt, acc = _backward_scratch(
        x, W2, y3, db, kh, kw, sh, sw, ph, pw, dx, nb, parts, parts, wide
    )
    if wide and not all_finite(W2):
        return True
    geo = (kh, kw, sh, sw, ph, pw, ho, wo)
    for p in prange(parts):
        lo, hi = part_bounds(n, nb, parts, p)
        before = blas.threads_local(1)
        _backward_part(
            x, W2, y3, gy3, code, geo, dx, nb, lo, hi, wide, xp[p], dxp[p], cols[p], dz[p], dcols[p], dWt[p], acc[p]
        )
        blas.threads_local(before)
    if _redo(dWt, wide):
        return True
    finish_backward(dWt, acc, dW2, beta, db)
    return False
