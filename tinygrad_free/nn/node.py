"""Symbolic tensors of the functional API: ``nn.Input`` and the nodes that module calls make."""
import numpy as np


class Node:
    """The output of one call of a module on other nodes, or a graph input (``module`` None).

    ``shape`` excludes the batch axis. Nodes are immutable once made; each call of a module on
    nodes makes a new node, even for the same module (a reused module, as in Keras).
    """

    __slots__ = ("module", "inputs", "shape", "dtype", "name")

    def __init__(self, module, inputs, shape, dtype, name=None):
        self.module, self.inputs, self.shape, self.dtype, self.name = module, tuple(inputs), shape, dtype, name

    def __repr__(self):
        what = "Input" if self.module is None else type(self.module).__name__
        return f"<Node {what} shape=(batch, {', '.join(map(str, self.shape))}) dtype={np.dtype(self.dtype)}>"


def Input(shape, dtype=np.float32, name=None):
    """A graph input: ``nn.Input(784)`` or ``nn.Input((1, 28, 28))`` (shape without the batch axis)."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0 for s in shape):
        raise ValueError(f"Input: shape must be a positive int or a tuple of positive ints (without the "
                         f"batch axis), got {shape!r}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"Input: dtype must be a float type (float32, float64), got {dtype}")
    return Node(None, (), tuple(int(s) for s in shape), dtype, name)
