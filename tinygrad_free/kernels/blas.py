"""BLAS matrix products called from inside numba kernels.

A dense layer's product, bias and activation (and its three backward products) then run as
one jitted call each, with no Python between them; and the library picks the fastest GEMM
this machine has rather than only numpy's:

* ``mkl``: Intel MKL's ``cblas_?gemm_64``, from the ``mkl`` wheel (``pip install
  tinygrad_free[mkl]``). On the project's CPUs its float32 GEMM is 1.5-2x numpy's OpenBLAS at
  the reference network's shapes (OpenBLAS is held to its AVX2 kernel there by
  ``OPENBLAS_CORETYPE``; MKL dispatches on the CPU itself). It is also what PyTorch uses.
* ``openblas``: the OpenBLAS that numpy ships (``scipy_cblas_?gemm64_``): always present with a
  numpy wheel, so the fused kernels work without MKL.
* ``none``: no usable symbol (e.g. a numpy linked to another BLAS); the numba backend then
  calls numpy's ``@`` from Python around its kernels, as the NumPy backend does.

**Narrow products** (2 to ``NARROW_COLUMNS`` = 15 columns in the result, at least
``NARROW_MIN_WORK`` multiply-adds: a classifier's last layer, 128 -> 10) go to numpy's OpenBLAS
whichever the provider, in blocks of rows of at most ``NARROW_BLOCK_WORK`` = 2^18 multiply-adds
each. MKL on the AMD EPYC (Zen 4) machines takes 2.5-9x OpenBLAS's time there (float32: 64 x 128
@ 128 x 10 in 9.7 against 3.4 us, 128 x 1600 @ 1600 x 10 in 250 against 91; with 16 or 32
columns the two are even). OpenBLAS computes a product of at most 2^18 multiply-adds on the
calling thread whatever its thread count (its own threshold), so the blocks keep every product on
one thread, and the cut depends on the shapes alone. Without numpy's OpenBLAS these blocks go to
the provider.

``TINYGRAD_FREE_BLAS=auto|mkl|openblas|none`` chooses (``auto``, the default: mkl when
installed, else openblas). The choice is made once per process, at import: the kernels call a
fixed symbol name (``tinygrad_free_sgemm``/``_dgemm``) that is bound here to the provider's
function, so numba's on-disk cache stays valid whichever provider a later process binds.

Both providers are ILP64 CBLAS (64-bit integer dimensions). MKL's threads follow
threadpoolctl like OpenBLAS's (``Trainer(threads=...)``, ``threadpool_limits``).

**Every GEMM the library makes runs on one BLAS thread**, so the thread count changes no result.
Both MKL and OpenBLAS split the summation over k between their threads for some shapes
(measured on a Xeon with AVX-512: 16 x 784 @ 784 x 128 gives other bits on two threads than on
one, in float32 and float64), so a product computed on two BLAS threads is not the product
computed on one. The library's own threads (numba's) share out whole parts of its work instead,
parts that depend on the shapes only (see ``conv``, ``parallel``). ``gemm`` holds each call to
its calling thread with MKL's ``mkl_set_num_threads_local(1)`` (``threads_local``; a per-thread
setting, a few nanoseconds, restored after the call), which also keeps MKL's own pool from
putting a second team on cores numba's threads are using. OpenBLAS has no per-thread setting,
so the Python functions that multiply through numpy's OpenBLAS (the NumPy kernels, and the numba
kernels when the GEMM is not MKL's) hold its process-wide count at one for the call
(``on_one_thread``; about a microsecond). ``LOCAL_THREADS`` says whether MKL's per-thread call is
bound (then GEMMs may run on several numba threads at once).

Not MKL's "strict CNR" mode (``mkl_cbwr_set(MKL_CBWR_AVX2 | MKL_CBWR_STRICT)``), which promises
the same bits from ?gemm on any thread count: MKL refuses it on the AMD EPYC machines (2026.2:
``MKL_CBWR_ERR_UNSUPPORTED_BRANCH``, -3, for the AVX2 and AVX-512 branches alike). On Intel CPUs
it may be granted; it was not measured there (it would let one product use both cores).
"""

import ctypes
import glob
import os
import sys

