"""Hot-path kernels, each with a plain NumPy version and a numba version of the same math.

Each kernel file registers its kernels (name, NumPy function, numba twin) and the calls that
compile them (``kernels/registry.py``); this package gathers them into ``NUMPY`` and ``NUMBA``,
namespaces with the same function names, one of which ``backend.ops()`` returns. Matrix
products stay in BLAS: numpy's ``@`` in the NumPy kernels, and in the numba ones the same (or
MKL's) GEMM called from inside the jitted code (see ``blas``), on one BLAS thread each.

The numba kernels compile on first use (and are cached on disk, so later processes only load
them; the cache is salted with every kernel file's source, ``_nb``); ``warmup()`` compiles
them all up front and returns how long that took.
"""

import time
from types import SimpleNamespace

import numpy as np

from . import (
    approx,
    attention,
    batchnorm,
    batchnorm_pool,
    blas,
    conv,
    conv_activation,
    conv_blocks,
    conv_pool,
    dense,
    dense_parts,
    dropout,
    embedding,
    gelu,
    gru,
    im2col,
    layernorm,
    linear,
    loss,
    lstm,
    optim,
    parallel,
    pool,
    recurrent,
    rnn,
    shift,
    winograd,
    winograd_tiles,
)
from ._nb import HAVE_NUMBA
from .registry import KERNELS as _TABLE
from .registry import WARMUP_CASES

NUMPY = SimpleNamespace(**{name: k.numpy for name, k in _TABLE.items()})
# Without numba installed these are stubs that raise (backend.set_backend refuses "numba" then).
NUMBA = SimpleNamespace(**{name: k.numba for name, k in _TABLE.items()})

KERNELS = tuple(_TABLE.names())


def warmup(dtypes=(np.float32, np.float64), files=None):
    """Compile (or load from numba's on-disk cache) the numba kernels for the argument types the
    library passes (each kernel file's ``warmup_case``); returns the seconds taken. ``files``:
    only the kernels of these files of ``kernels/`` (``"dense"``, ``"conv"``, ...; a layer's
    ``kernel_files``), None for all. Other types (another label dtype, non-contiguous arrays, ...)
    compile on their first call."""
    if not HAVE_NUMBA:
        raise RuntimeError("kernels.warmup: numba is not installed")
    known = {_file(case) for case in WARMUP_CASES}
    wanted = known if files is None else set(files)
    unknown = (
        wanted - known - {"approx", "blas", "gelu", "parallel", "recurrent", "winograd", "winograd_tiles"}
    )  # helpers with no case of their own
    if unknown:
        raise ValueError(f"kernels.warmup: no kernel file(s) {sorted(unknown)}; the files are {sorted(known)}")
    start = time.perf_counter()
    for dtype in dtypes:
        for case in WARMUP_CASES:
            if _file(case) in wanted:
                case(np.dtype(dtype))
    return time.perf_counter() - start


def _file(case):
    return case.__module__.rsplit(".", 1)[-1]


__all__ = [
    "NUMPY",
    "NUMBA",
    "KERNELS",
    "WARMUP_CASES",
    "HAVE_NUMBA",
    "warmup",
    "approx",
    "attention",
    "batchnorm",
    "batchnorm_pool",
    "blas",
    "conv",
    "conv_activation",
    "conv_blocks",
    "conv_pool",
    "dense",
    "dense_parts",
    "dropout",
    "embedding",
    "gelu",
    "gru",
    "im2col",
    "layernorm",
    "linear",
    "loss",
    "lstm",
    "optim",
    "parallel",
    "pool",
    "recurrent",
    "rnn",
    "shift",
    "winograd",
    "winograd_tiles",
]
