"""``model.save("m.safetensors")``: the weights as safetensors with the architecture in the metadata;
``nn.load`` reads it back bit for bit, and the safetensors package (NumPy and PyTorch APIs) reads
the file; .npz stays the default."""

import json
import zipfile

import numpy as np
import pytest

from tinygrad_free import nn
from tinygrad_free.exchange import read_safetensors, write_safetensors
from tinygrad_free.recipes import build_cnn


def trained_cnn():
    model = build_cnn(conv_channels=[4, 8], rng=0)
    model(np.random.default_rng(0).random((6, 1, 28, 28), dtype=np.float32))  # moves the running statistics
    return model


def test_a_model_round_trips_bit_for_bit_through_safetensors(tmp_path):
    model = trained_cnn()
    model.save(tmp_path / "m.safetensors")
    loaded = nn.load(tmp_path / "m.safetensors")
    assert type(loaded) is nn.Sequential and len(loaded) == len(model)
    a, b = model.state_dict(), loaded.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k
    x = np.random.default_rng(1).random((3, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(loaded.eval()(x), model.eval()(x))
    loaded.save(tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "m.safetensors").read_bytes()


def test_the_safetensors_package_reads_the_file_and_its_architecture(tmp_path):
    st = pytest.importorskip("safetensors")
    from safetensors.numpy import load_file

    model = trained_cnn()
    model.save(tmp_path / "m.safetensors")
    tensors = load_file(tmp_path / "m.safetensors")
    state = model.state_dict()
    assert sorted(tensors) == sorted(state)
    for k, v in state.items():
        np.testing.assert_array_equal(tensors[k], v)
    with st.safe_open(tmp_path / "m.safetensors", framework="np") as f:
        spec = json.loads(f.metadata()["architecture"])
    assert spec["class"] == "Sequential" or spec["class"].endswith(".Sequential")


def test_pytorch_reads_the_file(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from safetensors.torch import load_file

    model = trained_cnn()
    model.save(tmp_path / "m.safetensors")
    tensors = load_file(tmp_path / "m.safetensors")
    assert tensors["0.W"].dtype == torch.float32
    np.testing.assert_array_equal(tensors["1.running_var"].numpy(), model[1].running_var)


def test_ties_and_shared_modules_survive_safetensors(tmp_path):
    x, y = nn.Input(5, np.float64), nn.Input(5, np.float64)
    shared = nn.Dense(5, 3, dtype=np.float64)
    other = nn.Dense(5, 3, dtype=np.float64)
    other.W = shared.W  # a tie between two modules
    model = nn.Graph([x, y], nn.Add()(shared(x), shared(y), other(x)))
    model.save(tmp_path / "g.safetensors")
    loaded = nn.load(tmp_path / "g.safetensors")
    denses = [m for m in loaded.modules() if isinstance(m, nn.Dense)]
    assert len(denses) == 2 and denses[0].W is denses[1].W and denses[0].b is not denses[1].b
    xs = [np.random.default_rng(2).standard_normal((4, 5)) for _ in range(2)]
    np.testing.assert_array_equal(loaded.eval()(*xs), model.eval()(*xs))


def test_files_of_the_safetensors_package_are_read_and_npz_stays_the_default(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    tensors = {"b": np.arange(6, dtype=np.int64).reshape(2, 3), "a": np.float16([1.5, -2]), "m": np.ones((0, 4))}
    save_file(tensors, tmp_path / "theirs.safetensors", metadata={"k": "v"})
    got, metadata = read_safetensors(tmp_path / "theirs.safetensors")
    assert metadata == {"k": "v"} and sorted(got) == ["a", "b", "m"]
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v)
    nn.Sequential(nn.Dense(2, 2)).save(tmp_path / "m.npz")
    assert zipfile.is_zipfile(tmp_path / "m.npz")


def test_bad_files_and_tensors_are_refused_by_name(tmp_path):
    write_safetensors(tmp_path / "plain.safetensors", {"w": np.zeros(3)})
    with pytest.raises(ValueError, match="a safetensors file without a tinygrad_free architecture in its metadata"):
        nn.load(tmp_path / "plain.safetensors")
    good = (tmp_path / "plain.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[:-8])
    with pytest.raises(ValueError, match=r"not a valid safetensors file \(tensor 'w': offsets \[0, 24\] do not hold"):
        read_safetensors(tmp_path / "cut.safetensors")
    with pytest.raises(TypeError, match=r"tensor 'c' has dtype complex128; supported dtypes"):
        write_safetensors(tmp_path / "c.safetensors", {"c": np.zeros(2, complex)})
    with pytest.raises(TypeError, match="metadata maps strings to strings"):
        write_safetensors(tmp_path / "c.safetensors", {}, {"n": 1})
    (tmp_path / "junk.safetensors").write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a tinygrad_free model file"):
        nn.load(tmp_path / "junk.safetensors")
