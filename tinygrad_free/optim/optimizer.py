"""The optimizer base class and the registry that creates optimizers by name.

A subclass declares ``defaults`` and writes two methods, as Keras's ``build``/``update_step``:

* ``init_state(w) -> dict`` of arrays (zeros) for a parameter, and
* ``update(w, g, state)``: one in-place update, ``g`` already carrying weight decay.

The base class owns everything else: the parameter list and their unique dotted names, the
step counts, the learning rate and its schedule (``optim.schedule``: evaluated at each step, saved
in the ``state_dict``; inside ``update`` ``self.lr`` is the scheduled rate of the step running),
coupled L2 weight decay, ``zero_grad``, ``state_dict``/``load_state_dict``, ``get_config`` and
validation.

Which parameters a step moves, as PyTorch's optimizers after ``zero_grad(set_to_none=True)``
(its default): only those that have a gradient (``Parameter.has_grad``: a backward reached
them since the last ``zero_grad()``). A parameter no backward reached (the unused head of a
two-head network) is left exactly as it was: no update, no weight decay, its moments unchanged.
Each parameter counts its own steps, as PyTorch keeps ``state["step"]`` per parameter, so a
parameter first reached at the optimizer's third step gets its first bias correction then.
Inside ``update``, ``self.t`` is the step number (from 1) of the parameters being updated;
outside, the number of ``step()`` calls.

A ``step`` that raises (Eve refusing a loss of 0, say) changes no state: the step count and the
optimizer-wide state are as they were, so it may be retried.

Packing: an ``elementwise`` optimizer (every built-in one) copies all parameters of one dtype
into a single flat buffer, weight matrices first, and re-points each ``Parameter.data``/``.grad``
at its slice. One ``update`` call then updates the whole model, and weight decay is one slice.
A rule that is not element-wise (one that takes a norm or a mean of a tensor, or treats a
weight matrix as a matrix) sets ``elementwise = False``: ``update`` is then called once per
parameter with that parameter's own arrays, in its own shape.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, TypeVar

import numpy as np

from .. import backend
from ..nn.parameter import changed
from ..registry import Registry
from . import schedule as schedule_module
from .schedule import Schedule

if TYPE_CHECKING:
    from .._typing import Array
    from ..nn.module import Module
    from ..nn.parameter import Parameter

    #: What an optimizer is built from: a Module, or Parameters, or (name, Parameter) pairs.
    Params: TypeAlias = (
        "Module | Iterable[Parameter | tuple[str, Parameter]] | Mapping[str, Module | Iterable[Parameter]]"
    )

_O = TypeVar("_O", bound="type[Optimizer]")
#: (low, high, low open?, high open?) of a hyperparameter's allowed interval.
Range = tuple[float, float, bool, bool]

#: The optimizers by name (``nesterov`` is ``nag``).
OPTIMIZERS: Registry[type[Optimizer]] = Registry("optimizer")


def register(name: str, *aliases: str, override: bool = False) -> Callable[[_O], _O]:
    """Class decorator: make an Optimizer subclass creatable by ``create(name, ...)`` (and by its
    aliases; ``name`` is the canonical one run names and reports use).

    A name (or alias) already registered to another class raises unless ``override=True``: a
    plugin must not silently replace a built-in optimizer.
    """

    def wrap(cls: _O) -> _O:
        OPTIMIZERS.add(name, cls, *aliases, override=override)
        cls.name = name
        return cls

    return wrap


def available() -> list[str]:
    """Every accepted name (canonical names and aliases)."""
    return sorted(OPTIMIZERS.aliases())


def get(name: str) -> type[Optimizer]:
    return OPTIMIZERS.get(name)


def create(name: str, params: Params, **hyperparameters: Any) -> Optimizer:
    """``create("nadam", model.parameters(), lr=1e-3)``: an optimizer by registered name (the
    keywords as the class takes them, ``schedule=``/``total_steps=`` included)."""
    return get(name)(params, **hyperparameters)


# Ranges of the hyperparameters every optimizer may have: (low, high, low open?, high open?).
RANGES: dict[str, Range] = {
    # lr = 0 is allowed, as in PyTorch: a warm-up schedule starts there.
    "lr": (0.0, math.inf, False, True),
    "weight_decay": (0.0, math.inf, False, True),
    "momentum": (0.0, 1.0, False, True),
    "beta": (0.0, 1.0, False, True),
    "beta1": (0.0, 1.0, False, True),
    "beta2": (0.0, 1.0, False, True),
    "eps": (0.0, math.inf, False, True),
    "momentum_decay": (0.0, math.inf, False, True),
}


def _check(name: str, value: Any, low: float, high: float, low_open: bool, high_open: bool) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not math.isfinite(value)
        or value < low
        or value > high
        or (low_open and value == low)
        or (high_open and value == high)
    ):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


class _Unit:
    """What one ``update`` call sees: a weight array, its gradient, its state, and which
    parameters (name, offset, shape) it holds. The first ``n_decay`` elements get weight decay.
    ``step`` is the members' step count while they all have the same one (the usual case, in
    which one call updates the whole unit); ``steps`` holds each member's count otherwise (None
    while they agree)."""

    __slots__ = ("w", "g", "state", "n_decay", "members", "params", "step", "steps", "decayed", "tmp")

    def __init__(
        self,
        w: Array,
        g: Array,
        n_decay: int,
        members: list[tuple[str, int, tuple[int, ...]]],
        params: list[Parameter],
    ) -> None:
        self.w, self.g, self.n_decay, self.members, self.params = w, g, n_decay, members, params
        self.state: dict[str, Array] = {}
        self.step = 0
        self.steps: list[int] | None = None
        self.decayed: Array | None = None  # scratch for g + wd * w, made on first use
        self.tmp: Array | None = None  # scratch for the NumPy kernels

    def member_steps(self) -> list[int]:
        return list(self.steps) if self.steps is not None else [self.step] * len(self.members)

    def set_steps(self, steps: list[int]) -> None:
        if len(set(steps)) <= 1:
            self.step, self.steps = (steps[0] if steps else 0), None
        else:
            self.steps = steps

    def runs(self, active: list[bool]) -> list[tuple[int, int, int, list[int]]]:
        """``(lo, hi, steps, members)``: maximal runs of consecutive active members with one step
        count, as element ranges of the flat arrays."""
        out: list[tuple[int, int, int, list[int]]] = []
        counts = self.member_steps()
        for i, (_, offset, shape) in enumerate(self.members):
            if not active[i]:
                continue
            size = int(np.prod(shape))
            if out and out[-1][1] == offset and out[-1][2] == counts[i]:
                lo, _, steps, idx = out[-1]
                out[-1] = (lo, offset + size, steps, idx + [i])
            else:
                out.append((offset, offset + size, counts[i], [i]))
        return out


class Optimizer:
    """Base class of all optimizers; see the module docstring for the contract.

    Parameters
    ----------
    params : iterable of Parameter or (name, Parameter), a Module, or a dict of them
        What to optimise: ``model.parameters()``, ``model.named_parameters()``, a module, or
        ``{"enc": enc, "dec": dec}`` to name the parameters of several models.
    schedule : str, Schedule, callable or None
        The learning-rate schedule (``"cosine"``, ``"linear"``, a ``Schedule``, or a function of
        the progress in [0, 1)); None keeps the base rate. See ``optim.schedule``.
    total_steps : int or None
        The steps a schedule given by name or function spans.
    **hyperparameters : float
        ``lr``, ``weight_decay`` and the subclass's ``defaults``; any other name is refused.
    """

    name: ClassVar[str | None] = None
    defaults: ClassVar[dict[str, float]] = {}
    elementwise: ClassVar[bool] = True
    #: False: weight decay is coupled L2, g + wd w on the weight matrices (SGD's, Adam's). True:
    #: decoupled (Loshchilov & Hutter 2019), w <- w (1 - lr wd) before the update, which then sees
    #: the plain gradient (AdamW's).
    decoupled_decay: ClassVar[bool] = False
    ranges: ClassVar[dict[str, Range]] = {}
    # Set from the hyperparameters (every optimizer has these two; a subclass declares its own).
    weight_decay: float

    def __init__(
        self,
        params: Params,
        schedule: str | Schedule | Callable[[float], float] | None = None,
        total_steps: int | None = None,
        **hyperparameters: Any,
    ) -> None:
        allowed = {"lr", "weight_decay", *self.defaults}
        unknown = sorted(set(hyperparameters) - allowed)
        if unknown:
            raise ValueError(
                f"{type(self).__name__} got unknown hyperparameter(s) {unknown}; allowed: {sorted(allowed)}"
            )
        config = {"weight_decay": 0.0, **self.defaults, **hyperparameters}
        self._hyper = sorted(config)
        self._step_lr: float | None = None  # the scheduled rate, while a step runs
        ranges = {**RANGES, **self.ranges}
        for key in self._hyper:
            value = config[key]
            if key in ranges:
                value = _check(key, value, *ranges[key])
            object.__setattr__(self, key, value)
        self.validate()
        self.t = 0
        #: The rate the last step ran at (PyTorch's ``scheduler.get_last_lr()``); None before one.
        self.last_lr: float | None = None
        self.schedule: Schedule | None = schedule_module.get(schedule, total_steps)
        self.shared: dict[str, Any] = {}
        self._named = self._collect(params)
        self._ref = weakref.ref(self)
        self._units = self._pack() if self.elementwise else self._per_parameter()
        for unit in self._units:
            unit.state = self.init_state(unit.w)

    @property
    def lr(self) -> float:
        """The base learning rate; inside a step (``prepare``, ``update``), the rate of the step
        running (the base rate times the schedule's factor), as ``t`` is the step's number there."""
        return self._lr if self._step_lr is None else self._step_lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _check("lr", value, *RANGES["lr"])

    def current_lr(self) -> float:
        """The rate the next ``step`` will use (PyTorch's ``scheduler.get_last_lr()``)."""
        return self._lr * (1.0 if self.schedule is None else self.schedule(self.t + 1))

    # --- what a subclass writes -----------------------------------------------------------------
    def validate(self) -> None:
        """Check relations between hyperparameters (single ranges are checked already)."""

    def init_state(self, w: Array) -> dict[str, Array]:
        return {}

    def update(self, w: Array, g: Array, state: dict[str, Array]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement update(w, g, state)")

    def prepare(self, loss: float | None) -> None:
        """Called once per step before the updates, with the loss passed to ``step``."""

    # --- the step ---------------------------------------------------------------------------------
    def step(self, loss: float | None = None) -> None:
        """Apply one update to every parameter that has a gradient (``Parameter.has_grad``),
        from its accumulated ``grad``; parameters without one stay as they are (see the module
        docstring). A step that raises changes nothing."""
        me = self._ref
        for name, p in self._named:
            if p._owner is not me:
                self._lost(name, p)
        t, shared = self.t, dict(self.shared)
        factor = 1.0 if self.schedule is None else self.schedule(t + 1)
        self.t, self._step_lr = t + 1, self._lr * factor
        try:
            self.prepare(loss)
        except BaseException:
            self.t, self.shared, self._step_lr = t, shared, None
            raise
        self.last_lr = self._step_lr
        try:
            for unit in self._units:
                params = unit.params
                full = unit.steps is None
                if full:
                    for p in params:
                        if p._grad_is_zero:
                            full = False
                            break
                if full:  # the usual case: every member has a gradient and the same step count
                    unit.step += 1
                    self._update(unit, 0, unit.w.size, unit.step)
                    changed(params)
                    continue
                active = [not p._grad_is_zero for p in params]
                counts = unit.member_steps()
                for lo, hi, steps, members in unit.runs(active):
                    self._update(unit, lo, hi, steps + 1)
                    for i in members:
                        counts[i] += 1
                    changed([params[i] for i in members])
                unit.set_steps(counts)
        finally:
            self.t = t + 1
            self._step_lr = None

    def _update(self, unit: _Unit, lo: int, hi: int, t: int) -> None:
        """``update`` on elements ``lo:hi`` of ``unit`` (all of it in the usual case), as step ``t``."""
        if lo == 0 and hi == unit.w.size:
            g = unit.g
            if self.weight_decay and unit.n_decay and self.decoupled_decay:  # AdamW: see below
                unit.w[: unit.n_decay] *= 1.0 - self.lr * self.weight_decay
            elif self.weight_decay and unit.n_decay:
                if unit.decayed is None:
                    unit.decayed = np.empty_like(g)
                g = backend.ops().weight_decay(g, unit.w, self.weight_decay, unit.n_decay, unit.decayed)
            self.t = t
            self.update(unit.w, g, unit.state)
            return
        w, g = unit.w[lo:hi], unit.g[lo:hi]
        state = {k: v[lo:hi] if v.shape == unit.w.shape else v for k, v in unit.state.items()}
        wd, n_decay = self.weight_decay, min(max(unit.n_decay - lo, 0), hi - lo)
        if wd and n_decay and self.decoupled_decay:  # AdamW: the weights shrink, the gradient is left alone
            w[:n_decay] *= 1.0 - self.lr * wd
        elif wd and n_decay:
            if unit.decayed is None:
                unit.decayed = np.empty_like(unit.g)
            g = backend.ops().weight_decay(g, w, wd, n_decay, unit.decayed[lo:hi])
        self.t = t
        self.update(w, g, state)

    def _lost(self, name: str, p: Parameter) -> None:
        other = p._owner() if p._owner is not None else None
        raise RuntimeError(
            f"{type(self).__name__}.step: parameter {name!r} is now packed by another optimizer "
            f"({type(other).__name__ if other is not None else 'one that no longer exists'}, created after this "
            "one), so this optimizer's updates would never reach the model. Use one optimizer per parameter: "
            "step the newest one, or create the optimizer once and keep it"
        )

    def scratch(self, w: Array) -> Array:
        """A reusable (2, *w.shape) buffer for NumPy updates of ``w`` (one of this optimizer's arrays)."""
        for unit in self._units:
            if unit.w is w:
                if unit.tmp is None:
                    unit.tmp = np.empty((2,) + w.shape, w.dtype)
                return unit.tmp
        return np.empty((2,) + w.shape, w.dtype)

    def zero_grad(self) -> None:
        for _, p in self._named:
            p.zero_grad()

    # --- parameters -----------------------------------------------------------------------------
    @staticmethod
    def _collect(params: Params) -> list[tuple[str, Parameter]]:
        from ..nn.module import Module
        from ..nn.parameter import Parameter

        if isinstance(params, Mapping):  # {"enc": encoder, "dec": decoder}: names "enc.0.W", ...
            items: list[Any] = []
            for prefix, group in params.items():
                pairs = group.named_parameters() if isinstance(group, Module) else Optimizer._collect(group)
                items += [(f"{prefix}.{name}", p) for name, p in pairs]
            params = items
        elif isinstance(params, Module):
            params = params.named_parameters()
        named: list[tuple[str, Parameter]] = []
        seen: set[int] = set()
        for item in params:
            name, p = item if isinstance(item, tuple) else (getattr(item, "name", ""), item)
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizers take Parameters (model.parameters()), got {type(p).__name__}")
            if id(p) not in seen:  # a tied parameter listed twice is one parameter
                seen.add(id(p))
                named.append((name, p))
        if not named:
            raise ValueError("optimizer got an empty parameter list")
        names = [n for n, _ in named]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes or not all(names):
            raise ValueError(
                f"parameter names must be unique and non-empty, got duplicates {dupes}: the state is kept "
                "by name. Parameters of several models share names such as '0.W'; name each model instead: "
                "Adam({'enc': encoder, 'dec': decoder}) (state keys 'enc.0.W', ...), or put them in one "
                "container (nn.Sequential(encoder, decoder))"
            )
        return named

    def _pack(self) -> list[_Unit]:
        units = []
        for dtype in dict.fromkeys(p.data.dtype for _, p in self._named):
            group = [(n, p) for n, p in self._named if p.data.dtype == dtype]
            group.sort(key=lambda item: not item[1].decay)  # stable: decayed first
            total = sum(p.size for _, p in group)
            w, g = np.empty(total, dtype), np.empty(total, dtype)
            members, offset = [], 0
            for name, p in group:
                n = p.size
                w[offset : offset + n] = p.data.ravel()
                g[offset : offset + n] = p._grad.ravel()  # raw: reading p.grad would give it a gradient
                p._bind(w[offset : offset + n].reshape(p.shape), g[offset : offset + n].reshape(p.shape), self._ref)
                members.append((name, offset, p.shape))
                offset += n
            n_decay = sum(p.size for _, p in group if p.decay)
            units.append(_Unit(w, g, n_decay, members, [p for _, p in group]))
        return units

    def _per_parameter(self) -> list[_Unit]:
        units = []
        for n, p in self._named:
            p._bind(p.data, p._grad, self._ref)  # later p.data = ... copies into these arrays
            units.append(_Unit(p.data, p._grad, p.size if p.decay else 0, [(n, 0, p.shape)], [p]))
        return units

    # --- state --------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, **{k: getattr(self, k) for k in self._hyper}}

    def state_dict(self) -> dict[str, Any]:
        """Step count, hyperparameters, optimizer-wide state and per-parameter state (copies),
        the last keyed by each parameter's dotted name."""
        # model order, not packing order
        per_param: dict[str, dict[str, Array] | None] = {name: None for name, _ in self._named}
        for unit in self._units:
            for name, offset, shape in unit.members:
                per_param[name] = {k: self._slice(unit, v, offset, shape).copy() for k, v in unit.state.items()}
        steps = {name: n for unit in self._units for (name, _, _), n in zip(unit.members, unit.member_steps())}
        return {
            "t": self.t,
            "config": self.get_config(),
            "shared": {k: np.copy(v) for k, v in self.shared.items()},
            "state": per_param,
            "steps": {name: steps[name] for name, _ in self._named},
            "schedule": None if self.schedule is None else self.schedule.get_config(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict()``: same parameter names and shapes required."""
        theirs = state["state"]
        ours = {name for unit in self._units for name, _, _ in unit.members}
        if set(theirs) != ours:
            raise KeyError(
                f"optimizer state mismatch: missing {sorted(ours - set(theirs))}, "
                f"unexpected {sorted(set(theirs) - ours)}"
            )
        for unit in self._units:
            for name, offset, shape in unit.members:
                for k, v in unit.state.items():
                    target = self._slice(unit, v, offset, shape)
                    value = np.asarray(theirs[name][k])
                    if value.shape != target.shape:
                        raise ValueError(f"state {name}.{k}: expected shape {target.shape}, got {value.shape}")
                    target[...] = value
        for k, v in state["config"].items():
            if k != "name":
                setattr(self, k, v)
        if "schedule" in state:
            self.schedule = schedule_module.from_config(state["schedule"], self.schedule)
        self.shared = {k: (v.item() if np.ndim(v) == 0 else np.copy(v)) for k, v in state["shared"].items()}
        self.t = int(state["t"])
        steps = state.get("steps") or {}  # a state saved before per-parameter counts: every one at t
        for unit in self._units:
            unit.set_steps([int(steps.get(name, self.t)) for name, _, _ in unit.members])

    @staticmethod
    def _slice(unit: _Unit, array: Array, offset: int, shape: tuple[int, ...]) -> Array:
        if array.shape == unit.w.shape and len(unit.members) > 1:
            return array[offset : offset + int(np.prod(shape))].reshape(shape)
        return array.reshape(shape) if array.size == int(np.prod(shape)) else array

    def __repr__(self) -> str:
        # A hyperparameter may be None or another non-number (a subclass's option): repr() it.
        def show(value: Any) -> str:
            number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            return f"{value:g}" if number else repr(value)

        hp = ", ".join(f"{k}={show(getattr(self, k))}" for k in self._hyper)
        return f"{type(self).__name__}({hp}, params={len(self._named)}, t={self.t})"
