"""The convolution and pooling kernels: numba twins against the NumPy kernels, and both against
direct loop references (and PyTorch where it has the same operation)."""

import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

from tinygrad_free import kernels
from tinygrad_free.kernels import blas, conv, conv_blocks, dense, im2col, pool

CODES = [dense.IDENTITY, dense.SIGMOID, dense.TANH, dense.RELU]
DTYPES = [np.float32, np.float64]
# (N, C, H, W, O, kh, kw, sh, sw, ph, pw): odd sizes, batch 1, non-square kernels and strides,
# padding on one axis only, a kernel as large as the padded input, stride larger than the kernel.
GEOMETRIES = [
    (2, 3, 7, 9, 4, 3, 3, 2, 2, 1, 1),
    (1, 1, 5, 6, 2, 2, 3, 1, 2, 0, 1),
    (3, 2, 4, 4, 3, 6, 2, 1, 3, 1, 0),
    (2, 4, 8, 5, 5, 1, 1, 3, 1, 0, 0),
    # stride 1 with several channels: the numba kernels' wide columns (padded, and not)
    (3, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1),
    (2, 2, 6, 9, 3, 2, 3, 1, 1, 0, 2),
]


def tol(dtype):
    """numba vs NumPy where the GEMMs sum in different orders."""
    return dict(rtol=2e-5, atol=2e-6) if np.dtype(dtype) == np.float32 else dict(rtol=1e-12, atol=1e-13)


@pytest.fixture(scope="module", autouse=True)
def compiled():
    return kernels.warmup(files=("conv", "conv_pool", "im2col", "dense", "pool"))


def im2col_reference(x, kh, kw, sh, sw, ph, pw):
    """The definition, one element at a time."""
    n, c, h, w = x.shape
    ho, wo = conv.out_size(h, kh, sh, ph), conv.out_size(w, kw, sw, pw)
    cols = np.zeros((n, c * kh * kw, ho * wo), x.dtype)
    for s in range(n):
        for ch in range(c):
            for i in range(kh):
                for j in range(kw):
                    for oh in range(ho):
                        for ow in range(wo):
                            hh, ww = oh * sh - ph + i, ow * sw - pw + j
                            if 0 <= hh < h and 0 <= ww < w:
                                cols[s, (ch * kh + i) * kw + j, oh * wo + ow] = x[s, ch, hh, ww]
    return cols


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_matches_the_definition_and_col2im_is_its_adjoint(rng, geometry, dtype):
    n, c, h, w, _, kh, kw, sh, sw, ph, pw = geometry
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    expected = im2col_reference(x, kh, kw, sh, sw, ph, pw)
    for impl in (im2col.im2col_numpy, im2col.im2col_numba):
        cols = np.full(expected.shape, np.nan, dtype)
        assert impl(x, kh, kw, sh, sw, ph, pw, cols) is cols
        np.testing.assert_array_equal(cols, expected)
    # <im2col(x), g> == <x, col2im(g)> for every x, g: col2im is im2col's transpose.
    g = rng.standard_normal(expected.shape).astype(dtype)
    dx_np = im2col.col2im_numpy(g, kh, kw, sh, sw, ph, pw, np.full(x.shape, np.nan, dtype))
    dx_nb = im2col.col2im_numba(g, kh, kw, sh, sw, ph, pw, np.full(x.shape, np.nan, dtype))
    np.testing.assert_array_equal(dx_nb, dx_np)
    np.testing.assert_allclose(
        np.vdot(expected.astype(np.float64), g),
        np.vdot(x.astype(np.float64), dx_np),
        rtol=1e-5 if dtype == np.float32 else 1e-12,
    )


def run_conv(ns, x, W, b, geometry, code, gy, beta, with_dx, dW0, db0):
    n, c, h, w, o, kh, kw, sh, sw, ph, pw = geometry
    ho, wo = conv.out_size(h, kh, sh, ph), conv.out_size(w, kw, sw, pw)
    y = np.full((n, o, ho, wo), np.nan, x.dtype)
    assert ns.conv2d_forward(x, W, b, sh, sw, ph, pw, code, y) is y
    dW = dW0.copy()
    db = None if db0 is None else db0.copy()
    dx = np.full(x.shape, np.nan, x.dtype) if with_dx else None
    assert ns.conv2d_backward(x, W, y, gy, code, dW, beta, db, sh, sw, ph, pw, dx) is dx
    return y, dW, db, dx


