"""Random networks built twice, ours and PyTorch's, from one spec: the generator behind
``test_generated_networks.py`` and ``scripts/fuzz.py``.

A spec is plain JSON data, so every failure the fuzzer finds can be kept as a regression example
(``tests/fuzz_regressions.json``)::

    {"input": [C, H, W] or [F], "batch": N, "seed": s,
     "modules": [{"kind": "dense", "args": {...}, "train": true}, ...],   # each built once
     "nodes": [{"module": m, "inputs": [i, ...]}, ...],                    # i: 0 the input, k+1 node k
     "outputs": [i, ...],
     "optimizer": {"name": "adam", "weight_decay": 0.1}}

A module listed once and called by several nodes (or placed twice in a Sequential) is one object
with shared weights in both networks. Containers are modules too: ``sequential`` (``layers``:
module indices) and ``residual`` (``block``). The PyTorch side is not a copy of the network but
an interpreter of the same spec over torch tensors (``TorchMirror``), with autograd for the
gradients and ``torch.optim`` for the steps; Dropout draws its masks from copies of our layers'
generators, in the same order, so training-mode dropout is compared too.

A new layer joins the generator by adding an entry to ``KINDS`` (how to draw its arguments for an
input shape, its output shape, how to build ours) and to ``TorchMirror.apply``.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_free import nn, optim
from tinygrad_free.nn.dropout import drop_threshold, uniform_draws

F64 = np.float64
ACTS = ["identity", "relu", "tanh", "sigmoid"]
OPTIMIZERS = ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam", "eve"]
REGRESSIONS = Path(__file__).with_name("fuzz_regressions.json")


# --- the layer kinds --------------------------------------------------------------------------------------------------
def conv_out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


@dataclass
class Kind:
    """One layer kind of the generator: everything about it in one place."""

    draw: Any  # (draw, shape, st) -> args for an input of ``shape`` (batch axis left out), or None: cannot take it
    out: Any  # (args, shape) -> output shape
    build: Any  # (args, shape) -> our module (float64)
    torch: Any  # (mirror, module, x) -> the same computation on torch tensors


KINDS: dict[str, Kind] = {}


def kind(name, draw, out, build):
    """Register a kind; decorates its torch rule. Files ``fuzz_kinds_*.py`` beside this one add more."""

    def wrap(torch_rule):
        KINDS[name] = Kind(draw, out, build, torch_rule)
        return torch_rule

    return wrap


class Rejected(Exception):
    """The example sits where two correct implementations may differ by more than rounding: a
    ReLU input or a max-pool window a rounding away from its kink (each side takes another
    subgradient), or normalisations chained at near-zero variance (each multiplies rounding by up
    to 1/sqrt(eps)). The tests skip such an example (``hypothesis.reject``)."""


def near_kink(mirror, z):
    """Refuse a tensor that has elements within rounding of a ReLU's kink (but not exactly at it:
    an exact 0, a ReLU's own output, is the same on both sides)."""
    a = z.detach().abs()
    scale = float(a.max()) if a.numel() else 0.0
    if bool(((a > 0) & (a < 1e-9 * max(scale, 1.0))).any()):
        raise Rejected("a ReLU input within rounding of 0")


