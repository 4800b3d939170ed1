"""How many threads the training steps use: chosen by timing the steps, not by a fixed rule.

Two threads help a step only when its products, convolutions and optimizer update are big
enough to split, and they hurt badly when another process (or the host, on a shared virtual
machine) takes the second core: the threads of BLAS's and numba's OpenMP pools wait for each
other at every parallel region, and one that has lost its core stalls the step (steps 2-10x
slower). Which count wins depends on the machine, the batch, the network and what else runs,
so :class:`StepThreads` measures it, as a two-armed bandit whose arms drift:

1. probe: blocks of steps at each candidate count (1 and the threads available), three each,
   alternating; keep the count with the lowest median step time;
2. run at that count, and every few blocks run one block at another count ("explore"). Its
   median step time divided by the mean of the blocks just before and after it, at the kept
   count, is one paired ratio: measured within a fraction of a second, so the machine's slow
   drifts cancel. Switch when the median of the last five ratios (at least three) says the
   other count is faster by more than ``hysteresis``; a ratio below 0.75 (a collapse, or
   noise) asks again at once, so a collapse is left within a few blocks;
3. explore less often the worse the other count looked: one block in every ``gap / budget``
   (gap: how much slower it was), so exploring costs about ``budget`` of the run's time (1%)
   and a count that lost on a busy machine still gets another chance once it is idle. A kept
   count that slows down by more than ``tolerance`` two blocks in a row explores at once.

A block is ``block`` steps, or fewer for long steps (``block_seconds``, at least three steps),
and its statistic is the median step: one late step (a page fault, the host's scheduler) does
not move it. The first step after a switch warms the other pool and is not timed. Switching
goes through one ``threadpoolctl`` controller made up front: ``threadpool_limits`` itself
enumerates the loaded libraries on every call (2.7 ms here, more than a step at batch 64).

The thread count changes no result: numba's parallel optimizer updates are bit for bit the
serial ones, the threaded convolutions split the batch into parts that do not depend on the
thread count, and every matrix product runs on one BLAS thread (``kernels.blas``; the tests
hold a run on each count equal). :class:`ThreadCounts` is the one place that sets the counts
(BLAS's and numba's together). A hand-written loop without it runs at numba's default count
(every core), each kernel choosing from its own work whether to use the other threads (the
grains of ``kernels.parallel`` and ``kernels.optim``); it gets the Trainer's policy, which also
sees what sizes cannot (another process taking a core), with::

    with threads.autotune() as tick:
        for xb, yb in batches:
            ...                        # forward, backward, step
            tick()                     # one call per step
"""

import collections
import contextlib
import math
import os
import time

import numpy as np

from .kernels import parallel as kernels_parallel

#: The variables that cap a process's BLAS, OpenMP and numba threads (listed here only).
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


class ThreadCounts:
    """Sets BLAS's (threadpoolctl) and numba's thread counts together, and puts back the counts
    from before. One threadpoolctl controller, made at the first change: switching through it
    costs ~30 us, where ``threadpool_limits`` enumerates the loaded libraries each time (2.7 ms)."""

    def __init__(self) -> None:
        numba = kernels_parallel.numba
        self._numba_before = numba.get_num_threads() if numba is not None else None
        self._blas = None
        self._limiter = None  # remembers the BLAS counts from before, for restore()
        self.current = None

    def set(self, count: int) -> None:
        if count == self.current:
            return
        if self._blas is None:
            from threadpoolctl import ThreadpoolController

            self._blas = ThreadpoolController().select(user_api="blas")
            self._limiter = self._blas.limit(limits=count)
        else:
            self._blas.limit(limits=count)
        numba = kernels_parallel.numba
        if numba is not None:
            numba.set_num_threads(max(1, min(int(count), numba.config.NUMBA_NUM_THREADS)))
        self.current = count

    def restore(self) -> None:
        """The counts in effect before the first ``set``."""
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = self._blas = None
        numba = kernels_parallel.numba
        if numba is not None and self._numba_before is not None:
            numba.set_num_threads(self._numba_before)
        self.current = None


