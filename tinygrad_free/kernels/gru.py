"""GRU kernels: one direction of one layer, forward and backward, each one call.

PyTorch's ``nn.GRU`` equations (gates stacked r, z, n in W_ih (3H, In), W_hh (3H, H)):

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h_t = (1 - z) * n + z * h_prev

The recurrent product's n part is multiplied by r, so the input and recurrent sides stay apart:
per step the product h_prev W_hh^T goes to a scratch (m, 3H) and the fused loop combines it with
the kept input projection, keeping r, z, n in ``gates`` and W_hn h + b_hn in ``ghn`` for the
backward. Backward per step, with dh the carried gradient plus the output's:

    dn = dh (1 - z) (1 - n^2),  dz = dh (h_prev - n) z (1 - z),  dr = dn (W_hn h + b_hn) r (1 - r)
    input side  (W_ih, b_ih, x):   (dr, dz, dn)
    recurrent side (W_hh, b_hh):   (dr, dz, dn r),    dh_prev = dh z + (dr, dz, dn r) W_hh

so the two sides' gate gradients are two buffers (``recurrent.gate_grads`` with ``separate``).
Layout, lengths and parts: see ``recurrent``.
"""

import numpy as np

from . import approx, blas, recurrent
from ._nb import NJIT, njit
from .dense import sigmoid_inplace
from .parallel import NJIT_PARALLEL, prange


# --- NumPy --------------------------------------------------------------------------------------
@blas.on_one_thread
def gru_forward_numpy(x, W_ih, W_hh, b_ih, b_hh, h0, lengths, reverse, gates, hp, ghn, out, off, h_n):
    """One direction over x (N, T, In): gates (N, T, 3H) <- r, z, n; hp (N, T, H) <- the state
    before each step; ghn (N, T, H) <- W_hn h_prev + b_hn; out[:, :, off:off + H] <- h (0 past a
    length); h_n (N, H) <- the final state. h0 (N, H) or None (zeros); lengths (N,) or None."""
    n, steps, size = x.shape
    hidden = W_hh.shape[1]
    np.matmul(x.reshape(n * steps, size), W_ih.T, out=gates.reshape(n * steps, 3 * hidden))
    order = recurrent.steps_of(steps, reverse)
    hp[:, order[0]] = 0 if h0 is None else h0
    for s, t in enumerate(order):
        gi = gates[:, t]
        gi += b_ih
        gh = hp[:, t] @ W_hh.T + b_hh
        rz = gi[:, : 2 * hidden]
        rz += gh[:, : 2 * hidden]
        sigmoid_inplace(rz)
        r, z = rz[:, :hidden], rz[:, hidden:]
        ghn[:, t] = gh[:, 2 * hidden :]
        g = gi[:, 2 * hidden :]
        g += r * ghn[:, t]
        np.tanh(g, out=g)
        h = (1 - z) * g + z * hp[:, t]
        recurrent.end_step_numpy(t, s, order, lengths, out, off, (h,), (hp,), (h_n,))


@blas.on_one_thread
def gru_backward_numpy(
    x, W_ih, W_hh, gates, hp, ghn, lengths, reverse, g_out, off, g_hn, dgates, dgates_hh,
    dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, dh0,
):  # fmt: skip
    """The direction's backward from its forward's buffers: g_out (N, T, O) (its columns
    [off, off + H]) or None, g_hn (N, H) or None. dgates, dgates_hh (N, T, 3H) are scratch (the
    input and recurrent sides' gate gradients); dW_* <- ... + beta dW_*, db_* +=,
    dx <- dgates W_ih + beta_x dx (dx may be None), dh0 <- the initial state's gradient (or None)."""
    hidden = W_hh.shape[1]
    dh = np.zeros(hp.shape[::2], hp.dtype) if g_hn is None else g_hn.astype(hp.dtype, copy=True)
    for t in reversed(recurrent.steps_of(x.shape[1], reverse)):
        r, z, g = (gates[:, t, k * hidden : (k + 1) * hidden] for k in range(3))
        dht = dh if g_out is None else dh + g_out[:, t, off : off + hidden]
        dn = dht * (1 - z) * (1 - g * g)
        di, dr = dgates[:, t], dgates_hh[:, t]
        di[:, :hidden] = dn * ghn[:, t] * r * (1 - r)
        di[:, hidden : 2 * hidden] = dht * (hp[:, t] - g) * z * (1 - z)
        di[:, 2 * hidden :] = dn
        dr[:, : 2 * hidden] = di[:, : 2 * hidden]
        dr[:, 2 * hidden :] = dn * r
        valid = recurrent.valid_rows(t, lengths)
        if valid is None:
            dh = dht * z + dr @ W_hh
        else:
            di *= valid
            dr *= valid
            dh = np.where(valid, dht * z + dr @ W_hh, dh)
    if dh0 is not None:
        dh0[...] = dh
    recurrent.weight_grads_numpy(
        dgates, x, hp, dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, W_ih, dg_hh=dgates_hh
    )
    return dx


