"""A stride-1 convolution with its ReLU and 2 x 2 max pooling as one kernel (kernels.conv_pool),
and nn.Sequential running Conv2D(relu) -> MaxPool2D(2) through it: the numba kernel against its NumPy
twin (the two layers' kernels composed) and across thread counts, the fused network against
PyTorch, and the cases that must not be fused or must be refused."""

import numpy as np
import pytest

from tinygrad_free import gradcheck, kernels, nn
from tinygrad_free.kernels import conv_pool
from tinygrad_free.nn.context import StaleForwardError

torch = pytest.importorskip("torch")


def close(a, b, tol):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


def run_kernels(impl, x, W, b, ph, pw, gy_seed, with_dx, beta, on_threads=None):
    ho, wo = x.shape[2] + 2 * ph - W.shape[2] + 1, x.shape[3] + 2 * pw - W.shape[3] + 1
    shape = (x.shape[0], W.shape[0], ho // 2, wo // 2)
    y, argmax = np.empty(shape, x.dtype), np.empty(shape, np.int32)
    kw = {} if impl == "numpy" else {"on_threads": on_threads}
    forward = getattr(conv_pool, f"conv_relu_pool_forward_{impl}")
    backward = getattr(conv_pool, f"conv_relu_pool_backward_{impl}")
    forward(x, W, b, ph, pw, y, argmax, **kw)
    gy = np.random.default_rng(gy_seed).standard_normal(shape).astype(x.dtype)
    dW, db = np.full_like(W, 0.25), None if b is None else np.full_like(b, 0.5)
    dx = np.empty_like(x) if with_dx else None
    backward(x, W, y, argmax, gy, dW, beta, db, ph, pw, dx, **kw)
    return y, argmax, dW, db, dx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape, kernel, padding, bias, with_dx, beta",
    [
        ((5, 1, 11, 9), (3, 3), (0, 0), True, True, 0.0),  # odd output: the last row is not pooled
        ((4, 1, 28, 28), (3, 3), (1, 1), True, False, 1.0),  # the recipes' first layer
        ((3, 3, 10, 12), (3, 3), (1, 0), False, True, 1.0),  # RGB
        ((2, 2, 8, 7), (2, 3), (0, 1), True, True, 0.0),
        ((9, 32, 13, 13), (3, 3), (0, 0), True, True, 0.0),  # mnist_convnet's second layer, blocks of samples
    ],
)
def test_fused_kernel_matches_the_two_layers_kernels_and_gives_the_same_bits_on_any_thread_count(
    dtype, shape, kernel, padding, bias, with_dx, beta, rng
):
    x = rng.standard_normal(shape).astype(dtype)
    W = rng.standard_normal((6, shape[1]) + kernel).astype(dtype)
    b = rng.standard_normal(6).astype(dtype) if bias else None
    want = run_kernels("numpy", x, W, b, *padding, 7, with_dx, beta)
    runs = []
    for on in (False, True):
        with kernels.parallel.num_threads(2 if on else 1):
            runs.append(run_kernels("numba", x, W, b, *padding, 7, with_dx, beta, on_threads=on))
    for a, c in zip(*runs):
        assert (a is None and c is None) or np.array_equal(a, c)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    y, argmax = runs[0][:2]
    np.testing.assert_array_equal(argmax, want[1])
    close(y, want[0], tol)  # numpy's matmul and the GEMM round differently
    for a, c in zip(runs[0][2:], want[2:]):
        if c is not None:
            close(a, c, tol)


def test_fused_kernel_keeps_the_poolings_rules_for_ties_and_nan(rng):
    x = np.zeros((2, 1, 8, 8), np.float32)  # every ReLU output 0: ties everywhere, the first wins
    x[0, 0, 3, 4] = np.nan  # a NaN wins its windows (the first NaN in row-major order)
    x[1, 0, 5, 2] = -np.inf
    W = np.ones((3, 1, 3, 3), np.float32)
    W[1] = -1
    runs = [run_kernels(impl, x, W, None, 1, 1, 3, True, 0.0) for impl in ("numpy", "numba")]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])  # NaN in the same places
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert np.isnan(runs[1][0][0]).any()
    q, p = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    np.testing.assert_array_equal(runs[1][1][1, 0], 2 * q * 8 + 2 * p)  # -inf and zeros: all ties, the first wins
    assert np.isinf(runs[1][0][1, 1]).any()  # the negated weights make it +inf, the maximum


