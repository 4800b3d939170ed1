"""The local backend: a sweep run, resumed or joined through an Optuna study, by one or more
worker processes on this machine (and others sharing the study's database)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from ..config import normalize_config
from ..config import trial_run_name as run_name
from ..tracking import start_wandb_run
from . import trial as _trial
from .locks import study_lock
from .recovery import count_trials, machine_id, recover_dead_trials
from .results import (
    RESULT_ATTR,
    append_jsonl,
    best_record,
    json_safe,
    objective_value,
    read_results,
    results_record,
)
from .samplers import make_pruner, make_sampler, suggest_params
from .spec import parse_sweep
from .storage import default_results, default_storage, display_url, open_storage, resolve_storage_url, retry_callback
from .trial import PruningCallback
from .workers import run_workers


def _sampler_seed(seed, worker, n_existing, process=None):
    # Different per worker and per resume, so parallel or restarted workers do not replay the
    # same random stream (which would re-run configurations already in the study). Machines that
    # join a server study at once see the same worker index and study size, so there the
    # process ("machine:pid") is mixed in too.
    if seed is None:
        return None
    entropy = [int(seed), int(worker), int(n_existing)]
    if process is not None:
        entropy.append(zlib.crc32(str(process).encode()))
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _process_salt(storage_url):
    """What tells this process's sampler apart from other machines' (None for SQLite, one machine)."""
    return None if storage_url.startswith("sqlite") else f"{machine_id()}:{os.getpid()}"


class _LocalTrial:
    """The objective and the per-trial bookkeeping of one worker."""

    def __init__(self, job, spec, lock, worker):
        self.job, self.spec, self.lock, self.worker = job, spec, lock, worker
        self.machine = machine_id()
        self.current = None
        self.result = None
        self.consecutive_failures = 0

    def objective(self, trial):
        import optuna

        self.current, self.result = trial.number, None
        # Claim the trial before letting other workers look: a re-queued trial carries the user
        # attributes of the dead process it came from, and fail_dead_trials would fail it again.
        trial.set_user_attr("machine", self.machine)
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr(RESULT_ATTR, None)
        # The trial exists in the database now, so other workers can count it.
        self.lock.release()
        job, spec = self.job, self.spec
        started = time.time()
        params = suggest_params(trial, spec)
        config, name, run = params, None, None
        try:
            config = normalize_config(params)
            name = run_name(config, spec.varied)
            callbacks = []
            pruner = PruningCallback(trial, spec.metric, config["epochs"]) if spec.early_terminate else None
            if pruner:
                callbacks.append(pruner)
            run = start_wandb_run(
                job["wandb_mode"],
                project=job["wandb_project"],
                entity=job["wandb_entity"],
                group=job["study_name"],
                job_type="sweep",
                name=name,
                config={**config, "trial": trial.number, "study": job["study_name"]},
            )
            if run is not None:
                from ..callbacks import WandbLogger

                callbacks.append(WandbLogger(run))
            result = _trial.run_trial(
                config,
                _trial.get_data(config["dataset"], job["data_dir"], config["seed"]),
                limit=job["limit"],
                callbacks=callbacks,
            )
        except Exception as e:
            self.result = {
                "status": "failed",
                "message": f"{type(e).__name__}: {e}",
                "config": config,
                "error": traceback.format_exc(limit=5),
                "run_name": name,
                "started_at": started,
                "finished_at": time.time(),
                "params": params,
            }
            with contextlib.suppress(Exception):  # the trial's own error is the one to report
                trial.set_user_attr(RESULT_ATTR, self.stored_result())
            if run is not None:
                run.finish(exit_code=1)
            raise
        value = result.get(spec.metric)
        result.update(
            run_name=name,
            params=params,
            started_at=started,
            finished_at=time.time(),
            value=objective_value(spec, result["status"], value),
        )
        self.result = result
        for key in ("run_name", "status", "test_accuracy", "val_accuracy_best", "seconds"):
            trial.set_user_attr(key, result.get(key))
        trial.set_user_attr(RESULT_ATTR, self.stored_result())
        if run is not None:
            run.summary.update(
                {
                    "status": result["status"],
                    "test_accuracy": result["test_accuracy"],
                    "val_accuracy_best": result["val_accuracy_best"],
                    "seconds": result["seconds"],
                }
            )
            run.finish(exit_code=0 if result["status"] != "diverged" else 1)
        if result["status"] == "pruned":
            raise optuna.TrialPruned(result["message"])
        return result["value"]

    def stored_result(self):
        """The trial's result as kept in the study (user attribute ``result``), JSON-safe.

        With it, :func:`export_results` rebuilds this worker's results line on any machine.
        """
        return json_safe({**(self.result or {}), "limit": self.job["limit"], "worker": self.worker})

    def record(self, study, frozen):
        """Study callback (runs after Optuna stored the trial's state): append the results line."""
        from optuna.trial import TrialState

        if frozen.state == TrialState.FAIL:
            self.consecutive_failures += 1
        else:
            self.consecutive_failures = 0
        result = (
            self.stored_result()
            if frozen.number == self.current
            else {"limit": self.job["limit"], "worker": self.worker}
        )
        record = results_record(
            study.study_name, frozen, result, self.spec.metric, machine=self.machine, pid=os.getpid()
        )
        append_jsonl(self.job["results"], record)
        if self.job["verbose"]:
            finished, _ = count_trials(study)
            acc, test = (record.get(k) for k in ("val_accuracy", "test_accuracy"))
            acc, test = ("-" if v is None else f"{v:.4f}" for v in (acc, test))
            tail = f"  {record.get('message')}" if record["status"] in ("failed", "diverged", "pruned") else ""
            print(
                f"[w{self.worker}] trial {frozen.number:>3} {record['status']:<9} "
                f"val_acc {acc}  test_acc {test}  "
                f"{record.get('seconds') or 0:.1f}s  {record['run_name']}  ({finished}/{self.job['n_trials']} done)"
                + tail,
                flush=True,
            )
        if self.consecutive_failures >= 3:
            study.stop()


def _local_worker(job, worker=0):
    """One worker: start trials until the study holds ``n_trials`` finished ones.

    Returns
    -------
    dict
        ``started`` (trials this worker ran) and ``error`` (None or a message).
    """
    import optuna
    from optuna.trial import TrialState

    # Failures are reported on the trial's own line and in the results file.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    spec = parse_sweep(job["raw"], name=job["study_name"])
    lock = study_lock(job["storage"], job["study_name"])
    lock.acquire()
    try:
        # Under the lock: two processes creating the tables of a new SQLite file at once collide.
        storage = open_storage(job["storage"])
        study = optuna.create_study(
            storage=storage,
            study_name=job["study_name"],
            load_if_exists=True,
            direction=spec.goal,
            pruner=make_pruner(spec),
            sampler=make_sampler(spec, None),
        )
        n_existing = len(study.get_trials(deepcopy=False))
        study.sampler = make_sampler(
            spec, _sampler_seed(job["seed"], worker, n_existing, _process_salt(job["storage"]))
        )
    finally:
        lock.release()
    runner = _LocalTrial(job, spec, lock, worker)
    started = 0
    while True:
        lock.acquire()
        try:
            recover_dead_trials(study)
            finished, running = count_trials(study)
            if finished >= job["n_trials"] or runner.consecutive_failures >= 3:
                break
            if finished + running >= job["n_trials"]:
                # The remaining trials are running elsewhere; wait in case one of them dies.
                lock.release()
                time.sleep(job["poll"])
                continue
            try:
                study.optimize(runner.objective, n_trials=1, catch=(Exception,), callbacks=[runner.record])
            except ValueError as e:
                # Another worker declared this trial dead (heartbeat lost, e.g. a suspended machine)
                # and re-queued it; its result cannot be stored any more, the re-run will be.
                if "Cannot tell" not in str(e):
                    raise
                print(
                    f"[w{worker}] trial {runner.current} was failed by another worker meanwhile: {e}",
                    file=sys.stderr,
                    flush=True,
                )
            except KeyboardInterrupt:
                # Optuna marked the interrupted trial FAIL; queue its parameters again so a resumed
                # sweep re-runs it instead of sampling a new configuration.
                if runner.current is not None:
                    t = study.get_trials(deepcopy=False)[runner.current]
                    if t.state == TrialState.FAIL:
                        retry_callback()(study, t)
                raise
            started += 1
        finally:
            lock.release()
    error = None
    if runner.consecutive_failures >= 3:
        error = f"worker {worker}: 3 trials in a row failed; last: {(runner.result or {}).get('message')}"
    return {"started": started, "error": error}


def _worker_entry(job, worker, queue):
    try:
        queue.put((worker, _local_worker(job, worker)))
    except KeyboardInterrupt:
        queue.put((worker, {"started": 0, "error": "interrupted"}))
    except BaseException as e:  # report, do not hang the parent  # noqa: BLE001
        queue.put((worker, {"started": 0, "error": f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}"}))


@dataclass
class SweepSummary:
    """What :func:`run_local_sweep` returns."""

    study_name: str
    storage: str
    results: str
    n_finished: int
    seconds: float
    best: dict | None
    errors: list


def run_local_sweep(
    spec,
    *,
    n_trials=None,
    workers=1,
    storage=None,
    study_name=None,
    results=None,
    limit=None,
    data_dir=None,
    seed=0,
    wandb_mode="disabled",
    wandb_project="tinygrad_free",
    wandb_entity=None,
    sweep_path=None,
    verbose=True,
    poll=2.0,
):
    """Run (or resume, or join) a sweep with Optuna until ``n_trials`` trials have finished.

    Parameters
    ----------
    spec : SweepSpec
    n_trials : int, optional
        Total number of finished (complete or pruned) trials the study should hold; trials from
        earlier or concurrent runs count. Default: ``run_cap``, the grid size, else 20.
    workers : int, default 1
        Trials run at once, each in its own process with one BLAS thread (1 = in this process).
    storage : str, optional
        Optuna storage URL; default ``sqlite:///<sweep folder>/<study_name>.db``. Machines
        sharing one sweep give the same ``postgresql://user:password@host/db`` URL.
    study_name : str, optional
        Default: the sweep's name.
    results : str, optional
        Results JSONL; default next to the study (``<study>.jsonl``).
    limit : int, optional
        Train each trial on this many training images.
    data_dir : str, optional
    seed : int or None, default 0
        Seeds the samplers (mixed with the worker index and the study's size, and for a server
        storage such as PostgreSQL with the machine and process, so that machines joining at
        once do not sample the same configurations).
    wandb_mode : {"online", "offline", "disabled"}
        Each trial is a wandb run in group ``study_name``.
    verbose : bool
        One line per finished trial.

    Returns
    -------
    SweepSummary

    Raises
    ------
    ImportError
        Before anything runs, when ``storage`` is a PostgreSQL URL and no driver is installed
        (see :func:`resolve_storage_url`).
    """
    study_name = study_name or spec.name
    if n_trials is None:
        n_trials = spec.run_cap or spec.grid_size() or 20
    if spec.method == "grid" and n_trials > spec.grid_size():
        if verbose:
            print(f"grid has {spec.grid_size()} points: running {spec.grid_size()} trials, not {n_trials}")
        n_trials = spec.grid_size()
    if isinstance(workers, bool) or int(workers) < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if int(n_trials) < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    storage = storage or default_storage(sweep_path, study_name)
    resolve_storage_url(storage)  # a missing database driver stops here, with the extra to install
    results = results or default_results(storage, study_name, sweep_path)
    job = {
        "raw": spec.raw,
        "study_name": study_name,
        "storage": storage,
        "results": results,
        "n_trials": int(n_trials),
        "limit": limit,
        "data_dir": data_dir,
        "seed": seed,
        "wandb_mode": wandb_mode,
        "wandb_project": wandb_project,
        "wandb_entity": wandb_entity,
        "verbose": verbose,
        "poll": poll,
    }
    if verbose:
        print(
            f"sweep {study_name!r}: {spec.method} over {', '.join(spec.varied) or 'nothing'}; "
            f"{n_trials} trials, {workers} worker(s)\n  study:   {display_url(storage)}\n  results: {results}",
            flush=True,
        )
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lock = study_lock(storage, study_name)
    lock.acquire()
    try:
        optuna.create_study(
            storage=open_storage(storage), study_name=study_name, load_if_exists=True, direction=spec.goal
        )
    finally:
        lock.release()
    start = time.perf_counter()
    if workers == 1:
        outs = [_local_worker(job, 0)]
    else:
        outs = run_workers(_worker_entry, [job] * workers, workers)
    seconds = time.perf_counter() - start
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    finished, _ = count_trials(study)
    records = [r for r in read_results(results) if r.get("study") == study_name] if os.path.exists(results) else []
    errors = [o["error"] for o in outs if o and o.get("error")]
    return SweepSummary(
        study_name, storage, results, finished, seconds, best_record(records, spec.metric, spec.goal), errors
    )
