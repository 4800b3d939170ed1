"""Fused softmax + loss kernels. Each returns ``(loss, correct)`` -- the mean loss over the
batch and how many rows have their largest logit (the first, on ties, as ``np.argmax``) at the
label -- and writes dL/dlogits into ``grad``, so the loss layer's backward is a lookup, not a
recomputation, and a trainer's accuracy costs no pass of its own.

Both check their input as they go, so the caller needs no extra pass over it either: labels
outside ``0..classes-1`` raise IndexError, and non-finite logits (a diverged model) give a NaN
loss (``grad`` is then unspecified).

Cross-entropy:  L = -(1/B) sum_b log softmax(z_b)[y_b],      dL/dz = (p - onehot(y)) / B
Squared error:  L =  (1/B) sum_b sum_k (p_bk - onehot_bk)^2,  with q = 2 (p - onehot) / B,
                dL/dz = p * (q - sum_k q_k p_k)   (the softmax Jacobian applied to q)

``cross_entropy`` is PyTorch's ``CrossEntropyLoss(ignore_index, label_smoothing)`` and returns
``(loss, correct, counted)``: rows whose label is ``ignore_index`` take no part (no loss, a zero
gradient row, not counted, not in ``correct``); the mean is over the ``counted`` others, and with
smoothing e the target is q = (1 - e) onehot(y) + e / C:

    L_b = -sum_k q_k log p_bk = log s_b + m_b - (1 - e) z_by - e mean_k z_bk,   dL/dz_b = (p_b - q) / counted

(s_b the row's sum of exp(z - m_b)). No row counted gives a NaN loss and a zero gradient, as
PyTorch's mean over nothing.
"""

import numpy as np


def _softmax_into(z, p):
    """p <- softmax(z) row-wise; subtracting the row max keeps exp from overflowing."""
    np.subtract(z, z.max(axis=1, keepdims=True), out=p)
    np.exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)
    return p


def _check_numpy(z, labels):
    """(finite?, correct) of the NumPy kernels; raises on labels out of range."""
    if len(labels) and (labels.min() < 0 or labels.max() >= z.shape[1]):
        raise IndexError("label out of range of the logits' classes")
    if not np.isfinite(z).all():
        return False, 0
    return True, int(np.count_nonzero(z.argmax(axis=1) == labels))


def softmax_cross_entropy_numpy(z, labels, grad):
    finite, correct = _check_numpy(z, labels)
    if not finite:
        return np.nan, 0
    B = z.shape[0]
    rows = np.arange(B)
    zmax = z.max(axis=1)
    np.subtract(z, zmax[:, None], out=grad)
    shifted_y = grad[rows, labels]
    np.exp(grad, out=grad)
    s = grad.sum(axis=1)
    loss = float(np.mean(np.log(s) - shifted_y, dtype=np.float64))
    grad /= s[:, None]
    grad[rows, labels] -= 1
    grad *= 1.0 / B
    return loss, correct


def softmax_squared_error_numpy(z, labels, grad):
    finite, correct = _check_numpy(z, labels)
    if not finite:
        return np.nan, 0
    B = z.shape[0]
    rows = np.arange(B)
    p = np.empty_like(z)
    _softmax_into(z, p)
    np.copyto(grad, p)
    grad[rows, labels] -= 1  # d = p - onehot
    loss = float(np.einsum("ij,ij->", grad, grad, dtype=np.float64)) / B
    grad *= 2.0 / B  # q
    dot = np.einsum("ij,ij->i", grad, p)
    grad -= dot[:, None]
    grad *= p
    return loss, correct


