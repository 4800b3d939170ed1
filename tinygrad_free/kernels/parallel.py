"""Running an elementwise kernel on several threads: the optimizer updates.

A training step's optimizer update is one pass over the flat parameter buffer, and Adam's is
bound by the core's divide/square-root unit (about 60 us for the reference network's 134,794
parameters on one core). Split in two, each core updates half: about 35 us. The parallel twin
of a kernel cuts the buffer into ``CHUNK``-element chunks and runs the serial kernel on each
chunk in a ``prange``; the arithmetic per element is unchanged, so the results are bit for bit
the serial kernel's.

When it is used (``threaded``): the buffer has at least the kernel's ``grain`` of elements,
numba's thread count (``numba.set_num_threads``, ``NUMBA_NUM_THREADS``) is above one, and numba's
threading layer is OpenMP or TBB. Its fallback layer, ``workqueue``, takes about 130 us to start a
parallel region here, more than the work, so with it the serial kernels run. The grain is each
kernel's measured crossover: where its parallel twin starts to shorten a whole training step, not
the kernel alone (``kernels.optim`` gives the measurements). A kernel without a grain of its own
takes ``MIN_PARALLEL``. So a plain loop at numba's default thread count (every core) runs a small
network's update on one thread and a large one's on all, with no tuning by the user.

Which threading layer: numba tries TBB first by default. Unless the user chose
(``NUMBA_THREADING_LAYER`` or ``NUMBA_THREADING_LAYER_PRIORITY``), importing this module puts
OpenMP first: with MKL's OpenMP GEMM threads in the same step, Adam on numba's OpenMP layer took
46-52 us against 77-82 on TBB (measured inside the training loop, batch 64, two threads). A
process forked after it used OpenMP cannot use it again, so a forked child updates serially.

Why the chunk is a slice: the serial kernel, given a slice, loops over ``range(slice.size)``
and vectorises. Given bounds to loop over instead (``range(lo, hi)`` on the whole array), numba
cannot prove the index non-negative, keeps its negative-index wraparound check in the loop and
the loop runs scalar: 4-6x slower, which is what had made earlier parallel updates a loss.
"""

import contextlib
import os

from ._nb import HAVE_NUMBA

#: The default grain: below this many elements a parallel region (a few microseconds to start) is
#: not worth it. Kernels whose elements are cheap declare a larger grain of their own (``threaded``).
MIN_PARALLEL = 32_768
#: Elements per chunk: a multiple of 16, so no 64-byte cache line is written by two threads.
#: numba hands each thread an equal run of consecutive chunks (its static schedule), so a
#: thread updates one contiguous part of the buffer; 32 KB chunks keep the runs within one
#: chunk of each other. (The thread count cannot be read inside the kernel without losing
#: numba's on-disk cache, so the chunks do not depend on it.)
CHUNK = 8192
#: Threading layers fast enough to start a region per optimizer step.
GOOD_LAYERS = ("omp", "tbb")

NJIT_PARALLEL = dict(cache=True, error_model="numpy", parallel=True)

if HAVE_NUMBA:
    import numba
    from numba import njit, prange
    from numba.core import config as _numba_config

    if not (os.environ.get("NUMBA_THREADING_LAYER") or os.environ.get("NUMBA_THREADING_LAYER_PRIORITY")):
        _numba_config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
else:  # numba is optional; nothing here runs without it
    from ._nb import njit

    numba = None
    prange = range

_layer_ok = None  # None: not known until numba has started its threads


@njit(cache=True)
def n_chunks(n):
    """How many ``CHUNK``-element chunks cover ``n`` elements."""
    return -(-n // CHUNK)


@njit(cache=True)
def chunk(n, c):
    """Bounds ``(lo, hi)`` of chunk ``c`` over ``range(n)``."""
    lo = c * CHUNK
    return lo, min(lo + CHUNK, n)


def layer_ok():
    """True when numba's threading layer can run an optimizer step in parallel profitably.

    Numba picks its layer when it first starts threads; until then this starts them (with an
    empty region) to find out. The answer is kept for the process.
    """
    global _layer_ok
    if _layer_ok is None:
        if not HAVE_NUMBA:
            _layer_ok = False
        else:
            try:
                numba.threading_layer()
            except ValueError:  # no thread started yet
                _start_threads()
            _layer_ok = numba.threading_layer() in GOOD_LAYERS
    return _layer_ok


@njit(**NJIT_PARALLEL)
def _noop(x):
    for i in prange(x.shape[0]):
        x[i] = i


def _start_threads():
    import numpy as np

    _noop(np.zeros(2, np.int64))


def use_parallel(size, grain=None):
    """Whether a kernel over ``size`` elements should take its parallel twin now: at least ``grain``
    elements (``MIN_PARALLEL`` when None), several numba threads, a fast threading layer."""
    if size < (MIN_PARALLEL if grain is None else grain):
        return False
    return HAVE_NUMBA and numba.get_num_threads() > 1 and layer_ok()


def thread_count():
    """numba's thread count now (1 without numba): how many parts a kernel that splits its work
    by threads cuts it into."""
    return numba.get_num_threads() if HAVE_NUMBA else 1


def _after_fork_in_child():
    # GNU OpenMP cannot start a parallel region in a child forked after the parent used it
    # (numba terminates the child with "fork() called from a process already using GNU
    # OpenMP"); such a child (a multiprocessing "fork" worker, say) updates serially.
    global _layer_ok
    if _layer_ok and numba.threading_layer() == "omp":
        _layer_ok = False


if HAVE_NUMBA and hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def threaded(serial, parallel, grain=None):
    """A kernel that runs ``parallel`` when ``use_parallel(w.size, grain)`` (``w``: the first
    argument), else ``serial``. Both take the same arguments and compute the same result.
    ``grain``: the kernel's measured crossover in elements (``MIN_PARALLEL`` when None)."""
    if not HAVE_NUMBA:
        return serial
    grain = MIN_PARALLEL if grain is None else grain

    def kernel(w, *args):
        return (parallel if use_parallel(w.size, grain) else serial)(w, *args)

    kernel.__name__ = serial.__name__
    kernel.__qualname__ = serial.__qualname__
    kernel.__doc__ = serial.__doc__
    kernel.serial, kernel.parallel = serial, parallel
    kernel.grain = grain
    return kernel


@contextlib.contextmanager
def num_threads(n):
    """Run a block with numba's thread count set to ``n`` (capped at ``NUMBA_NUM_THREADS``)."""
    if not HAVE_NUMBA:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), _numba_config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)
