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


class Node:
    """The output of one call of a module on other nodes, or a graph input (``module`` None).

    ``shape`` excludes the batch axis. Nodes are immutable once made (but for an open dtype
    being fixed); each call of a module on nodes makes a new node, even for the same module (a
    reused module, as in Keras).
    """

    __slots__ = ("module", "inputs", "shape", "_dt", "name")

    module: Module | None
    inputs: tuple[Node, ...]
    shape: tuple[int, ...]
    _dt: _DType
    name: str | None

    def __init__(
        self,
        module: Module | None,
        inputs: tuple[Node, ...] | list[Node],
        shape: tuple[int, ...],
        dtype: np.dtype[Any] | _DType | None,
        name: str | None = None,
    ) -> None:
        self.module, self.inputs, self.shape, self.name = module, tuple(inputs), shape, name
        self._dt = dtype if isinstance(dtype, _DType) else _DType(None if dtype is None else np.dtype(dtype))

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype of the node's arrays; an open Input's is float32 until a layer fixes it."""
        value = self._dt.find().value
        return np.dtype(np.float32) if value is None else value

    def __repr__(self) -> str:
        what = "Input" if self.module is None else type(self.module).__name__
        return f"<Node {what} shape=(batch, {', '.join(map(str, self.shape))}) dtype={self.dtype}>"


def Input(shape: int | tuple[int, ...] | list[int], dtype: DTypeLike | None = None, name: str | None = None) -> Node:
    """A graph input: ``nn.Input(784)`` or ``nn.Input((1, 28, 28))`` (shape without the batch axis).

    Without ``dtype`` the input takes the dtype of the layers it feeds (float32 when none has
    parameters); an error names both layers when two of them disagree.
    """
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0 for s in shape):
        raise ValueError(
            f"Input: shape must be a positive int or a tuple of positive ints (without the batch axis), got {shape!r}"
        )
    dt = None
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise ValueError(f"Input: dtype must be a float type (float32, float64), got {dt}")
    return Node(None, (), tuple(int(s) for s in shape), dt, name)


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
    nodes: tuple[Node, ...] = xs
    _fix_open_dtypes(module, nodes)
    probe = [np.zeros((2,) + n.shape, n.dtype) for n in nodes]
    try:
        with context.no_grad(), context.mode(module, False):
            y = module.forward(*probe)
    except (ValueError, TypeError, IndexError) as e:
        raise ValueError(f"{module!r} cannot take inputs of shape {_describe(nodes)}: {e}") from e
    if not isinstance(y, np.ndarray) or y.ndim < 1 or y.shape[0] != 2:
        raise ValueError(
            f"{module!r} called on nodes must return one array with the batch axis first, "
            f"got {type(y).__name__} {getattr(y, 'shape', '')}; a module with several outputs "
            "cannot be a Graph node yet"
        )
    # Still open (a layer without parameters on an open Input) and dtype-preserving: the output
    # follows the Input, so a later layer can still fix both.
    cells = {id(c): c for c in (n._dt.find() for n in nodes)}
    open_cells = [c for c in cells.values() if c.value is None]
    if open_cells and len(open_cells) == len(cells) and y.dtype == np.float32:
        for c in open_cells[1:]:
            c.parent = open_cells[0]
        return Node(module, nodes, y.shape[1:], open_cells[0])
    return Node(module, nodes, y.shape[1:], y.dtype)
