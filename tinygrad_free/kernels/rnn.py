"""Plain (Elman) RNN kernels: one direction of one layer, forward and backward, each one call.

PyTorch's ``nn.RNN`` equation, tanh or relu (``code``: ``dense.TANH`` or ``dense.RELU``):

    h_t = act(W_ih x_t + b_ih + W_hh h_prev + b_hh)

Forward: gates <- x W_ih^T for every step (one product); per step gates[:, t] += h_prev W_hh^T
(one product) and one fused loop adding the biases and applying the activation (h_t is kept in
``gates`` for the backward, whose act' is read from it, as ``dense`` does). Backward per step:
dz = (dh + the output's gradient) act'(h_t), then dh_prev = dz W_hh (one product). Layout,
lengths, parts and the whole-sequence weight gradients: see ``recurrent``.
"""

import numpy as np

from . import approx, blas, dense, recurrent
from ._nb import NJIT, njit
from .parallel import NJIT_PARALLEL, prange


# --- NumPy --------------------------------------------------------------------------------------
@blas.on_one_thread
def rnn_forward_numpy(x, W_ih, W_hh, b_ih, b_hh, code, h0, lengths, reverse, gates, hp, out, off, h_n):
    """One direction over x (N, T, In): gates (N, T, H) <- h_t; hp (N, T, H) <- the state before
    each step; out[:, :, off:off + H] <- h (0 past a length); h_n (N, H) <- the final state."""
    n, steps, size = x.shape
    hidden = W_hh.shape[1]
    np.matmul(x.reshape(n * steps, size), W_ih.T, out=gates.reshape(n * steps, hidden))
    b = b_ih + b_hh
    order = recurrent.steps_of(steps, reverse)
    hp[:, order[0]] = 0 if h0 is None else h0
    for s, t in enumerate(order):
        z = gates[:, t]
        z += hp[:, t] @ W_hh.T
        dense.bias_act_numpy(z, b, code)
        recurrent.end_step_numpy(t, s, order, lengths, out, off, (z,), (hp,), (h_n,))


@blas.on_one_thread
def rnn_backward_numpy(
    x, W_ih, W_hh, code, gates, hp, lengths, reverse, g_out, off, g_hn, dgates,
    dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, dh0,
):  # fmt: skip
    """The direction's backward from its forward's buffers (as ``lstm_backward_numpy``, one state)."""
    hidden = W_hh.shape[1]
    dh = np.zeros(hp.shape[::2], hp.dtype) if g_hn is None else g_hn.astype(hp.dtype, copy=True)
    for t in reversed(recurrent.steps_of(x.shape[1], reverse)):
        dht = dh if g_out is None else dh + g_out[:, t, off : off + hidden]
        dz = dgates[:, t]
        dense.act_grad_numpy(gates[:, t], dht, code, dz)
        valid = recurrent.valid_rows(t, lengths)
        if valid is None:
            dh = dz @ W_hh
        else:
            dz *= valid
            dh = np.where(valid, dz @ W_hh, dh)
    if dh0 is not None:
        dh0[...] = dh
    recurrent.weight_grads_numpy(dgates, x, hp, dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, W_ih)
    return dx


# --- numba --------------------------------------------------------------------------------------
# Loops over slices indexed from 0, each writing few arrays (see lstm._cell for why).
@njit(**NJIT)
def _cell(z, b, code, h_dst, out_row, hidden):
    """z (H,) <- h = act(z + b); h_dst, out_row <- h."""
    zero = z.dtype.type(0)
    if code == dense.TANH:
        for j in range(hidden):
            z[j] = approx.tanh(z[j] + b[j])
    else:
        for j in range(hidden):
            v = z[j] + b[j]
            z[j] = zero if v < zero else v  # NaN stays NaN, as np.maximum(v, 0)
    for j in range(hidden):
        h_dst[j] = z[j]
    for j in range(hidden):
        out_row[j] = z[j]


@njit(**NJIT)
def _cell_grad(h, code, g_out, dh, dz, hidden):
    """dz (H,) <- (dh + g_out) act'(h); dh <- 0 (the caller's product adds dz W_hh)."""
    one, zero = h.dtype.type(1), h.dtype.type(0)
    if code == dense.TANH:
        for j in range(hidden):
            dz[j] = dense.d_tanh(h[j], dh[j] + g_out[j], one)
    else:
        for j in range(hidden):
            dz[j] = dense.d_relu(h[j], dh[j] + g_out[j], one, zero)
    for j in range(hidden):
        dh[j] = zero