# The numba kernels work a block of samples at a time (conv.BLOCK_BYTES): one sample per block,
# two (so a batch of three ends with a partial block), and the whole batch in one block.
BLOCKS = ["one sample", "two samples", "whole batch"]


def set_block(monkeypatch, block, geometry, dtype):
    """Set conv.BLOCK_BYTES so that the kernels take ``block`` samples at a time; returns that count."""
    n, c, h, w, o, kh, kw, sh, sw, ph, pw = geometry
    ho, wo = conv.out_size(h, kh, sh, ph), conv.out_size(w, kw, sw, pw)
    wide = conv._wide(np.empty((n, c, h, w)), sh, sw, None)
    k, l, item = c * kh * kw, conv.sample_span(w, pw, ho, wo, wide), np.dtype(dtype).itemsize
    monkeypatch.setattr(
        conv, "BLOCK_BYTES", {"one sample": 1, "two samples": 2 * k * l * item, "whole batch": 10**9}[block]
    )
    return conv.block_samples(k, l, item, n)


def test_block_samples_fits_the_budget_and_stays_within_the_batch():
    assert conv.block_samples(288, 121, 4, 128, budget=256 * 1024) == 1
    assert conv.block_samples(9, 676, 4, 128, budget=256 * 1024) == 10
    assert conv.block_samples(9, 676, 4, 3, budget=10**9) == 3
    assert conv.block_samples(9, 676, 4, 128, budget=1) == 1


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("block", BLOCKS)
def test_conv2d_numba_matches_numpy_forward_and_backward(rng, monkeypatch, geometry, dtype, code, block):
    n, c, h, w, o, kh, kw, sh, sw, ph, pw = geometry
    nb = set_block(monkeypatch, block, geometry, dtype)
    assert nb == {"one sample": 1, "two samples": min(2, n), "whole batch": n}[block]
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W = rng.standard_normal((o, c, kh, kw)).astype(dtype)
    ho, wo = conv.out_size(h, kh, sh, ph), conv.out_size(w, kw, sw, pw)
    gy = rng.standard_normal((n, o, ho, wo)).astype(dtype)
    dW0 = rng.standard_normal(W.shape).astype(dtype)
    for b, db0 in ((rng.standard_normal(o).astype(dtype), rng.standard_normal(o).astype(dtype)), (None, None)):
        for beta, with_dx in ((0.0, True), (1.0, False)):
            got = run_conv(kernels.NUMBA, x, W, b, geometry, code, gy, beta, with_dx, dW0, db0)
            want = run_conv(kernels.NUMPY, x, W, b, geometry, code, gy, beta, with_dx, dW0, db0)
            for g, e in zip(got, want):
                if e is None:
                    assert g is None
                else:  # float32: an entry's rounding scales with its sum's terms, not its value
                    np.testing.assert_allclose(
                        g, e, rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * max(1, np.abs(e).max())
                    )


