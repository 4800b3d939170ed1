"""Symbolic tensors of the functional API: ``nn.Input`` and the nodes that module calls make."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from .module import Module


class Node:
    """The output of one call of a module on other nodes, or a graph input (``module`` None).

    ``shape`` excludes the batch axis. Nodes are immutable once made; each call of a module on
    nodes makes a new node, even for the same module (a reused module, as in Keras).
    """

    __slots__ = ("module", "inputs", "shape", "dtype", "name")

    module: Module | None
    inputs: tuple[Node, ...]
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    name: str | None

    def __init__(
        self,
        module: Module | None,
        inputs: tuple[Node, ...] | list[Node],
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        name: str | None = None,
    ) -> None:
        self.module, self.inputs, self.shape, self.dtype, self.name = module, tuple(inputs), shape, dtype, name

    def __repr__(self) -> str:
        what = "Input" if self.module is None else type(self.module).__name__
        return f"<Node {what} shape=(batch, {', '.join(map(str, self.shape))}) dtype={np.dtype(self.dtype)}>"


def Input(shape: int | tuple[int, ...] | list[int], dtype: DTypeLike = np.float32, name: str | None = None) -> Node:
    """A graph input: ``nn.Input(784)`` or ``nn.Input((1, 28, 28))`` (shape without the batch axis)."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0 for s in shape):
        raise ValueError(
            f"Input: shape must be a positive int or a tuple of positive ints (without the batch axis), got {shape!r}"
        )
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"Input: dtype must be a float type (float32, float64), got {dt}")
    return Node(None, (), tuple(int(s) for s in shape), dt, name)
