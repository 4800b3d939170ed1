"""Graph (functional API), merge layers, Residual, and saving networks that share modules."""

import numpy as np
import pytest

from tinygrad_free import gradcheck, nn

F64 = np.float64


def dense(i, o, act=None, seed=0, dtype=F64):
    return nn.Dense(i, o, activation=act, dtype=dtype, rng=seed)


def away_from_kink(x):
    return np.where(np.abs(x) < 1e-3, 0.1, x)


@pytest.mark.parametrize(
    "make", [lambda: nn.Add(), lambda: nn.Multiply(), lambda: nn.Concat(), lambda: nn.Concat(axis=1)]
)
def test_merge_layers_pass_gradcheck(make, rng):
    gradcheck(make(), rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((3, 4)))


def test_concat_of_images_along_channels_passes_gradcheck(rng):
    gradcheck(nn.Concat(axis=1), rng.standard_normal((2, 1, 3, 2)), rng.standard_normal((2, 2, 3, 2)))


def test_residual_passes_gradcheck(rng, each_backend):
    block = nn.Sequential(dense(4, 4, "relu", 1), dense(4, 4, "tanh", 2))
    gradcheck(nn.Residual(block), away_from_kink(rng.standard_normal((3, 4))))


def test_a_graph_with_reuse_fan_out_and_two_inputs_passes_gradcheck(rng, each_backend):
    a, b = nn.Input(3, F64), nn.Input(3, F64)
    shared = dense(3, 3, "tanh", 1)
    h = nn.Add()(shared(a), shared(b))
    out = dense(6, 2, "sigmoid", 2)(nn.Concat()(shared(h), h))
    gradcheck(nn.Graph(inputs=[a, b], outputs=out), rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))


def test_the_issue_example_builds_runs_and_counts_parameters(rng):
    x = nn.Input(784)
    h = nn.Dense(784, 128, activation="relu")(x)
    r = nn.Add()(h, nn.Dense(128, 128, activation="tanh")(h))
    y = nn.Dense(256, 10)(nn.Concat()(r, h))
    model = nn.Graph(inputs=x, outputs=y)
    assert y.shape == (10,) and r.shape == (128,)
    out = model(rng.random((5, 784), dtype=np.float32))
    assert out.shape == (5, 10)
    assert model.backward(np.ones((5, 10), np.float32)).shape == (5, 784)
    assert model.num_parameters() == 784 * 128 + 128 + 128 * 128 + 128 + 256 * 10 + 10


def test_graph_summary_lists_nodes_inputs_shapes_and_shared_modules():
    x = nn.Input(4, name="pixels")
    d = nn.Dense(4, 4, activation="tanh")
    y = nn.Dense(4, 2)(d(d(x)))
    text = repr(nn.Graph(inputs=x, outputs=y))
    assert "pixels" in text and "Input" in text
    assert "dense_1  Dense(4, 4, activation='tanh')  dense" in text
    assert "shared with dense" in text and "(None, 2)" in text
    assert "30 parameters (shared modules counted once)" in text


def test_a_graph_input_that_reaches_no_output_is_an_error():
    a, b = nn.Input(3), nn.Input(3)
    with pytest.raises(ValueError, match=r"input 1 <Node Input shape=\(batch, 3\).*does not reach any output"):
        nn.Graph(inputs=[a, b], outputs=nn.Dense(3, 2)(a))


def test_an_output_that_depends_on_an_unlisted_input_is_an_error():
    a, b = nn.Input(3), nn.Input(3)
    with pytest.raises(ValueError, match="depends on <Node Input.*not among the graph's inputs"):
        nn.Graph(inputs=a, outputs=nn.Add()(a, b))


def test_a_cycle_is_an_error():
    x = nn.Input(3)
    d1 = nn.Dense(3, 3)(x)
    d2 = nn.Dense(3, 3)(d1)
    d1.call.args = (d2,)  # only possible by editing a node by hand
    with pytest.raises(ValueError, match="cycle"):
        nn.Graph(inputs=x, outputs=d2)


