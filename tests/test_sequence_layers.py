"""The small layers sequence models need: GELU (alone and fused), Reshape, Permute,
PositionalEmbedding, ClassToken, Conv1D, Mean, Dense on (N, T, F) and CrossEntropyLoss on
(N, T, C) with ignore_index and label smoothing: PyTorch parity in float64 (values and every
gradient), finite differences on both backends, PyTorch state dicts copied in, save/load, the
float32 kernels against their NumPy twins, and the errors for bad input."""

import math

import numpy as np
import pytest

from tinygrad_free import gradcheck, nn
from tinygrad_free.kernels import NUMBA, NUMPY, approx, dense

F64 = np.float64
torch = pytest.importorskip("torch")


def assert_rel(got, want, tol=1e-6):
    """max |got - want| / max |want| < tol: the parity criterion."""
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(np.max(np.abs(want)), 1e-300)
    assert np.max(np.abs(got - want)) / scale < tol, (np.max(np.abs(got - want)), scale)


def torch_grads(fn, *arrays, gy_seed=0):
    """fn applied to torch copies of ``arrays``; returns (output, gy, [input grads])."""
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = fn(*ts)
    gy = np.random.default_rng(gy_seed).standard_normal(tuple(y.shape))
    y.backward(torch.tensor(gy))
    return y, gy, [t.grad for t in ts]


def round_trip(model, tmp_path, *xs):
    model.save(tmp_path / "m.npz")
    again = nn.load(tmp_path / "m.npz")
    with nn.no_grad():
        assert np.array_equal(again.eval()(*xs), model.eval()(*xs))
    return again


# --- GELU ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_layer_matches_torch_and_passes_gradcheck(approximate, rng, each_backend):
    x = rng.standard_normal((4, 3, 5)) * 3
    layer = nn.GELU(approximate)
    yt, gy, (gx,) = torch_grads(lambda t: torch.nn.functional.gelu(t, approximate=approximate), x)
    assert_rel(layer(x), yt)
    assert_rel(layer.backward(gy), gx)
    gradcheck(nn.GELU(approximate), x)


@pytest.mark.parametrize("act", ["gelu", "gelu_tanh"])
def test_gelu_fused_into_dense_and_conv2d_matches_torch(act, rng, each_backend):
    approximate = "none" if act == "gelu" else "tanh"
    d = nn.Dense(5, 4, activation=act, dtype=F64, rng=0)
    d.b.data[...] = rng.standard_normal(4)
    x = rng.standard_normal((6, 5))
    ref = torch.nn.Linear(5, 4, dtype=torch.float64)
    ref.load_state_dict({k: torch.tensor(v) for k, v in d.torch_tensors().items()})
    yt, gy, (gx,) = torch_grads(lambda t: torch.nn.functional.gelu(ref(t), approximate=approximate), x)
    assert_rel(d(x), yt)
    assert_rel(d.backward(gy), gx)
    assert_rel(d.W.grad, ref.weight.grad.T)
    assert_rel(d.b.grad, ref.bias.grad)
    c = nn.Conv2D(2, 3, 3, padding=1, activation=act, dtype=F64, rng=0)
    x4 = rng.standard_normal((2, 2, 5, 4))
    w = torch.tensor(c.W.data, requires_grad=True)
    yt, gy, (gx,) = torch_grads(
        lambda t: torch.nn.functional.gelu(torch.nn.functional.conv2d(t, w, padding=1), approximate=approximate), x4
    )
    assert_rel(c(x4), yt)
    assert_rel(c.backward(gy), gx)
    assert_rel(c.W.grad, w.grad)
    gradcheck(c, x4)


