"""LSTM kernels: one direction of one layer, forward and backward, each one call.

PyTorch's ``nn.LSTM`` equations (gates stacked i, f, g, o in W_ih (4H, In), W_hh (4H, H)):

    i = sigmoid(z_i), f = sigmoid(z_f), g = tanh(z_g), o = sigmoid(z_o),
        z = W_ih x_t + b_ih + W_hh h_prev + b_hh
    c_t = f * c_prev + i * g,   h_t = o * tanh(c_t)

Forward (see ``recurrent`` for the layout, the lengths and the parts): gates <- x W_ih^T for every
step (one product); then per step gates[:, t] += h_prev W_hh^T (one product) and one fused loop
that adds b_ih + b_hh, applies the activations (kept in ``gates`` for the backward), updates the
cell and hidden states (into hp/cp's next slot, the last step's into h_n/c_n) and writes the
output. Backward per step, from the output gradient and the carried dh, dc: one fused loop
recomputing c_t and tanh(c_t) from the kept gates and c_prev,

    dc  = dc_next + dh o (1 - tanh(c)^2)
    dz_i = dc g i (1 - i),  dz_f = dc c_prev f (1 - f),  dz_g = dc i (1 - g^2),
    dz_o = dh tanh(c) o (1 - o),  dc_prev = dc f

then dh_prev = dz W_hh (one product). The weight gradients, bias sums and dx are the
whole-sequence products of ``recurrent``. float32 gates use ``approx.sigmoid_f32`` and the
rational ``approx.tanh``, both vectorised in the fused loops.
"""

import numpy as np

from . import approx, blas, recurrent
from ._nb import NJIT, njit
from .dense import sigmoid_inplace
from .parallel import NJIT_PARALLEL, prange


# --- NumPy --------------------------------------------------------------------------------------
@blas.on_one_thread
def lstm_forward_numpy(x, W_ih, W_hh, b_ih, b_hh, h0, c0, lengths, reverse, gates, hp, cp, out, off, h_n, c_n):
    """One direction over x (N, T, In): fills gates (N, T, 4H) with i, f, g, o, hp and cp (N, T, H)
    with the states before each step, out[:, :, off:off + H] with h (0 past a length) and h_n,
    c_n (N, H) with the final states. h0, c0 (N, H) or None (zeros); lengths (N,) or None."""
    n, steps, size = x.shape
    hidden = W_hh.shape[1]
    np.matmul(x.reshape(n * steps, size), W_ih.T, out=gates.reshape(n * steps, 4 * hidden))
    b = b_ih + b_hh
    order = recurrent.steps_of(steps, reverse)
    hp[:, order[0]] = 0 if h0 is None else h0
    cp[:, order[0]] = 0 if c0 is None else c0
    for s, t in enumerate(order):
        z = gates[:, t]
        z += hp[:, t] @ W_hh.T
        z += b
        sigmoid_inplace(z[:, : 2 * hidden])
        np.tanh(z[:, 2 * hidden : 3 * hidden], out=z[:, 2 * hidden : 3 * hidden])
        sigmoid_inplace(z[:, 3 * hidden :])
        i, f, g, o = (z[:, k * hidden : (k + 1) * hidden] for k in range(4))
        c = f * cp[:, t] + i * g
        h = o * np.tanh(c)
        recurrent.end_step_numpy(t, s, order, lengths, out, off, (h, c), (hp, cp), (h_n, c_n))


@blas.on_one_thread
def lstm_backward_numpy(
    x, W_ih, W_hh, gates, hp, cp, lengths, reverse, g_out, off, g_hn, g_cn, dgates,
    dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, dh0, dc0,
):  # fmt: skip
    """The direction's backward from its forward's buffers: g_out (N, T, O) (its columns
    [off, off + H]) or None, g_hn, g_cn (N, H) or None (the final states' gradients). dgates
    (N, T, 4H) is scratch; dW_* <- ... + beta dW_*, db_* +=, dx <- dz W_ih + beta_x dx (dx may be
    None), dh0, dc0 <- the initial states' gradients (each may be None)."""
    hidden = W_hh.shape[1]
    dh = np.zeros(hp.shape[::2], hp.dtype) if g_hn is None else g_hn.astype(hp.dtype, copy=True)
    dc = np.zeros(hp.shape[::2], hp.dtype) if g_cn is None else g_cn.astype(hp.dtype, copy=True)
    for t in reversed(recurrent.steps_of(x.shape[1], reverse)):
        i, f, g, o = (gates[:, t, k * hidden : (k + 1) * hidden] for k in range(4))
        c_prev = cp[:, t]
        tc = np.tanh(f * c_prev + i * g)
        dht = dh if g_out is None else dh + g_out[:, t, off : off + hidden]
        dct = dc + dht * o * (1 - tc * tc)
        dz = dgates[:, t]
        dz[:, :hidden] = dct * g * i * (1 - i)
        dz[:, hidden : 2 * hidden] = dct * c_prev * f * (1 - f)
        dz[:, 2 * hidden : 3 * hidden] = dct * i * (1 - g * g)
        dz[:, 3 * hidden :] = dht * tc * o * (1 - o)
        valid = recurrent.valid_rows(t, lengths)
        if valid is None:
            dc = dct * f
            dh = dz @ W_hh
        else:
            dz *= valid
            dc = np.where(valid, dct * f, dc)
            dh = np.where(valid, dz @ W_hh, dh)
    if dh0 is not None:
        dh0[...] = dh
    if dc0 is not None:
        dc0[...] = dc
    recurrent.weight_grads_numpy(dgates, x, hp, dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, W_ih)
    return dx


