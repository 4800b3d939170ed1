"""Embedding against PyTorch's (float64: the lookup and the scatter-added gradient, padding_idx),
finite differences, the scatter-add's twins, PyTorch weights, save/load, a Graph of tokens, and the
errors for float, negative and out-of-range indices."""

import numpy as np
import pytest

from tinygrad_free import gradcheck, kernels, nn

torch = pytest.importorskip("torch")
F64 = np.float64


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_pytorch_lookup_and_weight_gradient(shape, padding_idx, rng, each_backend):
    emb = nn.Embedding(6, 4, padding_idx=padding_idx, dtype=F64, rng=0)
    ref = torch.nn.Embedding(6, 4, padding_idx=padding_idx).double()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(emb.W.data))
    idx = rng.integers(0, 6, shape)
    idx.flat[:3] = [2, 5, 2]  # a row used twice, the padding rows
    y = emb(idx)
    yt = ref(torch.tensor(idx))
    assert y.shape == shape + (4,)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    g = rng.standard_normal(y.shape)
    (yt * torch.tensor(g)).sum().backward()
    assert emb.backward(g) is None  # indices get no gradient
    np.testing.assert_allclose(emb.W.grad, ref.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    if padding_idx is not None:
        assert np.all(emb.W.data[padding_idx] == 0) and np.all(emb.W.grad[padding_idx] == 0)


def test_finite_differences_agree_with_the_scatter_add(rng, each_backend):
    # (the padding row is left out: its zero gradient is by definition, PyTorch's, not d/dW)
    gradcheck(nn.Embedding(4, 3, padding_idx=1, dtype=F64, rng=0), np.array([[0, 3, 3], [2, 0, 2]]))
    gradcheck(nn.Embedding(4, 3, dtype=F64, rng=0), np.array([[0, 3, 3], [1, 0, 2]]))


@pytest.mark.parametrize("dtype", [np.float32, F64])
def test_the_scatter_add_twins_agree_bit_for_bit(rng, dtype):
    idx = rng.integers(0, 50, 4000).astype(np.int64)
    g = rng.standard_normal((4000, 16)).astype(dtype)
    a = kernels.NUMPY.embedding_backward(idx, g, np.ones((50, 16), dtype), 7)
    b = kernels.NUMBA.embedding_backward(idx, g, np.ones((50, 16), dtype), 7)
    np.testing.assert_array_equal(a, b)
    assert np.all(a[7] == 1)


def test_a_pytorch_embedding_loads_and_saves_round_trip(tmp_path, rng):
    ref = torch.nn.Embedding(9, 5, padding_idx=0)
    emb = nn.Embedding(9, 5, padding_idx=0)
    nn.Sequential(emb).load_torch_state_dict(ref.state_dict())
    idx = rng.integers(0, 9, (4, 6))
    np.testing.assert_array_equal(emb(idx), ref(torch.tensor(idx)).detach().numpy())
    emb.save(tmp_path / "e.npz")
    again = nn.load(tmp_path / "e.npz")
    assert (
        again.get_config()
        == emb.get_config()
        == {
            "num_embeddings": 9,
            "embedding_dim": 5,
            "padding_idx": 0,
            "dtype": "float32",
        }
    )
    np.testing.assert_array_equal(again(idx), emb(idx))


def test_tokens_through_an_integer_graph_input_train_the_table(rng):
    tokens = nn.Input((6,), dtype=np.int64)
    emb = nn.Embedding(10, 4, rng=0)
    model = nn.Graph(
        inputs=tokens, outputs=nn.Dense(4, 2, rng=1)(nn.LSTM(4, 4, return_sequences=False, rng=2)(emb(tokens)))
    )
    idx = rng.integers(0, 10, (5, 6))
    out = model(idx)
    assert out.shape == (5, 2)
    before = emb.W.data.copy()
    assert model.backward(np.ones_like(out)) is None
    used = np.unique(idx)
    assert np.all(emb.W.grad[used] != 0) and np.all(np.delete(emb.W.grad, used, axis=0) == 0)
    np.testing.assert_array_equal(emb.W.data, before)


def test_float_negative_and_out_of_range_indices_are_refused():
    emb = nn.Embedding(5, 3)
    with pytest.raises(ValueError, match=r"indices must be integers in \[0, 4\], got dtype float64"):
        emb(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"indices must be integers in \[0, 4\], got dtype bool"):
        emb(np.array([True, False]))
    with pytest.raises(ValueError, match=r"indices must be in \[0, 4\] \(num_embeddings=5\), got -1"):
        emb(np.array([[0, -1]]))
    with pytest.raises(ValueError, match=r"indices must be in \[0, 4\] \(num_embeddings=5\), got 5"):
        emb(np.array([4, 5]))
    with pytest.raises(ValueError, match=r"padding_idx must be in \[-5, 4\]"):
        nn.Embedding(5, 3, padding_idx=5)
    with pytest.raises(ValueError, match="embedding_dim must be a positive integer"):
        nn.Embedding(5, 0)
    tokens = nn.Input((4,))  # no dtype: float32, which an Embedding refuses when the graph is built
    with pytest.raises(ValueError, match="indices must be integers"):
        emb(tokens)
