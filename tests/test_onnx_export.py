"""ONNX export: every built-in layer and container runs in ONNX Runtime with our evaluation outputs
(float32, 1e-5 relative to the output's scale) at two batch sizes; user layers export through
their own ``to_onnx`` or are refused by name; the command-line script writes the same model."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from tinygrad_free import nn, recipes, training_run  # noqa: E402
from tinygrad_free.onnx import export  # noqa: E402
from tinygrad_free.onnx.recurrent import gru, lstm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 7)


def settle(model, seed=0):
    """Non-trivial BatchNorm statistics and affine parameters, so eval mode is really tested."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm, nn.LayerNorm)):
            m.gamma.data[...] = rng.uniform(0.5, 1.5, m.gamma.data.shape)
            m.beta.data[...] = rng.normal(0, 0.2, m.beta.data.shape)
        if isinstance(m, nn.BatchNorm):
            m.running_mean[...] = rng.normal(0, 0.2, m.running_mean.shape)
            m.running_var[...] = rng.uniform(0.5, 1.5, m.running_var.shape)
    return model


def run_onnx(path, *xs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, xs)))


def assert_matches(model, shapes, tmp_path, opset=17, seed=0):
    """Export ``model`` (inputs of ``shapes``, batch axis excluded), run it in ONNX Runtime at two
    batch sizes and compare with ``model.eval()``; returns the ModelProto."""
    path = tmp_path / "model.onnx"
    proto = export(model, path, [tuple(s) for s in shapes] if len(shapes) > 1 else tuple(shapes[0]), opset=opset)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    rng = np.random.default_rng(seed)
    model.eval()
    for n in BATCHES:
        xs = [rng.standard_normal((n, *s)).astype(np.float32) for s in shapes]
        ref = model(*xs)
        refs = ref if isinstance(ref, tuple) else (ref,)
        got = run_onnx(path, *xs)
        assert len(got) == len(refs)
        for g, r in zip(got, refs):
            assert g.shape == r.shape and g.dtype == np.float32
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * np.abs(r).max())
    return proto


def readme_mlp():
    return nn.Sequential(
        nn.Dense(784, 128, init="xavier", rng=0),
        nn.Tanh(),
        nn.Dense(128, 128, init="xavier", activation="relu", rng=1),
        nn.Dense(128, 10, init="xavier", rng=2),
    )


def readme_cnn():
    return nn.Sequential(
        nn.Conv2D(1, 32, 3, activation="relu", rng=0),
        nn.MaxPool2D(2),
        nn.Conv2D(32, 64, 3, activation="relu", rng=1),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dropout(0.5, rng=2),
        nn.Dense(1600, 10, rng=3),
    )


def readme_tied_resnet():
    act = nn.ReLU()
    block = nn.Sequential(nn.Dense(64, 64, activation="tanh", rng=1), nn.Dense(64, 64, rng=2))
    return nn.Sequential(
        nn.Dense(784, 64, rng=0), act, nn.Residual(block), act, nn.Residual(block), nn.Dense(64, 10, rng=3)
    )


def readme_two_input_graph():
    image, extra = nn.Input(784), nn.Input(16)
    h = nn.Dense(784, 128, activation="relu", rng=0)(image)
    r = nn.Add()(h, nn.Dense(128, 128, activation="tanh", rng=1)(h))
    g = nn.Dense(16, 32, activation="relu", rng=2)(extra)
    logits = nn.Dense(160, 10, rng=3)(nn.Concat()(r, g))
    return nn.Graph(inputs=[image, extra], outputs=logits)


def readme_conv_graph():
    pixels = nn.Input((1, 28, 28))
    wide = nn.Concat(axis=1)(nn.Conv2D(1, 8, 3, padding=1, rng=0)(pixels), nn.Conv2D(1, 8, 5, padding=2, rng=1)(pixels))
    return nn.Graph(inputs=pixels, outputs=nn.Dense(16 * 14 * 14, 10, rng=2)(nn.Flatten()(nn.MaxPool2D(2)(wide))))


