"""Residual: y = x + block(x), the skip connection of ResNet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import context
from .module import Module

if TYPE_CHECKING:
    from .._typing import Array, OnnxBuilder
    from .context import Context


class Residual(Module):
    """y = x + block(x); dL/dx = dL/dy + block.backward(dL/dy).

    ``block`` may be any module (a ``Sequential``, a ``Graph``) whose output has its input's
    shape. The block's call and its backward are paired explicitly, so a Residual, or its block,
    may be used several times in one network.
    """

    _writes_inputs = False  # never writes into its inputs (see nn.context)

    _ctx: Context | None

    def __init__(self, block: Module) -> None:
        super().__init__()
        if not isinstance(block, Module):
            raise TypeError(f"Residual wraps a Module, got {type(block).__name__}")
        self.block = block

    def forward(self, x: Array) -> Array:
        y, ctx = self.block._forward_ctx(*context.protect(self.block, (x,)))
        if not isinstance(y, np.ndarray):
            raise ValueError(
                f"Residual: the block must return one array (y = x + block(x)), got {type(y).__name__}"
                + (f" of {len(y)} outputs" if isinstance(y, tuple) else "")
            )
        if y.shape != x.shape:
            raise ValueError(
                f"Residual: the block's output has shape {y.shape} but its input {x.shape}; "
                "y = x + block(x) needs the block to keep the shape"
            )
        if self.recording:
            self._ctx = ctx
        return x + y

    def backward(self, grad_out: Array, input_grad: bool = True) -> Array | None:
        g = self.block._backward_ctx(self._ctx, grad_out, input_grad)
        return grad_out + g if input_grad else None

    def get_config(self) -> dict[str, Any]:
        return {"block": self.block}

    def to_onnx(self, b: OnnxBuilder, inputs: list[str]) -> list[str]:
        """ONNX: the block's nodes, then Add(x, block(x))."""
        return [b.op("Add", [inputs[0], b.call(self.block, inputs, "block")[0]])]
