"""Where each kernel says what it is: its name, its NumPy function and its numba twin
(``kernel``), and the calls that compile it for the argument types the library passes
(``warmup_case``). Both live in the kernel's own file, next to the code; ``kernels/__init__.py``
only gathers them into the two namespaces ``backend.ops()`` returns and runs the warm-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..registry import Registry


@dataclass(frozen=True)
class Kernel:
    numpy: Callable[..., Any]
    numba: Callable[..., Any]


#: Every kernel by name (``backend.ops().<name>``).
KERNELS: Registry[Kernel] = Registry("kernel", case_sensitive=True)
#: ``case(dtype)`` functions that call the numba kernels once per argument type the library
#: passes (float32, float64), so ``warmup()`` compiles (or loads) them before the clock starts.
WARMUP_CASES: list[Callable[[Any], None]] = []


def kernel(name: str, numpy: Callable[..., Any], numba: Callable[..., Any]) -> None:
    """Register a kernel's two implementations under ``name``."""
    KERNELS.add(name, Kernel(numpy, numba))


def warmup_case(case: Callable[[Any], None]) -> Callable[[Any], None]:
    """Decorator: ``case(dtype)`` runs in ``kernels.warmup()`` for each float dtype."""
    WARMUP_CASES.append(case)
    return case
