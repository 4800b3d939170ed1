"""Learning-rate schedules: objects an optimizer holds and evaluates at each of its steps, as Keras 3
evaluates ``learning_rate=Schedule`` at ``iterations`` and PyTorch's ``lr_scheduler`` steps with its
optimizer. So a hand-written loop gets the same schedule as ``Trainer.fit``, and the schedule is
saved in the optimizer's ``state_dict``.

A schedule is a multiplier of the optimizer's base rate ``lr``: the step number ``t`` (from 1, the
optimizer's count of ``step()`` calls) gives ``progress = (t - 1 - start) / total_steps`` in [0, 1)
and the step runs at ``lr * factor(progress)``:

name        factor(progress)
==========  =================================================================
constant    1
cosine      (1 + cos(pi * progress)) / 2   (Loshchilov & Hutter 2017, no restarts;
            Keras ``CosineDecay`` with alpha=0); never exactly 0 on a real step
linear      1 - progress
==========  =================================================================
=======
=============  ==============================================================
name           factor(progress)
=============  ==============================================================
constant       1
cosine         (1 + cos(pi * progress)) / 2   (Loshchilov & Hutter 2017, no restarts;
               Keras ``CosineDecay`` with alpha=0); never exactly 0 on a real step
linear         1 - progress
warmup_cosine  progress / w for progress < w (a linear warm-up from 0), then the cosine over
               the rest: (1 + cos(pi (progress - w) / (1 - w))) / 2; w = ``warmup`` (0.05)
               (Hugging Face's ``get_cosine_schedule_with_warmup``; Goyal et al. 2017's warm-up)
one_cycle      PyTorch's ``OneCycleLR`` (Smith & Topin 2019) with its defaults and ``lr`` as
               max_lr: from 1/25 up to 1 over the first 30% of the steps, then down to
               1/(25 * 1e4), each phase a cosine
=============  ==============================================================

``start`` is the optimizer's step count when the schedule began (``Trainer.fit`` sets it, so a
second ``fit``, or a resumed one, runs the schedule over its own steps). A user function of the
progress is a :class:`Lambda`. ``optim.create("adam", params, schedule="cosine", total_steps=N)`` or
``optim.Adam(params, schedule=optim.schedule.Cosine(total_steps=N))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

from ..registry import Registry


class Schedule:
    """A multiplier of the base learning rate over ``total_steps`` steps (see the module docstring)."""

    name: ClassVar[str] = ""

    def __init__(self, total_steps: int | None = None, start: int = 0) -> None:
        if total_steps is not None and (
            isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1
        ):
            raise ValueError(f"{type(self).__name__}: total_steps must be a positive integer, got {total_steps!r}")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"{type(self).__name__}: start must be a non-negative integer, got {start!r}")
        self.total_steps, self.start = total_steps, start

    def factor(self, progress: float) -> float:
        raise NotImplementedError

    def __call__(self, t: int) -> float:
        """The multiplier of step ``t`` (the optimizer's step count, from 1)."""
        if self.total_steps is None:
            raise ValueError(
                f"the {self.name or type(self).__name__} schedule does not know how many steps it spans: give "
                f"total_steps (optim.schedule.{type(self).__name__}(total_steps=N)), or train with Trainer.fit, "
                "which sets it from the epochs and the batches"
            )
        return float(self.factor((t - 1 - self.start) / self.total_steps))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "total_steps": self.total_steps, "start": self.start}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(total_steps={self.total_steps}, start={self.start})"


#: The schedules by name (``scripts/train.py --lr_schedule``).
SCHEDULES: Registry[type[Schedule]] = Registry("lr schedule")


@SCHEDULES.register("constant")
class Constant(Schedule):
    """The base rate throughout: factor(progress) = 1 (what ``schedule=None`` runs)."""

    name = "constant"

    def factor(self, progress: float) -> float:
        return 1.0

    def __call__(self, t: int) -> float:  # needs no total_steps
        return 1.0


@SCHEDULES.register("cosine")
class Cosine(Schedule):
    r"""Cosine decay to zero over ``total_steps`` (Loshchilov & Hutter 2017, without restarts;
    Keras's ``CosineDecay`` with alpha=0): factor(p) = (1 + cos(pi p)) / 2.

    $$
    \text{lr}_t = \text{lr} \cdot \tfrac{1}{2} \big(1 + \cos(\pi p_t)\big), \qquad
    p_t = (t - 1 - \text{start}) / \text{total\_steps}
    $$
    """

    name = "cosine"

    def factor(self, progress: float) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * progress))


@SCHEDULES.register("linear")
class Linear(Schedule):
    r"""Linear decay to zero over ``total_steps``: factor(p) = 1 - p.

    $$
    \text{lr}_t = \text{lr} \cdot (1 - p_t), \qquad p_t = (t - 1 - \text{start}) / \text{total\_steps}
    $$
    """

    name = "linear"

    def factor(self, progress: float) -> float:
        return 1.0 - progress


