import numpy as np
import pytest

from tinygrad_free import GradcheckError, gradcheck, nn

F64 = np.float64
ACTS = ["identity", "sigmoid", "tanh", "relu"]


def away_from_kink(x):
    """Keep inputs off relu's kink so finite differences stay valid."""
    return np.where(np.abs(x) < 1e-3, 0.1, x)


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("batch", [1, 4])
def test_dense_with_fused_activation_passes_gradcheck(activation, batch, rng, each_backend):
    layer = nn.Dense(6, 5, activation=activation, dtype=F64, rng=0)
    gradcheck(layer, away_from_kink(rng.standard_normal((batch, 6))))


def test_dense_without_bias_passes_gradcheck(rng):
    layer = nn.Dense(3, 4, activation="tanh", bias=False, dtype=F64, rng=0)
    assert [n for n, _ in layer.named_parameters()] == ["W"]
    gradcheck(layer, rng.standard_normal((2, 3)))


@pytest.mark.parametrize("cls", [nn.Identity, nn.Sigmoid, nn.Tanh, nn.ReLU, nn.Softmax])
def test_activation_layers_pass_gradcheck(cls, rng, each_backend):
    gradcheck(cls(), away_from_kink(rng.standard_normal((3, 7))))


@pytest.mark.parametrize("loss_cls", [nn.CrossEntropyLoss, nn.SoftmaxMSELoss])
@pytest.mark.parametrize("batch", [1, 5])
def test_losses_pass_gradcheck(loss_cls, batch, rng, each_backend):
    z = rng.standard_normal((batch, 10)) * 3
    gradcheck(loss_cls(), z, rng.integers(0, 10, batch))


def test_cross_entropy_equals_log_softmax_formula(rng):
    z = rng.standard_normal((8, 10))
    y = rng.integers(0, 10, 8)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert nn.CrossEntropyLoss()(z, y) == pytest.approx(-logp[np.arange(8), y].mean(), rel=1e-12)


def test_mse_is_squared_error_of_softmax_against_one_hot(rng):
    z = rng.standard_normal((8, 10))
    y = rng.integers(0, 10, 8)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    expected = ((p - np.eye(10)[y]) ** 2).sum() / 8
    assert nn.SoftmaxMSELoss()(z, y) == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0]])
    loss = nn.CrossEntropyLoss()
    assert loss(z, np.array([0, 0])) == pytest.approx(1e4 / 2)
    assert np.isfinite(loss.backward()).all()


def test_one_hot_targets_give_the_same_loss_as_labels(rng):
    z = rng.standard_normal((5, 4))
    y = np.array([0, 3, 1, 1, 2])
    for cls in (nn.CrossEntropyLoss, nn.SoftmaxMSELoss):
        a, b = cls(), cls()
        assert a(z, y) == b(z, np.eye(4)[y])
        np.testing.assert_array_equal(a.backward(), b.backward())


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_random_sequential_stacks_pass_gradcheck(depth, each_backend):
    rng = np.random.default_rng(depth)
    widths = rng.integers(1, 7, depth + 1)
    layers = []
    for i in range(depth):
        fused = ACTS[rng.integers(4)]
        layers.append(
            nn.Dense(
                int(widths[i]),
                int(widths[i + 1]),
                activation=fused,
                dtype=F64,
                init=["xavier", "he", "random"][i % 3],
                rng=rng,
            )
        )
        if rng.random() < 0.5:
            layers.append([nn.Sigmoid, nn.Tanh, nn.Identity][rng.integers(3)]())
    model = nn.Sequential(*layers)
    for batch in (1, 3):
        gradcheck(model, rng.standard_normal((batch, int(widths[0]))))


def test_gradcheck_accepts_thinc_style_functions(rng):
    def square(x):
        return x * x, lambda dy: 2 * x * dy

    assert gradcheck(square, rng.standard_normal((3, 2))).ok


def test_gradcheck_names_the_tensor_and_index_of_a_wrong_gradient(rng):
    class WrongBias(nn.Dense):
        def backward(self, grad_out):
            dx = super().backward(grad_out)
            self.b.grad[1] += 0.5
            return dx

    with pytest.raises(GradcheckError, match=r"mismatch in b at index \(1,\)"):
        gradcheck(WrongBias(3, 2, dtype=F64, rng=0), rng.standard_normal((2, 3)))


def test_gradcheck_refuses_float32():
    with pytest.raises(ValueError, match="float64"):
        gradcheck(nn.Dense(2, 2), np.ones((1, 2), np.float32))


def test_backward_accumulates_into_grad_and_zero_grad_clears_it(rng):
    layer = nn.Dense(4, 3, activation="tanh", rng=0, dtype=F64)
    x, gy = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    layer(x)
    layer.backward(gy)
    once = {n: p.grad.copy() for n, p in layer.named_parameters()}
    layer(x)
    layer.backward(gy)
    for n, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * once[n])
    layer.zero_grad()
    assert all(not p.grad.any() for p in layer.parameters())


