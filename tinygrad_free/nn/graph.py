"""Graph: a network of module calls built the way Keras's functional API builds one, without autograd.

::

    x = nn.Input(784)
    h = nn.Dense(784, 128, activation="relu")(x)        # a module called on a Node returns a Node
    r = nn.Add()(h, nn.Dense(128, 128, activation="tanh")(h))
    model = nn.Graph(inputs=x, outputs=nn.Dense(128, 10)(r))

Each call of a module on nodes is a call of its own, so one module may appear in several calls
(shared weights); its parameter gradients are the sum over its calls. The calls run in a
topological order computed once; backward walks it in reverse, handing each call the context of
its own forward and summing the gradients of a node's several consumers (fan-out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import context
from .module import Module
from .node import Call, Input, Node

if TYPE_CHECKING:
    from .._typing import OnnxBuilder
    from .context import Context


class _Const:
    """A keyword constant of a call (saved with the graph as JSON)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _toposort(outputs: Sequence[Node]) -> list[Call]:
    """The calls the outputs need, each after the calls of its inputs (iterative DFS; raises on a
    cycle); the Inputs they read are collected too, for the checks."""
    order: list[Call] = []
    done: set[int] = set()
    on_path: set[int] = set()
    for root in outputs:
        if root.call is None:
            continue
        stack: list[tuple[Call, bool]] = [(root.call, False)]
        while stack:
            call, expanded = stack.pop()
            if expanded:
                on_path.discard(id(call))
                done.add(id(call))
                order.append(call)
                continue
            if id(call) in done:
                continue
            if id(call) in on_path:
                raise ValueError(f"Graph: the nodes form a cycle through {call.outputs[0]!r}")
            on_path.add(id(call))
            stack.append((call, True))
            for parent in reversed(call.parents()):
                if parent.call is None:
                    continue
                if id(parent.call) in on_path:
                    raise ValueError(f"Graph: the nodes form a cycle through {parent!r}")
                if id(parent.call) not in done:
                    stack.append((parent.call, False))
    return order


#: One step of the forward loop: the module, the positions of its positional inputs, its keyword
#: inputs (None, or name -> position or _Const), and the position of its output (an int) or of
#: each of its outputs (a tuple).
Step = tuple[Module, tuple[int, ...], "dict[str, int | _Const] | None", "int | tuple[int, ...]"]


