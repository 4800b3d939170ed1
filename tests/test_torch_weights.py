"""PyTorch weights in and out: a PyTorch MLP and a CNN with BatchNorm copied into the matching
tinygrad_free architecture give the same outputs (float64, 1e-6 relative), and back; plain dicts of
arrays and safetensors files load without torch; a tensor that does not fit is named."""

from collections import OrderedDict

import numpy as np
import pytest

from tinygrad_free import nn

F64 = np.float64


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def ours_mlp():
    return nn.Sequential(
        nn.Dense(13, 16, activation="relu", dtype=F64),
        nn.Dense(16, 9, activation="tanh", dtype=F64),
        nn.Dense(9, 4, dtype=F64),
    )


def ours_cnn():
    return nn.Sequential(
        nn.Conv2D(3, 6, 3, padding=1, dtype=F64),
        nn.BatchNorm(6, dtype=F64),
        nn.ReLU(),
        nn.MaxPool2D(2),
        nn.Conv2D(6, 8, (3, 2), stride=(1, 2), dtype=F64),
        nn.BatchNorm(8, dtype=F64),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Dense(8 * 3 * 2, 10, dtype=F64),
        nn.BatchNorm(10, dtype=F64),
        nn.Tanh(),
        nn.Dense(10, 5, dtype=F64),
    )


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def torch_mlp(torch):
    t = torch.nn
    return t.Sequential(t.Linear(13, 16), t.ReLU(), t.Linear(16, 9), t.Tanh(), t.Linear(9, 4)).double()


def torch_cnn(torch):
    t = torch.nn
    model = t.Sequential(
        t.Conv2d(3, 6, 3, padding=1),
        t.BatchNorm2d(6),
        t.ReLU(),
        t.MaxPool2d(2),
        t.Conv2d(6, 8, (3, 2), stride=(1, 2)),
        t.BatchNorm2d(8),
        t.ReLU(),
        t.Flatten(),
        t.Dropout(0.3),
        t.Linear(48, 10),
        t.BatchNorm1d(10),
        t.Tanh(),
        t.Linear(10, 5),
    ).double()
    with torch.no_grad():  # a few training batches: running statistics that are not 0 and 1
        for _ in range(3):
            model(torch.randn(16, 3, 10, 10, dtype=torch.float64) * 2 + 0.5)
    return model.eval()


def test_a_pytorch_mlp_copied_in_gives_pytorch_outputs_and_copies_back(torch, rng):
    torch.manual_seed(0)
    tm, ours = torch_mlp(torch), ours_mlp()
    ours.load_torch_state_dict(tm.state_dict())
    np.testing.assert_array_equal(ours[0].W.data, tm[0].weight.detach().numpy().T)
    x = rng.standard_normal((7, 13))
    assert rel_err(ours.eval()(x), tm(torch.from_numpy(x)).detach().numpy()) < 1e-6
    # back: our (changed) weights under the PyTorch model's names, by position
    for p in ours.parameters():
        p.data[...] = rng.standard_normal(p.data.shape)
    state = ours.torch_state_dict(like=tm.state_dict())
    assert list(state) == list(tm.state_dict())
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    assert rel_err(ours(x), tm(torch.from_numpy(x)).detach().numpy()) < 1e-6


def test_a_pytorch_cnn_with_batchnorm_copied_in_and_back(torch, rng):
    torch.manual_seed(1)
    tm, ours = torch_cnn(torch), ours_cnn()
    ours.load_torch_state_dict(tm.state_dict())
    x = rng.standard_normal((5, 3, 10, 10))
    assert rel_err(ours.eval()(x), tm(torch.from_numpy(x)).detach().numpy()) < 1e-6
    np.testing.assert_array_equal(ours[5].running_var, tm[5].running_var.numpy())
    # back, layer for layer: our own names are PyTorch's ("0.weight", "1.running_mean", ...)
    ours.train()
    ours(rng.standard_normal((8, 3, 10, 10)))  # moves our running statistics
    fresh = torch_cnn(torch)
    state = ours.torch_state_dict()
    assert list(state) == list(fresh.state_dict())
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})  # strict
    assert rel_err(ours.eval()(x), fresh(torch.from_numpy(x)).detach().numpy()) < 1e-6


def test_a_plain_dict_of_arrays_and_a_safetensors_file_load_without_torch(tmp_path, rng):
    from tinygrad_free.exchange import read_safetensors, write_safetensors

    shapes = {"0.weight": (16, 13), "0.bias": (16,), "2.weight": (9, 16), "2.bias": (9,), "4.weight": (4, 9)}
    shapes["4.bias"] = (4,)
    state = OrderedDict((k, rng.standard_normal(s)) for k, s in shapes.items())
    write_safetensors(tmp_path / "torch.safetensors", state)
    ours = ours_mlp()
    ours.load_torch_state_dict(read_safetensors(tmp_path / "torch.safetensors")[0])
    np.testing.assert_array_equal(ours[1].W.data, state["2.weight"].T)
    np.testing.assert_array_equal(ours[2].b.data, state["4.bias"])
    x = rng.standard_normal((3, 13))
    manual = np.tanh(np.maximum(x @ state["0.weight"].T + state["0.bias"], 0) @ state["2.weight"].T + state["2.bias"])
    np.testing.assert_allclose(ours.eval()(x), manual @ state["4.weight"].T + state["4.bias"], rtol=1e-12)


