"""BatchNorm (training), its ReLU and a 2 x 2 max pooling as one kernel (kernels.batchnorm_pool),
and nn.Sequential running BatchNorm -> ReLU -> MaxPool2D(2) through it: the numba kernel against
the three layers' kernels (to the bit forward) and its NumPy twin, across thread counts, with NaN
and overflow; the fused layers against themselves unfused; what is not fused. (A network with the
block against PyTorch, the block used twice, its gradcheck and a stale gamma:
tests/test_batchnorm_kernels.py, whose bn_relu_net ends in the block.)"""

import numpy as np
import pytest

from tinygrad_free import kernels, nn
from tinygrad_free.kernels import batchnorm, batchnorm_pool, pool


@pytest.fixture(scope="module", autouse=True)
def compiled():
    return kernels.warmup(files=("batchnorm", "batchnorm_pool", "pool"))


def pooled(shape):
    return (shape[0], shape[1], shape[2] // 2, shape[3] // 2)


def run_fused(impl, x, gamma, beta, gy, with_dx):
    xhat, y = np.full(x.shape, np.nan, x.dtype), np.full(pooled(x.shape), np.nan, x.dtype)
    argmax, xhat_at = np.full(y.shape, -1, np.int32), np.full(y.shape, np.nan, x.dtype)
    forward = getattr(batchnorm_pool, f"batchnorm_relu_pool_forward_{impl}")
    stats = forward(x, gamma, beta, 1e-5, xhat, y, argmax, xhat_at)
    n, c = x.shape[:2]
    at = np.take_along_axis(xhat.reshape(n, c, -1), argmax.reshape(n, c, -1), 2)
    np.testing.assert_array_equal(xhat_at.reshape(n, c, -1), at)  # xhat at each argmax
    dgamma, dbeta = np.ones_like(gamma), np.ones_like(gamma)
    dx = np.full(x.shape, np.nan, x.dtype) if with_dx else None
    back = getattr(batchnorm_pool, f"batchnorm_relu_pool_backward_{impl}")
    assert back(gy, xhat, y, argmax, xhat_at, gamma, stats[2], dgamma, dbeta, dx) is dx
    return (*stats, xhat, y, argmax, dgamma, dbeta, dx)


def run_apart(x, gamma, beta, gy, with_dx):
    """The three layers' numba kernels in turn, as the unfused layers call them."""
    xhat, full = np.empty_like(x), np.empty_like(x)
    stats = batchnorm.batchnorm_forward_numba(x, gamma, beta, 1e-5, xhat, full, True)
    y, argmax = np.empty(pooled(x.shape), x.dtype), np.empty(pooled(x.shape), np.int32)
    pool.maxpool2d_forward_numba(full, 2, 2, 2, 2, y, argmax)
    g_full = pool.maxpool2d_backward_numba(gy, argmax, np.empty_like(x))
    dgamma, dbeta = np.ones_like(gamma), np.ones_like(gamma)
    dx = np.empty_like(x) if with_dx else None
    batchnorm.batchnorm_backward_numba(g_full, xhat, gamma, stats[2], dgamma, dbeta, dx, full)
    return (*stats, xhat, y, argmax, dgamma, dbeta, dx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_dx", [True, False])
@pytest.mark.parametrize("shape", [(5, 4, 7, 6), (3, 2, 5, 5), (16, 6, 28, 28), (2, 3, 2, 3)])
def test_fused_kernel_gives_the_three_layers_numbers_and_the_same_bits_on_any_thread_count(rng, dtype, with_dx, shape):
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)
    gamma, beta = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    gy = rng.standard_normal(pooled(shape)).astype(dtype)
    runs = []
    for threads in (1, 2):
        with kernels.parallel.num_threads(threads):
            runs.append(run_fused("numba", x, gamma, beta, gy, with_dx))
    for a, c in zip(*runs):
        assert (a is None and c is None) or np.array_equal(a, c)
    apart = run_apart(x, gamma, beta, gy, with_dx)
    for a, c in zip(runs[0][:6], apart[:6]):  # statistics, xhat, y, argmax: the same operations
        np.testing.assert_array_equal(a, c)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, c in zip(runs[0][6:], apart[6:]):  # the gradients: sums in another order
        assert (a is None) == (c is None)
        if a is not None:
            np.testing.assert_allclose(a, c, **tol)
    for a, c in zip(runs[0], run_fused("numpy", x, gamma, beta, gy, with_dx)):
        assert (a is None) == (c is None)
        if a is not None:
            assert a.dtype == c.dtype
            np.testing.assert_allclose(a, c, **tol)
    assert (runs[0][4] >= 0).all() and (runs[0][4] == 0).any()  # the ReLU did cut


def test_fused_kernel_keeps_the_poolings_rules_for_ties_and_nan_and_the_relus_for_an_inf_gradient(rng):
    x = rng.standard_normal((3, 3, 6, 5))
    x[:, 0] = 1.5  # a constant channel: xhat 0, every window a tie, the first place wins
    x[1, 1, 2, 3] = np.nan  # channel 1 all NaN: the first NaN of each window wins
    gamma, beta = np.array([1.0, 1.0, -2.0]), np.array([0.5, 0.0, 0.1])
    gy = rng.standard_normal(pooled(x.shape))
    gy[0, 2, 1, 1] = np.inf  # where y may be 0: gy * 0 is NaN, as the ReLU layer gives
    fused, apart = run_fused("numba", x, gamma, beta, gy, True), run_apart(x, gamma, beta, gy, True)
    for a, c in zip(fused[3:6], apart[3:6]):
        np.testing.assert_array_equal(a, c)  # NaN in the same places
    q, p = np.meshgrid(np.arange(3), np.arange(2), indexing="ij")
    np.testing.assert_array_equal(fused[5][:, 0], np.broadcast_to(2 * q * 5 + 2 * p, (3, 3, 2)))
    assert np.isnan(fused[4][:, 1]).all()
    for a, c in zip(fused[6:], apart[6:]):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(c))
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("with_dx", [True, False])
def test_a_nan_normalised_value_outside_every_window_gives_the_unfused_nan_gradient(with_dx):
    """An odd plane's last row is in no window, so its gradient is 0; but 0 * NaN is NaN in the
    unfused layers' sum of dy xhat, and the fused kernel must say the same."""
    x = np.full((2, 1, 5, 4), -3e38, np.float32)
    x[1, 0, 4, 1] = 3e38  # x - mean overflows float32 there; the variance is inf, invstd 0: xhat NaN
    gamma, beta = np.ones(1, np.float32), np.full(1, 0.5, np.float32)
    gy = np.ones(pooled(x.shape), np.float32)
    fused, apart = run_fused("numba", x, gamma, beta, gy, with_dx), run_apart(x, gamma, beta, gy, with_dx)
    np.testing.assert_array_equal(np.argwhere(~np.isfinite(fused[3])), [[1, 0, 4, 1]])  # xhat NaN there only
    assert np.isfinite(fused[4]).all()  # the NaN is in no window
    assert np.isnan(apart[6]).all() and np.isnan(fused[6]).all()  # dgamma
    for a, c in zip(fused[6:], apart[6:]):
        if a is not None:
            np.testing.assert_array_equal(a, c)


