"""Symbolic tensors of the functional API: ``nn.Input``, the nodes that module calls make, and the
call that makes them (``module(node, ...)``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import context

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from .module import Module


class _DType:
    """A node's dtype, possibly still open: an ``Input`` made without ``dtype=`` takes the dtype
    of the layers it feeds, as in Keras. Nodes whose dtype follows an open Input's (through
    layers without parameters, which keep their input's dtype) share its cell, so fixing it at
    the first layer with parameters fixes them all (a union-find of cells)."""

    __slots__ = ("value", "parent", "by")

    def __init__(self, value: np.dtype[Any] | None) -> None:
        self.value: np.dtype[Any] | None = value
        self.parent: _DType | None = None
        self.by = ""  # the layer that fixed an open dtype (empty when given or computed)

    def find(self) -> _DType:
        cell = self
        while cell.parent is not None:
            cell = cell.parent
        return cell


class Call:
    """One call of a module on nodes: its positional inputs, its keyword inputs (Nodes, or
    constants saved with the graph) and the nodes of its outputs (one, or one per output when the
    module returns a tuple)."""

    __slots__ = ("module", "args", "kwargs", "outputs", "multi")

    def __init__(self, module: Module, args: tuple[Node, ...], kwargs: dict[str, Any]) -> None:
        self.module, self.args, self.kwargs = module, args, kwargs
        self.outputs: list[Node] = []
        self.multi = False

    def parents(self) -> list[Node]:
        """Every node the call reads: positional inputs, then keyword ones."""
        return list(self.args) + [v for v in self.kwargs.values() if isinstance(v, Node)]


class Node:
    """An output of one call of a module on other nodes, or a graph input (``module`` None).

    ``shape`` excludes the batch axis. Nodes are immutable once made (but for an open dtype
    being fixed); each call of a module on nodes makes new nodes, even for the same module (a
    reused module, as in Keras). A module that returns a tuple gives a tuple of nodes, one per
    output (``index``).
    """

    __slots__ = ("call", "index", "shape", "_dt", "name")

    call: Call | None
    index: int | None
    shape: tuple[int, ...]
    _dt: _DType
    name: str | None

    def __init__(
        self,
        call: Call | None,
        shape: tuple[int, ...],
        dtype: np.dtype[Any] | _DType | None,
        name: str | None = None,
        index: int | None = None,
    ) -> None:
        self.call, self.index, self.shape, self.name = call, index, shape, name
        self._dt = dtype if isinstance(dtype, _DType) else _DType(None if dtype is None else np.dtype(dtype))

    @property
    def module(self) -> Module | None:
        return None if self.call is None else self.call.module

    @property
    def inputs(self) -> tuple[Node, ...]:
        """The positional inputs of the call that made this node (none for an Input)."""
        return () if self.call is None else self.call.args

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of the node's arrays; an open Input's is float32 until a layer fixes it."""
        value = self._dt.find().value
        return np.dtype(np.float32) if value is None else value

    def __repr__(self) -> str:
        what = "Input" if self.module is None else type(self.module).__name__
        which = "" if self.index is None else f"[{self.index}]"
        return f"<Node {what}{which} shape=(batch, {', '.join(map(str, self.shape))}) dtype={self.dtype}>"


def Input(shape: int | tuple[int, ...] | list[int], dtype: DTypeLike | None = None, name: str | None = None) -> Node:
    """A graph input: ``nn.Input(784)`` or ``nn.Input((1, 28, 28))`` (shape without the batch axis);
    ``nn.Input((), dtype=np.int64)`` is one integer per sample (sequence lengths), ``nn.Input((T,),
    dtype=np.int64)`` a sequence of tokens.

    Without ``dtype`` the input takes the dtype of the layers it feeds (float32 when none has
    parameters); an error names both layers when two of them disagree.
    """
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0 for s in shape):
        raise ValueError(
            "Input: shape must be a positive int or a tuple of positive ints (without the batch axis; () for one "
            f"value per sample), got {shape!r}"
        )
    dt = None
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt.kind not in "fiub":
            raise ValueError(f"Input: dtype must be a float, integer or bool type (float32, int64, ...), got {dt}")
    return Node(None, tuple(int(s) for s in shape), dt, name)


