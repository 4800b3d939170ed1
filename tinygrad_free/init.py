"""Weight initialisers.

Every initialiser is ``f(shape, rng, dtype) -> ndarray`` with a ``numpy.random.Generator`` so
that a seed makes a run reproducible. Biases start at zero. ``fans(shape)`` reads the fans:

* 2-D (Dense): ``shape = (fan_in, fan_out)`` (the layer computes ``x @ W``);
* 3-D and more (convolutions): PyTorch's layout ``(out_channels, in_channels, *kernel)``, with
  fan_in = in_channels * prod(kernel) and fan_out = out_channels * prod(kernel), as PyTorch's
  ``_calculate_fan_in_and_fan_out`` and Keras compute them.

==========  ==========================================================
``random``  normal, std 0.01 (``std=`` to change)
``xavier``  Glorot uniform, U(-a, a) with a = sqrt(6 / (fan_in + fan_out))
``he``      normal, std sqrt(2 / fan_in)
==========  ==========================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .registry import Registry

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from ._typing import Array, Initializer, Seed


def random(shape: tuple[int, ...], rng: np.random.Generator, dtype: DTypeLike = np.float32, std: float = 0.01) -> Array:
    return (rng.standard_normal(shape) * std).astype(dtype)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of this shape (see the module docstring for the layouts)."""
    shape = tuple(int(d) for d in shape)
    if len(shape) <= 2:
        return shape[0], shape[-1]
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


def xavier(shape: tuple[int, ...], rng: np.random.Generator, dtype: DTypeLike = np.float32) -> Array:
    fan_in, fan_out = fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def he(shape: tuple[int, ...], rng: np.random.Generator, dtype: DTypeLike = np.float32) -> Array:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fans(shape)[0])).astype(dtype)


#: The initialisers by name (``glorot`` is ``xavier``, ``kaiming`` is ``he``).
INITIALIZERS: Registry[Initializer] = Registry("init")
INITIALIZERS.add("random", random)
INITIALIZERS.add("xavier", xavier, "glorot")
INITIALIZERS.add("he", he, "kaiming")


def get(name: str | Initializer) -> Initializer:
    """Look up an initialiser by name (case-insensitive) or pass a callable through."""
    if callable(name):
        return name
    return INITIALIZERS.get(name)


def as_generator(rng: Seed) -> np.random.Generator:
    """A Generator from None (fresh entropy), an int seed, or a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise ValueError(f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}")
