"""A convolution's bias and activation, between its GEMM's columns and the NCHW output (``conv``).

The GEMM of a block of nb samples writes z (O, nb span): sample t's output row oh at columns
t span + oh rs + [0, Wo), with (span, rs) = (L, Wo) for compact columns (each (t, o) one row
of L = Ho Wo) and (Lw, Wp) for wide ones (``im2col.im2col_wide_one``: Wp - Wo wrap-around
columns between output rows). Forward, ``_unfold_*``: y[s0 + t, o, oh Wo + ow] <- act(z + b[o]),
into NCHW. Backward, ``_fold_*``: dz <- gy act'(y) from NCHW back into the columns (zero in the
wrap-around columns), and db's partial sums. The activation codes and formulas are those of
``dense``.
"""

from . import dense, gelu
from ._nb import NJIT, NJIT_SUMS, njit


@njit(**NJIT_SUMS)
def vector_sum(a):
    """The sum of a 1-D array, reassociated so that it vectorises (a bias gradient's order: fixed
    for a given machine and length). Summed in the derivative's own loop, in order, db's one
    chain of dependent adds took 9x that loop's time (1.38 against 0.16 ms a batch on the
    fashion_mnist_cnn recipe's first layer, AMD EPYC)."""
    s = a.dtype.type(0)
    for t in range(a.shape[0]):
        s += a[t]
    return s


# A block's GEMM output z (O, nb span) holds sample t's output row oh at columns
# t span + oh rs + [0, Wo): (span, rs) = (L, Wo) for compact columns, (Lw, Wp) for wide ones.
@njit(**NJIT)
def unfold_bias_act(z, b, code, y3, s0, nb, span, rs, wo):
    """y3[s0 + t, o, oh Wo + ow] <- act(z[o, t span + oh rs + ow] + b[o]) for the block's nb
    samples (ReLU and identity in this pass; tanh and sigmoid are applied to the whole output
    afterwards)."""
    o_out, l = y3.shape[1], y3.shape[2]
    ho, wo = (1, l) if rs == wo else (l // wo, wo)  # compact columns: one row of L per (t, o)
    zero = y3.dtype.type(0)
    relu = code == dense.RELU
    for t in range(nb):
        for o in range(o_out):
            bo = zero if b.shape[0] == 0 else b[o]  # zero-length b: no bias
            for oh in range(ho):
                src, dst = z[o, t * span + oh * rs : t * span + oh * rs + wo], y3[s0 + t, o, oh * wo : (oh + 1) * wo]
                if relu:
                    for k in range(wo):
                        v = src[k] + bo
                        dst[k] = zero if v < zero else v  # np.maximum(v, 0): NaN stays NaN
                else:
                    for k in range(wo):
                        dst[k] = src[k] + bo


@njit(**NJIT)
def unfold_bias_gelu(z, b, tanh_form, y3, pre3, s0, nb, span, rs, wo):
    """pre3[s0 + t, o, l] <- z's entry for (t, o, l) + b[o] (kept for the backward) and
    y3 <- gelu of it."""
    unfold_bias_act(z, b, dense.IDENTITY, pre3, s0, nb, span, rs, wo)
    for t in range(nb):
        for o in range(y3.shape[1]):
            src, dst = pre3[s0 + t, o], y3[s0 + t, o]
            if tanh_form:
                for k in range(dst.shape[0]):
                    dst[k] = gelu.gelu_tanh(src[k])
            else:
                for k in range(dst.shape[0]):
                    dst[k] = gelu.gelu(src[k])


@njit(**NJIT)
def fold_grad(y3, gy3, code, s0, nb, dz, acc):
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
                    dz[o, base + k] = dense.d_relu(y3[s, o, k], gy3[s, o, k], one, zero)
            elif code == dense.TANH:
                for k in range(l):
                    dz[o, base + k] = dense.d_tanh(y3[s, o, k], gy3[s, o, k], one)
            elif code == dense.SIGMOID:
                for k in range(l):
                    dz[o, base + k] = dense.d_sigmoid(y3[s, o, k], gy3[s, o, k], one)
            elif code == dense.GELU:  # y3 is the pre-activation here
                for k in range(l):
                    dz[o, base + k] = dense.d_gelu(y3[s, o, k], gy3[s, o, k])
            elif code == dense.GELU_TANH:
                for k in range(l):
                    dz[o, base + k] = dense.d_gelu_tanh(y3[s, o, k], gy3[s, o, k])
            else:
                for k in range(l):
                    dz[o, base + k] = gy3[s, o, k]
            if acc is not None:
                acc[o] += vector_sum(dz[o, base : base + l])


@njit(**NJIT)
def fold_grad_wide(y3, gy3, code, s0, nb, dz, acc, span, rs, wo):
    """``fold_grad`` into wide columns: dz[o, t span + oh rs + ow] <- gy[s0 + t, o, oh Wo + ow]
    act'(y[...]), and 0 in the wrap-around columns (Wo <= ow < rs). A loop per output row: on
    rows shorter than a vector it runs 2x the time of compact columns' one loop per (t, o)
    (0.9 against 0.4 ms on the mnist_convnet's 32 -> 64 layer), which the wide columns' cheaper
    im2col and col2im repay several times."""
    o_out, ho = y3.shape[1], y3.shape[2] // wo
    one, zero = dz.dtype.type(1), dz.dtype.type(0)
    for t in range(nb):
        s = s0 + t
        for o in range(o_out):
            for oh in range(ho):
                i, j = oh * wo, t * span + oh * rs  # the row's start in y and in dz
                if code == dense.RELU:
                    for k in range(wo):
                        dz[o, j + k] = dense.d_relu(y3[s, o, i + k], gy3[s, o, i + k], one, zero)
                elif code == dense.TANH:
                    for k in range(wo):
                        dz[o, j + k] = dense.d_tanh(y3[s, o, i + k], gy3[s, o, i + k], one)
                elif code == dense.SIGMOID:
                    for k in range(wo):
                        dz[o, j + k] = dense.d_sigmoid(y3[s, o, i + k], gy3[s, o, i + k], one)
                elif code == dense.GELU:  # y3 is the pre-activation here
                    for k in range(wo):
                        dz[o, j + k] = dense.d_gelu(y3[s, o, i + k], gy3[s, o, i + k])
                elif code == dense.GELU_TANH:
                    for k in range(wo):
                        dz[o, j + k] = dense.d_gelu_tanh(y3[s, o, i + k], gy3[s, o, i + k])
                else:
                    for k in range(wo):
                        dz[o, j + k] = gy3[s, o, i + k]
                if oh < ho - 1:
                    for k in range(wo, rs):
                        dz[o, j + k] = zero
            if acc is not None:  # the wrap-around columns between the rows are zeros
                acc[o] += vector_sum(dz[o, t * span : t * span + (ho - 1) * rs + wo])