def test_the_fused_kernel_refuses_wrong_shapes_naming_them():
    x, g = np.zeros((2, 3, 6, 6), np.float32), np.ones(3, np.float32)
    y, am = np.empty((2, 3, 6, 6), np.float32), np.empty((2, 3, 6, 6), np.int32)
    with pytest.raises(ValueError, match=r"y, argmax and xhat_at must have shape \(2, 3, 3, 3\)"):
        batchnorm_pool.batchnorm_relu_pool_forward_numba(x, g, g, 1e-5, np.empty_like(x), y, am, y)
    y, am = np.empty((2, 3, 0, 3)), np.empty((2, 3, 0, 3), np.int32)
    with pytest.raises(ValueError, match=r"x must be \(N, C, H, W\) with H, W >= 2"):
        batchnorm_pool.batchnorm_relu_pool_forward_numba(x[:, :, :1], g, g, 1e-5, np.empty((2, 3, 1, 6)), y, am, y)


class Block(nn.Module):
    """A user's module that calls a BatchNorm with its ReLU and pooling, as nn.Sequential does."""

    def __init__(self, bn, relu, pool):
        super().__init__()
        self.bn, self.relu, self.pool = bn, relu, pool

    def forward(self, x):
        return self.bn(x, self.relu, self.pool)

    def backward(self, grad_out):
        return self.bn.backward(grad_out)


