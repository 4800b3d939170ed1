"""BatchNorm, LayerNorm and Dropout: PyTorch parity (float64), running statistics saved with the
model, finite differences, dropout's masks, and the errors for bad input."""

import numpy as np
import pytest

from tinygrad_free import gradcheck, nn

F64 = np.float64
torch = pytest.importorskip("torch")


def assert_rel(got, want, tol=1e-6):
    """max |got - want| / max |want| < tol: the parity criterion."""
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300) < tol


def torch_batchnorm(bn, ndim):
    ref = (torch.nn.BatchNorm1d if ndim == 2 else torch.nn.BatchNorm2d)(
        bn.num_features, eps=bn.eps, momentum=bn.momentum, dtype=torch.float64
    )
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(bn.gamma.data))
        ref.bias.copy_(torch.tensor(bn.beta.data))
    return ref


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 7, 9), (1, 4, 3, 2)])
def test_batchnorm_matches_torch_in_training_running_stats_and_eval(shape, rng):
    c = shape[1]
    bn = nn.BatchNorm(c, momentum=0.3, dtype=F64)
    bn.gamma.data[...] = rng.uniform(0.5, 2.0, c)
    bn.beta.data[...] = rng.standard_normal(c)
    ref = torch_batchnorm(bn, len(shape))
    running_mean = bn.running_mean
    for step in range(4):
        x = rng.standard_normal(shape) * (step + 1) + step  # statistics that move
        xt = torch.tensor(x, requires_grad=True)
        yt = ref(xt)
        y = bn(x)
        assert_rel(y, yt)
        gy = rng.standard_normal(shape)
        ref.weight.grad = ref.bias.grad = None
        yt.backward(torch.tensor(gy))
        bn.zero_grad()
        assert_rel(bn.backward(gy), xt.grad)
        assert_rel(bn.gamma.grad, ref.weight.grad)
        assert_rel(bn.beta.grad, ref.bias.grad)
    assert bn.running_mean is running_mean  # updated in place, never re-bound
    assert_rel(bn.running_mean, ref.running_mean)
    assert_rel(bn.running_var, ref.running_var)  # unbiased variance, as torch
    x = rng.standard_normal(shape)
    assert_rel(bn.eval()(x), ref.eval()(torch.tensor(x)))


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5, 4)])
def test_batchnorm_passes_gradcheck(shape, rng, each_backend):
    bn = nn.BatchNorm(shape[1], dtype=F64)
    bn.gamma.data[...] = rng.uniform(0.5, 2.0, shape[1])
    bn.beta.data[...] = rng.standard_normal(shape[1])
    gradcheck(bn, rng.standard_normal(shape))


def test_batchnorm_running_stats_are_saved_and_loaded(tmp_path, rng):
    model = nn.Sequential(
        nn.Conv2D(2, 3, 3, padding=1, rng=0),
        nn.BatchNorm(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dense(3 * 5 * 4, 6, rng=1),
        nn.BatchNorm(6, momentum=0.5),
    )
    for _ in range(3):
        model(rng.standard_normal((4, 2, 5, 4)).astype(np.float32) + 1)
    state = model.state_dict()
    assert {"1.running_mean", "1.running_var", "5.running_mean", "5.running_var"} <= set(state)
    assert not np.all(state["1.running_mean"] == 0)
    model.save(tmp_path / "bn.npz")
    loaded = nn.load(tmp_path / "bn.npz")
    for key in ("1.running_mean", "1.running_var", "5.running_mean", "5.running_var"):
        np.testing.assert_array_equal(loaded.state_dict()[key], state[key])
    x = rng.standard_normal((3, 2, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.eval()(x), model.eval()(x))
    assert [n for n, _ in loaded.named_parameters()][2:4] == ["1.gamma", "1.beta"]


@pytest.mark.parametrize("shape", [(5, 6), (2, 3, 6), (1, 6)])
def test_layernorm_matches_torch_and_passes_gradcheck(shape, rng, each_backend):
    ln = nn.LayerNorm(6, eps=1e-4, dtype=F64)
    ln.gamma.data[...] = rng.uniform(0.5, 2.0, 6)
    ln.beta.data[...] = rng.standard_normal(6)
    ref = torch.nn.LayerNorm(6, eps=1e-4, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(ln.gamma.data))
        ref.bias.copy_(torch.tensor(ln.beta.data))
    x = rng.standard_normal(shape) * 3 + 1
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    assert_rel(ln(x), yt)
    gy = rng.standard_normal(shape)
    yt.backward(torch.tensor(gy))
    assert_rel(ln.backward(gy), xt.grad)
    assert_rel(ln.gamma.grad, ref.weight.grad)
    assert_rel(ln.beta.grad, ref.bias.grad)
    with nn.no_grad():
        np.testing.assert_array_equal(ln.eval()(x), ln.train()(x))  # no running statistics
    gradcheck(ln, x)


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm, (6, 3)), (nn.LayerNorm, (6, 3))])
def test_norm_layers_can_skip_the_input_gradient(cls, shape, rng):
    layer = cls(3, dtype=F64)
    x, gy = rng.standard_normal(shape), rng.standard_normal(shape)
    layer(x)
    layer.backward(gy)
    full = [p.grad.copy() for p in layer.parameters()]
    layer.zero_grad()
    layer(x)
    assert layer.backward(gy, input_grad=False) is None
    for p, g in zip(layer.parameters(), full):
        np.testing.assert_array_equal(p.grad, g)


