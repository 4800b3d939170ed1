"""Per-call contexts: what one forward call of a module saved for its own backward.

A layer is written the simple way: ``forward`` stores what backward needs as attributes
(``self.x = x``) and ``backward`` reads them. The base class makes those attributes per call:

* every ``forward`` with gradients enabled (outside ``no_grad()``, in training and in eval mode
  alike, as under PyTorch's autograd) runs inside a fresh :class:`Context`; each plain attribute
  the layer sets during that call is recorded in it (and set on the module as usual);
* ``backward`` is handed one context (by a container, by ``begin_update``'s callback, or the
  single pending one) and runs with that call's attributes put back on the module, then the
  module's attributes are restored and the context is released.

So one module object may be called any number of times in a network: each call's backward sees
its own inputs and outputs, and the parameter gradients add up over the uses, as under PyTorch's
autograd. Containers (``Sequential``, ``Graph``, ``Residual``) pair every call with its context
explicitly (thinc's ``(y, backprop)``), so they may run backward passes in any order.

Mode and gradient recording are separate, as in PyTorch: ``eval()`` changes what a layer computes
(BatchNorm's running statistics, Dropout as the identity) and a backward through it gives that
computation's gradients; ``no_grad()`` is what makes a forward save nothing (inference).

A plain ``module.backward(grad)`` with no context named takes the module's one pending call. It
refuses, naming the cause, when there is none (backward before forward, after a ``no_grad``
forward, after a forward paired through ``begin_update`` or a container, or a second time for the
same forward) or when there are several (the module ran twice since its last backward, in any
mode, and the gradient could belong to either).

Every backward checks the gradient it is handed against the output of the call it belongs to
(an array of that shape; a tuple of them, None allowed, for several outputs; a number for a
loss) and names the module and both shapes otherwise. A float gradient of another float dtype is
converted to the output's, as PyTorch's autograd does.

The caller's own arrays are copied when a top-level call records (``own``), so changing the
input array between a forward and its backward (a batch buffer refilled for the next
micro-batch) cannot change the gradients of the call that already ran.

While gradients are recorded a module's output reaches user code read-only: the layer (or the
next one) may keep it for backward, and an in-place change such as ``out += x`` would silently
corrupt the gradients (PyTorch raises "modified by an inplace operation" for the same reason).
``y.copy()`` gives a writable array. "User code" is whatever the library does not vouch for: the
caller of ``forward``/``begin_update``, and any module whose class does not declare
``_writes_inputs = False``. Containers hand an output to the next built-in layer as it is (the
built-in layers never write into their inputs) and to any other module as a read-only view;
that keeps read-only arrays off the hot path, where each one costs numba's dispatcher its slow
type lookup (about a microsecond per argument). The same declaration covers gradients: a
module that has not made it gets a private copy of the gradient it is handed, so a backward
that edits ``grad_out`` in place (``grad_out[mask] = 0``, as course notes write ReLU) cannot
change the gradient another branch of a fan-out still reads.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .backward_grad import check_grad, describe, private
from .parameter import CHANGES

if TYPE_CHECKING:
    from .module import Module

_MISSING = object()
_recording: list[Context] = []  # contexts whose forward is running, innermost last
_replaying: list[Context] = []  # contexts whose backward is running, innermost last
_grad_enabled: list[bool] = [True]


class StaleForwardError(RuntimeError):
    """A backward whose forward ran before its parameters changed: it can never succeed, so the
    call is dropped (the next forward and backward work)."""


class Last(enum.Enum):
    """How a module's last forward ended, when it left no context a backward could take."""

    NONE = "none"  # no forward has run
    NO_GRAD = "no_grad"  # it ran under no_grad(), saving nothing
    FAILED = "failed"  # it raised


class Context:
    """One forward call's saved attributes, the contexts its own children made implicitly, and
    the description of its output that the gradient is checked against."""

    __slots__ = ("module", "saved", "children", "used", "out", "pending", "changes")

    module: Module
    saved: dict[str, Any] | None
    children: list[Context] | None
    used: bool
    out: Any  # backward_grad.describe(output)
    pending: bool  # a plain (top-level) call, which a plain backward(grad) may take
    changes: int  # parameter.changes() when the call ran

    def __init__(self, module: Module) -> None:
        self.module = module
        self.saved = {}
        self.children = None
        self.used = False
        self.out = None
        self.pending = False
        self.changes = CHANGES[0]


class CallState:
    """A module's bookkeeping of its forward calls (``Module._calls``), in one place.

    recording : the context of the forward running now, None outside one (or under no_grad).
    last : the last forward's context when it saved one and succeeded (the module's attributes
        are then that call's, so backward can skip the swap), else how it ended.
    pending : the top-level call a plain ``backward(grad)`` takes.
    pending_calls : top-level forwards with gradients since the last plain backward.
    spent : the attributes of the last forward when its backward has run and they are still the
        module's (the usual case after a training step), for :func:`release`; else None.
    """

    __slots__ = ("recording", "last", "pending", "pending_calls", "spent")

    recording: Context | None
    last: Context | Last
    pending: Context | None
    pending_calls: int
    spent: dict[str, Any] | None

    def __init__(self) -> None:
        self.recording = None
        self.last = Last.NONE
        self.pending = None
        self.pending_calls = 0
        self.spent = None


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