def residual_cnn():
    def block(c, seed):
        return nn.Residual(
            nn.Sequential(
                nn.Conv2D(c, c, 3, padding=1, rng=seed),
                nn.BatchNorm(c),
                nn.ReLU(),
                nn.Conv2D(c, c, 3, padding=1, rng=seed + 1),
                nn.BatchNorm(c),
            )
        )

    return nn.Sequential(
        nn.Conv2D(1, 8, 3, stride=2, padding=1, activation="relu", rng=0),
        block(8, 1),
        nn.ReLU(),
        block(8, 3),
        nn.AvgPool2D(2),
        nn.Conv2D(8, 16, (3, 1), padding=(1, 0), activation="sigmoid", rng=5),
        nn.GlobalAvgPool2D(),
        nn.LayerNorm(16),
        nn.Dense(16, 10, rng=6),
        nn.Softmax(),
    )


@pytest.mark.parametrize(
    "build, shapes",
    [
        (readme_mlp, [(784,)]),
        (readme_cnn, [(1, 28, 28)]),
        (readme_tied_resnet, [(784,)]),
        (readme_two_input_graph, [(784,), (16,)]),
        (readme_conv_graph, [(1, 28, 28)]),
        (residual_cnn, [(1, 28, 28)]),
        (lambda: recipes.build_mlp(784, 2, 64, "sigmoid", batch_norm=True, dropout=0.3, rng=0), [(784,)]),
        (lambda: recipes.build_cnn(conv_channels=[8, 16], batch_norm=False, rng=0), [(1, 28, 28)]),
    ],
    ids=[
        "readme_mlp",
        "readme_cnn",
        "readme_tied_resnet",
        "two_input_graph",
        "conv_graph",
        "residual_cnn",
        "mlp",
        "cnn",
    ],
)
def test_the_exported_model_runs_in_onnx_runtime_with_our_eval_outputs(build, shapes, tmp_path):
    assert_matches(settle(build()), shapes, tmp_path)


@pytest.mark.parametrize("name", recipes.available())
def test_every_yaml_recipe_exports_and_matches(name, tmp_path):
    cfg = recipes.load_config(name)
    shape = training_run.input_shape(cfg, 784)
    model = settle(training_run.build_model(cfg, shape, 10))
    assert_matches(model, [shape], tmp_path)


def test_a_graph_with_several_outputs_and_a_shared_module_shares_its_initializers(tmp_path):
    x, y = nn.Input(12), nn.Input(12)
    shared = nn.Dense(12, 6, activation="tanh", rng=0)
    a, b = shared(x), shared(y)
    prod = nn.Multiply()(a, b)
    model = nn.Graph(inputs=[x, y], outputs=[nn.Sigmoid()(prod), nn.Add()(a, b, prod), nn.Identity()(a)])
    proto = assert_matches(model, [(12,), (12,)], tmp_path)
    assert sorted(i.name for i in proto.graph.initializer) == ["0.W", "0.b"]
    assert [n.op_type for n in proto.graph.node].count("Gemm") == 2
    assert [o.name for o in proto.graph.output] == ["output_0", "output_1", "output_2"]


def test_the_batch_axis_is_symbolic_and_the_rest_fixed_by_the_example(tmp_path):
    proto = export(readme_cnn(), tmp_path / "m.onnx", np.zeros((3, 1, 28, 28), np.float32))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 1, 28, 28]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 10]


def test_batchnorm_exports_its_running_statistics_with_onnx_momentum(tmp_path):
    model = settle(nn.Sequential(nn.Dense(4, 3), nn.BatchNorm(3, eps=1e-3, momentum=0.1)))
    proto = assert_matches(model, [(4,)], tmp_path)
    (bn,) = [n for n in proto.graph.node if n.op_type == "BatchNormalization"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in bn.attribute}
    assert attrs["epsilon"] == pytest.approx(1e-3) and attrs["momentum"] == pytest.approx(0.9)
    stats = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    np.testing.assert_array_equal(stats["1.running_var"], model[1].running_var)