def _parameter_dtype(module: Module) -> np.dtype[Any] | None:
    for _, p in module._walk():
        return p.data.dtype
    return None


def _describe(nodes: tuple[Node, ...]) -> str:
    return ", ".join(f"(batch, {', '.join(map(str, n.shape))})" for n in nodes)


def _fix_open_dtypes(module: Module, xs: tuple[Node, ...]) -> None:
    """Fix the open dtypes among ``xs`` to what ``module`` takes: its parameters' dtype, or the
    dtype of its other inputs; refuse a module whose dtype differs from the one an open input
    was already fixed to by another layer."""
    cells = [n._dt.find() for n in xs]
    want = _parameter_dtype(module)
    for cell in cells:
        if want is not None and cell.value is not None and cell.by and cell.value != want:
            raise ValueError(
                f"an nn.Input without dtype= feeds {cell.by} ({cell.value}) and {module!r} ({want}); the layers "
                "it feeds must agree on one dtype: build them with the same dtype=, or give the Input dtype= "
                "to say which"
            )
    if want is None:
        fixed = [c.value for c in cells if c.value is not None]
        want = fixed[0] if fixed else None
    if want is None:
        return
    for cell in cells:
        if cell.value is None:
            cell.value, cell.by = want, repr(module)


def _probe(n: Node) -> Any:
    """A batch of two samples for ``n``: zeros, or ones for integers (a length, a token, a count: a
    value every layer that takes integers accepts)."""
    dt = n.dtype
    return (np.ones if dt.kind in "iub" else np.zeros)((2,) + n.shape, dt)


def call_on_nodes(module: Module, xs: tuple[Any, ...], kwargs: dict[str, Any]) -> Node | tuple[Node, ...]:
    """``module(*nodes, key=node_or_constant)``: new Nodes whose shapes come from running the module
    once on a probe batch (two samples, eval mode, nothing saved), so a shape or dtype mismatch fails
    here, at build time. One Node for an array output, a tuple of Nodes for a tuple of arrays."""
    if not all(isinstance(x, Node) for x in xs):
        raise TypeError(
            f"{type(module).__name__} was called on a mix of Nodes and arrays: call a module "
            "either on nn.Input nodes (to build a Graph) or on arrays (to compute)"
        )
    for key, value in kwargs.items():
        if isinstance(value, np.ndarray):
            raise TypeError(
                f"{type(module).__name__} called on nodes got an array for {key!r}: in a Graph, arrays come in "
                "through nn.Input nodes (give it a Node), keyword constants must be plain values"
            )
    args: tuple[Node, ...] = xs
    node_kwargs = [v for v in kwargs.values() if isinstance(v, Node)]
    _fix_open_dtypes(module, args + tuple(node_kwargs))
    probe = [_probe(n) for n in args]
    probe_kw = {k: _probe(v) if isinstance(v, Node) else v for k, v in kwargs.items()}
    try:
        with context.no_grad(), context.mode(module, False):
            y = module.forward(*probe, **probe_kw)
    except (ValueError, TypeError, IndexError) as e:
        raise ValueError(f"{module!r} cannot take inputs of shape {_describe(args)}: {e}") from e
    outs = y if isinstance(y, tuple) else (y,)
    if not outs or not all(isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == 2 for v in outs):
        raise ValueError(
            f"{module!r} called on nodes must return an array with the batch axis first, or a tuple of them, "
            f"got {type(y).__name__} {getattr(y, 'shape', '')}"
        )
    call = Call(module, args, dict(kwargs))
    call.multi = isinstance(y, tuple)
    # Still open (a layer without parameters on an open Input) and dtype-preserving: an output
    # follows the Input, so a later layer can still fix both.
    cells = {id(c): c for c in (n._dt.find() for n in args + tuple(node_kwargs))}
    open_cells = [c for c in cells.values() if c.value is None]
    follows = bool(open_cells) and len(open_cells) == len(cells)
    for c in open_cells[1:]:
        c.parent = open_cells[0]
    for i, v in enumerate(outs):
        dt: Any = open_cells[0] if follows and v.dtype == np.float32 else v.dtype
        call.outputs.append(Node(call, v.shape[1:], dt, index=i if call.multi else None))
    return tuple(call.outputs) if call.multi else call.outputs[0]
