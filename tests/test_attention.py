"""MultiHeadAttention: PyTorch's nn.MultiheadAttention(batch_first=True) in float64 (outputs, the
inputs' and every parameter's gradients; self- and cross-attention, causal and padding masks,
without biases), its state dict copied in both ways, finite differences on both backends,
dropout on the attention weights against its own mask replayed in PyTorch, masked weights and
gradients exactly zero, the kernels' NumPy and numba twins and their threads, save/load, a Graph
with lengths from an Input, and the errors for bad input."""

import numpy as np
import pytest

from tinygrad_free import gradcheck, kernels, nn
from tinygrad_free.kernels import attention
from tinygrad_free.nn.dropout import drop_threshold, uniform_draws

F64 = np.float64
torch = pytest.importorskip("torch")


def assert_rel(got, want, tol=1e-6):
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300) < tol


def pair(e=12, h=3, bias=True, causal=False, dropout=0.0, seed=0):
    """Our layer and PyTorch's with the same weights (PyTorch's state dict copied into ours)."""
    torch.manual_seed(seed)
    ref = torch.nn.MultiheadAttention(e, h, dropout=dropout, bias=bias, batch_first=True, dtype=torch.float64)
    if bias:
        with torch.no_grad():
            ref.in_proj_bias.normal_()
            ref.out_proj.bias.normal_()
    ours = nn.MultiHeadAttention(e, h, dropout=dropout, bias=bias, causal=causal, dtype=F64, rng=seed)
    ours.load_torch_state_dict(ref.state_dict())
    return ours, ref


def torch_masks(t, s, causal, lengths):
    kpm = None if lengths is None else torch.arange(s)[None, :] >= torch.tensor(lengths)[:, None]
    am = torch.triu(torch.ones(t, s, dtype=torch.bool), 1) if causal else None
    return kpm, am


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lengths", [None, [5, 1, 3]])
def test_attention_matches_torch_outputs_and_all_gradients(cross, causal, lengths, rng, each_backend):
    n, t, s, e = 3, 4, 5 if cross else 4, 12
    if lengths is not None and not cross:
        lengths = [4, 1, 3]
    ours, ref = pair(causal=causal)
    x = rng.standard_normal((n, t, e))
    kv = [rng.standard_normal((n, s, e)) for _ in range(2)] if cross else [x, x]
    xt = torch.tensor(x, requires_grad=True)
    kvt = [torch.tensor(a, requires_grad=True) for a in kv] if cross else [xt, xt]
    kpm, am = torch_masks(t, s, causal, lengths)
    yt, _ = ref(xt, *kvt, key_padding_mask=kpm, attn_mask=am, need_weights=False)
    y = ours(x, *kv, lengths=lengths) if cross else ours(x, lengths=lengths)
    assert_rel(y, yt)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    grads = ours.backward(gy)
    if cross:
        for g, want in zip(grads, [xt.grad] + [a.grad for a in kvt]):
            assert_rel(g, want)
    else:
        assert_rel(grads, xt.grad)
    for (name, p), (tname, tp) in zip(ours.named_parameters(), ref.named_parameters()):
        assert name.replace("out_proj_", "out_proj.") == tname
        assert_rel(p.grad, tp.grad)


def test_attention_without_biases_matches_torch_and_has_no_bias_tensors(rng):
    ours, ref = pair(bias=False)
    assert [n for n, _ in ours.named_parameters()] == ["in_proj_weight", "out_proj_weight"]
    assert list(ours.torch_tensors()) == list(ref.state_dict())
    x = rng.standard_normal((2, 3, 12))
    assert_rel(ours(x), ref(*[torch.tensor(x)] * 3, need_weights=False)[0])


@pytest.mark.parametrize("cross", [False, True])
def test_attention_passes_gradcheck_with_masks(cross, rng, each_backend):
    layer = nn.MultiHeadAttention(6, 2, causal=True, dtype=F64, rng=1)
    for p in layer.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    lengths = np.array([3, 1])
    x = rng.standard_normal((2, 3, 6))
    if cross:
        k, v = rng.standard_normal((2, 4, 6)), rng.standard_normal((2, 4, 6))
        gradcheck(lambda a, b, c: layer.begin_update(a, b, c, lengths=lengths), x, k, v)
    else:
        gradcheck(lambda a: layer.begin_update(a, lengths=lengths), x)


