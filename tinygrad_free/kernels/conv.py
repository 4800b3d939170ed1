"""2-D convolution kernels (NCHW): im2col / col2im and the whole layer forward and backward.

Shapes, with K = C * kh * kw and L = Ho * Wo (Ho = (H + 2 ph - kh) // sh + 1, likewise Wo):

* x (N, C, H, W), weights W2 (O, K) = the (O, C, kh, kw) weight tensor viewed as a matrix,
  as in PyTorch's ``Conv2d`` (cross-correlation, zero padding), b (O,) or None;
* cols (N, K, L): row ``(c * kh + i) * kw + j`` of sample n holds x_padded[n, c, i + sh * oh,
  j + sw * ow] at column ``oh * Wo + ow`` (zero where the window covers padding);
* y (N, O, L), which is the (N, O, Ho, Wo) output viewed without a copy.

Forward:  y[n] = act(W2 @ cols[n] + b[:, None])   (one GEMM per sample, output already NCHW)
Backward: dz = gy * act'(y);  db += sum_{n,l} dz;  dW2 <- sum_n dz[n] @ cols[n]^T + beta dW2;
          dx = col2im(W2^T @ dz[n]) for each n.

The forward keeps ``cols`` for the backward pass (the weight gradient needs it), so backward
never rebuilds it. The activation codes, the bias-free activation pass and the activation
gradient are those of ``kernels.dense``. The NumPy kernels do the products with numpy's
batched ``matmul``/``tensordot``; the numba ones call ``blas.gemm`` per sample from inside one
jitted call. The two agree to rounding (the GEMMs sum in different orders); im2col and col2im
are bit-identical (col2im adds each input pixel's contributions in the same (i, j) order).

Why im2col for every layer, also the first (C = 1, K = 9 for a 3x3 kernel on MNIST): a direct
loop kernel would avoid the K-fold column copy there, but that copy is small exactly when K is
small (9 x the input: 1.8 MB for a float32 batch of 64 MNIST images), the loop kernel would be a
second implementation of the layer (forward, weight and input gradients) to keep equal to this
one, and its speed against a small-K GEMM could not be measured on the shared machine. im2col +
GEMM is correct for every shape; it is the classic CPU method (Caffe; PyTorch's slow_conv2d).
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import blas, dense
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


def _views(W, y, cols):
    """W (O, C, kh, kw) as W2 (O, K) and y (N, O, Ho, Wo) as (N, O, L), both without a copy."""
    o = W.shape[0]
    if not (W.flags.c_contiguous and y.flags.c_contiguous):
        raise ValueError("conv2d: W, dW, y and dz must be C-contiguous (they are viewed as matrices in place)")
    if cols.shape != (y.shape[0], W.size // o, y.shape[2] * y.shape[3]):
        raise ValueError(
            f"conv2d: cols must have shape (N, C*kh*kw, Ho*Wo) = "
            f"{(y.shape[0], W.size // o, y.shape[2] * y.shape[3])}, got {cols.shape}"
        )
    return W.reshape(o, -1), y.reshape(y.shape[0], o, -1)


def conv2d_forward_numpy(x, W, b, sh, sw, ph, pw, code, cols, y):
    """cols <- im2col(x); y (N, O, Ho, Wo) <- act(W2 @ cols[n] + b[:, None]) for every sample n.

    W is (O, C, kh, kw); b (O,) or None; cols (N, C*kh*kw, Ho*Wo) and y are written. Returns y.
    """
    W2, y3 = _views(W, y, cols)
    im2col_numpy(x, W.shape[2], W.shape[3], sh, sw, ph, pw, cols)
    np.matmul(W2, cols, out=y3)
    if b is not None:
        y3 += b[:, None]
    dense.bias_act_numpy(y, None, code)
    return y


def conv2d_backward_numpy(cols, W, y, gy, code, dz, dW, beta, db, sh, sw, ph, pw, dx):
    """The layer's backward from the cached columns and output:

    dz <- gy * act'(y);  db += sum over samples and positions of dz;
    dW <- sum_n dz[n] cols[n]^T + beta * dW  (as (O, K) matrices);  dx <- col2im(W2^T dz[n]).

    beta is 0 or 1 (overwrite after zero_grad, or accumulate); db and dx may be None (no bias;
    no input gradient wanted). Returns dx.
    """
    W2, dz3 = _views(W, dz, cols)
    dW2, _ = _views(dW, y, cols)
    dense.act_grad_numpy(y, gy, code, dz)
    if db is not None:
        db += dz3.sum(axis=(0, 2))
    update = np.tensordot(dz3, cols, axes=([0, 2], [0, 2]))  # (O, K)
    if beta == 0:
        dW2[...] = update
    else:
        dW2 += update
    if dx is not None:
        col2im_numpy(np.matmul(W2.T, dz3), W.shape[2], W.shape[3], sh, sw, ph, pw, dx)
    return dx


# --- numba ---------------------------------------------------------------------------------------
# The loops mirror the NumPy kernels. Padding is never materialised: im2col writes zeros where a
# window covers it and col2im skips those entries. The whole forward (columns, GEMMs, bias,
# activation) and the whole backward are one jitted call each when ``blas`` has a GEMM.
@njit(**NJIT)
def _im2col_one(x, kh, kw, sh, sw, ph, pw, ho, wo, cols):
    """cols (K, L) <- the windows of one sample x (C, H, W)."""
    c_in, h, w = x.shape
    zero = cols.dtype.type(0)
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                for oh in range(ho):
                    hh = oh * sh - ph + i
                    base = oh * wo
                    if hh < 0 or hh >= h:
                        for ow in range(wo):
                            cols[row, base + ow] = zero
                        continue
                    for ow in range(wo):
                        ww = ow * sw - pw + j
                        cols[row, base + ow] = x[c, hh, ww] if 0 <= ww < w else zero


@njit(**NJIT)
def _col2im_one(cols, kh, kw, sh, sw, ph, pw, ho, wo, dx):
    """dx (C, H, W) <- col2im of one sample's columns (K, L); overwrites dx."""
    c_in, h, w = dx.shape
    dx[...] = 0
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                for oh in range(ho):
                    hh = oh * sh - ph + i
                    if hh < 0 or hh >= h:
                        continue
                    base = oh * wo
                    for ow in range(wo):
                        ww = ow * sw - pw + j
                        if 0 <= ww < w:
                            dx[c, hh, ww] += cols[row, base + ow]