@contextlib.contextmanager
def limit(count: int):
    """Run a block with BLAS and numba at ``count`` threads (``Trainer(threads=n)``)."""
    counts = ThreadCounts()
    counts.set(count)
    try:
        yield
    finally:
        counts.restore()


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


class StepThreads:
    """Chooses the thread count of a loop of similar steps by timing blocks of them.

    Parameters
    ----------
    candidates : sequence of int, optional
        Thread counts to try; default ``(1, available_threads())`` (just 1 on one CPU).
    block : int
        Timed steps per block at most (the first step after a switch is not timed).
    block_seconds : float
        A block also ends once it has lasted this long and timed at least three steps.
    hysteresis : float
        Switch only to a count measured faster than the kept one by more than this fraction.
    budget : float
        The share of the run's time that exploring the other counts may cost.
    tolerance : float
        A kept count whose blocks get this much slower (twice in a row) explores at once.
    clock : callable
        The timer (``time.perf_counter``); tests pass a fake one.

    Notes
    -----
    Call :meth:`tick` once after every step; :meth:`close` (or leaving ``with``) restores the
    thread counts that were in effect before. ``history`` holds the last events as
    ``(event, count, value)``: ``probe`` (a probe block's median step), ``chose`` (the probe's
    pick), ``block`` (a kept count's block), ``explore`` (a paired ratio, other/kept), ``switch``
    (the new count and the ratio that decided it).
    """

    RATIOS = 5  # paired ratios kept per other count
    MIN_INTERVAL, MAX_INTERVAL = 4, 200  # blocks between two explorations

    def __init__(
        self,
        candidates=None,
        block=32,
        block_seconds=0.05,
        hysteresis=0.03,
        budget=0.01,
        tolerance=0.25,
        clock=time.perf_counter,
    ):
        if candidates is None:
            n = available_threads()
            candidates = (1, n) if n > 1 else (1,)
        self.candidates = tuple(dict.fromkeys(int(c) for c in candidates))
        if not self.candidates or min(self.candidates) < 1:
            raise ValueError(f"candidates must be positive thread counts, got {candidates!r}")
        if block < 3:
            raise ValueError(f"block must be at least 3 steps, got {block!r}")
        for name, value in (("block_seconds", block_seconds), ("budget", budget), ("tolerance", tolerance)):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not 0 <= hysteresis < 1:
            raise ValueError(f"hysteresis must be in [0, 1), got {hysteresis!r}")
        self.block, self.block_seconds, self.clock = block, block_seconds, clock
        self.hysteresis, self.budget, self.tolerance = hysteresis, budget, tolerance
        self.current = None  # the count in effect
        self.chosen = None  # the count kept (the one not being explored)
        self.history = collections.deque(maxlen=10_000)
        self._counts = ThreadCounts()
        self._times = []  # this block's step times
        self._last = None  # clock at the previous tick
        self._start = None  # clock when this block's first timed step began
        self._plan = []  # counts still to probe
        self._probe = {}  # count -> its probe blocks' medians
        self._ratios = {}  # other count -> recent log(other / kept) paired ratios
        self._pending = None  # (other count, its block's median, the kept block before it)
        self._kept_last = None  # the kept count's last block median
        self._ref = None  # the kept count's running block median
        self._slow = 0
        self._countdown = 0  # kept blocks until the next exploration
        self._turn = 0  # which other count explores next
        if len(self.candidates) == 1:
            self.chosen = self.candidates[0]
            self._switch(self.chosen)
        else:
            self._plan = list(self.candidates) * 3
            self._switch(self._plan[0])

    # --- the loop ---------------------------------------------------------------------------
    def tick(self):
        """Mark the end of one step."""
        now = self.clock()
        last, self._last = self._last, now
        if last is None:  # the first step after a switch warms the pool: not timed
            self._start = now
            return
        self._times.append(now - last)
        n = len(self._times)
        if n < self.block and (n < 3 or now - self._start < self.block_seconds):
            return
        median = float(np.median(self._times))
        self._times, self._start = [], now
        if self._plan:
            self._probed(median)
        elif len(self.candidates) > 1:
            self._ran(median)

    def _probed(self, median):
        count = self._plan.pop(0)
        self._probe.setdefault(count, []).append(median)
        self.history.append(("probe", count, median))
        if self._plan:
            self._switch(self._plan[0])
            return
        best = {c: float(np.median(m)) for c, m in self._probe.items()}
        self.chosen = min(best, key=best.get)
        # The probe's ratios start each other count's record.
        self._ratios = {c: [math.log(best[c] / best[self.chosen])] for c in self.candidates if c != self.chosen}
        self._keep(best[self.chosen])
        self.history.append(("chose", self.chosen, best[self.chosen]))
        self._switch(self.chosen)

    def _keep(self, median):
        self._ref = self._kept_last = median
        self._slow = 0
        self._countdown = self._interval()

    def _ran(self, median):
        if self.current != self.chosen:  # an exploring block: paired once the next kept one ends
            self._pending = (self.current, median, self._kept_last)
            self._switch(self.chosen)
            return
        self.history.append(("block", self.current, median))
        if self._pending is not None:
            other, other_median, before = self._pending
            self._pending = None
            ratio = other_median / (0.5 * (before + median))
            self.history.append(("explore", other, ratio))
            record = self._ratios.setdefault(other, [])
            record.append(math.log(ratio))
            del record[: -self.RATIOS]
            if len(record) >= 3 and float(np.median(record)) < math.log(1 - self.hysteresis):
                self._switch_to(other, ratio, median)
                return
            if ratio < 0.75:  # a collapse, or noise: ask again at once rather than in a while
                self._countdown = 1
        self._kept_last = median
        self._slow = self._slow + 1 if median > self._ref * (1 + self.tolerance) else 0
        self._ref = 0.75 * self._ref + 0.25 * median
        self._countdown = 0 if self._slow >= 2 else self._countdown - 1
        if self._countdown <= 0:
            others = [c for c in self.candidates if c != self.chosen]
            other = others[self._turn % len(others)]
            self._turn += 1
            self._slow = 0
            self._countdown = self._interval()
            self._switch(other)

    def _switch_to(self, count, ratio, kept_median):
        """Keep ``count`` from now on; the old count's record is the inverse of the new one's."""
        old = self.chosen
        record = self._ratios.pop(count, [])
        self._ratios[old] = [-r for r in record]
        self.chosen = count
        self.history.append(("switch", count, ratio))
        self._keep(kept_median * ratio)
        self._switch(count)

    def _interval(self):
        """Kept blocks before the next exploration: ``gap / budget``, within the bounds."""
        records = [r for c, r in self._ratios.items() if c != self.chosen and r]
        if not records:
            return self.MIN_INTERVAL
        gap = min(math.exp(float(np.median(r))) for r in records) - 1
        return int(min(self.MAX_INTERVAL, max(self.MIN_INTERVAL, math.ceil(gap / self.budget))))

    def _switch(self, count):
        self._times, self._last = [], None
        if count == self.current:
            return
        self._counts.set(count)
        self.current = count

    def resume(self):
        """Continue after the loop did something else between two steps (an evaluation, other
        thread settings): put this policy's count back and start the block's clock afresh, so
        the pause is not timed as a step."""
        count, self.current = self.current, None
        self._counts.current = None  # set it again even if it looks unchanged: the loop may have changed it
        if count is not None:
            self._switch(count)

    # --- lifetime ---------------------------------------------------------------------------
    def close(self):
        """Restore the thread counts in effect before this object changed them."""
        self._counts.restore()
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