# --- numba --------------------------------------------------------------------------------------
# Loops over slices indexed from 0, each writing few arrays (see lstm._cell for why).
@njit(**NJIT)
def _cell(gi, gh, b_ih, b_hh, h_prev, ghn, h_dst, out_row, hidden):
    """gi (3H,) <- r, z, n from the input projection gi and the recurrent product gh; ghn <-
    W_hn h_prev + b_hn; h_dst, out_row <- (1 - z) n + z h_prev."""
    one = gi.dtype.type(1)
    ri, rh, bri, brh = gi[: 2 * hidden], gh[: 2 * hidden], b_ih[: 2 * hidden], b_hh[: 2 * hidden]
    for k in range(2 * hidden):
        ri[k] = approx.sigmoid((ri[k] + bri[k]) + (rh[k] + brh[k]))
    nh, bnh = gh[2 * hidden : 3 * hidden], b_hh[2 * hidden : 3 * hidden]
    for j in range(hidden):
        ghn[j] = nh[j] + bnh[j]
    r, z, g, bg = gi[:hidden], gi[hidden : 2 * hidden], gi[2 * hidden : 3 * hidden], b_ih[2 * hidden : 3 * hidden]
    for j in range(hidden):
        g[j] = approx.tanh((g[j] + bg[j]) + r[j] * ghn[j])
    for j in range(hidden):
        h_dst[j] = (one - z[j]) * g[j] + z[j] * h_prev[j]
    for j in range(hidden):
        out_row[j] = h_dst[j]


@njit(**NJIT)
def _cell_grad(gates, ghn, h_prev, g_out, dh, di, dr, hidden):
    """di, dr (3H,) <- the input and recurrent sides' gate gradients of one sample's step; dh <-
    its direct part dh z (the caller's product adds dr W_hh)."""
    one = gates.dtype.type(1)
    r, z, g = gates[:hidden], gates[hidden : 2 * hidden], gates[2 * hidden : 3 * hidden]
    dir_, diz, din = di[:hidden], di[hidden : 2 * hidden], di[2 * hidden : 3 * hidden]
    drr, drz, drn = dr[:hidden], dr[hidden : 2 * hidden], dr[2 * hidden : 3 * hidden]
    for j in range(hidden):
        dht = dh[j] + g_out[j]
        dn = dht * (one - z[j]) * (one - g[j] * g[j])
        dr_ = dn * ghn[j] * r[j] * (one - r[j])
        dz = dht * (h_prev[j] - g[j]) * z[j] * (one - z[j])
        dir_[j] = dr_
        drr[j] = dr_
        diz[j] = dz
        drz[j] = dz
        din[j] = dn
        drn[j] = dn * r[j]
        dh[j] = dht * z[j]


@njit(**NJIT)
def _forward_part(x, W_ih, W_hh, b_ih, b_hh, lengths, reverse, gates, hp, ghn, out, off, h_n, lo, hi):
    steps, hidden = x.shape[1], W_hh.shape[1]
    zero = gates.dtype.type(0)
    recurrent.project(x, W_ih, gates, lo, hi)
    gh = np.empty((hi - lo, 3 * hidden), gates.dtype)
    for s in range(steps):
        t = recurrent.step_time(s, steps, reverse)
        last = s == steps - 1
        nxt = recurrent.step_time(s + 1, steps, reverse) if not last else t
        blas.gemm(hp[lo:hi, t], W_hh.T, gh, 0.0)
        for n in range(lo, hi):
            h_prev, orow = hp[n, t], out[n, t, off : off + hidden]
            h_dst = h_n[n] if last else hp[n, nxt]
            if t >= lengths[n]:  # past the sequence: the state stays, the output is 0
                for j in range(hidden):
                    h_dst[j] = h_prev[j]
                    orow[j] = zero
                continue
            _cell(gates[n, t], gh[n - lo], b_ih, b_hh, h_prev, ghn[n, t], h_dst, orow, hidden)


