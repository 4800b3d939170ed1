"""Activation math for the numba kernels: vectorisable float32 tanh, exp, erfc and sigmoid, and dtype dispatch.

llvmlite has no SVML, so ``np.tanh`` inside a numba loop is a scalar libm call (~10 ns per
element, and it blocks vectorisation), while NumPy's own float32 tanh is SIMD (~0.3 ns).
For float32 we therefore evaluate tanh as a rational function, the way Eigen's and XLA's
``ptanh_float`` do::

    x <- clamp(x, -CLAMP, CLAMP)            (NaN passes through: both comparisons are false)
    s = x * x
    tanh(x) ~= x * P(s) / Q(s)              P of degree 6 in s (x^13), Q of degree 3 (x^6)
    then clamp the result to [-1, 1]        (float32 rounding overshoots 1 by <= 2 ulp near 8.3..9)

The coefficients are our own (see ``fit_tanh_coefficients``): a minimax fit of
``tanh(x) / x`` in relative error on [0, 9] with P(0) = Q(0) = 1, so tiny and subnormal
inputs come back exactly (x * 1 / 1) and the result is odd. The fit's own error is 7e-9
(0.12 ulp); float32 rounding in the evaluation dominates: over every float32 in
[2^-20, 12] the result is within 5.2 ulp of the correctly rounded tanh (mean 0.42 ulp;
NumPy's SIMD tanh: 1.4 ulp max), i.e. relative error <= 3.1e-7. The clamp is 9 rather
than Eigen's 7.9: tanh(7.9) = 1 - 2.7e-7 is 4.5 ulp below 1, tanh(9) = 1 - 3e-8 is not
distinguishable from 1 in float32, and the ratio at 9 rounds to exactly 1.0, so
tanh(+-x) = +-1 exactly for |x| >= 9, +-inf -> +-1, NaN -> NaN. In the kernels' loops it
vectorises (AVX2/AVX-512: ~0.25-0.4 ns per element, NumPy's np.tanh ~0.26 ns).

The only fast-math flag used is ``contract`` on the polynomial (lets LLVM use FMA there;
it changes rounding, not NaN/inf behaviour). The loops that call these functions are
compiled without fast-math, so everything else rounds exactly as NumPy does.

float64 keeps the exact ``np.tanh`` (a 13/6 rational is not float64-accurate); the choice
is made at compile time by the numba type of the argument (``tanh`` below is a numba
overload), so there is no per-call cost. (``dense.bias_act_numba`` goes one step
further for float64 and hands the tanh to NumPy's SIMD ufunc, see there.)

exp and erfc (softmax, GELU) have the same problem and the same cure. ``exp_f32`` is Cephes'
``expf``: n = round(x log2 e), r = x - n ln 2 (ln 2 split in two for an exact product), exp(r) by
its degree-7 polynomial, times 2^n built from its bits (two factors, so 2^n is exact from the
subnormal range to 2^128); over float32 [-104, 88.72] it is within 1.4 ulp of exp (relative error
<= 8.3e-8), x > 88.72 gives inf, x < -104 gives 0, NaN gives NaN. ``erfc_f32`` is the Chebyshev
fit of Numerical Recipes (2nd ed., ``erfcc``, fractional error < 1.2e-7 everywhere):
erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), for z >= 0, and 2 - erfc(-z) below, so the
tail keeps its relative accuracy (GELU's Phi(x) = erfc(-x / sqrt 2) / 2 for x << 0, where
1 + erf cancels); evaluated in float32 with ``exp_f32`` it is within 8e-6 relative of erfc
down to 1e-37. Both vectorise only when inlined into the loop (``inline="always"``; LLVM's own
inliner gives up on the polynomial and the exp together): about 0.7 ns per exp and 2-3 ns per
erfc, against 5 and 18 ns for the scalar libm calls. float64 keeps ``np.exp`` and ``math.erfc``.

The recurrent layers' gate sigmoid (``sigmoid_f32``) is 1 / (1 + exp(-x)) with ``exp_f32``, so it
keeps its relative accuracy in the negative tail (sigmoid(-20) = 2.06e-9), which 0.5 + 0.5 tanh(x
/ 2) loses to cancellation: within 2.5 ulp of 1 / (1 + exp(-x)) in float64 from sigmoid(-87) =
1.6e-38 up (``tests/test_recurrent_kernels.py``), sigmoid(+-inf) = 1, 0.

The kernels in dense.py inline these functions; numba's on-disk cache would only watch the
file a kernel is defined in, so the kernels' cache is salted with every kernel file's source
(``_nb.SALT``): editing this file recompiles them.
"""

