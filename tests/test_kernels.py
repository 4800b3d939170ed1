"""The numba kernels against their NumPy twins, and both against independent references.

Tolerances: float32 results may differ from NumPy by float32 rounding only (the rational
tanh is within ~5 ulp of the correctly rounded value, NumPy's within ~1.4), float64 ones
by a few float64 ulps; most kernels are in fact bit-identical to NumPy.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba.core.errors import TypingError
from numba.core.registry import CPUDispatcher

from tinygrad_free import kernels
from tinygrad_free.kernels import approx, blas, dense, loss, optim, parallel

IDENTITY, SIGMOID, TANH, RELU = dense.IDENTITY, dense.SIGMOID, dense.TANH, dense.RELU
CODES = [IDENTITY, SIGMOID, TANH, RELU]
DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (1, 10), (7, 13), (16, 128), (33, 784)]
BACKENDS = {"numpy": kernels.NUMPY, "numba": kernels.NUMBA}


def tol(dtype):
    """assert_allclose tolerances for numba vs NumPy in ``dtype``."""
    return dict(rtol=1e-6, atol=2.5e-7) if np.dtype(dtype) == np.float32 else dict(rtol=1e-13, atol=1e-15)


@pytest.fixture(scope="module", autouse=True)
def compiled():
    """Compile the files tested here once up front (so no single test carries the compile time)."""
    return kernels.warmup(files=("dense", "loss", "optim"))


def data(rng, shape, dtype, scale=3.0):
    return np.asarray(rng.standard_normal(shape) * scale, dtype=dtype)


# --- the namespaces ------------------------------------------------------------------------------
def test_numba_namespace_has_a_numba_twin_of_every_kernel():
    assert set(vars(kernels.NUMBA)) == set(vars(kernels.NUMPY)) == set(kernels.KERNELS)
    for name in kernels.KERNELS:
        fn = getattr(kernels.NUMBA, name)
        assert fn is not getattr(kernels.NUMPY, name)
        assert fn.__name__ == f"{name}_numba"


def test_warmup_returns_seconds_and_compiles_what_a_training_step_uses(rng):
    from tinygrad_free import nn, use_backend
    from tinygrad_free import optim as opt

    assert kernels.warmup(files=("dense", "loss", "optim")) >= 0.0
    dispatchers = [
        obj
        for mod in (approx, blas, dense, loss, optim, parallel)
        for obj in vars(mod).values()
        if isinstance(obj, CPUDispatcher)
    ]
    before = {d: len(d.signatures) for d in dispatchers}
    with use_backend("numba"), parallel.num_threads(2):
        for dtype, act, width in [
            (np.float32, "tanh", 5),
            (np.float32, "sigmoid", 5),
            (np.float64, "relu", 5),
            (np.float32, "tanh", 6000),
            (np.float64, "relu", 6000),
        ]:  # parallel updates
            model = nn.Sequential(
                nn.Dense(6, width, activation=act, dtype=dtype, rng=0), nn.Dense(width, 4, dtype=dtype, rng=1)
            )
            params = model.parameters()
            # One optimizer at a time: a newer one re-packs the parameters, and a stale one refuses to step.
            for make, kwargs in [
                (opt.Adam, {"weight_decay": 1e-3}),
                (opt.NAdam, {}),
                (opt.NAG, {}),
                (opt.RMSProp, {}),
                (opt.SGD, {}),
            ]:
                o = make(params, **kwargs)
                for loss_fn in (nn.CrossEntropyLoss(), nn.SoftmaxMSELoss()):
                    o.zero_grad()
                    x = rng.standard_normal((3, 6)).astype(dtype)
                    loss_fn(model(x), np.array([0, 3, 1], np.uint8))
                    model.backward(loss_fn.backward())
                    o.step()
    assert {d: len(d.signatures) for d in dispatchers} == before


# --- dense: bias_act, act_grad, dense_grad -------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_bias_act_numba_matches_numpy(rng, dtype, shape, code, with_bias):
    z = data(rng, shape, dtype)
    b = data(rng, shape[1], dtype, 1.0) if with_bias else None
    expected = dense.bias_act_numpy(z.copy(), b, code)
    got = z.copy()
    assert dense.bias_act_numba(got, b, code) is got  # in place, returns z
    np.testing.assert_allclose(got, expected, **tol(dtype))
    if code in (IDENTITY, RELU) or dtype == np.float64:  # no approximation involved: exact
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("code", CODES)
def test_act_grad_numba_matches_numpy_bit_for_bit(rng, dtype, shape, code):
    y = dense.bias_act_numpy(data(rng, shape, dtype), None, code)
    gy = data(rng, shape, dtype, 1.0)
    expected = dense.act_grad_numpy(y, gy, code, np.empty_like(y))
    out = np.empty_like(y)
    assert dense.act_grad_numba(y, gy, code, out) is out
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("with_db", [True, False])
def test_dense_grad_numba_matches_numpy_dz_and_db(rng, dtype, shape, code, with_db):
    y = dense.bias_act_numpy(data(rng, shape, dtype), None, code)
    gy = data(rng, shape, dtype, 1.0)
    db0 = data(rng, shape[1], dtype, 1.0) if with_db else None
    db_np = None if db0 is None else db0.copy()
    db_nb = None if db0 is None else db0.copy()
    dz_np = dense.dense_grad_numpy(y, gy, code, np.empty_like(y), db_np)
    dz_nb = np.empty_like(y)
    assert dense.dense_grad_numba(y, gy, code, dz_nb, db_nb) is dz_nb
    np.testing.assert_array_equal(dz_nb, dz_np)
    if with_db:
        np.testing.assert_allclose(db_nb, db_np, **tol(dtype))
        # db += column sums of dz, against a float64 sum
        ref = db0.astype(np.float64) + dz_np.astype(np.float64).sum(axis=0)
        scale = np.abs(dz_np).sum(axis=0) + np.abs(db0) + 1e-30
        assert np.all(np.abs(db_nb - ref) <= 4 * shape[0] * np.finfo(dtype).eps * scale)


def test_act_grad_formulas_from_the_output(rng):
    y = rng.uniform(-0.99, 0.99, (5, 7))
    gy = rng.standard_normal((5, 7))
    expected = {IDENTITY: gy, SIGMOID: gy * y * (1 - y), TANH: gy * (1 - y**2), RELU: gy * (y > 0)}
    for code in CODES:
        np.testing.assert_allclose(
            dense.act_grad_numba(y, gy, code, np.empty_like(y)), expected[code], rtol=1e-14, atol=1e-15
        )


@pytest.mark.parametrize("code", CODES)
def test_dense_kernels_propagate_nan_and_inf_like_numpy(code):
    z = np.array([[np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 3.0]], np.float32)
    for dtype in DTYPES:
        x = z.astype(dtype)
        a = dense.bias_act_numpy(x.copy(), None, code)
        b = dense.bias_act_numba(x.copy(), None, code)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(b, a, **tol(dtype))
        gy = np.array([[1.0, np.nan, np.inf, 2.0, -1.0, 0.5, 1.0, -np.inf]], dtype)
        y = np.array([[0.5, 0.5, 0.1, 0.0, -0.3, 1.0, 0.0, 0.7]], dtype)
        np.testing.assert_array_equal(
            dense.act_grad_numba(y, gy, code, np.empty_like(y)), dense.act_grad_numpy(y, gy, code, np.empty_like(y))
        )


def test_dense_kernels_accept_other_ranks_and_layouts(rng):
    makers = [
        lambda: data(rng, 11, np.float32),  # 1-D
        lambda: data(rng, (2, 3, 5), np.float32),  # 3-D, C order
        lambda: np.asfortranarray(data(rng, (6, 5), np.float32)),  # Fortran order
        lambda: data(rng, (6, 10), np.float64)[:, ::2],
    ]  # strided view
    for code in CODES:
        for make in makers:
            for with_bias in (True, False):
                z = make()
                b = data(rng, z.shape[-1], z.dtype, 1.0) if with_bias else None
                expected = dense.bias_act_numpy(z.copy(), b, code)
                assert dense.bias_act_numba(z, b, code) is z  # in place, whatever the layout
                np.testing.assert_allclose(z, expected, **tol(z.dtype))
        # a non-contiguous 3-D gradient is read through a copy; the output is written in place
        y = dense.bias_act_numpy(data(rng, (3, 4, 5), np.float32), None, code)
        gy = data(rng, (5, 4, 3), np.float32).transpose(2, 1, 0)
        out = np.empty_like(y)
        dense.act_grad_numba(y, gy, code, out)
        np.testing.assert_array_equal(out, dense.act_grad_numpy(y, gy, code, np.empty_like(y)))
        # a strided 2-D dz (every other column of a buffer) is written in place, db summed from it
        dz = data(rng, (4, 8), np.float32)[:, ::2]
        db = np.zeros(4, np.float32)
        yy = dense.bias_act_numpy(data(rng, (4, 4), np.float32), None, code)
        gg = data(rng, (4, 4), np.float32)
        dense.dense_grad_numba(yy, gg, code, dz, db)
        np.testing.assert_array_equal(dz, dense.act_grad_numpy(yy, gg, code, np.empty_like(yy)))
        np.testing.assert_allclose(db, dz.sum(axis=0), rtol=1e-6, atol=1e-7)


def test_dense_kernels_refuse_what_they_cannot_do_in_place(rng):
    z = data(rng, (4, 6, 8), np.float32)[:, ::2]  # rank 3 and not contiguous: no flat view
    with pytest.raises(TypingError):
        dense.bias_act_numba(z, None, TANH)
    with pytest.raises(ValueError):
        dense.bias_act_numba(data(rng, (3, 4), np.float32), np.zeros(5, np.float32), TANH)
    y = data(rng, (3, 4), np.float32)
    with pytest.raises(ValueError):
        dense.dense_grad_numba(y, y, TANH, np.empty_like(y), np.zeros(3, np.float32))
    with pytest.raises(ValueError):
        dense.act_grad_numba(y, y[:2], TANH, np.empty_like(y))


# --- the rational tanh and the sigmoid built on it ------------------------------------------------
def _tanh32(x):
    return approx.tanh_array(np.asarray(x, np.float32))


def test_rational_tanh_within_float32_rounding_on_a_dense_sweep():
    x = np.linspace(-20, 20, 2_000_001, dtype=np.float32)
    y, ref = _tanh32(x), np.tanh(x.astype(np.float64))
    rel = np.abs(y - ref) / np.maximum(np.abs(ref), np.finfo(np.float64).tiny)
    assert rel.max() <= 3.5e-7  # <= ~6 ulp anywhere (5.1 measured exhaustively)
    assert rel.mean() <= 5e-8  # and well under one ulp on average
    np.testing.assert_array_equal(_tanh32(-x), -y)  # exactly odd


def test_rational_tanh_within_float32_rounding_on_a_bit_pattern_sweep():
    # every 499th float32 between 1e-30 and 12, so every binade is covered evenly
    lo, hi = np.float32(1e-30).view(np.int32), np.float32(12).view(np.int32)
    x = np.arange(lo, hi, 499, dtype=np.int32).view(np.float32)
    ref = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.minimum(ref.astype(np.float32), np.float32(1 - 2**-24))).astype(np.float64)
    assert (np.abs(_tanh32(x) - ref) / ulp).max() <= 6.0


def test_rational_tanh_saturates_exactly_and_keeps_tiny_inputs():
    big = np.geomspace(9.0, 1e30, 400).astype(np.float32)
    np.testing.assert_array_equal(_tanh32(big), 1.0)
    np.testing.assert_array_equal(_tanh32(-big), -1.0)
    np.testing.assert_array_equal(_tanh32(np.float32([3.4e38, -3.4e38])), [1.0, -1.0])
    tiny = np.concatenate([np.geomspace(1e-45, 1e-4, 400).astype(np.float32), np.float32([1e-45, 1.2e-38])])
    np.testing.assert_array_equal(_tanh32(tiny), tiny)  # tanh x = x to float32 precision here
    np.testing.assert_array_equal(_tanh32(-tiny), -tiny)
    zeros = _tanh32([0.0, -0.0])
    assert zeros.tolist() == [0.0, 0.0] and np.signbit(zeros).tolist() == [False, True]


def test_rational_tanh_at_inf_and_nan():
    x = np.float32([np.inf, -np.inf, np.nan, -np.nan])
    t = _tanh32(x)
    np.testing.assert_array_equal(t[:2], [1.0, -1.0])
    assert np.isnan(t[2:]).all()
    finite = np.concatenate([np.linspace(-100, 100, 10001), np.geomspace(1e-38, 3e38, 2000)]).astype(np.float32)
    finite = np.concatenate([finite, -finite])
    assert not np.isnan(_tanh32(finite)).any()
    assert np.all(np.abs(_tanh32(finite)) <= 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_keeps_its_relative_accuracy_in_the_negative_tail_on_both_backends(dtype):
    """As PyTorch computes it, 1 / (1 + exp(-z)): sigmoid(-20) is 2.06e-9, where 0.5 + 0.5 tanh(z/2)
    had cancelled to 2.98e-8 in float32."""
    x = np.concatenate([np.linspace(-80, 80, 200_001), np.geomspace(80, 1e30, 200), [np.inf]]).astype(dtype)
    x = np.concatenate([x, -x, [np.nan]]).reshape(1, -1)
    with np.errstate(over="ignore"):
        ref = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    finite = (np.abs(x) < 80)[0]
    for ops in (kernels.NUMPY, kernels.NUMBA):
        s = ops.bias_act(x.copy(), None, SIGMOID)[0]
        assert np.isnan(s[-1]) and not np.isnan(s[:-1]).any()
        rel = np.abs(s[finite] - ref[0, finite]) / ref[0, finite]
        assert rel.max() <= 4 * np.finfo(dtype).eps
        assert s[:-1].min() >= 0.0 and s[:-1].max() <= 1.0
    low = kernels.NUMBA.bias_act(np.full((1, 1), -20.0, dtype), None, SIGMOID)[0, 0]
    assert abs(low - 2.0611536e-9) / 2.0611536e-9 < 1e-6
    np.testing.assert_array_equal(
        kernels.NUMPY.bias_act(x.copy(), None, SIGMOID), kernels.NUMBA.bias_act(x.copy(), None, SIGMOID)
    )


def test_float64_uses_exact_tanh():
    x = np.linspace(-30, 30, 100_001)
    assert np.all(np.abs(approx.tanh_array(x) - np.tanh(x)) <= 2 * np.spacing(np.abs(np.tanh(x))))  # libm vs NumPy
    z = x.reshape(1, -1).copy()
    np.testing.assert_array_equal(dense.bias_act_numba(z, None, TANH)[0], np.tanh(x))


def test_fit_tanh_coefficients_reaches_the_shipped_accuracy():
    pytest.importorskip("scipy")
    _, _, fit_err = approx.fit_tanh_coefficients(n=300)  # the shipped fit used n=4000
    assert fit_err < 1e-8
    # the shipped (float32-rounded) coefficients, evaluated in float64, are as good
    p = np.array([getattr(approx, f"P{i}") for i in range(7)], np.float64)
    q = np.array([getattr(approx, f"Q{i}") for i in range(4)], np.float64)
    x = np.linspace(1e-6, float(approx.CLAMP), 100_001)
    r = x * np.polynomial.polynomial.polyval(x * x, p) / np.polynomial.polynomial.polyval(x * x, q)
    assert np.abs(r / np.tanh(x) - 1).max() < 3e-8


# --- losses ---------------------------------------------------------------------------------------
def loss_reference(z, labels, kind):
    """The formulas of kernels/loss.py's docstring, in float64."""
    z = np.asarray(z, np.float64)
    B = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.zeros_like(z)
    onehot[np.arange(B), labels] = 1
    if kind == "softmax_cross_entropy":
        L = -np.mean(shifted[np.arange(B), labels] - np.log(np.exp(shifted).sum(axis=1)))
        return L, (p - onehot) / B
    L = ((p - onehot) ** 2).sum() / B
    q = 2 * (p - onehot) / B
    return L, p * (q - (q * p).sum(axis=1, keepdims=True))


