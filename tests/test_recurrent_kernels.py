"""The recurrent kernels' numba twins against their NumPy ones (float32 and float64, both directions,
lengths, with and without the optional gradients), the same bits on one thread and on two, the
parts of the batch, the float32 exp and sigmoid, and the warm-up."""

import numpy as np
import pytest
from numba.core.registry import CPUDispatcher
from threadpoolctl import threadpool_limits

from tinygrad_free import kernels, nn, optim, use_backend
from tinygrad_free.kernels import approx, dense, gru, lstm, parallel, recurrent, rnn

#: cell -> (module, gates per unit, (N, T, H) buffers, states, gate-gradient buffers, extra arguments)
CELLS = {
    "lstm": (lstm, 4, 2, 2, 1, ()),
    "gru": (gru, 3, 2, 1, 2, ()),
    "rnn_tanh": (rnn, 1, 1, 1, 1, (dense.TANH,)),
    "rnn_relu": (rnn, 1, 1, 1, 1, (dense.RELU,)),
}


@pytest.fixture(scope="module", autouse=True)
def compiled():
    return kernels.warmup(files=("lstm", "gru", "rnn", "embedding"))


def run(cell, impl, x, weights, lengths, reverse, with_grads, rng, **threads):
    """Forward then backward of one direction; every array either writes, in order."""
    module, gates_per_unit, buffers, states, dgates, extra = CELLS[cell]
    n, steps, _ = x.shape
    hidden = weights[1].shape[1]
    dtype = x.dtype
    bufs = [np.full((n, steps, gates_per_unit * hidden), np.nan, dtype)]
    bufs += [np.full((n, steps, hidden), np.nan, dtype) for _ in range(buffers)]
    out = np.full((n, steps, 2 * hidden), np.nan, dtype)
    finals = [np.empty((n, hidden), dtype) for _ in range(states)]
    g = np.random.default_rng(7)
    h0 = [g.standard_normal((n, hidden)).astype(dtype) for _ in range(states)]
    fwd = getattr(module, f"{module.__name__.split('.')[-1]}_forward_{impl}")
    bwd = getattr(module, f"{module.__name__.split('.')[-1]}_backward_{impl}")
    W_ih, W_hh, b_ih, b_hh = weights
    fwd(x, W_ih, W_hh, b_ih, b_hh, *extra, *h0, lengths, reverse, *bufs, out, hidden, *finals, **threads)
    g_out = g.standard_normal(out.shape).astype(dtype) if with_grads else None
    g_fin = [g.standard_normal((n, hidden)).astype(dtype) if with_grads else None for _ in range(states)]
    scratch = [np.empty_like(bufs[0]) for _ in range(dgates)]
    dW_ih, dW_hh = np.ones_like(W_ih), np.ones_like(W_hh)
    db_ih, db_hh = np.ones_like(b_ih), np.ones_like(b_hh)
    dx = np.full_like(x, 2.0) if with_grads else None
    d0 = [np.empty((n, hidden), dtype) for _ in range(states)] if with_grads else [None] * states
    bwd(x, W_ih, W_hh, *extra, *bufs, lengths, reverse, g_out, hidden, *g_fin, *scratch, dW_ih, 1.0, dW_hh, 0.0,
        db_ih, db_hh, dx, 1.0 if with_grads else 0.0, *d0, **threads)  # fmt: skip
    results = [*bufs, out, *finals, dW_ih, dW_hh, db_ih, db_hh]
    return results + ([dx, *d0] if with_grads else [])


