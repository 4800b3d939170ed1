"""The BatchNorm kernels (NCHW, training), alone and with the ReLU after them: the numba twins
against the NumPy ones (the layer's former array expressions) and across thread counts, the layer
and the fused BatchNorm -> ReLU (-> MaxPool2D(2), tests/test_batchnorm_pool.py) of nn.Sequential
against PyTorch, and the cases not fused."""

import numpy as np
import pytest

from tinygrad_free import gradcheck, kernels, nn
from tinygrad_free.kernels import batchnorm
from tinygrad_free.nn.context import StaleForwardError


@pytest.fixture(scope="module", autouse=True)
def compiled():
    return kernels.warmup(files=("batchnorm",))


def run(ns, x, gamma, beta, gy, with_dx, relu=False):
    xhat, y = np.full(x.shape, np.nan, x.dtype), np.full(x.shape, np.nan, x.dtype)
    stats = ns.batchnorm_forward(x, gamma, beta, 1e-5, xhat, y, relu)
    dgamma, dbeta = np.ones_like(gamma), np.ones_like(gamma)
    dx = np.full(x.shape, np.nan, x.dtype) if with_dx else None
    assert ns.batchnorm_backward(gy, xhat, gamma, stats[2], dgamma, dbeta, dx, y if relu else None) is dx
    return (*stats, xhat, y, dgamma, dbeta, dx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_dx", [True, False])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape", [(5, 4, 7, 6), (16, 6, 32, 32)])  # the second: enough for two threads
def test_batchnorm_numba_matches_numpy_and_gives_the_same_bits_on_any_thread_count(rng, dtype, with_dx, relu, shape):
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)
    gamma, beta = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    runs = []
    for threads in (1, 2):
        with kernels.parallel.num_threads(threads):
            runs.append(run(kernels.NUMBA, x, gamma, beta, gy, with_dx, relu))
    for a, c in zip(*runs):
        assert (a is None and c is None) or np.array_equal(a, c)
    want = run(kernels.NUMPY, x, gamma, beta, gy, with_dx, relu)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for g, e in zip(runs[0], want):
        if e is None:
            assert g is None
        else:
            assert g.dtype == e.dtype
            np.testing.assert_allclose(g, e, **tol)
    if relu:
        assert (runs[0][4] >= 0).all() and (runs[0][4] == 0).any()


def test_the_fused_relu_keeps_nan_and_the_relu_layers_gradient_rule(rng, each_backend):
    """NaN out of the normalisation stays NaN through the ReLU; an inf gradient where y <= 0
    gives NaN (gy * 0), as the ReLU layer's kernel and PyTorch's threshold_backward do."""
    from tinygrad_free import backend

    x = rng.standard_normal((3, 2, 4, 4))
    x[0, 1, 0, 0] = np.nan  # the whole of channel 1 becomes NaN
    gamma, beta = np.ones(2), np.zeros(2)
    xhat, y = np.empty(x.shape), np.empty(x.shape)
    ops = backend.ops()
    ops.batchnorm_forward(x, gamma, beta, 1e-5, xhat, y, True)
    assert np.isnan(y[:, 1]).all() and (y[:, 0] >= 0).all()
    gy = np.ones(x.shape)
    zero = np.argwhere(y[:, 0] == 0)[0]
    gy[zero[0], 0, zero[1], zero[2]] = np.inf
    dgamma, dbeta = np.zeros(2), np.zeros(2)
    dx = ops.batchnorm_backward(gy, xhat, gamma, np.ones(2), dgamma, dbeta, np.empty(x.shape), y)
    assert np.isnan(dbeta[0]) and np.isnan(dx[:, 0]).all()