def test_a_backward_that_fails_leaves_a_cleared_gradient_cleared(rng, each_backend):
    layer = nn.Dense(4, 3, activation="tanh", rng=0, dtype=F64)
    x, gy = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    layer(x)
    layer.backward(gy)
    layer.zero_grad()
    layer(x)
    with pytest.raises(Exception):  # noqa: B017 (numpy's TypeError or numba's TypingError)
        layer.backward(np.full((5, 3), "x"))  # right shape, not numbers
    assert not layer.W.grad.any() and not layer.b.grad.any()
    layer.backward(gy)  # a retry of that call starts from zero
    want = x.T @ ((1 - layer._y**2) * gy)
    np.testing.assert_allclose(layer.W.grad, want, rtol=1e-12)


def test_custom_module_needs_only_forward_and_backward(rng):
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(np.array([2.0]), decay=False)

        def forward(self, x):
            self.x = x
            return x * self.s.data

        def backward(self, grad_out):
            self.s.grad += (grad_out * self.x).sum(keepdims=True).reshape(1)
            return grad_out * self.s.data

    model = nn.Sequential(nn.Dense(3, 2, dtype=F64, rng=0), Scale())
    assert [n for n, _ in model.named_parameters()] == ["0.W", "0.b", "1.s"]
    gradcheck(model, rng.standard_normal((4, 3)))


def test_named_parameters_are_dotted_and_in_layer_order():
    model = nn.Sequential(nn.Dense(4, 3), nn.Tanh(), nn.Dense(3, 2, bias=False), nn.Sequential(nn.Dense(2, 2)))
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.W", "0.b", "2.W", "3.0.W", "3.0.b"]
    assert [p.name for p in model.parameters()] == names
    assert [p.decay for p in model.parameters()] == [True, False, True, True, False]
    assert model[0].W.data.shape == (4, 3) and model[0].b.data.shape == (3,)


def test_sequential_is_indexable_sized_and_appendable():
    model = nn.Sequential(nn.Dense(4, 3), nn.ReLU())
    model.append(nn.Dense(3, 1))
    assert len(model) == 3 and isinstance(model[-1], nn.Dense) and len(model[1:]) == 2


def test_repr_shows_layers_and_parameter_count():
    text = repr(nn.Sequential(nn.Dense(784, 128, activation="ReLU"), nn.Dense(128, 10)))
    assert "Dense(784, 128, activation='relu')" in text and "101,770 parameters" in text


def test_activation_names_are_case_insensitive():
    for name in ("ReLU", "RELU", "Tanh", "SIGMOID", "Identity", None):
        nn.Dense(2, 2, activation=name)


def test_initialisers_have_the_documented_statistics():
    rng = np.random.default_rng(0)
    w = nn.Dense(400, 300, init="xavier", rng=rng).W.data
    assert np.abs(w).max() <= np.sqrt(6 / 700) and w.std() == pytest.approx(np.sqrt(6 / 700) / np.sqrt(3), rel=0.02)
    assert nn.Dense(400, 300, init="he", rng=rng).W.data.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert nn.Dense(400, 300, init="random", rng=rng).W.data.std() == pytest.approx(0.01, rel=0.02)
    assert not nn.Dense(4, 3, init="he", rng=rng).b.data.any()


def test_same_seed_gives_the_same_weights():
    a, b = nn.Dense(5, 4, rng=7), nn.Dense(5, 4, rng=7)
    np.testing.assert_array_equal(a.W.data, b.W.data)


def test_no_grad_caches_nothing_so_backward_refuses(rng):
    layer = nn.Dense(3, 2).eval()
    with nn.no_grad():
        layer(rng.random((1, 3), dtype=np.float32))
    with pytest.raises(RuntimeError, match="the last forward ran under nn.no_grad"):
        layer.backward(np.ones((1, 2), np.float32))


def test_state_dict_round_trip_restores_predictions(rng):
    a = nn.Sequential(nn.Dense(5, 4, activation="tanh", rng=1), nn.Dense(4, 3, rng=2))
    b = nn.Sequential(nn.Dense(5, 4, activation="tanh", rng=3), nn.Dense(4, 3, rng=4))
    b.load_state_dict(a.state_dict())
    x = rng.random((6, 5), dtype=np.float32)
    np.testing.assert_array_equal(a(x), b(x))


def test_save_and_load_round_trip_gives_identical_predictions(tmp_path, rng):
    model = nn.Sequential(
        nn.Dense(5, 4, activation="relu", rng=1), nn.Sigmoid(), nn.Dense(4, 3, bias=False, rng=2), nn.Softmax()
    )
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = nn.load(path)
    x = rng.random((6, 5), dtype=np.float32)
    np.testing.assert_array_equal(model(x), loaded(x))
    assert repr(loaded) == repr(model)
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left behind