def test_dropout_is_the_identity_and_export_leaves_training_mode_as_it_was(tmp_path):
    model = nn.Sequential(nn.Dense(5, 5), nn.Dropout(0.5, rng=0)).train()
    proto = export(model, tmp_path / "m.onnx")  # a model starting with Dense knows its input
    assert [n.op_type for n in proto.graph.node] == ["Gemm"]
    assert all(m.training for m in model.modules())
    only_dropout = export(nn.Sequential(nn.Dropout(0.2)), None, (3,))
    assert [n.op_type for n in only_dropout.graph.node] == ["Identity"]


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.s = nn.Parameter(np.array([2.0], np.float32), decay=False)

    def forward(self, x):
        return x * self.s.data

    def backward(self, grad_out):
        return grad_out * self.s.data

    def to_onnx(self, b, inputs):
        return [b.op("Mul", [inputs[0], b.param(self.s)])]


class NoExport(Scale):
    to_onnx = None


class MyDense(nn.Dense):
    def forward(self, x):
        return super().forward(x) * 2


def test_a_user_layer_exports_through_its_own_to_onnx(tmp_path):
    assert_matches(nn.Sequential(nn.Dense(6, 4, rng=0), Scale()), [(6,)], tmp_path)


def test_a_user_layer_without_to_onnx_is_refused_naming_its_class(tmp_path):
    model = nn.Sequential(nn.Dense(6, 4), nn.Residual(NoExport()))
    with pytest.raises(TypeError, match=r"test_onnx_export\.NoExport \(at '1\.block'\) has no to_onnx\(b, inputs\)"):
        export(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(TypeError, match="MyDense .* overrides forward but inherits to_onnx from Dense"):
        export(nn.Sequential(MyDense(3, 3)), None)


def test_layernorm_needs_opset_17_and_bad_opsets_or_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"LayerNorm \(LayerNormalization\) needs opset >= 17.*opset 13"):
        export(nn.Sequential(nn.LayerNorm(4)), None, (4,), opset=13)
    with pytest.raises(ValueError, match="opset must be an int from 13 to"):
        export(readme_mlp(), None, opset=7)
    with pytest.raises(ValueError, match=r"does not take inputs of shape \('batch', 28, 28\)"):
        export(readme_cnn(), None, (28, 28))
    with pytest.raises(ValueError, match="does not know its input shape; pass an example input"):
        export(readme_cnn(), None)
    with pytest.raises(ValueError, match="output_names must be 1 distinct non-empty names"):
        export(readme_mlp(), None, output_names=["a", "b"])


def test_opset_13_and_the_latest_opset_export_alike(tmp_path):
    latest = onnx.defs.onnx_opset_version()
    supported = min(latest, 21)  # what this onnxruntime surely runs
    for opset in (13, supported):
        assert_matches(settle(recipes.build_cnn(conv_channels=[4], rng=0)), [(1, 28, 28)], tmp_path, opset=opset)


