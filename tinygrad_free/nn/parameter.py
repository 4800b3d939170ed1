"""The trainable tensor: a value and the gradient that backward accumulates into it."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from .._typing import Array

# The hot path's flag writes skip Parameter.__setattr__ (which only guards data).
_set = object.__setattr__
#: Changes of any parameter's value through the library (an optimizer step, an assignment to
#: ``data``, ``load_state_dict``), counted: a forward records the count, and its backward checks
#: its module's parameters only when the count has moved since (see ``Parameter.changed``).
CHANGES = [0]


def changes() -> int:
    """How many parameter changes the library has made so far in this process."""
    return CHANGES[0]


def changed(params: list[Parameter]) -> None:
    """Record that the values of ``params`` changed (an optimizer step): one count for all."""
    CHANGES[0] += 1
    stamp = CHANGES[0]
    for p in params:
        _set(p, "_changed_at", stamp)


class Parameter:
    """A trainable array and its gradient.

    Parameters
    ----------
    data : ndarray
        The value. Kept as given (no copy) so a layer and its parameter share memory.
    name : str
        The local name (``"W"``); a container prefixes it with the child's key when the
        owning module is attached, so inside a model it reads ``"0.W"``.
    decay : bool
        Whether coupled L2 weight decay applies (weight matrices yes, biases no).

    Notes
    -----
    ``backward`` ACCUMULATES into ``grad`` (two backward calls double it), as in PyTorch;
    ``zero_grad()`` (or ``p.grad = None``) clears it.

    A new parameter, and one cleared by ``zero_grad()``, has no gradient (PyTorch's ``grad is
    None``): ``has_grad`` is False until a backward writes one (or code reads or sets ``grad``,
    which then holds zeros plus whatever is added). An optimizer's ``step`` leaves a parameter
    without a gradient untouched, as PyTorch's does after ``zero_grad(set_to_none=True)``: no
    update, no weight decay, its moments and step count as they were.

    An optimizer packs ``data`` and ``grad`` into views of one flat buffer, so one kernel call
    updates every parameter. From then on, assigning ``p.data = array`` or ``p.grad = array``
    COPIES into that buffer (the optimizer keeps seeing the parameter); before packing it
    re-binds. Either way the shape and dtype of a parameter are fixed: a new array of another
    shape or dtype raises. Read ``p.data`` through the Parameter at each use rather than
    keeping the array: packing moves it.
    """

    __slots__ = ("data", "_grad", "_grad_is_zero", "name", "decay", "_owner", "_changed_at")
    data: Array
    _grad: Array
    _grad_is_zero: bool
    name: str
    decay: bool
    _owner: weakref.ref[Any] | None
    _changed_at: int  # the value of changes() after this parameter's last change

    def __init__(self, data: ArrayLike, name: str = "", decay: bool = True) -> None:
        data = np.asarray(data)
        if data.dtype.kind != "f":
            raise ValueError(f"Parameter {name!r} must be a floating array, got dtype {data.dtype}")
        object.__setattr__(self, "_owner", None)
        object.__setattr__(self, "_changed_at", 0)
        object.__setattr__(self, "data", data)
        self._grad = np.zeros_like(data)
        self._grad_is_zero = True  # no gradient yet (PyTorch: grad is None)
        self.name = name
        self.decay = decay

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "data":
            value = self._conforming(value, "data")
            self.changed()
            if self._owner is not None:  # packed: the optimizer's buffer must see the value
                self.data[...] = value
                return
        object.__setattr__(self, key, value)

    def changed(self) -> None:
        """Record that the value changed (the optimizer calls it for each parameter it steps), so
        a backward of a forward that ran before refuses instead of mixing old and new weights."""
        CHANGES[0] += 1
        _set(self, "_changed_at", CHANGES[0])

    def _conforming(self, value: ArrayLike, what: str) -> Array:
        """``value`` as an array of this parameter's shape and dtype, or a clear error."""
        value = np.asarray(value)
        shape, dtype = self.data.shape, self.data.dtype
        if value.shape != shape:
            raise ValueError(
                f"Parameter {self.name!r}: the new {what} has shape {value.shape}, but the "
                f"parameter's shape is {shape}; a parameter's shape is fixed (build a new layer "
                "to change it)"
            )
        if value.dtype != dtype:
            raise ValueError(
                f"Parameter {self.name!r}: the new {what} has dtype {value.dtype}, but the "
                f"parameter is {dtype}; convert it first, e.g. array.astype(np.{dtype})"
            )
        return value

    def _bind(self, data: Array, grad: Array, owner: weakref.ref[Any]) -> None:
        """Point ``data``/``grad`` at an optimizer's buffer views (``owner``: a weakref to it)."""
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "_grad", grad)
        object.__setattr__(self, "_owner", owner)

    @property
    def grad(self) -> Array:
        if self._grad_is_zero:  # materialize_grad(), inlined: the hot path reads grad often
            self._grad.fill(0)
            _set(self, "_grad_is_zero", False)
        return self._grad

    @grad.setter
    def grad(self, value: ArrayLike | None) -> None:
        if value is None:  # PyTorch's way of clearing a gradient
            self.zero_grad()
            return
        value = self._conforming(value, "grad")
        if self._owner is not None:
            self._grad[...] = value
        else:
            self._grad = value
        self._grad_is_zero = False

    @property
    def has_grad(self) -> bool:
        """Whether a gradient was written (or ``grad`` read or set) since the last ``zero_grad()``."""
        return not self._grad_is_zero

    def materialize_grad(self) -> None:
        """Make a pending lazy ``zero_grad`` real: zero the array now. For code that reads the
        gradient's memory directly (an optimizer's flat buffer) rather than through ``grad``."""
        if self._grad_is_zero:
            self._grad.fill(0)
            _set(self, "_grad_is_zero", False)

    def zero_grad(self) -> None:
        """Clear the gradient. Lazy: the next ``gemm_target`` user overwrites instead of adding,
        which saves a pass over the largest arrays every step; any other read sees zeros."""
        _set(self, "_grad_is_zero", True)

    def gemm_target(self) -> tuple[Array, float]:
        """(grad, beta) for a matrix product that writes ``grad <- update + beta * grad``.

        beta is 0 right after ``zero_grad()`` (the product overwrites, even stale NaN) and 1
        otherwise (it accumulates). Call ``grad_written()`` once the product has run, so a
        kernel that raised first leaves a pending zero_grad pending.
        """
        return self._grad, (0.0 if self._grad_is_zero else 1.0)

    def grad_written(self) -> None:
        """The array from ``gemm_target`` now holds the gradient."""
        _set(self, "_grad_is_zero", False)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def __repr__(self) -> str:
        return f"Parameter(name={self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"
