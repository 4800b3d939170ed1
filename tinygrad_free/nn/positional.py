"""Learned positions and the class token of a Vision Transformer (Dosovitskiy et al. 2021)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import init as initializers
from . import _checks as check
from .module import Module
from .parameter import Parameter

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from .._typing import Array, OnnxBuilder, Seed


def _tokens(layer: Module, x: Any, dim: int) -> tuple[int, int, int]:
    if getattr(x, "ndim", 0) != 3 or x.shape[2] != dim:
        raise ValueError(
            f"{layer!r}: expected input of shape (batch, length, {dim}), got {getattr(x, 'shape', type(x).__name__)}"
        )
    return x.shape


class PositionalEmbedding(Module):
    """y[n, t] = x[n, t] + weight[t]: a learned vector per position, added to a (N, T, dim)
    sequence with T <= max_len (BERT's and ViT's position embeddings).

    The PyTorch equivalent is ``x + torch.nn.Embedding(max_len, dim)(torch.arange(T))``; the
    weight (max_len, dim) is that Embedding's ``weight`` (``torch_tensors``). It starts from
    N(0, 0.02^2), as ViT and BERT initialise it, and takes no weight decay. Backward: dx = dy;
    dweight[t] += sum over the batch of dy[:, t] for t < T (later positions get no gradient).

    Parameters
    ----------
    max_len : int
        The longest sequence it takes.
    dim : int
        Features per position.
    dtype, rng : as ``Dense``'s.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    _keeps_inputs = False  # backward needs only the length

    def __init__(self, max_len: int, dim: int, dtype: DTypeLike = np.float32, rng: Seed = None) -> None:
        super().__init__()
        self.max_len = check.positive_int(max_len, "max_len", "PositionalEmbedding")
        self.dim = check.positive_int(dim, "dim", "PositionalEmbedding")
        dtype = check.float_dtype(dtype, "PositionalEmbedding")
        w = initializers.as_generator(rng).normal(0.0, 0.02, (self.max_len, self.dim)).astype(dtype)
        self.weight = Parameter(w, "weight", decay=False)

    def forward(self, x: Array) -> Array:
        _, t, _ = _tokens(self, x, self.dim)
        check.same_dtype(self, x, self.weight.data.dtype)
        if t > self.max_len:
            raise ValueError(f"{self!r}: sequences of length {t} are longer than max_len {self.max_len}")
        if self.recording:
            self._t = t
        return x + self.weight.data[:t]

    def backward(self, grad_out: Array) -> Array:
        self.weight.grad[: self._t] += grad_out.sum(axis=0)
        return grad_out

    def get_config(self) -> dict[str, Any]:
        return {"max_len": self.max_len, "dim": self.dim, "dtype": str(self.weight.data.dtype)}

    def extra_repr(self) -> str:
        return f"{self.max_len}, {self.dim}"

    def torch_tensors(self) -> dict[str, Array]:
        """An ``nn.Embedding(max_len, dim)``'s ``weight``: the same array."""
        return {"weight": self.weight.data}

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: the weight's first T rows (T read from the input's shape) added."""
        x = inputs[0]
        t = b.op("Slice", [b.op("Shape", [x]), b.ints([1]), b.ints([2])])
        rows = b.op("Slice", [b.param(self.weight), b.ints([0]), t, b.ints([0])])
        return [b.op("Add", [x, rows])]


class ClassToken(Module):
    """y = [token; x[n]] for every sample: a learned (dim,) vector put before each (N, T, dim)
    sequence, giving (N, T + 1, dim) (ViT's and BERT's [CLS] token, whose output a classifier
    reads: ``y[:, 0]``).

    The token is stored as ViT implementations store it, a (1, 1, dim) ``cls_token`` (that name
    in ``torch_tensors``), starting from N(0, 0.02^2) as the positions do (torchvision's ViT starts
    it at 0), without weight decay. PyTorch:
    ``torch.cat([cls_token.expand(N, -1, -1), x], dim=1)``. Backward: dtoken += sum over the batch
    of dy[:, 0]; dx = dy[:, 1:].
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    _keeps_inputs = False  # backward needs nothing from forward

    def __init__(self, dim: int, dtype: DTypeLike = np.float32, rng: Seed = None) -> None:
        super().__init__()
        self.dim = check.positive_int(dim, "dim", "ClassToken")
        dtype = check.float_dtype(dtype, "ClassToken")
        token = initializers.as_generator(rng).normal(0.0, 0.02, (1, 1, self.dim)).astype(dtype)
        self.token = Parameter(token, "token", decay=False)

    def forward(self, x: Array) -> Array:
        n, t, d = _tokens(self, x, self.dim)
        check.same_dtype(self, x, self.token.data.dtype)
        y = np.empty((n, t + 1, d), x.dtype)
        y[:, :1] = self.token.data
        y[:, 1:] = x
        return y

    def backward(self, grad_out: Array) -> Array:
        self.token.grad += grad_out[:, :1].sum(axis=0, keepdims=True)
        return grad_out[:, 1:]

    def get_config(self) -> dict[str, Any]:
        return {"dim": self.dim, "dtype": str(self.token.data.dtype)}

    def extra_repr(self) -> str:
        return str(self.dim)

    def torch_tensors(self) -> dict[str, Array]:
        return {"cls_token": self.token.data}

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: the token expanded to (batch, 1, dim), concatenated before the sequence."""
        x = inputs[0]
        n = b.op("Slice", [b.op("Shape", [x]), b.ints([0]), b.ints([1])])
        shape = b.op("Concat", [n, b.ints([1, self.dim])], axis=0)
        return [b.op("Concat", [b.op("Expand", [b.param(self.token), shape]), x], axis=1)]


class SelectToken(Module):
    """y = x[:, index]: one position of each (N, T, F) sequence, as (N, F); ViT's classifier reads
    the class token's output this way (``x[:, 0]`` in PyTorch). Backward puts dy at that position
    and zeros elsewhere. No parameters.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    _keeps_inputs = False  # its output is a copy; backward needs the shape

    def __init__(self, index: int = 0) -> None:
        super().__init__()
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ValueError(f"SelectToken: index must be an int (negative counts from the end), got {index!r}")
        self.index = int(index)

    def forward(self, x: Array) -> Array:
        t = x.shape[1] if getattr(x, "ndim", 0) == 3 else 0
        if not -t <= self.index < t:
            raise ValueError(
                f"{self!r}: expected input of shape (batch, length, features) with position {self.index}, "
                f"got {getattr(x, 'shape', type(x).__name__)}"
            )
        if self.recording:
            self._x_shape = x.shape
        return x[:, self.index].copy()

    def backward(self, grad_out: Array) -> Array:
        dx = np.zeros(self._x_shape, grad_out.dtype)
        dx[:, self.index] = grad_out
        return dx

    def get_config(self) -> dict[str, Any]:
        return {"index": self.index}

    def extra_repr(self) -> str:
        return str(self.index)

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: Gather of one position along axis 1, that axis then squeezed."""
        picked = b.op("Gather", [inputs[0], b.ints([self.index], "index")], axis=1)
        return [b.op("Squeeze", [picked, b.ints([1], "axes")])]
