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


def warmup(dtypes=(np.float32, np.float64), files=None, jobs=1):
    """Compile (or load from numba's on-disk cache) the numba kernels for the argument types the
    library passes (each kernel file's ``warmup_case``); returns the seconds taken. ``files``:
    only the kernels of these files of ``kernels/`` (``"dense"``, ``"conv"``, ...; a layer's
    ``kernel_files``), None for all. Other types (another label dtype, non-contiguous arrays, ...)
    compile on their first call.

    ``jobs``: compile in this many fresh Python processes at once, each taking whole files (the
    costliest first), then load what they cached here. A cold compile of every file is about ten
    minutes of one core, nearly all of it numba's and LLVM's, on one thread: ``jobs=os.cpu_count()``
    divides it among the cores (the test script does this before the suite). With numba's cache
    unavailable the processes' work is lost and this process compiles again."""
    if not HAVE_NUMBA:
        raise RuntimeError("kernels.warmup: numba is not installed")
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise ValueError(f"kernels.warmup: jobs must be a positive integer (processes compiling at once), got {jobs!r}")
    known = {_file(case) for case in WARMUP_CASES}
    wanted = known if files is None else set(files)
    unknown = (
        wanted - known - {"approx", "blas", "gelu", "parallel", "recurrent", "winograd", "winograd_tiles"}
    )  # helpers with no case of their own
    if unknown:
        raise ValueError(f"kernels.warmup: no kernel file(s) {sorted(unknown)}; the files are {sorted(known)}")
    start = time.perf_counter()
    if jobs > 1:
        _compile_in_processes(sorted(wanted & known), [np.dtype(d).name for d in dtypes], int(jobs))
    for dtype in dtypes:
        for case in WARMUP_CASES:
            if _file(case) in wanted:
                case(np.dtype(dtype))
    return time.perf_counter() - start


#: Cold-compile seconds of some files' float32 and float64 cases (AMD EPYC, one core each, two
#: files at once), heaviest first; others count 5. Only which process takes which file, costliest
#: first, depends on them.
_COMPILE_SECONDS = {
    "conv": (67, 34),
    "dense": (29, 18),
    "lstm": (27, 16),
    "linear": (33, 9),
    "rnn": (26, 15),
    "conv_pool": (26, 14),
    "gru": (24, 14),
    "dense_parts": (48, 0),
    "attention": (15, 8),
}


def _compile_in_processes(files, dtypes, jobs):
    """Warm ``files`` x ``dtypes`` in ``jobs`` new processes at once: each task goes to the process
    with the least work so far, costliest first (their caches then load in the caller)."""
    import os
    import subprocess
    import sys
    import tempfile

    def cost(task):
        f32, f64 = _COMPILE_SECONDS.get(task[0], (5, 5))
        return f32 if task[1] == "float32" else f64

    tasks = sorted(((f, d) for f in files for d in dtypes), key=cost, reverse=True)
    shares = [[] for _ in range(min(jobs, len(tasks)))]
    for task in tasks:
        min(shares, key=lambda share: sum(map(cost, share))).append(task)
    # A process started with -c (not multiprocessing's spawn) never re-imports the caller's
    # __main__; the package is found where this one was imported from.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    code = "import sys; from tinygrad_free import kernels; kernels._warm_tasks(sys.argv[1:])"
    # stderr to files, not pipes: a process whose warnings filled a pipe would wait until the
    # processes before it finished and were read.
    procs = []
    for share in shares:
        err = tempfile.TemporaryFile(mode="w+")
        args = [sys.executable, "-c", code, *(f"{f}:{d}" for f, d in share)]
        procs.append((share, err, subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)))
    failed = []
    for share, err, proc in procs:
        with err:
            proc.wait()
            err.seek(0)
            if proc.returncode != 0:
                tail = err.read().strip()[-2000:]
                failed.append(f"{', '.join(f for f, _ in share)}: exit {proc.returncode}: {tail}")
    if failed:
        raise RuntimeError("kernels.warmup: a compiling process failed: " + " | ".join(failed))


def _warm_tasks(tasks):
    """``warmup`` of "file:dtype" tasks, in the order given (a ``_compile_in_processes`` process)."""
    for task in tasks:
        f, d = task.split(":")
        warmup(dtypes=(np.dtype(d),), files=(f,))


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
