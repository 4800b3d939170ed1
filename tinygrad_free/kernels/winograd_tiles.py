"""The transforms of Winograd F(2x2, 3x3) (``winograd``), in a layout where they vectorise.

    V = B^T d B (input patch d, 4x4),  Y = A^T M A (output tile, 2x2),  U = G g G^T (weights)
    backward, their adjoints:  dP = A dY A^T,  dd = B dV B^T,  dW = G^T dU G

Each 2-D transform is two 1-D ones, each a small matrix (``BT``, ``AT`` and their transposes,
entries 0 and +-1) applied along one axis: ``_apply`` applies one to runs of values that sit a
stride apart, one loop over the run per output row with its two or three terms, which the
compiler vectorises.

The layouts that make the runs long: inside the kernels a sample's padded input and its
gradient sit channel-last with even and odd columns apart, xq[h, w % 2, w // 2, c] (flat, K = tw
+ 1 columns of each parity; ``pad_sample``), so that place (a, b) of the 4x4 patches of a row of
tw tiles is one contiguous run of tw C values, and so is each position p = 4 r + l of their
transform in V (16, T, C). On the outputs' side the GEMM writes M (16, T, O): a sample's tiles are
one run of th tw O values per position, and the 2x2 places of the output tiles are set apart
(Yt[2 a + b, i tw + j, o] = Y[o, 2 i + a, 2 j + b]) and then woven into the NCHW output, as dz
is taken apart into them for the backward. Only these weavings (and ``pad_sample``,
``crop_sample``) are scalar loops. The loops over the tiles that did one patch at a time (16
scalar stores each) took, on the fashion_mnist_cnn recipe's 32 -> 64 layer (batch 64, one
thread, AMD EPYC): input 0.90 ms (now 0.46 with the padding), output 1.12 (0.66), the gradient's
tiles 1.04 (0.61), the input gradient 0.80 (0.69 with the cropping); the layer 0.90x the time it
took forward and backward, the 64 -> 96 layer 0.84x and 0.88x.
"""

import numpy as np

from ._nb import NJIT, njit

#: V = B^T d B and Y = A^T M A (Lavin & Gray 2016); ``B`` and ``A`` for the adjoints.
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)
B = np.ascontiguousarray(BT.T)
A = np.ascontiguousarray(AT.T)


@njit(**NJIT)
def _apply(T, dst, dbase, dstride, src, sbase, sstride, n, add):
    """dst[dbase + q dstride + u] (+)= sum_r T[q, r] src[sbase + r sstride + u] for u < n and
    every row q of T (its entries 0 or +-1: at most three terms, each a +-1 product, exact)."""
    zero = dst.dtype.type(0)
    for q in range(T.shape[0]):
        d = dbase + q * dstride
        s0 = s1 = s2 = 0
        c0 = c1 = c2 = zero
        terms = 0
        for r in range(T.shape[1]):
            if T[q, r] != 0:
                c, s = dst.dtype.type(T[q, r]), sbase + r * sstride
                if terms == 0:
                    s0, c0 = s, c
                elif terms == 1:
                    s1, c1 = s, c
                else:
                    s2, c2 = s, c
                terms += 1
        # Slices first: indexed by the loop's own counter (never negative), the loops vectorise;
        # indexed by offset + u, numba's negative-index wrap-around in each access kept them scalar.
        out, x0, x1, x2 = dst[d : d + n], src[s0 : s0 + n], src[s1 : s1 + n], src[s2 : s2 + n]
        if terms == 1:
            if add:
                for u in range(n):
                    out[u] += c0 * x0[u]
            else:
                for u in range(n):
                    out[u] = c0 * x0[u]
        elif terms == 2:
            if add:
                for u in range(n):
                    out[u] += c0 * x0[u] + c1 * x1[u]
            else:
                for u in range(n):
                    out[u] = c0 * x0[u] + c1 * x1[u]
        elif add:
            for u in range(n):
                out[u] += c0 * x0[u] + c1 * x1[u] + c2 * x2[u]
        else:
            for u in range(n):
                out[u] = c0 * x0[u] + c1 * x1[u] + c2 * x2[u]


# --- the weights ------------------------------------------------------------------------------
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
def weight_grad(dU, dW, beta):
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


# --- the input and its gradient: xq[((h 2 + w % 2) K + w // 2) C + c], kc = K C ---------------------
@njit(**NJIT)
def pad_sample(xs, ph, pw, kc, xq):
    """xq <- the sample xs (C, H, W) at padded row ph + h, column pw + w; the rest of xq (the
    padding, zeros) stays."""
    n_c, h_n, w_n = xs.shape
    for h in range(h_n):
        for w in range(w_n):
            hp, wp = h + ph, w + pw
            at = (hp * 2 + (wp & 1)) * kc + (wp >> 1) * n_c
            dst = xq[at : at + n_c]  # a slice: indexed by c alone (see _apply)
            for c in range(n_c):
                dst[c] = xs[c, h, w]