# --- numba --------------------------------------------------------------------------------------
@njit(**NJIT)
def _forward_part(x, W_ih, W_hh, b, lengths, reverse, gates, hp, cp, out, off, h_n, c_n, lo, hi):
    steps, hidden = x.shape[1], W_hh.shape[1]
    zero = gates.dtype.type(0)
    recurrent.project(x, W_ih, gates, lo, hi)
    for s in range(steps):
        t = recurrent.step_time(s, steps, reverse)
        last = s == steps - 1
        nxt = recurrent.step_time(s + 1, steps, reverse) if not last else t
        blas.gemm(hp[lo:hi, t], W_hh.T, gates[lo:hi, t], 1.0)
        for n in range(lo, hi):
            h_prev, c_prev, orow = hp[n, t], cp[n, t], out[n, t]
            h_dst = h_n[n] if last else hp[n, nxt]
            c_dst = c_n[n] if last else cp[n, nxt]
            if t >= lengths[n]:  # past the sequence: the state stays, the output is 0
                for j in range(hidden):
                    h_dst[j] = h_prev[j]
                    c_dst[j] = c_prev[j]
                    orow[off + j] = zero
                continue
            _cell(gates[n, t], b, c_prev, c_dst, h_dst, orow[off : off + hidden], hidden)


# The fused step of one sample, as loops over slices, each reading and writing few arrays: LLVM
# vectorises a loop only when it can rule out overlaps with a few run-time checks (one loop writing
# the gates, c, h and the output at once ran scalar), and numba keeps its negative-index check in a
# loop over z[hidden + j] (hidden is not known to be >= 0), which also keeps it scalar: a slice
# indexed from 0 has neither problem (3.5x faster here).
@njit(**NJIT)
def _cell(z, b, c_prev, c_dst, h_dst, out_row, hidden):
    """z (4H,) <- i, f, g, o from the pre-activations z + b; c_dst <- f c_prev + i g;
    h_dst <- o tanh(c); out_row (H,) <- h."""
    zs, bs = z[: 2 * hidden], b[: 2 * hidden]
    for k in range(2 * hidden):
        zs[k] = approx.sigmoid(zs[k] + bs[k])
    zg, bg = z[2 * hidden : 3 * hidden], b[2 * hidden : 3 * hidden]
    zo, bo = z[3 * hidden : 4 * hidden], b[3 * hidden : 4 * hidden]
    for j in range(hidden):
        zg[j] = approx.tanh(zg[j] + bg[j])
    for j in range(hidden):
        zo[j] = approx.sigmoid(zo[j] + bo[j])
    zi, zf = z[:hidden], z[hidden : 2 * hidden]
    for j in range(hidden):
        c_dst[j] = zf[j] * c_prev[j] + zi[j] * zg[j]
    for j in range(hidden):
        h_dst[j] = zo[j] * approx.tanh(c_dst[j])
    for j in range(hidden):
        out_row[j] = h_dst[j]


@njit(**NJIT)
def _cell_grad(z, c_prev, g_out, dh, dc, dz, hidden):
    """dz (4H,) <- the gradients of the pre-activations of one sample's step, from its gates z,
    c_prev, its output's gradient and the carried dh; dc <- dc_prev; dh <- 0, to which the
    caller's product adds dz W_hh (same slices as ``_cell``)."""
    one = z.dtype.type(1)
    zi, zf, zg, zo = z[:hidden], z[hidden : 2 * hidden], z[2 * hidden : 3 * hidden], z[3 * hidden : 4 * hidden]
    di, df, dg, do = dz[:hidden], dz[hidden : 2 * hidden], dz[2 * hidden : 3 * hidden], dz[3 * hidden : 4 * hidden]
    for j in range(hidden):
        i, f, g, o = zi[j], zf[j], zg[j], zo[j]
        tc = approx.tanh(f * c_prev[j] + i * g)
        dht = dh[j] + g_out[j]
        dct = dc[j] + dht * o * (one - tc * tc)
        di[j] = dct * g * i * (one - i)
        df[j] = dct * c_prev[j] * f * (one - f)
        dg[j] = dct * i * (one - g * g)
        do[j] = dht * tc * o * (one - o)
        dc[j] = dct * f
        dh[j] = 0  # the step's dh_prev is all the recurrent product's (added next)


