"""Type aliases shared by the annotations of the public API (for type checkers only: the
modules import this under ``typing.TYPE_CHECKING``, so it costs nothing at run time)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

#: Any numpy array (layers take float32 or float64; labels are integer arrays).
Array = NDArray[Any]
#: What ``init.as_generator`` accepts: None (fresh entropy), an int seed, or a Generator.
Seed = int | np.integer | np.random.Generator | None
#: ``f(shape, rng, dtype) -> ndarray``: a weight initialiser (``tinygrad_free.init``), what a
#: layer's ``init=`` may be besides a name.
Initializer = Callable[[tuple[int, ...], np.random.Generator, DTypeLike], Array]
