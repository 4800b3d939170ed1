"""How many threads the training steps use: chosen by timing the steps, not by a fixed rule.

Two threads help a step only when its products and its optimizer update are big enough to
split, and they hurt badly when another process is busy on the second core: the threads of
BLAS's and numba's OpenMP pools wait for each other at every parallel region, and one that has
lost its core stalls the step (steps 2-10x slower). Which count wins depends on the machine, the
batch, the network and what else runs, so :class:`StepThreads` measures it:

1. probe: run a block of steps at each candidate count (1 and the threads available), twice,
   alternating, and keep the count whose best block had the shortest step;
2. watch: time every block at the kept count; when a block is slower than the probe's by more
   than ``tolerance`` twice in a row (another process took the core, or left it), probe again;
   and probe again anyway after ``reprobe_blocks`` blocks, so a count that lost to a busy
   machine gets another chance once it is idle.

The thread count changes no result: numba's parallel optimizer updates are bit for bit the
serial ones, and the BLAS products of these shapes are the same on one thread or two (the tests
hold a run on each equal). A hand-written loop gets the same policy::

    with threads.autotune() as tick:
        for xb, yb in batches:
            ...                        # forward, backward, step
            tick()                     # one call per step
"""

import contextlib
import os
import time

from .kernels import parallel as kernels_parallel

#: The variables that cap a process's BLAS, OpenMP and numba threads (listed here only).
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def available_threads() -> int:
    """The CPUs this process may run on (its affinity), capped by any thread variable that is
    set (``OMP_NUM_THREADS=1`` and the like: the user's, or a sweep worker's); at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    for var in THREAD_VARIABLES:
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            n = min(n, int(value))
    return max(1, n)


def _set(n):
    """Run BLAS and numba on ``n`` threads; returns the threadpoolctl limiter to undo it."""
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(limits=n, user_api="blas")
    if kernels_parallel.numba is not None:
        kernels_parallel.numba.set_num_threads(min(n, kernels_parallel.numba.config.NUMBA_NUM_THREADS))
    return limiter


class StepThreads:
    """Chooses the thread count of a loop of similar steps by timing blocks of them.

    Parameters
    ----------
    candidates : sequence of int, optional
        Thread counts to try; default ``(1, available_threads())`` (just 1 on one CPU).
    block : int
        Steps per timed block (the first step after a switch is not timed).
    tolerance : float
        A block this much slower than the kept count's probe time counts as a drift.
    reprobe_blocks : int
        Probe again after this many blocks even without a drift.
    clock : callable
        The timer (``time.perf_counter``); tests pass a fake one.

    Call :meth:`tick` once after every step; :meth:`close` (or leaving ``with``) restores the
    thread counts that were in effect before.
    """

    def __init__(self, candidates=None, block=16, tolerance=0.25, reprobe_blocks=200, clock=time.perf_counter):
        if candidates is None:
            n = available_threads()
            candidates = (1, n) if n > 1 else (1,)
        self.candidates = tuple(dict.fromkeys(int(c) for c in candidates))
        if not self.candidates or min(self.candidates) < 1:
            raise ValueError(f"candidates must be positive thread counts, got {candidates!r}")
        if block < 2:
            raise ValueError(f"block must be at least 2 steps, got {block!r}")
        self.block, self.tolerance, self.reprobe_blocks, self.clock = block, tolerance, reprobe_blocks, clock
        self.current = None  # the count in effect
        self.chosen = None  # the count the last probe kept
        self.history = []  # (event, count, seconds per step), for reports and tests
        self._limiter = None
        self._plan = []  # counts still to probe
        self._probe = {}  # count -> best seconds per step in this probe
        self._ref = None
        self._slow = 0
        self._blocks_since_probe = 0
        numba = kernels_parallel.numba
        self._numba_before = numba.get_num_threads() if numba is not None else None
        self._start_probe()

    # --- the loop ---------------------------------------------------------------------------
    def tick(self):
        """Mark the end of one step."""
        now = self.clock()
        self._steps += 1
        if self._steps == 1:  # the first step after a switch warms the pool: not timed
            self._t0 = now
            return
        if self._steps <= self.block:
            return
        per_step = (now - self._t0) / (self._steps - 1)
        self._steps = 0
        if self._plan:
            self._probed(per_step)
        else:
            self._watched(per_step)

    def _start_probe(self):
        if len(self.candidates) == 1:
            self._switch(self.candidates[0])
            self.chosen, self._plan = self.candidates[0], []
            self._steps = 0
            return
        self._plan = list(self.candidates) * 2
        self._probe = {}
        self._switch(self._plan[0])

    def _probed(self, per_step):
        count = self._plan.pop(0)
        self._probe[count] = min(per_step, self._probe.get(count, float("inf")))
        self.history.append(("probe", count, per_step))
        if self._plan:
            self._switch(self._plan[0])
            return
        self.chosen = min(self._probe, key=self._probe.get)
        self._ref = self._probe[self.chosen]
        self._slow = self._blocks_since_probe = 0
        self.history.append(("chose", self.chosen, self._ref))
        self._switch(self.chosen)

    def _watched(self, per_step):
        self.history.append(("step", self.current, per_step))
        self._blocks_since_probe += 1
        if self._ref is None:
            return
        self._slow = self._slow + 1 if per_step > self._ref * (1 + self.tolerance) else 0
        if self._slow >= 2 or self._blocks_since_probe >= self.reprobe_blocks:
            self._start_probe()
        elif per_step < self._ref:
            self._ref = per_step

    def _switch(self, count):
        self._steps = 0
        if count == self.current:
            return
        if self._limiter is None:
            self._limiter = _set(count)  # remembers the counts before the first switch
        else:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=count, user_api="blas")
            if kernels_parallel.numba is not None:
                kernels_parallel.numba.set_num_threads(min(count, kernels_parallel.numba.config.NUMBA_NUM_THREADS))
        self.current = count

    # --- lifetime ---------------------------------------------------------------------------
    def close(self):
        """Restore the thread counts in effect before this object changed them."""
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None
        if kernels_parallel.numba is not None and self._numba_before is not None:
            kernels_parallel.numba.set_num_threads(self._numba_before)
        self.current = None

    def __enter__(self):
        return self.tick

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def autotune(**options):
    """``with autotune() as tick:`` ... ``tick()`` after every step (see :class:`StepThreads`)."""
    policy = StepThreads(**options)
    try:
        yield policy.tick
    finally:
        policy.close()
