"""TransformerEncoderLayer: PyTorch's nn.TransformerEncoderLayer(batch_first=True) in float64 for
both norm placements, relu and gelu, with and without a padding mask (outputs, the input's and
every parameter's gradient), a PyTorch encoder stack's state dict copied in, training-mode
dropout against PyTorch given the same masks, a shared encoder used twice in a Graph (lengths from
an Input), finite differences, save/load, one thread against two, and the errors."""

import numpy as np
import pytest

from tinygrad_free import gradcheck, kernels, nn, optim
from tinygrad_free.nn.dropout import drop_threshold, uniform_draws

F64 = np.float64
torch = pytest.importorskip("torch")


def assert_rel(got, want, tol=1e-6):
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300) < tol


def torch_layer(d=8, h=2, ff=12, dropout=0.0, activation="relu", norm_first=False, seed=0):
    torch.manual_seed(seed)
    ref = torch.nn.TransformerEncoderLayer(
        d, h, ff, dropout, activation=activation, batch_first=True, norm_first=norm_first, dtype=torch.float64
    )
    with torch.no_grad():  # LayerNorm and biases away from their initial ones and zeros
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return ref


def copy_of(ref, dropout=0.0, activation="relu", norm_first=False):
    d, ff = ref.linear1.in_features, ref.linear1.out_features
    ours = nn.TransformerEncoderLayer(d, ref.self_attn.num_heads, ff, dropout, activation, norm_first, dtype=F64, rng=0)
    ours.load_torch_state_dict(ref.state_dict())
    return ours


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]])
def test_encoder_layer_matches_torch_outputs_and_all_gradients(norm_first, activation, lengths, rng, each_backend):
    ref = torch_layer(activation=activation, norm_first=norm_first)
    ours = copy_of(ref, activation=activation, norm_first=norm_first)
    x = rng.standard_normal((3, 5, 8))
    xt = torch.tensor(x, requires_grad=True)
    kpm = None if lengths is None else torch.arange(5)[None, :] >= torch.tensor(lengths)[:, None]
    yt = ref(xt, src_key_padding_mask=kpm)
    y = ours(x, lengths=lengths)
    assert_rel(y, yt)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    assert_rel(ours.backward(gy), xt.grad)
    named = dict(ref.named_parameters())
    for key in ours.torch_state_dict():  # PyTorch's names; our gradients in PyTorch's layout
        assert_rel(ours_grad(ours, key), named[key].grad)


def ours_grad(ours, torch_key):
    """Our gradient of the tensor PyTorch calls ``torch_key``, in PyTorch's layout."""
    part, name = torch_key.split(".", 1)
    layer = getattr(ours, part)
    if part == "self_attn":
        return getattr(layer, name.replace(".", "_")).grad
    if part.startswith("linear"):
        return layer.W.grad.T if name == "weight" else layer.b.grad
    return layer.gamma.grad if name == "weight" else layer.beta.grad


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_passes_gradcheck(norm_first, rng, each_backend):
    layer = nn.TransformerEncoderLayer(
        6, 3, 10, dropout=0.0, activation="gelu", norm_first=norm_first, dtype=F64, rng=1
    )
    for p in layer.parameters():
        p.data[...] += 0.1 * rng.standard_normal(p.shape)
    lengths = np.array([4, 2])
    gradcheck(lambda a: layer.begin_update(a, lengths=lengths), rng.standard_normal((2, 4, 6)))


def test_a_torch_encoder_stack_loads_into_a_sequential_of_layers(rng):
    torch.manual_seed(0)
    block = torch.nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True, norm_first=True, dtype=torch.float64)
    stack = torch.nn.TransformerEncoder(block, num_layers=3, enable_nested_tensor=False)
    ours = nn.Sequential(*[nn.TransformerEncoderLayer(8, 2, 16, 0.0, norm_first=True, dtype=F64) for _ in range(3)])
    ours.load_torch_state_dict(stack.state_dict())
    x = rng.standard_normal((2, 6, 8))
    assert_rel(ours(x), stack(torch.tensor(x)))
    back = ours.torch_state_dict(like=stack.state_dict())
    assert list(back) == list(stack.state_dict())


