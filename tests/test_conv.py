"""Conv2D, the pooling layers and Flatten: PyTorch parity (float64), finite differences on both
backends, whole-CNN gradients, save/load, training, and the errors for bad input."""

import numpy as np
import pytest

from tinygrad_free import gradcheck, nn

F64 = np.float64
torch = pytest.importorskip("torch")
TORCH_ACT = {None: lambda z: z, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


def assert_rel(got, want, tol=1e-6):
    """max |got - want| / max |want| < tol: the parity criterion."""
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    assert got.shape == want.shape
    scale = max(np.max(np.abs(want)), 1e-300)
    assert np.max(np.abs(got - want)) / scale < tol, (np.max(np.abs(got - want)), scale)


def away_from_kink(x):
    return np.where(np.abs(x) < 1e-3, 0.1, x)


# (in, out, kernel, stride, padding, input H, W, batch): odd images, batch 1, stride 2 + padding 1,
# non-square kernels, strides and paddings, a kernel as large as the padded input.
CONVS = [
    (3, 4, 3, 2, 1, 7, 9, 2),
    (1, 2, (2, 3), 1, 0, 7, 9, 1),
    (2, 3, (3, 1), (2, 1), (0, 1), 7, 9, 3),
    (2, 2, (4, 5), 1, (1, 2), 2, 1, 2),
    (4, 3, 1, 3, 0, 5, 5, 2),
]


@pytest.mark.parametrize("cfg", CONVS)
@pytest.mark.parametrize("activation", [None, "sigmoid", "tanh", "relu"])
def test_conv2d_matches_torch_forward_and_all_gradients(cfg, activation, rng, each_backend):
    cin, cout, k, s, p, h, w, n = cfg
    layer = nn.Conv2D(cin, cout, k, stride=s, padding=p, activation=activation, dtype=F64, rng=0)
    layer.b.data[...] = rng.standard_normal(cout)
    x = rng.standard_normal((n, cin, h, w))
    ref = torch.nn.Conv2d(cin, cout, k, stride=s, padding=p, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(layer.W.data))
        ref.bias.copy_(torch.tensor(layer.b.data))
    xt = torch.tensor(x, requires_grad=True)
    yt = TORCH_ACT[activation](ref(xt))
    y = layer(x)
    assert_rel(y, yt)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    layer.zero_grad()
    dx = layer.backward(gy)
    assert_rel(dx, xt.grad)
    assert_rel(layer.W.grad, ref.weight.grad)
    assert_rel(layer.b.grad, ref.bias.grad)


@pytest.mark.parametrize("cfg", CONVS[:3])
def test_conv2d_passes_gradcheck(cfg, rng, each_backend):
    cin, cout, k, s, p, h, w, n = cfg
    gradcheck(
        nn.Conv2D(cin, cout, k, stride=s, padding=p, activation="tanh", dtype=F64, rng=0),
        rng.standard_normal((n, cin, h, w)),
        max_checks=80,
    )
    layer = nn.Conv2D(cin, cout, k, stride=s, padding=p, activation="relu", bias=False, dtype=F64, rng=1)
    assert [name for name, _ in layer.named_parameters()] == ["W"]
    gradcheck(layer, away_from_kink(rng.standard_normal((n, cin, h, w))), max_checks=80)


@pytest.mark.parametrize(
    "cls, kwargs, torch_fn",
    [
        (nn.MaxPool2D, dict(kernel_size=2), lambda x: torch.nn.functional.max_pool2d(x, 2)),
        (
            nn.MaxPool2D,
            dict(kernel_size=(3, 2), stride=(2, 1)),
            lambda x: torch.nn.functional.max_pool2d(x, (3, 2), (2, 1)),
        ),
        (nn.AvgPool2D, dict(kernel_size=2), lambda x: torch.nn.functional.avg_pool2d(x, 2)),
        (nn.AvgPool2D, dict(kernel_size=(2, 3), stride=1), lambda x: torch.nn.functional.avg_pool2d(x, (2, 3), 1)),
        (nn.GlobalAvgPool2D, {}, lambda x: torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)),
        (nn.Flatten, {}, lambda x: torch.flatten(x, 1)),
    ],
)
@pytest.mark.parametrize("batch", [1, 3])
def test_parameterless_layers_match_torch_and_pass_gradcheck(cls, kwargs, torch_fn, batch, rng, each_backend):
    x = rng.standard_normal((batch, 2, 7, 9))
    layer = cls(**kwargs)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_fn(xt)
    y = layer(x)
    assert_rel(y, yt)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    assert_rel(layer.backward(gy), xt.grad)
    gradcheck(cls(**kwargs), x)


