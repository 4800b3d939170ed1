"""Winograd F(2x2, 3x3) (kernels.winograd), which the numba convolution takes for 3x3 layers of
stride 1 with 16 input channels or more: against the NumPy (im2col) kernels in float64 and float32,
the same bits on any thread count, im2col's inf/NaN pattern for non-finite numbers, and Conv2D
layers of that size against PyTorch."""

import numpy as np
import pytest

from tinygrad_free import nn
from tinygrad_free.kernels import conv, dense, parallel, winograd

CODES = {"identity": dense.IDENTITY, "relu": dense.RELU, "tanh": dense.TANH, "sigmoid": dense.SIGMOID}


def close(a, b, tol):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


def run(impl, x, W, b, pad, code, gy, with_dx, beta, **kw):
    """Forward then backward of one kernel implementation: (y, dW, db, dx)."""
    (ph, pw), n, o = pad, x.shape[0], W.shape[0]
    y = np.empty((n, o, x.shape[2] + 2 * ph - 2, x.shape[3] + 2 * pw - 2), x.dtype)
    forward = conv.conv2d_forward_numpy if impl == "numpy" else conv.conv2d_forward_numba
    backward = conv.conv2d_backward_numpy if impl == "numpy" else conv.conv2d_backward_numba
    forward(x, W, b, 1, 1, ph, pw, code, y, **kw)
    dW, db = np.full_like(W, 0.25), None if b is None else np.full_like(b, 0.5)
    dx = np.empty_like(x) if with_dx else None
    backward(x, W, y, gy(y.shape), code, dW, beta, db, 1, 1, ph, pw, dx, **kw)
    return y, dW, db, dx


