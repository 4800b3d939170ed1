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
M[p] (T, O) = V[p] (T, C) @ U[p]^T (C, O), U = G g G^T, V = B^T d B, T tiles (``winograd_tiles``
has the transforms and the channel-last layouts in which they vectorise). The identity is exact
in real arithmetic; in floats the sums round in another order than im2col's (float64: 1e-15 of
the values, float32: a few ulps more than im2col, as in cuDNN's and oneDNN's Winograd).

Why F(2x2, 3x3) and not F(4x4, 3x3), which needs 1.8x fewer multiplications still: its 6x6
transforms have more terms per value and 36 positions, and in the same vectorised layout it
took 1.11x and 1.21x this module's time forward and backward on the fashion_mnist_cnn recipe's
32 -> 64 layer, 1.11x and 1.41x on its 64 -> 96 layer (batch 64, one thread, AMD EPYC); its
float32 results are also ten times further from the exact ones (4e-6 of the largest output
against 3e-7).

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
from . import winograd_tiles as tiles
from ._nb import NJIT, NJIT_SUMS, njit
from .conv_activation import fold_grad
from .conv_blocks import all_finite, part_bounds
from .parallel import NJIT_PARALLEL, prange

#: Input channels from which ``conv`` takes this path. Below, the transforms cost more than the
#: GEMMs save (measured on the 2-core AMD EPYC, batch 64, 14x14, one thread, against im2col:
#: 8 -> 16 channels 1.41x the time forward and 2.37x backward, 16 -> 32 0.92x and 0.79x,
#: 32 -> 64 0.64x and 0.62x); the first layer of an image network, one channel, stays with im2col.
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
def _forward_part(x, U, b, ph, pw, ho, wo, relu, y3, nb, lo, hi, xq, V, M, tmp):
    th, tw = tiles_of(ho, wo)
    n_o, c_in, lt = U.shape[1], U.shape[2], th * tw
    vt, kc = nb * lt, (tw + 1) * c_in
    V3, M3 = V.reshape(16, vt, c_in), M.reshape(16, vt, n_o)
    check = y3.dtype.type(0)
    for s0 in range(lo, hi, nb):
        m = min(nb, hi - s0)
        for s in range(m):
            tiles.pad_sample(x[s0 + s], ph, pw, kc, xq)
            tiles.input_tiles(xq, th, tw, c_in, V, vt, s * lt, tmp)
        nt = m * lt
        for p in range(16):
            blas.gemm(V3[p, :nt], U[p].T, M3[p, :nt], 0.0)
        for s in range(m):
            tiles.output_tiles(M, vt, s * lt, th, tw, tmp, b, y3[s0 + s], ho, wo)
        check += _check_relu(y3, s0, m, relu)
    return check


@njit(**NJIT)
def _scratch(x, n_o, nb, ho, wo, sets, like):
    """Per set (one per part at once): xq, the padded sample (``winograd_tiles``, zeros); V (16,
    nb tiles, C) and M (or P) (16, nb tiles, O), flat; tmp for the transforms' values between
    their two halves."""
    c_in = x.shape[1]
    th, tw = tiles_of(ho, wo)
    vt = nb * th * tw
    xq = np.zeros((sets, (2 * th + 2) * 2 * (tw + 1) * c_in), like.dtype)
    V = np.empty((sets, 16 * vt * c_in), like.dtype)
    M = np.empty((sets, 16 * vt * n_o), like.dtype)
    tmp = np.empty((sets, max(16 * tw * c_in, 12 * th * tw * n_o)), like.dtype)
    return xq, V, M, tmp


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
    U = np.empty((16, W.shape[0], c_in), y3.dtype)
    tiles.weight_transform(W, U)
    xq, V, M, tmp = _scratch(x, W.shape[0], nb, ho, wo, sets, y3)
    return ho, wo, U, xq, V, M, tmp


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
    ho, wo, U, xq, V, M, tmp = _forward_scratch(x, W, b, ph, pw, y3, nb, 1)
    check = y3.dtype.type(0)
    for p in range(parts):
        lo, hi = part_bounds(x.shape[0], nb, parts, p)
        check += _forward_part(x, U, b, ph, pw, ho, wo, code == dense.RELU, y3, nb, lo, hi, xq[0], V[0], M[0], tmp[0])
    return _finish(y3, code, check)


@njit(**NJIT_PARALLEL)
def forward_parallel(x, W, b, ph, pw, code, y3, nb, parts):
    """The same parts on numba's threads, each part's GEMMs on its own thread alone."""
    ho, wo, U, xq, V, M, tmp = _forward_scratch(x, W, b, ph, pw, y3, nb, parts)
    checks = np.zeros(parts, y3.dtype)
    for p in prange(parts):
        lo, hi = part_bounds(x.shape[0], nb, parts, p)
        before = blas.threads_local(1)
        relu = code == dense.RELU
        checks[p] = _forward_part(x, U, b, ph, pw, ho, wo, relu, y3, nb, lo, hi, xq[p], V[p], M[p], tmp[p])
        blas.threads_local(before)
    return _finish(y3, code, checks.sum())