def test_a_fused_block_gives_the_three_layers_numbers(rng, each_backend):
    x = rng.standard_normal((8, 5, 9, 10)).astype(np.float32)
    bn, relu, mp = nn.BatchNorm(5), nn.ReLU(), nn.MaxPool2D(2)
    bn.beta.data[...] = rng.standard_normal(5).astype(np.float32)
    y, backprop = nn.Sequential(bn, relu, mp).begin_update(x)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    dx = backprop(gy)
    fused = [dx, bn.gamma.grad.copy(), bn.beta.grad.copy(), bn.running_var.copy()]
    bn.zero_grad()
    bn.running_var[...] = 1
    y1, back1 = bn.begin_update(x)  # the layers on their own: not fused
    y2, back2 = relu.begin_update(y1)
    y3, back3 = mp.begin_update(y2)
    np.testing.assert_array_equal(y, y3)
    for a, c in zip(fused, [back1(back2(back3(gy))), bn.gamma.grad, bn.beta.grad, bn.running_var]):
        np.testing.assert_allclose(a, c, rtol=2e-5, atol=2e-5)  # sums of another order


def test_only_a_relu_then_a_two_by_two_pooling_joins_a_batchnorm_and_only_in_training():
    bn, relu = nn.BatchNorm(3), nn.ReLU()
    assert bn.fused_count([relu, nn.MaxPool2D(2)]) == 2
    bn.eval()
    assert bn.fused_count([relu, nn.MaxPool2D(2)]) == 1
    bn.train()
    assert bn.fused_count([relu, nn.MaxPool2D((2, 2), stride=2), nn.Flatten()]) == 2
    assert bn.fused_count([relu, nn.MaxPool2D(2, stride=1)]) == 1
    assert bn.fused_count([relu, nn.MaxPool2D(3)]) == 1
    assert bn.fused_count([relu, nn.AvgPool2D(2)]) == 1
    assert bn.fused_count([relu]) == 1
    assert bn.fused_count([nn.MaxPool2D(2), relu]) == 0 and bn.fused_count([]) == 0


@pytest.mark.parametrize("case", ["eval mode", "eval mode under no_grad", "called with the pooling in eval mode"])
def test_a_block_not_fused_runs_the_relu_and_pooling_as_their_own_calls_with_torchs_numbers(rng, case, each_backend):
    torch = pytest.importorskip("torch")
    bn = nn.BatchNorm(3, dtype=np.float64)
    bn.beta.data[...] = [0.2, -0.1, 0.0]
    bn.running_mean[...], bn.running_var[...] = [0.1, -0.2, 0.3], [0.5, 2.0, 1.0]
    relu, mp = nn.ReLU(), nn.MaxPool2D(2)
    model = nn.Sequential(bn, relu, mp)
    model.eval()
    if case == "called with the pooling in eval mode":  # as a Sequential would in training
        model = nn.Sequential(Block(bn, relu, mp))
    ref = torch.nn.BatchNorm2d(3).double().eval()
    with torch.no_grad():
        ref.bias.copy_(torch.tensor(bn.beta.data))
        ref.running_mean.copy_(torch.tensor(bn.running_mean))
        ref.running_var.copy_(torch.tensor(bn.running_var))
    x = rng.standard_normal((4, 3, 6, 7))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(torch.relu(ref(xt)), 2)
    if case == "eval mode under no_grad":
        with nn.no_grad():
            np.testing.assert_allclose(model(x), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        return
    y, backprop = model.begin_update(x)
    assert bn._pooled is None and bn._relu_ctx is not None
    assert (bn._pool_ctx is not None) == (case == "called with the pooling in eval mode")
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(backprop(gy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.gamma.grad, ref.weight.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_a_too_small_plane_is_refused_by_the_pooling_naming_the_fused_layers(rng):
    model = nn.Sequential(nn.BatchNorm(2), nn.ReLU(), nn.MaxPool2D(2))
    with pytest.raises(ValueError, match=r"layers 0-2: MaxPool2D.*kernel \(2, 2\) is larger than the input"):
        model(rng.standard_normal((3, 2, 1, 5)).astype(np.float32))


def test_a_batchnorm_subclass_with_its_own_forward_is_not_fused_so_its_forward_runs(rng):
    class Shifted(nn.BatchNorm):  # a user's variant: its own forward, one argument
        def forward(self, x):
            return super().forward(x) + 1.0

    x = rng.standard_normal((3, 2, 6, 6))
    y = nn.Sequential(Shifted(2, dtype=np.float64), nn.ReLU(), nn.MaxPool2D(2))(x)
    plain = nn.BatchNorm(2, dtype=np.float64)
    np.testing.assert_allclose(y, nn.MaxPool2D(2)(np.maximum(plain(x) + 1.0, 0)), rtol=1e-12)