CASES = [
    ((3, 16, 6, 6), 5, (1, 1), True, True, 0.0),  # even output: whole tiles
    ((2, 16, 7, 5), 4, (1, 1), True, True, 1.0),  # odd height: the last tiles half outside
    ((5, 17, 5, 8), 3, (0, 0), False, True, 0.0),  # valid padding, no bias
    ((4, 16, 4, 9), 6, (2, 1), True, False, 1.0),  # padding wider than the kernel needs
    ((70, 16, 7, 7), 4, (1, 1), True, True, 0.0),  # several blocks and parts
    ((2, 16, 3, 3), 3, (0, 0), True, True, 0.0),  # one output pixel
    ((2, 16, 1, 1), 3, (1, 1), True, True, 1.0),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", list(CODES))
@pytest.mark.parametrize("shape, o, pad, bias, with_dx, beta", CASES)
def test_winograd_matches_the_im2col_convolution_and_gives_the_same_bits_on_any_thread_count(
    dtype, act, shape, o, pad, bias, with_dx, beta, rng
):
    x = rng.standard_normal(shape).astype(dtype)
    W = (rng.standard_normal((o, shape[1], 3, 3)) / 4).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else None
    gy_rng = np.random.default_rng(7)
    grads = {}

    def gy(s):
        return grads.setdefault(s, gy_rng.standard_normal(s).astype(dtype))

    want = run("numpy", x, W, b, pad, CODES[act], gy, with_dx, beta)
    runs = []
    for on in (False, True):
        with parallel.num_threads(2 if on else 1):
            runs.append(run("numba", x, W, b, pad, CODES[act], gy, with_dx, beta, on_threads=on, use_winograd=True))
    for a, c in zip(*runs):
        assert (a is None and c is None) or np.array_equal(a, c)
    # float32: the fast tanh and the transforms' other order of sums, a few ulps of the sums
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for got, ref in zip(runs[0], want):
        if ref is None:
            assert got is None
        else:
            close(got, ref, tol)


def test_layers_of_sixteen_input_channels_or_more_take_winograd_by_default_and_smaller_ones_im2col(rng):
    assert winograd.applies(16, 3, 3, 1, 1) and winograd.applies(64, 3, 3, 1, 1)
    assert not winograd.applies(15, 3, 3, 1, 1)  # the transforms would cost more than they save
    assert not winograd.applies(32, 3, 3, 2, 2) and not winograd.applies(32, 5, 5, 1, 1)
    for c, takes in ((16, True), (8, False)):
        x = rng.standard_normal((4, c, 8, 8)).astype(np.float32)
        W = rng.standard_normal((6, c, 3, 3)).astype(np.float32)
        ys = {}
        for choice in (None, True, False):
            ys[choice] = np.empty((4, 6, 8, 8), np.float32)
            conv.conv2d_forward_numba(x, W, None, 1, 1, 1, 1, dense.IDENTITY, ys[choice], use_winograd=choice)
        assert not np.array_equal(ys[True], ys[False])  # the two methods round differently
        assert np.array_equal(ys[None], ys[takes])


def test_winograd_is_refused_where_it_does_not_apply_with_a_message(rng):
    x = rng.standard_normal((2, 16, 8, 8)).astype(np.float32)
    W = rng.standard_normal((4, 16, 3, 3)).astype(np.float32)
    y = np.empty((2, 4, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"Winograd needs a 3x3 kernel, stride 1"):
        conv.conv2d_forward_numba(x, W, None, 2, 2, 1, 1, dense.IDENTITY, y, use_winograd=True)


@pytest.mark.parametrize("where", ["x", "W", "gy"])
def test_a_non_finite_number_gives_the_im2col_convolution_s_inf_and_nan_pattern(where, rng):
    """One inf mixes into all four outputs of its Winograd tile as NaN; the kernels see the
    non-finite result and redo the call by im2col, whose pattern is the direct method's."""
    x = rng.standard_normal((3, 16, 6, 6)).astype(np.float32)
    W = rng.standard_normal((4, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    g = rng.standard_normal((3, 4, 6, 6)).astype(np.float32)
    {"x": x, "W": W, "gy": g}[where].reshape(-1)[5] = np.inf

    def gy(_):
        return g

    chosen = run("numba", x, W, b, (1, 1), dense.RELU, gy, True, 0.0)  # Winograd's by default
    im2col = run("numba", x, W, b, (1, 1), dense.RELU, gy, True, 0.0, use_winograd=False)
    assert not all(np.isfinite(a).all() for a in chosen)
    # (with a finite input the forwards differ in rounding; the backward is then checked on one y)
    for a, c in zip(chosen[1:] if where == "gy" else chosen, im2col[1:] if where == "gy" else im2col):
        np.testing.assert_array_equal(a, c)
    if where == "gy":
        y = im2col[0]
        outs = []
        for choice in (None, False):
            dW, db, dx = np.zeros_like(W), np.zeros_like(b), np.empty_like(x)
            conv.conv2d_backward_numba(x, W, y, g, dense.RELU, dW, 0.0, db, 1, 1, 1, 1, dx, use_winograd=choice)
            outs.append((dW, db, dx))
        for a, c in zip(*outs):
            np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("activation", ["relu", "gelu", None])
def test_a_conv2d_of_sixteen_channels_matches_pytorch_in_float64(activation, rng):
    torch = pytest.importorskip("torch")
    layer = nn.Conv2D(16, 8, 3, padding=1, activation=activation, dtype=np.float64, rng=0)
    x = rng.standard_normal((5, 16, 9, 7))
    gy = rng.standard_normal((5, 8, 9, 7))
    y = layer(x)
    dx = layer.backward(gy)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(layer.W.data, requires_grad=True)
    tb = torch.tensor(layer.b.data, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, padding=1)
    ty = {"relu": torch.relu, "gelu": torch.nn.functional.gelu, None: lambda t: t}[activation](ty)
    ty.backward(torch.tensor(gy))
    for ours, theirs in ((y, ty), (dx, tx.grad), (layer.W.grad, tw.grad), (layer.b.grad, tb.grad)):
        close(ours, theirs.detach().numpy(), 1e-10)


def test_a_network_in_the_generator_s_format_with_a_winograd_convolution_matches_pytorch():
    """The property-based generator's comparison (outputs, gradients, optimizer steps) on a network
    whose second convolution (16 -> 3 channels, 3x3, stride 1) takes Winograd's kernels, called
    twice in one Sequential (a module used twice)."""
    pytest.importorskip("torch")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fuzz_networks import check_against_torch

    conv = {"k": 3, "stride": 1, "pad": 1, "act": "relu", "bias": True}
    spec = {
        "input": [2, 5, 4],
        "batch": 3,
        "seed": 0,
        "modules": [
            {"kind": "conv2d", "args": dict(conv, out=16, seed=0), "in": [2, 5, 4], "train": True},
            {"kind": "conv2d", "args": dict(conv, out=16, act="tanh", seed=1), "in": [16, 5, 4], "train": True},
            {"kind": "gap", "args": {"seed": 2}, "in": [16, 5, 4], "train": True},
            {"kind": "sequential", "args": {"seed": 3}, "in": [2, 5, 4], "train": True, "layers": [0, 1, 1, 2]},
        ],
        "nodes": [{"module": 3, "inputs": [0]}],
        "outputs": [1],
        "optimizer": {"name": "adam", "weight_decay": 0.0},
    }
    check_against_torch(spec)