# --------------------------------------------------------------------------------------------
# numba twins: one jitted call per loss (it returns a (float, int) pair, which is cheap to box,
# so there is no Python wrapper). Per row: a max pass (which also finds the argmax and notes any
# non-finite logit), one exp pass that stores e = exp(z - max) into ``grad``, then the gradient
# pass. Row sums, the loss and the softmax-Jacobian dot product are accumulated in float64;
# the gradient is rounded to grad's dtype once, at the end. Labels are any integer dtype.
# The two kernels open each row with the same four lines on purpose: a shared per-row helper
# returning them as a tuple measured 30-45% slower (0.98 -> 1.31 us at batch 16).
# --------------------------------------------------------------------------------------------
from ._nb import NJIT, njit  # noqa: E402


@njit(**NJIT)
def _row_max(z, b):
    """(max, first argmax, all finite?) of row b."""
    m, arg, finite = z[b, 0], 0, np.isfinite(z[b, 0])
    for k in range(1, z.shape[1]):
        zk = z[b, k]
        finite &= np.isfinite(zk)
        if zk > m:
            m, arg = zk, k
    return m, arg, finite


@njit(**NJIT)
def _row_exp(z, b, m, grad):
    """grad[b] <- exp(z[b] - m); returns the sum of the exps in float64."""
    k_n = z.shape[1]
    s = 0.0
    for k in range(k_n):
        e = np.exp(z[b, k] - m)
        grad[b, k] = e
        s += e
    return s


@njit(**NJIT)
def _label(labels, b, k_n):
    y = labels[b]
    if y < 0 or y >= k_n:
        raise IndexError("label out of range of the logits' classes")
    return y


@njit(**NJIT)
def softmax_cross_entropy_numba(z, labels, grad):
    """Mean cross-entropy of softmax(z) and dL/dz into ``grad``. numba twin of the NumPy kernel."""
    n_b, k_n = z.shape
    if labels.shape[0] != n_b or grad.shape != z.shape:
        raise ValueError("softmax_cross_entropy: labels must be (B,) and grad the logits' shape")
    if n_b == 0:
        return np.nan, 0
    inv_b = 1.0 / n_b
    total, correct = 0.0, 0
    for b in range(n_b):
        y = _label(labels, b, k_n)
        m, arg, finite = _row_max(z, b)
        if not finite:
            return np.nan, 0
        correct += arg == y
        s = _row_exp(z, b, m, grad)
        total += np.log(s) - (np.float64(z[b, y]) - np.float64(m))
        scale = inv_b / s
        for k in range(k_n):  # (p - onehot) / B, rounded once
            v = grad[b, k] * scale
            grad[b, k] = v - inv_b if k == y else v
    return total * inv_b, correct


@njit(**NJIT)
def softmax_squared_error_numba(z, labels, grad):
    """Mean squared error of softmax(z) vs one-hot and dL/dz into ``grad``. numba twin."""
    n_b, k_n = z.shape
    if labels.shape[0] != n_b or grad.shape != z.shape:
        raise ValueError("softmax_squared_error: labels must be (B,) and grad the logits' shape")
    if n_b == 0:
        return np.nan, 0
    two_over_b = 2.0 / n_b
    total, correct = 0.0, 0
    for b in range(n_b):
        y = _label(labels, b, k_n)
        m, arg, finite = _row_max(z, b)
        if not finite:
            return np.nan, 0
        correct += arg == y
        s = _row_exp(z, b, m, grad)
        inv_s = 1.0 / s
        dot = 0.0  # sum_k q_k p_k
        for k in range(k_n):
            p = grad[b, k] * inv_s
            d = p - 1.0 if k == y else p
            total += d * d
            dot += two_over_b * d * p
        for k in range(k_n):
            p = grad[b, k] * inv_s
            q = two_over_b * (p - 1.0 if k == y else p)
            grad[b, k] = p * (q - dot)
    return total / n_b, correct


