"""2-D convolution kernels (NCHW): the whole layer's forward and backward (im2col, col2im: ``im2col``).

Shapes, with K = C * kh * kw and L = Ho * Wo (Ho = (H + 2 ph - kh) // sh + 1, likewise Wo):

* x (N, C, H, W), weights W2 (O, K) = the (O, C, kh, kw) weight tensor viewed as a matrix,
  as in PyTorch's ``Conv2d`` (cross-correlation, zero padding), b (O,) or None;
* cols[n]: sample n's (K, L) columns (``im2col``'s layout);
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
is written to memory or kept between forward and backward.

Wide columns (stride 1, more than one input channel; ``im2col.im2col_wide_one``): a sample is
copied into a zero-bordered scratch (C, Hp, Wp), and its columns are Lw = (Ho - 1) Wp + Wo
consecutive positions of each padded plane, so each of the K rows is one contiguous copy
instead of Ho copies of Wo elements. Column oh Wp + ow is output (oh, ow) for ow < Wo; the
Wp - Wo columns between output rows wrap around into the next row. The GEMMs compute them
(Lw / L = 141 / 121 = 1.17x the products on the 32 -> 64 layer), the forward never reads them,
and the backward gives them a zero gradient, so they add nothing to dW or dx (with finite
numbers: see ``_redo``). col2im is likewise one contiguous add per row. Measured on an Intel
Xeon (AVX-512, MKL, one thread, float32, batch 128, mnist_convnet's 32 -> 64 layer, alternated
in one process, 2026-12-06): the columns 0.55 ms instead of 2.0-3.3, col2im 0.6 instead of 2.0,
each GEMM 3.2 instead of 2.5-2.7 ms; the layer's forward 4.1-4.8 ms instead of 6.6-7.6, its
backward 9.1-10.6 instead of 12.5-14.4. MKL runs these GEMMs near the core's peak (about 200
GFLOP/s), so what is left of the layer is mostly arithmetic. The first layer (one channel, K =
9) keeps compact columns: they cost little to build, and its gradient's rows, 26 wide, run
faster as one loop of L than as Ho loops of Wo (backward 2.5 against 3.8 ms).

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
took 1.12x of.

Several threads: the batch is cut into ``PARTS`` parts of whole blocks, and with more than one
numba thread (and MKL) the parts run in a ``prange``, each with its own scratch and its own
partial dW and db, each GEMM held to its calling thread (``blas.threads_local(1)``: MKL's own
pool does not see numba's OpenMP threads and would put a second team on the same cores). The
partial sums are added in part order on one thread too, so the thread count changes no bit of
the result. Before, the loops ran on one thread and only MKL's GEMMs were threaded: every
block's small GEMM woke and synchronised MKL's second thread, and the whole training step at two
threads took 0.9-1.4x its one-thread time. Now (same process, alternated, the machine otherwise
idle, medians of 15 calls, ms, one thread / two): first layer forward 3.1-3.4 / 1.9-2.7,
backward 7.7-8.3 / 4.2-4.3; second layer forward 17.8-18.4 / 10.2-10.5, backward 32.6-34.4 /
18.0-18.2; the whole step 58-78 / 38-43 (with max pooling on both threads too).

GELU (``kernels.gelu``): its derivative needs the pre-activation, so the forward takes ``z``, an
array of y's shape that keeps W2 @ cols + b (the unfolding loop writes it and y in one pass), and
the backward is handed that z where the other activations take y.

The NumPy kernels compute the same with whole-batch (N, K, L) columns and numpy's batched
``matmul``/``tensordot``. The two agree to rounding (the GEMMs sum in different orders); im2col
and col2im are bit-identical (col2im adds each input pixel's contributions in the same (i, j)
order). The activation codes and formulas are those of ``kernels.dense``.

Why im2col + GEMM: it is correct for every shape and is the classic CPU method (Caffe;
PyTorch's slow_conv2d); the GEMM does the arithmetic at BLAS speed.

3x3 layers of stride 1 with ``winograd.MIN_CHANNELS`` (16) input channels or more take Winograd's
F(2x2, 3x3) instead (``winograd``: 16 GEMMs over the channels with 2.25x fewer multiplications in
all, the same blocks, parts and threads), forward and backward: on the 2-core AMD EPYC (one thread,
batch 64, 2026-12-06, transforms vectorised) the ``fashion_mnist_cnn`` recipe's 32 -> 64 layer on
14x14 took 0.64x the im2col forward's time and 0.62x its backward's, the 64 -> 96 one on 7x7 0.51x
and 0.54x. The
numbers are im2col's to rounding; a call whose result holds inf or NaN is done again by im2col,
whose pattern of them is the direct method's.
"""