def test_gelu_float32_kernels_are_close_to_the_exact_function_and_to_their_numpy_twin(rng):
    x = np.concatenate([np.linspace(-14, 14, 20001), rng.standard_normal(1000) * 4]).astype(np.float32)
    x64 = x.astype(F64)
    exact = x64 * 0.5 * np.array([math.erfc(-v / math.sqrt(2)) for v in x64])
    for ops in (NUMPY, NUMBA):
        y = ops.bias_act(x.copy(), None, dense.GELU)
        big = np.abs(exact) > 1e-30
        assert np.max(np.abs(y[big] - exact[big]) / np.abs(exact[big])) < 2e-5  # relative, even in the tail
        g = ops.act_grad(x, np.ones_like(x), dense.GELU, np.empty_like(x))
        dexact = 0.5 * np.array([math.erfc(-v / math.sqrt(2)) for v in x64]) + x64 * np.exp(-0.5 * x64**2) / math.sqrt(
            2 * math.pi
        )
        assert np.max(np.abs(g - dexact)) < 2e-6
    np.testing.assert_allclose(
        NUMBA.bias_act(x.copy(), None, dense.GELU), NUMPY.bias_act(x.copy(), None, dense.GELU), rtol=2e-6, atol=1e-37
    )


def test_the_float32_exp_and_erfc_are_accurate_and_keep_nan_and_infinities():
    x = np.linspace(-103, 88.7, 400001).astype(np.float32)
    ref = np.exp(x.astype(F64))
    normal = ref > 1.2e-38
    assert np.max(np.abs(approx.exp_array(x)[normal] - ref[normal]) / ref[normal]) < 1e-7
    special = approx.exp_array(np.float32([np.nan, np.inf, -np.inf, 89.0, -105.0]))
    assert (
        np.isnan(special[0]) and special[1] == np.inf and special[2] == 0 and special[3] == np.inf and special[4] == 0
    )
    z = np.linspace(-5, 9, 20001).astype(np.float32)
    want = np.array([math.erfc(v) for v in z.astype(F64)])
    assert np.max(np.abs(approx.erfc_array(z) - want) / want) < 1e-5
    assert np.isnan(approx.erfc_array(np.float32([np.nan]))[0])


def test_gelu_is_an_activation_name_and_saves_its_approximation(tmp_path, rng):
    assert isinstance(nn.activation.get("GELU"), nn.GELU)
    assert nn.activation.get("gelu_tanh").approximate == "tanh"
    model = nn.Sequential(nn.Dense(3, 4, activation="gelu", rng=0), nn.GELU("tanh"))
    again = round_trip(model, tmp_path, rng.standard_normal((2, 3)).astype(np.float32))
    assert again[0].act_code == dense.GELU and again[1].approximate == "tanh"
    with pytest.raises(ValueError, match="GELU: approximate must be 'none' or 'tanh'"):
        nn.GELU("erf")


# --- Dense on (N, T, F) --------------------------------------------------------------------------
@pytest.mark.parametrize("act", [None, "relu", "gelu"])
def test_dense_acts_on_the_last_axis_of_a_sequence_as_torch_linear(act, rng, each_backend):
    d = nn.Dense(5, 3, activation=act, dtype=F64, rng=0)
    d.b.data[...] = rng.standard_normal(3)
    ref = torch.nn.Linear(5, 3, dtype=torch.float64)
    d_to = {k: torch.tensor(v) for k, v in d.torch_tensors().items()}
    ref.load_state_dict(d_to)
    f = {None: lambda z: z, "relu": torch.relu, "gelu": torch.nn.functional.gelu}[act]
    x = rng.standard_normal((2, 4, 3, 5))
    yt, gy, (gx,) = torch_grads(lambda t: f(ref(t)), x)
    y = d(x)
    assert y.shape == (2, 4, 3, 3)
    assert_rel(y, yt)
    assert_rel(d.backward(gy), gx)
    assert_rel(d.W.grad, ref.weight.grad.T)
    assert_rel(d.b.grad, ref.bias.grad)
    gradcheck(d, rng.standard_normal((2, 3, 5)))