def test_the_state_dict_goes_back_to_torch_with_torch_names(rng):
    ours, _ = pair(e=8, h=2, seed=3)
    fresh = torch.nn.MultiheadAttention(8, 2, batch_first=True, dtype=torch.float64)
    fresh.load_state_dict({k: torch.tensor(v) for k, v in ours.torch_state_dict(like=fresh.state_dict()).items()})
    x = rng.standard_normal((2, 5, 8))
    assert_rel(ours(x), fresh(*[torch.tensor(x)] * 3, need_weights=False)[0])


def test_masked_weights_and_their_gradients_are_exactly_zero(rng, each_backend):
    layer = nn.MultiHeadAttention(4, 2, dtype=F64, rng=0)
    q, kv = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4))
    lengths = np.array([2, 5])
    layer(q, kv, kv.copy(), lengths=lengths)
    _, _, _, _, p, _, _ = layer._saved
    assert np.all(p[0, :, :, 2:] == 0) and np.all(p[1] > 0)
    _, dk, dv = layer.backward(rng.standard_normal((2, 3, 4)))
    assert np.all(dk[0, 2:] == 0) and np.all(dv[0, 2:] == 0)  # keys past the length get nothing
    causal = nn.MultiHeadAttention(4, 1, causal=True, dtype=F64, rng=0)
    causal(q)
    p = causal._saved[4]
    assert np.all(np.triu(p[0, 0], 1) == 0) and np.allclose(p.sum(-1), 1)


def test_dropout_on_the_weights_matches_torch_given_the_same_mask(rng, each_backend):
    ours, ref = pair(e=8, h=2, dropout=0.3)
    mirror = np.random.Generator(np.random.PCG64())
    mirror.bit_generator.state = ours.rng.bit_generator.state
    x = rng.standard_normal((3, 4, 8))
    y = ours(x)
    keep = uniform_draws(mirror, (3, 2, 4, 4)) >= drop_threshold(0.3)
    assert 0.5 < keep.mean() < 0.9
    xt = torch.tensor(x, requires_grad=True)
    w_in, b_in = ref.in_proj_weight, ref.in_proj_bias
    q, k, v = (torch.nn.functional.linear(xt, w_in[i * 8 : (i + 1) * 8], b_in[i * 8 : (i + 1) * 8]) for i in range(3))
    heads = [a.reshape(3, 4, 2, 4).transpose(1, 2) for a in (q, k, v)]
    p = torch.softmax(heads[0] @ heads[1].transpose(-1, -2) / 2.0, -1) * torch.tensor(keep) / 0.7
    yt = ref.out_proj((p @ heads[2]).transpose(1, 2).reshape(3, 4, 8))
    assert_rel(y, yt)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    assert_rel(ours.backward(gy), xt.grad)
    assert_rel(ours.in_proj_weight.grad, ref.in_proj_weight.grad)
    with nn.no_grad():
        assert_rel(ours.eval()(x), ref.eval()(*[torch.tensor(x)] * 3, need_weights=False)[0])  # eval: no dropout


@pytest.mark.parametrize("dtype", [np.float32, F64])
def test_attention_kernel_twins_agree_with_masks_and_dropout(dtype, rng):
    n, h, t, s, e = 5, 2, 7, 6, 8
    q = rng.standard_normal((n, t, e)).astype(dtype)
    kv = rng.standard_normal((n, s, 2 * e)).astype(dtype)
    k, v = kv[:, :, :e], kv[:, :, e:]  # column blocks of one array, as self-attention hands them
    draws = uniform_draws(np.random.default_rng(0), (n, h, t, s))
    lengths = np.array([6, 1, 3, 6, 2])
    gout = rng.standard_normal((n, t, e)).astype(dtype)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    results = []
    for fwd, bwd in (
        (attention.attention_forward_numpy, attention.attention_backward_numpy),
        (attention.attention_forward_numba, attention.attention_backward_numba),
    ):
        p, out = np.empty((n, h, t, s), dtype), np.empty((n, t, e), dtype)
        fwd(q, k, v, 0.5, True, lengths, draws, 2**30, 4 / 3, p, out)
        grads = [np.empty_like(q), np.empty((n, s, e), dtype), np.empty((n, s, e), dtype)]
        bwd(q, k, v, p, draws, 2**30, 4 / 3, 0.5, gout, *grads)
        results.append([p, out, *grads])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())