@pytest.mark.parametrize(
    "build, match",
    [
        (
            lambda x: nn.Dense(5, 2)(x),
            r"Dense\(5, 2\) cannot take inputs of shape \(batch, 4\).*expected input of shape \(batch, 5\)",
        ),
        (lambda x: nn.Add()(x, nn.Dense(4, 3)(x)), r"Add\(\) cannot take inputs.*one shape"),
        (lambda x: nn.Dense(4, 2, dtype=F64)(nn.Input(4, dtype=np.float32)), r"expected float64 input"),
    ],
)
def test_shape_and_dtype_mismatches_fail_when_the_graph_is_built(build, match):
    with pytest.raises(ValueError, match=match):
        build(nn.Input(4))


def test_graph_inputs_are_checked_when_called(rng):
    x = nn.Input(4)
    model = nn.Graph(inputs=x, outputs=nn.Dense(4, 2)(x))
    with pytest.raises(ValueError, match=r"Graph input 0: expected shape \(batch, 4\), got \(2, 5\)"):
        model(rng.random((2, 5), dtype=np.float32))
    with pytest.raises(TypeError, match="takes 1 input array"):
        model(rng.random((2, 4), dtype=np.float32), rng.random((2, 4), dtype=np.float32))


def test_mixing_nodes_and_arrays_in_one_call_is_an_error():
    with pytest.raises(TypeError, match="mix of Nodes and arrays"):
        nn.Add()(nn.Input(3), np.ones((1, 3)))


