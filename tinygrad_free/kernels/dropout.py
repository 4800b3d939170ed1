"""Inverted dropout from uniform 32-bit draws: out = x * keep / (1 - p), keep = (draw >= threshold),
threshold = round(p 2^32) (``nn.dropout.drop_threshold``). The same kernel applies the mask in
the forward (x) and in the backward (the gradient), from the draws the forward kept: no mask array
is built, and the numba twin is one vectorised pass (NumPy: a comparison, a product, a product).
"""

import numpy as np

from ._nb import NJIT, flat, flat_in, njit


def dropout_apply_numpy(x, draws, threshold, scale, out):
    """out <- x * (draws >= threshold) * scale, elementwise (draws: uint32 of x's shape). Returns out."""
    np.multiply(x, draws >= threshold, out=out)
    out *= out.dtype.type(scale)
    return out


@njit(**NJIT)
def _apply(x, draws, threshold, scale, out):
    xs, ds, os = flat_in(x), flat_in(draws), flat(out)
    if xs.size != ds.size or xs.size != os.size:
        raise ValueError("dropout_apply: x, draws and out must have one size")
    s = os.dtype.type(scale)
    zero = os.dtype.type(0)
    t = np.uint32(threshold)
    for i in range(os.size):
        os[i] = xs[i] * s if ds[i] >= t else zero * xs[i]  # 0 * x: a NaN stays NaN, as x * 0 does


def dropout_apply_numba(x, draws, threshold, scale, out):
    """numba twin of ``dropout_apply_numpy`` (which handles float types other than float32/64)."""
    if out.dtype not in (np.float32, np.float64):
        return dropout_apply_numpy(x, draws, threshold, scale, out)
    _apply(x, draws, threshold, float(scale), out)
    return out


from .registry import kernel, warmup_case  # noqa: E402

kernel("dropout_apply", dropout_apply_numpy, dropout_apply_numba)


@warmup_case
def _warm_up(dtype):
    x = np.linspace(-1.0, 1.0, 12, dtype=dtype).reshape(3, 4)
    x_readonly = x.view()
    x_readonly.flags.writeable = False
    draws = np.arange(12, dtype=np.uint32).reshape(3, 4) * np.uint32(300_000_000)
    for xin in (x, x_readonly, x.reshape(3, 2, 2)):
        dropout_apply_numba(xin, draws.reshape(xin.shape), 2**31, 2.0, np.empty_like(xin))
