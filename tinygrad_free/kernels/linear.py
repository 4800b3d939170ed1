"""Projections with weights in PyTorch's layout, W (out, in), as ``torch.nn.Linear`` and the
projections of ``torch.nn.MultiheadAttention`` store them:

    forward:   y = x W^T + b
    backward:  dW <- gy^T x + beta dW;  db += sum over rows of gy;  dx <- gy W

x and gy are (rows, in) and (rows, out) matrices (any strides BLAS reads in place; gy's rows may
be a column block of a wider array, e.g. one of q, k, v in a (rows, 3E) gradient); W and dW may
be row blocks of a larger weight. beta is 0 (overwrite, after zero_grad) or 1 (accumulate); db
and dx may be None. The forward is ``dense_forward`` on W's transpose, read in place.
"""

import numpy as np

from . import blas
from ._nb import NJIT, njit
from .dense import IDENTITY, dense_forward_numba, dense_forward_numpy


def linear_forward_numpy(x, W, b, y):
    """y <- x W^T + b (b may be None). Returns y."""
    return dense_forward_numpy(x, W.T, b, IDENTITY, y)


def linear_forward_numba(x, W, b, y):
    """numba twin of ``linear_forward_numpy``."""
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


@njit(**NJIT)
def _linear_backward(x, W, gy, dW, beta, db, dx):
    if gy.shape[1] != W.shape[0] or x.shape[1] != W.shape[1] or dW.shape != W.shape:
        raise ValueError("linear_backward: x (rows, in), W and dW (out, in), gy (rows, out)")
    if db is not None:
        _column_sums_into(gy, db)
    blas.gemm(gy.T, x, dW, beta)
    if dx is not None:
        blas.gemm(gy, W, dx, 0.0)


@blas.on_one_thread_unless_mkl
def linear_backward_numba(x, W, gy, dW, beta, db, dx):
    """numba twin of ``linear_backward_numpy`` (one jitted call when ``blas`` is available)."""
    if not blas.AVAILABLE:
        return linear_backward_numpy(x, W, gy, dW, beta, db, dx)
    _linear_backward(x, W, gy, dW, float(beta), db, dx)
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
