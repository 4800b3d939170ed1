"""The dense layer cut into parts that run on numba's threads when there are several: tall inputs
(at least ``SPLIT_ROWS`` rows: a batch of sequences, 128 x 49 tokens, is 6,272 rows) by rows, and
the two products of other layers' backward side by side.

Forward: the rows are cut into ``PARTS`` parts; each part is ``dense``'s whole kernel on its rows
(the GEMM, the bias and the activation). Backward: the same row parts compute dz (and each part's
column sums for db, added in part order) and dx = dz W^T; then the weight gradient
dW = x^T dz is cut by its own rows (the input features), so every part writes its own block of
dW from all the rows, with no partial sums to add. The parts depend on the shapes alone, and each
GEMM runs on one BLAS thread (MKL's per-thread setting), so one thread or several give the same
bits. With one numba thread (or a BLAS other than MKL) the parts run one after the other.

Other layers' backward, when both products are large (at least ``BESIDE_GRAIN`` multiply-adds
each, a 128 x 512 -> 512 layer, say) and numba has several threads: dz and db as ``dense`` makes
them, then dW = x^T dz on one thread beside dx = dz W^T on another (``beside``). The two
products are independent and each is the same whole GEMM ``dense`` calls, so the bits are
``dense``'s on any thread count; only the wait changes (the slower product instead of both).

The NumPy twins are ``dense``'s (the whole batch at once): the two agree to rounding. The
kernels take "none" (no b, z, db or dx) as zero-length arrays, as ``dense``'s do, and x as a
read-only view (unlike ``dense``, whose small batches would feel a view per call): one compiled
variant each.
"""

import numpy as np

from . import blas, dense, parallel
from ._nb import NJIT, njit, none_as_empty, read_only
from .parallel import NJIT_PARALLEL, prange

#: Inputs with at least this many rows take the row parts (the MLP's batches of 16-1024 rows keep
#: ``dense``'s single call).
SPLIT_ROWS = 2048
#: Parts of the rows (and of dW's rows); a function of nothing but this constant and the shapes.
PARTS = 4
#: Multiply-adds in each backward product from which dW and dx run side by side: the crossover
#: measured inside whole training steps (``benchmarks/bench_grains.py --backward``, AMD EPYC,
#: 2026-12-07, two runs: a step 1.01-1.05x as long at 1,048,576 each, 0.91-1.00x at 2.4 million,
#: 0.82x at 17 million): the second thread has slept since the last region.
BESIDE_GRAIN = 1 << 21


def tall(rows):
    """Whether an input of ``rows`` rows takes the parts kernels."""
    return rows >= SPLIT_ROWS


def beside(rows, n_in, n_out):
    """Whether the backward of a layer (``n_in`` -> ``n_out``) on ``rows`` rows, fewer than
    ``SPLIT_ROWS``, computes dW beside dx: each product has ``BESIDE_GRAIN`` multiply-adds or
    more, numba has several threads on a layer that can, and the GEMM is MKL's (per-thread)."""
    return blas.LOCAL_THREADS and parallel.use_parallel(rows * n_in * n_out, BESIDE_GRAIN)


@njit(**NJIT)
def bounds(n, parts, p):
    """[lo, hi) of part p of range(n)."""
    return p * n // parts, (p + 1) * n // parts


@njit(**NJIT)
def _forward_part(x, W, b, code, y, z, lo, hi):
    if z.shape[0] == 0:
        return dense.layer_forward(x[lo:hi], W, b, code, y[lo:hi])
    return dense.layer_forward_keep(x[lo:hi], W, b, code, y[lo:hi], z[lo:hi])


@njit(**NJIT)
def _forward(x, W, b, code, y, z, parts):
    finish = False
    for p in range(parts):
        lo, hi = bounds(x.shape[0], parts, p)
        finish |= _forward_part(x, W, b, code, y, z, lo, hi)
    return finish


@njit(**NJIT_PARALLEL)
def _forward_parallel(x, W, b, code, y, z, parts):
    flags = np.zeros(parts, np.bool_)
    for p in prange(parts):
        lo, hi = bounds(x.shape[0], parts, p)
        before = blas.threads_local(1)
        flags[p] = _forward_part(x, W, b, code, y, z, lo, hi)
        blas.threads_local(before)
    return flags.any()


@njit(**NJIT)
def _rows_part(y, gy, code, dz, acc, W, dx, lo, hi):
    """dz rows <- gy act'(y), acc <- their column sums (when an array), dx rows <- dz W^T."""
    dense.layer_grad(y[lo:hi], gy[lo:hi], code, dz[lo:hi], acc)
    if dx.shape[0] != 0:
        blas.gemm(dz[lo:hi], W.T, dx[lo:hi], 0.0)


@njit(**NJIT)
def _weights_part(x, dz, dW, beta, lo, hi):
    """Rows lo:hi of dW (input features) <- x[:, lo:hi]^T dz + beta dW."""
    blas.gemm(x[:, lo:hi].T, dz, dW[lo:hi], beta)


@njit(**NJIT)
def _sums(acc, db):
    for p in range(acc.shape[0]):  # none for a zero-length db (no db wanted)
        for j in range(db.shape[0]):
            db[j] += acc[p, j]


@njit(**NJIT)
def _backward(x, W, y, gy, code, dz, dW, beta, db, dx, parts):
    acc = np.zeros((parts, dz.shape[1]), dz.dtype)
    for p in range(parts):
        lo, hi = bounds(x.shape[0], parts, p)
        if db.shape[0] == 0:
            _rows_part(y, gy, code, dz, None, W, dx, lo, hi)
        else:
            _rows_part(y, gy, code, dz, acc[p], W, dx, lo, hi)
    cols = min(parts, W.shape[0])
    for p in range(cols):
        lo, hi = bounds(W.shape[0], cols, p)
        _weights_part(x, dz, dW, beta, lo, hi)
    _sums(acc, db)


