"""Sequential: a forward loop over modules and a reversed backward loop."""
from .dense import Dense
from .module import Module, from_spec


class Sequential(Module):
    """A chain of modules. ``forward`` runs them in order; ``backward`` in reverse.

    Indexable (``model[0]``, ``model[1:]``), has ``len``, and grows with ``append``.
    Parameter names are the dotted paths ``"<index>.<name>"``.
    """

    def __init__(self, *modules):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"Sequential holds Modules, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, index):
        layers = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*layers[index])
        return layers[index]

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        for i, layer in enumerate(self._modules.values()):
            try:
                x = layer(x)
            except ValueError as e:
                raise ValueError(f"layer {i}: {e}") from e
        return x

    def backward(self, grad_out, input_grad=True):
        """Run every layer's backward in reverse; returns dL/dx.

        ``input_grad=False`` (what a trainer passes: its input is data) lets the first layer
        skip computing dL/dx when it knows how (``Dense``, ``Sequential``), and returns None.
        """
        layers = list(self._modules.values())
        for layer in reversed(layers[1:]):
            grad_out = layer.backward(grad_out)
        if not layers:
            return grad_out
        if not input_grad and isinstance(layers[0], (Dense, Sequential)):
            return layers[0].backward(grad_out, input_grad=False)
        grad_in = layers[0].backward(grad_out)
        return grad_in if input_grad else None

    def get_config(self):
        return {"layers": [m.to_spec() for m in self._modules.values()]}

    @classmethod
    def from_config(cls, config):
        return cls(*(from_spec(s) for s in config["layers"]))
