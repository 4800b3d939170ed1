"""Sequential: a forward loop over modules and a reversed backward loop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, overload

from . import context
from .module import Module

if TYPE_CHECKING:
    from .._typing import OnnxBuilder


#: The context of a module that the one before it ran fused with itself (``Module.fuses_with``).
_FUSED = object()


class Sequential(Module):
    """A chain of modules. ``forward`` runs them in order; ``backward`` in reverse.

    Indexable (``model[0]``, ``model[1:]``), has ``len``, and grows with ``append``. One module
    object may appear several times (a shared activation, a tied layer): each position's call
    keeps its own saved values and its gradients add up. Parameter names are the dotted paths
    ``"<index>.<name>"``, a reused module's under its first index. The first module may take
    several inputs (``model(xa, xb)``).

    A module that can run with the next ones as one kernel (``_fuses_next`` and
    ``fused_count(the modules after it)``: a stride-1 ReLU convolution and its 2 x 2 max pooling,
    see ``Conv2D``; a BatchNorm, its ReLU and a 2 x 2 max pooling after that) is called as
    ``module(x, *those)``, and its backward covers them all.
    """

    _writes_inputs = False
    _layers: list[Module]
    _contexts: list[Any]

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        self.__dict__["_layers"] = []
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> Sequential:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential holds Modules, got {type(module).__name__}")
        setattr(self, str(len(self._layers)), module)
        self._layers.append(module)
        return self

    def __len__(self) -> int:
        return len(self._layers)

    @overload
    def __getitem__(self, index: int) -> Module: ...
    @overload
    def __getitem__(self, index: slice) -> Sequential: ...

    def __getitem__(self, index: int | slice) -> Module:
        if isinstance(index, slice):
            return Sequential(*self._layers[index])
        return self._layers[index]

    def __iter__(self) -> Iterator[Module]:
        return iter(self._layers)

    def forward(self, *xs: Any) -> Any:
        layers = self._layers
        if not layers:
            return xs[0] if len(xs) == 1 else xs
        contexts: list[Any] = []
        protect = context.protect
        n = len(layers)
        try:
            y = xs
            while len(contexts) < n:
                i = len(contexts)
                layer = layers[i]
                args = y if i == 0 else (y,)
                if layer._writes_inputs is not False:  # a layer of the user's: read-only views
                    args = protect(layer, args)
                k = layer.fused_count(layers[i + 1 :]) if layer._fuses_next else 0
                if k:
                    y, ctx = layer._forward_ctx(*args, *layers[i + 1 : i + 1 + k])
                    contexts += [ctx] + [_FUSED] * k
                else:
                    y, ctx = layer._forward_ctx(*args)
                    contexts.append(ctx)
        except ValueError as e:
            i = len(contexts)
            k = layers[i].fused_count(layers[i + 1 :]) if layers[i]._fuses_next else 0
            raise ValueError(f"layers {i}-{i + k}: {e}" if k else f"layer {i}: {e}") from e
        if self.recording:
            self._contexts = contexts
        return y

    def backward(self, grad_out: Any, input_grad: bool = True) -> Any:
        """Run every layer's backward in reverse, each with the context of its own call; returns
        dL/dx (None with ``input_grad=False``, which lets the first layer skip computing it)."""
        layers, contexts = self._layers, self._contexts
        for i in range(len(layers) - 1, 0, -1):
            if contexts[i] is not _FUSED:  # else the module before it ran both
                grad_out = layers[i]._backward_ctx(contexts[i], grad_out)
        if not layers:
            return grad_out if input_grad else None
        return layers[0]._backward_ctx(contexts[0], grad_out, input_grad)

    def get_config(self) -> dict[str, Any]:
        return {"layers": list(self._layers)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        return cls(*config["layers"])

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: each layer's nodes in turn, named after its position."""
        for i, layer in enumerate(self._layers):
            inputs = b.call(layer, inputs, str(i))
        return inputs