def test_parts_cover_the_batch_once_in_whole_blocks_and_depend_only_on_the_shapes():
    for n in range(1, 41):
        for nb in range(1, 8):
            parts = conv.parts_of(n, nb)
            blocks = -(-n // nb)
            assert parts == min(conv.PARTS, blocks)
            bounds = [conv_blocks.part_bounds(n, nb, parts, p) for p in range(parts)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            for (lo, hi), (next_lo, _) in zip(bounds, bounds[1:] + [(n, n)]):
                assert hi == next_lo and lo < hi and lo % nb == 0
            sizes = [-(-(hi - lo) // nb) for lo, hi in bounds]  # blocks per part: within one
            assert max(sizes) - min(sizes) <= 1


# Bigger than GEOMETRIES: several blocks of samples per part, and GEMMs large enough that a
# BLAS left on two threads inside a part would split them (and round differently).
THREADED = [
    (64, 1, 28, 28, 32, 3, 3, 1, 1, 0, 0),
    (13, 3, 9, 7, 5, 3, 3, 2, 2, 1, 1),
    (24, 8, 13, 13, 16, 3, 3, 1, 1, 1, 1),
]


def run_on(on_threads, x, W, b, geometry, code, gy, with_dx):
    from threadpoolctl import threadpool_limits

    n, c, h, w, o, kh, kw, sh, sw, ph, pw = geometry
    y = np.full((n, o, conv.out_size(h, kh, sh, ph), conv.out_size(w, kw, sw, pw)), np.nan, x.dtype)
    dW = np.full(W.shape, np.nan, x.dtype)
    db = None if b is None else np.ones_like(b)
    dx = np.full(x.shape, np.nan, x.dtype) if with_dx else None
    threads = 2 if on_threads else 1
    with threadpool_limits(limits=threads, user_api="blas"), kernels.parallel.num_threads(threads):
        conv.conv2d_forward_numba(x, W, b, sh, sw, ph, pw, code, y, on_threads=on_threads)
        conv.conv2d_backward_numba(x, W, y, gy, code, dW, 0.0, db, sh, sw, ph, pw, dx, on_threads=on_threads)
    return y, dW, db, dx


@pytest.mark.parametrize("geometry", THREADED + GEOMETRIES[:1])
@pytest.mark.parametrize("with_bias_and_dx", [True, False])
def test_conv2d_on_threads_gives_the_same_bits_as_on_one(rng, geometry, with_bias_and_dx):
    n, c, h, w, o, kh, kw, sh, sw, ph, pw = geometry
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    W = rng.standard_normal((o, c, kh, kw)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32) if with_bias_and_dx else None
    gy = rng.standard_normal((n, o, conv.out_size(h, kh, sh, ph), conv.out_size(w, kw, sw, pw))).astype(np.float32)
    for code in (dense.RELU, dense.TANH):
        one = run_on(False, x, W, b, geometry, code, gy, with_bias_and_dx)
        two = run_on(True, x, W, b, geometry, code, gy, with_bias_and_dx)
        for a, e in zip(two, one):
            if e is None:
                assert a is None
            else:
                np.testing.assert_array_equal(a, e)


@pytest.mark.skipif(not blas.LOCAL_THREADS, reason="the threaded convolution needs MKL (per-thread BLAS threads)")
def test_the_threaded_convolution_leaves_the_callers_blas_threads_as_they_were(rng):
    from threadpoolctl import threadpool_info, threadpool_limits

    geometry = THREADED[0]
    x = rng.standard_normal(geometry[:4]).astype(np.float32)
    W = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((64, 32, 26, 26)).astype(np.float32)
    with threadpool_limits(limits=2, user_api="blas"), kernels.parallel.num_threads(2):
        run_on(True, x, W, None, geometry, dense.RELU, gy, True)
        mkl = [i["num_threads"] for i in threadpool_info() if i["internal_api"] == "mkl"]
    assert mkl == [2]


def test_training_batches_take_the_threaded_convolution_only_with_several_threads_and_mkl():
    big = np.empty((64, 32, 26, 26), np.float32)
    small = np.empty((2, 3, 4, 4), np.float32)
    with kernels.parallel.num_threads(2):
        expected = blas.LOCAL_THREADS and kernels.parallel.layer_ok() and numba_threads() >= 2
        assert conv._on_threads(big) == expected
        assert not conv._on_threads(small)
    with kernels.parallel.num_threads(1):
        assert not conv._on_threads(big)


def numba_threads():
    import numba

    return numba.config.NUMBA_NUM_THREADS


def test_conv2d_beta_zero_overwrites_even_nan_and_beta_one_accumulates(rng):
    geometry = GEOMETRIES[0]
    n, c, h, w, o, kh, kw, *_ = geometry
    x, W = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, kh, kw))
    gy = rng.standard_normal((n, o, 4, 5))
    for ns in (kernels.NUMPY, kernels.NUMBA):
        fresh = run_conv(ns, x, W, None, geometry, dense.IDENTITY, gy, 0.0, False, np.full(W.shape, np.nan), None)[1]
        assert np.all(np.isfinite(fresh))
        twice = run_conv(ns, x, W, None, geometry, dense.IDENTITY, gy, 1.0, False, fresh, None)[1]
        np.testing.assert_allclose(twice, 2 * fresh, rtol=1e-13)


# Stride 1 with several channels (wide by default), and one channel (compact by default).
WIDE = [(3, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1), (2, 2, 6, 9, 3, 2, 3, 1, 1, 0, 2), (2, 1, 5, 5, 2, 3, 3, 1, 1, 1, 1)]


@pytest.mark.parametrize("geometry", WIDE)
@pytest.mark.parametrize("code", [dense.RELU, dense.TANH, dense.GELU])
def test_wide_and_compact_columns_give_the_same_convolution(rng, geometry, code):
    n, c, h, w, o, kh, kw, sh, sw, ph, pw = geometry
    x, W, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, kh, kw)), rng.standard_normal(o)
    out = (n, o, conv.out_size(h, kh, sh, ph), conv.out_size(w, kw, sw, pw))
    gy, dW0, db0 = rng.standard_normal(out), rng.standard_normal(W.shape), rng.standard_normal(o)
    results = []
    for wide in (True, False):
        y, z = np.full(out, np.nan), np.full(out, np.nan) if code in dense.FROM_INPUT else None
        conv.conv2d_forward_numba(x, W, b, sh, sw, ph, pw, code, y, z, wide=wide)
        dW, db, dx = dW0.copy(), db0.copy(), np.full(x.shape, np.nan)
        kept = y if z is None else z
        conv.conv2d_backward_numba(x, W, kept, gy, code, dW, 1.0, db, sh, sw, ph, pw, dx, wide=wide)
        results.append((y, z, dW, db, dx))
    want = run_conv(kernels.NUMPY, x, W, b, geometry, dense.IDENTITY, gy, 0.0, False, dW0, None)[0]
    np.testing.assert_allclose(results[0][1] if code in dense.FROM_INPUT else want, want, rtol=1e-12, atol=1e-12)
    for g, e in zip(*results):
        if e is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


