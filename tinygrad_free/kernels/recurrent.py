"""What the recurrent kernels (``lstm``, ``gru``, ``rnn``) share: the layout of their buffers, the
parts of the batch, the whole-sequence products and the sums of the parts.

Layout. Everything is batch-first and C-contiguous, as the layer's input and output: the input
x (N, T, In), the gate buffer (N, T, G H) (G = 4 for the LSTM, 3 for the GRU, 1 for the plain RNN),
the states before each step hp (N, T, H) (the cell's cp too), the output (N, T, O) of which one
direction writes the columns [off, off + H). "Before step t" follows the direction: the forward
direction reads hp[:, t] = h_{t-1} (h0 at t = 0), the reverse one hp[:, t] = h_{t+1} (h0 at
t = T - 1). So

* the input projection of every step is ONE product, x (N T, In) @ W_ih^T -> gates (N T, G H);
* each step's recurrent product writes gates[:, t] (N rows T G H apart, one BLAS call: BLAS reads
  and writes such strided rows in place) from hp[:, t];
* the weight gradients are whole-sequence products at the end: dW_ih = dG^T x and
  dW_hh = dG^T hp over all N T rows, db = the column sums of dG; dx = dG W_ih, one product.

Nothing is transposed or copied between the layer and the kernels, and a stacked layer's output
is the next layer's input as it is.

Lengths (``pack_padded_sequence``'s semantics): a step t >= length[n] leaves sample n's state as it
was and writes an output of 0; its gradient passes the state's gradient through unchanged and its
gates get none. The reverse direction's masked steps are its first ones (t from T - 1 down), so it
starts from h0 at each sequence's own end. Every kernel takes lengths as an (N,) int64 array (all
T when the layer was given none): the per-row test costs nothing next to the products.

Parts. The samples of a batch are independent through the whole time loop, so the numba kernels
cut the batch into ``parts_of(N)`` parts of consecutive samples (a function of N only: parts of
at most ``PART_ROWS`` samples, but never more than ``MAX_PARTS`` parts) and run each part's projection, time loop and
weight-gradient products on its own rows. With several numba threads (and MKL, whose GEMM can be
held to its calling thread) the parts run in a ``prange``; on one thread one after the other. A
part's weight and bias gradients are partial sums added in part order, so the thread count
changes no bit of the result. Per-step products of 64 rows run at 0.92x the speed of 128-row ones
here (H = 128), so two parts of a 128-sample batch cost one thread little and keep two busy.

The NumPy twins compute the same with whole-batch NumPy products; they agree with the numba
kernels to rounding (float32: the rational tanh and ``approx.sigmoid_f32``; the products sum in
other orders).
"""

import numpy as np

from . import blas, parallel
from ._nb import NJIT, njit

#: Parts of at most this many samples (see the module docstring), up to MAX_PARTS of them.
PART_ROWS = 64
#: At most this many parts.
MAX_PARTS = 4