def cross_entropy_numpy(z, labels, grad, ignore_index, smoothing):
    """Mean cross-entropy over the rows whose label is not ``ignore_index``, with label smoothing,
    and dL/dz into ``grad``; returns (loss, correct, counted). See the module docstring."""
    n_b, k_n = z.shape
    keep = labels != ignore_index
    counted = int(np.count_nonzero(keep))
    if counted == 0:
        grad[...] = 0
        return np.nan, 0, 0
    kept = labels[keep]
    if kept.min() < 0 or kept.max() >= k_n:
        raise IndexError("label out of range of the logits' classes")
    zk = z[keep]
    if not np.isfinite(zk).all():
        return np.nan, 0, counted
    correct = int(np.count_nonzero(zk.argmax(axis=1) == kept))
    rows = np.flatnonzero(keep)
    zmax = z.max(axis=1)
    np.subtract(z, zmax[:, None], out=grad)
    shifted_y = grad[rows, kept].astype(np.float64)
    np.exp(grad, out=grad)
    s = grad.sum(axis=1)
    per_row = np.log(s[rows].astype(np.float64)) - (1 - smoothing) * shifted_y
    if smoothing:
        per_row -= smoothing * (z[rows].mean(axis=1, dtype=np.float64) - zmax[rows])
    grad /= s[:, None]
    if smoothing:
        grad -= smoothing / k_n
    grad[rows, kept] -= 1 - smoothing
    grad *= 1.0 / counted
    grad[~keep] = 0
    return float(per_row.sum() / counted), correct, counted


@njit(**NJIT)
def cross_entropy_numba(z, labels, grad, ignore_index, smoothing):
    """numba twin of ``cross_entropy_numpy``: (loss, correct, counted). With no smoothing and no
    ignored row, the same arithmetic as ``softmax_cross_entropy_numba``."""
    n_b, k_n = z.shape
    if labels.shape[0] != n_b or grad.shape != z.shape:
        raise ValueError("cross_entropy: labels must be (B,) and grad the logits' shape")
    counted = 0
    for b in range(n_b):
        if labels[b] != ignore_index:
            counted += 1
    if counted == 0:
        grad[:] = 0
        return np.nan, 0, 0
    inv = 1.0 / counted
    on, off = 1.0 - smoothing, smoothing / k_n
    total, correct = 0.0, 0
    for b in range(n_b):
        if labels[b] == ignore_index:
            grad[b, :] = 0
            continue
        y = _label(labels, b, k_n)
        m, arg, finite = _row_max(z, b)
        if not finite:
            return np.nan, 0, counted
        correct += arg == y
        s = _row_exp(z, b, m, grad)
        if smoothing == 0:
            total += np.log(s) - (np.float64(z[b, y]) - np.float64(m))
        else:
            mean = 0.0
            for k in range(k_n):
                mean += z[b, k]
            mean /= k_n
            total += np.log(s) - on * (np.float64(z[b, y]) - np.float64(m)) - smoothing * (mean - np.float64(m))
        scale = inv / s
        for k in range(k_n):  # (p - q) / counted, rounded once
            v = grad[b, k] * scale
            grad[b, k] = v - inv * (on + off) if k == y else v - inv * off
    return total * inv, correct, counted


# The table (see kernels/registry.py) and the warm-up: integer labels of the dtypes the data
# loaders give (intp, uint8), logits writable or read-only (a model's output).
from .registry import kernel, warmup_case  # noqa: E402

kernel("softmax_cross_entropy", softmax_cross_entropy_numpy, softmax_cross_entropy_numba)
kernel("softmax_squared_error", softmax_squared_error_numpy, softmax_squared_error_numba)
kernel("cross_entropy", cross_entropy_numpy, cross_entropy_numba)


@warmup_case
def _warm_up(dtype):
    z = np.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4)
    z_readonly = z.view()
    z_readonly.flags.writeable = False
    for label_dtype in (np.intp, np.uint8):
        labels = np.array([0, 3, 1], dtype=label_dtype)
        for logits in (z, z_readonly):
            softmax_cross_entropy_numba(logits, labels, np.empty_like(z))
            softmax_squared_error_numba(logits, labels, np.empty_like(z))
            for smoothing in (0.0, 0.1):
                cross_entropy_numba(logits, labels, np.empty_like(z), -100, smoothing)
