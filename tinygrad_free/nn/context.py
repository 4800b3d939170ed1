"""Per-call contexts: what one forward call of a module saved for its own backward.

A layer is written the simple way: ``forward`` stores what backward needs as attributes
(``self.x = x``) and ``backward`` reads them. The base class makes those attributes per call:

* every ``forward`` in training mode runs inside a fresh :class:`Context`; each plain attribute
  the layer sets during that call is recorded in it (and set on the module as usual);
* ``backward`` is handed one context (by a container, by ``begin_update``'s callback, or the
  single pending one) and runs with that call's attributes put back on the module, then the
  module's attributes are restored and the context is released.

So one module object may be called any number of times in a network: each call's backward sees
its own inputs and outputs, and the parameter gradients add up over the uses, as under PyTorch's
autograd. Containers (``Sequential``, ``Graph``, ``Residual``) pair every call with its context
explicitly (thinc's ``(y, backprop)``), so they may run backward passes in any order.

A plain ``module.backward(grad)`` with no context named takes the module's one pending call. It
refuses, naming the cause, when there is none (backward before forward, after an eval-mode or
``no_grad`` forward, or a second time for the same forward) or when there are several (the
module ran twice since its last backward and the gradient could belong to either).

In training mode a module's output reaches user code read-only: the layer (or the next one)
may keep it for backward, and an in-place change such as ``out += x`` would silently corrupt the
gradients (PyTorch raises "modified by an inplace operation" for the same reason). ``y.copy()``
gives a writable array. "User code" is whatever the library does not vouch for: the caller of
``forward``/``begin_update``, and any module whose class does not declare
``_writes_inputs = False``. Containers hand an output to the next built-in layer as it is (the
built-in layers never write into their inputs) and to any other module as a read-only view;
that keeps read-only arrays off the hot path, where each one costs numba's dispatcher its slow
type lookup (about a microsecond per argument).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .module import Module

_MISSING = object()
_recording: list[Context] = []  # contexts whose forward is running, innermost last
_replaying: list[Context] = []  # contexts whose backward is running, innermost last
_grad_enabled: list[bool] = [True]


class Context:
    """One forward call's saved attributes, and the contexts its own children made implicitly."""

    __slots__ = ("module", "saved", "children", "used")

    module: Module
    saved: dict[str, Any] | None
    children: list[Context] | None
    used: bool

    def __init__(self, module: Module) -> None:
        self.module = module
        self.saved = {}
        self.children = None
        self.used = False


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Forward passes inside save nothing for backward (as ``torch.no_grad()``); training-mode
    behaviour such as dropout and batch statistics is unchanged (that is ``eval()``)."""
    _grad_enabled.append(False)
    try:
        yield
    finally:
        _grad_enabled.pop()


def is_grad_enabled() -> bool:
    return _grad_enabled[-1]


def _name(module: Module) -> str:
    return type(module).__name__


def readonly(y: Any, xs: tuple[Any, ...] = ()) -> Any:
    """``y`` (an array or a tuple of them) as read-only views, except an array that is one of
    ``xs`` (the caller's own input, handed back unchanged)."""
    if type(y) is np.ndarray:
        if y.flags.writeable:
            for x in xs:
                if x is y:
                    return y
            y = y.view()
            y.flags.writeable = False
        return y
    if type(y) is tuple:
        return tuple(readonly(v, xs) for v in y)
    return y


def forward_ctx(module: Module, *xs: Any, **kwargs: Any) -> tuple[Any, Context | None]:
    """``module``'s forward on ``xs``; in training mode with gradients on, inside a new context.

    Returns ``(y, context)``, the context None when nothing was saved. (``Module._forward_ctx``;
    containers call it to pair each call with its backward.) ``y`` is the layer's own array:
    the caller makes it read-only before it reaches user code (``readonly``, ``protect``).
    """
    d = module.__dict__
    try:
        training = d["training"]
    except KeyError:
        raise RuntimeError(f"{_name(module)}.__init__ must call super().__init__() first") from None
    fn = type(module)._forward_raw
    # "_last_forward" is the context of the module's last forward when that call saved one and
    # succeeded: then the module's attributes are that call's (backward can skip the swap).
    if not (training and _grad_enabled[-1]):
        d["_last_forward"] = "eval" if not training else "no_grad"
        return fn(module, *xs, **kwargs), None
    ctx = Context(module)
    outer = d.get("_recording_ctx")
    d["_recording_ctx"] = ctx
    _recording.append(ctx)
    try:
        y = fn(module, *xs, **kwargs) if kwargs else fn(module, *xs)
    except BaseException:
        d["_last_forward"] = "failed"
        raise
    finally:
        _recording.pop()
        d["_recording_ctx"] = outer
    d["_last_forward"] = ctx
    return y, ctx


def protect(module: Module, xs: tuple[Any, ...]) -> tuple[Any, ...]:
    """The inputs a container hands ``module``: as they are when its class declares that it never
    writes into its inputs (``_writes_inputs = False``), else read-only views, so a user's layer
    cannot change in place an array that another layer kept for its backward."""
    if type(module)._writes_inputs and module.__dict__.get("training") and _grad_enabled[-1]:
        return tuple(readonly(x) for x in xs)
    return xs


def _register(module: Module, ctx: Context) -> None:
    """File an implicitly made context: with the caller's context when a module's forward made
    the call, else as the module's pending top-level call."""
    if _recording:
        parent = _recording[-1]
        if parent.children is None:
            parent.children = []
        parent.children.append(ctx)
    else:
        d = module.__dict__
        d["_pending"] = ctx
        d["_pending_calls"] = d.get("_pending_calls", 0) + 1


def _resolve(module: Module) -> Context:
    """The context a plain ``backward(grad)`` belongs to, or a clear error."""
    name = _name(module)
    if _replaying:
        owner = _replaying[-1]
        mine = [c for c in owner.children or () if c.module is module and not c.used]
        if len(mine) == 1:
            return mine[0]
        if len(mine) > 1:
            outer = _name(owner.module)
            raise RuntimeError(
                f"{name}.backward inside {outer}.backward: {outer}.forward called this {name} "
                f"{len(mine)} times, so backward(grad) cannot tell which call grad belongs to. Pair "
                f"each call with its own backward: in {outer}.forward write `y, self.back = "
                f"self.<layer>.begin_update(x)` and in {outer}.backward call `self.back(grad)` "
                "(Sequential, Graph and Residual do this for you)"
            )
    d = module.__dict__
    ctx = d.get("_pending")
    if ctx is not None and not ctx.used:
        calls = d.get("_pending_calls", 1)
        if calls > 1:
            raise RuntimeError(
                f"{name}.backward: this {name} ran forward {calls} times in training mode since its last "
                "backward, so backward(grad) cannot tell which call grad belongs to. Pair each call "
                "with its own backward (`y, backprop = module.begin_update(x)`, then `backprop(grad)`), "
                "or run the forward passes you will not backpropagate under `with nn.no_grad():` or in "
                "eval mode"
            )
        return ctx
    last = d.get("_last_forward")
    if last is None:
        raise RuntimeError(f"{name}.backward was called before forward: no forward pass has run in training mode")
    if last == "failed":
        raise RuntimeError(
            f"{name}.backward: the last forward raised an exception, so it has nothing to "
            "backpropagate; run a forward pass that succeeds first"
        )
    if last == "eval":
        raise RuntimeError(
            f"{name}.backward: the last forward ran in eval mode, which saves nothing for backward; "
            "call model.train() before the forward pass you want to backpropagate"
        )
    if last == "no_grad":
        raise RuntimeError(
            f"{name}.backward: the last forward ran under nn.no_grad(), which saves nothing for backward; "
            "run the forward pass you want to backpropagate outside no_grad()"
        )
    raise RuntimeError(
        f"{name}.backward: the values saved by the last forward were already used by an earlier backward. "
        "Each forward pass can be backpropagated once (as in PyTorch); run forward again first"
    )


def backward_ctx(module: Module, ctx: Context | None, grad: Any, input_grad: bool = True) -> Any:
    """The backward of the call that made ``ctx``, run with the attributes that call saved put
    back on the module. (``Module._backward_ctx``.)"""
    if ctx is None:
        raise RuntimeError(
            f"{_name(module)}.backward: its forward ran in eval mode or under no_grad(), which saves "
            "nothing for backward; call model.train() before the forward pass you want to backpropagate"
        )
    if ctx.module is not module:
        raise RuntimeError(
            f"{_name(module)}.backward was handed the context of a call of another module ({_name(ctx.module)})"
        )
    if ctx.used:
        raise RuntimeError(
            f"{_name(module)}.backward: this forward call was already backpropagated. Each forward pass "
            "can be backpropagated once (as in PyTorch); run forward again first"
        )
    call: Context = ctx
    call.used = True
    d = module.__dict__
    previous: list[tuple[str, Any]] = []
    saved = call.saved
    if saved is not None and d.get("_last_forward") is not call:
        # Another call ran since: put this one's attributes back. (Otherwise the module's
        # attributes are this call's already, the usual case.)
        previous = [(k, d.get(k, _MISSING)) for k in saved]
        d.update(saved)
    _replaying.append(call)
    try:
        cls = type(module)
        if cls._backward_takes_input_grad:
            out = cls._backward_raw(module, grad, input_grad=input_grad)
        else:
            out = cls._backward_raw(module, grad)
    except BaseException:
        # A backward that raised (a bad gradient, say) may be retried; a container's children
        # that did finish stay used, so a retry cannot count them twice.
        call.used = False
        raise
    finally:
        _replaying.pop()
        for k, v in previous:  # the module keeps its latest forward's attributes
            if v is _MISSING:
                d.pop(k, None)
            else:
                d[k] = v
    call.saved = call.children = None  # free the saved arrays, as PyTorch does after backward
    if d.get("_pending") is call:
        d["_pending"] = None
        d["_pending_calls"] = 0
    return out if input_grad else None


def accepts_input_grad(fn: Callable[..., Any]) -> bool:
    params = inspect.signature(fn).parameters
    return "input_grad" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def wrap_forward(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Make a subclass's ``forward`` run in a per-call context (see the module docstring)."""

    @functools.wraps(fn)
    def forward(self: Module, *xs: Any, **kwargs: Any) -> Any:
        if type(self).forward is not forward:  # super().forward() from a subclass: same call
            return fn(self, *xs, **kwargs)
        y, ctx = forward_ctx(self, *xs, **kwargs)
        if ctx is None:
            return y
        _register(self, ctx)
        return readonly(y, xs)

    setattr(forward, "raw", fn)  # noqa: B010 (a function attribute mypy cannot see)
    return forward


def wrap_backward(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Make a subclass's ``backward`` run with the attributes of the call it belongs to."""
    takes = accepts_input_grad(fn)

    @functools.wraps(fn)
    def backward(self: Module, grad: Any, input_grad: bool = True) -> Any:
        if type(self).backward is not backward:  # super().backward() from a subclass
            return fn(self, grad, input_grad=input_grad) if takes else fn(self, grad)
        return backward_ctx(self, _resolve(self), grad, input_grad)

    setattr(backward, "raw", fn)  # noqa: B010
    return backward