@njit(**NJIT)
def _check_cols(x, kh, kw, sh, sw, ph, pw, cols):
    n, c, h, w = x.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ho <= 0 or wo <= 0 or sh <= 0 or sw <= 0 or ph < 0 or pw < 0:
        raise ValueError("conv2d: kernel larger than the padded input, or a non-positive stride")
    if cols.shape[0] != n or cols.shape[1] != c * kh * kw or cols.shape[2] != ho * wo:
        raise ValueError("conv2d: cols must have shape (N, C*kh*kw, Ho*Wo)")
    return ho, wo


@njit(**NJIT)
def _im2col(x, kh, kw, sh, sw, ph, pw, cols):
    ho, wo = _check_cols(x, kh, kw, sh, sw, ph, pw, cols)
    for s in range(x.shape[0]):
        _im2col_one(x[s], kh, kw, sh, sw, ph, pw, ho, wo, cols[s])


@njit(**NJIT)
def _col2im(cols, kh, kw, sh, sw, ph, pw, dx):
    ho, wo = _check_cols(dx, kh, kw, sh, sw, ph, pw, cols)
    for s in range(dx.shape[0]):
        _col2im_one(cols[s], kh, kw, sh, sw, ph, pw, ho, wo, dx[s])


def im2col_numba(x, kh, kw, sh, sw, ph, pw, cols):
    """numba twin of ``im2col_numpy`` (bit-identical)."""
    _im2col(x, kh, kw, sh, sw, ph, pw, cols)
    return cols


def col2im_numba(cols, kh, kw, sh, sw, ph, pw, dx):
    """numba twin of ``col2im_numpy`` (bit-identical)."""
    _col2im(cols, kh, kw, sh, sw, ph, pw, dx)
    return dx


@njit(**NJIT)
def _channel_bias_act(y3, b, code):
    """y3 (N, O, L) <- act(y3 + b[o]); returns True when numpy's tanh must finish (as in dense)."""
    if b is not None:
        if b.shape[0] != y3.shape[1]:
            raise ValueError("conv2d: b must have W.shape[0] elements")
        for s in range(y3.shape[0]):
            for o in range(y3.shape[1]):
                bo = b[o]
                for l in range(y3.shape[2]):
                    y3[s, o, l] += bo
    return dense._bias_act_2d(y3.reshape(y3.shape[0] * y3.shape[1], y3.shape[2]), None, code)


