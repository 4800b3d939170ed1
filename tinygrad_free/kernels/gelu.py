"""GELU, exact (erf) and tanh-approximated, with its derivative from the INPUT: the scalar functions
the dense and convolution loops inline, and their NumPy array twins.

===========  ===============================================================================
gelu         x Phi(x),  Phi(x) = erfc(-x / sqrt 2) / 2         (Hendrycks & Gimpel 2016;
             PyTorch's ``GELU()``, ``approximate="none"``)
gelu'        Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
gelu_tanh    x (1 + tanh u) / 2,  u = sqrt(2 / pi) (x + 0.044715 x^3)   (``approximate="tanh"``)
gelu_tanh'   (1 + tanh u) / 2 + x (1 - tanh^2 u) sqrt(2 / pi) (1 + 3 * 0.044715 x^2) / 2
===========  ===============================================================================

Unlike the other activations of ``kernels.dense`` the derivative cannot be had from the output
(GELU is not one-to-one below x = -0.75), so a layer with GELU keeps its pre-activation and hands
that to the gradient kernels where the others hand their output.

Phi is written with erfc rather than ``(1 + erf(x / sqrt 2)) / 2``, so for x << 0 it keeps its
relative accuracy where 1 + erf cancels (PyTorch's float32 GELU is 0 or off by 100% below about
-5.5; ours is within 2e-5 relative to -14, below which it is 0 in float32 too). float32 uses the
vectorisable ``approx.erfc_f32``/``exp_f32`` (the NumPy twin the same erfc formula with np.exp);
float64 the exact ``math.erfc``, in both backends.
"""

import math

import numpy as np

from . import approx
from ._nb import overload, types

SQRT_HALF = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
BETA = math.sqrt(2.0 / math.pi)  # the tanh form's sqrt(2 / pi)
KAPPA = 0.044715


def _constants(x):
    """The constants in the numba float type of ``x``: (half, one, sqrt(1/2), 1/sqrt(2 pi), beta, kappa)."""
    f = np.float32 if x.bitwidth == 32 else np.float64
    return f(0.5), f(1.0), f(SQRT_HALF), f(INV_SQRT_2PI), f(BETA), f(KAPPA)


def gelu(x):
    """gelu(x) of a numba float scalar (exact, erf form). numba-only."""
    raise NotImplementedError("kernels.gelu.gelu is for numba code; use gelu_numpy")


def d_gelu(x, g):
    """g * gelu'(x) of numba float scalars. numba-only."""
    raise NotImplementedError("kernels.gelu.d_gelu is for numba code; use d_gelu_numpy")


def gelu_tanh(x):
    """The tanh approximation of gelu(x), a numba float scalar. numba-only."""
    raise NotImplementedError("kernels.gelu.gelu_tanh is for numba code; use gelu_numpy")


def d_gelu_tanh(x, g):
    """g times the tanh approximation's derivative at x. numba-only."""
    raise NotImplementedError("kernels.gelu.d_gelu_tanh is for numba code; use d_gelu_numpy")


@overload(gelu, inline="always")
def _gelu(x):
    if not isinstance(x, types.Float):
        return None
    half, _, r2, _, _, _ = _constants(x)
    return lambda x: x * (half * approx.erfc(-x * r2))


@overload(d_gelu, inline="always")
def _d_gelu(x, g):
    if not isinstance(x, types.Float):
        return None
    half, _, r2, c, _, _ = _constants(x)

    def impl(x, g):
        cdf = half * approx.erfc(-x * r2)
        return g * (cdf + x * (c * approx.exp(-half * x * x)))

    return impl


@overload(gelu_tanh, inline="always")
def _gelu_tanh(x):
    if not isinstance(x, types.Float):
        return None
    half, one, _, _, beta, kappa = _constants(x)
    return lambda x: half * x * (one + approx.tanh(beta * (x + kappa * x * x * x)))


@overload(d_gelu_tanh, inline="always")
def _d_gelu_tanh(x, g):
    if not isinstance(x, types.Float):
        return None
    half, one, _, _, beta, kappa = _constants(x)
    three_kappa = kappa * (np.float32 if x.bitwidth == 32 else np.float64)(3.0)

    def impl(x, g):
        x2 = x * x
        t = approx.tanh(beta * (x + kappa * x2 * x))
        return g * (half * (one + t) + half * x * (one - t * t) * beta * (one + three_kappa * x2))

    return impl


# --- NumPy ----------------------------------------------------------------------------------------
_erfc64 = np.frompyfunc(math.erfc, 1, 1)


def _erfc(x):
    """erfc elementwise: the float32 formula of ``approx`` for float32, math.erfc for float64."""
    if x.dtype == np.float32:
        return approx.erfc_f32_numpy(x)
    return _erfc64(x).astype(x.dtype)


def gelu_numpy(x, out, tanh_form=False):
    """out <- gelu(x) (``tanh_form``: the tanh approximation); ``out`` may be ``x``. Returns out."""
    t = x.dtype.type
    if tanh_form:
        u = np.tanh(t(BETA) * (x + t(KAPPA) * x * x * x))
        np.multiply(t(0.5) * x, t(1.0) + u, out=out)
        return out
    np.multiply(x, t(0.5) * _erfc(-x * t(SQRT_HALF)), out=out)
    return out


def d_gelu_numpy(x, g, out, tanh_form=False):
    """out <- g * gelu'(x) (``tanh_form``: the tanh approximation's derivative). Returns out."""
    t = x.dtype.type
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        if tanh_form:
            x2 = x * x
            u = np.tanh(t(BETA) * (x + t(KAPPA) * x2 * x))
            d = t(0.5) * (t(1.0) + u) + t(0.5) * x * (t(1.0) - u * u) * t(BETA) * (t(1.0) + t(3 * KAPPA) * x2)
        else:
            d = t(0.5) * _erfc(-x * t(SQRT_HALF)) + x * (t(INV_SQRT_2PI) * np.exp(t(-0.5) * x * x))
    np.multiply(g, d, out=out)
    return out