def test_batchnorm_numba_takes_a_strided_input_and_refuses_a_strided_output(rng):
    x = rng.standard_normal((3, 2, 5, 8))[..., ::2]  # every other column: not contiguous
    gamma, beta = np.ones(2), np.zeros(2)
    want = batchnorm.batchnorm_forward_numpy(x, gamma, beta, 1e-5, np.empty(x.shape), np.empty(x.shape))
    got = batchnorm.batchnorm_forward_numba(x, gamma, beta, 1e-5, np.empty(x.shape), np.empty(x.shape))
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-12)
    with pytest.raises(ValueError, match="must be C-contiguous"):
        batchnorm.batchnorm_forward_numba(x, gamma, beta, 1e-5, np.empty((3, 2, 5, 8))[..., ::2], np.empty(x.shape))
    with pytest.raises(ValueError, match=r"x must be \(N, C, H, W\) with gamma and beta of shape \(C,\)"):
        batchnorm.batchnorm_forward_numba(x, np.ones(3), beta, 1e-5, np.empty(x.shape), np.empty(x.shape))


def test_batchnorm_layer_on_images_matches_torch_in_training(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, 3, 5, 5))
    gy = rng.standard_normal(x.shape)
    layer = nn.BatchNorm(3, dtype=np.float64)
    layer.gamma.data[...] = [0.5, 1.5, -1.0]
    y, backprop = layer.begin_update(x)
    dx = backprop(gy)
    ref = torch.nn.BatchNorm2d(3, dtype=torch.float64)
    with torch.no_grad():
        ref.weight[...] = torch.tensor([0.5, 1.5, -1.0])
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx)
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.gamma.grad, ref.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.beta.grad, ref.bias.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.running_mean, ref.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, ref.running_var.numpy(), rtol=1e-12)