def test_the_numba_kernels_take_wide_columns_at_stride_one_with_several_channels():
    x = np.empty((2, 3, 5, 5))
    assert conv._wide(x, 1, 1, None)
    assert not conv._wide(x[:, :1], 1, 1, None)
    assert not conv._wide(x, 2, 1, None) and not conv._wide(x, 1, 2, None)
    assert conv._wide(x[:, :1], 1, 1, True) and not conv._wide(x, 1, 1, False)


def test_wide_columns_refuse_a_stride_other_than_one(rng):
    x, W = rng.standard_normal((2, 3, 7, 9)), rng.standard_normal((4, 3, 3, 3))
    y = np.empty((2, 4, 3, 7))
    with pytest.raises(ValueError, match=r"wide columns need stride 1, got stride \(2, 1\)"):
        conv.conv2d_forward_numba(x, W, None, 2, 1, 0, 0, dense.IDENTITY, y, wide=True)
    with pytest.raises(ValueError, match=r"wide columns need stride 1, got stride \(2, 1\)"):
        conv.conv2d_backward_numba(x, W, y, y, dense.IDENTITY, np.empty_like(W), 0.0, None, 2, 1, 0, 0, None, wide=True)


@pytest.mark.parametrize("where", ["input", "weight"])
def test_a_non_finite_value_gives_the_wide_backward_the_numpy_kernels_result(rng, where):
    # Wo = 4 of W = 6: the wide columns of row j = 0 read x[..., 4:6] in their wrap-around
    # columns, where the gradient is 0; inf * 0 there would put NaN into dW[:, :, :, 0].
    geometry = (2, 2, 5, 6, 3, 3, 3, 1, 1, 0, 0)
    n, c, h, w, o, kh, kw, sh, sw, ph, pw = geometry
    x, W = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, kh, kw))
    if where == "input":
        x[0, 1, 2, 5] = np.inf
    else:
        W[1, 0, 1, 1] = np.inf
    gy = rng.standard_normal((n, o, 3, 4))
    got = run_conv(kernels.NUMBA, x, W, None, geometry, dense.IDENTITY, gy, 0.0, True, np.zeros_like(W), None)
    want = run_conv(kernels.NUMPY, x, W, None, geometry, dense.IDENTITY, gy, 0.0, True, np.zeros_like(W), None)
    assert np.isinf(want[1]).any() if where == "input" else np.isinf(want[3]).any()
    for g, e in zip(got, want):
        if e is not None:
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-13)  # inf and NaN in the same places