import math

import numpy as np

from ._nb import HAVE_NUMBA, njit, overload, types

# Fitted by fit_tanh_coefficients(clamp=9.0) and rounded to float32.
CLAMP = np.float32(9.0)
P0 = np.float32(1.0)
P1 = np.float32(0.13085918128490448)
P2 = np.float32(0.0031060532201081514)
P3 = np.float32(1.1175288818776608e-05)
P4 = np.float32(-2.0304579351204666e-08)
P5 = np.float32(5.313054163291753e-11)
P6 = np.float32(-8.571144011551568e-14)
Q0 = np.float32(1.0)
Q1 = np.float32(0.4641924798488617)
Q2 = np.float32(0.024503624066710472)
Q3 = np.float32(0.0002549142809584737)

_NEG_CLAMP = np.float32(-CLAMP)
_ONE32, _NEG_ONE32 = np.float32(1.0), np.float32(-1.0)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def tanh_f32(x):
    """Rational float32 tanh (scalar; inlined and vectorised inside the kernels' loops)."""
    x = CLAMP if x > CLAMP else x  # written as selects so NaN stays NaN
    x = _NEG_CLAMP if x < _NEG_CLAMP else x
    s = x * x
    p = (((((P6 * s + P5) * s + P4) * s + P3) * s + P2) * s + P1) * s + P0
    q = ((Q3 * s + Q2) * s + Q1) * s + Q0
    r = (x * p) / q
    r = _ONE32 if r > _ONE32 else r  # rounding can overshoot 1 by 2 ulp near the clamp
    return _NEG_ONE32 if r < _NEG_ONE32 else r


def tanh(x):
    """tanh of a numba float scalar: the rational form for float32, np.tanh otherwise.

    Only callable from numba-compiled code (it is a compile-time overload)."""
    raise NotImplementedError("approx.tanh is for numba code; use approx.tanh_array from Python")


@overload(tanh)
def _tanh_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: tanh_f32(x)
    if isinstance(x, (types.Float, types.Integer)):
        return lambda x: np.tanh(x)
    return None


def has_fast_tanh(a):
    """True (a compile-time constant) when ``a``'s dtype gets the rational tanh. numba-only."""
    raise NotImplementedError("approx.has_fast_tanh is for numba code")


@overload(has_fast_tanh)
def _has_fast_tanh_overload(a):
    fast = isinstance(a, types.Array) and isinstance(a.dtype, types.Float) and a.dtype.bitwidth == 32
    return lambda a: fast


@njit(cache=True, error_model="numpy")
def _tanh_flat(x, out):
    for i in range(x.size):
        out[i] = tanh(x[i])