LAYERS = {
    "conv-tanh": lambda dtype: nn.Conv2D(2, 3, (3, 2), stride=(2, 1), padding=1, activation="tanh", dtype=dtype, rng=0),
    "conv-sigmoid": lambda dtype: nn.Conv2D(2, 3, 3, activation="sigmoid", dtype=dtype, rng=0),
    "maxpool": lambda dtype: nn.MaxPool2D((2, 3), stride=(1, 2)),
    "avgpool": lambda dtype: nn.AvgPool2D(3, stride=2),
    "global-avgpool": lambda dtype: nn.GlobalAvgPool2D(),
    "flatten": lambda dtype: nn.Flatten(),
    "batchnorm": lambda dtype: nn.BatchNorm(2, dtype=dtype),
    "layernorm": lambda dtype: nn.LayerNorm(9, dtype=dtype),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_float32_layers_agree_with_float64_to_float32_rounding(name, rng, each_backend):
    x = rng.standard_normal((2, 2, 7, 9))
    exact, single = LAYERS[name](F64), LAYERS[name](np.float32)
    single.load_state_dict({k: v.astype(np.float32) for k, v in exact.state_dict().items()})
    y64, y32 = exact(x), single(x.astype(np.float32))
    assert y32.dtype == np.float32
    gy = rng.standard_normal(y64.shape)
    dx64, dx32 = exact.backward(gy), single.backward(gy.astype(np.float32))
    assert dx32.dtype == np.float32
    assert_rel(y32, y64, 1e-5)
    assert_rel(dx32, dx64, 1e-5)
    for (_, p64), (_, p32) in zip(exact.named_parameters(), single.named_parameters()):
        assert p32.grad.dtype == np.float32
        assert_rel(p32.grad, p64.grad, 1e-5)


def test_one_conv_used_twice_gets_each_calls_gradient(rng, each_backend):
    shared = nn.Conv2D(2, 2, 3, padding=1, activation="tanh", dtype=F64, rng=0)
    model = nn.Sequential(shared, nn.MaxPool2D(2, stride=1), shared)
    ref = torch.nn.Conv2d(2, 2, 3, padding=1, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(shared.W.data))
        ref.bias.copy_(torch.tensor(shared.b.data))
    x = rng.standard_normal((2, 2, 6, 7))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tanh(ref(torch.nn.functional.max_pool2d(torch.tanh(ref(xt)), 2, 1)))
    y = model(x)
    assert_rel(y, yt)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    model.zero_grad()
    assert_rel(model.backward(gy), xt.grad)
    assert_rel(shared.W.grad, ref.weight.grad)
    assert_rel(shared.b.grad, ref.bias.grad)


def test_pool_stride_defaults_to_the_kernel_size():
    assert nn.MaxPool2D(3).stride == (3, 3)
    assert nn.AvgPool2D((2, 3)).stride == (2, 3)
    assert nn.MaxPool2D(3, stride=1).stride == (1, 1)


def small_cnn(dtype=F64):
    return nn.Sequential(
        nn.Conv2D(2, 3, 3, padding=1, dtype=dtype, rng=0),
        nn.ReLU(),
        nn.MaxPool2D(2),
        nn.Conv2D(3, 4, (3, 2), stride=(1, 2), padding=(1, 0), activation="relu", dtype=dtype, rng=1),
        nn.MaxPool2D(2, stride=1),
        nn.Flatten(),
        nn.Dense(4 * 3 * 1, 5, dtype=dtype, rng=2),
    )


def torch_twin(model):
    c1, c2, d = model[0], model[3], model[6]
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(3, 4, (3, 2), stride=(1, 2), padding=(1, 0)),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2, stride=1),
        torch.nn.Flatten(),
        torch.nn.Linear(12, 5),
    ).double()
    with torch.no_grad():
        for mine, theirs in ((c1, ref[0]), (c2, ref[3])):
            theirs.weight.copy_(torch.tensor(mine.W.data))
            theirs.bias.copy_(torch.tensor(mine.b.data))
        ref[7].weight.copy_(torch.tensor(d.W.data.T))  # Dense keeps W as (in, out)
        ref[7].bias.copy_(torch.tensor(d.b.data))
    return ref


