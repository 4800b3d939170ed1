"""Scaled dot-product attention over heads, the core of ``nn.MultiHeadAttention``: batched GEMMs
with a fused, masked, numerically stable softmax, forward and backward.

Shapes: q (N, T, E), k and v (N, S, E), E = H D for H heads of width D; head h reads the columns
h D .. (h + 1) D - 1 of each (so the projections' outputs are used in place, whatever their row
stride: q, k and v may be column blocks of one (N, T, 3E) array). Per sample n and head h:

    s = q_h k_h^T                                   (T, S)
    p = softmax(scale * s) over the keys, masked    (N, H, T, S), kept for the backward
    w = p * keep / (1 - rate)                       (attention dropout; w = p without it)
    out_h = w v_h                                   (T, D), written into out's columns of head h

Masks: key j of sample n takes part in row i when j < lengths[n] (PyTorch's key_padding_mask,
True past the length) and, with ``causal``, j <= i (PyTorch's is_causal / an upper-triangular
attn_mask). Masked weights are exactly 0, and so are their gradients. The softmax subtracts each
row's largest unmasked score before the exp. A row with no key left (a length of 0) is all
zeros; ``nn.MultiHeadAttention`` refuses such lengths before they get here (PyTorch gives NaN).

Dropout on the weights takes ``draws``, uniform 32-bit integers of p's shape: a weight is kept when
its draw is >= ``threshold`` = round(rate 2^32) (probability 1 - rate to within 2^-32) and scaled
by ``drop_scale`` = 1 / (1 - rate). Keeping the draws, not a mask, costs one array and no pass.

Backward, from gout = dL/dout:

    dw = gout_h v_h^T;  dv_h = w^T gout_h;  dp = dw * keep * drop_scale
    ds = scale * p * (dp - sum_j dp_j p_j)          (the softmax's Jacobian, row by row)
    dq_h = ds k_h;  dk_h = ds^T q_h

numba: one jitted call per direction; each (n, h) is two GEMMs forward and four backward
through ``blas.gemm`` (MKL's small-matrix path: about 0.4 us per (16 x 16) @ (16 x 16) product,
1.4 us at 50 tokens), the softmax one pass over the scores with the vectorised float32 exp of
``approx``. Samples are cut into ``PARTS`` parts (a function of N only); with several numba
threads (and MKL, whose GEMMs are held to their calling thread) the parts run at once. Each
(n, h) writes only its own outputs, so the thread count changes no bit of the result.

The NumPy kernels compute the same with numpy's batched ``matmul`` over (N, H) and np.exp; the
two agree to rounding.
"""

import numpy as np

from . import approx, blas, parallel
from ._nb import NJIT, njit, none_as_empty
from .parallel import NJIT_PARALLEL, prange

#: Parts the batch is cut into (whole samples); they run on numba's threads when there are several.
PARTS = 4


def _heads(q, p):
    n, t, e = q.shape
    h = p.shape[1]
    if e % h:
        raise ValueError(f"attention: the embedding size {e} is not a multiple of the {h} heads")
    return h, e // h


def _check(q, k, v, p, out):
    n, t, e = q.shape
    if k.shape != v.shape or k.shape[0] != n or k.shape[2] != e:
        raise ValueError(
            f"attention: k and v must be (N, S, E) with q's N and E, got q {q.shape}, k {k.shape}, v {v.shape}"
        )
    if p.ndim != 4 or p.shape[0] != n or p.shape[2:] != (t, k.shape[1]) or out.shape != q.shape:
        raise ValueError(
            f"attention: p must be (N, H, T, S) = (N, H, {t}, {k.shape[1]}) and out q's shape, got {p.shape}"
        )


