"""The kernels of tall inputs (a batch of sequences: at least kernels.dense_parts.SPLIT_ROWS rows),
cut into row parts that run on numba's threads: the dense layer, the (out, in)-weight
projections and LayerNorm, each against its NumPy twin, and one thread against two bit for bit."""

import numba
import numpy as np
import pytest

from tinygrad_free import kernels
from tinygrad_free.kernels import dense, dense_parts, layernorm, linear

ROWS = dense_parts.SPLIT_ROWS + 37  # tall, and not a multiple of the parts


def close(a, b, tol):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("code", [dense.IDENTITY, dense.RELU, dense.GELU, dense.TANH])
def test_dense_in_parts_matches_numpy_and_gives_the_same_bits_on_one_thread_and_two(code, rng):
    x = rng.standard_normal((ROWS, 12)).astype(np.float32)
    W, b = rng.standard_normal((12, 9)).astype(np.float32), rng.standard_normal(9).astype(np.float32)
    gy = rng.standard_normal((ROWS, 9)).astype(np.float32)
    keep = code == dense.GELU
    runs = []
    for on in (False, True):
        y, z = np.empty((ROWS, 9), np.float32), np.empty((ROWS, 9), np.float32) if keep else None
        with kernels.parallel.num_threads(2 if on else 1):
            dense_parts.dense_forward_parts_numba(x, W, b, code, y, z, on_threads=on)
            dW, db, dx = np.empty_like(W), np.zeros(9, np.float32), np.empty_like(x)
            dense_parts.dense_backward_parts_numba(
                x, W, z if keep else y, gy, code, np.empty_like(y), dW, 0.0, db, dx, on_threads=on
            )
        runs.append((y, dW, db, dx))
    for a, c in zip(*runs):
        assert np.array_equal(a, c)
    y, z = np.empty((ROWS, 9), np.float32), np.empty((ROWS, 9), np.float32) if keep else None
    dense.dense_forward_numpy(x, W, b, code, y, z)
    dW, db, dx = np.empty_like(W), np.zeros(9, np.float32), np.empty_like(x)
    dense.dense_backward_numpy(x, W, z if keep else y, gy, code, np.empty_like(y), dW, 0.0, db, dx)
    for a, c in zip(runs[0], (y, dW, db, dx)):
        close(a, c, 2e-5)


@pytest.mark.parametrize("with_bias", [True, False])
def test_projections_in_parts_match_numpy_on_a_column_block_and_on_either_thread_count(with_bias, rng):
    x = rng.standard_normal((ROWS, 8)).astype(np.float32)
    W = rng.standard_normal((30, 8)).astype(np.float32)
    wide = rng.standard_normal((ROWS, 40)).astype(np.float32)
    gy = wide[:, 5:35]  # a column block, as the attention's q, k, v gradients are
    runs = []
    for on in (False, True):
        dW, db, dx = np.ones_like(W), np.zeros(30, np.float32) if with_bias else None, np.empty_like(x)
        with kernels.parallel.num_threads(2 if on else 1):
            linear.linear_backward_parts_numba(x, W, gy, dW, 1.0, db, dx, on_threads=on)
        runs.append((dW, db, dx))
    for a, c in zip(*runs):
        assert (a is None and c is None) or np.array_equal(a, c)
    dW, db, dx = np.ones_like(W), np.zeros(30, np.float32) if with_bias else None, np.empty_like(x)
    linear.linear_backward_numpy(x, W, gy, dW, 1.0, db, dx)
    for a, c in zip(runs[0], (dW, db, dx)):
        if c is not None:
            close(a, c, 2e-5)
    y1, y2 = np.empty((ROWS, 30), np.float32), np.empty((ROWS, 30), np.float32)
    linear.linear_forward_numba(x, W, None, y1)
    linear.linear_forward_numpy(x, W, None, y2)
    close(y1, y2, 2e-5)


def test_layernorm_in_parts_matches_numpy_and_either_thread_count(rng):
    x = (rng.standard_normal((ROWS, 16)) * 2 + 1).astype(np.float32)
    gamma, beta = rng.standard_normal(16).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    runs = []
    for on in (False, True, None):
        y, xhat, invstd = np.empty_like(x), np.empty_like(x), np.empty(ROWS, np.float32)
        dg, db, dx = np.zeros(16, np.float32), np.zeros(16, np.float32), np.empty_like(x)
        with kernels.parallel.num_threads(1 if on is False else 2):
            layernorm.layernorm_forward_numba(x, gamma, beta, 1e-5, y, xhat, invstd, on_threads=on)
            layernorm.layernorm_backward_numba(gy, xhat, invstd, gamma, dg, db, dx, on_threads=on)
        runs.append((y, xhat, invstd, dg, db, dx))
    for other in runs[1:]:
        for a, c in zip(runs[0], other):
            assert np.array_equal(a, c)
    y, xhat, invstd = np.empty_like(x), np.empty_like(x), np.empty(ROWS, np.float32)
    dg, db, dx = np.zeros(16, np.float32), np.zeros(16, np.float32), np.empty_like(x)
    layernorm.layernorm_forward_numpy(x, gamma, beta, 1e-5, y, xhat, invstd)
    layernorm.layernorm_backward_numpy(gy, xhat, invstd, gamma, dg, db, dx)
    for a, c in zip(runs[0], (y, xhat, invstd, dg, db, dx)):
        close(a, c, 1e-4)