def tanh_array(x):
    """The kernels' tanh on an array (a new array; float32 uses the rational form)."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _tanh_flat(x.reshape(-1), out.reshape(-1))
    return out


def fit_tanh_coefficients(clamp=9.0, deg_p=6, deg_q=3, n=4000):
    """Re-derive P and Q: minimax relative-error fit of g(s) = tanh(sqrt s) / sqrt s on [0, clamp^2].

    For a trial error d, "is there a P, Q with |P - g Q| <= d g Q at every sample, Q >= 1,
    P(0) = Q(0)?" is a linear feasibility problem; bisecting on d gives the minimax fit
    (the problem is quasi-convex). P and Q are solved for in a Chebyshev basis of
    t = 2 s / clamp^2 - 1 for conditioning, then converted to monomials in s and scaled to
    Q(0) = 1. Needs scipy; takes about a minute. Returns (p, q, max_rel_err) in float64.
    """
    from numpy.polynomial import chebyshev as cheb
    from numpy.polynomial import polynomial as poly
    from scipy.optimize import linprog

    c = float(clamp)
    quarter = np.linspace(0, np.pi / 2, n)
    x = np.unique(np.concatenate([c * np.sin(quarter), np.linspace(0, c, n), c * (1 - np.cos(quarter))]))
    s = x * x
    g = np.ones_like(x)
    g[x > 0] = np.tanh(x[x > 0]) / x[x > 0]
    t = 2 * s / (c * c) - 1
    Tp, Tq = cheb.chebvander(t, deg_p), cheb.chebvander(t, deg_q)
    nv = deg_p + deg_q + 2
    at0 = np.array([-1.0])
    a_eq = np.concatenate([cheb.chebvander(at0, deg_p)[0], -cheb.chebvander(at0, deg_q)[0]])[None]
    opts = dict(primal_feasibility_tolerance=1e-10, dual_feasibility_tolerance=1e-10)

    def feasible(d):
        a_ub = np.vstack(
            [
                np.hstack([Tp / g[:, None], -(1 + d) * Tq]),
                np.hstack([-Tp / g[:, None], (1 - d) * Tq]),
                np.hstack([np.zeros_like(Tp), -Tq]),
            ]
        )
        b_ub = np.concatenate([np.zeros(2 * len(s)), -np.ones(len(s))])
        res = linprog(
            np.zeros(nv),
            A_ub=a_ub,
            b_ub=b_ub,
            A_eq=a_eq,
            b_eq=[0.0],
            bounds=[(-1e4, 1e4)] * nv,
            method="highs",
            options=opts,
        )
        return res.x if res.status == 0 else None

    lo, hi = 1e-11, 1e-6
    best = feasible(hi)
    if best is None:
        raise RuntimeError("no feasible fit at relative error 1e-6; raise the degrees")
    while hi / lo > 1.02:
        mid = np.sqrt(lo * hi)
        sol = feasible(mid)
        if sol is not None:
            hi, best = mid, sol
        else:
            lo = mid

    def to_monomial_in_s(coef):
        out, acc, lin = np.zeros(len(coef)), np.array([1.0]), np.array([-1.0, 2 / (c * c)])
        for ck in cheb.cheb2poly(coef):
            out[: len(acc)] += ck * acc
            acc = poly.polymul(acc, lin)
        return out

    p, q = to_monomial_in_s(best[: deg_p + 1]), to_monomial_in_s(best[deg_p + 1 :])
    p, q = p / q[0], q / q[0]
    xf = np.linspace(1e-6, c, 200_001)
    err = float(np.max(np.abs(xf * poly.polyval(xf * xf, p) / poly.polyval(xf * xf, q) / np.tanh(xf) - 1)))
    return p, q, err


# --- exp and erfc ---------------------------------------------------------------------------------
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)  # ln 2 = HI + LO, HI exact in 9 bits
_E0, _E1, _E2 = np.float32(1.9875691500e-4), np.float32(1.3981999507e-3), np.float32(8.3334519073e-3)
_E3, _E4, _E5 = np.float32(4.1665795894e-2), np.float32(1.6666665459e-1), np.float32(5.0000001201e-1)
EXP_HI = np.float32(88.72283935546875)  # ln(FLT_MAX), rounded down
EXP_LO = np.float32(-104.0)  # exp below is 0 in float32 (the smallest subnormal is e^-103.28)
_HALF32, _ZERO32, _TWO32, _INF32 = np.float32(0.5), np.float32(0.0), np.float32(2.0), np.float32(np.inf)
# Numerical Recipes' erfcc coefficients, t = 1 / (1 + z / 2): erfc(z) = t exp(-z^2 + C0 + t (C1 + ...)).
_C = [
    np.float32(v)
    for v in (
        -1.26551223,
        1.00002368,
        0.37409196,
        0.09678418,
        -0.18628806,
        0.27886807,
        -1.13520398,
        1.48851587,
        -0.82215223,
        0.17087277,
    )
]
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9 = _C


def _bits_to_f32(bits):
    raise NotImplementedError("numba-only helper")


if HAVE_NUMBA:
    from llvmlite import ir
    from numba.extending import intrinsic

    @intrinsic
    def _bits_to_f32(typingctx, bits):  # noqa: F811 (the numba intrinsic of the stub above)
        """The float32 whose bits are the low 32 bits of the integer ``bits`` (a bitcast,
        vectorisable; numba computes int32 arithmetic in 64 bits)."""
        if not (isinstance(bits, types.Integer) and bits.bitwidth in (32, 64)):
            return None

        def codegen(context, builder, signature, args):
            low = args[0] if signature.args[0].bitwidth == 32 else builder.trunc(args[0], ir.IntType(32))
            return builder.bitcast(low, ir.FloatType())

        return types.float32(bits), codegen


@njit(cache=True, error_model="numpy", fastmath={"contract"}, inline="always")
def exp_f32(x):
    """Cephes' float32 exp (scalar; vectorised where inlined); see the module docstring."""
    xc = EXP_HI if x > EXP_HI else x
    xc = EXP_LO if xc < EXP_LO else xc
    n = np.floor(xc * _LOG2E + _HALF32)
    r = xc - n * _LN2_HI
    r = r - n * _LN2_LO
    p = ((((_E0 * r + _E1) * r + _E2) * r + _E3) * r + _E4) * r + _E5
    p = p * (r * r) + r + _ONE32
    k = np.int32(n)
    h = k >> 1  # 2^k as 2^h 2^(k-h): each factor a normal float32 over the whole range
    y = p * _bits_to_f32((h + 127) << 23) * _bits_to_f32((k - h + 127) << 23)
    y = _INF32 if x > EXP_HI else y
    y = _ZERO32 if x < EXP_LO else y
    return x if x != x else y  # NaN stays NaN


