"""Projections with weights in PyTorch's layout, W (out, in), as ``torch.nn.Linear`` and the
projections of ``torch.nn.MultiheadAttention`` store them:

    forward:   y = x W^T + b
    backward:  dW <- gy^T x + beta dW;  db += sum over rows of gy;  dx <- gy W

x and gy are (rows, in) and (rows, out) matrices (any strides BLAS reads in place; gy's rows may
be a column block of a wider array, e.g. one of q, k, v in a (rows, 3E) gradient); W and dW may
be row blocks of a larger weight. beta is 0 (overwrite, after zero_grad) or 1 (accumulate); db
and dx may be None. The forward is ``dense_forward`` on W's transpose, read in place.

Tall inputs (``dense_parts.SPLIT_ROWS`` rows or more) go in parts, as ``dense_parts`` does it: row
parts for the forward, db's partial column sums (added in part order) and dx; dW by its own row
parts (the output features), each from all the rows. On numba's threads when there are several;
the same bits either way. Fewer rows: dW and dx side by side on two threads when each product is
large enough (``dense_parts.beside``), each the same whole GEMM as in turn.
"""

import numpy as np

from . import blas, dense_parts
from ._nb import NJIT, njit, none_as_empty, read_only
from .dense import IDENTITY, dense_forward_numba, dense_forward_numpy
from .dense_parts import bounds
from .parallel import NJIT_PARALLEL, prange


def linear_forward_numpy(x, W, b, y):
    """y <- x W^T + b (b may be None). Returns y."""
    return dense_forward_numpy(x, W.T, b, IDENTITY, y)


def linear_forward_numba(x, W, b, y):
    """numba twin of ``linear_forward_numpy``."""
    x = read_only(x)  # one compiled variant for data and a layer's output
    if dense_parts.tall(x.shape[0]):
        return dense_parts.dense_forward_parts_numba(x, W.T, b, IDENTITY, y)
    return dense_forward_numba(x, W.T, b, IDENTITY, y)


@blas.on_one_thread
def linear_backward_numpy(x, W, gy, dW, beta, db, dx):
    """dW <- gy^T x + beta dW; db += column sums of gy; dx <- gy W. Returns dx."""
    if beta == 0:
        np.matmul(gy.T, x, out=dW)
    else:
        dW += gy.T @ x
    if db is not None:
        db += gy.sum(axis=0)
    if dx is not None:
        np.matmul(gy, W, out=dx)
    return dx


@njit(**NJIT)
def _column_sums_into(gy, db):
    """db += the column sums of gy, each summed from zero in gy's dtype first (NumPy's order)."""
    acc = np.zeros(gy.shape[1], gy.dtype)
    for i in range(gy.shape[0]):
        for j in range(gy.shape[1]):
            acc[j] += gy[i, j]
    for j in range(gy.shape[1]):
        db[j] += acc[j]


# In the jitted kernels no db is a zero-length db and no dx a dx of no rows, and x comes
# read-only (``read_only``): one compiled variant where None and the write flag made eight (the
# linear warm-up's cold compile was 57 s, the second largest after the convolutions').
@njit(**NJIT)
def _checked_sums(x, W, gy, dW, db):
    """The shapes checked, and db += gy's column sums (none for a zero-length db)."""
    if gy.shape[1] != W.shape[0] or x.shape[1] != W.shape[1] or dW.shape != W.shape:
        raise ValueError("linear_backward: x (rows, in), W and dW (out, in), gy (rows, out)")
    if db.shape[0] != 0:
        _column_sums_into(gy, db)


@njit(**NJIT)
def _linear_backward(x, W, gy, dW, beta, db, dx):
    _checked_sums(x, W, gy, dW, db)
    blas.gemm(gy.T, x, dW, beta)
    if dx.shape[0] != 0:
        blas.gemm(gy, W, dx, 0.0)


@njit(**NJIT_PARALLEL)
def _linear_backward_beside(x, W, gy, dW, beta, db, dx):
    """``_linear_backward`` with dW and dx side by side on two threads (``dense_parts.beside``)."""
    _checked_sums(x, W, gy, dW, db)
    for product in prange(2):  # one on each thread; blas.gemm keeps each to its calling thread
        if product == 0:
            blas.gemm(gy.T, x, dW, beta)
        else:
            blas.gemm(gy, W, dx, 0.0)


@njit(**NJIT)
def _rows_part(W, gy, acc, dx, lo, hi):
    if acc.shape[0] != 0:  # zero-length when no db is wanted (``_partial_sums``)
        _column_sums_into(gy[lo:hi], acc)
    if dx.shape[0] != 0:
        blas.gemm(gy[lo:hi], W, dx[lo:hi], 0.0)


@njit(**NJIT)
def _weights_part(x, gy, dW, beta, lo, hi):
    blas.gemm(gy[:, lo:hi].T, x, dW[lo:hi], beta)


@njit(**NJIT)
def _partial_sums(gy, db, parts):
    """Each part's column sums of gy, (parts, out); (parts, 0) when no db is wanted."""
    return np.zeros((parts, gy.shape[1] if db.shape[0] != 0 else 0), gy.dtype)


@njit(**NJIT)
def _add_parts(acc, db):
    if db.shape[0] != 0:
        for p in range(acc.shape[0]):
            for j in range(db.shape[0]):
                db[j] += acc[p, j]