@njit(**NJIT)
def _forward_part(x, W_ih, W_hh, b, code, lengths, reverse, gates, hp, out, off, h_n, lo, hi):
    steps, hidden = x.shape[1], W_hh.shape[1]
    zero = gates.dtype.type(0)
    recurrent.project(x, W_ih, gates, lo, hi)
    for s in range(steps):
        t = recurrent.step_time(s, steps, reverse)
        last = s == steps - 1
        nxt = recurrent.step_time(s + 1, steps, reverse) if not last else t
        blas.gemm(hp[lo:hi, t], W_hh.T, gates[lo:hi, t], 1.0)
        for n in range(lo, hi):
            h_prev, orow = hp[n, t], out[n, t, off : off + hidden]
            h_dst = h_n[n] if last else hp[n, nxt]
            if t >= lengths[n]:  # past the sequence: the state stays, the output is 0
                for j in range(hidden):
                    h_dst[j] = h_prev[j]
                    orow[j] = zero
                continue
            _cell(gates[n, t], b, code, h_dst, orow, hidden)


@njit(**NJIT)
def _backward_part(x, W_hh, code, gates, lengths, reverse, g_out, off, dh, dgates, lo, hi):
    steps, hidden = x.shape[1], W_hh.shape[1]
    zero = gates.dtype.type(0)
    for s in range(steps - 1, -1, -1):
        t = recurrent.step_time(s, steps, reverse)
        for n in range(lo, hi):
            dz = dgates[n, t]
            if t >= lengths[n]:  # no gates at this step; dh passes through
                for k in range(hidden):
                    dz[k] = zero
                continue
            _cell_grad(gates[n, t], code, g_out[n, t, off : off + hidden], dh[n], dz, hidden)
        blas.gemm(dgates[lo:hi, t], W_hh, dh[lo:hi], 1.0)


@njit(**NJIT)
def _prepare(x, W_hh, gates, lengths, h0, reverse, hp):
    recurrent.check_buffers(x, W_hh, 1, gates, hp, lengths)
    hp[:, recurrent.step_time(0, x.shape[1], reverse)] = h0


@njit(**NJIT)
def _forward(x, W_ih, W_hh, b, code, lengths, reverse, h0, gates, hp, out, off, h_n, parts):
    _prepare(x, W_hh, gates, lengths, h0, reverse, hp)
    for p in range(parts):
        lo, hi = recurrent.part_bounds(x.shape[0], parts, p)
        _forward_part(x, W_ih, W_hh, b, code, lengths, reverse, gates, hp, out, off, h_n, lo, hi)


@njit(**NJIT_PARALLEL)
def _forward_parallel(x, W_ih, W_hh, b, code, lengths, reverse, h0, gates, hp, out, off, h_n, parts):
    _prepare(x, W_hh, gates, lengths, h0, reverse, hp)
    for p in prange(parts):
        lo, hi = recurrent.part_bounds(x.shape[0], parts, p)
        before = blas.threads_local(1)
        _forward_part(x, W_ih, W_hh, b, code, lengths, reverse, gates, hp, out, off, h_n, lo, hi)
        blas.threads_local(before)


@njit(**NJIT)
def _backward_one(x, W_ih, W_hh, code, gates, hp, lengths, reverse, g_out, off, dh, dgates, targets, dx, beta_x,
                  has_dx, acc, p, parts):  # fmt: skip
    lo, hi = recurrent.part_bounds(x.shape[0], parts, p)
    if hi == lo:
        return
    _backward_part(x, W_hh, code, gates, lengths, reverse, g_out, off, dh, dgates, lo, hi)
    d_ih, b_ih, d_hh, b_hh = targets
    recurrent.gate_grads(dgates, dgates, False, x, hp, d_ih, b_ih, d_hh, b_hh, acc[0][p], acc[1][p], lo, hi)
    if has_dx:
        recurrent.input_grad(dgates, W_ih, dx, beta_x, lo, hi)


@njit(**NJIT)
def _backward(x, W_ih, W_hh, code, gates, hp, lengths, reverse, g_out, off, dh, dgates,
              dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, has_dx, parts):  # fmt: skip
    p_ih, p_hh, a_ih, a_hh = recurrent.partials(parts, W_ih, W_hh)
    for p in range(parts):
        targets = recurrent.part_targets(p, dW_ih, beta_ih, dW_hh, beta_hh, p_ih, p_hh)
        _backward_one(x, W_ih, W_hh, code, gates, hp, lengths, reverse, g_out, off, dh, dgates, targets, dx, beta_x,
                      has_dx, (a_ih, a_hh), p, parts)  # fmt: skip
    recurrent.finish(dW_ih, dW_hh, db_ih, db_hh, p_ih, p_hh, a_ih, a_hh)


