"""Random sequences of calls on a random network, ours against PyTorch: the generator behind
``test_generated_calls.py`` and ``scripts/fuzz.py``.

A sequence is plain JSON data: a network spec (``fuzz_networks``) and a list of operations::

    ["forward"]            model(x), gradients recorded         ["no_grad"]     model(x) under nn.no_grad()
    ["begin"]              y, backprop = model.begin_update(x)   ["begin_no_grad"]
    ["backward"]           model.backward(R), the plain form    ["callback", k] the k-th begin_update's backprop(R)
    ["mode", "train"|"eval"]                                     ["zero_grad"]   model.zero_grad()
    ["step"]               optimizer.step()                     ["write_output", k], ["write_input", k]

Every outcome must be PyTorch's numbers (outputs, the input's gradient, every parameter's
accumulated gradient, the parameters after a step) or the error the rules promise (an
ambiguous plain backward, a call backpropagated twice, a backward after ``no_grad``, a backward
after the parameters changed, a write into a recorded output), never other numbers. The oracle
below states those rules independently of the library's bookkeeping.
"""

from __future__ import annotations

import numpy as np
import pytest
from fuzz_networks import Close, TorchMirror, build_ours, network_specs, torch_optimizer

from tinygrad_free import nn, optim
from tinygrad_free.nn.context import StaleForwardError

OPS = ["forward", "no_grad", "begin", "begin_no_grad", "backward", "callback", "mode", "zero_grad", "step",
       "write_output", "write_input"]  # fmt: skip


def call_sequences(max_ops=14):
    """A Hypothesis strategy of call sequences."""
    from hypothesis import strategies as st

    op = st.one_of(
        st.sampled_from(
            [["forward"], ["no_grad"], ["begin"], ["begin_no_grad"], ["backward"], ["zero_grad"], ["step"]]
        ),
        st.tuples(st.just("callback"), st.integers(0, 20)).map(list),
        st.tuples(st.just("mode"), st.sampled_from(["train", "eval"])).map(list),
        st.tuples(st.sampled_from(["write_output", "write_input"]), st.integers(0, 20)).map(list),
    )
    weighted = st.one_of(st.sampled_from([["forward"], ["backward"], ["begin"]]), op)
    return st.fixed_dictionaries(
        {"net": network_specs(max_nodes=3), "ops": st.lists(weighted, min_size=1, max_size=max_ops)}
    )


class Call:
    def __init__(self, kind, x, outs, touts, xt, back=None):
        self.kind, self.x, self.outs, self.touts, self.xt, self.back = kind, x, outs, touts, xt, back
        self.used = False
        self.changes = None  # which parameters existed unchanged: their versions at the call


def run_calls(seq, rtol=1e-9):
    import torch

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _run(torch, seq, rtol)
    finally:
        torch.set_default_dtype(default)