@njit(**NJIT_PARALLEL)
def _backward_parallel(x, W, y, gy, code, dz, dW, beta, db, dx, parts):
    acc = np.zeros((parts, dz.shape[1]), dz.dtype)
    for p in prange(parts):
        lo, hi = bounds(x.shape[0], parts, p)
        before = blas.threads_local(1)
        if db.shape[0] == 0:
            _rows_part(y, gy, code, dz, None, W, dx, lo, hi)
        else:
            _rows_part(y, gy, code, dz, acc[p], W, dx, lo, hi)
        blas.threads_local(before)
    cols = min(parts, W.shape[0])
    for p in prange(cols):
        lo, hi = bounds(W.shape[0], cols, p)
        before = blas.threads_local(1)
        _weights_part(x, dz, dW, beta, lo, hi)
        blas.threads_local(before)
    _sums(acc, db)


@njit(**NJIT_PARALLEL)
def _backward_beside(x, W, y, gy, code, dz, dW, beta, db, dx):
    if db.shape[0] == 0:
        dense.layer_grad(y, gy, code, dz, None)
    else:
        dense.layer_grad(y, gy, code, dz, db)
    for product in prange(2):  # one on each thread; blas.gemm keeps each to its calling thread
        if product == 0:
            blas.gemm(x.T, dz, dW, beta)
        else:
            blas.gemm(dz, W.T, dx, 0.0)


def use_threads(size):
    """Whether the parts go to numba's threads: several threads, a layer that can, MKL's GEMM."""
    return blas.LOCAL_THREADS and parallel.use_parallel(size)


@blas.on_one_thread_unless_mkl
def dense_forward_parts_numba(x, W, b, code, y, z=None, on_threads=None):
    """``dense_forward_numba`` over row parts (see the module docstring)."""
    if not blas.AVAILABLE:
        return dense.dense_forward_numba(x, W, b, code, y, z)
    threads = use_threads(y.size) if on_threads is None else on_threads
    kernel = _forward_parallel if threads else _forward
    # read-only x, empty arrays for no b and no z: one compiled variant where they made four
    x, b, z1 = read_only(x), none_as_empty(b, (0,), y.dtype), none_as_empty(z, (0, 0), y.dtype)
    if kernel(x, W, b, code, y, z1, PARTS):
        dense.finish_act(y, code)  # float64 tanh, sigmoid: NumPy finishes, as dense does
    return y


@blas.on_one_thread_unless_mkl
def dense_backward_parts_numba(x, W, y, gy, code, dz, dW, beta, db, dx, on_threads=None):
    """``dense_backward_numba`` over row parts, dW over its own row parts; on fewer rows, dW beside
    dx (see the module docstring)."""
    if not blas.AVAILABLE:
        return dense.dense_backward_numba(x, W, y, gy, code, dz, dW, beta, db, dx)
    if y.shape != dz.shape or gy.shape != dz.shape or dW.shape != W.shape:
        raise ValueError("dense_backward: y, gy and dz must have one shape, dW W's")
    if not tall(x.shape[0]):  # dW beside dx, or dense's kernel when they do not pay
        threads = beside(*x.shape, W.shape[1]) if on_threads is None else on_threads
        if dx is None or not threads:
            return dense.dense_backward_numba(x, W, y, gy, code, dz, dW, beta, db, dx)
        _backward_beside(read_only(x), W, y, gy, code, dz, dW, float(beta), none_as_empty(db, (0,), dz.dtype), dx)
        return dx
    threads = use_threads(y.size) if on_threads is None else on_threads
    kernel = _backward_parallel if threads else _backward
    db1, dx1 = none_as_empty(db, (0,), dz.dtype), none_as_empty(dx, (0, 0), dz.dtype)
    kernel(read_only(x), W, y, gy, code, dz, dW, float(beta), db1, dx1, PARTS)
    return dx


# The table (see kernels/registry.py) and the warm-up: what Dense hands over on tall inputs,
# float32 with and without the threads (float64 compiles on first use), every activation.
from .registry import kernel, warmup_case  # noqa: E402

kernel("dense_forward_parts", dense.dense_forward_numpy, dense_forward_parts_numba)
kernel("dense_backward_parts", dense.dense_backward_numpy, dense_backward_parts_numba)


@warmup_case
def _warm_up(dtype):
    if dtype != np.float32:
        return
    x = np.linspace(-1.0, 1.0, SPLIT_ROWS * 5, dtype=dtype).reshape(SPLIT_ROWS, 5)  # tall
    x_readonly = x.view()
    x_readonly.flags.writeable = False
    W, b = np.ones((5, 3), dtype), np.zeros(3, dtype)
    y = np.empty((SPLIT_ROWS, 3), dtype)
    for on in (False, True):
        for code in (dense.IDENTITY, dense.RELU, dense.GELU):
            for xin in (x, x_readonly):
                z = np.empty_like(y) if code == dense.GELU else None
                dense_forward_parts_numba(xin, W, b, code, y, z, on_threads=on)
                for dx in (np.empty_like(x), None):
                    dense_backward_parts_numba(
                        xin,
                        W,
                        y if z is None else z,
                        y,
                        code,
                        np.empty_like(y),
                        np.empty_like(W),
                        0.0,
                        b.copy(),
                        dx,
                        on_threads=on,
                    )
    for code in (dense.IDENTITY, dense.RELU, dense.GELU):  # dW beside dx: fewer rows
        for db in (b.copy(), None):
            dense_backward_parts_numba(
                x[:8], W, y[:8], y[:8], code, y[:8].copy(), W.copy(), 0.0, db, x[:8].copy(), on_threads=True
            )
