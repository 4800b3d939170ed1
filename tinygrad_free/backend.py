"""Which implementation runs the hot kernels: ``numba`` (default when numba imports) or ``numpy``.

Both compute the same thing; the tests hold them equal. Choose with the environment variable
``TINYGRAD_FREE_BACKEND=numpy|numba`` or at run time::

    tinygrad_free.set_backend("numpy")
    with tinygrad_free.use_backend("numba"):
        ...
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import SimpleNamespace

BACKENDS = ("numba", "numpy")
_current: str | None = None
_ops: SimpleNamespace | None = None


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def get_backend() -> str:
    if _current is None:
        requested = os.environ.get("TINYGRAD_FREE_BACKEND", "").strip().lower()
        set_backend(requested or ("numba" if _numba_available() else "numpy"))
        assert _current is not None  # set_backend set it (or raised); tells mypy
    return _current


def set_backend(name: str) -> None:
    """Select the kernel implementation for everything that runs after this call."""
    global _current, _ops
    key = str(name).lower()
    if key not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")
    if key == "numba" and not _numba_available():
        raise RuntimeError("backend 'numba' requested but numba is not installed (pip install numba)")
    from . import kernels

    _current = key
    _ops = kernels.NUMBA if key == "numba" else kernels.NUMPY


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def ops() -> SimpleNamespace:
    """The kernel namespace of the current backend (see ``tinygrad_free.kernels``).

    Called on every kernel launch, so it is one global lookup once a backend is chosen.
    """
    if _ops is None:
        get_backend()
        assert _ops is not None  # only on the first call: the hot path stays one lookup
    return _ops
