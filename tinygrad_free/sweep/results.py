"""The results file: one JSON line per finished trial (a JSON-safe copy of its record), appended
safely by many processes, read back by :mod:`tinygrad_free.report`; the line of a finished Optuna
trial and the objective value Optuna records for it."""

import json
import math
import warnings

import numpy as np

from ..fileio import append_line


def json_safe(value):
    """A JSON-safe copy of ``value``: dict keys as strings, tuples and arrays as lists, numpy scalars
    as Python numbers, NaN and inf as None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def append_jsonl(path, record):
    """Append ``record`` as one JSON line (strict JSON: NaN and inf become null), whole even when
    many processes append at once (:func:`tinygrad_free.fileio.append_line`); a crash leaves at
    most one partial last line, which :func:`read_results` skips."""
    append_line(path, json.dumps(json_safe(record), sort_keys=False, allow_nan=False))


def read_results(path):
    """The records of a results JSONL file (a torn last line from a crash is skipped)."""
    records = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                warnings.warn(f"{path}:{i}: skipping a line that is not valid JSON (torn write?)", stacklevel=2)
    return records


def objective_value(spec, status, value):
    """The objective value Optuna records; a diverged run gets the worst value so the sweep goes on."""
    if status == "diverged" or value is None or not math.isfinite(value):
        if spec.goal == "maximize":
            return 0.0 if spec.metric.endswith("accuracy") else -math.inf
        return math.inf
    return float(value)


#: The trial user attribute holding a finished trial's whole result (see :func:`results_record`).
RESULT_ATTR = "result"


def results_record(study_name, frozen, result, metric, machine=None, pid=None):
    """The results-file line of the finished trial ``frozen``.

    The worker that ran the trial appends it to its machine's results file; :func:`export_results`
    rebuilds the same line from the study, so both give one shape to :mod:`tinygrad_free.report`.

    Parameters
    ----------
    study_name : str
    frozen : optuna.trial.FrozenTrial
        The trial after Optuna stored its final state.
    result : dict or None
        What :func:`run_trial` returned plus ``run_name``, ``params``, ``started_at``,
        ``finished_at``, ``value``, ``limit`` and ``worker`` (the trial's ``result`` user
        attribute). None for a trial stored without one (a study from before the attribute),
        whose line is rebuilt from its parameters, value and other user attributes.
    metric : str
        The sweep's metric.
    machine, pid : optional
        The worker's; default: the trial's ``machine`` and ``pid`` user attributes.

    Returns
    -------
    dict
        ``study``, ``trial``, ``backend``, ``run_name``, ``status`` (``failed`` for a FAIL trial,
        ``pruned`` for a PRUNED one, else the run's own), ``metric``, ``value`` (Optuna's), then
        the result's entries, then ``limit``, ``machine``, ``pid`` and ``worker``.
    """
    from optuna.trial import TrialState

    result = dict(result or {})
    attrs = frozen.user_attrs
    if not result.get("status") and frozen.state == TrialState.COMPLETE:  # no stored result
        result.setdefault(metric, frozen.value)
        for key in ("test_accuracy", "val_accuracy_best", "seconds"):
            result.setdefault(key, attrs.get(key))
    status = result.pop("status", None) or attrs.get("status") or "completed"
    if frozen.state == TrialState.FAIL:
        status = "failed"
    elif frozen.state == TrialState.PRUNED:
        status = "pruned"
    stored_value = result.pop("value", None)
    value = frozen.value if frozen.value is not None else stored_value
    result.setdefault("params", frozen.params)
    run_name = result.pop("run_name", None) or attrs.get("run_name")
    limit, worker = result.pop("limit", None), result.pop("worker", None)
    return {
        "study": study_name,
        "trial": frozen.number,
        "backend": "local",
        "run_name": run_name,
        "status": status,
        "metric": metric,
        "value": value,
        **result,
        "limit": limit,
        "machine": machine if machine is not None else attrs.get("machine"),
        "pid": pid if pid is not None else attrs.get("pid"),
        "worker": worker,
    }


def best_record(records, metric="val_accuracy", goal="maximize"):
    """The finished record with the best ``metric`` (diverged/failed/pruned runs excluded)."""
    ok = [r for r in records if r.get("status") == "completed" and r.get(metric) is not None]
    if not ok:
        return None
    return (max if goal == "maximize" else min)(ok, key=lambda r: r[metric])
