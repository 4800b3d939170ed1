"""2-D convolution kernels (NCHW): im2col / col2im and the whole layer forward and backward.

Shapes, with K = C * kh * kw and L = Ho * Wo (Ho = (H + 2 ph - kh) // sh + 1, likewise Wo):

* x (N, C, H, W), weights W2 (O, K) = the (O, C, kh, kw) weight tensor viewed as a matrix,
  as in PyTorch's ``Conv2d`` (cross-correlation, zero padding), b (O,) or None;
* cols: sample n's columns are a (K, L) matrix whose row ``(c * kh + i) * kw + j`` holds
  x_padded[n, c, i + sh * oh, j + sw * ow] at column ``oh * Wo + ow`` (zero where the window
  covers padding); ``im2col``/``col2im`` take the batch's as (N, K, L);
* y (N, O, L), which is the (N, O, Ho, Wo) output viewed without a copy.

Forward:  y[n] = act(W2 @ cols[n] + b[:, None])
Backward: dz = gy * act'(y);  db += sum_{n,l} dz;  dW2 <- sum_n dz[n] @ cols[n]^T + beta dW2;
          dx[n] = col2im(W2^T @ dz[n]).

The layer keeps only x and y for its backward pass; backward rebuilds the columns from x.

numba: blocks of samples that fit in L2. The kernels take ``nb`` samples at a time, nb = as
many as fit in ``BLOCK_BYTES`` (256 KB: the columns of 10 samples of a 1 -> 32 layer on 28x28,
1 sample of a 32 -> 64 layer on 13x13). A block's columns are laid side by side as one
(K, nb L) matrix, so each block is one GEMM, W2 (O, K) @ cols (K, nb L) -> z (O, nb L), and one
loop moves z into the NCHW output with the bias and the ReLU (tanh and sigmoid: ``dense``'s
pass over y afterwards). Backward per block: im2col again; dz (O, nb L) <- gy act'(y) read from
NCHW (the transposing loop also sums db); dW2^T += cols dz^T (K, O); dcols = W2^T dz; col2im.
The columns are built, used and dropped while they sit in the core's cache, and nothing the
size of the whole batch's columns (K x the input: 18 MB for the 32 -> 64 layer at batch 128)
is written to memory or kept between forward and backward. im2col's and col2im's inner loops
copy one output row between array views, which LLVM vectorises; a per-element bounds test or
offset arithmetic there made them 2-3x slower.

Measured on the project's 2-core AMD EPYC (MKL, one thread, float32, batch 128, Keras's
mnist_convnet: Conv 1 -> 32 3x3 ReLU, MaxPool 2, Conv 32 -> 64 3x3 ReLU, MaxPool 2, Dense),
each time by alternating the candidates in one process on the shared machine:

* one GEMM for the whole batch's columns, (K, N L), the layout first tried here, was slower
  than one per sample: 1.04-1.38x the time of the per-sample kernels for the forward and
  1.09-1.19x for the backward (the 18 MB of columns go through memory, not the cache);
* blocks of the cache's size, with the columns rebuilt in backward: the first layer's forward
  0.45-0.66x the per-sample kernels' time; the second layer about equal (its GEMMs, 3 x 0.57
  GFLOP, dominate and run at the same speed per sample or per block);
* the weight gradient as cols dz^T (K x O) instead of dz cols^T (O x K): MKL's GEMM takes
  1.4 ms instead of 4.7 ms for the first layer's K = 9, O = 32 (a direct numba loop with
  reassociated sums: 2.4 ms), and the same time at the second layer's shape;
* so a direct loop kernel for small K is not used: at K = 9 the first layer's forward is
  3.6 ms of a ~75 ms training step, and its weight gradient is faster as the reoriented GEMM.

The whole training step (forward, backward, Adam; 10-step blocks alternated 15 times, medians),
one thread: 0.72x the time with the previous kernels (per-sample GEMMs with the columns kept,
and the previous max pooling; 0.92x with only the convolution changed), and 0.80x PyTorch
2.13's plain loop on the same network (its oneDNN convolutions), which the previous kernels
took 1.12x of. Two threads (MKL's GEMMs threaded, these loops serial): 0.70x the previous
kernels' time but 1.24x PyTorch's, whose convolutions use both cores throughout.

The NumPy kernels compute the same with whole-batch (N, K, L) columns and numpy's batched
``matmul``/``tensordot``. The two agree to rounding (the GEMMs sum in different orders); im2col
and col2im are bit-identical (col2im adds each input pixel's contributions in the same (i, j)
order). The activation codes and formulas are those of ``kernels.dense``.

Why im2col + GEMM: it is correct for every shape and is the classic CPU method (Caffe;
PyTorch's slow_conv2d); the GEMM does the arithmetic at BLAS speed.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import blas, dense
from ._nb import NJIT, njit

#: Bytes of columns (and of as many output rows) the numba kernels build and consume at a time.
#: A block of samples' columns is built, multiplied and dropped while it sits in the core's L2
#: (512 KB on the project's CPUs), so nothing the size of the whole batch's columns is ever
#: written to memory; see the module docstring for the measurements behind it.
BLOCK_BYTES = 256 * 1024


def out_size(size, kernel, stride, pad):
    """Output length along one axis: (size + 2 pad - kernel) // stride + 1 (PyTorch's formula)."""
    return (size + 2 * pad - kernel) // stride + 1