def test_norm_parameters_are_not_decayed():
    for layer in (nn.BatchNorm(3), nn.LayerNorm(3)):
        assert [(n, p.decay) for n, p in layer.named_parameters()] == [("gamma", False), ("beta", False)]


# --- dropout ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_zeroes_about_p_and_scales_the_rest_and_backward_uses_the_same_mask(dtype, rng):
    x = rng.uniform(1, 2, (200, 50)).astype(dtype)
    layer = nn.Dropout(0.3, rng=0)
    y = layer(x)
    assert y.dtype == dtype
    kept = y != 0
    assert abs(1 - kept.mean() - 0.3) < 0.02
    np.testing.assert_allclose(y[kept], x[kept] / dtype(0.7), rtol=1e-6)
    gy = rng.standard_normal(x.shape).astype(dtype)
    np.testing.assert_allclose(layer.backward(gy), np.where(kept, gy / dtype(0.7), 0), rtol=1e-6)


def test_dropout_with_a_seed_is_reproducible_and_each_call_draws_a_new_mask(rng):
    x = rng.standard_normal((8, 16))
    a, b = nn.Dropout(0.5, rng=7), nn.Dropout(0.5, rng=7)
    first = a(x)
    np.testing.assert_array_equal(first, b(x))
    second = a(x)
    np.testing.assert_array_equal(second, b(x))
    assert not np.array_equal(first != 0, second != 0)


def test_dropout_is_the_identity_in_eval_mode_and_with_p_zero(rng):
    x = rng.standard_normal((4, 5))
    with nn.no_grad():
        assert nn.Dropout(0.9, rng=0).eval()(x) is x
    np.testing.assert_array_equal(nn.Dropout(0.9, rng=0).eval()(x), x)
    layer = nn.Dropout(0.0)
    np.testing.assert_array_equal(layer(x), x)
    gy = rng.standard_normal((4, 5))
    np.testing.assert_array_equal(layer.backward(gy), gy)


def test_dropout_passes_gradcheck_with_its_mask_held_fixed(rng):
    layer = nn.Dropout(0.4)
    x = rng.standard_normal((3, 4, 5))

    def fn(x):
        layer.rng = np.random.default_rng(3)  # the same mask at every evaluation
        return layer(x), layer.backward

    gradcheck(fn, x)


def test_dropout_round_trips_through_save_with_its_seed(tmp_path, rng):
    model = nn.Sequential(nn.Dense(4, 4, rng=0), nn.Dropout(0.25, rng=5))
    model.save(tmp_path / "d.npz")
    loaded = nn.load(tmp_path / "d.npz")
    assert repr(loaded) == repr(model)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), nn.Sequential(nn.Dense(4, 4, rng=0), nn.Dropout(0.25, rng=5))(x))


@pytest.mark.parametrize("p", [-0.1, 1, 1.5, "0.5", None, True])
def test_dropout_rejects_p_outside_zero_one(p):
    with pytest.raises(ValueError, match=r"Dropout: p must be a probability in \[0, 1\), got"):
        nn.Dropout(p)