def test_a_residual_network_matches_by_position(torch, rng):
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.norm, self.fc2 = torch.nn.Linear(6, 6), torch.nn.LayerNorm(6), torch.nn.Linear(6, 6)

        def forward(self, x):
            return x + self.fc2(torch.relu(self.norm(self.fc1(x))))

    tm = torch.nn.Sequential(torch.nn.Linear(4, 6), Block(), torch.nn.Linear(6, 2)).double()
    block = nn.Sequential(nn.Dense(6, 6, dtype=F64), nn.LayerNorm(6, dtype=F64), nn.ReLU(), nn.Dense(6, 6, dtype=F64))
    ours = nn.Sequential(nn.Dense(4, 6, dtype=F64), nn.Residual(block), nn.Dense(6, 2, dtype=F64))
    ours.load_torch_state_dict(tm.state_dict())
    x = rng.standard_normal((3, 4))
    assert rel_err(ours.eval()(x), tm(torch.from_numpy(x)).detach().numpy()) < 1e-6
    assert list(ours.torch_state_dict())[2:4] == ["1.block.0.weight", "1.block.0.bias"]


def test_a_tensor_that_does_not_fit_is_named_with_both_shapes_and_nothing_is_written(rng):
    state = OrderedDict((k, v) for k, v in ours_mlp().torch_state_dict().items())
    ours = ours_mlp()
    before = {k: v.copy() for k, v in ours.state_dict().items()}
    bad = OrderedDict(state)
    bad["1.weight"] = np.zeros((9, 15))
    msg = r"PyTorch tensor '1\.weight' does not fit Dense\(16, 9, activation='tanh'\) at '1': expected 'weight' of shape \(9, 16\), given shape \(9, 15\)"  # noqa: E501
    with pytest.raises(ValueError, match=msg):
        ours.load_torch_state_dict(bad)
    assert all(np.array_equal(v, before[k]) for k, v in ours.state_dict().items())
    renamed = OrderedDict((k.replace("0.bias", "0.running_mean"), v) for k, v in state.items())
    with pytest.raises(
        ValueError,
        match=r"no '0\.bias' for Dense\(13, 16, activation='relu'\) at '0': expected 'bias' of shape \(16,\)",
    ):
        ours.load_torch_state_dict(renamed)
    with pytest.raises(ValueError, match=r"no '2\.bias' for Dense\(9, 4\) at '2'"):
        ours.load_torch_state_dict(OrderedDict(list(state.items())[:-1]))
    with pytest.raises(
        ValueError, match=r"no tensor for '2\.weight' \(Dense\(9, 4\) at '2', expected PyTorch's 'weight'"
    ):
        ours.load_torch_state_dict(OrderedDict(list(state.items())[:-2]))
    longer = OrderedDict(state, extra=np.zeros(3))
    with pytest.raises(ValueError, match=r"1 tensor\(s\) more than the model takes, the first 'extra' of shape \(3,\)"):
        ours.load_torch_state_dict(longer)
    swapped = OrderedDict([("a.running_mean", np.zeros(16))] + list(state.items()))
    with pytest.raises(
        ValueError, match=r"PyTorch tensor 'a\.running_mean' of shape \(16,\) does not fit Dense\(13, 16"
    ):
        ours.load_torch_state_dict(swapped)


def test_a_sorted_safetensors_file_of_a_long_sequential_loads_in_natural_order(torch, tmp_path, rng):
    st = pytest.importorskip("safetensors.torch")
    from tinygrad_free.exchange import read_safetensors

    layers = []
    for i in range(12):  # indices 0..22: sorted by name, "10.weight" comes before "2.weight"
        layers += [torch.nn.Linear(4 + i, 5 + i), torch.nn.ReLU()]
    tm = torch.nn.Sequential(*layers[:-1]).double()
    st.save_file(tm.state_dict(), tmp_path / "long.safetensors")
    state = read_safetensors(tmp_path / "long.safetensors")[0]
    assert list(state)[:3] == ["0.bias", "0.weight", "10.bias"]
    ours = nn.Sequential(*[nn.Dense(4 + i, 5 + i, activation="relu" if i < 11 else None, dtype=F64) for i in range(12)])
    ours.load_torch_state_dict(state)
    x = rng.standard_normal((3, 4))
    assert rel_err(ours.eval()(x), tm(torch.from_numpy(x)).detach().numpy()) < 1e-6


def test_a_layer_with_weights_but_no_torch_tensors_is_refused_by_name():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(np.ones(1))

    with pytest.raises(TypeError, match=r"test_torch_weights\.\S*Scale at '1' has weights but no torch_tensors\(\)"):
        nn.Sequential(nn.Dense(2, 1), Scale()).torch_state_dict()


def test_a_batchnorm_state_without_num_batches_tracked_loads(rng):
    bn = nn.BatchNorm(3)
    bn.load_torch_state_dict(
        {"weight": np.full(3, 2.0), "bias": np.ones(3), "running_mean": np.ones(3), "running_var": np.full(3, 4.0)}
    )
    np.testing.assert_array_equal(bn.running_var, [4, 4, 4])
    assert list(bn.torch_state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