@njit(**NJIT)
def crop_sample(dxq, ph, pw, kc, dxs):
    """dxs (C, H, W) <- dxq's values at padded row ph + h, column pw + w."""
    n_c, h_n, w_n = dxs.shape
    for h in range(h_n):
        for w in range(w_n):
            hp, wp = h + ph, w + pw
            at = (hp * 2 + (wp & 1)) * kc + (wp >> 1) * n_c
            src = dxq[at : at + n_c]
            for c in range(n_c):
                dxs[c, h, w] = src[c]


@njit(**NJIT)
def input_tiles(xq, th, tw, n_c, V, vt, t0, tmp):
    """V[p, t0 + i tw + j, :] <- (B^T d B)[p] for each 4x4 patch d of xq at (2i, 2j); V is flat
    (16, vt, C), tmp at least 16 tw C values."""
    n, kc = tw * n_c, (tw + 1) * n_c
    for i in range(th):
        for b in range(4):  # B^T d: place b of each row of the patches, rows 2i .. 2i + 3
            _apply(BT, tmp, b * n, 4 * n, xq, (4 * i + (b & 1)) * kc + (b >> 1) * n_c, 2 * kc, n, False)
        for r in range(4):  # then B, for each row r of that
            _apply(BT, V, (4 * r * vt + t0 + i * tw) * n_c, vt * n_c, tmp, 4 * r * n, n, n, False)


@njit(**NJIT)
def add_input_grad(V, vt, t0, th, tw, n_c, tmp, dxq):
    """dxq at the patch of each tile (2i, 2j) += B dV B^T, dV = V[:, t0 + i tw + j, :]: the
    adjoint of ``input_tiles`` (dxq zeroed by the caller; the patches overlap)."""
    n, kc = tw * n_c, (tw + 1) * n_c
    for i in range(th):
        for l in range(4):  # B dV, column l of the tiles' 4x4
            _apply(B, tmp, l * n, 4 * n, V, (l * vt + t0 + i * tw) * n_c, 4 * vt * n_c, n, False)
        for a in range(4):  # then B^T, into place (a, b) of each patch
            for b in range(4):
                _apply(
                    B[b : b + 1], dxq, (4 * i + 2 * a + (b & 1)) * kc + (b >> 1) * n_c, 0, tmp, 4 * a * n, n, n, True
                )


# --- the output and its gradient: a sample's tiles ts .. ts + th tw of M or P (flat (16, vt, O)), ------
# all channels: runs of th tw O values; the output's 2x2 places apart, Yt[2a + b, i tw + j, o] =
# Y[o, 2i + a, 2j + b], then woven into NCHW.
@njit(**NJIT)
def output_tiles(M, vt, ts, th, tw, tmp, b, ys, ho, wo):
    """ys (O, Ho Wo) <- A^T M A + b for one sample's tiles; tmp at least 12 th tw O values."""
    n_o = ys.shape[0]
    n = th * tw * n_o
    for l in range(4):  # A^T M: S[4a + l] = sum_r AT[a, r] M[4r + l]
        _apply(AT, tmp, l * n, 4 * n, M, (l * vt + ts) * n_o, 4 * vt * n_o, n, False)
    for a in range(2):  # then A: Yt[2a + b] = sum_l AT[b, l] S[4a + l]
        _apply(AT, tmp, (8 + 2 * a) * n, n, tmp, 4 * a * n, n, n, False)
    for h in range(ho):
        for w in range(wo):
            at = (8 + 2 * (h & 1) + (w & 1)) * n + ((h >> 1) * tw + (w >> 1)) * n_o
            src, q = tmp[at : at + n_o], h * wo + w  # a slice: indexed by o alone (see _apply)
            if b.shape[0] == 0:
                for o in range(n_o):
                    ys[o, q] = src[o]
            else:
                for o in range(n_o):
                    ys[o, q] = src[o] + b[o]


@njit(**NJIT)
def grad_tiles(dzs, ho, wo, th, tw, tmp, P, vt, ts):
    """P[:, ts + i tw + j, :] <- A dY A^T for each 2x2 tile dY of dzs (O, Ho Wo: one sample's
    dz), zero past the output; tmp at least 12 th tw O values."""
    n_o = dzs.shape[0]
    n = th * tw * n_o
    if ho % 2 or wo % 2:
        tmp[: 4 * n] = 0
    for h in range(ho):  # the tiles' places apart: D[2a + b, i tw + j, o]
        for w in range(wo):
            at = (2 * (h & 1) + (w & 1)) * n + ((h >> 1) * tw + (w >> 1)) * n_o
            dst, q = tmp[at : at + n_o], h * wo + w
            for o in range(n_o):
                dst[o] = dzs[o, q]
    for b in range(2):  # A dY: Q[2r + b] = sum_a A[r, a] D[2a + b]
        _apply(A, tmp, (4 + b) * n, 2 * n, tmp, b * n, 2 * n, n, False)
    for r in range(4):  # then A^T: P[4r + l] = sum_b A[l, b] Q[2r + b]
        _apply(A, P, (4 * r * vt + ts) * n_o, vt * n_o, tmp, (4 + 2 * r) * n, n, n, False)
