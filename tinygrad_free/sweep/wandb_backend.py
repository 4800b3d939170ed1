"""The wandb backend: the sweep file handed to ``wandb.sweep``, and agents on this machine that
train the configurations wandb's server picks."""

import os
import time
import traceback
from pathlib import Path

from ..config import DEFAULTS, normalize_config
from ..config import trial_run_name as run_name
from . import trial as _trial
from .recovery import machine_id
from .results import append_jsonl, objective_value
from .spec import parse_sweep
from .workers import run_workers


def wandb_sweep_config(spec):
    """The sweep file as ``wandb.sweep`` takes it (with overrides applied)."""
    return {k: v for k, v in spec.raw.items() if v is not None}


def _wandb_trial(job):
    """The function ``wandb.agent`` calls: one run with the configuration wandb chose."""
    import wandb

    spec = parse_sweep(job["raw"], name=job["sweep_id"])
    run = wandb.init(settings=wandb.Settings(silent=True))
    started = time.time()
    sampled = {k: v for k, v in dict(run.config).items() if k in DEFAULTS}
    config = normalize_config(sampled)
    name = run_name(config, spec.varied)
    run.name = name
    from ..callbacks import WandbLogger

    status, result = "failed", {"config": config}
    try:
        result = _trial.run_trial(
            config,
            _trial.get_data(config["dataset"], job["data_dir"], config["seed"]),
            limit=job["limit"],
            callbacks=[WandbLogger(run)],
        )
        status = result["status"]
        run.summary.update(
            {
                "status": status,
                "test_accuracy": result["test_accuracy"],
                "val_accuracy_best": result["val_accuracy_best"],
                "seconds": result["seconds"],
            }
        )
    except Exception as e:
        result = {"message": f"{type(e).__name__}: {e}", "config": config, "error": traceback.format_exc(limit=5)}
        raise
    finally:
        value = result.get(spec.metric) if status != "failed" else None
        append_jsonl(
            job["results"],
            {
                "study": job["sweep_id"],
                "trial": getattr(run, "id", None),
                "backend": "wandb",
                "run_name": name,
                "status": status,
                "metric": spec.metric,
                "value": objective_value(spec, status, value) if status != "failed" else None,
                **result,
                "params": sampled,
                "started_at": started,
                "finished_at": time.time(),
                "limit": job["limit"],
                "machine": machine_id(),
                "pid": os.getpid(),
            },
        )
        run.finish(exit_code=0 if status == "completed" else 1)


def _wandb_agent(job, worker=0, queue=None):
    import wandb

    try:
        wandb.agent(
            job["sweep_id"],
            function=lambda: _wandb_trial(job),
            count=job["count"],
            project=job["project"],
            entity=job["entity"],
        )
        out = {"started": None, "error": None}
    except BaseException as e:  # noqa: BLE001
        if queue is None:
            raise
        out = {"started": None, "error": f"{type(e).__name__}: {e}"}
    if queue is not None:
        queue.put((worker, out))
    return out


def run_wandb_sweep(
    spec,
    *,
    sweep_id=None,
    count=None,
    n_trials=None,
    workers=1,
    project="tinygrad_free",
    entity=None,
    results=None,
    limit=None,
    data_dir=None,
    sweep_path=None,
    verbose=True,
):
    """Create (or join) a wandb sweep and run ``workers`` agents on this machine.

    Parameters
    ----------
    spec : SweepSpec
    sweep_id : str, optional
        Join this sweep instead of creating one (``wandb.sweep``).
    count : int, optional
        Runs per agent (wandb's ``--count``); None runs until the sweep is done.
    n_trials : int, optional
        When creating a sweep: its ``run_cap`` (total runs over all agents).
    workers : int
        Agents started here, each in its own process.
    results : str, optional
        Results JSONL; default ``<sweep folder>/<sweep id>.jsonl``.

    Returns
    -------
    str
        The sweep id.
    """
    import wandb

    if sweep_id is None:
        config = wandb_sweep_config(spec)
        if n_trials:
            config["run_cap"] = int(n_trials)
        sweep_id = wandb.sweep(config, project=project, entity=entity)
        if verbose:
            print(f"created wandb sweep {sweep_id}; more agents join with --sweep_id {sweep_id}", flush=True)
    folder = Path(sweep_path).resolve().parent if sweep_path else Path.cwd()
    results = results or str(folder / f"{str(sweep_id).split('/')[-1]}.jsonl")
    job = {
        "raw": spec.raw,
        "sweep_id": sweep_id,
        "count": count,
        "project": project,
        "entity": entity,
        "results": results,
        "limit": limit,
        "data_dir": data_dir,
    }
    if workers == 1:
        _wandb_agent(job)
    else:
        outs = run_workers(_wandb_agent, [job] * workers, workers)
        errors = [o["error"] for o in outs if o and o.get("error")]
        if errors:
            raise RuntimeError("; ".join(errors))
    return sweep_id
