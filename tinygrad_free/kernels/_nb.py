"""numba plumbing shared by the numba kernels: compile options and compile-time array views.

The kernels are written for 2-D (dense, loss) or 1-D (optimizer) arrays. These overloads
pick, per argument type and at compile time (no per-call cost), how to see an argument
that way:

* ``as2d(a)``   writable 2-D view: 2-D of any layout as is, 1-D as one row, a C-contiguous
  array of any other rank as (prod(shape[:-1]), shape[-1]). Anything else cannot be viewed
  without a copy, which would lose the in-place write, so it is a typing error.
* ``as2d_in(a)`` the same for arrays that are only read: non-contiguous ones are copied.
* ``flat(a)`` / ``flat_in(a)``: the 1-D equivalents (a C-contiguous array of any rank is
  raveled; a 1-D array of any stride is used as is).

Arrays written by a kernel and arrays read by it are matched element for element by these
views, which is exact for the layouts accepted (C order on every side, or 1-D/2-D indexing).
"""

import functools
import glob
import hashlib
import os

import numpy as np

try:
    from numba import njit, types
    from numba.core.errors import TypingError
    from numba.extending import overload

    HAVE_NUMBA = True
except ImportError:  # numba is optional: the NumPy kernels and backend work without it
    HAVE_NUMBA = False
    types = None
    TypingError = TypeError

    def njit(*args, **kwargs):
        """Stand-in for numba.njit: the decorated kernel raises when called."""

        def decorate(fn):
            @functools.wraps(fn)
            def unavailable(*a, **k):
                raise RuntimeError(
                    f"{fn.__name__}: numba is not installed, so the numba kernels are "
                    "unavailable (pip install numba, or use the numpy backend)"
                )

            return unavailable

        if len(args) == 1 and callable(args[0]) and not kwargs:
            return decorate(args[0])
        return decorate

    def overload(*args, **kwargs):
        return lambda fn: fn


# Every kernel: cached on disk, and IEEE semantics for x/0 (inf/NaN, no ZeroDivisionError,
# which also keeps divisions vectorisable). No fast-math (see approx.py for the one exception).
NJIT = dict(cache=True, error_model="numpy")
#: Kernels whose only float reductions are sums, reassociated (a fixed order for a given machine and
#: length: the thread count changes no bit), so the reductions vectorise instead of running as one
#: chain of dependent adds. Fast-math is limited to reassociation and contraction.
NJIT_SUMS = dict(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})


def read_only(a):
    """``a`` as a read-only view (``a`` itself when it is one). numba compiles a kernel apart for a
    writable and a read-only array argument; a wrapper that hands its kernel every input it only
    reads this way gets one compiled variant for both (a layer's input is data, writable, or
    another layer's output, read-only), and the warm-up and CI compile half as many."""
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def none_as_empty(a, shape, dtype):
    """``a``, or for None an empty array of ``shape`` (its first dimension 0): how a wrapper hands
    "none" (no bias, no gradient wanted) to a kernel that tests ``a.shape[0] != 0``. numba compiles
    a kernel apart for None and for an array in each such argument; an empty array needs one
    variant for both (each Winograd variant took ~6 s to compile). The empty arrays are made once
    per shape and dtype and shared: nothing can be written into an array of no elements, and a
    training step allocates nothing for them."""
    if a is not None:
        return a
    key = (shape, dtype)
    empty = _EMPTY.get(key)
    if empty is None:
        empty = _EMPTY[key] = np.empty(shape, dtype)
    return empty


_EMPTY: dict = {}


#: A hash of every kernel file's source, part of the on-disk cache's stamp of each kernel.
SALT = hashlib.sha256(
    b"".join(open(p, "rb").read() for p in sorted(glob.glob(os.path.join(os.path.dirname(__file__), "*.py"))))
).hexdigest()[:16]


def _salt_the_cache():
    """numba checks a cached kernel against the source file that defines it, only: a kernel that
    inlines a helper from another file (``approx.tanh``, ``blas.gemm``, ``im2col``) would keep
    running its stale compiled code after that helper changed. Our kernels' cache entries carry
    ``SALT`` in their stamp instead, so editing any kernel file recompiles every kernel once.
    (Locators for other code are numba's own; the order of numba's locators is kept.)"""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    here = os.path.dirname(os.path.abspath(__file__))
    salted = []
    for base in list(impl._locator_classes):
        if not issubclass(base, caching._SourceFileBackedLocatorMixin):
            salted.append(base)
            continue

        class Salted(base):
            def get_source_stamp(self):
                return (super().get_source_stamp(), SALT)

            @classmethod
            def from_function(cls, py_func, py_file):
                if os.path.dirname(os.path.abspath(py_file)) != here:
                    return None
                return super().from_function(py_func, py_file)

        Salted.__name__ = f"Salted{base.__name__}"
        salted += [Salted, base]
    impl._locator_classes = salted


if HAVE_NUMBA:
    _salt_the_cache()


def as2d(a):
    raise NotImplementedError("numba-only helper")


def as2d_in(a):
    raise NotImplementedError("numba-only helper")


def flat(a):
    raise NotImplementedError("numba-only helper")


def flat_in(a):
    raise NotImplementedError("numba-only helper")


def _rows_cols_view(a):
    if a.ndim == 0:
        return lambda a: a.reshape(1, 1)

    def impl(a):
        rows = 1
        for k in range(a.ndim - 1):
            rows *= a.shape[k]
        return a.reshape(rows, a.shape[a.ndim - 1])

    return impl


def _check_array(a, fn):
    if not isinstance(a, types.Array):
        raise TypingError(f"{fn}: expected a numpy array, got {a}")


@overload(as2d)
def _as2d(a):
    _check_array(a, "as2d")
    if a.ndim == 2:
        return lambda a: a
    if a.ndim == 1:
        return lambda a: a[None, :]
    if a.layout == "C":
        return _rows_cols_view(a)
    raise TypingError(
        f"the numba kernels write in place into 2-D arrays, 1-D arrays or C-contiguous "
        f"arrays; got {a} (use np.ascontiguousarray, or the numpy backend)"
    )


@overload(as2d_in)
def _as2d_in(a):
    _check_array(a, "as2d_in")
    if a.ndim == 2:
        return lambda a: a
    if a.ndim == 1:
        return lambda a: a[None, :]
    if a.layout == "C":
        return _rows_cols_view(a)

    def impl(a):  # a non-contiguous array of rank >= 3: read a copy
        c = np.ascontiguousarray(a)
        rows = 1
        for k in range(c.ndim - 1):
            rows *= c.shape[k]
        return c.reshape(rows, c.shape[c.ndim - 1])

    return impl


@overload(flat)
def _flat(a):
    _check_array(a, "flat")
    if a.ndim == 1:
        return lambda a: a
    if a.layout == "C":
        return lambda a: a.reshape(a.size)
    raise TypingError(
        f"the numba optimizer kernels update 1-D or C-contiguous arrays in place; got {a} "
        "(use np.ascontiguousarray, or the numpy backend)"
    )


@overload(flat_in)
def _flat_in(a):
    _check_array(a, "flat_in")
    if a.ndim == 1:
        return lambda a: a
    if a.layout == "C":
        return lambda a: a.reshape(a.size)
    return lambda a: np.ascontiguousarray(a).reshape(a.size)