def _fraction(value: float, what: str, cls: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{cls}: {what} must be a fraction of the steps in [0, 1), got {value!r}")
    return float(value)


@SCHEDULES.register("warmup_cosine")
class WarmupCosine(Schedule):
    """A linear warm-up from 0 over the first ``warmup`` of the steps, then a cosine decay to 0:
    factor(p) = p / w for p < w, else (1 + cos(pi (p - w) / (1 - w))) / 2. With w = k / N this is
    Hugging Face's ``get_cosine_schedule_with_warmup(opt, k, N)`` step for step (the first step
    runs at rate 0, as there)."""

    name = "warmup_cosine"

    def __init__(self, total_steps: int | None = None, start: int = 0, warmup: float = 0.05) -> None:
        super().__init__(total_steps, start)
        self.warmup = _fraction(warmup, "warmup", "WarmupCosine")

    def factor(self, progress: float) -> float:
        w = self.warmup
        if progress < w:
            return progress / w
        return 0.5 * (1.0 + math.cos(math.pi * (progress - w) / (1.0 - w)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "warmup": self.warmup}


@SCHEDULES.register("one_cycle")
class OneCycle(Schedule):
    """PyTorch's ``OneCycleLR(max_lr=lr, total_steps=N, pct_start, div_factor, final_div_factor)``
    with ``anneal_strategy="cos"`` (Smith & Topin 2019), as a factor of the base rate ``lr``: up
    from 1 / div_factor to 1 over the steps before pct_start N - 1, then down to
    1 / (div_factor final_div_factor) at the last step, each phase the cosine
    end + (start - end) (1 + cos(pi x)) / 2 of its fraction x, as PyTorch computes it."""

    name = "one_cycle"

    def __init__(
        self,
        total_steps: int | None = None,
        start: int = 0,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ) -> None:
        super().__init__(total_steps, start)
        self.pct_start = _fraction(pct_start, "pct_start", "OneCycle")
        for what, v in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 1.0:
                raise ValueError(f"OneCycle: {what} must be a number >= 1, got {v!r}")
        self.div_factor, self.final_div_factor = float(div_factor), float(final_div_factor)

    @staticmethod
    def _cos(start: float, end: float, x: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * x) + 1)

    def factor(self, progress: float) -> float:
        total = self.total_steps or 1
        step = progress * total  # the step's index from 0 (progress = step / total)
        first, low = 1.0 / self.div_factor, 1.0 / (self.div_factor * self.final_div_factor)
        peak = float(self.pct_start * total) - 1
        if step <= peak:
            return self._cos(first, 1.0, step / peak if peak > 0 else 1.0)
        last = total - 1
        return self._cos(1.0, low, (step - peak) / (last - peak) if last > peak else 1.0)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


class Lambda(Schedule):
    """A user's ``fn(progress) -> factor`` (a warm-up: ``Lambda(lambda p: min(1, 4 * p), total_steps=N)``).
    Saved in a ``state_dict`` by its steps only: a loaded optimizer keeps the function it has."""

    name = "lambda"

    def __init__(self, fn: Callable[[float], float], total_steps: int | None = None, start: int = 0) -> None:
        if not callable(fn):
            raise ValueError(f"Lambda takes a function of the progress, got {type(fn).__name__}")
        super().__init__(total_steps, start)
        self.fn = fn

    def factor(self, progress: float) -> float:
        return self.fn(progress)


def get(
    schedule: str | Schedule | Callable[[float], float] | None, total_steps: int | None = None, start: int = 0
) -> Schedule | None:
    """A schedule from a name, a Schedule (its steps set where not given), or a function of the
    progress; None and "constant" give None (the base rate throughout)."""
    if schedule is None:
        return None
    if isinstance(schedule, Schedule):
        if schedule.total_steps is None:
            schedule.total_steps = total_steps
        return schedule
    if callable(schedule):
        return Lambda(schedule, total_steps, start)
    cls = SCHEDULES.get(schedule)
    return None if cls is Constant else cls(total_steps, start)


def from_config(config: dict[str, Any], current: Schedule | None = None) -> Schedule | None:
    """The inverse of ``Schedule.get_config`` (a Lambda keeps ``current``'s function)."""
    if config is None:
        return None
    if config["name"] == "lambda":
        if not isinstance(current, Lambda):
            raise ValueError(
                "the state holds a Lambda schedule, which cannot be rebuilt from a file: give the "
                "optimizer the same Lambda(fn) before loading the state"
            )
        current.total_steps, current.start = config["total_steps"], config["start"]
        return current
    extra = {k: v for k, v in config.items() if k not in ("name", "total_steps", "start")}
    return SCHEDULES.get(config["name"])(config["total_steps"], config["start"], **extra)