def _activation(mirror, name, z):
    torch = mirror.torch
    if name == "relu":
        near_kink(mirror, z)
    return {"identity": lambda v: v, "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[name](z)


def conditioning(mirror, var, eps):
    """Account for a normalisation at near-zero variance: it multiplies rounding by up to
    1/sqrt(var + eps); the comparison's absolute tolerance grows with it (``Close.scale``)."""
    small = float(var.detach().min()) if var.numel() else 1.0
    if small < 1.0:
        mirror.cond *= 1.0 / (small + eps) ** 0.5
    if mirror.cond > 1e6:
        raise Rejected("normalisations chained at near-zero variance")


def _same(a, shape):
    return shape


@kind(
    "dense",
    lambda d, shape, st: (
        {"out": d(st.integers(1, 7)), "act": d(st.sampled_from(ACTS)), "bias": d(st.booleans())}
        if len(shape) == 1
        else None
    ),
    lambda a, shape: (a["out"],),
    lambda a, shape: nn.Dense(shape[0], a["out"], activation=a["act"], bias=a["bias"], dtype=F64, rng=a["seed"]),
)
def _dense_torch(mirror, m, x):
    z = x @ mirror.param(m.W)
    if m.b is not None:
        z = z + mirror.param(m.b)
    return _activation(mirror, nn.activation.NAMES[m.act_code], z)


@kind(
    "act", lambda d, shape, st: {"name": d(st.sampled_from(ACTS))}, _same, lambda a, shape: nn.activation.get(a["name"])
)
def _act_torch(mirror, m, x):
    return _activation(mirror, nn.activation.NAMES[m.code], x)


@kind("softmax", lambda d, shape, st: {}, _same, lambda a, shape: nn.Softmax())
def _softmax_torch(mirror, m, x):
    return mirror.torch.softmax(x, dim=-1)


@kind(
    "dropout",
    lambda d, shape, st: {"p": d(st.sampled_from([0.0, 0.25, 0.5]))},
    _same,
    lambda a, shape: nn.Dropout(a["p"], rng=a["seed"]),
)
def _dropout_torch(mirror, m, x):
    if not m.training or m.p == 0:
        return x
    keep = uniform_draws(mirror.gens[id(m)], tuple(x.shape)) >= drop_threshold(m.p)  # our layer's draws, in order
    mask = keep.astype(F64) * (1.0 / (1.0 - m.p))
    return x * mirror.torch.tensor(mask)


@kind(
    "batchnorm",
    lambda d, shape, st: {"momentum": d(st.sampled_from([0.1, 0.5]))} if len(shape) in (1, 3) else None,
    _same,
    lambda a, shape: nn.BatchNorm(shape[0], momentum=a["momentum"], dtype=F64),
)
def _batchnorm_torch(mirror, m, x):
    rm, rv = mirror.buffers[id(m)]
    axes = (0,) if x.dim() == 2 else (0, 2, 3)
    conditioning(mirror, x.var(dim=axes, unbiased=False) if m.training else rv, m.eps)
    if not m.training:
        # PyTorch's eval-mode backward reads the running statistics as they are at backward time
        # (no version check: a training-mode call in between changes its gradient); ours is the
        # gradient of the computation that ran, so torch gets this call's statistics as a snapshot.
        rm, rv = rm.clone(), rv.clone()
    return mirror.torch.nn.functional.batch_norm(
        x, rm, rv, mirror.param(m.gamma), mirror.param(m.beta), training=m.training, momentum=m.momentum, eps=m.eps
    )


@kind("layernorm", lambda d, shape, st: {}, _same, lambda a, shape: nn.LayerNorm(shape[-1], dtype=F64))
def _layernorm_torch(mirror, m, x):
    F = mirror.torch.nn.functional
    conditioning(mirror, x.var(dim=-1, unbiased=False), m.eps)
    return F.layer_norm(x, (m.num_features,), mirror.param(m.gamma), mirror.param(m.beta), eps=m.eps)


def _conv_draw(d, shape, st):
    if len(shape) != 3:
        return None
    c, h, w = shape
    k = d(st.integers(1, min(3, h + 2, w + 2)))
    pad = d(st.integers(0, min(1, k - 1)))
    stride = d(st.integers(1, 2))
    if conv_out(h, k, stride, pad) < 1 or conv_out(w, k, stride, pad) < 1:
        return None
    # 16 output channels now and then: a 3x3 stride-1 convolution after it takes Winograd's kernels
    args = {"out": d(st.one_of(st.integers(1, 4), st.just(16))), "k": k, "stride": stride, "pad": pad}
    return dict(args, act=d(st.sampled_from(ACTS)), bias=d(st.booleans()))


@kind(
    "conv2d",
    _conv_draw,
    lambda a, shape: tuple([a["out"]] + [conv_out(n, a["k"], a["stride"], a["pad"]) for n in shape[1:]]),
    lambda a, shape: nn.Conv2D(
        shape[0], a["out"], a["k"], a["stride"], a["pad"], activation=a["act"], bias=a["bias"], dtype=F64, rng=a["seed"]
    ),
)
def _conv_torch(mirror, m, x):
    F = mirror.torch.nn.functional
    b = None if m.b is None else mirror.param(m.b)
    z = F.conv2d(x, mirror.param(m.W), b, stride=m.stride, padding=m.padding)
    return _activation(mirror, nn.activation.NAMES[m.act_code], z)


def _pool_draw(d, shape, st):
    if len(shape) != 3:
        return None
    k = d(st.integers(1, min(3, shape[1], shape[2])))
    return {"k": k, "stride": d(st.integers(1, k))}


def _pool_out(a, shape):
    return tuple([shape[0]] + [conv_out(n, a["k"], a["stride"], 0) for n in shape[1:]])


@kind("maxpool", _pool_draw, _pool_out, lambda a, shape: nn.MaxPool2D(a["k"], a["stride"]))
def _maxpool_torch(mirror, m, x):
    F = mirror.torch.nn.functional
    # a window whose two largest values differ by a rounding: each side may pick the other one
    windows = F.unfold(x.detach(), m.kernel_size, stride=m.stride)  # (N, C*kh*kw, L)
    n, _, l = windows.shape
    top = windows.reshape(n, x.shape[1], -1, l).topk(min(2, m.kernel_size[0] * m.kernel_size[1]), dim=2).values
    if top.shape[2] == 2:
        gap = (top[:, :, 0] - top[:, :, 1]).abs()
        scale = float(x.detach().abs().max())
        if bool(((gap > 0) & (gap < 1e-9 * max(scale, 1.0))).any()):
            raise Rejected("a max-pool window with two maxima a rounding apart")
    return F.max_pool2d(x, m.kernel_size, m.stride)


@kind("avgpool", _pool_draw, _pool_out, lambda a, shape: nn.AvgPool2D(a["k"], a["stride"]))
def _avgpool_torch(mirror, m, x):
    return mirror.torch.nn.functional.avg_pool2d(x, m.kernel_size, m.stride)


def _image(d, shape, st):
    return {} if len(shape) == 3 else None


@kind("gap", _image, lambda a, shape: (shape[0],), lambda a, shape: nn.GlobalAvgPool2D())
def _gap_torch(mirror, m, x):
    return x.mean(dim=(2, 3))


@kind("flatten", _image, lambda a, shape: (int(np.prod(shape)),), lambda a, shape: nn.Flatten())
def _flatten_torch(mirror, m, x):
    return mirror.torch.flatten(x, 1)


class CourseReLU(nn.Module):
    """A user's layer as course notes write it: it keeps its input on self and edits the gradient
    it is handed in place (the library must hand it a private copy, and its input read-only)."""

    def forward(self, x):
        self.x = x
        return np.maximum(x, 0)

    def backward(self, grad_out):
        grad_out[self.x <= 0] = 0
        return grad_out


@kind("course_relu", lambda d, shape, st: {}, _same, lambda a, shape: CourseReLU())
def _course_relu_torch(mirror, m, x):
    near_kink(mirror, x)
    return mirror.torch.relu(x)


#: Kinds that keep the shape (a Residual's block is a chain of these, or a Dense back to the width).
KEEPS_SHAPE = {"act", "softmax", "dropout", "batchnorm", "layernorm", "course_relu"}
#: The inputs a network may start from: name -> (draw, st) -> shape without the batch axis.
INPUTS = {
    "flat": lambda d, st: (d(st.integers(1, 6)),),
    "image": lambda d, st: (d(st.integers(1, 3)), d(st.integers(3, 6)), d(st.integers(3, 6))),
}


# --- drawing a spec ---
def network_specs(max_nodes=7):
    """A Hypothesis strategy of network specs."""
    from hypothesis import strategies as st

    @st.composite
    def spec(draw):
        shape = INPUTS[draw(st.sampled_from(sorted(INPUTS)))](draw, st)
        s = {
            "input": list(shape),
            "batch": draw(st.integers(2, 5)),
            "seed": draw(st.integers(0, 2**16)),
            "modules": [],
            "nodes": [],
            "outputs": [],
        }
        shapes = [shape]  # of the input and each node
        by_in: dict[tuple, list[int]] = {}  # modules by input shape, for reuse

        def new_module(kind, args, in_shape, extra=None):
            args = dict(args, seed=len(s["modules"]))
            m = {
                "kind": kind,
                "args": args,
                "in": list(in_shape),
                "train": draw(st.booleans()) if kind in ("dropout", "batchnorm") else True,
            }
            if extra:
                m.update(extra)
            s["modules"].append(m)
            return len(s["modules"]) - 1

        def out_shape(m):
            mod = s["modules"][m]
            if mod["kind"] == "sequential":
                sh = tuple(mod["in"])
                for k in mod["layers"]:
                    sh = out_shape(k)
                return sh
            if mod["kind"] == "residual":
                return tuple(mod["in"])
            if mod["kind"] in ("add", "multiply"):
                return tuple(mod["in"])
            if mod["kind"] == "concat":
                return tuple(mod["out_shape"])
            return tuple(KINDS[mod["kind"]].out(mod["args"], tuple(mod["in"])))

        def layer(in_shape, keep=False):
            """A new or reused single layer taking in_shape (keeping it when keep)."""
            reusable = [m for m in by_in.get(tuple(in_shape), []) if not keep or out_shape(m) == tuple(in_shape)]
            if reusable and draw(st.integers(0, 3)) == 0:
                return draw(st.sampled_from(reusable))
            names = sorted(KEEPS_SHAPE) if keep else sorted(KINDS)
            for _ in range(10):
                kind = draw(st.sampled_from(names))
                args = KINDS[kind].draw(draw, tuple(in_shape), st)
                if args is not None:
                    break
            else:
                kind, args = "act", {"name": "tanh"}
            if kind == "batchnorm" and len(in_shape) == 1 and in_shape[0] < 1:
                kind, args = "act", {"name": "tanh"}
            m = new_module(kind, args, in_shape)
            by_in.setdefault(tuple(in_shape), []).append(m)
            return m

        def fused_block(in_shape):
            """A Sequential that runs as one kernel when it can: Conv2D(relu) -> MaxPool2D(2), or
            BatchNorm -> ReLU -> MaxPool2D(2) (after a convolution now and then)."""
            layers, sh = [], tuple(in_shape)
            if draw(st.booleans()):
                k = draw(st.integers(1, 3))
                args = {"out": draw(st.integers(1, 4)), "k": k, "stride": 1, "pad": k // 2, "bias": draw(st.booleans())}
                layers.append(new_module("conv2d", dict(args, act=draw(st.sampled_from(["relu", "identity"]))), sh))
                sh = out_shape(layers[-1])
            if draw(st.integers(0, 2)):
                layers.append(new_module("batchnorm", {"momentum": 0.1}, sh))
                layers.append(new_module("act", {"name": "relu"}, sh))
            if min(sh[1:]) >= 2:
                layers.append(new_module("maxpool", {"k": 2, "stride": 2}, sh))
            return new_module("sequential", {}, in_shape, {"layers": layers}) if layers else layer(in_shape)

        def chain(in_shape, depth, keep=False):
            """A module: one layer, a Sequential of a few, a block that fuses, or a Residual around a
            shape-keeping chain."""
            choice = draw(st.integers(0, 7)) if depth > 0 else 0
            if choice <= 2:
                return layer(in_shape, keep)
            if choice >= 6:
                if keep or len(in_shape) != 3:
                    return layer(in_shape, keep)
                return fused_block(in_shape)
            if choice <= 4:
                layers, sh = [], tuple(in_shape)
                for _ in range(draw(st.integers(1, 3))):
                    m = chain(sh, depth - 1, keep)
                    layers.append(m)
                    sh = out_shape(m)
                    if (
                        draw(st.integers(0, 4)) == 0 and layers
                    ):  # the same module twice in a row, when it keeps the shape
                        if out_shape(layers[-1]) == tuple(s["modules"][layers[-1]]["in"]):
                            layers.append(layers[-1])
                return new_module("sequential", {}, in_shape, {"layers": layers})
            block = chain(in_shape, depth - 1, keep=True) if len(in_shape) != 1 or draw(st.booleans()) else None
            if block is None:  # Dense back to the width, with a shape-keeping layer before it
                d1 = new_module(
                    "dense", {"out": in_shape[0], "act": draw(st.sampled_from(ACTS)), "bias": True}, in_shape
                )
                block = new_module("sequential", {}, in_shape, {"layers": [layer(in_shape, keep=True), d1]})
            return new_module("residual", {}, in_shape, {"block": block})

        for _ in range(draw(st.integers(1, max_nodes))):
            pick = draw(st.integers(0, len(shapes) - 1))
            sh = shapes[pick]
            same = [i for i, x in enumerate(shapes) if x == sh and i != pick]
            merge = draw(st.integers(0, 3)) == 0 and same
            if merge:
                other = draw(st.sampled_from(same))
                kind = draw(st.sampled_from(["add", "multiply", "concat"]))
                if kind == "concat":
                    axis = draw(st.integers(1, len(sh)))
                    out = list(sh)
                    out[axis - 1] *= 2
                    m = new_module("concat", {"axis": axis}, sh, {"out_shape": out})
                else:
                    m = new_module(kind, {}, sh)
                s["nodes"].append({"module": m, "inputs": [pick, other]})
            else:
                m = chain(sh, 2)
                s["nodes"].append({"module": m, "inputs": [pick]})
            shapes.append(out_shape(m))
        last = len(shapes) - 1
        outs = [last] + ([draw(st.integers(1, last))] if last > 1 and draw(st.booleans()) else [])
        s["outputs"] = sorted(set(outs))
        # every input must reach an output: the Graph refuses otherwise; the input always does here
        # (node 0's inputs start from it), so only unused intermediate nodes may dangle, which is allowed.
        s["optimizer"] = {"name": draw(st.sampled_from(OPTIMIZERS)), "weight_decay": draw(st.sampled_from([0.0, 0.1]))}
        return s

    return spec()


# --- building ours ---
def build_ours(spec):
    """Our Graph from a spec, and the module objects by index."""
    mods: list[Any] = [None] * len(spec["modules"])

    def get(i):
        if mods[i] is None:
            m = spec["modules"][i]
            k, a, shape = m["kind"], m["args"], tuple(m["in"])
            if k == "sequential":
                mods[i] = nn.Sequential(*[get(j) for j in m["layers"]])
            elif k == "residual":
                mods[i] = nn.Residual(get(m["block"]))
            elif k == "add":
                mods[i] = nn.Add()
            elif k == "multiply":
                mods[i] = nn.Multiply()
            elif k == "concat":
                mods[i] = nn.Concat(a["axis"])
            else:
                mods[i] = KINDS[k].build(a, shape)
        return mods[i]

    for i in range(len(mods)):
        get(i)
    x = nn.Input(tuple(spec["input"]), dtype=F64)
    nodes = [x]
    for n in spec["nodes"]:
        nodes.append(mods[n["module"]](*[nodes[j] for j in n["inputs"]]))
    outs = [nodes[j] for j in spec["outputs"]]
    graph = nn.Graph(inputs=x, outputs=outs if len(outs) > 1 else outs[0])
    graph.train()
    for m, s in zip(mods, spec["modules"]):
        m.__dict__["training"] = bool(s["train"])
    # Parameters and statistics away from their initial values (a zero bias, a unit gain): those
    # make exact symmetries (a mean over a LayerNorm's output is 0 for any input) that put kinks
    # exactly where rounding decides.
    rng = np.random.default_rng(spec["seed"] + 1)
    for name, p in graph.named_parameters():
        if name.endswith("gamma"):
            p.data[...] = rng.uniform(0.5, 1.5, p.shape)
        elif not p.decay:  # biases, betas
            p.data[...] = rng.normal(0.0, 0.5, p.shape)
    for m in mods:
        if isinstance(m, nn.BatchNorm):
            m.running_mean[...] = rng.normal(0.0, 0.3, m.running_mean.shape)
            m.running_var[...] = rng.uniform(0.5, 2.0, m.running_var.shape)
    # The order our graph runs the spec's nodes in (nodes that reach no output do not run): the
    # mirror follows it, so shared Dropout generators and BatchNorm statistics see the same calls.
    index = {id(n): i for i, n in enumerate(nodes)}
    graph.run_order = [index[id(c.outputs[0])] - 1 for c in graph._node_calls]
    return graph, mods


# --- the PyTorch mirror ---
class TorchMirror:
    """The spec evaluated with torch tensors: leaf tensors for our parameters (one per Parameter
    object, so shared weights are shared), copies of the BatchNorm buffers, copies of the
    Dropout generators."""

    def __init__(self, spec, mods):
        import torch

        self.torch, self.spec, self.mods = torch, spec, mods
        self.kind_of = {id(m): s["kind"] for m, s in zip(mods, spec["modules"])}
        self.t = {}
        for m in mods:
            for p in m.parameters():
                if id(p) not in self.t:
                    self.t[id(p)] = torch.tensor(p.data, requires_grad=True)
        self.buffers = {
            id(m): (torch.tensor(m.running_mean), torch.tensor(m.running_var))
            for m in mods
            if isinstance(m, nn.BatchNorm)
        }
        self.gens = {}
        for m in mods:
            if isinstance(m, nn.Dropout) and id(m) not in self.gens:
                g = np.random.Generator(np.random.PCG64())
                g.bit_generator.state = m.rng.bit_generator.state
                self.gens[id(m)] = g

    def param(self, p):
        return self.t[id(p)]

    def apply(self, m, *xs):
        torch = self.torch
        if isinstance(m, nn.Sequential):
            y = xs
            for layer in m:
                y = (self.apply(layer, *y),)
            return y[0]
        if isinstance(m, nn.Residual):
            return xs[0] + self.apply(m.block, xs[0])
        if isinstance(m, nn.Add):
            return sum(xs[1:], xs[0])
        if isinstance(m, nn.Multiply):
            y = xs[0]
            for v in xs[1:]:
                y = y * v
            return y
        if isinstance(m, nn.Concat):
            return torch.cat(xs, dim=m.axis)
        return KINDS[self.kind_of[id(m)]].torch(self, m, *xs)

    def forward(self, x, order):
        self.cond = 1.0
        values = {0: x}
        for k in order:
            n = self.spec["nodes"][k]
            values[k + 1] = self.apply(self.mods[n["module"]], *[values[j] for j in n["inputs"]])
        return [values[j] for j in self.spec["outputs"]]


def torch_optimizer(torch, name, groups, lr, wd):
    decayed = [dict(params=g, weight_decay=wd) for g in groups[:1]] + [
        dict(params=g, weight_decay=0.0) for g in groups[1:]
    ]
    decayed = [g for g in decayed if g["params"]]
    if name == "sgd":
        return torch.optim.SGD(decayed, lr=lr)
    if name in ("momentum", "nag"):
        return torch.optim.SGD(decayed, lr=lr, momentum=0.9, nesterov=name == "nag")
    if name == "rmsprop":
        return torch.optim.RMSprop(decayed, lr=lr, alpha=0.9, eps=1e-8)
    if name == "adam":
        return torch.optim.Adam(decayed, lr=lr)
    if name == "nadam":
        return torch.optim.NAdam(decayed, lr=lr, momentum_decay=0.004)
    raise ValueError(name)


class EveReference:
    """Eve by its paper's equations (Koushik & Hayashi 2016, Alg. 1), on torch tensors in float64:
    the reference for the one optimizer PyTorch does not have."""

    def __init__(self, torch, groups, lr, wd, b1=0.9, b2=0.999, b3=0.999, eps=1e-8, k=0.1, K=10.0):
        self.torch, self.groups, self.lr, self.wd = torch, groups, lr, wd
        self.b1, self.b2, self.b3, self.eps, self.k, self.K = b1, b2, b3, eps, k, K
        self.state, self.t, self.f_hat, self.d = {}, 0, None, 1.0

    def step(self, loss):
        self.t += 1
        if self.t == 1:
            self.f_hat, self.d = loss, 1.0
        else:
            lo, hi = (self.k + 1, self.K + 1) if loss >= self.f_hat else (1 / (self.K + 1), 1 / (self.k + 1))
            f_new = min(max(lo, loss / self.f_hat), hi) * self.f_hat
            r = abs(f_new - self.f_hat) / min(f_new, self.f_hat)
            self.f_hat, self.d = f_new, self.b3 * self.d + (1 - self.b3) * r
        for gi, group in enumerate(self.groups):
            for p in group:
                if p.grad is None:
                    continue
                g = p.grad + (self.wd * p.detach() if gi == 0 else 0)
                m, v, t = self.state.setdefault(id(p), [0 * g, 0 * g, 0])
                t += 1
                m = self.b1 * m + (1 - self.b1) * g
                v = self.b2 * v + (1 - self.b2) * g * g
                mh, vh = m / (1 - self.b1**t), v / (1 - self.b2**t)
                with self.torch.no_grad():
                    p -= self.lr * mh / (self.d * vh.sqrt() + self.eps)
                self.state[id(p)] = [m, v, t]

    def zero_grad(self):
        for group in self.groups:
            for p in group:
                p.grad = None


# --- the comparison ---
class Close:
    """``close(ours, theirs, what)``: equal to ``rtol``, or within ``rtol / 100`` of the largest
    value compared so far (at least 1): an element that cancels to about 0 carries the rounding of
    the values it came from (LayerNorm over one feature: our gamma gradient is exactly 0, torch's
    2e-13)."""

    def __init__(self, rtol):
        self.rtol, self.scale, self.cond = rtol, 1.0, 1.0

    def __call__(self, ours, theirs, what):
        theirs = np.asarray(theirs)
        self.scale = max(self.scale, float(np.abs(theirs).max(initial=0.0)))
        atol = self.rtol * 1e-2 * self.scale * self.cond
        np.testing.assert_allclose(ours, theirs, rtol=self.rtol, atol=atol, err_msg=what)


def check_against_torch(spec, steps=3, rtol=1e-9):
    """Outputs, the input's gradient, every parameter's gradient, BatchNorm's running statistics
    and ``steps`` optimizer steps of the spec's network, ours against PyTorch's, in float64."""
    import torch

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # torch's optimizers keep step counts and NAdam's mu_product in it
    try:
        _check_against_torch(torch, spec, steps, rtol)
    finally:
        torch.set_default_dtype(default)


def _check_against_torch(torch, spec, steps, rtol):

    graph, mods = build_ours(spec)
    mirror = TorchMirror(spec, mods)
    rng = np.random.default_rng(spec["seed"])
    x = rng.standard_normal((spec["batch"], *spec["input"]))
    outs = graph(x)
    outs = list(outs) if isinstance(outs, tuple) else [outs]
    Rs = [rng.standard_normal(o.shape) for o in outs]
    name, wd = spec["optimizer"]["name"], spec["optimizer"]["weight_decay"]
    lr = 0.01
    kwargs = {"momentum_decay": 0.004} if name == "nadam" else {}
    params = graph.parameters()
    ours_opt = optim.create(name, params, lr=lr, weight_decay=wd, **kwargs) if params else None
    names = {id(p): n for n, p in graph.named_parameters()}
    decayed = [mirror.t[id(p)] for p in params if p.decay]
    others = [mirror.t[id(p)] for p in params if not p.decay]
    ref_opt = (
        (
            EveReference(torch, [decayed, others], lr, wd)
            if name == "eve"
            else torch_optimizer(torch, name, [decayed, others], lr, wd)
        )
        if params
        else None
    )

    close = Close(rtol)

    for step in range(steps):
        if step:
            outs = graph(x)
            outs = list(outs) if isinstance(outs, tuple) else [outs]
        xt = torch.tensor(x, requires_grad=True)
        touts = mirror.forward(xt, graph.run_order)
        close.cond = max(close.cond, mirror.cond)
        for o, t in zip(outs, touts):
            close(o, t.detach().numpy(), f"output, step {step}")
        gx = graph.backward(tuple(Rs) if len(Rs) > 1 else Rs[0])
        sum((t * torch.tensor(r)).sum() for t, r in zip(touts, Rs)).backward()
        close(gx, xt.grad.numpy(), f"input gradient, step {step}")
        for p in params:
            tg = mirror.t[id(p)].grad
            assert p.has_grad == (tg is not None), f"{names[id(p)]}: has_grad {p.has_grad}, torch grad {tg is not None}"
            if tg is not None:
                close(p.grad, tg.numpy(), f"grad of {names[id(p)]}, step {step}")
        for m in mods:
            if isinstance(m, nn.BatchNorm):
                rm, rv = mirror.buffers[id(m)]
                close(m.running_mean, rm.numpy(), "running_mean")
                close(m.running_var, rv.numpy(), "running_var")
        if ref_opt is None or ours_opt is None:
            continue
        # The steps are compared on the same gradients: a gradient that is rounding noise (a bias
        # before a training-mode BatchNorm gets ~1e-17) would otherwise be amplified by Adam or
        # RMSProp into two different lr-sized steps, both right.
        for p in params:
            if mirror.t[id(p)].grad is not None:
                mirror.t[id(p)].grad = torch.tensor(p.grad)
        loss = 2.0 - 0.3 * step  # Eve needs a positive loss; the others ignore it
        ours_opt.step(loss=loss)
        ours_opt.zero_grad()
        if name == "eve":
            ref_opt.step(loss)
        else:
            ref_opt.step()
        ref_opt.zero_grad()
        for p in params:
            close(p.data, mirror.t[id(p)].detach().numpy(), f"{name} step {step}: {names[id(p)]}")


def regressions(which="networks"):
    """Every failure the fuzzer has found (``networks`` specs or ``calls`` sequences, plain JSON)."""
    if not REGRESSIONS.exists():
        return []
    return json.loads(REGRESSIONS.read_text()).get(which, [])  # "note" is for the reader


# Layer families of their own files (fuzz_kinds_*.py beside this one) register their kinds on import.
for _path in sorted(Path(__file__).parent.glob("fuzz_kinds_*.py")):
    importlib.import_module(_path.stem)