def fused_net(dtype=np.float64, out_channels=4):
    return nn.Sequential(
        nn.Conv2D(1, out_channels, 3, padding=1, activation="relu", dtype=dtype, rng=0),
        nn.MaxPool2D(2),
        nn.Conv2D(out_channels, 5, 3, activation="relu", dtype=dtype, rng=1),
        nn.MaxPool2D(2, stride=1),  # not 2 x 2 of stride 2: not fused
        nn.Flatten(),
        nn.Dense(5 * 1 * 2, 3, dtype=dtype, rng=2),
    )


def torch_twin(model):
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 5, 3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2, stride=1),
        torch.nn.Flatten(),
        torch.nn.Linear(10, 3),
    ).double()
    with torch.no_grad():
        for mine, theirs in ((model[0], ref[0]), (model[2], ref[3])):
            theirs.weight.copy_(torch.tensor(mine.W.data))
            theirs.bias.copy_(torch.tensor(mine.b.data))
        ref[7].weight.copy_(torch.tensor(model[5].W.data.T))
        ref[7].bias.copy_(torch.tensor(model[5].b.data))
    return ref


def test_sequential_fuses_the_first_convolution_and_its_pooling_and_matches_torch(rng, each_backend):
    model = fused_net()
    assert model[0].fuses_with(model[1]) and not model[2].fuses_with(model[3])
    model[0].b.data[...] = rng.standard_normal(4) * 0.1
    ref = torch_twin(model)
    x = rng.standard_normal((3, 1, 9, 10))
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    y, backprop = model.begin_update(x)
    assert model[0]._argmax is not None and model[0]._y.shape == (3, 4, 4, 5)  # the fused call
    assert model[2]._argmax is None  # MaxPool2D(2, stride=1): apart
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    dx = backprop(gy)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for mine, theirs in ((model[0], ref[0]), (model[2], ref[3])):
        np.testing.assert_allclose(mine.W.grad, theirs.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(mine.b.grad, theirs.bias.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_fused_network_passes_gradcheck(rng, each_backend):
    gradcheck(fused_net(), rng.standard_normal((2, 1, 9, 10)), max_checks=40)


def test_a_fused_pair_gives_the_unfused_layers_numbers(rng, each_backend):
    x = rng.standard_normal((6, 3, 12, 12)).astype(np.float32)
    conv, pool = nn.Conv2D(3, 8, 3, padding=1, activation="relu", rng=0), nn.MaxPool2D(2)
    y, backprop = nn.Sequential(conv, pool).begin_update(x)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    dx = backprop(gy)
    fused = [y, dx, conv.W.grad.copy(), conv.b.grad.copy()]
    conv.zero_grad()
    y1, back1 = conv.begin_update(x)  # the layers on their own: not fused
    y2, back2 = pool.begin_update(y1)
    dx2 = back1(back2(gy))
    for a, c in zip(fused, [y2, dx2, conv.W.grad, conv.b.grad]):
        close(a, c, 2e-5)
    with nn.no_grad():
        np.testing.assert_array_equal(nn.Sequential(conv, pool)(x), y)


def test_an_input_with_inf_is_not_fused_so_its_gradient_is_the_layers_own(rng, each_backend):
    x = rng.standard_normal((2, 1, 8, 8))
    x[0, 0, 0, 0] = np.inf  # never the maximum of its window after a negative weight
    conv = nn.Conv2D(1, 2, 3, activation="relu", dtype=np.float64, rng=0)
    model = nn.Sequential(conv, nn.MaxPool2D(2))
    y, backprop = model.begin_update(x)
    assert conv._argmax is None  # the two layers ran in turn
    backprop(np.ones_like(y))
    apart = nn.Conv2D(1, 2, 3, activation="relu", dtype=np.float64, rng=0)
    pool = nn.MaxPool2D(2)
    y1, b1 = apart.begin_update(x)
    y2, b2 = pool.begin_update(y1)
    b1(b2(np.ones_like(y2)))
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(conv.W.grad, apart.W.grad)  # NaN where 0 * inf made one


def test_a_fused_pair_used_twice_adds_both_calls_gradients_as_torch(rng, each_backend):
    conv, pool = nn.Conv2D(1, 1, 3, padding=1, activation="relu", dtype=np.float64, rng=0), nn.MaxPool2D(2)
    model = nn.Sequential(conv, pool, conv, pool)
    ref = torch.nn.Conv2d(1, 1, 3, padding=1).double()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(conv.W.data))
        ref.bias.copy_(torch.tensor(conv.b.data + 0.5))
    conv.b.data[...] += 0.5
    x = rng.standard_normal((2, 1, 8, 8))
    xt = torch.tensor(x, requires_grad=True)
    step = lambda t: torch.nn.functional.max_pool2d(torch.relu(ref(t)), 2)  # noqa: E731
    yt = step(step(xt))
    y, backprop = model.begin_update(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
    yt.sum().backward()
    np.testing.assert_allclose(backprop(np.ones_like(y)), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.W.grad, ref.weight.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_a_fused_call_refuses_a_backward_after_its_weights_changed(rng):
    model = fused_net()
    y, backprop = model.begin_update(rng.standard_normal((2, 1, 9, 10)))
    model[0].W.data = model[0].W.data * 2
    with pytest.raises(StaleForwardError, match=r"Conv2D\.backward: its parameter 'W' changed"):
        backprop(np.ones_like(y))


def test_only_a_relu_stride_one_convolution_fuses_with_a_two_by_two_pooling():
    pool = nn.MaxPool2D(2)
    assert nn.Conv2D(3, 8, 3, activation="relu").fuses_with(pool)
    assert nn.Conv2D(32, 64, (3, 2), padding=1, activation="relu").fuses_with(pool)
    assert nn.Conv2D(8, 16, 3, activation="relu").fuses_with(pool)  # too few channels for Winograd
    assert not nn.Conv2D(1, 8, 3, activation="tanh").fuses_with(pool)
    assert not nn.Conv2D(1, 8, 3).fuses_with(pool)
    assert not nn.Conv2D(1, 8, 3, stride=2, activation="relu").fuses_with(pool)
    assert not nn.Conv2D(1, 8, 3, activation="relu").fuses_with(nn.MaxPool2D(2, stride=1))
    assert not nn.Conv2D(1, 8, 3, activation="relu").fuses_with(nn.MaxPool2D(3))
    assert not nn.Conv2D(1, 8, 3, activation="relu").fuses_with(nn.AvgPool2D(2))


def test_a_convolution_the_winograd_kernels_take_runs_apart_from_its_pooling(rng):
    # 3 x 3, stride 1, 16+ input channels: Winograd and the pooling apart are faster than fused
    pool = nn.MaxPool2D(2)
    assert not nn.Conv2D(32, 64, 3, activation="relu").fuses_with(pool)
    assert not nn.Conv2D(16, 8, 3, padding=1, activation="relu").fuses_with(pool)
    model = nn.Sequential(nn.Conv2D(16, 4, 3, activation="relu", dtype=np.float64, rng=0), nn.MaxPool2D(2))
    x = rng.standard_normal((2, 16, 8, 8))
    y = model(x)
    assert model[0]._argmax is None  # apart: the pooling kept its own argmax
    np.testing.assert_allclose(y, nn.MaxPool2D(2)(model[0](x)), rtol=1e-12)


def test_a_too_small_input_is_refused_by_the_pooling_as_unfused(rng):
    model = nn.Sequential(nn.Conv2D(1, 2, 3, activation="relu", rng=0), nn.MaxPool2D(2))
    with pytest.raises(ValueError, match=r"layers 0-1: MaxPool2D.*kernel \(2, 2\) is larger than the input"):
        model(rng.standard_normal((1, 1, 3, 5)).astype(np.float32))


def test_the_fused_kernel_refuses_mismatched_outputs_naming_the_shape(rng):
    x, W = np.zeros((2, 1, 6, 6), np.float32), np.zeros((3, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"y and argmax must have shape \(2, 3, 2, 2\)"):
        conv_pool.conv_relu_pool_forward_numba(
            x, W, None, 0, 0, np.empty((2, 3, 4, 4), np.float32), np.empty((2, 3, 4, 4), np.int32)
        )


def test_a_convolution_subclass_with_its_own_forward_is_not_fused_so_its_forward_runs(rng):
    class Scaled(nn.Conv2D):  # a user's variant: its own forward, one argument
        def forward(self, x):
            return super().forward(x) * 2.0

    conv = Scaled(2, 2, 3, padding=1, activation="relu", dtype=np.float64, rng=0)
    assert not conv.fuses_with(nn.MaxPool2D(2))
    x = rng.standard_normal((3, 2, 6, 6))
    y = nn.Sequential(conv, nn.MaxPool2D(2))(x)
    plain = nn.Conv2D(2, 2, 3, padding=1, activation="relu", dtype=np.float64, rng=0)
    np.testing.assert_allclose(y, nn.MaxPool2D(2)(plain(x) * 2.0), rtol=1e-12)
