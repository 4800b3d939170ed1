"""The recurrent layers as a kind of the network generator (fuzz_networks.py): LSTM, GRU and RNN
(tanh or relu), stacked, bidirectional, with dropout between layers, returning every step or the
last one, on sequence inputs (T, F). The torch rule runs each layer of the mirror's parameters
through ``torch.nn.LSTM``/``GRU``/``RNN`` (``torch.func.functional_call``: PyTorch's own
equations and gate orders) and replays our dropout between layers from a copy of the layer's
generator, taken when the layer is built (before our forward runs)."""

import weakref

import numpy as np
from fuzz_networks import F64, kind, near_kink

from tinygrad_free import nn
from tinygrad_free.nn.recurrent import TORCH_NAMES, suffix

#: Copies of the generators of the layers built here, as they were when built: the mirror's draws.
_GENERATORS = weakref.WeakKeyDictionary()


def _build(a, shape):
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": nn.RNN, "rnn_relu": nn.RNN}[a["cell"]]
    extra = {"nonlinearity": a["cell"][4:]} if a["cell"].startswith("rnn") else {}
    layer = cls(
        shape[1],
        a["hidden"],
        num_layers=a["layers"],
        bidirectional=a["bidirectional"],
        dropout=a["dropout"],
        return_sequences=a["sequences"],
        bias=a["bias"],
        dtype=F64,
        rng=a["seed"],
        **extra,
    )
    g = np.random.Generator(type(layer.rng.bit_generator)())
    g.bit_generator.state = layer.rng.bit_generator.state
    _GENERATORS[layer] = g
    return layer


def _width(a):
    return a["hidden"] * (1 + a["bidirectional"])


@kind(
    "recurrent",
    lambda d, shape, st: (
        {
            "cell": d(st.sampled_from(["lstm", "gru", "rnn_tanh", "rnn_relu"])),
            "hidden": d(st.integers(1, 5)),
            "layers": d(st.integers(1, 2)),
            "bidirectional": d(st.booleans()),
            "dropout": d(st.sampled_from([0.0, 0.4])),
            "sequences": d(st.booleans()),
            "bias": d(st.booleans()),
        }
        if len(shape) == 2
        else None
    ),
    lambda a, shape: (shape[0], _width(a)) if a["sequences"] else (_width(a),),
    _build,
)
def _recurrent_rule(mirror, m, x):
    torch = mirror.torch
    dirs, hidden = m.directions, m.hidden_size
    kinds = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "RNN": torch.nn.RNN}
    y, last = x, None
    for k in range(m.num_layers):
        extra = {"nonlinearity": m.nonlinearity} if m.ONNX_OP == "RNN" else {}
        shape = dict(batch_first=True, bidirectional=m.bidirectional, bias=m.bias, dtype=torch.float64)
        one = kinds[m.ONNX_OP](y.shape[-1], hidden, **shape, **extra)
        params = {}
        for d in range(dirs):
            for ours, theirs in TORCH_NAMES.items():
                p = getattr(m, ours + suffix(k, d), None)
                if p is not None:
                    params[theirs + suffix(0, d)] = mirror.param(p)
        out, state = torch.func.functional_call(one, params, (y,))
        h_n = state[0] if m.ONNX_OP == "LSTM" else state
        if m.ONNX_OP == "RNN" and m.nonlinearity == "relu":
            near_kink(mirror, out)
        last = h_n.permute(1, 0, 2).reshape(x.shape[0], dirs * hidden)
        if k < m.num_layers - 1 and m.training and m.dropout > 0:
            keep = _GENERATORS[m].random(tuple(out.shape)) >= m.dropout
            out = out * torch.tensor(keep / (1.0 - m.dropout))
        y = out
    return y if m.return_sequences else last