@contextlib.contextmanager
def mode(module: Module, training: bool) -> Iterator[None]:
    """Every module below ``module`` in training (True) or eval (False) mode for the duration;
    afterwards each has its own flag back (a frozen BatchNorm inside a training model stays in
    eval mode), whatever the block raised."""
    flags = [(m, m.__dict__["training"]) for m in module.modules()]
    for m, _ in flags:
        m.__dict__["training"] = training
    try:
        yield
    finally:
        for m, flag in flags:
            m.__dict__["training"] = flag


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


def _check_unchanged(module: Module, ctx: Context) -> None:
    """Refuse the backward of a call whose module's parameters changed since it ran (an optimizer
    step or an assignment between forward and backward): it would mix the old forward with the
    new weights. (PyTorch raises "modified by an inplace operation" for the same reason.)"""
    for key, p in module._params.items():
        if p._changed_at > ctx.changes:
            raise StaleForwardError(
                f"{_name(module)}.backward: its parameter {key!r} changed (an optimizer step, an assignment to "
                ".data or load_state_dict) after the forward pass this backward belongs to, so the gradients "
                "would mix the old forward with the new weights. Run the forward pass again after changing "
                "parameters (step the optimizer after backward)"
            )


def own(xs: tuple[Any, ...]) -> tuple[Any, ...]:
    """The inputs of a top-level call that a backward may read, as the library's own: a writable
    array (the caller's, which the caller may change before the backward: a batch buffer
    refilled for the next micro-batch, an in-place augmentation) is copied; read-only arrays (a
    module's output) are taken as they are."""
    for x in xs:
        if type(x) is np.ndarray and x.flags.writeable:
            return tuple(v.copy() if type(v) is np.ndarray and v.flags.writeable else v for v in xs)
    return xs


def forward_ctx(module: Module, *xs: Any, **kwargs: Any) -> tuple[Any, Context | None]:
    """``module``'s forward on ``xs``; with gradients on, inside a new context.

    Returns ``(y, context)``, the context None when nothing was saved (under ``no_grad``).
    (``Module._forward_ctx``; containers call it to pair each call with its backward.) ``y`` is
    the layer's own array: the caller makes it read-only before it reaches user code
    (``readonly``, ``protect``).
    """
    try:
        calls: CallState = module.__dict__["_calls"]
    except KeyError:
        raise RuntimeError(f"{_name(module)}.__init__ must call super().__init__() first") from None
    fn = type(module)._forward_raw
    if not _grad_enabled[-1]:
        calls.last = Last.NO_GRAD
        return fn(module, *xs, **kwargs), None
    ctx = Context(module)
    outer = calls.recording
    calls.recording = ctx
    calls.spent = None  # this call's attributes replace the spent ones
    _recording.append(ctx)
    try:
        y = fn(module, *xs, **kwargs) if kwargs else fn(module, *xs)
    except BaseException:
        calls.last = Last.FAILED
        raise
    finally:
        _recording.pop()
        calls.recording = outer
    calls.last = ctx
    ctx.out = (y.shape, y.dtype) if type(y) is np.ndarray else describe(y)
    return y, ctx