@njit(**NJIT_PARALLEL)
def _backward_parallel(x, W_ih, W_hh, code, gates, hp, lengths, reverse, g_out, off, dh, dgates,
                       dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, has_dx, parts):  # fmt: skip
    p_ih, p_hh, a_ih, a_hh = recurrent.partials(parts, W_ih, W_hh)
    for p in prange(parts):
        before = blas.threads_local(1)
        targets = recurrent.part_targets(p, dW_ih, beta_ih, dW_hh, beta_hh, p_ih, p_hh)
        _backward_one(x, W_ih, W_hh, code, gates, hp, lengths, reverse, g_out, off, dh, dgates, targets, dx, beta_x,
                      has_dx, (a_ih, a_hh), p, parts)  # fmt: skip
        blas.threads_local(before)
    recurrent.finish(dW_ih, dW_hh, db_ih, db_hh, p_ih, p_hh, a_ih, a_hh)


@blas.on_one_thread_unless_mkl
def rnn_forward_numba(x, W_ih, W_hh, b_ih, b_hh, code, h0, lengths, reverse, gates, hp, out, off, h_n,
                      on_threads=None):  # fmt: skip
    """numba twin of ``rnn_forward_numpy``: one jitted call (products included). ``on_threads``:
    the parts on numba's threads (True), on this one (False), or decide (None); the same result."""
    if not blas.AVAILABLE:
        return rnn_forward_numpy(x, W_ih, W_hh, b_ih, b_hh, code, h0, lengths, reverse, gates, hp, out, off, h_n)
    n, steps, _ = x.shape
    threads = recurrent.on_threads(gates.size) if on_threads is None else on_threads
    kernel = _forward_parallel if threads else _forward
    kernel(x, W_ih, W_hh, b_ih + b_hh, int(code), recurrent.full_lengths(lengths, n, steps), bool(reverse),
           recurrent.state(h0, n, W_hh.shape[1], x.dtype), gates, hp, out, int(off), h_n,
           recurrent.parts_of(n))  # fmt: skip


@blas.on_one_thread_unless_mkl
def rnn_backward_numba(
    x, W_ih, W_hh, code, gates, hp, lengths, reverse, g_out, off, g_hn, dgates,
    dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, dh0, on_threads=None,
):  # fmt: skip
    """numba twin of ``rnn_backward_numpy`` (one jitted call; ``on_threads`` as in the forward)."""
    if not blas.AVAILABLE:
        return rnn_backward_numpy(x, W_ih, W_hh, code, gates, hp, lengths, reverse, g_out, off, g_hn, dgates,
                                  dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, dh0)  # fmt: skip
    n, steps, _ = x.shape
    hidden = W_hh.shape[1]
    dh = recurrent.state(g_hn, n, hidden, x.dtype).copy()
    if g_out is None:
        g_out, off = np.zeros((n, steps, hidden), x.dtype), 0
    threads = recurrent.on_threads(gates.size) if on_threads is None else on_threads
    kernel = _backward_parallel if threads else _backward
    kernel(x, W_ih, W_hh, int(code), gates, hp, recurrent.full_lengths(lengths, n, steps), bool(reverse),
           np.ascontiguousarray(g_out), int(off), dh, dgates, dW_ih, float(beta_ih), dW_hh, float(beta_hh), db_ih,
           db_hh, recurrent.no_dx(x) if dx is None else dx, float(beta_x), dx is not None,
           recurrent.parts_of(n))  # fmt: skip
    if dh0 is not None:
        dh0[...] = dh
    return dx


from .registry import kernel, warmup_case  # noqa: E402

kernel("rnn_forward", rnn_forward_numpy, rnn_forward_numba)
kernel("rnn_backward", rnn_backward_numpy, rnn_backward_numba)


def _tanh_forward(x, W_ih, W_hh, b_ih, b_hh, h0, lengths, reverse, gates, hp, out, off, h_n, on_threads=None):
    rnn_forward_numba(x, W_ih, W_hh, b_ih, b_hh, dense.TANH, h0, lengths, reverse, gates, hp, out, off, h_n, on_threads)


def _tanh_backward(x, W_ih, W_hh, gates, hp, lengths, reverse, g_out, off, g_hn, dgates, *rest, on_threads=None):
    rnn_backward_numba(x, W_ih, W_hh, dense.TANH, gates, hp, lengths, reverse, g_out, off, g_hn, dgates, *rest,
                       on_threads=on_threads)  # fmt: skip


@warmup_case
def _warm_up(dtype):
    # The activation is a run-time argument: one compilation serves tanh and relu.
    recurrent.warm_up(_tanh_forward, _tanh_backward, 1, 1, 1, 1, dtype)