def test_save_of_a_custom_module_without_config_says_how_to_fix(tmp_path):
    class Custom(nn.Module):
        pass

    with pytest.raises(NotImplementedError, match="get_config"):
        nn.Sequential(Custom()).save(tmp_path / "m.npz")


# --- bad input ----------------------------------------------------------------------------------


def test_shape_mismatch_names_layer_and_shapes():
    model = nn.Sequential(nn.Dense(4, 3), nn.Dense(5, 2))
    with pytest.raises(ValueError, match=r"layer 1: Dense\(5, 2\): expected input of shape \(batch, 5\), got \(2, 3\)"):
        model(np.ones((2, 4), np.float32))


def test_wrong_input_dtype_is_rejected_with_the_fix():
    with pytest.raises(ValueError, match="expected float32 input.*got float64"):
        nn.Dense(2, 2)(np.ones((1, 2)))


@pytest.mark.parametrize(
    "z, y, match",
    [
        (np.array([[np.nan, 0.0]]), np.array([0]), "NaN or inf"),
        (np.ones((2, 3), np.int64), np.array([0, 1]), "float32 or float64"),
        (np.ones((2, 3)), np.array([0, 3]), "out of range"),
        (np.ones((2, 3)), np.array([0, -1]), "out of range"),
        (np.ones((2, 3)), np.array([0.0, 1.0]), "integers"),
        (np.ones((2, 3)), np.array([0, 1, 2]), "shape"),
        (np.ones(3), np.array([0]), "batch, classes"),
        (np.ones((2, 3)), np.array([[0.5, 0.5, 0], [1, 0, 0]]), "one-hot"),
    ],
)
def test_bad_loss_inputs_raise_clear_errors(z, y, match, each_backend):
    for cls in (nn.CrossEntropyLoss, nn.SoftmaxMSELoss):
        with pytest.raises(ValueError, match=match):
            cls()(z, y)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_logits_raise_the_divergence_error(bad, each_backend):
    for cls in (nn.CrossEntropyLoss, nn.SoftmaxMSELoss):
        with pytest.raises(nn.NonFiniteError):  # even -inf, which a log-sum-exp would survive
            cls()(np.array([[0.5, 0.0], [bad, 0.0]], np.float32), np.array([0, 1]))


@pytest.mark.parametrize("cls", [nn.CrossEntropyLoss, nn.SoftmaxMSELoss])
def test_loss_counts_the_rows_whose_argmax_is_the_label(rng, cls, each_backend):
    z = rng.standard_normal((50, 10)).astype(np.float32)
    y = rng.integers(0, 10, 50)
    loss_fn = cls()
    loss_fn(z, y)
    assert loss_fn.correct == np.count_nonzero(z.argmax(axis=1) == y) > 0
    loss_fn(z, np.eye(10, dtype=np.float32)[z.argmax(axis=1)])  # one-hot targets too
    assert loss_fn.correct == 50


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(activation="swish"), "unknown activation 'swish'; choose one of identity, sigmoid, tanh, relu"),
        (dict(init="orthogonal"), "unknown init 'orthogonal'"),
        (dict(dtype=np.int32), "float32 or float64"),
    ],
)
def test_unknown_names_list_the_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nn.Dense(2, 2, **kwargs)


def test_unknown_loss_name_lists_the_choices():
    with pytest.raises(ValueError, match="cross_entropy, mean_squared_error"):
        nn.get_loss("hinge")


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_non_positive_sizes_are_rejected(size):
    with pytest.raises(ValueError, match="positive integer"):
        nn.Dense(size, 2)


def test_backward_before_forward_raises():
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Dense(2, 2).backward(np.ones((1, 2), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.CrossEntropyLoss().backward()
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Tanh().backward(np.ones((1, 2)))


def test_backward_with_wrong_gradient_shape_raises(rng):
    layer = nn.Dense(3, 2)
    layer(rng.random((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"Dense.backward: expected a gradient of shape \(4, 2\).*got \(4, 3\)"):
        layer.backward(np.ones((4, 3), np.float32))


def test_backward_without_input_grad_gives_the_same_parameter_grads(rng):
    model = nn.Sequential(nn.Dense(4, 3, activation="tanh", dtype=F64, rng=0), nn.Dense(3, 2, dtype=F64, rng=1))
    x, gy = rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    model(x)
    assert model.backward(gy).shape == (5, 4)
    full = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    model(x)
    assert model.backward(gy, input_grad=False) is None
    for p, g in zip(model.parameters(), full):
        np.testing.assert_array_equal(p.grad, g)
