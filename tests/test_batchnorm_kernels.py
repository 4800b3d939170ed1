"""The BatchNorm kernels (NCHW, training): the numba twins against the NumPy ones, which are the
layer's former array expressions, and the layer against PyTorch."""

import numpy as np
import pytest

from tinygrad_free import kernels, nn
from tinygrad_free.kernels import batchnorm


@pytest.fixture(scope="module", autouse=True)
def compiled():
    return kernels.warmup(files=("batchnorm",))


def run(ns, x, gamma, beta, gy, with_dx):
    xhat, y = np.full(x.shape, np.nan, x.dtype), np.full(x.shape, np.nan, x.dtype)
    stats = ns.batchnorm_forward(x, gamma, beta, 1e-5, xhat, y)
    dgamma, dbeta = np.ones_like(gamma), np.ones_like(gamma)
    dx = np.full(x.shape, np.nan, x.dtype) if with_dx else None
    assert ns.batchnorm_backward(gy, xhat, gamma, stats[2], dgamma, dbeta, dx) is dx
    return (*stats, xhat, y, dgamma, dbeta, dx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_dx", [True, False])
def test_batchnorm_numba_matches_numpy_forward_and_backward(rng, dtype, with_dx):
    x = (3 + 2 * rng.standard_normal((5, 4, 7, 6))).astype(dtype)
    gamma, beta = rng.standard_normal(4).astype(dtype), rng.standard_normal(4).astype(dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    got = run(kernels.NUMBA, x, gamma, beta, gy, with_dx)
    want = run(kernels.NUMPY, x, gamma, beta, gy, with_dx)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for g, e in zip(got, want):
        if e is None:
            assert g is None
        else:
            assert g.dtype == e.dtype
            np.testing.assert_allclose(g, e, **tol)


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