def bn_relu_net(dtype=np.float64, rng=0, pool="max"):
    """Conv -> BatchNorm -> ReLU -> a 2 x 2 pooling: with "max" the three run as one kernel in
    training (kernels.batchnorm_pool), with "avg" the BatchNorm and ReLU (kernels.batchnorm)."""
    return nn.Sequential(
        nn.Conv2D(2, 3, 3, padding=1, dtype=dtype, rng=rng),
        nn.BatchNorm(3, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2D(2) if pool == "max" else nn.AvgPool2D(2),
        nn.Flatten(),
        nn.Dense(3 * 3 * 3, 4, dtype=dtype, rng=rng + 1),
    )


def torch_twin(model):
    torch = pytest.importorskip("torch")
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1),
        torch.nn.BatchNorm2d(3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2) if isinstance(model[3], nn.MaxPool2D) else torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(27, 4),
    ).double()
    with torch.no_grad():
        ref[0].weight.copy_(torch.tensor(model[0].W.data))
        ref[0].bias.copy_(torch.tensor(model[0].b.data))
        ref[1].weight.copy_(torch.tensor(model[1].gamma.data))
        ref[1].bias.copy_(torch.tensor(model[1].beta.data))
        ref[5].weight.copy_(torch.tensor(model[5].W.data.T))
        ref[5].bias.copy_(torch.tensor(model[5].b.data))
    return ref


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_sequential_fuses_batchnorm_and_relu_and_a_max_pooling_and_matches_torch(rng, pool, each_backend):
    torch = pytest.importorskip("torch")
    model = bn_relu_net(pool=pool)
    model[1].gamma.data[...] = [0.5, -1.5, 2.0]
    model[1].beta.data[...] = [0.1, 0.3, -0.2]
    assert model[1].fuses_with(model[2]) and not model[0].fuses_with(model[1])
    ref = torch_twin(model)
    x = rng.standard_normal((4, 2, 7, 6))
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    y, backprop = model.begin_update(x)
    assert model[1]._y is not None and (model[1]._y >= 0).all()  # the fused call kept its output
    assert model[1]._y.shape == ((4, 3, 3, 3) if pool == "max" else (4, 3, 7, 6))  # pooled in it, or not
    assert (model[1]._pooled is not None) == (pool == "max")
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(backprop(gy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model[0].W.grad, ref[0].weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model[1].gamma.grad, ref[1].weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model[1].beta.grad, ref[1].bias.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model[1].running_var, ref[1].running_var.numpy(), rtol=1e-12)


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_fused_batchnorm_relu_network_passes_gradcheck(rng, pool, each_backend):
    gradcheck(bn_relu_net(pool=pool), rng.standard_normal((3, 2, 7, 6)), max_checks=40)


def test_a_fused_batchnorm_relu_gives_the_two_layers_numbers(rng, each_backend):
    x = rng.standard_normal((8, 5, 9, 9)).astype(np.float32)
    bn, relu = nn.BatchNorm(5), nn.ReLU()
    bn.beta.data[...] = rng.standard_normal(5).astype(np.float32)
    y, backprop = nn.Sequential(bn, relu).begin_update(x)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    dx = backprop(gy)
    fused = [y, dx, bn.gamma.grad.copy(), bn.beta.grad.copy(), bn.running_mean.copy()]
    bn.zero_grad()
    bn.running_mean[...] = 0
    y1, back1 = bn.begin_update(x)  # the layers on their own: not fused
    y2, back2 = relu.begin_update(y1)
    dx2 = back1(back2(gy))
    np.testing.assert_array_equal(y, y2)  # the same operations on each value
    for a, c in zip(fused[1:], [dx2, bn.gamma.grad, bn.beta.grad, bn.running_mean]):
        np.testing.assert_allclose(a, c, rtol=2e-5, atol=2e-5)  # sums of another order
    with nn.no_grad():
        bn.running_mean[...] = 0
        np.testing.assert_array_equal(nn.Sequential(bn, relu)(x), y)


@pytest.mark.parametrize("case", ["eval mode", "rows (N, C)"])
def test_batchnorm_relu_not_fusable_runs_the_relu_as_its_own_call_with_torchs_numbers(rng, case, each_backend):
    torch = pytest.importorskip("torch")
    bn, relu = nn.BatchNorm(3, dtype=np.float64), nn.ReLU()
    bn.beta.data[...] = [0.2, -0.1, 0.0]
    bn.running_mean[...], bn.running_var[...] = [0.1, -0.2, 0.3], [0.5, 2.0, 1.0]
    model = nn.Sequential(bn, relu)
    ref = (torch.nn.BatchNorm2d if case == "eval mode" else torch.nn.BatchNorm1d)(3).double()
    with torch.no_grad():
        ref.bias.copy_(torch.tensor(bn.beta.data))
        ref.running_mean.copy_(torch.tensor(bn.running_mean))
        ref.running_var.copy_(torch.tensor(bn.running_var))
    x = rng.standard_normal((4, 3, 5, 5) if case == "eval mode" else (6, 3))
    if case == "eval mode":
        bn.eval()
        ref.eval()
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.relu(ref(xt))
    y, backprop = model.begin_update(x)
    assert bn._relu_ctx is not None and bn._y is None  # the ReLU's own call, inside the BatchNorm's
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(backprop(gy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.gamma.grad, ref.weight.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("pool", [False, True])  # with a MaxPool2D(2): the three fused (batchnorm_pool)
def test_a_fused_batchnorm_relu_used_twice_adds_both_calls_gradients_as_torch(rng, pool, each_backend):
    torch = pytest.importorskip("torch")
    bn, relu, mp = nn.BatchNorm(2, dtype=np.float64), nn.ReLU(), nn.MaxPool2D(2)
    bn.beta.data[...] = [0.3, -0.4]
    model = nn.Sequential(*([bn, relu, mp] if pool else [bn, relu]) * 2)
    ref = torch.nn.BatchNorm2d(2).double()
    with torch.no_grad():
        ref.bias.copy_(torch.tensor(bn.beta.data))
    x = rng.standard_normal((3, 2, 8, 9) if pool else (3, 2, 4, 5))
    xt = torch.tensor(x, requires_grad=True)
    pooled = torch.nn.functional.max_pool2d if pool else (lambda t, k: t)
    step = lambda t: pooled(torch.relu(ref(t)), 2)  # noqa: E731
    yt = step(step(xt))
    y, backprop = model.begin_update(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(backprop(gy), xt.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(bn.gamma.grad, ref.weight.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(bn.beta.grad, ref.bias.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(bn.running_mean, ref.running_mean.numpy(), rtol=1e-12)


def test_a_fused_batchnorm_relu_refuses_a_backward_after_gamma_changed(rng):
    model = bn_relu_net()
    y, backprop = model.begin_update(rng.standard_normal((2, 2, 6, 6)))
    model[1].gamma.data = model[1].gamma.data * 2
    with pytest.raises(StaleForwardError, match=r"BatchNorm\.backward: its parameter 'gamma' changed"):
        backprop(np.ones_like(y))


def test_only_a_relu_layer_fuses_with_batchnorm():
    bn = nn.BatchNorm(3)
    assert bn.fuses_with(nn.ReLU())
    assert not bn.fuses_with(nn.Tanh()) and not bn.fuses_with(nn.GELU()) and not bn.fuses_with(nn.MaxPool2D(2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [False, True])
def test_batchnorm_inference_kernel_gives_numpys_bits_on_any_thread_count(rng, dtype, relu):
    x = rng.standard_normal((16, 6, 32, 32)).astype(dtype)
    mean, beta = rng.standard_normal(6).astype(dtype), rng.standard_normal(6).astype(dtype)
    scale = (rng.standard_normal(6) / np.sqrt(rng.random(6) + 1e-5)).astype(dtype)
    want = batchnorm.batchnorm_eval_numpy(x, mean, scale, beta, np.empty_like(x), relu)
    for threads in (1, 2):
        with kernels.parallel.num_threads(threads):
            got = batchnorm.batchnorm_eval_numba(x, mean, scale, beta, np.empty_like(x), relu)
        np.testing.assert_array_equal(got, want)


def test_inference_under_no_grad_gives_the_recording_paths_bits_and_torchs_numbers(rng, each_backend):
    torch = pytest.importorskip("torch")
    model = bn_relu_net(np.float32)
    model.begin_update(rng.standard_normal((8, 2, 6, 6)).astype(np.float32))  # running statistics move
    model.eval()
    x = rng.standard_normal((5, 2, 6, 6)).astype(np.float32)
    with nn.no_grad():
        fast = model(x)
    y, _ = model.begin_update(x)  # eval mode recording: the array expressions, the ReLU's own call
    assert model[1]._relu_ctx is not None
    np.testing.assert_array_equal(fast, y)
    ref = torch_twin(model).float().eval()
    with torch.no_grad():
        ref[1].running_mean.copy_(torch.tensor(model[1].running_mean))
        ref[1].running_var.copy_(torch.tensor(model[1].running_var))
        np.testing.assert_allclose(fast, ref(torch.tensor(x)).numpy(), rtol=1e-5, atol=1e-5)


def test_a_subclass_that_replaces_forward_or_backward_is_never_fused_so_its_own_pass_runs(rng):
    class Shifted(nn.BatchNorm):  # a user's variant: its own forward, one argument
        def forward(self, x):
            return super().forward(x) + 1.0

    class Halved(nn.BatchNorm):  # its own backward, which knows nothing of a ReLU
        def backward(self, grad_out, input_grad=True):
            return super().backward(grad_out * 0.5, input_grad)

    x = rng.standard_normal((3, 2, 6, 6))
    for cls, shift, scale in ((Shifted, 1.0, 1.0), (Halved, 0.0, 0.5)):
        bn, relu = cls(2, dtype=np.float64), nn.ReLU()
        assert not bn.fuses_with(relu)
        y, backprop = nn.Sequential(bn, relu).begin_update(x)
        ref, ref_back = nn.BatchNorm(2, dtype=np.float64).begin_update(x)
        np.testing.assert_allclose(y, np.maximum(ref + shift, 0), rtol=1e-12, atol=1e-12)
        gy = rng.standard_normal(y.shape)
        want = ref_back(gy * (y > 0) * scale)
        np.testing.assert_allclose(backprop(gy), want, rtol=1e-10, atol=1e-12)