def _beside_calls(monkeypatch):
    calls = []
    kernel = dense_parts._backward_beside

    def counted(*args):
        calls.append(args[0].shape)
        return kernel(*args)

    monkeypatch.setattr(dense_parts, "_backward_beside", counted)
    return calls


@pytest.mark.parametrize("activation", ["relu", "gelu", "identity"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n_in, n_out", [(40, 33), (600, 10)])  # (600, 10): dW is a narrow product (OpenBLAS)
def test_a_large_layers_dw_beside_dx_gives_the_bits_of_the_products_in_turn(
    activation, bias, n_in, n_out, monkeypatch, rng
):
    from tinygrad_free import backend, nn

    if not (kernels.blas.LOCAL_THREADS and kernels.parallel.layer_ok()):
        pytest.skip("dW beside dx needs MKL's per-thread GEMM and numba's OpenMP or TBB threads")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one thread only")
    monkeypatch.setattr(dense_parts, "BESIDE_GRAIN", 24 * n_in * n_out)  # this layer's products: a small test
    calls = _beside_calls(monkeypatch)
    x = rng.standard_normal((24, n_in)).astype(np.float32)
    gy = rng.standard_normal((24, n_out)).astype(np.float32)
    runs = []
    with backend.use_backend("numba"):
        for threads in (1, 2):
            layer = nn.Dense(n_in, n_out, activation=activation, bias=bias, rng=0)
            with kernels.parallel.num_threads(threads):
                grads = []
                for _ in range(2):  # the second call accumulates into the gradients (beta 1)
                    layer.forward(x)
                    dx = layer.backward(gy)
                    grads += [layer.W.grad.copy(), dx] + ([layer.b.grad.copy()] if bias else [])
            runs.append(grads)
    assert calls == [(24, n_in), (24, n_in)], "dW beside dx runs with two threads, once a call"
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


def test_dw_beside_dx_is_not_taken_below_its_grain_on_one_thread_or_without_dx(monkeypatch, rng):
    from tinygrad_free import backend, nn

    calls = _beside_calls(monkeypatch)
    x = rng.standard_normal((16, 40)).astype(np.float32)
    with backend.use_backend("numba"), kernels.parallel.num_threads(2):
        layer = nn.Dense(40, 33, rng=0)  # 16 x 40 x 33 multiply-adds: far below the grain
        layer.forward(x)
        layer.backward(np.ones((16, 33), np.float32))
        monkeypatch.setattr(dense_parts, "BESIDE_GRAIN", 1)
        layer.forward(x)
        layer.backward(np.ones((16, 33), np.float32), input_grad=False)  # no dx: one product
        with kernels.parallel.num_threads(1):
            layer.forward(x)
            layer.backward(np.ones((16, 33), np.float32))
            assert not dense_parts.beside(16, 40, 33)  # one thread, the grain passed
    assert calls == []


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("block", [True, False])  # gy a column block of a wider array, as q, k, v's are
def test_a_large_projections_dw_beside_dx_gives_the_bits_of_the_products_in_turn(with_bias, block, monkeypatch, rng):
    if not (kernels.blas.LOCAL_THREADS and kernels.parallel.layer_ok()) or numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("dW beside dx needs MKL's per-thread GEMM and two of numba's OpenMP or TBB threads")
    monkeypatch.setattr(dense_parts, "BESIDE_GRAIN", 40 * 8 * 30)
    calls = []
    kernel = linear._linear_backward_beside
    monkeypatch.setattr(linear, "_linear_backward_beside", lambda *a: calls.append(a[2].shape) or kernel(*a))
    x = rng.standard_normal((40, 8)).astype(np.float32)
    W = rng.standard_normal((30, 8)).astype(np.float32)
    wide = rng.standard_normal((40, 40)).astype(np.float32)
    gy = wide[:, 5:35] if block else np.ascontiguousarray(wide[:, 5:35])
    runs = []
    for threads in (1, 2):
        dW, db, dx = np.ones_like(W), np.zeros(30, np.float32) if with_bias else None, np.empty_like(x)
        with kernels.parallel.num_threads(threads):
            linear.linear_backward_numba(x, W, gy, dW, 1.0, db, dx)
        runs.append((dW, db, dx))
    assert calls == [(40, 30)], "dW beside dx runs with two threads"
    for a, c in zip(*runs):
        assert (a is None and c is None) or np.array_equal(a, c)
