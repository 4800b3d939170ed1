"""Module: the unit of a network. A subclass writes ``forward`` and ``backward``; this base
class finds its parameters, buffers and children, names them, keeps each call's saved values
apart (``context``), and saves and loads the whole."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from . import classes, context, serialize
from .node import Node, call_on_nodes
from .parameter import Parameter

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from .._typing import Array

_M = TypeVar("_M", bound="Module")


class Module:
    """Base class of every layer and container.

    A subclass implements

    * ``forward(*xs) -> y``. It stores what backward needs as attributes (``self.x = x``;
      a built-in layer only ``if self.recording``, so inference under ``no_grad()`` keeps
      nothing); the base class keeps them per call (see ``nn.context``), so one module may be
      used several times in a network;
    * ``backward(grad_y, input_grad=True) -> grad_x``: ADDS dL/dparam into each
      ``Parameter.grad`` and returns dL/dx (a tuple for several inputs). With
      ``input_grad=False`` (the input is data) it may skip dL/dx and return None; a backward
      without that argument is called without it. It must never recompute the forward pass.
      ``grad_y`` has been checked against the call's output (shape, dtype) before it arrives.

    Calling a module on arrays runs ``forward``; calling it on ``nn.Input`` nodes builds a graph
    (see ``nn.Graph``). Attributes that are :class:`Parameter` or :class:`Module` instances are
    registered in assignment order, as in PyTorch, which fixes the order of
    ``named_parameters()``; ``register_buffer`` adds saved, non-trained arrays (running statistics).
    """

    training: bool
    _registered_name: ClassVar[str]  # set by nn.register on a class saved under a short name
    _calls: context.CallState  # the per-call bookkeeping (see nn.context.CallState)
    _params: OrderedDict[str, Parameter]
    _modules: OrderedDict[str, Module]
    _buffers: OrderedDict[str, Array]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        classes.add_class(cls)
        # The raw methods stay reachable as class attributes, so a container's call of a child
        # costs one Python call beyond the child's own forward.
        fn = cls.__dict__.get("forward")
        if fn is not None and not hasattr(fn, "raw"):
            cls._forward_raw = fn
            cls.forward = context.wrap_forward(fn)  # type: ignore[method-assign]
        fn = cls.__dict__.get("backward")
        if fn is not None and not hasattr(fn, "raw"):
            cls._backward_raw = fn
            cls._backward_takes_input_grad = context.accepts_input_grad(fn)
            cls.backward = context.wrap_backward(fn)  # type: ignore[method-assign]
        # A new forward or backward is not vouched for by the class it extends: it must say so itself
        # (a replaced forward(x) would not take the fused partner, a replaced backward not cover it).
        if "forward" in cls.__dict__ or "backward" in cls.__dict__:
            if "_writes_inputs" not in cls.__dict__:
                cls._writes_inputs = True
            if "_keeps_inputs" not in cls.__dict__:
                cls._keeps_inputs = True
            if "_fuses_next" not in cls.__dict__:
                cls._fuses_next = False

    def __init__(self) -> None:
        d = self.__dict__
        d["_params"] = OrderedDict()
        d["_modules"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["training"] = True
        d["_calls"] = context.CallState()

    def __setattr__(self, key: str, value: Any) -> None:
        d = self.__dict__
        calls = d.get("_calls")
        ctx = calls.recording if calls is not None else None
        if (
            ctx is not None
            and not isinstance(value, (Parameter, Module))
            and key not in d["_buffers"]
            and key not in d["_params"]
            and key not in d["_modules"]
        ):
            ctx.saved[key] = value  # the hot path: per-call state a forward keeps
            object.__setattr__(self, key, value)
            return
        if "_params" not in d:
            raise RuntimeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before assigning attributes"
            )
        if not isinstance(value, (Parameter, Module)) and key not in d["_params"] and key not in d["_modules"]:
            if key in d["_buffers"]:
                d["_buffers"][key] = value
            object.__setattr__(self, key, value)
            return
        self._params.pop(key, None)
        self._modules.pop(key, None)
        if isinstance(value, Parameter):
            if not value.name:
                value.name = key
            self._params[key] = value
        elif isinstance(value, Module):
            self._modules[key] = value
        object.__setattr__(self, key, value)

    def register_buffer(self, name: str, array: Array) -> None:
        """A non-trained array saved with the model (``state_dict``, ``save``), read as
        ``self.<name>``. Update it in place or re-assign it; either way it persists across calls."""
        if not isinstance(array, np.ndarray):
            raise TypeError(f"buffer {name!r} must be a numpy array, got {type(array).__name__}")
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    # --- computation -------------------------------------------------------------------------
    # Typed loosely on purpose: a subclass's forward takes whatever inputs it needs, and its
    # backward may leave out ``input_grad`` (the wrapper made in __init_subclass__ adds it).
    def forward(self, *xs: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")

    def backward(self, grad_out: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement backward(grad_out)")

    _forward_raw = forward
    _backward_raw = backward
    _backward_takes_input_grad = True
    #: False declares that ``forward`` never writes into its input arrays and ``backward`` never
    #: into the gradient it is handed, so they may be handed another layer's saved output and a
    #: gradient other branches still read as they are (else the inputs come as read-only views
    #: and the gradient as a private copy; see ``nn.context``). Every built-in layer declares it;
    #: leave a layer of yours at True.
    _writes_inputs: ClassVar[bool] = True

    #: False declares that no call keeps its input arrays for its backward, nor returns a view of
    #: them (a loss keeps its gradient, an activation its output), so a top-level call need not
    #: copy the caller's arrays (``nn.context.own``). Left True, the safe default, on containers,
    #: on layers that keep x (Dense) or return it (Flatten, Dropout in eval), and on yours.
    _keeps_inputs: ClassVar[bool] = True

    #: True on a layer that ``nn.Sequential`` may run together with the modules after it: it asks
    #: ``fused_count(the modules after it)`` and then calls ``forward(x, *those it runs)``
    #: (``Conv2D`` and its pooling, ``BatchNorm`` and its ReLU, and a pooling after that). A
    #: subclass that replaces forward or backward is False unless it sets it itself.
    _fuses_next: ClassVar[bool] = False

    def fuses_with(self, module: Module) -> bool:
        """Whether ``forward(x, module)`` runs this layer and ``module`` after it as one (never,
        unless a layer with ``_fuses_next`` says otherwise)."""
        return False

    def fused_count(self, following: Sequence[Module]) -> int:
        """How many of ``following`` (the modules after this one, in order) ``forward(x, *them)``
        runs with this layer: the first when this layer ``fuses_with`` it, else none."""
        return 1 if following and self.fuses_with(following[0]) else 0

    #: The files of ``tinygrad_free/kernels/`` whose numba kernels this layer calls: ``Trainer.fit``
    #: compiles (or loads) only those of its model's layers, for its parameters' dtypes, before the
    #: clock starts. A layer that declares none, as yours, compiles what it calls on first use.
    kernel_files: ClassVar[tuple[str, ...]] = ()

    def __call__(self, *xs: Any, **kwargs: Any) -> Any:
        for x in xs:
            if type(x) is Node:
                return call_on_nodes(self, xs, kwargs)
        return self.forward(*xs, **kwargs)

    @property
    def recording(self) -> bool:
        """True inside a forward whose values a backward may need (gradients enabled, in either
        mode): the time to store them. False under ``no_grad()``."""
        return self.__dict__["_calls"].recording is not None

    def begin_update(self, *xs: Any, **kwargs: Any) -> tuple[Any, Callable[..., Any]]:
        """Forward with the call's backward as a callback, thinc's ``(y, backprop)``.

        ``backprop(grad, input_grad=True)`` runs this call's backward, whatever else ran since:
        the way to use one module several times in a container's forward and backprop the calls
        in any order. Under ``no_grad()`` the forward runs as usual and ``backprop`` raises,
        saying why. Keyword arguments go to ``forward`` (``lstm.begin_update(x, lengths=l)``);
        they get no gradient (``backprop`` returns one per positional input).
        """
        own = context.own(xs) if self._keeps_inputs and context.is_grad_enabled() else xs
        y, ctx = self._forward_ctx(*own, **kwargs)
        if ctx is not None:
            y = context.readonly(y, xs)

        def backprop(grad: Any = None, input_grad: bool = True) -> Any:
            return self._backward_ctx(ctx, grad, input_grad)

        return y, backprop

    #: ``(y, context)`` of one forward call (the context None in eval mode or under no_grad).
    _forward_ctx = context.forward_ctx
    #: ``_backward_ctx(context, grad, input_grad=True)``: the backward of the call that made it.
    _backward_ctx = context.backward_ctx

    # --- parameters --------------------------------------------------------------------------
    def _walk_with_owner(self, prefix: str = "") -> Iterator[tuple[str, Parameter, Module]]:
        for key, p in self._params.items():
            yield prefix + key, p, self
        for key, m in self._modules.items():
            yield from m._walk_with_owner(f"{prefix}{key}.")

    def _walk(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for name, p, _ in self._walk_with_owner(prefix):
            yield name, p

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """``(dotted_name, Parameter)`` pairs in layer order (``0.W``, ``0.b``, ``2.W``, ...).

        Also stamps each Parameter's ``name`` with its dotted name, so a plain
        ``parameters()`` list handed to an optimizer still carries unique names.
        A parameter reached twice (a reused module, a tied weight) is listed once, under its
        first name.
        """
        seen: set[int] = set()
        out: list[tuple[str, Parameter]] = []
        for name, p in self._walk():
            if id(p) in seen:
                continue
            seen.add(id(p))
            p.name = name
            out.append((name, p))
        return out

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> list[tuple[str, Array]]:
        """``(dotted_name, array)`` of every buffer, each listed once."""
        seen: set[int] = set()
        out: list[tuple[str, Array]] = []

        def walk(m: Module, prefix: str) -> None:
            for key, b in m._buffers.items():
                if id(m) not in seen:
                    out.append((prefix + key, b))
            seen.add(id(m))
            for key, child in m._modules.items():
                if id(child) not in seen:
                    walk(child, f"{prefix}{key}.")

        walk(self, prefix)
        return out

    def named_generators(self) -> list[tuple[str, np.random.Generator]]:
        """``(dotted_name, Generator)`` of every random generator a module below keeps as an
        attribute (Dropout's ``rng``), each listed once. Their states are part of the training
        state: ``generator_state()`` reads them, ``save``/``nn.load`` and ``BackupAndRestore``
        keep them, so a resumed or reloaded model draws the masks the uninterrupted one would."""
        seen: set[int] = set()
        out: list[tuple[str, np.random.Generator]] = []

        def walk(m: Module, prefix: str) -> None:
            if id(m) in seen:
                return
            seen.add(id(m))
            for key, value in vars(m).items():
                if isinstance(value, np.random.Generator) and id(value) not in seen:
                    seen.add(id(value))
                    out.append((prefix + key, value))
            for key, child in m._modules.items():
                walk(child, f"{prefix}{key}.")

        walk(self, "")
        return out

    def generator_state(self) -> dict[str, Any]:
        """The state of every generator of ``named_generators()``, JSON-able (numpy's
        ``bit_generator.state`` dicts), keyed by dotted name."""
        return {name: g.bit_generator.state for name, g in self.named_generators()}

    def load_generator_state(self, state: Mapping[str, Any]) -> None:
        """Put back states from ``generator_state()``; every generator must be in ``state``."""
        for name, g in self.named_generators():
            if name not in state:
                raise KeyError(
                    f"generator state mismatch for {type(self).__name__}: no state for {name!r} "
                    f"(the state has {sorted(state)})"
                )
            g.bit_generator.state = state[name]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def children(self) -> list[Module]:
        """The distinct child modules, in registration order."""
        return list({id(m): m for m in self._modules.values()}.values())

    def modules(self) -> list[Module]:
        """This module and every module below it, each once."""
        out: list[Module] = []
        seen: set[int] = set()
        stack: list[Module] = [self]
        while stack:
            m = stack.pop(0)
            if id(m) in seen:
                continue
            seen.add(id(m))
            out.append(m)
            stack.extend(m._modules.values())
        return out

    def train(self: _M, mode: bool = True) -> _M:
        """Training mode for this module and every module below it (Dropout drops, BatchNorm uses
        the batch's statistics and moves its running ones). Returns self."""
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def eval(self: _M) -> _M:
        """Eval mode for this module and every module below it: Dropout is the identity,
        BatchNorm normalises with its running statistics. As in PyTorch it changes what the
        layers compute, not whether a backward may follow: that is ``nn.no_grad()``, which
        inference should use (``Trainer.evaluate``/``predict`` do). Returns self."""
        return self.train(False)

    def _get_parameter(self, dotted: str) -> Parameter:
        *path, key = dotted.split(".")
        module: Module = self
        for part in path:
            module = module._modules[part]
        return module._params[key]

    def _set_parameter(self, dotted: str, parameter: Parameter) -> None:
        *path, key = dotted.split(".")
        module: Module = self
        for part in path:
            module = module._modules[part]
        setattr(module, key, parameter)

    # --- state -------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, Array]:
        """Copies of every parameter's value, then every buffer's, keyed by dotted name."""
        state = OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())
        state.update((name, b.copy()) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state: Mapping[str, ArrayLike], strict: bool = True) -> None:
        """Copy values into the existing parameter and buffer arrays (never re-binding them).

        ``strict`` requires exactly the same keys; shapes must always match.
        """
        own = OrderedDict((name, p.data) for name, p in self.named_parameters())
        own.update(self.named_buffers())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict mismatch for {type(self).__name__}: missing {missing}, unexpected {unexpected}")
        for name, target in own.items():
            if name not in state:
                continue
            value = np.asarray(state[name])
            if value.shape != target.shape:
                raise ValueError(f"{name!r}: expected shape {target.shape}, got {value.shape}")
            target[...] = value
        for _, p in self.named_parameters():
            p.changed()

    # --- architecture and files --------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-able values (Modules allowed), so ``nn.load`` can
        rebuild the module."""
        raise NotImplementedError(
            f"{type(self).__name__} has no get_config(); implement it to use save()/nn.load, "
            "or save state_dict() yourself"
        )

    @classmethod
    def from_config(cls: type[_M], config: dict[str, Any]) -> _M:
        """The inverse of ``get_config`` (nested modules arrive already rebuilt)."""
        return cls(**config)

    def to_spec(self) -> dict[str, Any]:
        return serialize.to_spec(self)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write architecture (JSON), weights and buffers to one ``.npz``, atomically (a path
        ending in ``.safetensors``: a safetensors file, the architecture in its metadata).

        The file is written next to ``path`` under a temporary name and renamed into place,
        so a crash never leaves a half-written model.
        """
        serialize.save(self, path)

    # --- other frameworks' weights (tinygrad_free.exchange) ------------------------------------
    def load_torch_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Copy a PyTorch ``state_dict()`` (tensors or arrays) into this model, built layer for
        layer like the PyTorch one: layers with weights matched in order, layouts converted
        (``Dense.W`` is ``Linear.weight`` transposed). Raises naming the first tensor that does
        not fit (name, expected and given shape); nothing is written then."""
        from ..exchange import torch_weights

        torch_weights.load_torch_state_dict(self, state_dict)

    def torch_state_dict(self, like: Mapping[str, Any] | None = None) -> OrderedDict[str, Array]:
        """This model's weights in PyTorch's names and layouts (NumPy copies), named by this
        model's paths or, given a PyTorch model's ``state_dict()`` as ``like``, by its names."""
        from ..exchange import torch_weights

        return torch_weights.torch_state_dict(self, like)

    def load_keras_weights(self, source: Any, **options: Any) -> None:
        """Load Keras 3 weights (a Keras model, ``get_weights()`` or a ``.weights.h5``/``.keras``
        file) into this model, built layer for layer like the Keras one; options as
        ``tinygrad_free.exchange.load_keras_weights``."""
        from ..exchange import keras_weights

        keras_weights.load_keras_weights(self, source, **options)

    # --- display -----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n" + "\n".join(lines) + f"\n)  # {self.num_parameters():,} parameters"


classes.add_class(Module)
from_spec = serialize.from_spec
load = serialize.load