@njit(**NJIT)
def _conv_forward(x, W2, b, kh, kw, sh, sw, ph, pw, code, cols, y3):
    _im2col(x, kh, kw, sh, sw, ph, pw, cols)
    for s in range(x.shape[0]):
        blas.gemm(W2, cols[s], y3[s], 0.0)
    return _channel_bias_act(y3, b, code)


@njit(**NJIT)
def _conv_grad(y3, gy3, code, dz3, db):
    """dz <- gy * act'(y) (dense's loops), then db[o] += sum_{n,l} dz[n, o, l]."""
    rows = dz3.shape[0] * dz3.shape[1]
    dense._grad_dispatch(
        y3.reshape(rows, y3.shape[2]), gy3.reshape(rows, gy3.shape[2]), code, dz3.reshape(rows, dz3.shape[2]), None
    )
    if db is not None:
        if db.shape[0] != dz3.shape[1]:
            raise ValueError("conv2d: db must have W.shape[0] elements")
        acc = np.zeros(dz3.shape[1], dz3.dtype)
        for s in range(dz3.shape[0]):
            for o in range(dz3.shape[1]):
                t = dz3.dtype.type(0)
                for l in range(dz3.shape[2]):
                    t += dz3[s, o, l]
                acc[o] += t
        for o in range(db.shape[0]):
            db[o] += acc[o]


@njit(**NJIT)
def _conv_backward(cols, W2, y3, gy3, code, dz3, dW2, beta, db, kh, kw, sh, sw, ph, pw, dx):
    _conv_grad(y3, gy3, code, dz3, db)
    n = cols.shape[0]
    if n == 0 and beta == 0:
        dW2[...] = 0
    for s in range(n):
        blas.gemm(dz3[s], cols[s].T, dW2, beta if s == 0 else 1.0)
    if dx is not None:
        ho, wo = _check_cols(dx, kh, kw, sh, sw, ph, pw, cols)
        dcols = np.empty((cols.shape[1], cols.shape[2]), cols.dtype)  # one sample's, reused
        for s in range(n):
            blas.gemm(W2.T, dz3[s], dcols, 0.0)
            _col2im_one(dcols, kh, kw, sh, sw, ph, pw, ho, wo, dx[s])


def conv2d_forward_numba(x, W, b, sh, sw, ph, pw, code, cols, y):
    """numba twin of ``conv2d_forward_numpy``: one jitted call (GEMMs included) when ``blas``
    found a GEMM numba can call, else numba's im2col, numpy's ``matmul`` and numba's bias/act."""
    W2, y3 = _views(W, y, cols)
    kh, kw = W.shape[2], W.shape[3]
    if blas.AVAILABLE:
        finish = _conv_forward(x, W2, b, kh, kw, sh, sw, ph, pw, code, cols, y3)
    else:
        _im2col(x, kh, kw, sh, sw, ph, pw, cols)
        np.matmul(W2, cols, out=y3)
        finish = _channel_bias_act(y3, b, code)
    if finish:  # float64 tanh/sigmoid: numpy's exact tanh, as dense does
        np.tanh(y, out=y)
        if code == dense.SIGMOID:
            dense._half_plus_half(y)
    return y


def conv2d_backward_numba(cols, W, y, gy, code, dz, dW, beta, db, sh, sw, ph, pw, dx):
    """numba twin of ``conv2d_backward_numpy`` (one jitted call when ``blas`` is available)."""
    W2, dz3 = _views(W, dz, cols)
    dW2, y3 = _views(dW, y, cols)
    gy3 = np.ascontiguousarray(gy).reshape(y3.shape)
    kh, kw = W.shape[2], W.shape[3]
    if blas.AVAILABLE:
        _conv_backward(cols, W2, y3, gy3, code, dz3, dW2, float(beta), db, kh, kw, sh, sw, ph, pw, dx)
        return dx
    _conv_grad(y3, gy3, code, dz3, db)
    update = np.tensordot(dz3, cols, axes=([0, 2], [0, 2]))
    if beta == 0:
        dW2[...] = update
    else:
        dW2 += update
    if dx is not None:
        _col2im(np.matmul(W2.T, dz3), kh, kw, sh, sw, ph, pw, dx)
    return dx
