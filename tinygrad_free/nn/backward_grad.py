"""The gradient handed to a backward: described from the output of the call it belongs to,
checked against that description, and copied for a layer that may write into it.

Every backward is handed an array of its output's shape (a float array of another float dtype is
converted to the output's, as PyTorch's autograd does); a tuple of them, None allowed, for several
outputs; a number for a scalar output (a loss: dL/dloss, 1.0 when omitted). Anything else is
refused naming the module, what it got and what it needs: a gradient is never broadcast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .module import Module


def _name(module: Module) -> str:
    return type(module).__name__


#: The description of a scalar output (a loss): its gradient is a number, 1.0 when not given.
SCALAR = "scalar"


def describe(y: Any) -> Any:
    """What a gradient of ``y`` must look like: ``(shape, dtype)`` for an array, a list of those
    for a tuple of outputs, SCALAR for a number, None when it cannot be told (no check)."""
    if type(y) is np.ndarray:
        return (y.shape, y.dtype)
    if type(y) is tuple:
        return [describe(v) for v in y]
    if isinstance(y, (float, int, np.floating, np.integer)) and not isinstance(y, bool):
        return SCALAR
    return None


def _shape_text(out: Any) -> str:
    if isinstance(out, tuple):
        return str(out[0])
    if isinstance(out, list):
        return "(" + ", ".join(_shape_text(o) for o in out) + ")"
    return "a number"


def check_grad(module: Module, out: Any, grad: Any) -> Any:
    """``grad`` checked against the output description ``out`` of the call it belongs to: the
    gradient to hand the layer (a float array of another float dtype converted), or an error
    that names the module, what it got and what it needs."""
    if type(out) is tuple:
        shape, dtype = out
        if type(grad) is np.ndarray and grad.shape == shape:
            if grad.dtype is dtype or grad.dtype == dtype:
                return grad
            if grad.dtype.kind == "f":
                return grad.astype(dtype)
            raise TypeError(
                f"{_name(module)}.backward: the gradient must be a float array ({dtype}, the output's dtype), "
                f"got dtype {grad.dtype}"
            )
        _wrong(module, out, grad)
    if out is None:
        return grad
    if out is SCALAR:
        if grad is None:
            return 1.0
        if isinstance(grad, (float, int, np.floating, np.integer)) and not isinstance(grad, bool):
            return float(grad)
        if isinstance(grad, np.ndarray) and grad.shape == ():
            return float(grad)
        raise TypeError(
            f"{_name(module)}.backward: its output is a number, so the gradient is a number "
            f"(dL/dloss, 1.0 when omitted), got {_what(grad)}"
        )
    # several outputs
    if not isinstance(grad, (tuple, list)) or len(grad) != len(out):
        raise ValueError(
            f"{_name(module)}.backward: its forward returned {len(out)} outputs of shapes {_shape_text(out)}, so "
            f"backward takes a tuple of {len(out)} gradients (None for an output that gets none), got {_what(grad)}"
        )
    return tuple(None if g is None or o is None else check_grad(module, o, g) for o, g in zip(out, grad))


def _what(grad: Any) -> str:
    if isinstance(grad, np.ndarray):
        return f"an array of shape {grad.shape}"
    if isinstance(grad, (tuple, list)):
        return f"a {type(grad).__name__} of {len(grad)}"
    return "None" if grad is None else f"a {type(grad).__name__}"


def _wrong(module: Module, out: tuple[Any, Any], grad: Any) -> None:
    shape = out[0]
    if grad is None:
        raise TypeError(
            f"{_name(module)}.backward takes the gradient of its output, an array of shape {shape}, got None"
        )
    if not isinstance(grad, np.ndarray):
        raise TypeError(
            f"{_name(module)}.backward: the gradient must be a numpy array of shape {shape} (the output's), "
            f"got {_what(grad)}; convert it with np.asarray first"
        )
    raise ValueError(
        f"{_name(module)}.backward: expected a gradient of shape {shape} (the shape of its output), got "
        f"{grad.shape}; a gradient is never broadcast"
    )


def private(grad: Any) -> Any:
    """A copy of ``grad`` (an array or a tuple of them) for a module that may write into it."""
    if type(grad) is np.ndarray:
        return grad.copy()
    if type(grad) is tuple:
        return tuple(private(g) for g in grad)
    return grad