def protect(module: Module, xs: tuple[Any, ...]) -> tuple[Any, ...]:
    """The inputs a container hands ``module``: as they are when its class declares that it never
    writes into its inputs (``_writes_inputs = False``), else read-only views, so a user's layer
    cannot change in place an array that another layer kept for its backward."""
    if type(module)._writes_inputs and _grad_enabled[-1]:
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
        calls: CallState = module.__dict__["_calls"]
        ctx.pending = True
        calls.pending = ctx
        calls.pending_calls += 1


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
    calls: CallState = module.__dict__["_calls"]
    ctx = calls.pending
    if ctx is not None and not ctx.used:
        if calls.pending_calls > 1:
            n = calls.pending_calls
            # They stay ambiguous whatever comes next: drop them, so the next forward and backward work.
            calls.pending, calls.pending_calls = None, 0
            raise RuntimeError(
                f"{name}.backward: this {name} ran forward {n} times with gradients enabled since its last "
                "backward (eval mode records too, as in PyTorch), so backward(grad) cannot tell which call grad "
                "belongs to; those calls are dropped. Pair each call with its own backward (`y, backprop = "
                "module.begin_update(x)`, then `backprop(grad)`), or run the forward passes you will not "
                "backpropagate under `with nn.no_grad():`"
            )
        return ctx
    last = calls.last
    if last is Last.NONE:
        raise RuntimeError(f"{name}.backward was called before forward: no forward pass has run with gradients")
    if last is Last.FAILED:
        raise RuntimeError(
            f"{name}.backward: the last forward raised an exception, so it has nothing to "
            "backpropagate; run a forward pass that succeeds first"
        )
    if last is Last.NO_GRAD:
        raise RuntimeError(
            f"{name}.backward: the last forward ran under nn.no_grad(), which saves nothing for backward; "
            "run the forward pass you want to backpropagate outside no_grad()"
        )
    if not last.pending and not last.used:
        raise RuntimeError(
            f"{name}.backward: the last forward of this {name} was paired with its own backward (it ran "
            "through begin_update, or inside a container or another module's forward), so a plain "
            "backward(grad) does not take it. Call the callback begin_update returned "
            "(`y, backprop = module.begin_update(x)`; `backprop(grad)`), or backpropagate through the "
            "container that ran it"
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
            f"{_name(module)}.backward: its forward ran under no_grad(), which saves nothing for backward; "
            "run the forward pass you want to backpropagate outside no_grad()"
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
    if ctx.changes != CHANGES[0]:
        try:
            _check_unchanged(module, ctx)
        except StaleForwardError:
            ctx.used = True
            _drop(module.__dict__["_calls"], ctx)
            raise
    cls = type(module)
    out = ctx.out
    # The usual case, checked inline: an array of the output's shape and dtype.
    if not (type(out) is tuple and type(grad) is np.ndarray and grad.shape == out[0] and grad.dtype == out[1]):
        grad = check_grad(module, out, grad)
    if cls._writes_inputs:
        grad = private(grad)
    call: Context = ctx
    call.used = True
    d = module.__dict__
    calls: CallState = d["_calls"]
    previous: list[tuple[str, Any]] = []
    saved = call.saved
    if saved is not None and calls.last is not call:
        # Another call ran since: put this one's attributes back. (Otherwise the module's
        # attributes are this call's already, the usual case.)
        previous = [(k, d.get(k, _MISSING)) for k in saved]
        d.update(saved)
    _replaying.append(call)
    try:
        if cls._backward_takes_input_grad:
            result = cls._backward_raw(module, grad, input_grad=input_grad)
        else:
            result = cls._backward_raw(module, grad)
    except StaleForwardError:
        _drop(calls, call)
        raise
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
    if saved and not previous:
        calls.spent = saved  # the module's attributes are this used call's: release() may free them
    call.saved = call.children = None  # as _drop, inlined: the hot path
    if calls.pending is call:
        calls.pending = None
        calls.pending_calls = 0
    return result if input_grad else None


def release(module: Module) -> None:
    """Free what ``module`` and its sub-modules still hold of forward calls that were already
    backpropagated (their saved activations, kept as attributes so that a user can look at a
    layer's last forward). The Trainer calls it after its training steps, before an evaluation:
    a step's activations are then not held through the evaluation's own (a ViT's 108 MB at batch
    128), as PyTorch frees a graph after backward. Attributes of a call not yet backpropagated
    stay. Only what a call saves for its backward is freed, arrays and a container's list of its
    calls' contexts (and tuples or lists of those): a number or any other object a forward assigned
    stays as it is, so a layer that (against the advice to use a buffer) keeps a counter in a
    plain attribute does not see it vanish."""
    for m in module.modules():
        d = m.__dict__
        calls: CallState = d["_calls"]
        spent = calls.spent
        if spent:
            for k, v in spent.items():
                if d.get(k, _MISSING) is v and _freeable(v):
                    del d[k]
            calls.spent = None


def _freeable(v: Any) -> bool:
    """True for what a call saves for its backward: an array, a call's context, or a tuple or list
    of those, None and such tuples."""
    if type(v) is np.ndarray or type(v) is Context:
        return True
    return type(v) in (tuple, list) and all(x is None or _freeable(x) for x in v)


def _drop(calls: CallState, call: Context) -> None:
    """A call done with (backpropagated, or never to be): its saved arrays freed, as PyTorch frees
    a graph after backward, and no longer pending."""
    call.saved = call.children = None
    if calls.pending is call:
        calls.pending = None
        calls.pending_calls = 0


def accepts_input_grad(fn: Callable[..., Any]) -> bool:
    params = inspect.signature(fn).parameters
    return "input_grad" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def wrap_forward(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Make a subclass's ``forward`` run in a per-call context (see the module docstring)."""

    @functools.wraps(fn)
    def forward(self: Module, *xs: Any, **kwargs: Any) -> Any:
        if type(self).forward is not forward:  # super().forward() from a subclass: same call
            return fn(self, *xs, **kwargs)
        top = _grad_enabled[-1] and not _recording and type(self)._keeps_inputs
        y, ctx = forward_ctx(self, *own(xs), **kwargs) if top else forward_ctx(self, *xs, **kwargs)
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
    def backward(self: Module, grad: Any = None, input_grad: bool = True) -> Any:
        if type(self).backward is not backward:  # super().backward() from a subclass
            return fn(self, grad, input_grad=input_grad) if takes else fn(self, grad)
        return backward_ctx(self, _resolve(self), grad, input_grad)

    setattr(backward, "raw", fn)  # noqa: B010
    return backward