def block_samples(k, l, itemsize, n, budget=None):
    """How many samples' columns (K x L each) the numba kernels handle per block: as many as fit
    in ``budget`` bytes (``BLOCK_BYTES``), at least one, at most the batch."""
    per_sample = max(1, k * l * itemsize)
    return int(max(1, min(n, (BLOCK_BYTES if budget is None else budget) // per_sample)))


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


def _check(x, W, y, sh, sw, ph, pw):
    """W (O, C, kh, kw) as W2 (O, K), y (N, O, Ho, Wo) as (N, O, L) (no copies), and (Ho, Wo)."""
    if x.ndim != 4 or W.ndim != 4 or y.ndim != 4:
        raise ValueError(f"conv2d: x, W and y must be 4-D, got {x.ndim}, {W.ndim} and {y.ndim} dimensions")
    if not (W.flags.c_contiguous and y.flags.c_contiguous):
        raise ValueError("conv2d: W, dW and y must be C-contiguous (they are viewed as matrices in place)")
    n, c, h, w = x.shape
    o, _, kh, kw = W.shape
    ho, wo = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    if min(sh, sw) <= 0 or min(ph, pw) < 0 or ho <= 0 or wo <= 0:
        raise ValueError("conv2d: kernel larger than the padded input, or a non-positive stride")
    if W.shape[1] != c or y.shape != (n, o, ho, wo):
        raise ValueError(
            f"conv2d: x {x.shape} and W {W.shape} need W.shape[1] == C and y of shape {(n, o, ho, wo)}, got {y.shape}"
        )
    return W.reshape(o, -1), y.reshape(n, o, ho * wo), ho, wo


def _check_backward(x, W, y, gy, dW, dx, sh, sw, ph, pw):
    """``_check``'s views, plus gy as (N, O, L) and dW (O, C, kh, kw) as dW2 (O, K)."""
    W2, y3, ho, wo = _check(x, W, y, sh, sw, ph, pw)
    if dW.shape != W.shape or not dW.flags.c_contiguous:
        raise ValueError(f"conv2d: dW must be a C-contiguous array of W's shape {W.shape}, got {dW.shape}")
    if gy.shape != y.shape:
        raise ValueError(f"conv2d: gy must have y's shape {y.shape}, got {gy.shape}")
    if dx is not None and dx.shape != x.shape:
        raise ValueError(f"conv2d: dx must have x's shape {x.shape}, got {dx.shape}")
    return W2, y3, np.ascontiguousarray(gy).reshape(y3.shape), dW.reshape(W2.shape)


def conv2d_forward_numpy(x, W, b, sh, sw, ph, pw, code, y):
    """y (N, O, Ho, Wo) <- act(W2 @ cols[n] + b[:, None]) for every sample n, cols = im2col(x).

    W is (O, C, kh, kw); b (O,) or None. Returns y.
    """
    W2, y3, ho, wo = _check(x, W, y, sh, sw, ph, pw)
    cols = im2col_numpy(
        x, W.shape[2], W.shape[3], sh, sw, ph, pw, np.empty((x.shape[0], W2.shape[1], ho * wo), y.dtype)
    )
    np.matmul(W2, cols, out=y3)
    if b is not None:
        y3 += b[:, None]
    dense.bias_act_numpy(y, None, code)
    return y


def conv2d_backward_numpy(x, W, y, gy, code, dW, beta, db, sh, sw, ph, pw, dx):
    """The layer's backward from its input and output (the columns are rebuilt from x):

    dz <- gy * act'(y);  db += sum over samples and positions of dz;
    dW2 <- sum_n dz[n] cols[n]^T + beta dW2;  dx <- col2im(W2^T dz[n]).

    beta is 0 or 1 (overwrite after zero_grad, or accumulate); db and dx may be None (no bias;
    no input gradient wanted). Returns dx.
    """
    W2, y3, gy3, dW2 = _check_backward(x, W, y, gy, dW, dx, sh, sw, ph, pw)
    kh, kw = W.shape[2], W.shape[3]
    cols = im2col_numpy(x, kh, kw, sh, sw, ph, pw, np.empty((x.shape[0], W2.shape[1], y3.shape[2]), y.dtype))
    dz3 = dense.act_grad_numpy(y3, gy3, code, np.empty_like(y3))
    if db is not None:
        db += dz3.sum(axis=(0, 2))
    update = np.tensordot(dz3, cols, axes=([0, 2], [0, 2]))  # (O, K)
    if beta == 0:
        dW2[...] = update
    else:
        dW2 += update
    if dx is not None:
        col2im_numpy(np.matmul(W2.T, dz3), kh, kw, sh, sw, ph, pw, dx)
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
def _im2col_one(x, kh, kw, sh, sw, ph, pw, ho, wo, cols, off):
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
def _col2im_one(cols, kh, kw, sh, sw, ph, pw, ho, wo, dx, off):
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


@njit(**NJIT)
def _geometry(x, kh, kw, sh, sw, ph, pw):
    n, c, h, w = x.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ho <= 0 or wo <= 0 or sh <= 0 or sw <= 0 or ph < 0 or pw < 0:
        raise ValueError("conv2d: kernel larger than the padded input, or a non-positive stride")
    return ho, wo


@njit(**NJIT)
def _check_cols(x, kh, kw, sh, sw, ph, pw, cols):
    ho, wo = _geometry(x, kh, kw, sh, sw, ph, pw)
    n, c = x.shape[0], x.shape[1]
    if cols.shape[0] != n or cols.shape[1] != c * kh * kw or cols.shape[2] != ho * wo:
        raise ValueError("conv2d: cols must have shape (N, C*kh*kw, Ho*Wo)")
    return ho, wo


@njit(**NJIT)
def _im2col(x, kh, kw, sh, sw, ph, pw, cols):
    ho, wo = _check_cols(x, kh, kw, sh, sw, ph, pw, cols)
    for s in range(x.shape[0]):
        _im2col_one(x[s], kh, kw, sh, sw, ph, pw, ho, wo, cols[s], 0)


@njit(**NJIT)
def _col2im(cols, kh, kw, sh, sw, ph, pw, dx):
    ho, wo = _check_cols(dx, kh, kw, sh, sw, ph, pw, cols)
    for s in range(dx.shape[0]):
        _col2im_one(cols[s], kh, kw, sh, sw, ph, pw, ho, wo, dx[s], 0)


def im2col_numba(x, kh, kw, sh, sw, ph, pw, cols):
    """numba twin of ``im2col_numpy`` (bit-identical)."""
    _im2col(x, kh, kw, sh, sw, ph, pw, cols)
    return cols


def col2im_numba(cols, kh, kw, sh, sw, ph, pw, dx):
    """numba twin of ``col2im_numpy`` (bit-identical)."""
    _col2im(cols, kh, kw, sh, sw, ph, pw, dx)
    return dx


@njit(**NJIT)
def _unfold_bias_act(z, b, code, y3, s0, nb):
    """y3[s0 + t, o, l] <- act(z[o, t L + l] + b[o]) for the block's nb samples (ReLU and
    identity in this pass; tanh and sigmoid are applied to the whole output afterwards)."""
    o_out, l = y3.shape[1], y3.shape[2]
    zero = y3.dtype.type(0)
    relu = code == dense.RELU
    for t in range(nb):
        for o in range(o_out):
            bo = zero if b is None else b[o]
            if relu:
                for k in range(l):
                    v = z[o, t * l + k] + bo
                    y3[s0 + t, o, k] = zero if v < zero else v  # np.maximum(v, 0): NaN stays NaN
            else:
                for k in range(l):
                    y3[s0 + t, o, k] = z[o, t * l + k] + bo


@njit(**NJIT)
def _fold_grad(y3, gy3, code, s0, nb, dz, acc):
    """dz[o, t L + l] <- gy[s0 + t, o, l] act'(y[s0 + t, o, l]) (dense's formulas); acc[o] += the
    block's sum of dz[o] when acc is an array."""
    o_out, l = y3.shape[1], y3.shape[2]
    one, zero = dz.dtype.type(1), dz.dtype.type(0)
    for t in range(nb):
        s = s0 + t
        for o in range(o_out):
            base = t * l
            if code == dense.RELU:
                for k in range(l):
                    dz[o, base + k] = gy3[s, o, k] * (one if y3[s, o, k] > zero else zero)
            elif code == dense.TANH:
                for k in range(l):
                    yv = y3[s, o, k]
                    dz[o, base + k] = (one - yv * yv) * gy3[s, o, k]
            elif code == dense.SIGMOID:
                for k in range(l):
                    yv = y3[s, o, k]
                    dz[o, base + k] = (one - yv) * yv * gy3[s, o, k]
            else:
                for k in range(l):
                    dz[o, base + k] = gy3[s, o, k]
            if acc is not None:
                tot = zero
                for k in range(l):
                    tot += dz[o, base + k]
                acc[o] += tot


@njit(**NJIT)
def _conv_forward(x, W2, b, kh, kw, sh, sw, ph, pw, code, y3, nb):
    """Per block of nb samples: cols <- im2col; z <- W2 @ cols (one GEMM); y <- act(z + b)."""
    n = x.shape[0]
    ho, wo = _geometry(x, kh, kw, sh, sw, ph, pw)
    if b is not None and b.shape[0] != W2.shape[0]:
        raise ValueError("conv2d: b must have W.shape[0] elements")
    l = ho * wo
    cols = np.empty((W2.shape[1], nb * l), y3.dtype)
    z = np.empty((W2.shape[0], nb * l), y3.dtype)
    for s0 in range(0, n, nb):
        m = min(nb, n - s0)
        for t in range(m):
            _im2col_one(x[s0 + t], kh, kw, sh, sw, ph, pw, ho, wo, cols, t * l)
        blas.gemm(W2, cols[:, : m * l], z[:, : m * l], 0.0)
        _unfold_bias_act(z, b, code, y3, s0, m)
    if code == dense.RELU or code == dense.IDENTITY:
        return False
    return dense._bias_act_2d(y3.reshape(n * y3.shape[1], l), None, code)


@njit(**NJIT)
def _conv_backward(x, W2, y3, gy3, code, dW2, beta, db, kh, kw, sh, sw, ph, pw, dx, nb):
    """Per block: cols <- im2col (rebuilt); dz <- gy act'(y); dW2^T += cols dz^T; dcols <- W2^T dz
    and dx <- col2im(dcols). Then dW2 <- dW2^T's transpose + beta dW2, db += sum of dz."""
    n = x.shape[0]
    ho, wo = _geometry(x, kh, kw, sh, sw, ph, pw)
    l = ho * wo
    o_out, k = W2.shape
    if db is not None and db.shape[0] != o_out:
        raise ValueError("conv2d: db must have W.shape[0] elements")
    acc = None if db is None else np.zeros(o_out, y3.dtype)
    # The weight gradient is summed transposed, dW2^T = sum cols dz^T (K x O): MKL's GEMM runs
    # that orientation 3x faster than dz cols^T when K is small (the first layer's K = 9) and
    # as fast otherwise.
    dWt = np.zeros((k, o_out), y3.dtype)
    cols = np.empty((k, nb * l), y3.dtype)
    dz = np.empty((o_out, nb * l), y3.dtype)
    dcols = np.empty((k, nb * l), y3.dtype) if dx is not None else cols
    for s0 in range(0, n, nb):
        m = min(nb, n - s0)
        for t in range(m):
            _im2col_one(x[s0 + t], kh, kw, sh, sw, ph, pw, ho, wo, cols, t * l)
        _fold_grad(y3, gy3, code, s0, m, dz, acc)
        blas.gemm(cols[:, : m * l], dz[:, : m * l].T, dWt, 1.0)
        if dx is not None:
            blas.gemm(W2.T, dz[:, : m * l], dcols[:, : m * l], 0.0)
            for t in range(m):
                _col2im_one(dcols, kh, kw, sh, sw, ph, pw, ho, wo, dx[s0 + t], t * l)
    for o in range(o_out):
        for r in range(k):
            dW2[o, r] = dWt[r, o] + dW2[o, r] if beta != 0 else dWt[r, o]
    if acc is not None:
        for o in range(o_out):
            db[o] += acc[o]


def conv2d_forward_numba(x, W, b, sh, sw, ph, pw, code, y):
    """numba twin of ``conv2d_forward_numpy``: one jitted call, blocked (``BLOCK_BYTES``), when
    ``blas`` found a GEMM numba can call; else numba's im2col, numpy's ``matmul`` and numba's
    bias/activation over the whole batch."""
    W2, y3, ho, wo = _check(x, W, y, sh, sw, ph, pw)
    kh, kw = W.shape[2], W.shape[3]
    if blas.AVAILABLE:
        nb = block_samples(W2.shape[1], ho * wo, y.itemsize, x.shape[0])
        finish = _conv_forward(x, W2, b, kh, kw, sh, sw, ph, pw, code, y3, nb)
    else:
        n, l = x.shape[0], ho * wo
        cols = np.empty((n, W2.shape[1], l), y.dtype)
        _im2col(x, kh, kw, sh, sw, ph, pw, cols)
        np.matmul(W2, cols, out=y3)
        if b is not None:
            y3 += b[:, None]
        finish = dense._bias_act_2d(y3.reshape(n * y3.shape[1], l), None, code)
    if finish:  # float64 tanh/sigmoid: numpy's exact tanh, as dense does
        np.tanh(y, out=y)
        if code == dense.SIGMOID:
            dense._half_plus_half(y)
    return y


def conv2d_backward_numba(x, W, y, gy, code, dW, beta, db, sh, sw, ph, pw, dx):
    """numba twin of ``conv2d_backward_numpy`` (one blocked jitted call when ``blas`` is
    available; else numba's loops around numpy's products over the whole batch)."""
    W2, y3, gy3, dW2 = _check_backward(x, W, y, gy, dW, dx, sh, sw, ph, pw)
    kh, kw = W.shape[2], W.shape[3]
    if blas.AVAILABLE:
        nb = block_samples(W2.shape[1], y3.shape[2], y.itemsize, x.shape[0])
        _conv_backward(x, W2, y3, gy3, code, dW2, float(beta), db, kh, kw, sh, sw, ph, pw, dx, nb)
        return dx
    n, l = x.shape[0], y3.shape[2]
    cols = np.empty((n, W2.shape[1], l), y.dtype)
    _im2col(x, kh, kw, sh, sw, ph, pw, cols)
    dz3 = np.empty_like(y3)
    acc = None if db is None else np.zeros(W2.shape[0], y.dtype)
    for s in range(n):  # dz3[s] as the (O, L) block of one sample
        _fold_grad(y3, gy3, code, s, 1, dz3[s], acc)
    if acc is not None:
        db += acc
    update = np.tensordot(dz3, cols, axes=([0, 2], [0, 2]))
    if beta == 0:
        dW2[...] = update
    else:
        dW2 += update
    if dx is not None:
        _col2im(np.matmul(W2.T, dz3), kh, kw, sh, sw, ph, pw, dx)
    return dx