import numpy as np

from ._nb import HAVE_NUMBA, NJIT, njit

PROVIDERS = ("auto", "mkl", "openblas", "none")
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
_SYMBOLS = {"sgemm": "tinygrad_free_sgemm", "dgemm": "tinygrad_free_dgemm"}
_NARROW_SYMBOLS = {"sgemm": "tinygrad_free_sgemm_narrow", "dgemm": "tinygrad_free_dgemm_narrow"}
#: Products with 2 to NARROW_COLUMNS result columns and at least NARROW_MIN_WORK multiply-adds go
#: to numpy's OpenBLAS in row blocks of at most NARROW_BLOCK_WORK multiply-adds (module docstring).
NARROW_COLUMNS, NARROW_MIN_WORK, NARROW_BLOCK_WORK = 15, 8192, 1 << 18
_THREADS_LOCAL = "tinygrad_free_blas_threads_local"


def _mkl_library():
    """libmkl_rt from the mkl wheel (installed into <prefix>/lib), or None."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        for path in sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")), key=len):
            try:
                lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            if hasattr(lib, "cblas_sgemm_64") and hasattr(lib, "cblas_dgemm_64"):
                return path, lib, ("cblas_sgemm_64", "cblas_dgemm_64")
    return None


def _numpy_openblas():
    """The ILP64 OpenBLAS bundled with numpy (numpy.libs/libscipy_openblas64_*.so), or None."""
    root = os.path.dirname(os.path.dirname(np.__file__))
    for path in sorted(
        glob.glob(os.path.join(root, "numpy.libs", "libscipy_openblas64_*.so*"))
        + glob.glob(os.path.join(root, "numpy", ".dylibs", "libscipy_openblas64_*"))
    ):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for names in (("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"), ("cblas_sgemm64_", "cblas_dgemm64_")):
            if all(hasattr(lib, n) for n in names):
                return path, lib, names
    return None


def _select(requested):
    requested = (requested or "auto").strip().lower()
    if requested not in PROVIDERS:
        raise ValueError(f"TINYGRAD_FREE_BLAS={requested!r} is not one of {list(PROVIDERS)}")
    if requested == "none" or not HAVE_NUMBA:
        return "none", None, None, None
    finders = {"mkl": [_mkl_library], "openblas": [_numpy_openblas], "auto": [_mkl_library, _numpy_openblas]}[requested]
    for find in finders:
        found = find()
        if found is not None:
            path, lib, names = found
            return ("mkl" if find is _mkl_library else "openblas"), path, lib, names
    if requested != "auto":
        raise RuntimeError(
            f"TINYGRAD_FREE_BLAS={requested}: no {requested} library found "
            + ("(pip install mkl)" if requested == "mkl" else "in numpy's bundled libraries")
        )
    return "none", None, None, None


PROVIDER, LIBRARY, _lib, _names = _select(os.environ.get("TINYGRAD_FREE_BLAS"))
NARROW_LIBRARY = None  # the library of the narrow products, once bound below
AVAILABLE = PROVIDER != "none"
#: Whether ``threads_local`` really limits the calling thread's GEMMs (MKL), so that GEMMs may
#: be called from several numba threads at once.
LOCAL_THREADS = PROVIDER == "mkl" and hasattr(_lib, "MKL_Set_Num_Threads_Local")

if AVAILABLE:
    import llvmlite.binding as llvm
    from numba import types

    for alias, name in zip(_SYMBOLS.values(), _names):
        llvm.add_symbol(alias, ctypes.cast(getattr(_lib, name), ctypes.c_void_p).value)
    # The narrow products' symbols: numpy's OpenBLAS when found (it is the provider itself when
    # the provider is openblas), else the provider's.
    _narrow_found = _numpy_openblas() if PROVIDER == "mkl" else None
    NARROW_LIBRARY, _narrow_lib, _narrow_names = _narrow_found or (LIBRARY, _lib, _names)
    for alias, name in zip(_NARROW_SYMBOLS.values(), _narrow_names):
        llvm.add_symbol(alias, ctypes.cast(getattr(_narrow_lib, name), ctypes.c_void_p).value)
    _i32, _i64, _ptr = types.int32, types.int64, types.uintp

    def _cblas(name, real):
        # void cblas_?gemm(layout, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        # the enums are C ints, the dimensions 64-bit (ILP64), the arrays raw addresses.
        return types.ExternalFunction(
            name, types.void(_i32, _i32, _i32, _i64, _i64, _i64, real, _ptr, _i64, _ptr, _i64, real, _ptr, _i64)
        )

    _sgemm = _cblas(_SYMBOLS["sgemm"], types.float32)
    _dgemm = _cblas(_SYMBOLS["dgemm"], types.float64)
    _sgemm_narrow = _cblas(_NARROW_SYMBOLS["sgemm"], types.float32)
    _dgemm_narrow = _cblas(_NARROW_SYMBOLS["dgemm"], types.float64)

    # The kernels name one symbol whatever the provider (numba's cache stays valid); without
    # MKL it is bound to a C function with no effect, libc's int abs(int) (``gemm`` calls it
    # around every product, so it must not be a Python callback, which would take the GIL).
    _threads_local_fn = _lib.MKL_Set_Num_Threads_Local if LOCAL_THREADS else ctypes.CDLL(None).abs
    llvm.add_symbol(_THREADS_LOCAL, ctypes.cast(_threads_local_fn, ctypes.c_void_p).value)
    _threads_local = types.ExternalFunction(_THREADS_LOCAL, types.int32(types.int32))


_openblas_threads = None  # numpy's OpenBLAS (get, set) thread-count functions, once found


def _numpy_openblas_threads():
    """``(get, set)`` of the thread count of the OpenBLAS inside numpy's wheel, or None."""
    global _openblas_threads
    if _openblas_threads is None:
        _openblas_threads = ()
        found = _numpy_openblas()
        if found is not None:
            lib = found[1]
            for prefix in ("scipy_openblas", "openblas"):
                for suffix in ("64_", ""):
                    get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                    put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                    if get is not None and put is not None:
                        get.restype, get.argtypes = ctypes.c_int, []
                        put.restype, put.argtypes = None, [ctypes.c_int]
                        _openblas_threads = (get, put)
                        break
                if _openblas_threads:
                    break
    return _openblas_threads or None