def test_a_network_with_every_new_layer_learns_a_tiny_batch(rng, each_backend, losses_of_steps):
    x = rng.standard_normal((16, 1, 6, 6)).astype(np.float32)
    labels = (x[:, 0, :, :3].sum(axis=(1, 2)) > x[:, 0, :, 3:].sum(axis=(1, 2))).astype(np.intp)  # left vs right
    model = nn.Sequential(
        nn.Conv2D(1, 4, 3, padding=1, rng=0),
        nn.BatchNorm(4),
        nn.ReLU(),
        nn.AvgPool2D(2),
        nn.Dropout(0.1, rng=0),
        nn.Flatten(),
        nn.Dense(36, 8, rng=1),
        nn.LayerNorm(8),
        nn.Tanh(),
        nn.Dense(8, 2, rng=2),
    )
    losses = losses_of_steps(model, x, labels)
    assert losses[-1] < 0.5 * losses[0]


# --- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "x, match",
    [
        (
            np.ones((4, 3, 5)),
            r"BatchNorm\(3, eps=1e-05, momentum=0.1\): expected input of shape \(batch, 3\) or "
            r"\(batch, 3, height, width\), got \(4, 3, 5\)",
        ),
        (np.ones((4, 2)), r"expected input of shape \(batch, 3\) or .*got \(4, 2\)"),
        (np.ones((4, 3), np.float32), "expected float64 input .*got float32"),
        (np.ones((1, 3)), r"training needs more than one value per channel .*got input of shape \(1, 3\)"),
    ],
)
def test_batchnorm_rejects_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        nn.BatchNorm(3, dtype=F64)(x)


def test_layernorm_rejects_bad_input():
    with pytest.raises(
        ValueError,
        match=r"LayerNorm\(4, eps=1e-05\): expected input of shape \(\.\.\., 4\), "
        r"got \(2, 3\)",
    ):
        nn.LayerNorm(4)(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="expected float32 input .*got float64"):
        nn.LayerNorm(3)(np.ones((2, 3)))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: nn.BatchNorm(0), "BatchNorm: num_features must be a positive integer, got 0"),
        (lambda: nn.BatchNorm(3, eps=0), "BatchNorm: eps must be a positive number, got 0"),
        (lambda: nn.BatchNorm(3, momentum=1.5), r"BatchNorm: momentum must be in \[0, 1\], got 1.5"),
        (lambda: nn.BatchNorm(3, dtype=np.int64), "BatchNorm: dtype must be a float type"),
        (lambda: nn.LayerNorm(-2), "LayerNorm: num_features must be a positive integer, got -2"),
        (lambda: nn.LayerNorm(3, eps=-1.0), "LayerNorm: eps must be a positive number"),
    ],
)
def test_norm_layers_reject_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_dropout_rejects_non_float_input_and_wrong_gradient_shape():
    with pytest.raises(ValueError, match=r"Dropout\(p=0.5\): expected a float32 or float64 array, got int64"):
        nn.Dropout()(np.ones((2, 2), np.int64))
    layer = nn.Dropout(0.5, rng=0)
    layer(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Dropout.backward: expected a gradient of shape \(2, 3\).*got \(3, 2\)"):
        layer.backward(np.ones((3, 2)))


def test_batchnorm_inference_leaves_its_input_alone_and_computes_the_documented_formula_exactly(rng):
    bn = nn.BatchNorm(3, dtype=np.float32)
    bn.running_mean[:] = rng.standard_normal(3)
    bn.running_var[:] = rng.random(3) + 0.5
    bn.gamma.data[:] = rng.standard_normal(3)
    bn.beta.data[:] = rng.standard_normal(3)
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    before = x.copy()
    bn.eval()
    with nn.no_grad():
        y = bn(x)
    np.testing.assert_array_equal(x, before)
    shape = (1, 3, 1, 1)
    invstd = 1 / np.sqrt(bn.running_var + np.float32(bn.eps))
    want = (x - bn.running_mean.reshape(shape)) * (invstd.reshape(shape) * bn.gamma.data.reshape(shape))
    np.testing.assert_array_equal(y, want + bn.beta.data.reshape(shape))