@njit(**NJIT)
def _backward_part(x, W_hh, gates, cp, lengths, reverse, g_out, off, dh, dc, dgates, lo, hi):
    """The part's time loop: dgates (its rows) and the carried dh, dc (ending as dh0, dc0). A
    masked step's gates get no gradient and its dh, dc pass through (the product adds 0 to them)."""
    steps, hidden = x.shape[1], W_hh.shape[1]
    zero = gates.dtype.type(0)
    for s in range(steps - 1, -1, -1):
        t = recurrent.step_time(s, steps, reverse)
        for n in range(lo, hi):
            dz = dgates[n, t]
            if t >= lengths[n]:
                for k in range(4 * hidden):
                    dz[k] = zero
                continue
            _cell_grad(gates[n, t], cp[n, t], g_out[n, t, off : off + hidden], dh[n], dc[n], dz, hidden)
        blas.gemm(dgates[lo:hi, t], W_hh, dh[lo:hi], 1.0)


@njit(**NJIT)
def _prepare(x, W_hh, gates, lengths, h0, c0, reverse, hp, cp):
    recurrent.check_buffers(x, W_hh, 4, gates, hp, lengths)
    if cp.shape != hp.shape or c0.shape != h0.shape:
        raise ValueError("lstm: cp must have hp's shape and c0 h0's")
    first = recurrent.step_time(0, x.shape[1], reverse)
    hp[:, first] = h0
    cp[:, first] = c0


@njit(**NJIT)
def _forward(x, W_ih, W_hh, b, lengths, reverse, h0, c0, gates, hp, cp, out, off, h_n, c_n, parts):
    _prepare(x, W_hh, gates, lengths, h0, c0, reverse, hp, cp)
    for p in range(parts):
        lo, hi = recurrent.part_bounds(x.shape[0], parts, p)
        _forward_part(x, W_ih, W_hh, b, lengths, reverse, gates, hp, cp, out, off, h_n, c_n, lo, hi)


@njit(**NJIT_PARALLEL)
def _forward_parallel(x, W_ih, W_hh, b, lengths, reverse, h0, c0, gates, hp, cp, out, off, h_n, c_n, parts):
    _prepare(x, W_hh, gates, lengths, h0, c0, reverse, hp, cp)
    for p in prange(parts):
        lo, hi = recurrent.part_bounds(x.shape[0], parts, p)
        before = blas.threads_local(1)
        _forward_part(x, W_ih, W_hh, b, lengths, reverse, gates, hp, cp, out, off, h_n, c_n, lo, hi)
        blas.threads_local(before)


@njit(**NJIT)
def _backward_one(x, W_ih, W_hh, gates, hp, cp, lengths, reverse, g_out, off, dh, dc, dgates, targets, dx, beta_x,
                  has_dx, acc, p, parts):  # fmt: skip
    lo, hi = recurrent.part_bounds(x.shape[0], parts, p)
    if hi == lo:
        return
    _backward_part(x, W_hh, gates, cp, lengths, reverse, g_out, off, dh, dc, dgates, lo, hi)
    d_ih, b_ih, d_hh, b_hh = targets
    recurrent.gate_grads(dgates, dgates, False, x, hp, d_ih, b_ih, d_hh, b_hh, acc[0][p], acc[1][p], lo, hi)
    if has_dx:
        recurrent.input_grad(dgates, W_ih, dx, beta_x, lo, hi)


@njit(**NJIT)
def _backward(x, W_ih, W_hh, gates, hp, cp, lengths, reverse, g_out, off, dh, dc, dgates,
              dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, has_dx, parts):  # fmt: skip
    p_ih, p_hh, a_ih, a_hh = recurrent.partials(parts, W_ih, W_hh)
    for p in range(parts):
        targets = recurrent.part_targets(p, dW_ih, beta_ih, dW_hh, beta_hh, p_ih, p_hh)
        _backward_one(x, W_ih, W_hh, gates, hp, cp, lengths, reverse, g_out, off, dh, dc, dgates, targets, dx,
                      beta_x, has_dx, (a_ih, a_hh), p, parts)  # fmt: skip
    recurrent.finish(dW_ih, dW_hh, db_ih, db_hh, p_ih, p_hh, a_ih, a_hh)