def test_conv2d_kernels_match_torch(rng):
    torch = pytest.importorskip("torch")
    geometry = GEOMETRIES[0]
    n, c, h, w, o, kh, kw, sh, sw, ph, pw = geometry
    x, W, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, kh, kw)), rng.standard_normal(o)
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(W), torch.tensor(b), (sh, sw), (ph, pw)).numpy()
    for ns in (kernels.NUMPY, kernels.NUMBA):
        y = run_conv(ns, x, W, b, geometry, dense.IDENTITY, np.zeros_like(ref), 0.0, False, np.zeros_like(W), None)[0]
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_conv2d_numba_falls_back_to_numpy_products_without_blas(rng, monkeypatch):
    geometry = GEOMETRIES[1]
    n, c, h, w, o, kh, kw, sh, sw, ph, pw = geometry
    x, W, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, kh, kw)), rng.standard_normal(o)
    gy = rng.standard_normal((n, o, conv.out_size(h, kh, sh, ph), conv.out_size(w, kw, sw, pw)))
    want = run_conv(kernels.NUMPY, x, W, b, geometry, dense.TANH, gy, 0.0, True, np.zeros_like(W), np.zeros(o))
    monkeypatch.setattr(blas, "AVAILABLE", False)
    got = run_conv(kernels.NUMBA, x, W, b, geometry, dense.TANH, gy, 0.0, True, np.zeros_like(W), np.zeros(o))
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-13)


def test_conv2d_kernels_refuse_mismatched_buffers(rng):
    x = rng.standard_normal((2, 3, 7, 9))
    W = rng.standard_normal((4, 3, 3, 3))
    y = np.empty((2, 4, 5, 7))
    for ns in (kernels.NUMPY, kernels.NUMBA):
        with pytest.raises(
            ValueError, match=r"need W.shape\[1\] == C and y of shape \(2, 4, 5, 7\), got \(2, 4, 5, 6\)"
        ):
            ns.conv2d_forward(x, W, None, 1, 1, 0, 0, 0, np.empty((2, 4, 5, 6)))
        with pytest.raises(ValueError, match="kernel larger than the padded input"):
            ns.conv2d_forward(x, rng.standard_normal((4, 3, 8, 3)), None, 1, 1, 0, 0, 0, y)
        with pytest.raises(ValueError, match="dW must be a C-contiguous array of W's shape"):
            ns.conv2d_backward(x, W, y, y, 0, np.empty((4, 3, 3)), 0.0, None, 1, 1, 0, 0, None)
        with pytest.raises(ValueError, match="gy must have y's shape"):
            ns.conv2d_backward(x, W, y, y[:1], 0, np.empty_like(W), 0.0, None, 1, 1, 0, 0, None)
        with pytest.raises(ValueError, match="dx must have x's shape"):
            ns.conv2d_backward(x, W, y, y, 0, np.empty_like(W), 0.0, None, 1, 1, 0, 0, x[:1].copy())
    with pytest.raises(ValueError, match="kernel larger than the padded input"):
        im2col.im2col_numba(x, 8, 3, 1, 1, 0, 0, np.empty((2, 72, 0)))


# --- pooling ----------------------------------------------------------------------------------
# (N, C, H, W, kh, kw, sh, sw); the 2x2 column-stride-2 ones take the vectorised row path of the
# numba kernel (odd sizes: a row or column left over; row stride 1: overlapping windows).
POOLS = [
    (2, 3, 7, 9, 2, 2, 2, 2),
    (2, 2, 5, 8, 2, 2, 1, 2),
    (1, 2, 5, 6, 3, 2, 1, 2),
    (2, 1, 4, 7, 4, 3, 1, 3),
    (3, 2, 6, 6, 1, 1, 1, 1),
]


def pool_out(shape, kh, kw, sh, sw):
    return shape[0], shape[1], (shape[2] - kh) // sh + 1, (shape[3] - kw) // sw + 1


