"""Argument and input checks shared by the convolution, pooling and normalisation layers, so
every layer words the same mistake the same way: the layer, what it got, what it needs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from .._typing import Array


def positive_int(value: Any, what: str, layer: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{layer}: {what} must be a positive integer, got {value!r}")
    return int(value)


def pair(value: Any, what: str, layer: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints (height, width), each >= minimum, as a tuple of two ints."""
    items = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    need = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    try:
        ok = len(items) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum for v in items
        )
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{layer}: {what} must be {need} or a pair of them (height, width), got {value!r}")
    return int(items[0]), int(items[1])


def float_dtype(dtype: DTypeLike, layer: str) -> np.dtype[Any]:
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"{layer}: dtype must be a float type (float32, float64), got {dtype}")
    return dtype


def image_batch(layer: object, x: Any, channels: int | None = None) -> tuple[int, ...]:
    """x must be a float (N, C, H, W) array (with C == channels when given); returns its shape."""
    shape: Any = getattr(x, "shape", None)
    c = "channels" if channels is None else channels
    if getattr(x, "ndim", 0) != 4 or (channels is not None and shape[1] != channels):
        raise ValueError(
            f"{layer!r}: expected input of shape (batch, {c}, height, width), "
            f"got {shape if shape is not None else type(x).__name__}"
        )
    if x.dtype.kind != "f":
        raise ValueError(f"{layer!r}: expected a float32 or float64 input, got {x.dtype}")
    return shape


def same_dtype(layer: object, x: Any, dtype: DTypeLike) -> None:
    if x.dtype != dtype:
        raise ValueError(
            f"{layer!r}: expected {dtype} input (the layer's dtype), got {x.dtype}; "
            f"convert the data once, e.g. x.astype(np.{dtype})"
        )


def pool_geometry(layer: Any, x: Array) -> tuple[int, int, int, int]:
    """Check a pooling layer's input and return (N, C, Ho, Wo): floor division, no padding."""
    n, c, h, w = image_batch(layer, x)
    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    if h < kh or w < kw:
        raise ValueError(
            f"{layer!r}: kernel {layer.kernel_size} is larger than the input's (height, width) "
            f"{(h, w)}; need height >= {kh} and width >= {kw}"
        )
    return n, c, (h - kh) // sh + 1, (w - kw) // sw + 1
