"""The sequence layers of the attention family as kinds of the network generator (fuzz_networks.py):
MultiHeadAttention (self-attention, causal or not, attention dropout), TransformerEncoderLayer
(both norm placements, relu/gelu, dropout), GELU, Dense on sequences, PositionalEmbedding,
ClassToken, SelectToken, Mean, Reshape, Permute and Conv1D; and the input kind ``tokens_attn``,
a sequence (T, F). Each kind's torch rule computes the same thing with torch's functional ops on
the mirror's parameters; dropout draws are replayed from copies of the layers' generators, taken
when the layer is built (before our forward runs)."""

import weakref

import numpy as np
from fuzz_networks import F64, INPUTS, KEEPS_SHAPE, _same, kind, near_kink

from tinygrad_free import nn
from tinygrad_free.nn.dropout import drop_threshold, uniform_draws

ACTS = ["identity", "relu", "tanh", "gelu", "gelu_tanh"]
#: Copies of the generators of the layers built here, as they were when built: the mirror's draws.
_GENERATORS = weakref.WeakKeyDictionary()


def _copy(rng):
    g = np.random.Generator(type(rng.bit_generator)())
    g.bit_generator.state = rng.bit_generator.state
    return g


def _remember(module):
    """Keep copies of the generators of ``module`` and every module below it."""
    for m in module.modules():
        if isinstance(m, (nn.Dropout, nn.MultiHeadAttention)):
            _GENERATORS[m] = _copy(m.rng)
    return module


def _activation(mirror, name, z):
    F = mirror.torch.nn.functional
    if name == "relu":
        near_kink(mirror, z)
        return mirror.torch.relu(z)
    table = {
        "identity": lambda v: v,
        "tanh": mirror.torch.tanh,
        "sigmoid": mirror.torch.sigmoid,
        "gelu": F.gelu,
        "gelu_tanh": lambda v: F.gelu(v, approximate="tanh"),
    }
    return table[name](z)


def _divisors(n):
    return [h for h in range(1, n + 1) if n % h == 0]


INPUTS["tokens_attn"] = lambda d, st: (d(st.integers(1, 4)), d(st.sampled_from([2, 4, 6])))
KEEPS_SHAPE.update({"mha", "encoder_layer", "gelu", "positions"})


# --- attention -------------------------------------------------------------------------------------
def _mha_torch(mirror, m, x):
    """MultiHeadAttention's self-attention on torch tensors, its dropout replayed."""
    torch = mirror.torch
    n, t, e = x.shape
    h, d = m.num_heads, m.head_dim
    w = mirror.param(m.in_proj_weight)
    b = None if m.in_proj_bias is None else mirror.param(m.in_proj_bias)
    qkv = x @ w.T + (0 if b is None else b)
    q, k, v = (qkv[..., i * e : (i + 1) * e].reshape(n, t, h, d).transpose(1, 2) for i in range(3))
    s = q @ k.transpose(-1, -2) * m.scale
    if m.causal:
        s = s.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
    p = torch.softmax(s, -1)
    if m.training and m.dropout > 0:
        keep = uniform_draws(_GENERATORS[m], (n, h, t, t)) >= drop_threshold(m.dropout)
        p = p * torch.tensor(keep / (1.0 - m.dropout))
    y = (p @ v).transpose(1, 2).reshape(n, t, e) @ mirror.param(m.out_proj_weight).T
    return y if m.out_proj_bias is None else y + mirror.param(m.out_proj_bias)


@kind(
    "mha",
    lambda d, shape, st: (
        {
            "heads": d(st.sampled_from(_divisors(shape[1]))),
            "causal": d(st.booleans()),
            "dropout": d(st.sampled_from([0.0, 0.3])),
            "bias": d(st.booleans()),
        }
        if len(shape) == 2
        else None
    ),
    _same,
    lambda a, shape: _remember(
        nn.MultiHeadAttention(shape[1], a["heads"], a["dropout"], a["bias"], a["causal"], dtype=F64, rng=a["seed"])
    ),
)
def _mha_rule(mirror, m, x):
    return _mha_torch(mirror, m, x)


def _dropout(mirror, m, x):
    if not m.training or m.p == 0:
        return x
    keep = uniform_draws(_GENERATORS[m], tuple(x.shape)) >= drop_threshold(m.p)
    return x * mirror.torch.tensor(keep / (1.0 - m.p))


def _layernorm(mirror, m, x):
    from fuzz_networks import conditioning

    conditioning(mirror, x.var(dim=-1, unbiased=False), m.eps)
    return mirror.torch.nn.functional.layer_norm(
        x, (m.num_features,), mirror.param(m.gamma), mirror.param(m.beta), eps=m.eps
    )


def _dense_on(mirror, m, x):
    z = x @ mirror.param(m.W)
    if m.b is not None:
        z = z + mirror.param(m.b)
    return _activation(mirror, nn.activation.NAMES[m.act_code], z)


