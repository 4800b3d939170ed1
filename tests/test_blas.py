"""BLAS called from numba (``kernels.blas``) and the whole-layer kernels built on it."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from tinygrad_free import kernels
from tinygrad_free.kernels import blas, dense

ROOT = Path(__file__).resolve().parents[1]
CODES = [dense.IDENTITY, dense.SIGMOID, dense.TANH, dense.RELU]
needs_blas = pytest.mark.skipif(not blas.AVAILABLE, reason="no BLAS callable from numba on this machine")


@njit
def _gemm(a, b, c, beta):
    blas.gemm(a, b, c, beta)


def _tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if np.dtype(dtype) == np.float32 else dict(rtol=1e-12, atol=1e-12)


def _views(rng, m, k, n, dtype):
    """(a, b) pairs of the same values in every layout the layers can hand to gemm."""
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    big = rng.standard_normal((2 * m, 3 * k)).astype(dtype)
    big[::2, ::3] = a
    wide = rng.standard_normal((m, 2 * k)).astype(dtype)
    wide[:, ::2] = a
    tall = rng.standard_normal((2 * m, k)).astype(dtype)
    tall[::2] = a
    return [
        ("C", a, b),
        ("F", np.asfortranarray(a), np.asfortranarray(b)),
        ("transposed", np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T),
        ("row-strided", tall[::2], b),
        ("no unit stride", big[::2, ::3], b),
        ("column-strided", wide[:, ::2], b),
    ]


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(16, 784, 128), (64, 128, 10), (1, 5, 3), (3, 1, 4), (7, 9, 1), (1, 1, 1)])
def test_gemm_matches_numpy_matmul_in_every_layout(rng, dtype, m, k, n):
    for layout, a, b in _views(rng, m, k, n, dtype):
        c0 = rng.standard_normal((m, n)).astype(dtype)
        for beta in (0.0, 1.0):
            c = c0.copy()
            _gemm(a, b, c, beta)
            want = a.astype(np.float64) @ b + (c0 if beta else 0)
            np.testing.assert_allclose(c, want, **_tol(dtype), err_msg=f"{layout}, beta={beta}")


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(300, 1000, 10), (5, 70000, 3), (130, 1600, 15)])
def test_narrow_products_in_row_blocks_match_numpy_in_every_layout(rng, dtype, m, k, n):
    # n * k = 10,000, 210,000 and 24,000: blocks of 26, 1 and 10 rows (NARROW_BLOCK_WORK = 2^18).
    assert 2 <= n <= blas.NARROW_COLUMNS and m * n * k >= blas.NARROW_MIN_WORK and n * k <= blas.NARROW_BLOCK_WORK
    assert blas.NARROW_BLOCK_WORK // (n * k) < m  # several blocks
    for layout, a, b in _views(rng, m, k, n, dtype):
        c0 = rng.standard_normal((m, n)).astype(dtype)
        for beta in (0.0, 1.0):
            c = c0.copy()
            c[-1, -1] = np.nan if beta == 0 else c[-1, -1]  # beta 0 ignores c, in the last block too
            _gemm(a, b, c, beta)
            want = a.astype(np.float64) @ b + (c0 if beta else 0)
            # Sums of k products of about unit size: float32 rounding grows like sqrt(k).
            tol = dict(rtol=1e-4, atol=1e-5 * k**0.5) if dtype == np.float32 else _tol(dtype)
            np.testing.assert_allclose(c, want, **tol, err_msg=f"{layout}, beta={beta}")


@needs_blas
def test_narrow_products_are_numpys_openblas_products_and_keep_their_bits_at_any_thread_count(rng):
    from threadpoolctl import threadpool_limits

    a = rng.standard_normal((64, 128)).astype(np.float32)
    b = rng.standard_normal((128, 10)).astype(np.float32)
    x = rng.standard_normal((2000, 400)).astype(np.float32)  # 2000 x 400 @ 400 x 7: 7 blocks
    w = rng.standard_normal((400, 7)).astype(np.float32)
    results = []
    for threads in (1, 2):
        with threadpool_limits(threads):  # OpenBLAS's (and MKL's) own thread count
            c, y = np.empty((64, 10), np.float32), np.empty((2000, 7), np.float32)
            _gemm(a, b, c, 0.0)
            _gemm(x, w, y, 0.0)
            results.append((c, y))
    assert all(np.array_equal(p, q) for p, q in zip(*results))
    if blas.NARROW_LIBRARY is not None and "openblas" in os.path.basename(blas.NARROW_LIBRARY):
        with threadpool_limits(1):
            assert np.array_equal(results[0][0], a @ b)  # one block: the very call numpy makes


@needs_blas
def test_gemm_with_beta_zero_overwrites_even_nan(rng):
    a, b = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((6, 5)).astype(np.float32)
    c = np.full((4, 5), np.nan, np.float32)
    _gemm(a, b, c, 0.0)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-6)


@needs_blas
def test_gemm_handles_empty_products():
    c = np.full((3, 2), 7.0)
    _gemm(np.ones((3, 0)), np.ones((0, 2)), c, 1.0)  # k == 0: c <- beta c
    assert (c == 7.0).all()
    _gemm(np.ones((3, 0)), np.ones((0, 2)), c, 0.0)
    assert (c == 0.0).all()
    _gemm(np.ones((0, 4)), np.ones((4, 2)), np.ones((0, 2)), 0.0)  # nothing to write


@needs_blas
def test_gemm_rejects_mismatched_shapes_dtypes_and_a_strided_output():
    a32, b32 = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="shapes do not match"):
        _gemm(a32, np.ones((2, 4), np.float32), np.ones((2, 4), np.float32), 0.0)
    with pytest.raises(ValueError, match="unit column stride"):
        _gemm(a32, b32, np.ones((2, 8), np.float32)[:, ::2], 0.0)
    with pytest.raises(TypingError, match="all be float32 or all float64"):
        _gemm(a32, b32.astype(np.float64), np.ones((2, 4), np.float32), 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 1), (16, 784, 128), (7, 13, 10)])
def test_dense_forward_numba_matches_numpy(rng, dtype, code, with_bias, shape):
    batch, n_in, n_out = shape
    x, W = rng.standard_normal((batch, n_in)).astype(dtype), rng.standard_normal((n_in, n_out)).astype(dtype)
    W /= np.sqrt(n_in)
    b = rng.standard_normal(n_out).astype(dtype) if with_bias else None
    got = kernels.NUMBA.dense_forward(x, W, b, code, np.empty((batch, n_out), dtype))
    want = kernels.NUMPY.dense_forward(x, W, b, code, np.empty((batch, n_out), dtype))
    np.testing.assert_allclose(got, want, **_tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("beta", [0.0, 1.0])
@pytest.mark.parametrize("with_bias,input_grad", [(True, True), (False, True), (True, False)])
def test_dense_backward_numba_matches_numpy(rng, dtype, code, beta, with_bias, input_grad):
    batch, n_in, n_out = 9, 20, 6
    x = rng.standard_normal((batch, 2 * n_in)).astype(dtype)[:, ::2]  # a strided batch
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    y = kernels.NUMPY.dense_forward(x, W, None, code, np.empty((batch, n_out), dtype))
    gy = rng.standard_normal((batch, n_out)).astype(dtype)
    dW0, db0 = rng.standard_normal((n_in, n_out)).astype(dtype), rng.standard_normal(n_out).astype(dtype)
    out = {}
    for name, ops in (("numpy", kernels.NUMPY), ("numba", kernels.NUMBA)):
        dz, dW, db = np.empty_like(y), dW0.copy(), db0.copy() if with_bias else None
        dx = np.empty((batch, n_in), dtype) if input_grad else None
        ret = ops.dense_backward(x, W, y, gy, code, dz, dW, beta, db, dx)
        assert ret is dx
        out[name] = (dz, dW, db, dx)
    for got, want in zip(out["numba"], out["numpy"]):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, want, **_tol(dtype))
    dz = out["numpy"][0]
    np.testing.assert_allclose(out["numpy"][1], x.T @ dz + beta * dW0, **_tol(dtype))
    if input_grad:
        np.testing.assert_allclose(out["numpy"][3], dz @ W.T, **_tol(dtype))


def test_unknown_provider_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"TINYGRAD_FREE_BLAS='cublas' is not one of \['auto', 'mkl'"):
        blas._select("cublas")


def test_describe_names_the_provider_and_where_narrow_products_go():
    assert blas.describe().split()[0] == blas.PROVIDER in blas.PROVIDERS[1:]
    if blas.AVAILABLE and blas.NARROW_LIBRARY != blas.LIBRARY:
        assert blas.describe().endswith(f"; narrow products: openblas ({os.path.basename(blas.NARROW_LIBRARY)})")


STEP = """
import numpy as np, tinygrad_free as tf
from tinygrad_free import nn, optim
from tinygrad_free.kernels import blas
rng = np.random.default_rng(0)
x, y = rng.random((16, 30), dtype=np.float32), rng.integers(0, 10, 16)
weights = {}
for backend in ("numpy", "numba"):
    tf.set_backend(backend)
    model = nn.Sequential(nn.Dense(30, 20, activation="tanh", rng=0), nn.Dense(20, 10, rng=1))
    opt, loss_fn = optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss()
    for _ in range(3):
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step(loss=loss)
        opt.zero_grad()
    weights[backend] = [p.data.copy() for p in model.parameters()]
for a, b in zip(weights["numpy"], weights["numba"]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
print(blas.PROVIDER)
"""


@pytest.mark.parametrize("provider", ["openblas", "none"] + (["mkl"] if blas.PROVIDER == "mkl" else []))
def test_each_provider_trains_like_the_numpy_backend(provider):
    # The provider is bound once per process, so each one gets a process of its own.
    env = {**os.environ, "TINYGRAD_FREE_BLAS": provider}
    out = subprocess.run(
        [sys.executable, "-c", STEP], capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == provider


def test_a_missing_provider_fails_with_the_fix_and_auto_falls_back(monkeypatch):
    monkeypatch.setattr(blas, "_mkl_library", lambda: None)
    with pytest.raises(RuntimeError, match=r"TINYGRAD_FREE_BLAS=mkl: no mkl library found \(pip install mkl\)"):
        blas._select("mkl")
    assert blas._select("auto")[0] == "openblas"
    monkeypatch.setattr(blas, "_numpy_openblas", lambda: None)
    assert blas._select("auto")[0] == "none"
    monkeypatch.setattr(blas, "HAVE_NUMBA", False)
    assert blas._select("openblas")[0] == "none"  # nothing calls BLAS from numba without numba