def on_one_thread(fn):
    """Decorate a Python function that multiplies through numpy's OpenBLAS (``np.matmul``,
    ``@``, ``tensordot``, or this module's GEMM when it is bound to OpenBLAS): each call runs with
    OpenBLAS held to one thread, the caller's count put back after it (see the module
    docstring). Without numpy's OpenBLAS found it returns ``fn`` unchanged."""
    import functools

    pair = _numpy_openblas_threads()
    if pair is None:
        return fn
    get, put = pair

    @functools.wraps(fn)
    def held(*args, **kwargs):
        before = get()
        if before == 1:
            return fn(*args, **kwargs)
        put(1)
        try:
            return fn(*args, **kwargs)
        finally:
            put(before)

    return held


#: ``on_one_thread`` for the numba kernels' Python wrappers: needed only when their GEMM is not
#: MKL's (which ``gemm`` holds per thread itself).
on_one_thread_unless_mkl = on_one_thread if PROVIDER != "mkl" else (lambda fn: fn)


def describe():
    """One line for logs and benchmark reports: which GEMM the numba kernels call."""
    if LIBRARY is None:
        return PROVIDER
    line = f"{PROVIDER} ({os.path.basename(LIBRARY)})"
    if NARROW_LIBRARY != LIBRARY:
        line += f"; narrow products: openblas ({os.path.basename(NARROW_LIBRARY)})"
    return line


def threads_local(n):
    """Limit the calling thread's BLAS calls to ``n`` threads (0: back to the process's count);
    returns the previous setting. Numba-only; a no-op unless ``LOCAL_THREADS``."""
    raise NotImplementedError("numba-only helper")


if AVAILABLE:
    from numba.extending import overload

    @overload(threads_local)
    def _threads_local_typed(n):
        def impl(n):
            return _threads_local(np.int32(n))

        return impl