@njit(cache=True, error_model="numpy", fastmath={"contract"}, inline="always")
def erfc_f32(x):
    """erfc of a float32, relative error <= 8e-6 down to 1e-37 (see the module docstring)."""
    z = -x if x < _ZERO32 else x
    t = _ONE32 / (_ONE32 + _HALF32 * z)
    p = _C8 + t * _C9
    p = _C0 + t * (_C1 + t * (_C2 + t * (_C3 + t * (_C4 + t * (_C5 + t * (_C6 + t * (_C7 + t * p)))))))
    r = t * exp_f32(p - z * z)
    return r if x >= _ZERO32 else _TWO32 - r  # NaN: 2 - NaN


def exp(x):
    """exp of a numba float scalar: ``exp_f32`` for float32, np.exp otherwise. numba-only."""
    raise NotImplementedError("approx.exp is for numba code")


def erfc(x):
    """erfc of a numba float scalar: ``erfc_f32`` for float32, math.erfc otherwise. numba-only."""
    raise NotImplementedError("approx.erfc is for numba code")


@overload(exp, inline="always")
def _exp_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: exp_f32(x)
    if isinstance(x, (types.Float, types.Integer)):
        return lambda x: np.exp(x)
    return None


@overload(erfc, inline="always")
def _erfc_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: erfc_f32(x)
    if isinstance(x, (types.Float, types.Integer)):
        return lambda x: math.erfc(x)
    return None


@njit(cache=True, error_model="numpy", fastmath={"contract"}, inline="always")
def sigmoid_f32(x):
    """1 / (1 + exp(-x)) in float32 with ``exp_f32`` (relative accuracy kept in the negative tail)."""
    return _ONE32 / (_ONE32 + exp_f32(-x))


def sigmoid(x):
    """The logistic sigmoid of a numba float scalar: ``sigmoid_f32`` for float32, 1 / (1 + exp(-x))
    with np.exp otherwise (as ``dense.sigmoid_inplace``). numba-only."""
    raise NotImplementedError("approx.sigmoid is for numba code; use approx.sigmoid_array from Python")


@overload(sigmoid)
def _sigmoid_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: sigmoid_f32(x)
    if isinstance(x, types.Float):
        return lambda x: 1.0 / (1.0 + np.exp(-x))
    return None


@njit(cache=True, error_model="numpy")
def _sigmoid_flat(x, out):
    for i in range(x.size):
        out[i] = sigmoid(x[i])


@njit(cache=True, error_model="numpy")
def _exp_flat(x, out):
    for i in range(x.size):
        out[i] = exp(x[i])


@njit(cache=True, error_model="numpy")
def _erfc_flat(x, out):
    for i in range(x.size):
        out[i] = erfc(x[i])


def exp_array(x):
    """The kernels' exp on an array (a new array; float32 uses ``exp_f32``)."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _exp_flat(x.reshape(-1), out.reshape(-1))
    return out


def erfc_array(x):
    """The kernels' erfc on an array (a new array; float32 uses ``erfc_f32``)."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _erfc_flat(x.reshape(-1), out.reshape(-1))
    return out


def erfc_f32_numpy(x):
    """``erfc_f32``'s formula in NumPy (float32 arrays; np.exp for the exponential): the NumPy
    kernels' float32 erfc, so the two backends differ by exp's rounding only."""
    x = np.asarray(x, np.float32)
    z = np.abs(x)
    t = np.float32(1) / (np.float32(1) + np.float32(0.5) * z)
    p = _C8 + t * _C9
    for c in (_C7, _C6, _C5, _C4, _C3, _C2, _C1, _C0):
        p = c + t * p
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        r = t * np.exp(p - z * z)
    return np.where(x >= 0, r, np.float32(2) - r).astype(np.float32)


def sigmoid_array(x):
    """The kernels' sigmoid on an array (a new array; float32 uses ``sigmoid_f32``)."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _sigmoid_flat(x.reshape(-1), out.reshape(-1))
    return out