def test_dense_on_a_sequence_equals_dense_on_its_rows_and_refuses_a_wrong_feature_size(rng):
    d = nn.Dense(4, 2, rng=0)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    assert np.array_equal(d(x), d(x.reshape(15, 4)).reshape(3, 5, 2))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 4\), got \(3, 5, 3\)"):
        d(np.zeros((3, 5, 3), np.float32))


# --- Reshape and Permute -------------------------------------------------------------------------
def test_reshape_and_permute_match_torch_and_pass_gradcheck(rng, tmp_path):
    x = rng.standard_normal((2, 3, 4, 5))
    for layer, fn in (
        (nn.Reshape((4, -1)), lambda t: t.reshape(2, 4, -1)),
        (nn.Reshape((60,)), lambda t: t.reshape(2, 60)),
        (nn.Permute((3, 1, 2)), lambda t: t.permute(0, 3, 1, 2)),
        (nn.Permute((2, 1, 3)), lambda t: t.permute(0, 2, 1, 3)),
    ):
        yt, gy, (gx,) = torch_grads(fn, x)
        y = layer(x)
        assert_rel(y, yt)
        assert_rel(layer.backward(gy), gx)
        gradcheck(layer, x)
        round_trip(nn.Sequential(layer), tmp_path, x)
    assert nn.Permute((2, 1))(x[:, :, :, 0]).flags.c_contiguous


def test_reshape_and_permute_refuse_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="Reshape: shape must be a non-empty tuple of positive ints"):
        nn.Reshape((-1, -1))
    with pytest.raises(ValueError, match=r"cannot reshape samples of shape \(3, 4\) \(12 values\) into \(5,\)"):
        nn.Reshape(5)(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="Permute: dims must be a permutation of 1..k"):
        nn.Permute((0, 2, 1))
    with pytest.raises(ValueError, match="expected input with 2 axes besides the batch axis"):
        nn.Permute((2, 1))(np.zeros((2, 3)))


# --- positions and the class token ---------------------------------------------------------------
def test_positional_embedding_matches_torch_embedding_added(rng, each_backend, tmp_path):
    layer = nn.PositionalEmbedding(7, 4, dtype=F64, rng=0)
    emb = torch.nn.Embedding(7, 4, dtype=torch.float64)
    nn.Sequential(layer).load_torch_state_dict(emb.state_dict())
    x = rng.standard_normal((3, 5, 4))
    yt, gy, (gx,) = torch_grads(lambda t: t + emb(torch.arange(5)), x)
    assert_rel(layer(x), yt)
    assert_rel(layer.backward(gy), gx)
    assert_rel(layer.weight.grad, emb.weight.grad)
    assert np.all(layer.weight.grad[5:] == 0)
    gradcheck(layer, x)
    round_trip(nn.Sequential(layer), tmp_path, x)
    with pytest.raises(ValueError, match="sequences of length 8 are longer than max_len 7"):
        layer(np.zeros((1, 8, 4)))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, length, 4\), got \(1, 3, 5\)"):
        layer(np.zeros((1, 3, 5)))


def test_class_token_is_prepended_as_vit_does(rng, each_backend, tmp_path):
    layer = nn.ClassToken(4, dtype=F64, rng=0)
    cls = torch.tensor(layer.token.data.copy(), requires_grad=True)
    x = rng.standard_normal((3, 5, 4))
    yt, gy, (gx,) = torch_grads(lambda t: torch.cat([cls.expand(3, -1, -1), t], dim=1), x)
    y = layer(x)
    assert y.shape == (3, 6, 4)
    assert_rel(y, yt)
    assert_rel(layer.backward(gy), gx)
    assert_rel(layer.token.grad, cls.grad)
    gradcheck(layer, x)
    round_trip(nn.Sequential(layer), tmp_path, x)
    assert list(layer.torch_tensors()) == ["cls_token"]
    assert not layer.token.decay and not nn.PositionalEmbedding(3, 2).weight.decay