class Graph(Module):
    """A network of module calls from ``inputs`` to ``outputs`` (``nn.Input`` nodes and the nodes
    module calls returned; a Node or a list of them each).

    ``model(xa, xb)`` takes one array per input and returns one array per output (a tuple for
    several). ``backward(grad)`` takes one gradient per output (a tuple for several; None for an
    output that gets no gradient) and returns one per input (a tuple for several; None for an
    integer input, which has no gradient).

    A module called on nodes may take keyword inputs (``lstm(x, lengths=l)``: a Node or a
    constant; they get no gradient) and may return several outputs (a tuple of Nodes: its backward
    gets a tuple of gradients, None for an output nothing downstream reads).
    Raises at build time for a cycle, an input that reaches no output, an output that depends on an
    Input not among ``inputs``, and for shape mismatches (each call runs once on a probe batch).
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)

    _in_nodes: list[Node]
    _out_nodes: list[Node]
    _node_calls: list[Call]
    _plan: list[Step]
    _out_pos: list[int]
    _position: dict[int, int]
    _n_in: int
    _keys: dict[int, str]
    _contexts: list[Context | None]

    def __init__(
        self, inputs: Node | list[Node] | tuple[Node, ...], outputs: Node | list[Node] | tuple[Node, ...]
    ) -> None:
        super().__init__()
        self._multi_in = isinstance(inputs, (list, tuple))
        self._multi_out = isinstance(outputs, (list, tuple))
        ins = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        for what, nodes in (("inputs", ins), ("outputs", outs)):
            if not nodes or not all(isinstance(n, Node) for n in nodes):
                raise TypeError(
                    f"Graph {what} must be Nodes (nn.Input(...) and what module calls on them "
                    f"return), got {[type(n).__name__ for n in nodes]}"
                )
        for i, n in enumerate(ins):
            if n.module is not None:
                raise ValueError(f"Graph input {i} is the output of {n.module!r}, not an nn.Input")
        if len({id(n) for n in ins}) != len(ins):
            raise ValueError("Graph: the same Input is listed twice in inputs")
        calls = _toposort(outs)
        position = {id(n): i for i, n in enumerate(ins)}
        read = [p for c in calls for p in c.parents() if p.call is None] + [n for n in outs if n.call is None]
        for n in read:
            if id(n) not in position:
                raise ValueError(
                    f"Graph: an output depends on {n!r}, which is not among the graph's inputs; "
                    "list every Input the outputs use in inputs=[...]"
                )
        reached = {id(n) for n in read}
        for i, n in enumerate(ins):
            if id(n) not in reached:
                raise ValueError(f"Graph: input {i} {n!r} does not reach any output; remove it or use it")
        for c in calls:  # an Input no layer with parameters fixed is float32 from now on
            for n in c.parents() + c.outputs:
                cell = n._dt.find()
                if cell.value is None:
                    cell.value = np.dtype(np.float32)
        for c in calls:
            for n in c.outputs:
                position[id(n)] = len(position)
        plan: list[Step] = []
        for c in calls:
            kw: dict[str, int | _Const] | None = None
            if c.kwargs:
                kw = {k: position[id(v)] if isinstance(v, Node) else _Const(v) for k, v in c.kwargs.items()}
            out = tuple(position[id(n)] for n in c.outputs) if c.multi else position[id(c.outputs[0])]
            plan.append((c.module, tuple(position[id(a)] for a in c.args), kw, out))
        d = self.__dict__
        d["_in_nodes"], d["_out_nodes"], d["_node_calls"], d["_plan"] = ins, outs, calls, plan
        d["_out_pos"] = [position[id(n)] for n in outs]
        d["_position"], d["_n_in"] = position, len(ins)
        keys: dict[int, str] = {}  # each module's key (its attribute name: "0", "1", ...)
        for c in calls:
            if id(c.module) not in keys:
                keys[id(c.module)] = str(len(keys))
                setattr(self, keys[id(c.module)], c.module)
        d["_keys"] = keys

    # --- computation ------------------------------------------------------------------------------
    def forward(self, *xs: Any) -> Any:
        ins = self._in_nodes
        if len(xs) != len(ins):
            raise TypeError(f"Graph takes {len(ins)} input array(s), got {len(xs)}")
        for i, (x, n) in enumerate(zip(xs, ins)):
            if getattr(x, "shape", None) is None or x.shape[1:] != n.shape:
                raise ValueError(
                    f"Graph input {i}: expected shape (batch, {', '.join(map(str, n.shape))}), "
                    f"got {getattr(x, 'shape', type(x).__name__)}"
                )
        values: list[Any] = list(xs) + [None] * (len(self._position) - len(xs))
        contexts = []
        protect = context.protect
        for module, args, kw, out in self._plan:
            a = protect(module, tuple(values[j] for j in args))
            if kw is None:
                y, ctx = module._forward_ctx(*a)
            else:
                y, ctx = module._forward_ctx(
                    *a, **{k: v.value if isinstance(v, _Const) else values[v] for k, v in kw.items()}
                )
            if isinstance(out, int):
                values[out] = y
            else:
                for p, v in zip(out, y):
                    values[p] = v
            contexts.append(ctx)
        if self.recording:
            self._contexts = contexts
        outs = tuple(values[p] for p in self._out_pos)
        return outs if self._multi_out else outs[0]

    def backward(self, grad: Any, input_grad: bool = True) -> Any:
        grads_out = tuple(grad) if self._multi_out else (grad,)
        n_in = self._n_in
        grads: list[Any] = [None] * len(self._position)

        def add(pos: int, g: Any) -> None:  # never in place: one array may be handed to several consumers
            grads[pos] = g if grads[pos] is None else grads[pos] + g

        for pos, g in zip(self._out_pos, grads_out):
            if g is not None:
                add(pos, g)
        for (module, args, _, out), ctx in zip(reversed(self._plan), reversed(self._contexts)):
            if isinstance(out, int):
                g = grads[out]
                if g is None:  # nothing downstream sends a gradient here
                    continue
                grads[out] = None
            else:
                g = tuple(grads[p] for p in out)
                if all(v is None for v in g):
                    continue
                for p in out:
                    grads[p] = None
            want = input_grad or any(j >= n_in for j in args)
            gin = module._backward_ctx(ctx, g, want)
            if not want or not args:
                continue
            if len(args) == 1:
                gin = (gin,)
            elif not isinstance(gin, (tuple, list)) or len(gin) != len(args):
                raise ValueError(
                    f"{module!r}.backward must return one gradient per positional input ({len(args)}), "
                    f"got {type(gin).__name__}"
                )
            for j, gj in zip(args, gin):
                if gj is not None and (j >= n_in or input_grad):
                    add(j, gj)
        if not input_grad:
            return None
        result = tuple(grads[:n_in])
        return result if self._multi_in else result[0]

    # --- architecture -----------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        position = self._position
        calls = []
        for c in self._node_calls:
            spec: dict[str, Any] = {"module": c.module, "args": [position[id(a)] for a in c.args]}
            if c.kwargs:
                spec["kwargs"] = {
                    k: {"node": position[id(v)]} if isinstance(v, Node) else {"value": v} for k, v in c.kwargs.items()
                }
            if c.multi:
                spec["outputs"] = len(c.outputs)
            calls.append(spec)
        return {
            "inputs": [
                {"shape": list(n.shape), "dtype": str(np.dtype(n.dtype)), "name": n.name} for n in self._in_nodes
            ],
            "calls": calls,
            "outputs": [position[id(n)] for n in self._out_nodes],
            "multi_input": self._multi_in,
            "multi_output": self._multi_out,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Graph:
        built: list[Node] = [Input(tuple(s["shape"]), s["dtype"], s.get("name")) for s in config["inputs"]]
        inputs = list(built)
        # Files written before keyword inputs and several outputs list "nodes" with "inputs".
        calls = config.get("calls") or [{"module": n["module"], "args": n["inputs"]} for n in config["nodes"]]
        for spec in calls:
            kwargs = {k: built[v["node"]] if "node" in v else v["value"] for k, v in spec.get("kwargs", {}).items()}
            made = spec["module"](*[built[j] for j in spec["args"]], **kwargs)
            built.extend(made if isinstance(made, tuple) else [made])
        outputs = [built[j] for j in config["outputs"]]
        return cls(
            inputs if config.get("multi_input", len(inputs) > 1) else inputs[0],
            outputs if config.get("multi_output", len(outputs) > 1) else outputs[0],
        )

    # --- display ----------------------------------------------------------------------------------
    def _node_names(self) -> dict[int, str]:
        names: dict[int, str] = {}
        counts: dict[str, int] = {}
        for i, n in enumerate(self._in_nodes):
            names[id(n)] = n.name or f"input_{i}"
        for c in self._node_calls:
            base = type(c.module).__name__.lower()
            k = counts.get(base, 0)
            counts[base] = k + 1
            name = base if k == 0 else f"{base}_{k}"
            for n in c.outputs:
                names[id(n)] = name if n.index is None else f"{name}[{n.index}]"
        return names

    def summary(self) -> str:
        """A Keras-style table: each call, its module, its inputs, output shape(s) and parameters."""
        names = self._node_names()
        rows = [("node", "module", "inputs", "output shape", "params")]
        for n in self._in_nodes:
            rows.append((names[id(n)], "Input", "", str((None,) + n.shape), "0"))
        first_use: dict[int, str] = {}
        for c in self._node_calls:
            m = c.module
            name = names[id(c.outputs[0])].split("[")[0]
            shared = first_use.get(id(m))
            params = f"shared with {shared}" if shared else f"{m.num_parameters():,}"
            first_use.setdefault(id(m), name)
            reads = [names[id(p)] for p in c.args]
            reads += [f"{k}={names[id(v)] if isinstance(v, Node) else repr(v)}" for k, v in c.kwargs.items()]
            shapes = ", ".join(str((None,) + n.shape) for n in c.outputs)
            rows.append((name, repr(m).split("\n")[0], ", ".join(reads), shapes, params))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        outs = ", ".join(names[id(n)] for n in self._out_nodes)
        lines.append(f"outputs: {outs}; {self.num_parameters():,} parameters (shared modules counted once)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return "Graph(\n  " + self.summary().replace("\n", "\n  ") + "\n)"

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: each node's module on its inputs' tensors, in the forward's order (a module used in
        two nodes exports twice, on the same initializers)."""
        values: list[Any] = list(inputs) + [""] * (len(self._position) - len(inputs))
        for module, args, kw, out in self._plan:
            kwargs = None if kw is None else {k: v.value if isinstance(v, _Const) else values[v] for k, v in kw.items()}
            names = b.call(module, [values[j] for j in args], self._keys[id(module)], kwargs)
            if isinstance(out, int):
                values[out] = names[0]
            else:
                for p, name in zip(out, names):
                    values[p] = name
        return [values[p] for p in self._out_pos]