@njit(**NJIT)
def _linear_backward_parts(x, W, gy, dW, beta, db, dx, parts):
    acc = _partial_sums(gy, db, parts)
    for p in range(parts):
        lo, hi = bounds(gy.shape[0], parts, p)
        _rows_part(W, gy, acc[p], dx, lo, hi)
    cols = min(parts, W.shape[0])
    for p in range(cols):
        lo, hi = bounds(W.shape[0], cols, p)
        _weights_part(x, gy, dW, beta, lo, hi)
    _add_parts(acc, db)


@njit(**NJIT_PARALLEL)
def _linear_backward_parts_parallel(x, W, gy, dW, beta, db, dx, parts):
    acc = _partial_sums(gy, db, parts)
    for p in prange(parts):
        lo, hi = bounds(gy.shape[0], parts, p)
        before = blas.threads_local(1)
        _rows_part(W, gy, acc[p], dx, lo, hi)
        blas.threads_local(before)
    cols = min(parts, W.shape[0])
    for p in prange(cols):
        lo, hi = bounds(W.shape[0], cols, p)
        before = blas.threads_local(1)
        _weights_part(x, gy, dW, beta, lo, hi)
        blas.threads_local(before)
    _add_parts(acc, db)


def _wanted(db, dx, x, dtype):
    """db and dx as the jitted kernels take them (``none_as_empty``)."""
    return none_as_empty(db, (0,), dtype), none_as_empty(dx, (0, x.shape[1]), dtype)


@blas.on_one_thread_unless_mkl
def linear_backward_numba(x, W, gy, dW, beta, db, dx):
    """numba twin of ``linear_backward_numpy`` (one jitted call when ``blas`` is available; tall
    inputs in parts, ``linear_backward_parts_numba``; on fewer rows, dW beside dx when
    ``dense_parts.beside`` says they pay)."""
    if not blas.AVAILABLE:
        return linear_backward_numpy(x, W, gy, dW, beta, db, dx)
    if dense_parts.tall(gy.shape[0]):
        return linear_backward_parts_numba(x, W, gy, dW, beta, db, dx)
    beside = dx is not None and dense_parts.beside(gy.shape[0], x.shape[1], gy.shape[1])
    kernel = _linear_backward_beside if beside else _linear_backward
    kernel(read_only(x), W, gy, dW, float(beta), *_wanted(db, dx, x, dW.dtype))
    return dx


def linear_backward_parts_numba(x, W, gy, dW, beta, db, dx, on_threads=None):
    """The backward in parts (see the module docstring), on numba's threads when ``on_threads``
    (None: when there are several); the same bits either way."""
    if gy.shape[1] != W.shape[0] or x.shape[1] != W.shape[1] or dW.shape != W.shape:
        raise ValueError("linear_backward: x (rows, in), W and dW (out, in), gy (rows, out)")
    threads = dense_parts.use_threads(gy.size) if on_threads is None else on_threads
    kernel = _linear_backward_parts_parallel if threads else _linear_backward_parts
    kernel(read_only(x), W, gy, dW, float(beta), *_wanted(db, dx, x, dW.dtype), dense_parts.PARTS)
    return dx


# The table (see kernels/registry.py) and the warm-up: contiguous rows, and a column block of a
# wider array (MultiHeadAttention's q, k, v gradients), with and without bias and dx.
from .registry import kernel, warmup_case  # noqa: E402

kernel("linear_forward", linear_forward_numpy, linear_forward_numba)
kernel("linear_backward", linear_backward_numpy, linear_backward_numba)


@warmup_case
def _warm_up(dtype):
    x = np.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4)
    x_readonly = x.view()
    x_readonly.flags.writeable = False
    W = np.ones((6, 4), dtype)
    wide = np.zeros((3, 12), dtype)
    for xin in (x, x_readonly):
        for b in (np.zeros(6, dtype), None):
            linear_forward_numba(xin, W, b, np.empty((3, 6), dtype))
            linear_forward_numba(xin, W[:2], None if b is None else b[:2], wide[:, :2])
            for gy in (wide[:, :6], np.zeros((3, 6), dtype)):
                for dx in (np.empty_like(x), None):
                    db = None if b is None else b.copy()
                    linear_backward_numba(xin, W, gy, np.empty_like(W), 0.0, db, dx)
    if dtype == np.float32:  # the parts kernels, which tall inputs take (MultiHeadAttention's rows)
        for gy in (wide[:, :6], np.zeros((3, 6), dtype)):  # dW beside dx (fewer rows)
            for b in (np.zeros(6, dtype), None):
                _linear_backward_beside(x_readonly, W, gy, np.empty_like(W), 0.0, *_wanted(b, x.copy(), x, dtype))
        for on in (False, True):
            y = np.empty((3, 6), dtype)
            dense_parts.dense_forward_parts_numba(x, W.T, None, IDENTITY, y, on_threads=on)
            dense_parts.dense_forward_parts_numba(x, W.T, np.zeros(6, dtype), IDENTITY, y, on_threads=on)
            for gy in (wide[:, :6], np.zeros((3, 6), dtype)):
                for b in (np.zeros(6, dtype), None):
                    for dx in (np.empty_like(x), None):
                        linear_backward_parts_numba(x, W, gy, np.empty_like(W), 0.0, b, dx, on_threads=on)