def test_bad_merge_inputs_are_named():
    with pytest.raises(ValueError, match="Add takes at least 2 inputs"):
        nn.Add()(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Concat: axis 0 is the batch axis"):
        nn.Concat(axis=0)(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="differ only along that axis"):
        nn.Concat()(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="Residual: the block's output has shape"):
        nn.Residual(nn.Dense(3, 2))(np.ones((2, 3), np.float32))


def roundtrip(model, tmp_path, *xs):
    model.eval()
    path = tmp_path / "m.npz"
    model.save(path)
    again = nn.load(path).eval()
    a, b = model(*xs), again(*xs)
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        np.testing.assert_array_equal(u, v)
    return again


def test_a_tied_sequential_is_saved_once_and_shared_again_after_load(tmp_path, rng):
    tied = nn.Dense(4, 4, activation="tanh", rng=1)
    model = nn.Sequential(nn.Dense(3, 4, rng=0), tied, tied, nn.Dense(4, 2, rng=2))
    again = roundtrip(model, tmp_path, rng.random((2, 3), dtype=np.float32))
    assert again[1] is again[2]
    assert [n for n, _ in again.named_parameters()] == [n for n, _ in model.named_parameters()]


def test_a_graph_with_two_inputs_two_outputs_and_reuse_round_trips(tmp_path, rng):
    a, b = nn.Input(3), nn.Input(3)
    shared = nn.Dense(3, 3, activation="relu", rng=1)
    m = nn.Multiply()(shared(a), shared(b))
    model = nn.Graph(inputs=[a, b], outputs=[nn.Dense(3, 2, rng=2)(m), m])
    again = roundtrip(model, tmp_path, rng.random((2, 3), dtype=np.float32), rng.random((2, 3), dtype=np.float32))
    assert again._node_calls[0].module is again._node_calls[1].module
    assert again.num_parameters() == model.num_parameters()


def test_a_parameter_shared_by_two_modules_is_shared_again_after_load(tmp_path, rng):
    d1, d2 = nn.Dense(4, 4, rng=0), nn.Dense(4, 4, activation="tanh", rng=1)
    d2.W = d1.W  # tied weights, separate biases
    model = nn.Sequential(d1, d2)
    again = roundtrip(model, tmp_path, rng.random((2, 4), dtype=np.float32))
    assert again[0].W is again[1].W and again[0].b is not again[1].b


class UserBlock(nn.Module):
    """A user container whose config holds a module."""

    def __init__(self, inner, scale=1.0):
        super().__init__()
        self.inner, self.scale = inner, scale

    def forward(self, x):
        return x + self.scale * self.inner(x)

    def backward(self, grad_out):
        return grad_out + self.inner.backward(self.scale * grad_out)

    def get_config(self):
        return {"inner": self.inner, "scale": self.scale}


def test_a_user_container_and_residuals_round_trip(tmp_path, rng):
    model = nn.Sequential(
        UserBlock(nn.Dense(3, 3, activation="tanh", rng=0), 0.5),
        nn.Residual(nn.Sequential(nn.Dense(3, 3, rng=1), nn.ReLU())),
    )
    again = roundtrip(model, tmp_path, rng.random((2, 3), dtype=np.float32))
    assert isinstance(again[0], UserBlock) and again[0].scale == 0.5


def test_a_user_class_named_like_a_builtin_does_not_replace_it_for_load(tmp_path, rng):
    class Dense(nn.Module):  # noqa: F811 (the point of the test)
        def forward(self, x):
            return x

        def get_config(self):
            return {}

    model = nn.Sequential(nn.Dense(3, 2, rng=0), Dense())
    again = roundtrip(model, tmp_path, rng.random((2, 3), dtype=np.float32))
    assert type(again[0]) is nn.Dense and type(again[1]) is Dense


@pytest.mark.parametrize(
    "write, match",
    [
        (lambda p: p.write_text("hello"), "not a zip archive"),
        (lambda p: np.save(p, np.ones(3)), r"a \.npy array"),
    ],
)
def test_loading_a_file_that_is_not_a_model_says_what_it_is(tmp_path, write, match):
    path = tmp_path / "thing"
    write(path)
    path = path if path.exists() else tmp_path / "thing.npy"
    with pytest.raises(ValueError, match=f"not a tinygrad_free model file.*{match}"):
        nn.load(path)


def test_running_buffers_are_saved_with_the_model(tmp_path):
    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("seen", np.zeros(1))

        def forward(self, x):
            self.seen += len(x)  # in place: persistent, not per call
            return x

        def backward(self, grad_out):
            return grad_out

        def get_config(self):
            return {}

    model = nn.Sequential(Counter())
    model(np.ones((3, 2)))
    model(np.ones((2, 2)))
    assert model.state_dict()["0.seen"][0] == 5
    model.save(tmp_path / "c.npz")
    assert nn.load(tmp_path / "c.npz")[0].seen[0] == 5


def test_trainer_fits_a_graph_with_a_reused_block(rng):
    from tinygrad_free import optim
    from tinygrad_free.train import Trainer

    x = rng.standard_normal((256, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    inp = nn.Input(6)
    block = nn.Residual(nn.Sequential(nn.Dense(8, 8, activation="tanh", rng=1), nn.Dense(8, 8, rng=2)))
    h = block(block(nn.Dense(6, 8, activation="relu", rng=0)(inp)))
    model = nn.Graph(inputs=inp, outputs=nn.Dense(8, 2, rng=3)(h))
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2), progress=False)
    history = trainer.fit(x, y, epochs=5, batch_size=32, seed=0)
    losses = history.history["train_loss"]
    assert history.status == "completed" and losses[-1] < 0.5 * losses[0]


def test_a_cnn_graph_with_two_conv_branches_passes_gradcheck_and_round_trips(rng, tmp_path):
    x = nn.Input((1, 7, 9), F64)
    a = nn.Conv2D(1, 2, 3, padding=1, activation="tanh", dtype=F64, rng=0)(x)
    b = nn.Conv2D(1, 2, (1, 3), padding=(0, 1), dtype=F64, rng=1)(x)
    h = nn.MaxPool2D(2)(nn.Concat(axis=1)(a, b))  # channels joined: (4, 3, 4)
    assert h.shape == (4, 3, 4)
    y = nn.Dense(48, 3, dtype=F64, rng=2)(nn.Flatten()(h))
    model = nn.Graph(inputs=x, outputs=y)
    gradcheck(model, rng.standard_normal((2, 1, 7, 9)), max_checks=40)
    again = roundtrip(model, tmp_path, rng.standard_normal((2, 1, 7, 9)))
    assert again.num_parameters() == model.num_parameters()


class Halves(nn.Module):
    """Two outputs: the first and the second half of the features."""

    _writes_inputs = False

    def forward(self, x):
        if self.recording:
            self._h = x.shape[1] // 2
        h = x.shape[1] // 2
        return x[:, :h].copy(), x[:, h:].copy()

    def backward(self, grads):
        ga, gb = grads
        n = self._h
        a = np.zeros((ga.shape[0] if ga is not None else gb.shape[0], n)) if ga is None else ga
        b = np.zeros((a.shape[0], n)) if gb is None else gb
        return np.concatenate([a, b], axis=1)

    def get_config(self):
        return {}


class Masked(nn.Module):
    """x with the features from `lengths` on set to 0 (a keyword input: no gradient)."""

    _writes_inputs = False

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x, lengths=None):
        mask = np.arange(x.shape[1])[None, :] < (lengths[:, None] if lengths is not None else x.shape[1])
        if self.recording:
            self._mask = mask
        return x * mask * self.scale

    def backward(self, g):
        return g * self._mask * self.scale

    def get_config(self):
        return {"scale": self.scale}