LOSSES = ["softmax_cross_entropy", "softmax_squared_error"]


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 2, 16, 33])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_loss_numba_matches_float64_reference_and_numpy(rng, kind, dtype, batch, scale):
    z = data(rng, (batch, 10), dtype, scale)
    labels = rng.integers(0, 10, batch)
    L_ref, g_ref = loss_reference(z, labels, kind)
    grad = np.full_like(z, np.nan)
    L, correct = getattr(loss, f"{kind}_numba")(z, labels, grad)
    assert type(L) is float and np.isfinite(L) and np.isfinite(grad).all()
    assert correct == np.count_nonzero(z.argmax(axis=1) == labels)
    eps = np.finfo(dtype).eps
    assert abs(L - L_ref) <= 8 * eps * max(abs(L_ref), 1.0)
    np.testing.assert_allclose(grad, g_ref, rtol=8 * eps, atol=4 * eps / batch)
    g_np = np.empty_like(z)
    L_np, correct_np = getattr(loss, f"{kind}_numpy")(z, labels, g_np)
    assert correct_np == correct
    assert abs(L - L_np) <= 8 * eps * max(abs(L_ref), 1.0)
    np.testing.assert_allclose(grad, g_np, rtol=8 * eps, atol=4 * eps / batch)


@pytest.mark.parametrize("kind", LOSSES)
def test_loss_extreme_logits_do_not_overflow(kind):
    for dtype in DTYPES:
        z = np.array([[1e4, -1e4] + [0.0] * 8, [-1e4] * 9 + [1e4], [1e4] * 10, [-1e4] * 10], dtype)
        for labels in ([0, 9, 3, 5], [1, 0, 3, 5]):
            labels = np.array(labels)
            grad = np.empty_like(z)
            L, _ = getattr(loss, f"{kind}_numba")(z, labels, grad)
            L_ref, g_ref = loss_reference(z, labels, kind)
            assert np.isfinite(L) and np.isfinite(grad).all()
            assert abs(L - L_ref) <= 1e-6 * max(abs(L_ref), 1.0)
            np.testing.assert_allclose(grad, g_ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_loss_accepts_any_integer_labels_and_checks_the_range(rng, kind, impl):
    z = data(rng, (5, 10), np.float32)
    labels = np.array([3, 0, 9, 1, 4])
    fn = getattr(loss, f"{kind}_{impl}")
    expected = fn(z, labels, np.empty_like(z))
    for dtype in (np.uint8, np.int32):
        assert fn(z, labels.astype(dtype), np.empty_like(z)) == expected
    for bad in ([3, 0, 10, 1, 4], [3, 0, -1, 1, 4]):
        with pytest.raises(IndexError):
            fn(z, np.array(bad), np.empty_like(z))


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("impl", ["numba", "numpy"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_loss_kernels_return_nan_for_non_finite_logits(rng, kind, impl, bad):
    z = data(rng, (4, 10), np.float32)
    z[2, 7] = bad
    L, correct = getattr(loss, f"{kind}_{impl}")(z, np.array([7, 0, 7, 1]), np.empty_like(z))
    assert np.isnan(L) and correct == 0


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("impl", ["numba", "numpy"])
def test_loss_kernels_count_ties_at_the_first_maximum_as_argmax_does(kind, impl):
    z = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, 1.0, 0.5]], np.float32)
    for labels, expected in (([1, 0, 1], 3), ([2, 1, 2], 0)):
        _, correct = getattr(loss, f"{kind}_{impl}")(z, np.array(labels), np.empty_like(z))
        assert correct == expected


