"""Embedding: a table of vectors looked up by integer index, PyTorch's ``nn.Embedding``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import backend
from .. import init as initializers
from ._checks import positive_int
from .module import Module
from .parameter import Parameter

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from .._typing import Array, OnnxBuilder, Seed


class Embedding(Module):
    """y = W[idx]: integer indices of any shape to ``idx.shape + (embedding_dim,)``, as PyTorch's
    ``nn.Embedding(num_embeddings, embedding_dim, padding_idx)``.

    Backward scatter-adds the output's gradient into the rows of W it read,
    dW[idx[k]] += dy[k] (a row used several times gets the sum), except the ``padding_idx`` row,
    which gets none; it returns no input gradient (indices are not differentiable). W (V, D) is
    PyTorch's ``weight``, initialised from N(0, 1) with the ``padding_idx`` row zero, as PyTorch's.

    Parameters
    ----------
    num_embeddings : int
        The table's rows V: indices go from 0 to V - 1.
    embedding_dim : int
    padding_idx : int or None
        A row that stays as it is (zero unless set): its gradient is always 0. Negative values
        count from the end (PyTorch's), -V <= padding_idx < V.
    dtype : float32 (default) or float64
    rng : None, int or numpy.random.Generator
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)
    kernel_files = ("embedding",)

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        dtype: DTypeLike = np.float32,
        rng: Seed = None,
    ) -> None:
        super().__init__()
        self.num_embeddings = positive_int(num_embeddings, "num_embeddings", "Embedding")
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim", "Embedding")
        v = self.num_embeddings
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
                raise ValueError(f"Embedding: padding_idx must be an integer or None, got {padding_idx!r}")
            if not -v <= padding_idx < v:
                raise ValueError(
                    f"Embedding: padding_idx must be in [-{v}, {v - 1}] (num_embeddings={v}), got {padding_idx}"
                )
            padding_idx = int(padding_idx) % v
        self.padding_idx = padding_idx
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"Embedding: dtype must be a float type (float32, float64), got {dtype}")
        w = initializers.as_generator(rng).standard_normal((v, self.embedding_dim)).astype(dtype)
        if padding_idx is not None:
            w[padding_idx] = 0
        self.W = Parameter(w, "W", decay=True)

    def forward(self, idx: Any) -> Array:
        idx = np.asarray(idx)
        v = self.num_embeddings
        if idx.dtype.kind not in "iu":
            raise ValueError(
                f"{self!r}: indices must be integers in [0, {v - 1}], got dtype {idx.dtype} "
                "(tokens are integer arrays, e.g. x.astype(np.int64))"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= v):
            bad = idx[(idx < 0) | (idx >= v)].flat[0]
            raise ValueError(f"{self!r}: indices must be in [0, {v - 1}] (num_embeddings={v}), got {bad}")
        y = np.take(self.W.data, idx, axis=0)
        if self.recording:
            self._idx = idx.astype(np.int64).reshape(-1)  # a copy: the caller may change its array
        return y

    def backward(self, grad_out: Array, input_grad: bool = True) -> None:
        g = grad_out.reshape(-1, self.embedding_dim)
        if not (g.flags.c_contiguous and g.flags.writeable):
            g = np.array(g, order="C")
        pad = -1 if self.padding_idx is None else self.padding_idx
        backend.ops().embedding_backward(self._idx, g, self.W.grad, pad)
        return None

    def get_config(self) -> dict[str, Any]:
        return {
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "padding_idx": self.padding_idx,
            "dtype": str(self.W.data.dtype),
        }

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s if self.padding_idx is None else s + f", padding_idx={self.padding_idx}"

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: Gather of the table's rows (axis 0)."""
        return [b.op("Gather", [b.param(self.W), inputs[0]], axis=0)]

    def torch_tensors(self) -> dict[str, Array]:
        """PyTorch ``nn.Embedding``'s ``weight``: W itself (the same layout)."""
        return {"weight": self.W.data}