# --- backward -------------------------------------------------------------------------------------
@njit(**NJIT)
def _backward_part(x, U, y3, gy3, code, ph, pw, ho, wo, dx, nb, lo, hi, xq, dxq, V, P, tmp, dz, dU, acc):
    th, tw = tiles_of(ho, wo)
    n_o, c_in, lt, l = U.shape[1], U.shape[2], th * tw, ho * wo
    vt, kc = nb * lt, (tw + 1) * c_in
    V3, P3 = V.reshape(16, vt, c_in), P.reshape(16, vt, n_o)
    for s0 in range(lo, hi, nb):
        m = min(nb, hi - s0)
        for s in range(m):
            tiles.pad_sample(x[s0 + s], ph, pw, kc, xq)
            tiles.input_tiles(xq, th, tw, c_in, V, vt, s * lt, tmp)
        fold_grad(y3, gy3, code, s0, m, dz, acc)
        for s in range(m):
            tiles.grad_tiles(dz[:, s * l : (s + 1) * l], ho, wo, th, tw, tmp, P, vt, s * lt)
        nt = m * lt
        for p in range(16):
            blas.gemm(P3[p, :nt].T, V3[p, :nt], dU[p], 1.0)
            if dx.shape[0] != 0:  # V[p] is spent: it takes dV[p]
                blas.gemm(P3[p, :nt], U[p], V3[p, :nt], 0.0)
        if dx.shape[0] != 0:
            for s in range(m):
                dxq[:] = 0
                tiles.add_input_grad(V, vt, s * lt, th, tw, c_in, tmp, dxq)
                tiles.crop_sample(dxq, ph, pw, kc, dx[s0 + s])


@njit(**NJIT)
def _backward_scratch(x, W, y3, db, ph, pw, dx, nb, parts, sets):
    n, c_in, h, w = x.shape
    o_out = W.shape[0]
    ho, wo = h + 2 * ph - 2, w + 2 * pw - 2
    if y3.shape[0] != n or y3.shape[1] != o_out or y3.shape[2] != ho * wo:
        raise ValueError("winograd: y must be (N, O, Ho, Wo)")
    if db.shape[0] != 0 and db.shape[0] != o_out:
        raise ValueError("winograd: db must have W.shape[0] elements")
    U = np.empty((16, o_out, c_in), y3.dtype)
    tiles.weight_transform(W, U)
    xq, V, P, tmp = _scratch(x, o_out, nb, ho, wo, sets, y3)
    dxq = np.empty_like(xq)
    dz = np.empty((sets, o_out, nb * ho * wo), y3.dtype)
    dU = np.zeros((parts, 16, o_out, c_in), y3.dtype)
    return ho, wo, U, xq, dxq, V, P, tmp, dz, dU, np.zeros((parts, o_out), y3.dtype)


@njit(**NJIT)
def _finish_backward(dU, acc, dW, beta, db, dx):
    """dW <- the parts' dU summed in part order, transformed back (+ beta dW); db += acc's sum.
    True (and nothing written to dW or db) when dW or dx is not finite: im2col redoes the call."""
    for p in range(1, dU.shape[0]):
        dU[0] += dU[p]
        acc[0] += acc[p]
    if not all_finite(dU[0]) or not all_finite(dx):
        return True
    tiles.weight_grad(dU[0], dW, beta)
    for o in range(db.shape[0]):
        db[o] += acc[0, o]
    return False


@njit(**NJIT)
def backward(x, W, y3, gy3, code, dW, beta, db, ph, pw, dx, nb, parts):
    """dW <- dL/dW (+ beta dW), db += dL/db, dx <- dL/dx (if not None), parts one after the
    other; True when im2col must redo the call (``_finish_backward``)."""
    ho, wo, U, xq, dxq, V, P, tmp, dz, dU, acc = _backward_scratch(x, W, y3, db, ph, pw, dx, nb, parts, 1)
    for p in range(parts):
        lo, hi = part_bounds(x.shape[0], nb, parts, p)
        args = (xq[0], dxq[0], V[0], P[0], tmp[0], dz[0], dU[p], acc[p])
        _backward_part(x, U, y3, gy3, code, ph, pw, ho, wo, dx, nb, lo, hi, *args)
    return _finish_backward(dU, acc, dW, beta, db, dx)


@njit(**NJIT_PARALLEL)
def backward_parallel(x, W, y3, gy3, code, dW, beta, db, ph, pw, dx, nb, parts):
    """The same parts on numba's threads, each part's GEMMs on its own thread alone."""
    ho, wo, U, xq, dxq, V, P, tmp, dz, dU, acc = _backward_scratch(x, W, y3, db, ph, pw, dx, nb, parts, parts)
    for p in prange(parts):
        lo, hi = part_bounds(x.shape[0], nb, parts, p)
        before = blas.threads_local(1)
        args = (xq[p], dxq[p], V[p], P[p], tmp[p], dz[p], dU[p], acc[p])
        _backward_part(x, U, y3, gy3, code, ph, pw, ho, wo, dx, nb, lo, hi, *args)
        blas.threads_local(before)
    return _finish_backward(dU, acc, dW, beta, db, dx)