def test_small_cnn_gradients_match_torch(rng, each_backend):
    model = small_cnn()
    for m in (model[0], model[3], model[6]):
        m.b.data[...] = rng.standard_normal(m.b.data.shape) * 0.1
    ref = torch_twin(model)
    x = rng.standard_normal((3, 2, 9, 11))
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    y = model(x)
    assert y.shape == (3, 5)
    assert_rel(y, yt)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    model.zero_grad()
    assert_rel(model.backward(gy), xt.grad)
    pairs = {
        "0.W": ref[0].weight,
        "0.b": ref[0].bias,
        "3.W": ref[3].weight,
        "3.b": ref[3].bias,
        "6.W": ref[7].weight,
        "6.b": ref[7].bias,
    }
    for name, p in model.named_parameters():
        want = pairs[name].grad.numpy()
        assert_rel(p.grad, want.T if name == "6.W" else want)


def test_small_cnn_passes_gradcheck(rng, each_backend):
    gradcheck(small_cnn(), rng.standard_normal((2, 2, 9, 11)), max_checks=40)


def test_first_conv_layer_can_skip_the_input_gradient(rng, each_backend):
    layer = nn.Conv2D(2, 3, 3, stride=2, padding=1, activation="tanh", dtype=F64, rng=0)
    x, gy = rng.standard_normal((2, 2, 7, 9)), rng.standard_normal((2, 3, 4, 5))
    layer(x)
    assert layer.backward(gy).shape == x.shape
    full = [p.grad.copy() for p in layer.parameters()]
    layer.zero_grad()
    layer(x)
    assert layer.backward(gy, input_grad=False) is None
    for p, g in zip(layer.parameters(), full):
        np.testing.assert_array_equal(p.grad, g)


def test_conv2d_init_uses_pytorch_fans(rng):
    # xavier: U(-a, a), a = sqrt(6 / (in*kh*kw + out*kh*kw)); he: std sqrt(2 / (in*kh*kw))
    w = nn.Conv2D(16, 32, (3, 5), init="xavier", rng=0).W.data
    assert w.shape == (32, 16, 3, 5)
    assert np.abs(w).max() <= np.sqrt(6 / (16 * 15 + 32 * 15)) < np.abs(w).max() * 1.01
    he = nn.Conv2D(16, 32, (3, 5), init="he", rng=0).W.data
    assert abs(he.std() / np.sqrt(2 / (16 * 15)) - 1) < 0.05
    # Dense's weights did not change with the 4-D rule: the same draws as before it existed
    dense = nn.Dense(7, 3, init="xavier", rng=5).W.data
    np.testing.assert_array_equal(
        dense, np.random.default_rng(5).uniform(-np.sqrt(0.6), np.sqrt(0.6), (7, 3)).astype(np.float32)
    )


def test_cnn_save_and_load_round_trip_gives_identical_predictions(tmp_path, rng):
    model = nn.Sequential(
        nn.Conv2D(1, 3, (3, 2), stride=(2, 1), padding=(1, 0), activation="relu", rng=0),
        nn.AvgPool2D(2),
        nn.Conv2D(3, 2, 1, bias=False, rng=1),
        nn.MaxPool2D((1, 2), stride=1),
        nn.GlobalAvgPool2D(),
        nn.Dense(2, 4, rng=2),
    )
    x = rng.standard_normal((2, 1, 8, 7)).astype(np.float32)
    model.save(tmp_path / "cnn.npz")
    loaded = nn.load(tmp_path / "cnn.npz")
    assert repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded.eval()(x), model.eval()(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_small_cnn_learns_a_tiny_batch(dtype, rng, each_backend, losses_of_steps):
    x = rng.standard_normal((16, 1, 8, 8)).astype(dtype)
    labels = (x[:, 0, :4].sum(axis=(1, 2)) > x[:, 0, 4:].sum(axis=(1, 2))).astype(np.intp)  # top vs bottom half
    model = nn.Sequential(
        nn.Conv2D(1, 4, 3, padding=1, activation="relu", dtype=dtype, rng=0),
        nn.MaxPool2D(2),
        nn.Conv2D(4, 4, 3, stride=2, padding=1, activation="tanh", dtype=dtype, rng=1),
        nn.Flatten(),
        nn.Dense(16, 2, dtype=dtype, rng=2),
    )
    losses = losses_of_steps(model, x, labels)
    assert losses[-1] < 0.5 * losses[0]


# --- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "x, match",
    [
        (
            np.ones((2, 3, 5), np.float32),
            r"Conv2D\(3, 4, kernel_size=\(3, 3\)\): expected input of shape "
            r"\(batch, 3, height, width\), got \(2, 3, 5\)",
        ),
        (np.ones((2, 2, 5, 5), np.float32), r"expected input of shape \(batch, 3, height, width\), got \(2, 2, 5, 5\)"),
        (np.ones((2, 3, 5, 5)), "expected float32 input .*got float64"),
        (np.ones((2, 3, 2, 5), np.float32), r"kernel \(3, 3\) is larger than the padded input \(2, 5\)"),
    ],
)
def test_conv2d_rejects_bad_input_naming_what_it_needs(x, match):
    with pytest.raises(ValueError, match=match):
        nn.Conv2D(3, 4, 3)(x)