def test_attention_kernels_give_the_same_bits_on_one_thread_and_on_several(rng):
    n, h, t, e = 9, 4, 6, 16
    qkv = rng.standard_normal((n, t, 3 * e)).astype(np.float32)
    q, k, v = qkv[:, :, :e], qkv[:, :, e : 2 * e], qkv[:, :, 2 * e :]
    draws = uniform_draws(np.random.default_rng(1), (n, h, t, t))
    gout = rng.standard_normal((n, t, e)).astype(np.float32)
    runs = []
    for on in (False, True):
        p, out = np.empty((n, h, t, t), np.float32), np.empty((n, t, e), np.float32)
        dqkv = np.empty_like(qkv)
        with kernels.parallel.num_threads(2 if on else 1):
            attention.attention_forward_numba(q, k, v, 0.25, False, None, draws, 2**29, 8 / 7, p, out, on_threads=on)
            attention.attention_backward_numba(
                q,
                k,
                v,
                p,
                draws,
                2**29,
                8 / 7,
                0.25,
                gout,
                dqkv[..., :e],
                dqkv[..., e : 2 * e],
                dqkv[..., 2 * e :],
                on_threads=on,
            )
        runs.append((p, out, dqkv))
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


def test_one_attention_layer_used_twice_sums_its_gradients_and_saves(rng, tmp_path):
    layer = nn.MultiHeadAttention(6, 3, causal=True, dropout=0.2, dtype=F64, rng=4)
    a, b = nn.Input((4, 6)), nn.Input((5, 6))
    lengths = nn.Input((), dtype=np.int64)
    out = nn.Concat(axis=1)(layer(a), layer(b, lengths=lengths))
    model = nn.Graph([a, b, lengths], out)
    xa, xb, lens = rng.standard_normal((2, 4, 6)), rng.standard_normal((2, 5, 6)), np.array([5, 2])
    model.eval()
    gradcheck(model, xa, xb, lens)
    model.save(tmp_path / "m.npz")
    again = nn.load(tmp_path / "m.npz")
    with nn.no_grad():
        assert np.array_equal(again.eval()(xa, xb, lens), model(xa, xb, lens))
    inner = [m for m in again.modules() if isinstance(m, nn.MultiHeadAttention)]
    assert len(inner) == 1 and inner[0].causal and inner[0].dropout == 0.2


def test_attention_refuses_bad_arguments_shapes_and_lengths():
    with pytest.raises(ValueError, match=r"embed_dim \(10\) must be divisible by num_heads \(4\)"):
        nn.MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="dropout must be a probability"):
        nn.MultiHeadAttention(8, 2, dropout=1.0)
    layer = nn.MultiHeadAttention(8, 2)
    x = np.zeros((2, 3, 8), np.float32)
    with pytest.raises(
        ValueError, match=r"expected input of shape \(batch, length, 8\) \(batch first\), got \(2, 3, 6\)"
    ):
        layer(np.zeros((2, 3, 6), np.float32))
    with pytest.raises(ValueError, match="expected float32 input"):
        layer(x.astype(F64))
    with pytest.raises(TypeError, match="takes one input .* or three"):
        layer(x, x)
    with pytest.raises(ValueError, match="key and value must have one shape"):
        layer(x, np.zeros((2, 4, 8), np.float32), np.zeros((2, 5, 8), np.float32))
    with pytest.raises(ValueError, match=r"lengths must be in 1..3 \(the keys' length\), got values from 0 to 2"):
        layer(x, lengths=[0, 2])
    with pytest.raises(ValueError, match=r"lengths must be integers of shape \(2,\)"):
        layer(x, lengths=[1.0, 2.0])