def test_training_mode_dropout_matches_torch_given_the_same_masks(rng, each_backend):
    ref = torch_layer(dropout=0.25, norm_first=True)
    ours = copy_of(ref, dropout=0.25, norm_first=True)
    gens = {}
    for name in ("self_attn", "dropout", "dropout1", "dropout2"):
        g = np.random.Generator(np.random.PCG64())
        g.bit_generator.state = getattr(ours, name).rng.bit_generator.state
        gens[name] = g
    x = rng.standard_normal((3, 5, 8))
    y = ours(x)

    def drop(name, t):  # nn.Dropout's draws, replayed
        keep = uniform_draws(gens[name], tuple(t.shape)) >= drop_threshold(0.25)
        return t * torch.tensor(keep / 0.75)

    xt = torch.tensor(x, requires_grad=True)
    u = ref.norm1(xt)
    heads = [
        torch.nn.functional.linear(
            u, ref.self_attn.in_proj_weight[i * 8 : (i + 1) * 8], ref.self_attn.in_proj_bias[i * 8 : (i + 1) * 8]
        )
        .reshape(3, 5, 2, 4)
        .transpose(1, 2)
        for i in range(3)
    ]
    keep = uniform_draws(gens["self_attn"], (3, 2, 5, 5)) >= drop_threshold(0.25)
    p = torch.softmax(heads[0] @ heads[1].transpose(-1, -2) / 2.0, -1) * torch.tensor(keep / 0.75)
    a = ref.self_attn.out_proj((p @ heads[2]).transpose(1, 2).reshape(3, 5, 8))
    h = xt + drop("dropout1", a)
    f = ref.linear2(drop("dropout", torch.relu(ref.linear1(ref.norm2(h)))))
    yt = h + drop("dropout2", f)
    assert_rel(y, yt)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    assert_rel(ours.backward(gy), xt.grad)
    assert_rel(ours.linear1.W.grad, ref.linear1.weight.grad.T)
    with nn.no_grad():
        assert_rel(ours.eval()(x), ref.eval()(torch.tensor(x)))


def test_a_shared_encoder_used_twice_in_a_graph_sums_its_gradients_as_torch(rng, tmp_path):
    ref = torch_layer(norm_first=True, activation="gelu")
    ours = copy_of(ref, norm_first=True, activation="gelu")
    a, b = nn.Input((5, 8)), nn.Input((4, 8))
    lengths = nn.Input((), dtype=np.int64)
    pooled = [nn.Mean(1)(ours(a, lengths=lengths)), nn.Mean(1)(ours(b))]
    model = nn.Graph([a, b, lengths], nn.Dense(16, 3, dtype=F64, rng=0)(nn.Concat()(*pooled)))
    head = model._modules[[k for k, m in model._modules.items() if isinstance(m, nn.Dense)][0]]
    xa, xb, lens = rng.standard_normal((2, 5, 8)), rng.standard_normal((2, 4, 8)), np.array([3, 5])
    out = model(xa, xb, lens)
    ta, tb = torch.tensor(xa, requires_grad=True), torch.tensor(xb, requires_grad=True)
    kpm = torch.arange(5)[None, :] >= torch.tensor(lens)[:, None]
    w, bias = torch.tensor(head.W.data, requires_grad=True), torch.tensor(head.b.data, requires_grad=True)
    yt = torch.cat([ref(ta, src_key_padding_mask=kpm).mean(1), ref(tb).mean(1)], dim=1) @ w + bias
    assert_rel(out, yt)
    gy = rng.standard_normal(out.shape)
    yt.backward(torch.tensor(gy))
    ga, gb, gl = model.backward(gy)
    assert gl is None
    assert_rel(ga, ta.grad)
    assert_rel(gb, tb.grad)
    assert_rel(ours.self_attn.in_proj_weight.grad, ref.self_attn.in_proj_weight.grad)
    assert_rel(ours.norm1.gamma.grad, ref.norm1.weight.grad)
    assert_rel(head.W.grad, w.grad)
    model.save(tmp_path / "g.npz")
    again = nn.load(tmp_path / "g.npz")
    with nn.no_grad():
        assert np.array_equal(again.eval()(xa, xb, lens), model.eval()(xa, xb, lens))


def test_a_training_step_gives_the_same_bits_on_one_thread_and_on_two(rng):
    # 128 x 16 tokens: 2,048 rows, the parts kernels of tall inputs, and 128 x 4 heads of 16 x 16
    # attention weights, the attention's threaded path
    x = rng.standard_normal((128, 16, 16)).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for count in (1, 2):
        model = nn.Sequential(*[nn.TransformerEncoderLayer(16, 4, 32, 0.1, "gelu", True, rng=i) for i in range(2)])
        opt = optim.AdamW(model.parameters(), lr=1e-3)
        with kernels.parallel.num_threads(count):
            for _ in range(2):
                model(x)
                model.backward(gy)
                opt.step()
                opt.zero_grad()
        results.append([p.data.copy() for p in model.parameters()])
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_encoder_layer_refuses_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match=r"embed_dim \(10\) must be divisible by num_heads \(3\)"):
        nn.TransformerEncoderLayer(10, 3)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        nn.TransformerEncoderLayer(8, 2, activation="swish")
    with pytest.raises(ValueError, match="norm_first must be True or False"):
        nn.TransformerEncoderLayer(8, 2, norm_first="yes")
    layer = nn.TransformerEncoderLayer(8, 2, 16)
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, length, 8\) \(batch first\), got \(5, 8\)"):
        layer(np.zeros((5, 8), np.float32))
    with pytest.raises(ValueError, match=r"lengths must be in 1..4"):
        layer(np.zeros((2, 4, 8), np.float32), lengths=[4, 5])
