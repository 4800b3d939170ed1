"""The graph builder a module's ``to_onnx(b, inputs)`` hook writes into.

A hook gets the builder and the names of its input tensors, adds nodes with ``b.op`` and weights
with ``b.param``, and returns the names of its outputs. Containers export their children with
``b.call(child, inputs, key)``, which also names everything below the child after its place in
the model (``3.block.0.Gemm``), so the ONNX graph reads like ``model.named_parameters()``.

Weights are ONNX initializers named as in ``state_dict`` (``0.W``, ``1.running_mean``); a
module used at two places exports two groups of nodes that read the same initializers. Float
weights are stored in the graph's float type (that of the model's input).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..nn import Module, Parameter

if TYPE_CHECKING:
    from .._typing import Array

#: The activation names of ``nn.activation`` and the ONNX operator each one is.
ACTIVATIONS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}


def _defining_class(cls: type, attr: str) -> type | None:
    return next((c for c in cls.__mro__ if attr in c.__dict__), None)


class Builder:
    """Collects ONNX nodes and initializers while the exporter walks a model.

    Parameters
    ----------
    opset : int
        The opset of the default ONNX domain the graph is written for.
    dtype : numpy float dtype
        The graph's float type: float weights are stored in it.
    names : dict
        ``id(Parameter or buffer array) -> dotted name``, from the exported model.
    """

    def __init__(self, opset: int, dtype: np.dtype[Any], names: dict[int, str]) -> None:
        self.opset = opset
        self.dtype = np.dtype(dtype)
        self.nodes: list[Any] = []  # onnx NodeProtos
        self.initializers: dict[str, Array] = {}
        self._names = names
        self._cache: dict[Hashable, str] = {}
        self._keep: list[Any] = []  # objects whose id() is a cache key stay alive
        self._used: set[str] = set()
        self._scope: list[str] = []

    # --- names --------------------------------------------------------------------------------
    def unique(self, base: str) -> str:
        """``base``, or ``base_1``, ``base_2``... if taken: tensor and node names are unique."""
        name, k = base, 0
        while name in self._used:
            k += 1
            name = f"{base}_{k}"
        self._used.add(name)
        return name

    def _scoped(self, base: str) -> str:
        return ".".join(self._scope + [base])

    # --- the hook API -------------------------------------------------------------------------
    def op(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        """Add one node of ``op_type`` (default ONNX domain) reading ``inputs``; returns its output's
        name. Attributes are keyword arguments (None values are left out; ``""`` is an absent
        optional input)."""
        return self.ops(op_type, inputs, 1, **attrs)[0]

    def ops(self, op_type: str, inputs: Sequence[str], outputs: int, **attrs: Any) -> list[str]:
        """As :meth:`op` for an operator with ``outputs`` outputs; returns their names."""
        from onnx import helper

        name = self.unique(self._scoped(op_type))
        outs = [name] if outputs == 1 else [self.unique(f"{name}:{i}") for i in range(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs

    def param(self, value: Any, name: str | None = None, key: Hashable | None = None) -> str:
        """An initializer holding ``value`` (a ``Parameter``, a buffer or any array); returns its name.

        A Parameter or a model buffer is added once however often it is asked for (shared
        modules share it) and named as in ``state_dict``; another array is named ``name`` in
        the current scope and added each time, unless ``key`` (any hashable naming what it was
        derived from, e.g. ``("lstm_W", id(w))``) was seen before. Float arrays are stored in the
        graph's float type, integer arrays (indices, shapes) as int64.
        """
        source = value
        dotted = self._names.get(id(source))
        shared = isinstance(source, Parameter) or dotted is not None  # else a fresh array: nothing to share
        cache_key: Hashable = key if key is not None else (id(source) if shared else None)
        if isinstance(value, Parameter):
            value = value.data
        if cache_key is not None and cache_key in self._cache:
            return self._cache[cache_key]
        array = np.asarray(value)
        if array.dtype.kind == "f":
            array = array.astype(self.dtype)
        elif array.dtype.kind in "iub":
            array = array.astype(np.int64)
        else:
            raise TypeError(f"ONNX initializer {name or dotted!r}: expected a numeric array, got dtype {array.dtype}")
        tensor_name = self.unique(dotted if dotted is not None else self._scoped(name or "const"))
        self.initializers[tensor_name] = np.ascontiguousarray(array)
        if cache_key is not None:
            self._cache[cache_key] = tensor_name
            self._keep.append(source)
        return tensor_name

    def activation(self, x: str, name: str) -> str:
        """The fused activation ``name`` of ``nn.activation`` (identity, sigmoid, tanh, relu, gelu,
        gelu_tanh) applied to ``x``: one node (GELU: ONNX's Gelu from opset 20, before that its
        formula, x (1 + erf(x / sqrt 2)) / 2 or the tanh form), or none for identity."""
        if name in ("identity", "linear"):
            return x
        if name in ("gelu", "gelu_tanh"):
            return self._gelu(x, name == "gelu_tanh")
        if name not in ACTIVATIONS:
            raise ValueError(f"ONNX export: no ONNX operator for the activation {name!r}; known: {sorted(ACTIVATIONS)}")
        return self.op(ACTIVATIONS[name], [x])

    def scalar(self, value: float, name: str = "const") -> str:
        """A float scalar initializer in the graph's float type (shared by value)."""
        return self.param(np.array(value, self.dtype), name, key=("scalar", float(value)))

    def ints(self, values: Sequence[int], name: str = "ints") -> str:
        """A 1-D int64 initializer (shapes, axes, indices; shared by value)."""
        return self.param(np.array(values, np.int64), name, key=("ints", tuple(int(v) for v in values)))

    def _gelu(self, x: str, tanh_form: bool) -> str:
        if self.opset >= 20:
            return self.op("Gelu", [x], approximate="tanh" if tanh_form else "none")
        half_x = self.op("Mul", [x, self.scalar(0.5)])
        if tanh_form:
            cube = self.op("Mul", [self.op("Mul", [x, x]), x])
            inner = self.op("Add", [x, self.op("Mul", [cube, self.scalar(0.044715)])])
            t = self.op("Tanh", [self.op("Mul", [inner, self.scalar(float(np.sqrt(2.0 / np.pi)))])])
        else:
            t = self.op("Erf", [self.op("Mul", [x, self.scalar(float(1.0 / np.sqrt(2.0)))])])
        return self.op("Mul", [half_x, self.op("Add", [t, self.scalar(1.0)])])

    def recurrent(self, kind: str, x: str, layers: Sequence[Sequence[Any]], **options: Any) -> list[str]:
        """A stack of ONNX RNN, LSTM or GRU nodes from weights in PyTorch's layout (see
        :func:`tinygrad_free.onnx.recurrent.stack`, which takes the same arguments)."""
        from .recurrent import stack

        return stack(self, kind, x, layers, **options)

    def require_opset(self, version: int, what: str) -> None:
        """Raise unless the graph's opset is at least ``version`` (``what`` needs it)."""
        if self.opset < version:
            raise ValueError(
                f"ONNX export: {what} needs opset >= {version}, the export asked for opset {self.opset}; "
                f"pass opset={version} or later"
            )

    def call(self, module: Any, inputs: Sequence[str], scope: str, kwargs: dict[str, Any] | None = None) -> list[str]:
        """Export ``module`` applied to ``inputs`` through its ``to_onnx`` hook, its nodes named under
        ``scope`` (its key in the parent); returns its outputs' names. ``kwargs``: the call's keyword
        inputs (tensor names, or the constants given), handed to the hook as keywords."""
        where = ".".join(self._scope + [scope]) if scope else ".".join(self._scope) or "the model"
        hook = getattr(module, "to_onnx", None)
        cls = type(module)
        if hook is None:
            raise TypeError(
                f"ONNX export: {cls.__module__}.{cls.__qualname__} (at {where!r}) has no to_onnx(b, inputs) "
                "method; give the class one that adds its nodes with b.op(...) and returns its outputs' "
                "names (see tinygrad_free.onnx and the docs' guide docs/guides/exchange.md)"
            )
        forward_cls, hook_cls = _defining_class(cls, "forward"), _defining_class(cls, "to_onnx")
        if (
            isinstance(module, Module)
            and forward_cls is not None
            and hook_cls is not None
            and forward_cls is not hook_cls
            and issubclass(forward_cls, hook_cls)
        ):
            raise TypeError(
                f"ONNX export: {cls.__qualname__} (at {where!r}) overrides forward but inherits to_onnx from "
                f"{hook_cls.__qualname__}, which would export the parent's computation; define "
                f"{cls.__qualname__}.to_onnx"
            )
        if scope:
            self._scope.append(scope)
        try:
            out = hook(self, list(inputs), **(kwargs or {}))
        finally:
            if scope:
                self._scope.pop()
        outs = [out] if isinstance(out, str) else out
        if not isinstance(outs, (list, tuple)) or not all(isinstance(o, str) for o in outs):
            raise TypeError(
                f"ONNX export: {cls.__qualname__}.to_onnx (at {where!r}) must return a list of tensor names, "
                f"got {type(out).__name__}"
            )
        return list(outs)

    def rename(self, old: str, new: str) -> None:
        """Give the tensor ``old`` (a node's output) the name ``new`` everywhere it is written or read."""
        self._used.add(new)
        for node in self.nodes:
            for seq in (node.output, node.input):
                for i, n in enumerate(seq):
                    if n == old:
                        seq[i] = new