def parts_of(n):
    """How many parts a batch of ``n`` samples is cut into: a function of the shape only, never of
    the thread count (so the result is the same on any number of threads)."""
    return int(max(1, min(MAX_PARTS, -(-int(n) // PART_ROWS))))


@njit(**NJIT)
def part_bounds(n, parts, p):
    """Samples [lo, hi) of part p: consecutive samples, shared out as evenly as possible."""
    return p * n // parts, (p + 1) * n // parts


@njit(**NJIT)
def step_time(s, steps, reverse):
    """The time index of the s-th step a direction takes (the reverse one goes from T - 1 down)."""
    return steps - 1 - s if reverse else s


@njit(**NJIT)
def project(x, W_ih, gates, lo, hi):
    """gates[lo:hi] <- x[lo:hi] @ W_ih^T for every step at once: one (m T, In) x (In, G H) product."""
    m, steps = hi - lo, x.shape[1]
    blas.gemm(x[lo:hi].reshape(m * steps, x.shape[2]), W_ih.T, gates[lo:hi].reshape(m * steps, gates.shape[2]), 0.0)


@njit(**NJIT)
def _column_sums(d2, acc):
    for k in range(d2.shape[1]):
        acc[k] = 0
    for r in range(d2.shape[0]):
        for k in range(d2.shape[1]):
            acc[k] += d2[r, k]


@njit(**NJIT)
def gate_grads(dg, dgh, separate, x, hp, dW_ih, beta_ih, dW_hh, beta_hh, acc_ih, acc_hh, lo, hi):
    """One part's whole-sequence weight gradients from its gate gradients (N, T, G H): dg on the
    input side, dgh on the recurrent side (the same unless ``separate``: the GRU's differ):
    dW_ih <- dg^T x + beta dW_ih and dW_hh <- dgh^T hp + beta dW_hh over the part's m T rows;
    acc_ih, acc_hh <- the column sums of dg and dgh (rows in order)."""
    m, steps, width = hi - lo, dg.shape[1], dg.shape[2]
    d2 = dg[lo:hi].reshape(m * steps, width)
    h2 = dgh[lo:hi].reshape(m * steps, width) if separate else d2
    blas.gemm(d2.T, x[lo:hi].reshape(m * steps, x.shape[2]), dW_ih, beta_ih)
    blas.gemm(h2.T, hp[lo:hi].reshape(m * steps, hp.shape[2]), dW_hh, beta_hh)
    _column_sums(d2, acc_ih)
    if separate:
        _column_sums(h2, acc_hh)
    else:
        acc_hh[:] = acc_ih


@njit(**NJIT)
def input_grad(dg, W_ih, dx, beta_x, lo, hi):
    """dx[lo:hi] <- dg[lo:hi] @ W_ih + beta dx[lo:hi] (every step at once)."""
    m, steps = hi - lo, dg.shape[1]
    blas.gemm(dg[lo:hi].reshape(m * steps, dg.shape[2]), W_ih, dx[lo:hi].reshape(m * steps, dx.shape[2]), beta_x)


@njit(**NJIT)
def add_parts(target, partials):
    """target += partials[0] + partials[1] + ... in part order (the parts' weight gradients after
    the first, which wrote into the gradient itself)."""
    t = target.reshape(target.size)
    for p in range(partials.shape[0]):
        q = partials[p].reshape(target.size)
        for k in range(t.shape[0]):
            t[k] += q[k]


@njit(**NJIT)
def check_buffers(x, W_hh, gates_per_unit, gates, hp, lengths):
    """Refuse buffers whose shapes do not match x (N, T, In) and W_hh (G H, H)."""
    n, steps = x.shape[0], x.shape[1]
    hidden = W_hh.shape[1]
    if gates.shape != (n, steps, gates_per_unit * hidden) or W_hh.shape[0] != gates_per_unit * hidden:
        raise ValueError("recurrent kernel: gates must be (N, T, G H) for x (N, T, In) and W_hh (G H, H)")
    if hp.shape != (n, steps, hidden) or lengths.shape[0] != n:
        raise ValueError("recurrent kernel: hp must be (N, T, H) and lengths (N,)")


def state(given, n, hidden, dtype):
    """An initial state or a final state's gradient as the kernels take it: (N, H), zeros for None."""
    return np.zeros((n, hidden), dtype) if given is None else np.ascontiguousarray(given, dtype)


def full_lengths(lengths, n, steps):
    """The lengths as the kernels take them: (N,) int64, all T for None."""
    return np.full(n, steps, np.int64) if lengths is None else np.ascontiguousarray(lengths, np.int64)


def no_dx(x):
    """A stand-in for dx when no input gradient is wanted (writable, so the kernel's type is the
    one it has with a dx)."""
    return np.empty((1, 1, 1), x.dtype)


def on_threads(size):
    """Whether the parts go to numba's threads: more than one thread, a threading layer that can,
    and a GEMM that can be held to its caller's thread (MKL). ``size``: the gate buffer's elements."""
    return blas.LOCAL_THREADS and parallel.use_parallel(size)


# --- the NumPy twins' helpers -------------------------------------------------------------------
def steps_of(steps, reverse):
    """The time indices in the order a direction takes them."""
    return range(steps - 1, -1, -1) if reverse else range(steps)


def valid_rows(t, lengths):
    """(N, 1) bools: which samples are still inside their sequence at step t (None: all)."""
    return None if lengths is None else (t < lengths)[:, None]


def end_step_numpy(t, s, order, lengths, out, off, states, before, final):
    """The end of step ``s`` (time ``t``) of a NumPy forward: ``out[:, t, off:off + H]`` <- h (0 past
    a sequence's length); each state (h, and the LSTM's c) stays as it was before the step where
    the sequence has ended, and becomes the next step's ``before`` or, after the last step, ``final``."""
    valid = valid_rows(t, lengths)
    h = states[0]
    out[:, t, off : off + h.shape[1]] = h if valid is None else np.where(valid, h, 0)
    if valid is not None:
        states = [np.where(valid, v, b[:, t]) for v, b in zip(states, before)]
    for v, b, f in zip(states, before, final):
        if s + 1 < len(order):
            b[:, order[s + 1]] = v
        else:
            f[...] = v


def weight_grads_numpy(dg, x, hp, dW_ih, beta_ih, dW_hh, beta_hh, db_ih, db_hh, dx, beta_x, W_ih, dg_hh=None):
    """The whole-sequence products of the backward: dW_ih <- dg^T x + beta dW_ih, dW_hh <-
    dg_hh^T hp + beta dW_hh, db_ih += sum dg, db_hh += sum dg_hh (dg_hh: dg unless the recurrent
    side's gate gradients differ, the GRU's), dx <- dg W_ih + beta_x dx (dx may be None)."""
    n, steps, width = dg.shape
    d2 = dg.reshape(n * steps, width)
    h2 = d2 if dg_hh is None else dg_hh.reshape(n * steps, width)
    for target, beta, update in (
        (dW_ih, beta_ih, d2.T @ x.reshape(n * steps, x.shape[2])),
        (dW_hh, beta_hh, h2.T @ hp.reshape(n * steps, hp.shape[2])),
    ):
        if beta == 0:
            target[...] = update
        else:
            target += update
    db_ih += d2.sum(axis=0)
    db_hh += h2.sum(axis=0)
    if dx is not None:
        update = d2 @ W_ih
        if beta_x == 0:
            dx.reshape(n * steps, dx.shape[2])[...] = update
        else:
            dx += update.reshape(dx.shape)


@njit(**NJIT)
def partials(parts, W_ih, W_hh):
    """Scratch for the parts' partial gradients: weight gradients of parts 1.. (part 0 writes
    into the gradients themselves) and every part's bias sums, input and recurrent side."""
    rows = W_ih.shape[0]
    dtype = W_ih.dtype
    return (
        np.zeros((max(parts - 1, 0), rows, W_ih.shape[1]), dtype),
        np.zeros((max(parts - 1, 0), rows, W_hh.shape[1]), dtype),
        np.zeros((parts, rows), dtype),
        np.zeros((parts, rows), dtype),
    )


@njit(**NJIT)
def finish(dW_ih, dW_hh, db_ih, db_hh, p_ih, p_hh, acc_ih, acc_hh):
    """Add the parts' partial sums into the gradients, in part order."""
    add_parts(dW_ih, p_ih)
    add_parts(dW_hh, p_hh)
    for p in range(acc_ih.shape[0]):
        for k in range(db_ih.shape[0]):
            db_ih[k] += acc_ih[p, k]
            db_hh[k] += acc_hh[p, k]


@njit(**NJIT)
def part_targets(p, dW_ih, beta_ih, dW_hh, beta_hh, p_ih, p_hh):
    """Where part p writes its weight gradients: the gradients themselves (with their beta) for
    part 0, its own partial (beta 0) for the others."""
    if p == 0:
        return dW_ih, beta_ih, dW_hh, beta_hh
    return p_ih[p - 1], 0.0, p_hh[p - 1], 0.0


def warm_up(forward, backward, gates_per_unit, buffers, states, dgates, dtype):
    """Run a cell's kernel pair (``forward``, ``backward``: the numba twins of lstm, gru or rnn) on
    tiny buffers, for each argument type the layers pass: writable C-contiguous arrays, with and
    without dx, serial, and for float32 the threaded twins too. ``buffers``: the (N, T, H) buffers
    after the gates (hp, and cp or the GRU's ghn); ``states``: h (and c); ``dgates``: gate
    gradient buffers (the GRU has two)."""
    n, steps, size, hidden = 2, 3, 2, 2
    width = gates_per_unit * hidden
    x = np.linspace(-1.0, 1.0, n * steps * size, dtype=dtype).reshape(n, steps, size)
    W_ih, W_hh = np.full((width, size), 0.1, dtype), np.full((width, hidden), 0.1, dtype)
    b = np.zeros(width, dtype)
    for threads in (False, True) if dtype == np.float32 else (False,):
        bufs = [np.empty((n, steps, width), dtype)] + [np.empty((n, steps, hidden), dtype) for _ in range(buffers)]
        out = np.empty((n, steps, hidden), dtype)
        finals = [np.empty((n, hidden), dtype) for _ in range(states)]
        forward(x, W_ih, W_hh, b, b, *([None] * states), None, False, *bufs, out, 0, *finals, on_threads=threads)
        for dx in (np.empty_like(x), None):
            scratch = [np.empty_like(bufs[0]) for _ in range(dgates)]
            backward(x, W_ih, W_hh, *bufs, None, False, out, 0, *([None] * states), *scratch, np.empty_like(W_ih),
                     0.0, np.empty_like(W_hh), 0.0, b.copy(), b.copy(), dx, 0.0, *([None] * states),
                     on_threads=threads)  # fmt: skip