# --- Conv1D --------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, s, p, act", [(3, 1, 1, None), (2, 2, 0, "relu"), (5, 3, 2, "gelu"), (1, 1, 0, "tanh")])
def test_conv1d_matches_torch_conv1d_and_loads_its_state_dict(k, s, p, act, rng, each_backend):
    ref = torch.nn.Conv1d(3, 4, k, stride=s, padding=p, dtype=torch.float64)
    layer = nn.Conv1D(3, 4, k, stride=s, padding=p, activation=act, dtype=F64, rng=0)
    nn.Sequential(layer).load_torch_state_dict(ref.state_dict())
    f = {None: lambda z: z, "relu": torch.relu, "gelu": torch.nn.functional.gelu, "tanh": torch.tanh}[act]
    x = rng.standard_normal((2, 3, 9))
    yt, gy, (gx,) = torch_grads(lambda t: f(ref(t)), x)
    assert_rel(layer(x), yt)
    assert_rel(layer.backward(gy), gx)
    assert_rel(layer.W.grad, ref.weight.grad)
    assert_rel(layer.b.grad, ref.bias.grad)
    gradcheck(layer, x)


def test_conv1d_saves_and_refuses_bad_input(rng, tmp_path):
    layer = nn.Conv1D(2, 3, 3, stride=2, padding=1, activation="relu", rng=0)
    round_trip(nn.Sequential(layer), tmp_path, rng.standard_normal((2, 2, 7)).astype(np.float32))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 2, length\), got \(2, 3, 7\)"):
        layer(np.zeros((2, 3, 7), np.float32))
    with pytest.raises(ValueError, match="kernel 5 is longer than the padded input"):
        nn.Conv1D(1, 1, 5)(np.zeros((1, 1, 3), np.float32))
    with pytest.raises(ValueError, match="Conv1D: padding must be a non-negative integer"):
        nn.Conv1D(1, 1, 3, padding=-1)


# --- Mean ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis, keepdims", [(1, False), (-1, False), (2, True)])
def test_mean_over_an_axis_matches_torch(axis, keepdims, rng, tmp_path):
    x = rng.standard_normal((2, 3, 4))
    layer = nn.Mean(axis, keepdims)
    yt, gy, (gx,) = torch_grads(lambda t: t.mean(dim=axis, keepdim=keepdims), x)
    assert_rel(layer(x), yt)
    assert_rel(layer.backward(gy), gx)
    gradcheck(layer, x)
    round_trip(nn.Sequential(layer), tmp_path, x)


def test_mean_refuses_the_batch_axis_and_axes_the_input_lacks():
    with pytest.raises(ValueError, match="Mean: axis must be a non-zero int"):
        nn.Mean(0)
    with pytest.raises(ValueError, match="axis 3 is not an axis of the samples"):
        nn.Mean(3)(np.zeros((2, 3, 4)))


# --- CrossEntropyLoss on sequences ---------------------------------------------------------------
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_on_sequences_matches_torch_with_ignore_index_and_smoothing(smoothing, ignore, rng, each_backend):
    z = rng.standard_normal((3, 5, 4)) * 3
    y = rng.integers(0, 4, (3, 5))
    if ignore:
        y[0, 3:] = -100
        y[2, :] = -100
    ce = nn.CrossEntropyLoss(label_smoothing=smoothing)
    zt = torch.tensor(z, requires_grad=True)
    want = torch.nn.functional.cross_entropy(zt.transpose(1, 2), torch.tensor(y), label_smoothing=smoothing)
    want.backward()
    assert ce(z, y) == pytest.approx(want.item(), rel=1e-12)
    assert_rel(ce.backward(), zt.grad)
    kept = y != -100
    assert ce.counted == kept.sum()
    assert ce.correct == np.sum((z.argmax(-1) == y) & kept)
    gradcheck(nn.CrossEntropyLoss(label_smoothing=smoothing), z, y)