def problem(cell, rng, dtype, n=5, steps=7, size=3, hidden=4):
    gates = CELLS[cell][1] * hidden
    x = rng.standard_normal((n, steps, size)).astype(dtype)
    weights = [rng.standard_normal(s).astype(dtype) * 0.5 for s in ((gates, size), (gates, hidden), gates, gates)]
    return x, weights


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths_and_grads", [False, True])
def test_numba_twins_match_numpy(rng, cell, dtype, reverse, with_lengths_and_grads):
    x, weights = problem(cell, rng, dtype)
    lengths = np.array([7, 1, 4, 7, 2]) if with_lengths_and_grads else None
    want = run(cell, "numpy", x, weights, lengths, reverse, with_lengths_and_grads, rng)
    got = run(cell, "numba", x, weights, lengths, reverse, with_lengths_and_grads, rng, on_threads=False)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for k, (a, b) in enumerate(zip(got, want)):
        if k < CELLS[cell][2] + 1 and lengths is not None:  # buffers: only what the backward reads is defined
            continue
        np.testing.assert_allclose(a, b, **tol, err_msg=f"array {k}")


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_two_threads_give_the_bits_of_one(rng, cell):
    x, weights = problem(cell, rng, np.float32, n=2 * recurrent.PART_ROWS + 3, steps=5, size=6, hidden=8)
    lengths = rng.integers(1, 6, x.shape[0])
    with threadpool_limits(limits=1, user_api="blas"), parallel.num_threads(1):
        one = run(cell, "numba", x, weights, lengths, True, True, rng, on_threads=False)
    with threadpool_limits(limits=2, user_api="blas"), parallel.num_threads(2):
        two = run(cell, "numba", x, weights, lengths, True, True, rng, on_threads=True)
    assert recurrent.parts_of(x.shape[0]) == 3
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_the_parts_depend_on_the_batch_only_and_cover_it_once():
    for n in (0, 1, 63, 64, 65, 128, 129, 1000):
        parts = recurrent.parts_of(n)
        assert 1 <= parts <= recurrent.MAX_PARTS
        bounds = [recurrent.part_bounds(n, parts, p) for p in range(parts)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert all(hi - lo <= max(recurrent.PART_ROWS, -(-n // recurrent.MAX_PARTS)) for lo, hi in bounds)


def test_float32_exp_is_within_an_ulp_and_the_sigmoid_keeps_its_tail():
    x = np.linspace(-110, 95, 400_001).astype(np.float32)
    e, ref = approx.exp_array(x), np.exp(x.astype(np.float64))
    normal = (ref > np.finfo(np.float32).tiny) & (ref < np.finfo(np.float32).max)
    ulp = np.spacing(ref[normal].astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(e[normal] - ref[normal]) / ulp) <= 1.0
    assert np.all(np.isinf(e[x > approx.EXP_HI])) and np.all(e[x < approx.EXP_LO] == 0)
    s = approx.sigmoid_array(x)
    want = 1 / (1 + np.exp(-x.astype(np.float64)))
    kept = want > np.finfo(np.float32).tiny
    assert np.max(np.abs(s[kept] - want[kept]) / want[kept]) < 1.5e-7  # sigmoid(-87) = 1.6e-38 included
    special = approx.sigmoid_array(np.array([np.inf, -np.inf, np.nan, -20.0], np.float32))
    assert special[0] == 1 and special[1] == 0 and np.isnan(special[2])
    assert abs(special[3] / 2.0611536e-09 - 1) < 1e-6  # 0.5 + 0.5 tanh(-10) would be 0 or 2^-25


def test_the_warmup_compiles_what_a_recurrent_training_step_uses(rng):
    dispatchers = [
        obj
        for mod in (lstm, gru, rnn, recurrent, kernels.embedding)
        for obj in vars(mod).values()
        if isinstance(obj, CPUDispatcher)
    ]
    before = {d: len(d.signatures) for d in dispatchers}
    with use_backend("numba"):
        for threads in (1, 2):
            with parallel.num_threads(threads):
                for layer in (nn.LSTM(3, 8, rng=0), nn.GRU(3, 8, rng=0), nn.RNN(3, 8, nonlinearity="relu", rng=0)):
                    model = nn.Sequential(nn.Embedding(5, 3, rng=0), layer)
                    opt = optim.Adam(model.parameters())
                    idx = rng.integers(0, 5, (130, 4))
                    y = model(idx)
                    model.backward(np.ones_like(y))
                    opt.step()
                    y, back = layer.begin_update(rng.standard_normal((3, 4, 3)).astype(np.float32), lengths=[4, 1, 2])
                    back(np.ones_like(y))
    assert {d: len(d.signatures) for d in dispatchers} == before
