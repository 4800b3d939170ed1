"""Learning-rate schedules as multipliers of the base rate over the course of training.

A schedule is ``f(progress) -> factor`` with ``progress = step / total_steps`` in [0, 1);
the trainer sets ``optimizer.lr = base_lr * f(progress)`` before every step.

==========  =================================================================
constant    1
cosine      (1 + cos(pi * progress)) / 2   (Loshchilov & Hutter 2017, no restarts;
            Keras ``CosineDecay`` with alpha=0); never exactly 0 on a real step
linear      1 - progress
==========  =================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

#: ``f(progress) -> factor`` of the base learning rate, progress in [0, 1).
Schedule = Callable[[float], float]


def constant(progress: float) -> float:
    return 1.0


def cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def linear(progress: float) -> float:
    return 1.0 - progress


SCHEDULES: dict[str, Schedule] = {"constant": constant, "cosine": cosine, "linear": linear}


def get(name: str | Schedule) -> Schedule:
    """A schedule by name, or a callable passed through."""
    if callable(name):
        return name
    key = str(name).lower()
    if key not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[key]