def test_cross_entropy_gradient_rows_sum_to_zero(rng):
    z = data(rng, (16, 10), np.float64)
    grad = np.empty_like(z)
    loss.softmax_cross_entropy_numba(z, rng.integers(0, 10, 16), grad)
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-16)


# --- optimizers -----------------------------------------------------------------------------------
def reference_steps(name, w, g_seq, hp):
    """The update equations, written from the optimizers' docstrings, in float64."""
    w = w.astype(np.float64)
    u = m = v = np.zeros_like(w)
    lr = hp["lr"]
    for t, g in enumerate(g_seq, start=1):
        g = g.astype(np.float64)
        if name == "sgd":
            w = w - lr * g
        elif name in ("momentum", "nag"):
            u = hp["beta"] * u + g
            w = w - lr * (g + hp["beta"] * u if name == "nag" else u)
        elif name == "rmsprop":
            v = hp["beta"] * v + (1 - hp["beta"]) * g * g
            w = w - lr * g / (np.sqrt(v) + hp["eps"])
        else:
            b1, b2 = hp["b1"], hp["b2"]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            mh, vh = m / (1 - b1**t), v / (1 - b2**t)
            if name == "adam":
                w = w - lr * mh / (np.sqrt(vh) + hp["eps"])
            else:  # nadam (Dozat)
                w = w - lr / (np.sqrt(vh) + hp["eps"]) * (b1 * mh + (1 - b1) * g / (1 - b1**t))
    return w