@njit(**NJIT)
def _layout(a):
    """(transpose flag, leading dimension) under which BLAS reads ``a`` in place, or (0, 0)
    when neither of its strides is unit (the caller copies it then)."""
    rows, cols = a.shape
    item = a.itemsize
    s0, s1 = a.strides
    # A dimension of length 1 may carry any stride; describe the array by the other one.
    if (s1 == item or cols == 1) and (rows == 1 or (s0 % item == 0 and s0 // item >= cols)):
        return NO_TRANS, max(cols, 1) if rows == 1 else s0 // item
    if (s0 == item or rows == 1) and (cols == 1 or (s1 % item == 0 and s1 // item >= rows)):
        return TRANS, max(rows, 1) if cols == 1 else s1 // item
    return 0, 0


def _xgemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc):
    raise NotImplementedError("numba-only helper")


if AVAILABLE:
    from numba.core.errors import TypingError
    from numba.extending import overload

    @overload(_xgemm)
    def _xgemm_typed(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc):
        # Picks sgemm or dgemm when the kernel is typed: no dtype test at run time.
        if not (a.dtype == b.dtype == c.dtype) or c.dtype not in (types.float32, types.float64):
            raise TypingError(
                f"gemm: a, b and c must all be float32 or all float64, got {a.dtype}, {b.dtype}, {c.dtype}"
            )
        f32 = c.dtype == types.float32
        fn, narrow, real = (_sgemm, _sgemm_narrow, np.float32) if f32 else (_dgemm, _dgemm_narrow, np.float64)

        def impl(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc):
            if 2 <= n <= NARROW_COLUMNS and m * n * k >= NARROW_MIN_WORK and n * k <= NARROW_BLOCK_WORK:
                # Row blocks of at most NARROW_BLOCK_WORK multiply-adds: block lo starts lo rows
                # into a (lo * lda elements; lo elements when a is read transposed) and into c.
                rows = NARROW_BLOCK_WORK // (n * k)
                step = (lda if ta == NO_TRANS else 1) * a.itemsize
                for lo in range(0, m, rows):
                    narrow(
                        ROW_MAJOR,
                        ta,
                        tb,
                        min(rows, m - lo),
                        n,
                        k,
                        real(1.0),
                        a.ctypes.data + lo * step,
                        lda,
                        b.ctypes.data,
                        ldb,
                        real(beta),
                        c.ctypes.data + lo * ldc * c.itemsize,
                        ldc,
                    )
                return
            fn(
                ROW_MAJOR,
                ta,
                tb,
                m,
                n,
                k,
                real(1.0),
                a.ctypes.data,
                lda,
                b.ctypes.data,
                ldb,
                real(beta),
                c.ctypes.data,
                ldc,
            )

        return impl


@njit(**NJIT)
def gemm(a, b, c, beta):
    """c <- a @ b + beta * c, in place (beta 0: c's old values are ignored, even NaN), on the
    calling thread alone (MKL; see the module docstring).

    ``a`` and ``b`` may be any 2-D views (transposes read in place; arrays with no unit stride
    are copied first); ``c`` must be a row-major 2-D array with unit column stride, all of one
    float dtype. Numba-only: call it from jitted code.
    """
    m, k = a.shape
    n = c.shape[1]
    if b.shape[0] != k or c.shape[0] != m or b.shape[1] != n:
        raise ValueError("gemm: shapes do not match (a: (m, k), b: (k, n), c: (m, n))")
    if m == 0 or n == 0:
        return
    if n > 1 and c.strides[1] != c.itemsize:
        raise ValueError("gemm: c must have unit column stride")
    if k == 0:
        for i in range(m):
            for j in range(n):
                c[i, j] = c[i, j] * beta if beta != 0 else 0
        return
    # BLAS reads an array with unit row stride as the row-major transpose of its memory, so
    # "transpose" here reads the operand itself in place.
    ta, lda = _layout(a)
    if ta == 0:
        a = np.ascontiguousarray(a)
        ta, lda = NO_TRANS, k
    tb, ldb = _layout(b)
    if tb == 0:
        b = np.ascontiguousarray(b)
        tb, ldb = NO_TRANS, n
    # One BLAS thread, so the thread count changes no bit (see the module docstring).
    before = threads_local(1)
    _xgemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, c.strides[0] // c.itemsize)
    threads_local(before)