def _run(torch, seq, rtol):
    spec = seq["net"]
    graph, mods = build_ours(spec)
    mirror = TorchMirror(spec, mods)
    rng = np.random.default_rng(spec["seed"])
    params = graph.parameters()
    names = {id(p): n for n, p in graph.named_parameters()}
    opt = optim.SGD(params, lr=0.05, weight_decay=0.1) if params else None
    decayed = [mirror.t[id(p)] for p in params if p.decay]
    others = [mirror.t[id(p)] for p in params if not p.decay]
    ref = torch_optimizer(torch, "sgd", [decayed, others], 0.05, 0.1) if params else None
    version = {id(p): 0 for p in params}  # the oracle's own count of each parameter's changes
    calls: list[Call] = []
    plain: list[int] = []  # plain recorded calls since the last plain backward

    close = Close(rtol)

    def as_list(y):
        return list(y) if isinstance(y, tuple) else [y]

    def forward(kind):
        x = rng.standard_normal((spec["batch"], *spec["input"]))
        grad = kind in ("forward", "begin")
        xt = torch.tensor(x, requires_grad=grad)
        with torch.set_grad_enabled(grad):
            touts = mirror.forward(xt, graph.run_order)
        close.cond = max(close.cond, mirror.cond)
        back = None
        if kind in ("forward", "no_grad"):
            if grad:
                outs = graph(x)
            else:
                with nn.no_grad():
                    outs = graph(x)
        else:
            if grad:
                outs, back = graph.begin_update(x)
            else:
                with nn.no_grad():
                    outs, back = graph.begin_update(x)
        outs = as_list(outs)
        for o, t in zip(outs, touts):
            close(o, t.detach().numpy(), f"output of a {kind} call")
        call = Call(kind, x, outs, touts if grad else None, xt, back)
        call.changes = dict(version)
        calls.append(call)
        if kind == "forward":
            plain.append(len(calls) - 1)

    def stale(call):
        return any(version[id(p)] != call.changes[id(p)] for p in params)

    def backprop(call, run):
        """``run(R)`` is our backward of ``call``: it must give torch's numbers, or refuse if stale."""
        Rs = [rng.standard_normal(o.shape) for o in call.outs]
        R = tuple(Rs) if len(Rs) > 1 else Rs[0]
        if stale(call):
            with pytest.raises(StaleForwardError, match="changed"):
                run(R)
            call.used = True
            return
        gx = run(R)
        sum((t * torch.tensor(r)).sum() for t, r in zip(call.touts, Rs)).backward()
        call.used = True
        close(gx, call.xt.grad.numpy(), "input gradient")
        check_grads()

    def check_grads():
        for p in params:
            tg = mirror.t[id(p)].grad
            assert p.has_grad == (tg is not None), f"{names[id(p)]}: has_grad {p.has_grad}, torch {tg is not None}"
            if tg is not None:
                close(p.grad, tg.numpy(), f"grad of {names[id(p)]}")

    for op in seq["ops"]:
        name = op[0]
        if name in ("forward", "no_grad", "begin", "begin_no_grad"):
            forward(name)
        elif name == "backward":
            if len(plain) > 1:
                with pytest.raises(RuntimeError, match=f"ran forward {len(plain)} times"):
                    graph.backward(np.zeros(1))
                plain.clear()
            elif len(plain) == 1:
                call = calls[plain.pop()]
                backprop(call, lambda R: graph.backward(R))
            else:
                with pytest.raises(RuntimeError, match=r"backward"):
                    graph.backward(tuple(np.zeros(o.shape) for o in calls[-1].outs) if calls else np.zeros(1))
        elif name == "callback":
            begun = [c for c in calls if c.kind in ("begin", "begin_no_grad")]
            if not begun:
                continue
            call = begun[op[1] % len(begun)]
            if call.kind == "begin_no_grad":
                with pytest.raises(RuntimeError, match="no_grad"):
                    call.back(np.zeros(1))
            elif call.used:
                with pytest.raises(RuntimeError, match="already backpropagated"):
                    call.back(
                        tuple(np.zeros(o.shape) for o in call.outs)
                        if len(call.outs) > 1
                        else np.zeros(call.outs[0].shape)
                    )
            else:
                backprop(call, call.back)
        elif name == "mode":
            graph.train(op[1] == "train")
        elif name == "zero_grad":
            graph.zero_grad()
            for t in mirror.t.values():
                t.grad = None
            assert not any(p.has_grad for p in params)
        elif name == "step":
            if opt is None:
                continue
            stepped = [p for p in params if p.has_grad]
            opt.step()
            ref.step()
            for p in stepped:
                version[id(p)] += 1
            for p in params:
                close(p.data, mirror.t[id(p)].detach().numpy(), f"{names[id(p)]} after a step")
        elif name in ("write_output", "write_input"):
            if not calls:
                continue
            call = calls[op[1] % len(calls)]
            if name == "write_input":
                call.x += 1.0  # the caller's array, changed after the call: the call's gradients must not see it
                continue
            for o in call.outs:
                if call.kind in ("forward", "begin"):
                    with pytest.raises(ValueError, match="read-only"):
                        o[...] = 0.0
                elif o.flags.writeable:
                    o[...] = 0.0  # nothing kept it: the caller's to change
        else:
            raise ValueError(f"unknown operation {op!r}")