import numpy as np

from . import blas, dense, parallel, winograd
from . import conv_blocks as blocks
from ._nb import none_as_empty, read_only
from .im2col import col2im_numpy, im2col_numpy, out_size, wide_span

#: Bytes of columns (and of as many output rows) the numba kernels build and consume at a time.
#: A block of samples' columns is built, multiplied and dropped while it sits in the core's L2
#: (512 KB on the project's CPUs), so nothing the size of the whole batch's columns is ever
#: written to memory; see the module docstring for the measurements behind it.
BLOCK_BYTES = 256 * 1024
#: Parts a batch is cut into, whole blocks each. With more than one numba thread (and MKL) the
#: parts run at once, each on one thread with its own scratch and its own partial weight and
#: bias gradients; on one thread they run one after the other. The partial sums are added in
#: part order either way, so a result does not depend on the thread count. Four parts keep two
#: threads within a block of each other and let four cores work.
PARTS = 4


def block_samples(k, l, itemsize, n, budget=None):
    """How many samples' columns (K x L each) the numba kernels handle per block: as many as fit
    in ``budget`` bytes (``BLOCK_BYTES``), at least one, at most the batch."""
    per_sample = max(1, k * l * itemsize)
    return int(max(1, min(n, (BLOCK_BYTES if budget is None else budget) // per_sample)))


# --- NumPy ---------------------------------------------------------------------------------------
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


@blas.on_one_thread
def conv2d_forward_numpy(x, W, b, sh, sw, ph, pw, code, y, z=None):
    """y (N, O, Ho, Wo) <- act(W2 @ cols[n] + b[:, None]) for every sample n, cols = im2col(x).

    W is (O, C, kh, kw); b (O,) or None; ``z`` (GELU), of y's shape, keeps the pre-activation.
    Returns y.
    """
    W2, y3, ho, wo = _check(x, W, y, sh, sw, ph, pw)
    cols = im2col_numpy(
        x, W.shape[2], W.shape[3], sh, sw, ph, pw, np.empty((x.shape[0], W2.shape[1], ho * wo), y.dtype)
    )
    pre = y3 if z is None else _pre_view(z, y)
    np.matmul(W2, cols, out=pre)
    if b is not None:
        pre += b[:, None]
    if z is not None:
        np.copyto(y3, pre)
    dense.bias_act_numpy(y, None, code)
    return y


def _pre_view(z, y):
    """z, which keeps the pre-activation, as (N, O, L) like y."""
    if z.shape != y.shape or not z.flags.c_contiguous:
        raise ValueError(f"conv2d: z must be a C-contiguous array of y's shape {y.shape}, got {z.shape}")
    return z.reshape(y.shape[0], y.shape[1], -1)


@blas.on_one_thread
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
# Blocks of samples: their columns are built (``im2col.im2col_one``), multiplied and dropped while
# they sit in the cache (see the module docstring).


def parts_of(n, nb):
    """How many parts a batch of ``n`` samples is cut into: ``PARTS``, or fewer when the batch
    has fewer blocks of ``nb`` samples. A function of the shapes only, never of the threads."""
    return int(max(1, min(PARTS, -(-n // nb))))


def _on_threads(y):
    """Whether this call's parts go to numba's threads: more than one thread, a threading layer
    that can (``parallel``), and a GEMM that can be held to its caller's thread (MKL)."""
    return blas.LOCAL_THREADS and parallel.use_parallel(y.size)


def _wide(x, sh, sw, wide):
    """Whether a call takes wide columns: ``wide`` if given (True only for stride 1), else
    every stride-1 layer with more than one input channel. With one channel, compact columns
    are as fast forward and faster backward (2.5 against 3.8 ms on the mnist_convnet's first
    layer): its few rows cost little to copy, and the wide gradient's short rows more."""
    if wide and (sh != 1 or sw != 1):
        raise ValueError(f"conv2d: wide columns need stride 1, got stride ({sh}, {sw})")
    return (sh == 1 and sw == 1 and x.shape[1] > 1) if wide is None else bool(wide)


def sample_span(w, pw, ho, wo, wide):
    """One sample's columns in the numba kernels: Lw = (Ho - 1)(W + 2 pw) + Wo wide, Ho Wo compact."""
    return wide_span(ho, wo, w + 2 * pw) if wide else ho * wo


def _winograd(x, W, sh, sw, wide, z, choice):
    """Whether a call takes ``winograd``'s kernels: ``choice`` if given (True only where they
    apply), else every layer they apply to (``winograd.applies``) unless the call asks for a
    column layout (``wide``) or keeps the pre-activation (``z``, GELU)."""
    if choice is None:
        return winograd.applies(x.shape[1], W.shape[2], W.shape[3], sh, sw) and wide is None and z is None
    if choice and not (winograd.possible(W.shape[2], W.shape[3], sh, sw) and z is None):
        raise ValueError(f"conv2d: Winograd needs a 3x3 kernel, stride 1 and no z, got {W.shape[2:]}, ({sh}, {sw})")
    return bool(choice)


@blas.on_one_thread_unless_mkl
def conv2d_forward_numba(x, W, b, sh, sw, ph, pw, code, y, z=None, on_threads=None, wide=None, use_winograd=None):
    """numba twin of ``conv2d_forward_numpy``: one jitted call, blocked (``BLOCK_BYTES``). Without
    a GEMM numba can call (``blas.AVAILABLE`` false) it is the NumPy kernel. ``on_threads``: run the
    parts on numba's threads (True), on this one (False), or decide (None: ``_on_threads``);
    ``wide``: wide columns (``im2col``; None: at stride 1) or compact ones; ``use_winograd``: the
    ``winograd`` kernels (None: where they apply, ``_winograd``); the result is the same to rounding.
    A Winograd call that meets a non-finite output is done again by im2col."""
    if not blas.AVAILABLE:
        return conv2d_forward_numpy(x, W, b, sh, sw, ph, pw, code, y, z)
    W2, y3, ho, wo = _check(x, W, y, sh, sw, ph, pw)
    threads = _on_threads(y) if on_threads is None else on_threads
    x = read_only(x)  # one compiled variant for data and a layer's output
    b1 = none_as_empty(b, (0,), y.dtype)  # and for a bias or none
    if _winograd(x, W, sh, sw, wide, z, use_winograd):
        nb = winograd.block_samples(ho, wo, x.shape[0])
        kernel = winograd.forward_parallel if threads else winograd.forward
        done = kernel(x, read_only(W), b1, ph, pw, code, y3, nb, parts_of(x.shape[0], nb))
        if done == 1:
            dense.finish_act(y, code)
        if done != 2:
            return y
    pre3 = none_as_empty(None if z is None else _pre_view(z, y), (0, 0, 0), y.dtype)
    kh, kw = W.shape[2], W.shape[3]
    wide = _wide(x, sh, sw, wide)
    nb = block_samples(W2.shape[1], sample_span(x.shape[3], pw, ho, wo, wide), y.itemsize, x.shape[0])
    kernel = blocks.forward_parallel if threads else blocks.forward
    if kernel(x, W2, b1, kh, kw, sh, sw, ph, pw, code, y3, pre3, nb, parts_of(x.shape[0], nb), wide):
        dense.finish_act(y, code)  # float64 tanh, sigmoid: NumPy finishes, as in dense
    return y


@blas.on_one_thread_unless_mkl
def conv2d_backward_numba(
    x, W, y, gy, code, dW, beta, db, sh, sw, ph, pw, dx, on_threads=None, wide=None, use_winograd=None
):
    """numba twin of ``conv2d_backward_numpy`` (one blocked jitted call; without a GEMM numba can
    call, the NumPy kernel). ``on_threads``, ``wide`` and ``use_winograd`` as in
    ``conv2d_forward_numba`` (the backward of a GELU layer, whose forward kept z, takes the same
    kernels as the others); a wide or Winograd call that meets a non-finite weight or gradient is
    done again with compact columns."""
    if not blas.AVAILABLE:
        return conv2d_backward_numpy(x, W, y, gy, code, dW, beta, db, sh, sw, ph, pw, dx)
    W2, y3, gy3, dW2 = _check_backward(x, W, y, gy, dW, dx, sh, sw, ph, pw)
    kh, kw = W.shape[2], W.shape[3]
    threads = _on_threads(y) if on_threads is None else on_threads
    x = read_only(x)
    db1, dx1 = none_as_empty(db, (0,), y.dtype), none_as_empty(dx, (0,) + x.shape[1:], y.dtype)
    if _winograd(x, W, sh, sw, wide, None, use_winograd):
        nb = winograd.block_samples(y.shape[2], y.shape[3], x.shape[0])
        kernel = winograd.backward_parallel if threads else winograd.backward
        args = (dW, float(beta), db1, ph, pw, dx1, nb, parts_of(x.shape[0], nb))
        if not kernel(x, read_only(W), y3, gy3, code, *args):
            return dx
    wide = _wide(x, sh, sw, wide)
    kernel = blocks.backward_parallel if threads else blocks.backward
    for layout in (True, False) if wide else (False,):
        span = sample_span(x.shape[3], pw, y.shape[2], y.shape[3], layout)
        nb = block_samples(W2.shape[1], span, y.itemsize, x.shape[0])
        args = (dW2, float(beta), db1, kh, kw, sh, sw, ph, pw, dx1, nb, parts_of(x.shape[0], nb), layout)
        if not kernel(x, W2, y3, gy3, code, *args):
            return dx
    raise AssertionError("conv2d: compact columns are never redone")


# The table (see kernels/registry.py) and the warm-up: 4-D C-contiguous inputs (read-only views
# of them, data or a layer's output alike), with and without bias/dx, every activation; the threaded
# twins, which training batches take when numba has several threads, for float32 only (each
# takes ~5 s to compile; other types compile on first use).
from .registry import kernel, warmup_case  # noqa: E402

kernel("conv2d_forward", conv2d_forward_numpy, conv2d_forward_numba)
kernel("conv2d_backward", conv2d_backward_numpy, conv2d_backward_numba)


@warmup_case
def _warm_up(dtype):
    x = np.linspace(-1.0, 1.0, 2 * 2 * 5 * 5, dtype=dtype).reshape(2, 2, 5, 5)
    W = np.ones((3, 2, 3, 3), dtype)
    y = np.empty((2, 3, 3, 3), dtype)
    codes = (dense.IDENTITY, dense.SIGMOID, dense.TANH, dense.RELU, dense.GELU, dense.GELU_TANH)
    # x reaches the kernels read-only (read_only) and None as an empty array (none_as_empty), whatever
    # the caller passed: these calls share one compiled variant per kernel.
    for code in codes:
        for bias in (np.zeros(3, dtype), None):
            conv2d_forward_numba(x, W, bias, 2, 2, 1, 1, code, y)
            if code in dense.FROM_INPUT:
                conv2d_forward_numba(x, W, bias, 2, 2, 1, 1, code, y, np.empty_like(y))
            for dx in (np.empty_like(x), None):
                db = None if bias is None else bias.copy()
                conv2d_backward_numba(x, W, y, y, code, np.empty_like(W), 0.0, db, 2, 2, 1, 1, dx)
    y1 = np.empty((2, 3, 5, 5), dtype)  # stride 1: the Winograd kernels (one variant: no bias, no dx alike)
    conv2d_forward_numba(x, W, None, 1, 1, 1, 1, dense.RELU, y1, on_threads=False, use_winograd=True)
    args = (x, W, y1, y1, dense.RELU, np.empty_like(W), 0.0, None, 1, 1, 1, 1, None)
    conv2d_backward_numba(*args, on_threads=False, use_winograd=True)
    if dtype == np.float32:
        conv2d_forward_numba(x, W, None, 1, 1, 1, 1, dense.RELU, y1, on_threads=True, use_winograd=True)
        conv2d_backward_numba(*args, on_threads=True, use_winograd=True)
        conv2d_forward_numba(x, W, np.zeros(3, dtype), 2, 2, 1, 1, dense.RELU, y, on_threads=True)
        for dx in (np.empty_like(x), None):
            conv2d_backward_numba(
                x, W, y, y, dense.RELU, np.empty_like(W), 0.0, np.zeros(3, dtype), 2, 2, 1, 1, dx, on_threads=True
            )