class TorchRecurrent(nn.Module):
    """A recurrent layer kept in PyTorch's layout, computed by torch: what the sequence layers'
    to_onnx will hand to ``onnx.recurrent``."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        import torch

        with torch.no_grad():
            return self.module(torch.from_numpy(x))[0].numpy()

    def to_onnx(self, b, inputs):
        m, dirs = self.module, []
        for sfx in ("_l0", "_l0_reverse")[: 1 + m.bidirectional]:
            dirs.append(
                tuple(
                    getattr(m, f"{k}{sfx}").detach().numpy() for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                )
            )
        return (lstm if isinstance(m, __import__("torch").nn.LSTM) else gru)(b, inputs[0], dirs)[:1]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_weights_in_pytorch_layout_export_as_onnx_lstm_and_gru(kind, bidirectional, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = getattr(torch.nn, kind)(5, 7, batch_first=True, bidirectional=bidirectional)
    assert_matches(TorchRecurrent(module), [(4, 5)], tmp_path)


def test_the_export_script_writes_the_model_of_a_saved_file(tmp_path):
    model = settle(recipes.build_cnn(conv_channels=[4], rng=0))
    model.save(tmp_path / "cnn.npz")
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export.py"), str(tmp_path / "cnn.npz"), str(tmp_path / "cnn.onnx")]
        + ["--shape", "1", "28", "28", "--opset", "18"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "cnn.onnx" in out.stdout and "opset 18" in out.stdout
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    (got,) = run_onnx(tmp_path / "cnn.onnx", x)
    ref = model.eval()(x)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    bad = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export.py"), str(tmp_path / "cnn.npz"), str(tmp_path / "x.onnx")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "--shape" in bad.stderr


@pytest.mark.parametrize(
    "cls, layers, bidirectional, return_sequences",
    [
        (nn.LSTM, 1, False, True),
        (nn.LSTM, 2, True, False),
        (nn.GRU, 1, True, True),
        (nn.GRU, 2, False, False),
        (nn.RNN, 2, True, True),
    ],
)
def test_recurrent_layers_export_as_stacked_onnx_nodes(cls, layers, bidirectional, return_sequences, tmp_path):
    model = cls(5, 7, num_layers=layers, bidirectional=bidirectional, return_sequences=return_sequences, rng=1)
    proto = assert_matches(model, [(6, 5)], tmp_path)
    assert [n.op_type for n in proto.graph.node].count(cls.__name__) == layers


def test_a_relu_rnn_exports_its_activation(tmp_path):
    proto = assert_matches(nn.RNN(4, 6, nonlinearity="relu", bidirectional=True, rng=0), [(5, 4)], tmp_path)
    (node,) = [n for n in proto.graph.node if n.op_type == "RNN"]
    assert [a.strings for a in node.attribute if a.name == "activations"] == [[b"Relu", b"Relu"]]


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_a_graph_with_lengths_initial_and_final_states_exports_as_sequence_lens(cls, tmp_path):
    """Variable lengths (ONNX's sequence_lens, the reverse direction from each sequence's end), the
    initial states as Graph inputs and the final states as outputs, all batch-first in a Graph."""
    x, lengths = nn.Input((6, 5)), nn.Input((), dtype="int64")
    states = [nn.Input((4, 7)) for _ in (cls.__name__ == "LSTM") * "hc" or "h"]
    layer = cls(5, 7, num_layers=2, bidirectional=True, return_state=True, rng=2)
    outs = layer(x, *states, lengths=lengths)
    model = nn.Graph(inputs=[x, lengths, *states], outputs=list(outs))
    path = tmp_path / "g.onnx"
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((4, 6, 5)).astype(np.float32)
    ls = np.array([6, 3, 1, 5])
    hs = [rng.standard_normal((4, 4, 7)).astype(np.float32) for _ in states]
    export(model, path, (xs, ls, *hs))
    onnx.checker.check_model(onnx.load(path), full_check=True)
    got, ref = run_onnx(path, xs, ls, *hs), model.eval()(xs, ls, *hs)
    assert len(got) == len(ref) == 1 + len(states)
    assert np.all(ref[0][1, 3:] == 0) and np.all(got[0][1, 3:] == 0)  # past the length
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * np.abs(r).max())


def test_an_lstm_classifier_on_embeddings_exports(tmp_path):
    model = nn.Sequential(nn.Embedding(20, 8, rng=0), nn.LSTM(8, 6, return_sequences=False, rng=1), nn.Dense(6, 3))
    path = tmp_path / "m.onnx"
    tokens = np.random.default_rng(0).integers(0, 20, (3, 9))
    export(model, path, tokens)
    (got,) = run_onnx(path, tokens)
    np.testing.assert_allclose(got, model.eval()(tokens), rtol=1e-5, atol=1e-6)
