"""Worker processes: spawned with one BLAS and numba thread each, for the sweep's trials
(:func:`run_workers`) or a plain list of configurations (:func:`map_trials`)."""

import contextlib
import os

from ..config import trial_run_name as run_name
from ..threads import THREAD_VARIABLES  # a worker sets each to 1 before numpy loads
from . import trial as _trial


def _set_single_thread_env():
    for var in THREAD_VARIABLES:
        os.environ[var] = "1"


@contextlib.contextmanager
def _child_env(**extra):
    """Environment the spawned workers inherit: one BLAS/numba thread each, set before numpy loads."""
    saved = dict(os.environ)
    _set_single_thread_env()
    os.environ.update(extra)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_workers(target, jobs, workers):
    """Run ``target(job, worker, queue)`` in ``workers`` spawned processes with one BLAS thread each.

    Returns
    -------
    list
        What each worker put on the queue, by worker index.
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = []
    with _child_env():
        for w in range(workers):
            p = ctx.Process(target=target, args=(jobs[w], w, queue), daemon=False)
            p.start()
            procs.append(p)
    out = [None] * workers
    try:
        pending = set(range(workers))
        while pending:
            try:
                w, res = queue.get(timeout=1.0)
                out[w] = res
                pending.discard(w)
            except Exception:  # queue.Empty: check for workers that died without a word  # noqa: BLE001
                for w in list(pending):
                    if not procs[w].is_alive() and procs[w].exitcode not in (None, 0):
                        out[w] = {"started": 0, "error": f"worker {w} exited with code {procs[w].exitcode}"}
                        pending.discard(w)
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        # The workers got the same SIGINT and are re-queueing their trials; give them a moment.
        for p in procs:
            p.join(timeout=15)
            if p.is_alive():
                p.terminate()
        raise
    return out


def _train_task(task):
    config, limit, data_dir = task
    try:
        return _trial.run_trial(config, limit=limit, data_dir=data_dir)
    except Exception as e:  # one bad configuration should not sink the batch  # noqa: BLE001
        return {"status": "failed", "message": f"{type(e).__name__}: {e}", "config": config}


def map_trials(configs, *, workers=1, limit=None, data_dir=None, verbose=True):
    """Train each configuration (:func:`run_trial`) and return the results in order.

    With ``workers > 1`` the runs are spread over that many spawned processes, each with one
    BLAS thread; a configuration that raises comes back with ``status: failed``.
    """
    tasks = [(dict(c), limit, data_dir) for c in configs]
    results = []

    def show(i, r):
        if verbose:
            acc = r.get("val_accuracy")
            print(
                f"  [{i + 1}/{len(tasks)}] {r.get('status')} val_acc "
                f"{'-' if acc is None else f'{acc:.4f}'} {run_name(tasks[i][0], ('seed',))}",
                flush=True,
            )

    if workers <= 1 or len(tasks) <= 1:
        for i, t in enumerate(tasks):
            results.append(_train_task(t))
            show(i, results[-1])
        return results
    import multiprocessing as mp

    with _child_env():
        pool = mp.get_context("spawn").Pool(min(workers, len(tasks)))
    with pool:
        for i, r in enumerate(pool.imap(_train_task, tasks)):
            results.append(r)
            show(i, r)
    return results
