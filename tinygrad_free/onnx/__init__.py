"""ONNX export: ``export(model, path, example_input_or_shapes, opset=17)`` (needs the ``[onnx]`` extra).

Every built-in layer and container exports through its own ``to_onnx(b, inputs)`` method, which
adds nodes to the builder ``b`` and returns its outputs' names; a layer of yours exports once it
has one too::

    class Scale(nn.Module):
        ...
        def to_onnx(self, b, inputs):
            return [b.op("Mul", [inputs[0], b.param(self.s)])]

``b.op(op_type, inputs, **attributes)`` adds a node (``b.ops`` one with several outputs),
``b.param(array_or_parameter)`` an initializer, ``b.activation(x, "relu")`` a fused
activation, ``b.call(child, inputs, key)`` a child module. ``b.recurrent(kind, x, layers, ...)``
(``recurrent.stack``) writes PyTorch-layout recurrent weights as ONNX RNN/LSTM/GRU nodes.

Inside this package ``import onnx`` is the onnx package itself (absolute imports).
"""

from .builder import Builder
from .export import DEFAULT_OPSET, MIN_OPSET, export

__all__ = ["Builder", "DEFAULT_OPSET", "MIN_OPSET", "export"]