# --- NumPy ---------------------------------------------------------------------------------------
def _split(a, h):
    """(N, L, E) as (N, H, L, D): head h's columns (a view when the last axis is contiguous)."""
    n, l, e = a.shape
    return a.reshape(n, l, h, e // h).transpose(0, 2, 1, 3)


def _mask(t, s, causal, lengths, n):
    """Boolean (N or 1, 1, T, S): True where a key is masked, or None."""
    masked = None
    if causal:
        masked = (np.arange(s)[None, :] > np.arange(t)[:, None])[None, None]
    if lengths is not None:
        past = (np.arange(s)[None, :] >= np.asarray(lengths)[:, None])[:, None, None, :]
        masked = past if masked is None else masked | past
    return masked


def _dropped(p, draws, threshold, drop_scale):
    """The weights after dropout: p * keep * drop_scale (p itself without dropout)."""
    if draws is None:
        return p
    return p * (draws >= threshold) * p.dtype.type(drop_scale)


@blas.on_one_thread
def attention_forward_numpy(q, k, v, scale, causal, lengths, draws, threshold, drop_scale, p, out):
    """p <- masked softmax(scale q_h k_h^T); out_h <- (dropped p) v_h for every head (see the
    module docstring). Returns out."""
    _check(q, k, v, p, out)
    h, _ = _heads(q, p)
    n, t, _ = q.shape
    np.matmul(_split(q, h), _split(k, h).transpose(0, 1, 3, 2), out=p)
    p *= p.dtype.type(scale)
    masked = _mask(t, k.shape[1], causal, lengths, n)
    if masked is not None:
        np.copyto(p, -np.inf, where=masked)
    with np.errstate(invalid="ignore", under="ignore"):
        m = p.max(axis=-1, keepdims=True)
        np.subtract(p, np.where(np.isfinite(m), m, 0), out=p)
        np.exp(p, out=p)
        total = p.sum(axis=-1, keepdims=True)
        np.divide(p, np.where(total > 0, total, 1), out=p)
    w = _dropped(p, draws, threshold, drop_scale)
    ctx = np.matmul(w, _split(v, h))  # (N, H, T, D)
    out[...] = ctx.transpose(0, 2, 1, 3).reshape(out.shape)
    return out


@blas.on_one_thread
def attention_backward_numpy(q, k, v, p, draws, threshold, drop_scale, scale, gout, dq, dk, dv):
    """dq, dk, dv <- the gradients of ``attention_forward``'s out for dL/dout = gout (overwritten)."""
    _check(q, k, v, p, gout)
    h, _ = _heads(q, p)
    go = _split(gout, h)
    w = _dropped(p, draws, threshold, drop_scale)
    dw = np.matmul(go, _split(v, h).transpose(0, 1, 3, 2))
    dvh = np.matmul(w.transpose(0, 1, 3, 2), go)
    dp = dw if draws is None else dw * (draws >= threshold) * p.dtype.type(drop_scale)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    ds *= p.dtype.type(scale)
    dqh = np.matmul(ds, _split(k, h))
    dkh = np.matmul(ds.transpose(0, 1, 3, 2), _split(q, h))
    for grad, heads in ((dq, dqh), (dk, dkh), (dv, dvh)):
        grad[...] = heads.transpose(0, 2, 1, 3).reshape(grad.shape)
    return dq, dk, dv


# --- numba ---------------------------------------------------------------------------------------
# A row's max and sum as vectorised reductions: reassociated (a fixed order for a given machine
# and row length, so still independent of the thread count); a plain loop is one dependent
# chain of adds, about as slow as the row's exps. (Not inlined by numba: its inlining would
# compile them with the caller's flags.)
@njit(cache=True, error_model="numpy", fastmath={"nnan", "ninf", "nsz"})
def _row_max(row, n):
    m = row[0]
    for j in range(1, n):
        m = max(m, row[j])
    return m


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _row_sum(row, n):
    s = row.dtype.type(0)
    for j in range(n):
        s += row[j]
    return s


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _row_dot(a, b, n):
    s = a.dtype.type(0)
    for j in range(n):
        s += a[j] * b[j]
    return s


@njit(**NJIT)
def _softmax_rows(p, n, h, scale, causal, lengths):
    """p[n, h] <- masked softmax(scale * p[n, h]) row by row, in place."""
    t, s = p.shape[2], p.shape[3]
    zero = p.dtype.type(0)
    one = p.dtype.type(1)
    sc = p.dtype.type(scale)
    for i in range(t):
        limit = s if lengths.shape[0] == 0 else min(s, lengths[n])
        if causal:
            limit = min(limit, i + 1)
        row = p[n, h, i]
        if limit <= 0:
            row[:] = zero
            continue
        m = _row_max(row, limit)
        for j in range(limit):
            row[j] = approx.exp((row[j] - m) * sc)
        inv = one / _row_sum(row, limit)
        for j in range(limit):
            row[j] *= inv
        for j in range(limit, s):
            row[j] = zero


@njit(**NJIT)
def _drop_into(w, p, n, h, draws, threshold, ds):
    """w <- p[n, h] * keep * ds (the dropped weights of one head)."""
    t, s = w.shape
    zero = w.dtype.type(0)
    d = w.dtype.type(ds)
    for i in range(t):
        for j in range(s):
            w[i, j] = p[n, h, i, j] * d if draws[n, h, i, j] >= threshold else zero


@njit(**NJIT)
def _forward_samples(q, k, v, scale, causal, lengths, draws, threshold, ds, p, out, lo, hi, w):
    heads = p.shape[1]
    d = q.shape[2] // heads
    for n in range(lo, hi):
        for h in range(heads):
            c0, c1 = h * d, (h + 1) * d
            blas.gemm(q[n, :, c0:c1], k[n, :, c0:c1].T, p[n, h], 0.0)
            _softmax_rows(p, n, h, scale, causal, lengths)
            if draws.shape[0] == 0:
                blas.gemm(p[n, h], v[n, :, c0:c1], out[n, :, c0:c1], 0.0)
            else:
                _drop_into(w, p, n, h, draws, threshold, ds)
                blas.gemm(w, v[n, :, c0:c1], out[n, :, c0:c1], 0.0)


@njit(**NJIT)
def _softmax_grad(dw, p, n, h, scale, draws, threshold, ds):
    """dw <- scale * p * (dp - sum_j dp_j p_j), dp = dw * keep * ds, row by row in place."""
    t, s = dw.shape
    zero = dw.dtype.type(0)
    sc = dw.dtype.type(scale)
    d = dw.dtype.type(ds)
    for i in range(t):
        if draws.shape[0] != 0:
            for j in range(s):
                dw[i, j] = dw[i, j] * d if draws[n, h, i, j] >= threshold else zero
        prow = p[n, h, i]
        row = dw[i]
        dot = _row_dot(row, prow, s)
        for j in range(s):
            row[j] = sc * prow[j] * (row[j] - dot)


@njit(**NJIT)
def _backward_samples(q, k, v, p, draws, threshold, ds, scale, gout, dq, dk, dv, lo, hi, dw, w):
    heads = p.shape[1]
    d = q.shape[2] // heads
    for n in range(lo, hi):
        for h in range(heads):
            c0, c1 = h * d, (h + 1) * d
            g = gout[n, :, c0:c1]
            blas.gemm(g, v[n, :, c0:c1].T, dw, 0.0)
            if draws.shape[0] == 0:
                blas.gemm(p[n, h].T, g, dv[n, :, c0:c1], 0.0)
            else:
                _drop_into(w, p, n, h, draws, threshold, ds)
                blas.gemm(w.T, g, dv[n, :, c0:c1], 0.0)
            _softmax_grad(dw, p, n, h, scale, draws, threshold, ds)
            blas.gemm(dw, k[n, :, c0:c1], dq[n, :, c0:c1], 0.0)
            blas.gemm(dw.T, q[n, :, c0:c1], dk[n, :, c0:c1], 0.0)


@njit(**NJIT)
def _bounds(n, parts, part):
    return part * n // parts, (part + 1) * n // parts


@njit(**NJIT)
def _forward(q, k, v, scale, causal, lengths, draws, threshold, ds, p, out, parts):
    w = np.empty((p.shape[2], p.shape[3]), p.dtype)
    for part in range(parts):
        lo, hi = _bounds(q.shape[0], parts, part)
        _forward_samples(q, k, v, scale, causal, lengths, draws, threshold, ds, p, out, lo, hi, w)


@njit(**NJIT_PARALLEL)
def _forward_parallel(q, k, v, scale, causal, lengths, draws, threshold, ds, p, out, parts):
    w = np.empty((parts, p.shape[2], p.shape[3]), p.dtype)
    for part in prange(parts):
        lo, hi = _bounds(q.shape[0], parts, part)
        before = blas.threads_local(1)
        _forward_samples(q, k, v, scale, causal, lengths, draws, threshold, ds, p, out, lo, hi, w[part])
        blas.threads_local(before)


@njit(**NJIT)
def _backward(q, k, v, p, draws, threshold, ds, scale, gout, dq, dk, dv, parts):
    dw = np.empty((p.shape[2], p.shape[3]), p.dtype)
    w = np.empty_like(dw)
    for part in range(parts):
        lo, hi = _bounds(q.shape[0], parts, part)
        _backward_samples(q, k, v, p, draws, threshold, ds, scale, gout, dq, dk, dv, lo, hi, dw, w)


@njit(**NJIT_PARALLEL)
def _backward_parallel(q, k, v, p, draws, threshold, ds, scale, gout, dq, dk, dv, parts):
    dw = np.empty((parts, p.shape[2], p.shape[3]), p.dtype)
    w = np.empty_like(dw)
    for part in prange(parts):
        lo, hi = _bounds(q.shape[0], parts, part)
        before = blas.threads_local(1)
        _backward_samples(q, k, v, p, draws, threshold, ds, scale, gout, dq, dk, dv, lo, hi, dw[part], w[part])
        blas.threads_local(before)


def _on_threads(p):
    """Whether the parts go to numba's threads (several threads, a good layer, MKL's per-thread
    GEMM); the result is the same either way."""
    return blas.LOCAL_THREADS and parallel.use_parallel(p.size)


def _parts(n):
    return max(1, min(PARTS, n))


# No lengths, no dropout: zero-length arrays (one compiled variant where None and arrays made four).
def _lengths(lengths):
    return none_as_empty(lengths, (0,), np.int64)


def _draws(draws):
    return none_as_empty(draws, (0, 0, 0, 0), np.uint32)


@blas.on_one_thread_unless_mkl
def attention_forward_numba(q, k, v, scale, causal, lengths, draws, threshold, drop_scale, p, out, on_threads=None):
    """numba twin of ``attention_forward_numpy`` (the NumPy kernel without a GEMM numba can call).
    ``on_threads``: the parts on numba's threads (True), on this one (False), or decide (None)."""
    if not blas.AVAILABLE:
        return attention_forward_numpy(q, k, v, scale, causal, lengths, draws, threshold, drop_scale, p, out)
    _check(q, k, v, p, out)
    _heads(q, p)
    threads = _on_threads(p) if on_threads is None else on_threads
    kernel = _forward_parallel if threads else _forward
    kernel(
        q,
        k,
        v,
        float(scale),
        bool(causal),
        _lengths(lengths),
        _draws(draws),
        np.uint32(threshold),
        float(drop_scale),
        p,
        out,
        _parts(q.shape[0]),
    )
    return out


@blas.on_one_thread_unless_mkl
def attention_backward_numba(q, k, v, p, draws, threshold, drop_scale, scale, gout, dq, dk, dv, on_threads=None):
    """numba twin of ``attention_backward_numpy``."""
    if not blas.AVAILABLE:
        return attention_backward_numpy(q, k, v, p, draws, threshold, drop_scale, scale, gout, dq, dk, dv)
    _check(q, k, v, p, gout)
    if dq.shape != q.shape or dk.shape != k.shape or dv.shape != v.shape:
        raise ValueError("attention: dq, dk and dv must have the shapes of q, k and v")
    threads = _on_threads(p) if on_threads is None else on_threads
    kernel = _backward_parallel if threads else _backward
    kernel(
        q,
        k,
        v,
        p,
        _draws(draws),
        np.uint32(threshold),
        float(drop_scale),
        float(scale),
        gout,
        dq,
        dk,
        dv,
        _parts(q.shape[0]),
    )
    return dq, dk, dv


# The table (see kernels/registry.py) and the warm-up: self-attention's column blocks of one
# (N, T, 3E) array (what the layer hands over), with and without lengths and dropout, the causal
# flag a run-time argument; the threaded twins for float32. Cross-attention's separate arrays
# compile on first use.
from .registry import kernel, warmup_case  # noqa: E402

kernel("attention_forward", attention_forward_numpy, attention_forward_numba)
kernel("attention_backward", attention_backward_numpy, attention_backward_numba)


@warmup_case
def _warm_up(dtype):
    n, t, e, h = 2, 3, 4, 2
    qkv = np.linspace(-1.0, 1.0, n * t * 3 * e, dtype=dtype).reshape(n, t, 3 * e)
    q, k, v = qkv[:, :, :e], qkv[:, :, e : 2 * e], qkv[:, :, 2 * e :]
    lengths = np.array([3, 2], np.int64)
    draws = np.arange(n * h * t * t, dtype=np.uint32).reshape(n, h, t, t) * np.uint32(97_000_000)
    p = np.empty((n, h, t, t), dtype)
    out = np.empty((n, t, e), dtype)
    dqkv = np.empty_like(qkv)
    dq, dk, dv = dqkv[:, :, :e], dqkv[:, :, e : 2 * e], dqkv[:, :, 2 * e :]
    for on in (False, True) if dtype == np.float32 else (False,):
        for lens in (None, lengths):
            for dr in (None, draws):
                attention_forward_numba(q, k, v, 0.5, True, lens, dr, 2**31, 2.0, p, out, on_threads=on)
                attention_backward_numba(q, k, v, p, dr, 2**31, 2.0, 0.5, out, dq, dk, dv, on_threads=on)
