"""Type aliases shared by the annotations of the public API (for type checkers only: the
modules import this under ``typing.TYPE_CHECKING``, so it costs nothing at run time)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import DTypeLike, NDArray

#: Any numpy array (layers take float32 or float64; labels are integer arrays).
Array = NDArray[Any]
#: What ``init.as_generator`` accepts: None (fresh entropy), an int seed, or a Generator.
Seed = int | np.integer | np.random.Generator | None
#: ``f(shape, rng, dtype) -> ndarray``: a weight initialiser (``tinygrad_free.init``), what a
#: layer's ``init=`` may be besides a name.
Initializer = Callable[[tuple[int, ...], np.random.Generator, DTypeLike], Array]


class OnnxBuilder(Protocol):
    """What a module's ``to_onnx(b, inputs) -> outputs`` hook receives (the builder of
    ``tinygrad_free.onnx``): tensor names in, tensor names out."""

    opset: int

    def op(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str: ...

    def ops(self, op_type: str, inputs: Sequence[str], outputs: int, **attrs: Any) -> list[str]: ...

    def param(self, value: Any, name: str | None = None, key: Any = None) -> str: ...

    def activation(self, x: str, name: str) -> str: ...

    def scalar(self, value: float, name: str = "const") -> str: ...

    def ints(self, values: Sequence[int], name: str = "ints") -> str: ...

    def call(
        self, module: Any, inputs: Sequence[str], scope: str, kwargs: dict[str, Any] | None = None
    ) -> list[str]: ...

    def recurrent(self, kind: str, x: str, layers: Sequence[Sequence[Any]], **options: Any) -> list[str]: ...

    def require_opset(self, version: int, what: str) -> None: ...