def test_cross_entropy_twins_agree_in_float32(rng):
    z = (rng.standard_normal((64, 10)) * 4).astype(np.float32)
    y = rng.integers(0, 10, 64)
    y[::7] = -100
    for smoothing in (0.0, 0.1):
        g1, g2 = np.empty_like(z), np.empty_like(z)
        a = NUMPY.cross_entropy(z, y, g1, -100, smoothing)
        b = NUMBA.cross_entropy(z, y, g2, -100, smoothing)
        assert a[1:] == b[1:] and a[0] == pytest.approx(b[0], rel=1e-6)
        np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-8)


def test_cross_entropy_without_smoothing_or_ignored_labels_is_the_plain_kernel_bit_for_bit(rng):
    z = (rng.standard_normal((32, 10)) * 4).astype(np.float32)
    y = rng.integers(0, 10, 32)
    g1, g2 = np.empty_like(z), np.empty_like(z)
    loss, correct = NUMBA.softmax_cross_entropy(z, y, g1)
    assert NUMBA.cross_entropy(z, y, g2, -100, 0.0) == (loss, correct, 32)
    assert np.array_equal(g1, g2)


def test_cross_entropy_refuses_all_ignored_labels_wrong_shapes_and_bad_options():
    ce = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match="every label is ignore_index"):
        ce(np.zeros((2, 3, 4)), np.full((2, 3), -100))
    with pytest.raises(ValueError, match=r"labels must be int class indices of shape \(2, 3\)"):
        ce(np.zeros((2, 3, 4)), np.zeros((2, 4), int))
    with pytest.raises(ValueError, match=r"expected 0..3 \(or ignore_index -100\), got min 0, max 7"):
        ce(np.zeros((2, 3, 4)), np.array([[0, 7, -100], [1, 2, 3]]))
    with pytest.raises(ValueError, match="label_smoothing must be a number in"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    assert nn.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1).get_config() == {
        "ignore_index": 0,
        "label_smoothing": 0.1,
    }


# --- LayerNorm's kernels (the Transformer's other hot spot) ---------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, F64])
def test_layernorm_kernel_twins_agree(dtype, rng):
    x = (rng.standard_normal((37, 24)) * 3 + 1).astype(dtype)
    gamma, beta = rng.standard_normal(24).astype(dtype), rng.standard_normal(24).astype(dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    out = []
    for ops in (NUMPY, NUMBA):
        y, xhat, invstd = np.empty_like(x), np.empty_like(x), np.empty(37, dtype)
        ops.layernorm_forward(x, gamma, beta, 1e-5, y, xhat, invstd)
        dg, db, dx = np.zeros(24, dtype), np.zeros(24, dtype), np.empty_like(x)
        ops.layernorm_backward(gy, xhat, invstd, gamma, dg, db, dx)
        out.append((y, xhat, invstd, dg, db, dx))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())


# --- Dropout's kernel (32-bit draws, one fused pass) ---------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, F64])
def test_dropout_kernel_twins_agree_and_keep_with_probability_one_minus_p(dtype, rng):
    from tinygrad_free.nn.dropout import drop_threshold, uniform_draws

    x = rng.standard_normal((300, 200)).astype(dtype)
    draws = uniform_draws(np.random.default_rng(0), x.shape)
    a = NUMPY.dropout_apply(x, draws, drop_threshold(0.3), 1 / 0.7, np.empty_like(x))
    b = NUMBA.dropout_apply(x, draws, drop_threshold(0.3), 1 / 0.7, np.empty_like(x))
    assert np.array_equal(a, b)
    assert abs(np.mean(a == 0) - 0.3) < 0.005
    assert uniform_draws(np.random.Generator(np.random.MT19937(0)), (4, 5)).dtype == np.uint32


def test_gelu_keeps_its_own_copy_of_a_callers_input_it_reads_in_backward(rng):
    x = rng.standard_normal((3, 4))
    layer = nn.GELU()
    layer(x)
    want = nn.GELU()
    want(x.copy())
    x[...] = 100.0  # a caller refilling its buffer between forward and backward
    g = np.ones((3, 4))
    np.testing.assert_array_equal(layer.backward(g), want.backward(g))
