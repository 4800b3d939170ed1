"""Winograd F(2x2, 3x3): 3x3 convolutions of stride 1 with 2.25x fewer multiplications (``conv``
calls these for layers of ``MIN_CHANNELS`` input channels or more; Lavin & Gray, "Fast Algorithms
for Convolutional Neural Networks", CVPR 2016).

The output is cut into 2x2 tiles; tile (i, j) of sample n reads the 4x4 patch d of the padded
input at rows 2i.., columns 2j.. (zeros past the input), and for each output channel o

    Y = A^T [ sum_c (G g_oc G^T) * (B^T d_c B) ] A          (* elementwise, 4x4)

    B^T = [1  0 -1  0]      G = [ 1    0    0 ]      A^T = [1  1  1  0]
          [0  1  1  0]          [1/2  1/2  1/2]            [0  1 -1 -1]
          [0 -1  1  0]          [1/2 -1/2  1/2]
          [0  1  0 -1]          [ 0    0    1 ]

so each of the 16 positions p of the 4x4 transform is one GEMM over the channels:
M[p] (O, T) = U[p] (O, C) @ V[p] (C, T), U = G g G^T, V = B^T d B, T tiles. The identity is exact
in real arithmetic; in floats the sums round in another order than im2col's (float64: 1e-15 of
the values, float32: a few ulps more than im2col, as in cuDNN's and oneDNN's Winograd).

Backward, the adjoint of each step: with dP = A dY A^T per tile (dY the 2x2 tile of
dz = gy act'(y), zero past the output),

    dU[p] = sum over tiles dP[p] V[p]^T  -> dW = G^T dU G          (3x3 per (o, c))
    dV[p] = U[p]^T dP[p]                 -> dd = B dV B^T, added into dx's patch

Blocks of whole samples (about ``TILE_BLOCK`` tiles) keep V, M and dP in the cache, and parts of
whole blocks run on numba's threads as ``conv_blocks``'s do (each part its own scratch and
partial sums, added in part order: the thread count changes no bit).

Non-finite numbers: a transform mixes a patch's 16 inputs, so one inf makes NaN of all four
outputs of its tile where the direct method gives inf at some and finite values at others. The
kernels report any non-finite output (forward: before the activation; backward: dW or dx) and
``conv`` then runs the call again by im2col, whose inf/NaN pattern is the direct method's.
"""

import numpy as np

from . import blas, dense
from ._nb import NJIT, NJIT_SUMS, njit
from .conv_activation import fold_grad
from .conv_blocks import all_finite, part_bounds
from .parallel import NJIT_PARALLEL, prange

#: Input channels from which ``conv`` takes this path. Below, the transforms cost more than the
#: GEMMs save (measured on the 2-core AMD EPYC, batch 64, 14x14, one thread, against im2col:
#: 8 -> 16 channels 1.29x the time forward and 1.27x backward, 16 -> 32 0.93x and 0.79x,
#: 32 -> 64 0.69x and 0.63x); the first layer of an image network, one channel, stays with im2col.
MIN_CHANNELS = 16
#: Tiles per block: the GEMMs of 256-512 tiles ran at full speed, whole-batch ones slower.
TILE_BLOCK = 256


def possible(kh, kw, sh, sw):
    """Whether these kernels can compute a layer of this kernel size and stride (3x3, stride 1)."""
    return kh == 3 and kw == 3 and sh == 1 and sw == 1


def applies(c_in, kh, kw, sh, sw):
    """Whether ``conv`` runs a layer of these sizes through this module by default."""
    return possible(kh, kw, sh, sw) and c_in >= MIN_CHANNELS


@njit(**NJIT)
def tiles_of(ho, wo):
    """(th, tw): 2x2 output tiles per column and per row."""
    return (ho + 1) // 2, (wo + 1) // 2