def test_a_module_with_two_outputs_is_two_nodes_and_gets_a_tuple_of_gradients(rng, tmp_path):
    x = nn.Input(4, dtype=F64)
    a, b = Halves()(nn.Dense(4, 4, dtype=F64, rng=0)(x))
    model = nn.Graph(inputs=x, outputs=[nn.Dense(2, 3, dtype=F64, rng=1)(a), b])
    assert "halves[0]" in model.summary() and "halves[1]" in model.summary()
    gradcheck(model, rng.standard_normal((5, 4)))
    only_a = nn.Graph(inputs=x, outputs=nn.Dense(2, 3, dtype=F64, rng=1)(a))  # b read by nothing: None
    gradcheck(only_a, rng.standard_normal((5, 4)))
    model.save(tmp_path / "g.npz")
    xs = rng.standard_normal((3, 4))
    for got, want in zip(nn.load(tmp_path / "g.npz")(xs), model(xs)):
        np.testing.assert_array_equal(got, want)


def test_an_integer_input_reaches_a_keyword_of_a_call_and_gets_no_gradient(rng, tmp_path):
    x, lengths = nn.Input(5, dtype=F64), nn.Input((), dtype=np.int64)
    h = nn.Dense(5, 5, dtype=F64, rng=0)(x)
    y = Masked(scale=2.0)(h, lengths=lengths)
    model = nn.Graph(inputs=[x, lengths], outputs=nn.Dense(5, 2, dtype=F64, rng=1)(y))
    assert "lengths=input_1" in model.summary()
    xs, ls = rng.standard_normal((4, 5)), np.array([1, 5, 3, 2])
    out = model(xs, ls)
    gx, gl = model.backward(np.ones_like(out))
    assert gl is None and gx.shape == (4, 5)
    gradcheck(model, xs, ls)
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(nn.load(tmp_path / "m.npz")(xs, ls), model(xs, ls))


def test_a_keyword_constant_of_a_call_is_kept_and_saved(rng, tmp_path):
    x = nn.Input(5, dtype=F64)
    model = nn.Graph(inputs=x, outputs=Masked()(x, lengths=None))
    model.save(tmp_path / "c.npz")
    xs = rng.standard_normal((2, 5))
    np.testing.assert_array_equal(nn.load(tmp_path / "c.npz")(xs), xs)


def test_an_array_as_a_keyword_of_a_call_on_nodes_is_refused():
    x = nn.Input(5)
    with pytest.raises(TypeError, match=r"got an array for 'lengths': in a Graph, arrays come in through nn.Input"):
        Masked()(x, lengths=np.array([1, 2]))


def test_graph_files_written_before_calls_load():
    """The 'nodes' format of files written before keyword inputs and several outputs."""
    from tinygrad_free.nn.serialize import from_spec, to_spec

    x = nn.Input(3)
    g = nn.Graph(inputs=x, outputs=nn.Dense(3, 2, rng=0)(x))
    spec = to_spec(g)
    calls = spec["config"].pop("calls")
    spec["config"]["nodes"] = [{"module": c["module"], "inputs": c["args"]} for c in calls]
    again = from_spec(spec)
    assert isinstance(again, nn.Graph) and again.num_parameters() == g.num_parameters()
