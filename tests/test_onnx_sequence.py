"""ONNX export of the sequence layers: every one runs in ONNX Runtime with our evaluation outputs
(float32), the Transformer encoder with causal and padding masks (the lengths a graph input),
GELU in both forms before and after ONNX's own Gelu (opset 20), and the ViT recipes' networks."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from tinygrad_free import nn  # noqa: E402
from tinygrad_free.onnx import export  # noqa: E402
from tinygrad_free.recipes import build_vit  # noqa: E402


def run(model, path, xs, opset=17):
    export(model, path, list(xs) if len(xs) > 1 else xs[0], opset=opset)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, dict(zip(names, xs)))
    with nn.no_grad():
        want = model.eval()(*xs)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * np.abs(w).max())


def settle(model, rng):
    for p in model.parameters():
        if not p.decay:
            p.data[...] = rng.normal(0, 0.3, p.shape)
    return model


@pytest.mark.parametrize(
    "layers, shape",
    [
        (lambda: [nn.Dense(6, 4, activation="gelu", rng=0), nn.GELU("tanh")], (6,)),
        (lambda: [nn.Reshape((3, -1)), nn.Permute((2, 1)), nn.Mean(1)], (12,)),
        (lambda: [nn.ClassToken(4, rng=0), nn.PositionalEmbedding(9, 4, rng=1), nn.SelectToken(-1)], (5, 4)),
        (lambda: [nn.Conv1D(3, 4, 3, stride=2, padding=1, activation="gelu_tanh", rng=0), nn.Mean(-1)], (3, 9)),
        (lambda: [nn.MultiHeadAttention(8, 2, causal=True, rng=0)], (5, 8)),
        (lambda: [nn.TransformerEncoderLayer(8, 2, 12, 0.1, "gelu", True, rng=0), nn.LayerNorm(8)], (5, 8)),
        (lambda: [nn.TransformerEncoderLayer(8, 4, 12, 0.1, "relu", False, causal=True, rng=0)], (6, 8)),
    ],
    ids=["gelu", "reshape-permute-mean", "tokens", "conv1d", "causal-attention", "pre-norm", "post-norm-causal"],
)
def test_each_sequence_layer_runs_in_onnx_runtime_with_our_outputs(layers, shape, rng, tmp_path):
    model = settle(nn.Sequential(*layers()), rng)
    for n in (1, 3):
        run(model, tmp_path / "m.onnx", [rng.standard_normal((n, *shape)).astype(np.float32)])


@pytest.mark.parametrize("opset", [17, 20])
def test_an_encoder_with_lengths_from_an_input_and_cross_attention_exports(opset, rng, tmp_path):
    a, b, lens = nn.Input((5, 8)), nn.Input((4, 8)), nn.Input((), dtype=np.int64)
    enc = nn.TransformerEncoderLayer(8, 2, 16, 0.0, "gelu", True, rng=0)
    h = enc(a, lengths=lens)
    cross = nn.MultiHeadAttention(8, 2, rng=1)(h, b, b)
    model = settle(nn.Graph([a, b, lens], nn.Dense(8, 3, rng=2)(nn.Mean(1)(cross))), rng)
    xs = [rng.standard_normal((3, 5, 8)).astype(np.float32), rng.standard_normal((3, 4, 8)).astype(np.float32)]
    run(model, tmp_path / "g.onnx", xs + [np.array([5, 2, 3], np.int64)], opset=opset)


@pytest.mark.parametrize("kw", [dict(stem="conv"), dict(stem="patch", patch_size=7, pooling="cls")])
def test_the_vit_recipes_network_exports(kw, rng, tmp_path):
    model = settle(build_vit(depth=2, rng=0, **kw), rng)
    run(model, tmp_path / "v.onnx", [rng.random((2, 1, 28, 28), dtype=np.float32)])