def block_samples(ho, wo, n):
    """Samples per block: about ``TILE_BLOCK`` tiles, at least one sample, at most the batch."""
    th, tw = tiles_of(ho, wo)
    return int(max(1, min(n, TILE_BLOCK // (th * tw))))


# --- the four small transforms (4 or 2 values along one axis) ---------------------------------
@njit(inline="always")
def _bt(a0, a1, a2, a3):
    return a0 - a2, a1 + a2, a2 - a1, a1 - a3


@njit(inline="always")
def _at(a0, a1, a2, a3):
    return a0 + a1 + a2, a1 - a2 - a3


@njit(inline="always")
def _a(a0, a1):
    return a0, a0 + a1, a0 - a1, -a1


@njit(inline="always")
def _b(a0, a1, a2, a3):
    return a0, a1 - a2 + a3, a1 + a2 - a0, -a3


@njit(inline="always")
def _g(a0, a1, a2, half):
    return a0, (a0 + a1 + a2) * half, (a0 - a1 + a2) * half, a2


@njit(inline="always")
def _gt(a0, a1, a2, a3, half):
    return a0 + (a1 + a2) * half, (a1 - a2) * half, (a1 + a2) * half + a3


@njit(**NJIT)
def weight_transform(W, U):
    """U[p, o, c] <- (G W[o, c] G^T)[p] for W (O, C, 3, 3), U (16, O, C)."""
    half = W.dtype.type(0.5)
    for o in range(W.shape[0]):
        for c in range(W.shape[1]):
            g = W[o, c]
            r00, r10, r20, r30 = _g(g[0, 0], g[1, 0], g[2, 0], half)  # G g, column by column
            r01, r11, r21, r31 = _g(g[0, 1], g[1, 1], g[2, 1], half)
            r02, r12, r22, r32 = _g(g[0, 2], g[1, 2], g[2, 2], half)
            U[0, o, c], U[1, o, c], U[2, o, c], U[3, o, c] = _g(r00, r01, r02, half)  # then G^T, row by row
            U[4, o, c], U[5, o, c], U[6, o, c], U[7, o, c] = _g(r10, r11, r12, half)
            U[8, o, c], U[9, o, c], U[10, o, c], U[11, o, c] = _g(r20, r21, r22, half)
            U[12, o, c], U[13, o, c], U[14, o, c], U[15, o, c] = _g(r30, r31, r32, half)


@njit(**NJIT)
def _weight_grad(dU, dW, beta):
    """dW[o, c] <- G^T dU[:, o, c] G (+ beta dW): the adjoint of ``weight_transform``."""
    half = dW.dtype.type(0.5)
    for o in range(dW.shape[0]):
        for c in range(dW.shape[1]):
            q00, q10, q20 = _gt(dU[0, o, c], dU[4, o, c], dU[8, o, c], dU[12, o, c], half)  # G^T dU, columns
            q01, q11, q21 = _gt(dU[1, o, c], dU[5, o, c], dU[9, o, c], dU[13, o, c], half)
            q02, q12, q22 = _gt(dU[2, o, c], dU[6, o, c], dU[10, o, c], dU[14, o, c], half)
            q03, q13, q23 = _gt(dU[3, o, c], dU[7, o, c], dU[11, o, c], dU[15, o, c], half)
            g = dW[o, c]
            for k, row in enumerate(
                (_gt(q00, q01, q02, q03, half), _gt(q10, q11, q12, q13, half), _gt(q20, q21, q22, q23, half))
            ):
                for col in range(3):
                    g[k, col] = row[col] + beta * g[k, col] if beta != 0 else row[col]


@njit(**NJIT)
def _pad(xs, ph, pw, xp):
    """xp[:, ph : ph + H, pw : pw + W] <- xs (C, H, W); the rest of xp stays zero."""
    for c in range(xs.shape[0]):
        for h in range(xs.shape[1]):
            d, s = xp[c, ph + h], xs[c, h]
            for q in range(xs.shape[2]):
                d[pw + q] = s[q]


@njit(**NJIT)
def _input_tiles(xp, th, tw, V, t0):
    """V[:, c, t0 + i tw + j] <- B^T d B for the 4x4 patch d of xp (C, Hp, Wp) at (2i, 2j)."""
    for c in range(xp.shape[0]):
        for i in range(th):
            r0, r1, r2, r3 = xp[c, 2 * i], xp[c, 2 * i + 1], xp[c, 2 * i + 2], xp[c, 2 * i + 3]
            v0, v1, v2, v3 = V[0:4, c], V[4:8, c], V[8:12, c], V[12:16, c]
            for j in range(tw):
                q, t = 2 * j, t0 + i * tw + j
                t00, t10, t20, t30 = _bt(r0[q], r1[q], r2[q], r3[q])  # B^T d, column by column
                t01, t11, t21, t31 = _bt(r0[q + 1], r1[q + 1], r2[q + 1], r3[q + 1])
                t02, t12, t22, t32 = _bt(r0[q + 2], r1[q + 2], r2[q + 2], r3[q + 2])
                t03, t13, t23, t33 = _bt(r0[q + 3], r1[q + 3], r2[q + 3], r3[q + 3])
                v0[0, t], v0[1, t], v0[2, t], v0[3, t] = _bt(t00, t01, t02, t03)  # then B, row by row
                v1[0, t], v1[1, t], v1[2, t], v1[3, t] = _bt(t10, t11, t12, t13)
                v2[0, t], v2[1, t], v2[2, t], v2[3, t] = _bt(t20, t21, t22, t23)
                v3[0, t], v3[1, t], v3[2, t], v3[3, t] = _bt(t30, t31, t32, t33)


@njit(inline="always")
def _tile_out(M, o, t):
    """A^T M[:, o, t] A: the tile's 2x2 outputs (y00, y01, y10, y11)."""
    s00, s10 = _at(M[0, o, t], M[4, o, t], M[8, o, t], M[12, o, t])
    s01, s11 = _at(M[1, o, t], M[5, o, t], M[9, o, t], M[13, o, t])
    s02, s12 = _at(M[2, o, t], M[6, o, t], M[10, o, t], M[14, o, t])
    s03, s13 = _at(M[3, o, t], M[7, o, t], M[11, o, t], M[15, o, t])
    y00, y01 = _at(s00, s01, s02, s03)
    y10, y11 = _at(s10, s11, s12, s13)
    return y00, y01, y10, y11


@njit(**NJIT)
def _output_tiles(M, b, y3, s0, m, ho, wo):
    """y3[s0 + t, o] <- A^T M A + b[o] for the block's m samples. Whole tiles run in loops with no
    branch (the last column and row of tiles of an odd output apart), which the compiler can
    vectorise."""
    th, tw = tiles_of(ho, wo)
    zero = y3.dtype.type(0)
    full = wo // 2
    for o in range(y3.shape[1]):
        bo = zero if b.shape[0] == 0 else b[o]
        for s in range(m):
            out = y3[s0 + s, o]
            for i in range(th):
                t0 = (s * th + i) * tw
                top = out[2 * i * wo : (2 * i + 1) * wo]
                if 2 * i + 1 < ho:
                    low = out[(2 * i + 1) * wo : (2 * i + 2) * wo]
                    for j in range(full):
                        y00, y01, y10, y11 = _tile_out(M, o, t0 + j)
                        top[2 * j], top[2 * j + 1] = y00 + bo, y01 + bo
                        low[2 * j], low[2 * j + 1] = y10 + bo, y11 + bo
                    if full < tw:
                        y00, y01, y10, y11 = _tile_out(M, o, t0 + full)
                        top[2 * full], low[2 * full] = y00 + bo, y10 + bo
                else:
                    for j in range(full):
                        y00, y01, y10, y11 = _tile_out(M, o, t0 + j)
                        top[2 * j], top[2 * j + 1] = y00 + bo, y01 + bo
                    if full < tw:
                        y00, y01, y10, y11 = _tile_out(M, o, t0 + full)
                        top[2 * full] = y00 + bo


@njit(**NJIT_SUMS)
def _check_relu(y3, s0, m, relu):
    """0 when the block's outputs are all finite, NaN otherwise (the sum of v * 0: reassociating
    it changes nothing, so it vectorises); then the ReLU in place when ``relu``. A pass of its own:
    inside the tiles' loop the ReLU's unpredictable branch doubled the whole forward's time."""
    zero = y3.dtype.type(0)
    check = zero
    for s in range(s0, s0 + m):
        for o in range(y3.shape[1]):
            out = y3[s, o]
            for k in range(out.shape[0]):
                check += out[k] * zero
            if relu:
                for k in range(out.shape[0]):
                    v = out[k]
                    out[k] = zero if v < zero else v  # np.maximum(v, 0): NaN stays NaN
    return check


@njit(**NJIT)
def _forward_part(x, U, b, ph, pw, ho, wo, relu, y3, nb, lo, hi, xp, V, M):
    th, tw = tiles_of(ho, wo)
    o_out, c_in = U.shape[1], U.shape[2]
    check = y3.dtype.type(0)
    for s0 in range(lo, hi, nb):
        m = min(nb, hi - s0)
        for s in range(m):
            _pad(x[s0 + s], ph, pw, xp)
            _input_tiles(xp, th, tw, V, s * th * tw)
        nt = m * th * tw
        for p in range(16):
            blas.gemm(U[p], V[p, :c_in, :nt], M[p, :o_out, :nt], 0.0)
        _output_tiles(M, b, y3, s0, m, ho, wo)
        check += _check_relu(y3, s0, m, relu)
    return check


@njit(**NJIT)
def _transformed(sets, rows, nt, like):
    """Scratch for ``sets`` sets of 16 (rows, nt) matrices of ``like``'s dtype, one per transform position, laid out so
    that the 16 positions' and the rows' starts fall on different cache sets: each row is an odd
    number of 64-byte lines, and so is each position (a row more when ``rows`` is even). With
    power-of-two strides (64 channels of 256 tiles: 64 KB) the transforms' 16 streams all map to
    one set of the L1 cache, and the 7x7 layer's input transform ran 10x slower per tile."""
    per = 64 // like.itemsize
    lines = -(-nt // per)
    lines += 1 - lines % 2
    return np.empty((sets, 16, rows + 1 - rows % 2, lines * per), like.dtype)


@njit(**NJIT)
def _forward_scratch(x, W, b, ph, pw, y3, nb, sets):
    n, c_in, h, w = x.shape
    if W.shape[1] != c_in or W.shape[2] != 3 or W.shape[3] != 3:
        raise ValueError("winograd: W must be (O, C, 3, 3) with x's C")
    ho, wo = h + 2 * ph - 2, w + 2 * pw - 2
    if y3.shape[0] != n or y3.shape[1] != W.shape[0] or y3.shape[2] != ho * wo:
        raise ValueError("winograd: y must be (N, O, Ho, Wo)")
    if b.shape[0] != 0 and b.shape[0] != W.shape[0]:
        raise ValueError("winograd: b must have W.shape[0] elements")
    th, tw = tiles_of(ho, wo)
    U = np.empty((16, W.shape[0], c_in), y3.dtype)
    weight_transform(W, U)
    xp = np.zeros((sets, c_in, 2 * th + 2, 2 * tw + 2), y3.dtype)
    V = _transformed(sets, c_in, nb * th * tw, y3)
    M = _transformed(sets, W.shape[0], nb * th * tw, y3)
    return ho, wo, U, xp, V, M


@njit(**NJIT)
def _finish(y3, code, check):
    """0: done; 1: NumPy must still apply the activation (``dense.finish_act``); 2: an output was
    not finite, run the call again by im2col."""
    if check != 0:
        return 2
    if code == dense.RELU or code == dense.IDENTITY:
        return 0
    return 1 if dense.bias_act_2d(y3.reshape(y3.shape[0] * y3.shape[1], y3.shape[2]), None, code) else 0


@njit(**NJIT)
def forward(x, W, b, ph, pw, code, y3, nb, parts):
    """y = act(conv(x, W) + b), parts one after the other on this thread; see ``_finish``. No bias
    is a zero-length b, and in the backward no db a zero-length db and no input gradient a dx of no
    samples: one compiled variant where None would make one per combination (each ~6 s)."""
    ho, wo, U, xp, V, M = _forward_scratch(x, W, b, ph, pw, y3, nb, 1)
    check = y3.dtype.type(0)
    for p in range(parts):
        lo, hi = part_bounds(x.shape[0], nb, parts, p)
        check += _forward_part(x, U, b, ph, pw, ho, wo, code == dense.RELU, y3, nb, lo, hi, xp[0], V[0], M[0])
    return _finish(y3, code, check)


@njit(**NJIT_PARALLEL)
def forward_parallel(x, W, b, ph, pw, code, y3, nb, parts):
    """The same parts on numba's threads, each part's GEMMs on its own thread alone."""
    ho, wo, U, xp, V, M = _forward_scratch(x, W, b, ph, pw, y3, nb, parts)
    checks = np.zeros(parts, y3.dtype)
    for p in prange(parts):
        lo, hi = part_bounds(x.shape[0], nb, parts, p)
        before = blas.threads_local(1)
        checks[p] = _forward_part(x, U, b, ph, pw, ho, wo, code == dense.RELU, y3, nb, lo, hi, xp[p], V[p], M[p])
        blas.threads_local(before)
    return _finish(y3, code, checks.sum())


# --- backward -------------------------------------------------------------------------------------
@njit(**NJIT)
def _grad_tiles(dz, m, ho, wo, P):
    """P[:, o, t] <- A dY A^T for each 2x2 tile dY of dz (O, m Ho Wo), zero past the output."""
    th, tw = tiles_of(ho, wo)
    zero = P.dtype.type(0)
    l = ho * wo
    for o in range(dz.shape[0]):
        for s in range(m):
            g = dz[o, s * l : (s + 1) * l]
            for i in range(th):
                h = 2 * i
                for j in range(tw):
                    t, w = (s * th + i) * tw + j, 2 * j
                    d00 = g[h * wo + w]
                    d01 = g[h * wo + w + 1] if w + 1 < wo else zero
                    d10 = g[(h + 1) * wo + w] if h + 1 < ho else zero
                    d11 = g[(h + 1) * wo + w + 1] if h + 1 < ho and w + 1 < wo else zero
                    u00, u10, u20, u30 = _a(d00, d10)  # A dY, column by column
                    u01, u11, u21, u31 = _a(d01, d11)
                    P[0, o, t], P[1, o, t], P[2, o, t], P[3, o, t] = _a(u00, u01)  # then A^T, row by row
                    P[4, o, t], P[5, o, t], P[6, o, t], P[7, o, t] = _a(u10, u11)
                    P[8, o, t], P[9, o, t], P[10, o, t], P[11, o, t] = _a(u20, u21)
                    P[12, o, t], P[13, o, t], P[14, o, t], P[15, o, t] = _a(u30, u31)


@njit(inline="always")
def _add4(row, q, e):
    row[q] += e[0]
    row[q + 1] += e[1]
    row[q + 2] += e[2]
    row[q + 3] += e[3]


@njit(**NJIT)
def _add_input_grad(V, th, tw, t0, dxp):
    """dxp[c, 2i.., 2j..] += B V[:, c, t] B^T for each tile t = t0 + i tw + j, in tile order."""
    for c in range(dxp.shape[0]):
        for i in range(th):
            for j in range(tw):
                t = t0 + i * tw + j
                c00, c10, c20, c30 = _b(V[0, c, t], V[4, c, t], V[8, c, t], V[12, c, t])  # B dV, columns
                c01, c11, c21, c31 = _b(V[1, c, t], V[5, c, t], V[9, c, t], V[13, c, t])
                c02, c12, c22, c32 = _b(V[2, c, t], V[6, c, t], V[10, c, t], V[14, c, t])
                c03, c13, c23, c33 = _b(V[3, c, t], V[7, c, t], V[11, c, t], V[15, c, t])
                q = 2 * j
                _add4(dxp[c, 2 * i], q, _b(c00, c01, c02, c03))  # then B^T, row by row
                _add4(dxp[c, 2 * i + 1], q, _b(c10, c11, c12, c13))
                _add4(dxp[c, 2 * i + 2], q, _b(c20, c21, c22, c23))
                _add4(dxp[c, 2 * i + 3], q, _b(c30, c31, c32, c33))


@njit(**NJIT)
def _backward_part(x, U, y3, gy3, code, ph, pw, ho, wo, dx, nb, lo, hi, xp, dxp, V, P, dz, dU, acc):
    th, tw = tiles_of(ho, wo)
    h, w = x.shape[2], x.shape[3]
    o_out, c_in = U.shape[1], U.shape[2]
    for s0 in range(lo, hi, nb):
        m = min(nb, hi - s0)
        for s in range(m):
            _pad(x[s0 + s], ph, pw, xp)
            _input_tiles(xp, th, tw, V, s * th * tw)
        fold_grad(y3, gy3, code, s0, m, dz, acc)
        _grad_tiles(dz, m, ho, wo, P)
        nt = m * th * tw
        for p in range(16):
            blas.gemm(P[p, :o_out, :nt], V[p, :c_in, :nt].T, dU[p], 1.0)
            if dx.shape[0] != 0:  # V[p] is spent: it takes dV[p]
                blas.gemm(U[p].T, P[p, :o_out, :nt], V[p, :c_in, :nt], 0.0)
        if dx.shape[0] != 0:
            for s in range(m):
                dxp[:] = 0
                _add_input_grad(V, th, tw, s * th * tw, dxp)
                dxs = dx[s0 + s]
                for c in range(dxs.shape[0]):
                    for r in range(h):
                        dst, src = dxs[c, r], dxp[c, ph + r]
                        for q in range(w):
                            dst[q] = src[pw + q]


@njit(**NJIT)
def _backward_scratch(x, W, y3, db, ph, pw, dx, nb, parts, sets):
    n, c_in, h, w = x.shape
    o_out = W.shape[0]
    ho, wo = h + 2 * ph - 2, w + 2 * pw - 2
    if y3.shape[0] != n or y3.shape[1] != o_out or y3.shape[2] != ho * wo:
        raise ValueError("winograd: y must be (N, O, Ho, Wo)")
    if db.shape[0] != 0 and db.shape[0] != o_out:
        raise ValueError("winograd: db must have W.shape[0] elements")
    th, tw = tiles_of(ho, wo)
    U = np.empty((16, o_out, c_in), y3.dtype)
    weight_transform(W, U)
    nt = nb * th * tw
    xp = np.zeros((sets, c_in, 2 * th + 2, 2 * tw + 2), y3.dtype)
    dxp = np.empty((sets, c_in, 2 * th + 2, 2 * tw + 2), y3.dtype)
    V = _transformed(sets, c_in, nt, y3)
    P = _transformed(sets, o_out, nt, y3)
    dz = np.empty((sets, o_out, nb * ho * wo), y3.dtype)
    dU = np.zeros((parts, 16, o_out, c_in), y3.dtype)
    return ho, wo, U, xp, dxp, V, P, dz, dU, np.zeros((parts, o_out), y3.dtype)


@njit(**NJIT)
def _finish_backward(dU, acc, dW, beta, db, dx):
    """dW <- the parts' dU summed in part order, transformed back (+ beta dW); db += acc's sum.
    True (and nothing written to dW or db) when dW or dx is not finite: im2col redoes the call."""
    for p in range(1, dU.shape[0]):
        dU[0] += dU[p]
        acc[0] += acc[p]
    if not all_finite(dU[0]) or not all_finite(dx):
        return True
    _weight_grad(dU[0], dW, beta)
    for o in range(db.shape[0]):
        db[o] += acc[0, o]
    return False


@njit(**NJIT)
def backward(x, W, y3, gy3, code, dW, beta, db, ph, pw, dx, nb, parts):
    """dW <- dL/dW (+ beta dW), db += dL/db, dx <- dL/dx (if not None), parts one after the
    other; True when im2col must redo the call (``_finish_backward``)."""
    ho, wo, U, xp, dxp, V, P, dz, dU, acc = _backward_scratch(x, W, y3, db, ph, pw, dx, nb, parts, 1)
    for p in range(parts):
        lo, hi = part_bounds(x.shape[0], nb, parts, p)
        _backward_part(
            x, U, y3, gy3, code, ph, pw, ho, wo, dx, nb, lo, hi, xp[0], dxp[0], V[0], P[0], dz[0], dU[p], acc[p]
        )
    return _finish_backward(dU, acc, dW, beta, db, dx)


@njit(**NJIT_PARALLEL)
def backward_parallel(x, W, y3, gy3, code, dW, beta, db, ph, pw, dx, nb, parts):
    """The same parts on numba's threads, each part's GEMMs on its own thread alone."""
    ho, wo, U, xp, dxp, V, P, dz, dU, acc = _backward_scratch(x, W, y3, db, ph, pw, dx, nb, parts, parts)
    for p in prange(parts):
        lo, hi = part_bounds(x.shape[0], nb, parts, p)
        before = blas.threads_local(1)
        _backward_part(
            x, U, y3, gy3, code, ph, pw, ho, wo, dx, nb, lo, hi, xp[p], dxp[p], V[p], P[p], dz[p], dU[p], acc[p]
        )
        blas.threads_local(before)
    return _finish_backward(dU, acc, dW, beta, db, dx)