def kernel_steps(ops, name, w, g_seq, hp):
    """The same steps through a kernel namespace (state arrays in w's dtype)."""
    w = w.copy()
    u, m, v = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    tmp = np.empty((2,) + w.shape, w.dtype)
    lr, b1, b2 = hp["lr"], hp["b1"], hp["b2"]
    for t, g in enumerate(g_seq, start=1):
        if name == "sgd":
            ops.sgd(w, g, tmp, lr)
        elif name in ("momentum", "nag"):
            ops.momentum(w, g, u, tmp, lr, hp["beta"], name == "nag")
        elif name == "rmsprop":
            ops.rmsprop(w, g, v, tmp, lr, hp["beta"], hp["eps"])
        elif name == "adam":
            ops.adam(w, g, m, v, tmp, lr, b1, b2, hp["eps"], 1 - b1**t, 1 - b2**t)
        else:
            bc1 = 1 - b1**t
            ops.nadam(w, g, m, v, tmp, lr, b1, b2, hp["eps"], 1 - b2**t, b1 / bc1, (1 - b1) / bc1)
    return w


OPTIMIZERS = ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam"]
HP = dict(lr=0.01, beta=0.8, b1=0.9, b2=0.99, eps=1e-6)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_kernels_follow_the_update_equations(rng, backend, name, dtype):
    n = 1001
    w = data(rng, n, dtype, 1.0)
    g_seq = [data(rng, n, dtype, 1.0) for _ in range(5)]
    got = kernel_steps(BACKENDS[backend], name, w, g_seq, HP)
    ref = reference_steps(name, w, g_seq, HP)
    if dtype == np.float64:
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    else:
        np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_numba_matches_numpy(rng, name, dtype):
    n = 118_282  # the reference network's parameter count
    w = data(rng, n, dtype, 1.0)
    g_seq = [data(rng, n, dtype, 1.0) for _ in range(3)]
    a = kernel_steps(kernels.NUMPY, name, w, g_seq, HP)
    b = kernel_steps(kernels.NUMBA, name, w, g_seq, HP)
    np.testing.assert_allclose(b, a, rtol=2 * np.finfo(dtype).eps, atol=np.finfo(dtype).eps)
    if name not in ("adam", "nadam"):  # same operations in the same order
        np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("cm", [0.0, 9.5])