@kind(
    "encoder_layer",
    lambda d, shape, st: (
        {
            "heads": d(st.sampled_from(_divisors(shape[1]))),
            "ff": d(st.integers(1, 6)),
            "dropout": d(st.sampled_from([0.0, 0.25])),
            "act": d(st.sampled_from(["relu", "gelu"])),
            "norm_first": d(st.booleans()),
        }
        if len(shape) == 2
        else None
    ),
    _same,
    lambda a, shape: _remember(
        nn.TransformerEncoderLayer(
            shape[1], a["heads"], a["ff"], a["dropout"], a["act"], a["norm_first"], dtype=F64, rng=a["seed"]
        )
    ),
)
def _encoder_layer_rule(mirror, m, x):
    def ff(u):
        return _dropout(
            mirror,
            m.dropout2,
            _dense_on(mirror, m.linear2, _dropout(mirror, m.dropout, _dense_on(mirror, m.linear1, u))),
        )

    if m.norm_first:
        h = x + _dropout(mirror, m.dropout1, _mha_torch(mirror, m.self_attn, _layernorm(mirror, m.norm1, x)))
        return h + ff(_layernorm(mirror, m.norm2, h))
    h = _layernorm(mirror, m.norm1, x + _dropout(mirror, m.dropout1, _mha_torch(mirror, m.self_attn, x)))
    return _layernorm(mirror, m.norm2, h + ff(h))


# --- the small layers ------------------------------------------------------------------------------
@kind(
    "gelu",
    lambda d, shape, st: {"approximate": d(st.sampled_from(["none", "tanh"]))},
    _same,
    lambda a, shape: nn.GELU(a["approximate"]),
)
def _gelu_rule(mirror, m, x):
    return mirror.torch.nn.functional.gelu(x, approximate=m.approximate)


@kind(
    "dense_seq",
    lambda d, shape, st: (
        {"out": d(st.integers(1, 6)), "act": d(st.sampled_from(ACTS)), "bias": d(st.booleans())}
        if len(shape) == 2
        else None
    ),
    lambda a, shape: (shape[0], a["out"]),
    lambda a, shape: nn.Dense(shape[1], a["out"], activation=a["act"], bias=a["bias"], dtype=F64, rng=a["seed"]),
)
def _dense_seq_rule(mirror, m, x):
    return _dense_on(mirror, m, x)


@kind(
    "positions",
    lambda d, shape, st: {"extra": d(st.integers(0, 2))} if len(shape) == 2 else None,
    _same,
    lambda a, shape: nn.PositionalEmbedding(shape[0] + a["extra"], shape[1], dtype=F64, rng=a["seed"]),
)
def _positions_rule(mirror, m, x):
    return x + mirror.param(m.weight)[: x.shape[1]]


@kind(
    "class_token",
    lambda d, shape, st: {} if len(shape) == 2 else None,
    lambda a, shape: (shape[0] + 1, shape[1]),
    lambda a, shape: nn.ClassToken(shape[1], dtype=F64, rng=a["seed"]),
)
def _class_token_rule(mirror, m, x):
    return mirror.torch.cat([mirror.param(m.token).expand(x.shape[0], -1, -1), x], dim=1)


@kind(
    "select_token",
    lambda d, shape, st: {"index": d(st.integers(-shape[0], shape[0] - 1))} if len(shape) == 2 else None,
    lambda a, shape: (shape[1],),
    lambda a, shape: nn.SelectToken(a["index"]),
)
def _select_token_rule(mirror, m, x):
    return x[:, m.index]


@kind(
    "mean",
    lambda d, shape, st: (
        {"axis": d(st.integers(1, len(shape))), "keepdims": d(st.booleans())} if len(shape) >= 2 else None
    ),
    lambda a, shape: (
        tuple(1 if i + 1 == a["axis"] else n for i, n in enumerate(shape))
        if a["keepdims"]
        else tuple(n for i, n in enumerate(shape) if i + 1 != a["axis"])
    ),
    lambda a, shape: nn.Mean(a["axis"], a["keepdims"]),
)
def _mean_rule(mirror, m, x):
    return x.mean(dim=m.axis, keepdim=m.keepdims)


@kind(
    "permute",
    lambda d, shape, st: {"dims": d(st.permutations(list(range(1, len(shape) + 1))))} if len(shape) >= 2 else None,
    lambda a, shape: tuple(shape[i - 1] for i in a["dims"]),
    lambda a, shape: nn.Permute(a["dims"]),
)
def _permute_rule(mirror, m, x):
    return x.permute(0, *m.dims)


@kind(
    "reshape",
    lambda d, shape, st: (
        {"split": d(st.sampled_from([k for k in range(1, int(np.prod(shape)) + 1) if np.prod(shape) % k == 0]))}
        if len(shape) >= 1
        else None
    ),
    lambda a, shape: (a["split"], int(np.prod(shape)) // a["split"]),
    lambda a, shape: nn.Reshape((a["split"], -1)),
)
def _reshape_rule(mirror, m, x):
    return x.reshape(x.shape[0], m.shape[0], -1)


def _conv1d_draw(d, shape, st):
    if len(shape) != 2:
        return None
    c, length = shape
    k = d(st.integers(1, min(3, length + 2)))
    pad = d(st.integers(0, min(1, k - 1)))
    stride = d(st.integers(1, 2))
    if (length + 2 * pad - k) // stride + 1 < 1:
        return None
    return {"out": d(st.integers(1, 4)), "k": k, "stride": stride, "pad": pad, "act": d(st.sampled_from(ACTS))}


@kind(
    "conv1d",
    _conv1d_draw,
    lambda a, shape: (a["out"], (shape[1] + 2 * a["pad"] - a["k"]) // a["stride"] + 1),
    lambda a, shape: nn.Conv1D(
        shape[0], a["out"], a["k"], a["stride"], a["pad"], activation=a["act"], dtype=F64, rng=a["seed"]
    ),
)
def _conv1d_rule(mirror, m, x):
    b = None if m.b is None else mirror.param(m.b)
    z = mirror.torch.nn.functional.conv1d(x, mirror.param(m.W), b, stride=m.stride, padding=m.padding)
    return _activation(mirror, nn.activation.NAMES[m.act_code], z)