def test_padding_makes_a_small_input_acceptable():
    assert nn.Conv2D(1, 1, 3, padding=1)(np.ones((1, 1, 1, 1), np.float32)).shape == (1, 1, 1, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kernel_size=0), r"kernel_size must be a positive integer or a pair of them \(height, width\), got 0"),
        (dict(kernel_size=(3, -1)), "kernel_size must be a positive integer"),
        (dict(kernel_size=(3, 3, 3)), "kernel_size must be"),
        (dict(kernel_size=2.0), "kernel_size must be"),
        (dict(kernel_size=3, stride=0), "stride must be a positive integer"),
        (dict(kernel_size=3, padding=-1), "padding must be an integer >= 0"),
        (dict(kernel_size=3, activation="swish"), "unknown activation 'swish'"),
        (dict(kernel_size=3, dtype=np.int32), "Conv2D: dtype must be a float type"),
    ],
)
def test_conv2d_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nn.Conv2D(2, 3, **kwargs)
    with pytest.raises(ValueError, match="Conv2D: in_channels must be a positive integer, got 0"):
        nn.Conv2D(0, 3, 3)


@pytest.mark.parametrize("cls", [nn.MaxPool2D, nn.AvgPool2D])
def test_pools_reject_bad_arguments_and_input(cls):
    name = cls.__name__
    with pytest.raises(ValueError, match=f"{name}: kernel_size must be a positive integer"):
        cls(0)
    with pytest.raises(ValueError, match=f"{name}: stride must be a positive integer"):
        cls(2, stride=(1, 0))
    with pytest.raises(
        ValueError,
        match=rf"{name}\(kernel_size=\(3, 3\), stride=\(3, 3\)\): kernel \(3, 3\) is "
        r"larger than the input's \(height, width\) \(2, 5\)",
    ):
        cls(3)(np.ones((1, 1, 2, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, channels, height, width\), got \(4, 4\)"):
        cls(2)(np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match="expected a float32 or float64 input, got int64"):
        cls(2)(np.ones((1, 1, 4, 4), np.int64))


def test_global_pool_and_flatten_reject_wrong_ranks():
    with pytest.raises(
        ValueError,
        match=r"GlobalAvgPool2D\(\): expected input of shape \(batch, channels, "
        r"height, width\), got \(2, 3\)",
    ):
        nn.GlobalAvgPool2D()(np.ones((2, 3), np.float32))
    with pytest.raises(
        ValueError,
        match=r"Flatten\(\): expected input of shape \(batch, ...\) with at least 2 "
        r"dimensions, got \(5,\)",
    ):
        nn.Flatten()(np.ones(5, np.float32))


@pytest.mark.parametrize(
    "layer, x",
    [
        (nn.Conv2D(1, 2, 3), np.ones((1, 1, 5, 5), np.float32)),
        (nn.MaxPool2D(2), np.ones((1, 1, 4, 4), np.float32)),
        (nn.AvgPool2D(2), np.ones((1, 1, 4, 4), np.float32)),
        (nn.GlobalAvgPool2D(), np.ones((1, 1, 4, 4), np.float32)),
        (nn.Flatten(), np.ones((1, 1, 4, 4), np.float32)),
    ],
)
def test_backward_checks_order_and_gradient_shape(layer, x):
    with pytest.raises(RuntimeError, match="backward was called before forward"):
        layer.backward(np.ones(3, np.float32))
    y = layer(x)
    with pytest.raises(ValueError, match=rf"backward: expected a gradient of shape \({y.shape[0]}, "):
        layer.backward(np.ones(y.shape + (1,), np.float32))