@njit(**NJIT_PARALLEL)
def _backward_parallel(x, W_ih, W_hh, gates, hp, cp, lengths, reverse, g_out, off, dh, dc, dgates,
                       dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, has_dx, parts):  # fmt: skip
    p_ih, p_hh, a_ih, a_hh = recurrent.partials(parts, W_ih, W_hh)
    for p in prange(parts):
        before = blas.threads_local(1)
        targets = recurrent.part_targets(p, dW_ih, beta_ih, dW_hh, beta_hh, p_ih, p_hh)
        _backward_one(x, W_ih, W_hh, gates, hp, cp, lengths, reverse, g_out, off, dh, dc, dgates, targets, dx,
                      beta_x, has_dx, (a_ih, a_hh), p, parts)  # fmt: skip
        blas.threads_local(before)
    recurrent.finish(dW_ih, dW_hh, db_ih, db_hh, p_ih, p_hh, a_ih, a_hh)


@blas.on_one_thread_unless_mkl
def lstm_forward_numba(x, W_ih, W_hh, b_ih, b_hh, h0, c0, lengths, reverse, gates, hp, cp, out, off, h_n, c_n,
                       on_threads=None):  # fmt: skip
    """numba twin of ``lstm_forward_numpy``: one jitted call (products included). ``on_threads``:
    the parts on numba's threads (True), on this one (False), or decide (None); the same result."""
    if not blas.AVAILABLE:
        return lstm_forward_numpy(x, W_ih, W_hh, b_ih, b_hh, h0, c0, lengths, reverse, gates, hp, cp, out, off,
                                  h_n, c_n)  # fmt: skip
    n, steps, _ = x.shape
    hidden = W_hh.shape[1]
    threads = recurrent.on_threads(gates.size) if on_threads is None else on_threads
    kernel = _forward_parallel if threads else _forward
    h0, c0 = recurrent.state(h0, n, hidden, x.dtype), recurrent.state(c0, n, hidden, x.dtype)
    kernel(x, W_ih, W_hh, b_ih + b_hh, recurrent.full_lengths(lengths, n, steps), bool(reverse), h0, c0, gates, hp, cp,
           out, int(off), h_n, c_n, recurrent.parts_of(n))  # fmt: skip


@blas.on_one_thread_unless_mkl
def lstm_backward_numba(
    x, W_ih, W_hh, gates, hp, cp, lengths, reverse, g_out, off, g_hn, g_cn, dgates,
    dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, dh0, dc0, on_threads=None,
):  # fmt: skip
    """numba twin of ``lstm_backward_numpy`` (one jitted call; ``on_threads`` as in the forward)."""
    if not blas.AVAILABLE:
        return lstm_backward_numpy(x, W_ih, W_hh, gates, hp, cp, lengths, reverse, g_out, off, g_hn, g_cn, dgates,
                                   dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, dh0, dc0)  # fmt: skip
    n, steps, _ = x.shape
    hidden = W_hh.shape[1]
    dh = recurrent.state(g_hn, n, hidden, x.dtype).copy()
    dc = recurrent.state(g_cn, n, hidden, x.dtype).copy()
    if g_out is None:
        g_out, off = np.zeros((n, steps, hidden), x.dtype), 0
    threads = recurrent.on_threads(gates.size) if on_threads is None else on_threads
    kernel = _backward_parallel if threads else _backward
    kernel(x, W_ih, W_hh, gates, hp, cp, recurrent.full_lengths(lengths, n, steps), bool(reverse),
           np.ascontiguousarray(g_out), int(off), dh, dc, dgates, dW_ih, float(beta_ih), dW_hh, float(beta_hh), db_ih,
           db_hh, recurrent.no_dx(x) if dx is None else dx, float(beta_x), dx is not None,
           recurrent.parts_of(n))  # fmt: skip
    if dh0 is not None:
        dh0[...] = dh
    if dc0 is not None:
        dc0[...] = dc
    return dx


# The table (see kernels/registry.py) and the warm-up: writable C-contiguous buffers (the layers
# hand the kernels nothing else: a read-only input is copied there), with and without dx, serial;
# the threaded twins, which training batches take with several numba threads, for float32. (Each
# variant takes several seconds to compile: the fused loops inline the sigmoid and tanh.)
from .registry import kernel, warmup_case  # noqa: E402

kernel("lstm_forward", lstm_forward_numpy, lstm_forward_numba)
kernel("lstm_backward", lstm_backward_numpy, lstm_backward_numba)


@warmup_case
def _warm_up(dtype):
    recurrent.warm_up(lstm_forward_numba, lstm_backward_numba, 4, 2, 2, 1, dtype)