def test_nadam_kernel_both_coefficient_forms(rng, cm):
    n = 257
    w, g, m0 = data(rng, n, np.float64, 1.0), data(rng, n, np.float64, 1.0), data(rng, n, np.float64, 1.0)
    v0 = np.abs(data(rng, n, np.float64, 1.0))
    hp = dict(lr=1e-2, b1=0.9, b2=0.99, eps=1e-8, bc2=0.3, cm=cm, cg=0.7)
    m = 0.9 * m0 + (1 - 0.9) * g
    v = 0.99 * v0 + (1 - 0.99) * g * g
    expected = w - hp["lr"] * (cm * m + hp["cg"] * g) / (np.sqrt(v / hp["bc2"]) + hp["eps"])
    for ops in BACKENDS.values():
        ww, mm, vv = w.copy(), m0.copy(), v0.copy()
        ops.nadam(ww, g, mm, vv, np.empty((2, n)), *hp.values())
        np.testing.assert_allclose(ww, expected, rtol=1e-13)
        np.testing.assert_allclose(mm, m, rtol=1e-15)
        np.testing.assert_allclose(vv, v, rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_decay_only_touches_the_first_n_decay_elements(rng, dtype):
    n = 1000
    g, w = data(rng, n, dtype, 1.0), data(rng, n, dtype, 1.0)
    for n_decay in (0, 1, 613, n, n + 7, -5):
        k = len(range(n)[:n_decay])
        for ops in BACKENDS.values():
            out = np.full_like(g, np.nan)
            assert ops.weight_decay(g, w, 0.01, n_decay, out) is out
            np.testing.assert_array_equal(out[k:], g[k:])
            np.testing.assert_allclose(out[:k], g[:k].astype(np.float64) + 0.01 * w[:k], rtol=np.finfo(dtype).eps)
        a = kernels.NUMPY.weight_decay(g, w, 0.01, n_decay, np.empty_like(g))
        np.testing.assert_array_equal(kernels.NUMBA.weight_decay(g, w, 0.01, n_decay, np.empty_like(g)), a)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_numba_kernels_work_on_any_contiguous_shape_and_strided_vectors(rng, name):
    for shape in [(7, 13), (2, 3, 4), (1,), ()]:
        w = data(rng, shape, np.float32, 1.0)
        g_seq = [data(rng, shape, np.float32, 1.0) for _ in range(2)]
        got = kernel_steps(kernels.NUMBA, name, w, g_seq, HP)
        assert got.shape == w.shape
        expected = kernel_steps(kernels.NUMPY, name, w.reshape(-1), [g.reshape(-1) for g in g_seq], HP)
        np.testing.assert_allclose(got.reshape(-1), expected, rtol=2 * np.finfo(np.float32).eps)
    # a strided 1-D view is updated in place; the gaps are left alone
    base = data(rng, 40, np.float64, 1.0)
    w = base.copy()
    g_seq = [data(rng, 20, np.float64, 1.0)]
    kernels.NUMBA.sgd(w[::2], g_seq[0], None, 0.5)  # tmp is not needed by the numba kernels
    np.testing.assert_array_equal(w[1::2], base[1::2])
    np.testing.assert_array_equal(w[::2], base[::2] - g_seq[0] * 0.5)


def test_optimizer_numba_kernels_reject_mismatched_sizes():
    w = np.zeros(10, np.float32)
    with pytest.raises(ValueError):
        kernels.NUMBA.adam(
            w,
            np.zeros(9, np.float32),
            np.zeros(10, np.float32),
            np.zeros(10, np.float32),
            None,
            1e-3,
            0.9,
            0.999,
            1e-8,
            0.1,
            0.001,
        )


def test_numpy_backend_works_without_numba_installed():
    code = """
import sys
sys.modules["numba"] = None                      # make "import numba" fail
import numpy as np
import tinygrad_free as tf
from tinygrad_free import kernels, nn
assert not kernels.HAVE_NUMBA and tf.get_backend() == "numpy"
layer = nn.Dense(4, 3, activation="tanh", rng=0)
y = layer(np.ones((2, 4), np.float32))
layer.backward(np.ones_like(y))
try:
    kernels.NUMBA.bias_act(y, None, 2)
except RuntimeError as e:
    assert "numba is not installed" in str(e)
else:
    raise AssertionError("the numba stub should raise")
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "TINYGRAD_FREE_BACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_warmup_takes_the_kernel_files_layers_declare_and_names_an_unknown_one():
    from tinygrad_free import kernels, nn

    declared = {f for cls in vars(nn).values() if isinstance(cls, type) for f in getattr(cls, "kernel_files", ())}
    assert {"dense", "conv", "lstm", "gru", "rnn", "attention", "loss", "pool"} <= declared
    if kernels.HAVE_NUMBA:
        assert kernels.warmup((), declared) < 1.0  # every declared file is a kernel file (no dtype: no compile)
        with pytest.raises(ValueError, match=r"no kernel file\(s\) \['convolution'\]; the files are \["):
            kernels.warmup(files=["convolution"])


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_warmup_with_jobs_compiles_in_other_processes_into_numbas_cache(tmp_path, monkeypatch):
    # The processes inherit the environment: their cache goes to tmp_path, this process's stays.
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert kernels.warmup((np.float32,), ["dropout", "shift"], jobs=2) > 0
    cached = {p.name.split(".")[0] for p in tmp_path.rglob("*.nbi")}
    assert {"dropout", "shift"} <= cached, cached


@pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba is not installed")
def test_warmup_names_a_bad_job_count_and_a_failed_process(monkeypatch):
    for jobs in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"jobs must be a positive integer \(processes compiling at once\), got"):
            kernels.warmup(files=["dropout"], jobs=jobs)
    monkeypatch.setenv("TINYGRAD_FREE_BLAS", "bogus")  # the processes' import fails on it
    with pytest.raises(
        RuntimeError,
        match=r"(?s)a compiling process failed: (dropout|shift): exit 1: .*TINYGRAD_FREE_BLAS=.bogus. is not one of",
    ):
        kernels.warmup((np.float32,), ["dropout", "shift"], jobs=2)