@njit(**NJIT)
def _backward_part(x, W_hh, gates, hp, ghn, lengths, reverse, g_out, off, dh, di, dr, lo, hi):
    """The part's time loop: di, dr (its rows) and the carried dh (ending as dh0)."""
    steps, hidden = x.shape[1], W_hh.shape[1]
    zero = gates.dtype.type(0)
    for s in range(steps - 1, -1, -1):
        t = recurrent.step_time(s, steps, reverse)
        for n in range(lo, hi):
            if t >= lengths[n]:  # no gates at this step; dh passes through
                dir_, drr = di[n, t], dr[n, t]
                for k in range(3 * hidden):
                    dir_[k] = zero
                    drr[k] = zero
                continue
            _cell_grad(gates[n, t], ghn[n, t], hp[n, t], g_out[n, t, off : off + hidden], dh[n], di[n, t], dr[n, t],
                       hidden)  # fmt: skip
        blas.gemm(dr[lo:hi, t], W_hh, dh[lo:hi], 1.0)


@njit(**NJIT)
def _prepare(x, W_hh, gates, lengths, h0, reverse, hp, ghn):
    recurrent.check_buffers(x, W_hh, 3, gates, hp, lengths)
    if ghn.shape != hp.shape:
        raise ValueError("gru: ghn must have hp's shape")
    hp[:, recurrent.step_time(0, x.shape[1], reverse)] = h0


@njit(**NJIT)
def _forward(x, W_ih, W_hh, b_ih, b_hh, lengths, reverse, h0, gates, hp, ghn, out, off, h_n, parts):
    _prepare(x, W_hh, gates, lengths, h0, reverse, hp, ghn)
    for p in range(parts):
        lo, hi = recurrent.part_bounds(x.shape[0], parts, p)
        _forward_part(x, W_ih, W_hh, b_ih, b_hh, lengths, reverse, gates, hp, ghn, out, off, h_n, lo, hi)


@njit(**NJIT_PARALLEL)
def _forward_parallel(x, W_ih, W_hh, b_ih, b_hh, lengths, reverse, h0, gates, hp, ghn, out, off, h_n, parts):
    _prepare(x, W_hh, gates, lengths, h0, reverse, hp, ghn)
    for p in prange(parts):
        lo, hi = recurrent.part_bounds(x.shape[0], parts, p)
        before = blas.threads_local(1)
        _forward_part(x, W_ih, W_hh, b_ih, b_hh, lengths, reverse, gates, hp, ghn, out, off, h_n, lo, hi)
        blas.threads_local(before)


@njit(**NJIT)
def _backward_one(x, W_ih, W_hh, gates, hp, ghn, lengths, reverse, g_out, off, dh, di, dr, targets, dx, beta_x,
                  has_dx, acc, p, parts):  # fmt: skip
    lo, hi = recurrent.part_bounds(x.shape[0], parts, p)
    if hi == lo:
        return
    _backward_part(x, W_hh, gates, hp, ghn, lengths, reverse, g_out, off, dh, di, dr, lo, hi)
    d_ih, b_ih, d_hh, b_hh = targets
    recurrent.gate_grads(di, dr, True, x, hp, d_ih, b_ih, d_hh, b_hh, acc[0][p], acc[1][p], lo, hi)
    if has_dx:
        recurrent.input_grad(di, W_ih, dx, beta_x, lo, hi)


@njit(**NJIT)
def _backward(x, W_ih, W_hh, gates, hp, ghn, lengths, reverse, g_out, off, dh, di, dr,
              dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, has_dx, parts):  # fmt: skip
    p_ih, p_hh, a_ih, a_hh = recurrent.partials(parts, W_ih, W_hh)
    for p in range(parts):
        targets = recurrent.part_targets(p, dW_ih, beta_ih, dW_hh, beta_hh, p_ih, p_hh)
        _backward_one(x, W_ih, W_hh, gates, hp, ghn, lengths, reverse, g_out, off, dh, di, dr, targets, dx, beta_x,
                      has_dx, (a_ih, a_hh), p, parts)  # fmt: skip
    recurrent.finish(dW_ih, dW_hh, db_ih, db_hh, p_ih, p_hh, a_ih, a_hh)


