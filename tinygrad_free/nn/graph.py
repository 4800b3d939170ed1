"""Graph: a network of module calls built the way Keras's functional API builds one, without autograd.

::

    x = nn.Input(784)
    h = nn.Dense(784, 128, activation="relu")(x)        # a module called on a Node returns a Node
    r = nn.Add()(h, nn.Dense(128, 128, activation="tanh")(h))
    model = nn.Graph(inputs=x, outputs=nn.Dense(128, 10)(r))

Each call of a module on nodes is a node of its own, so one module may appear in several nodes
(shared weights); its parameter gradients are the sum over its nodes. The nodes run in a
topological order computed once; backward walks it in reverse, handing each node the context of
its own call and summing the gradients of a node's several consumers (fan-out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import context
from .module import Module
from .node import Input, Node

if TYPE_CHECKING:
    from .._typing import OnnxBuilder
    from .context import Context


def _describe(nodes: Sequence[Node]) -> str:
    return ", ".join(f"(batch, {', '.join(map(str, n.shape))})" for n in nodes)


class _eval_mode:
    """Every module below ``module`` in eval mode for a moment, each flag restored after."""

    def __init__(self, module: Module) -> None:
        self.flags = [(m, m.training) for m in module.modules()]

    def __enter__(self) -> None:
        for m, _ in self.flags:
            m.__dict__["training"] = False

    def __exit__(self, *exc: object) -> None:
        for m, flag in self.flags:
            m.__dict__["training"] = flag


def call_on_nodes(module: Module, xs: tuple[Any, ...], kwargs: dict[str, Any]) -> Node:
    """``module(*nodes)``: a new Node whose shape comes from running the module once on zeros
    (batch of 2, eval mode, nothing saved), so a shape or dtype mismatch fails here, at build time."""
    if kwargs:
        raise TypeError(f"{type(module).__name__} called on nodes takes no keyword arguments, got {sorted(kwargs)}")
    if not all(isinstance(x, Node) for x in xs):
        raise TypeError(
            f"{type(module).__name__} was called on a mix of Nodes and arrays: call a module "
            "either on nn.Input nodes (to build a Graph) or on arrays (to compute)"
        )
    probe = [np.zeros((2,) + n.shape, n.dtype) for n in xs]
    try:
        with context.no_grad(), _eval_mode(module):
            y = module.forward(*probe)
    except (ValueError, TypeError, IndexError) as e:
        raise ValueError(f"{module!r} cannot take inputs of shape {_describe(xs)}: {e}") from e
    if not isinstance(y, np.ndarray) or y.ndim < 1 or y.shape[0] != 2:
        raise ValueError(
            f"{module!r} called on nodes must return one array with the batch axis first, "
            f"got {type(y).__name__} {getattr(y, 'shape', '')}; a module with several outputs "
            "cannot be a Graph node yet"
        )
    return Node(module, xs, y.shape[1:], y.dtype)


def _toposort(outputs: Sequence[Node]) -> list[Node]:
    """Nodes reachable from ``outputs``, each after its inputs (iterative DFS; raises on a cycle)."""
    order: list[Node] = []
    done: set[int] = set()
    on_path: set[int] = set()
    for root in outputs:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                on_path.discard(id(node))
                done.add(id(node))
                order.append(node)
                continue
            if id(node) in done:
                continue
            if id(node) in on_path:
                raise ValueError(f"Graph: the nodes form a cycle through {node!r}")
            on_path.add(id(node))
            stack.append((node, True))
            for parent in reversed(node.inputs):
                if id(parent) in on_path:
                    raise ValueError(f"Graph: the nodes form a cycle through {parent!r}")
                if id(parent) not in done:
                    stack.append((parent, False))
    return order


class Graph(Module):
    """A network of module calls from ``inputs`` to ``outputs`` (``nn.Input`` nodes and the nodes
    module calls returned; a Node or a list of them each).

    ``model(xa, xb)`` takes one array per input and returns one array per output (a tuple for
    several). ``backward(grad)`` takes one gradient per output (a tuple for several; None for an
    output that gets no gradient) and returns one per input (a tuple for several).
    Raises at build time for a cycle, an input that reaches no output, an output that depends on an
    Input not among ``inputs``, and for shape mismatches (each call runs once on zeros).
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)

    _in_nodes: list[Node]
    _out_nodes: list[Node]
    _plan: list[tuple[Module, tuple[int, ...], int]]
    _nodes: list[Node]
    _out_pos: list[int]
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
        order = _toposort(outs)
        position = {id(n): i for i, n in enumerate(ins)}
        reached = {id(n) for n in order}
        for n in order:
            if n.module is None and id(n) not in position:
                raise ValueError(
                    f"Graph: an output depends on {n!r}, which is not among the graph's inputs; "
                    "list every Input the outputs use in inputs=[...]"
                )
        for i, n in enumerate(ins):
            if id(n) not in reached:
                raise ValueError(f"Graph: input {i} {n!r} does not reach any output; remove it or use it")
        d = self.__dict__
        d["_in_nodes"], d["_out_nodes"] = ins, outs
        nodes = [n for n in order if n.module is not None]
        for n in nodes:
            position[id(n)] = len(position)
        # The plan the forward loop runs: (module, positions of its inputs, position of its output).
        d["_plan"] = [(n.module, tuple(position[id(p)] for p in n.inputs), position[id(n)]) for n in nodes]
        d["_nodes"] = nodes
        d["_out_pos"] = [position[id(n)] for n in outs]
        d["_n_in"] = len(ins)
        keys: dict[int, str] = {}
        for n in nodes:
            if id(n.module) not in keys:
                keys[id(n.module)] = str(len(keys))
                setattr(self, keys[id(n.module)], n.module)
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
        values = list(xs) + [None] * len(self._plan)
        contexts = []
        protect = context.protect
        for module, args, pos in self._plan:
            values[pos], ctx = module._forward_ctx(*protect(module, tuple(values[j] for j in args)))
            contexts.append(ctx)
        if self.training:
            self._contexts = contexts
        outs = tuple(values[p] for p in self._out_pos)
        return outs if self._multi_out else outs[0]

    def backward(self, grad: Any, input_grad: bool = True) -> Any:
        grads_out = tuple(grad) if self._multi_out else (grad,)
        if len(grads_out) != len(self._out_pos):
            raise ValueError(
                f"Graph.backward takes one gradient per output ({len(self._out_pos)}), got {len(grads_out)}"
            )
        n_in = self._n_in
        grads: list[Any] = [None] * (n_in + len(self._plan))

        def add(pos: int, g: Any) -> None:  # never in place: one array may be handed to several consumers
            grads[pos] = g if grads[pos] is None else grads[pos] + g

        for pos, g in zip(self._out_pos, grads_out):
            if g is not None:
                add(pos, g)
        for (module, args, pos), ctx in zip(reversed(self._plan), reversed(self._contexts)):
            g = grads[pos]
            if g is None:  # nothing downstream sends a gradient here
                continue
            grads[pos] = None
            want = input_grad or any(j >= n_in for j in args)
            gin = module._backward_ctx(ctx, g, want)
            if not want:
                continue
            if len(args) == 1:
                gin = (gin,)
            elif not isinstance(gin, (tuple, list)) or len(gin) != len(args):
                raise ValueError(
                    f"{module!r}.backward must return one gradient per input ({len(args)}), got {type(gin).__name__}"
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
        position = {id(n): i for i, n in enumerate(self._in_nodes)}
        for i, n in enumerate(self._nodes):
            position[id(n)] = self._n_in + i
        return {
            "inputs": [
                {"shape": list(n.shape), "dtype": str(np.dtype(n.dtype)), "name": n.name} for n in self._in_nodes
            ],
            "nodes": [{"module": n.module, "inputs": [position[id(p)] for p in n.inputs]} for n in self._nodes],
            "outputs": [position[id(n)] for n in self._out_nodes],
            "multi_input": self._multi_in,
            "multi_output": self._multi_out,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Graph:
        built = [Input(tuple(s["shape"]), s["dtype"], s.get("name")) for s in config["inputs"]]
        inputs = list(built)
        for spec in config["nodes"]:
            built.append(spec["module"](*[built[j] for j in spec["inputs"]]))
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
        for n in self._nodes:
            base = type(n.module).__name__.lower()
            k = counts.get(base, 0)
            counts[base] = k + 1
            names[id(n)] = base if k == 0 else f"{base}_{k}"
        return names

    def summary(self) -> str:
        """A Keras-style table: each node, its module, its inputs, output shape and parameters."""
        names = self._node_names()
        rows = [("node", "module", "inputs", "output shape", "params")]
        for n in self._in_nodes:
            rows.append((names[id(n)], "Input", "", str((None,) + n.shape), "0"))
        first_use: dict[int, str] = {}
        for n in self._nodes:
            m = n.module
            assert m is not None  # only Inputs lack a module, and _nodes holds none
            shared = first_use.get(id(m))
            params = f"shared with {shared}" if shared else f"{m.num_parameters():,}"
            first_use.setdefault(id(m), names[id(n)])
            rows.append(
                (
                    names[id(n)],
                    repr(m).split("\n")[0],
                    ", ".join(names[id(p)] for p in n.inputs),
                    str((None,) + n.shape),
                    params,
                )
            )
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
        values = list(inputs) + [""] * len(self._plan)
        for module, args, pos in self._plan:
            values[pos] = b.call(module, [values[j] for j in args], self._keys[id(module)])[0]
        return [values[p] for p in self._out_pos]