@pytest.mark.parametrize("geometry", POOLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool_numba_matches_numpy_bit_for_bit_with_ties_and_nan(rng, geometry, dtype):
    *shape, kh, kw, sh, sw = geometry
    x = rng.integers(-2, 3, shape).astype(dtype)  # few distinct values: many ties
    x.reshape(-1)[rng.choice(x.size, 2, replace=False)] = np.nan
    out = pool_out(shape, kh, kw, sh, sw)
    results = []
    for ns in (kernels.NUMPY, kernels.NUMBA):
        y, arg = np.empty(out, dtype), np.empty(out, np.int64)
        assert ns.maxpool2d_forward(x, kh, kw, sh, sw, y, arg) is y
        gy = np.arange(1, y.size + 1, dtype=dtype).reshape(out)
        dx = ns.maxpool2d_backward(gy, arg, np.full(x.shape, np.nan, dtype))
        # A strided dx (every other column of a wider array) receives the same gradient.
        strided = np.full((*x.shape[:3], 2 * x.shape[3]), np.nan, dtype)[..., ::2]
        assert ns.maxpool2d_backward(gy, arg, strided) is strided
        results.append((y, arg, dx, strided))
    for g, e in zip(*results):
        np.testing.assert_array_equal(g, e)
    np.testing.assert_array_equal(results[1][3], results[1][2])


@pytest.mark.parametrize("geometry", POOLS[:2] + [(37, 4, 13, 11, 2, 2, 2, 2)])
def test_maxpool_threaded_twins_equal_the_serial_kernels_bit_for_bit(rng, geometry):
    *shape, kh, kw, sh, sw = geometry
    x = rng.integers(-2, 3, shape).astype(np.float32)  # ties
    x.reshape(-1)[rng.choice(x.size, 3, replace=False)] = np.nan
    out = pool_out(shape, kh, kw, sh, sw)
    results = []
    for forward, backward in (
        (pool._maxpool_forward, pool._maxpool_backward),
        (pool.maxpool_forward_parallel, pool.maxpool_backward_parallel),
    ):
        y, arg = np.full(out, np.nan, np.float32), np.full(out, -1, np.int64)
        with kernels.parallel.num_threads(2):
            forward(x, kh, kw, sh, sw, y, arg)
            dx = np.full(x.shape, np.nan, np.float32)
            backward(np.arange(1, y.size + 1, dtype=np.float32).reshape(out), arg, dx)
        results.append((y, arg, dx))
    for g, e in zip(*results):
        np.testing.assert_array_equal(g, e)


def test_maxpool_kernels_match_torch_values_indices_and_gradient(rng):
    torch = pytest.importorskip("torch")
    for *shape, kh, kw, sh, sw in POOLS:
        x = rng.integers(-3, 4, shape).astype(np.float64)  # ties: torch keeps the first maximum too
        out = pool_out(shape, kh, kw, sh, sw)
        xt = torch.tensor(x, requires_grad=True)
        yt, it = torch.nn.functional.max_pool2d(xt, (kh, kw), (sh, sw), return_indices=True)
        gy = rng.standard_normal(out)
        yt.backward(torch.tensor(gy))
        for ns in (kernels.NUMPY, kernels.NUMBA):
            y, arg = np.empty(out), np.empty(out, np.int64)
            ns.maxpool2d_forward(x, kh, kw, sh, sw, y, arg)
            np.testing.assert_array_equal(y, yt.detach().numpy())
            np.testing.assert_array_equal(arg, it.numpy())
            np.testing.assert_allclose(
                ns.maxpool2d_backward(gy, arg, np.empty_like(x)), xt.grad.numpy(), rtol=1e-15, atol=0
            )


@pytest.mark.parametrize("geometry", POOLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_avgpool_numba_matches_numpy_and_torch(rng, geometry, dtype):
    torch = pytest.importorskip("torch")
    *shape, kh, kw, sh, sw = geometry
    x = rng.standard_normal(shape).astype(dtype)
    out = pool_out(shape, kh, kw, sh, sw)
    gy = rng.standard_normal(out).astype(dtype)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    yt = torch.nn.functional.avg_pool2d(xt, (kh, kw), (sh, sw))
    yt.backward(torch.tensor(gy.astype(np.float64)))
    ys, dxs = [], []
    for ns in (kernels.NUMPY, kernels.NUMBA):
        ys.append(ns.avgpool2d_forward(x, kh, kw, sh, sw, np.empty(out, dtype)))
        dxs.append(ns.avgpool2d_backward(gy, kh, kw, sh, sw, np.full(shape, np.nan, dtype)))
    np.testing.assert_allclose(ys[1], ys[0], **tol(dtype))
    np.testing.assert_array_equal(dxs[1], dxs[0])
    loose = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(ys[1], yt.detach().numpy(), **loose)
    np.testing.assert_allclose(dxs[1], xt.grad.numpy(), **loose)


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avgpool_numba_matches_numpy_and_the_mean(rng, dtype):
    x = rng.standard_normal((3, 4, 5, 7)).astype(dtype)
    gy = rng.standard_normal((3, 4)).astype(dtype)
    y_np = kernels.NUMPY.global_avgpool2d_forward(x, np.empty((3, 4), dtype))
    y_nb = kernels.NUMBA.global_avgpool2d_forward(x, np.empty((3, 4), dtype))
    np.testing.assert_allclose(y_nb, y_np, **tol(dtype))
    np.testing.assert_allclose(y_nb, x.astype(np.float64).mean(axis=(2, 3)), **tol(dtype))
    dx_np = kernels.NUMPY.global_avgpool2d_backward(gy, np.empty_like(x))
    dx_nb = kernels.NUMBA.global_avgpool2d_backward(gy, np.empty_like(x))
    np.testing.assert_array_equal(dx_nb, dx_np)
    np.testing.assert_allclose(dx_nb, np.broadcast_to(gy[:, :, None, None] / 35, x.shape), rtol=1e-6)


def test_pool_kernels_refuse_a_wrong_output_shape(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    with pytest.raises(ValueError, match="output must have shape"):
        kernels.NUMBA.avgpool2d_forward(x, 2, 2, 2, 2, np.empty((2, 3, 2, 3)))
    with pytest.raises(ValueError, match="kernel and stride must be positive"):
        kernels.NUMBA.maxpool2d_forward(x, 7, 2, 2, 2, np.empty((2, 3, 0, 3)), np.empty((2, 3, 0, 3), np.int64))


def test_warmup_compiles_what_a_cnn_training_step_uses(rng):
    from tinygrad_free import nn, optim, use_backend

    dispatchers = [
        obj for mod in (blas, conv, dense, pool) for obj in vars(mod).values() if isinstance(obj, CPUDispatcher)
    ]
    before = {d: len(d.signatures) for d in dispatchers}
    with use_backend("numba"):
        for dtype, act in ((np.float32, "relu"), (np.float64, "tanh")):
            model = nn.Sequential(
                nn.Conv2D(1, 3, 3, padding=1, activation=act, dtype=dtype, rng=0),
                nn.MaxPool2D(2),
                nn.Conv2D(3, 4, (2, 3), stride=(1, 2), dtype=dtype, rng=1),
                nn.AvgPool2D(2, stride=1),
                nn.Conv2D(4, 2, 1, bias=False, dtype=dtype, rng=2),
                nn.GlobalAvgPool2D(),
            )
            opt = optim.SGD(model.parameters(), lr=0.1)
            x = rng.standard_normal((2, 1, 8, 13)).astype(dtype)
            y = model(x)
            model.backward(np.ones_like(y))
            opt.step()
    assert {d: len(d.signatures) for d in dispatchers} == before


def test_max_pooling_keeps_its_argmax_in_int32_unless_a_plane_needs_int64(rng):
    from tinygrad_free import nn

    assert pool.argmax_dtype(26, 26) == np.int32
    assert pool.argmax_dtype(2**16, 2**15) == np.int64  # 2**31 pixels: a flat index past int32
    layer = nn.MaxPool2D(2)
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    y = layer(x)
    assert layer._argmax.dtype == np.int32
    for ns in (kernels.NUMPY, kernels.NUMBA):  # the kernels take either width, with one result
        got = [
            ns.maxpool2d_forward(x, 2, 2, 2, 2, np.empty_like(y), np.empty(y.shape, t)) for t in (np.int32, np.int64)
        ]
        np.testing.assert_array_equal(got[0], y)
        np.testing.assert_array_equal(got[1], y)