@njit(**NJIT_PARALLEL)
def _backward_parallel(x, W_ih, W_hh, gates, hp, ghn, lengths, reverse, g_out, off, dh, di, dr,
                       dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, has_dx, parts):  # fmt: skip
    p_ih, p_hh, a_ih, a_hh = recurrent.partials(parts, W_ih, W_hh)
    for p in prange(parts):
        before = blas.threads_local(1)
        targets = recurrent.part_targets(p, dW_ih, beta_ih, dW_hh, beta_hh, p_ih, p_hh)
        _backward_one(x, W_ih, W_hh, gates, hp, ghn, lengths, reverse, g_out, off, dh, di, dr, targets, dx, beta_x,
                      has_dx, (a_ih, a_hh), p, parts)  # fmt: skip
        blas.threads_local(before)
    recurrent.finish(dW_ih, dW_hh, db_ih, db_hh, p_ih, p_hh, a_ih, a_hh)


@blas.on_one_thread_unless_mkl
def gru_forward_numba(x, W_ih, W_hh, b_ih, b_hh, h0, lengths, reverse, gates, hp, ghn, out, off, h_n, on_threads=None):
    """numba twin of ``gru_forward_numpy``: one jitted call (products included). ``on_threads``:
    the parts on numba's threads (True), on this one (False), or decide (None); the same result."""
    if not blas.AVAILABLE:
        return gru_forward_numpy(x, W_ih, W_hh, b_ih, b_hh, h0, lengths, reverse, gates, hp, ghn, out, off, h_n)
    n, steps, _ = x.shape
    threads = recurrent.on_threads(gates.size) if on_threads is None else on_threads
    kernel = _forward_parallel if threads else _forward
    kernel(x, W_ih, W_hh, b_ih, b_hh, recurrent.full_lengths(lengths, n, steps), bool(reverse),
           recurrent.state(h0, n, W_hh.shape[1], x.dtype), gates, hp, ghn, out, int(off), h_n,
           recurrent.parts_of(n))  # fmt: skip


@blas.on_one_thread_unless_mkl
def gru_backward_numba(
    x, W_ih, W_hh, gates, hp, ghn, lengths, reverse, g_out, off, g_hn, dgates, dgates_hh,
    dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, dh0, on_threads=None,
):  # fmt: skip
    """numba twin of ``gru_backward_numpy`` (one jitted call; ``on_threads`` as in the forward)."""
    if not blas.AVAILABLE:
        return gru_backward_numpy(x, W_ih, W_hh, gates, hp, ghn, lengths, reverse, g_out, off, g_hn, dgates,
                                  dgates_hh, dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, dh0)  # fmt: skip
    n, steps, _ = x.shape
    hidden = W_hh.shape[1]
    dh = recurrent.state(g_hn, n, hidden, x.dtype).copy()
    if g_out is None:
        g_out, off = np.zeros((n, steps, hidden), x.dtype), 0
    threads = recurrent.on_threads(gates.size) if on_threads is None else on_threads
    kernel = _backward_parallel if threads else _backward
    kernel(x, W_ih, W_hh, gates, hp, ghn, recurrent.full_lengths(lengths, n, steps), bool(reverse),
           np.ascontiguousarray(g_out), int(off), dh, dgates, dgates_hh, dW_ih, float(beta_ih), dW_hh,
           float(beta_hh), db_ih, db_hh, recurrent.no_dx(x) if dx is None else dx, float(beta_x), dx is not None,
           recurrent.parts_of(n))  # fmt: skip
    if dh0 is not None:
        dh0[...] = dh
    return dx


from .registry import kernel, warmup_case  # noqa: E402

kernel("gru_forward", gru_forward_numpy, gru_forward_numba)
kernel("gru_backward", gru_backward_numpy, gru_backward_numba)


@warmup_case
def _warm_up(dtype):
    recurrent.warm_up(gru_forward_numba, gru_backward_numba, 3, 2, 1, 2, dtype)
