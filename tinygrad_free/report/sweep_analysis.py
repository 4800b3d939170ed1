"""The statistics of a sweep's results: the metric's direction, one row per finished run, the
parameters that varied, each parameter's effect and (with Optuna) its importance."""

from __future__ import annotations

import json
import math
import warnings
from collections import defaultdict

import numpy as np

#: Accuracy below which a 10-class run learned (almost) nothing.
NEAR_CHANCE = 0.2


#: Directions a sweep's metric can have (wandb's ``metric.goal``).
GOALS = ("maximize", "minimize")


def metric_goal(metric, records=(), goal=None):
    """Whether ``metric`` is to be maximized or minimized: ``"maximize"`` or ``"minimize"``.

    ``goal`` when it is given; else the ``goal`` the records of this metric carry (a sweep's
    ``metric.goal``), when they do; else the metric's own direction: accuracies are maximized,
    losses minimized (a sweep's metric is one of :data:`tinygrad_free.sweep.METRICS`).

    Raises
    ------
    ValueError
        For a goal other than maximize/minimize, or a metric whose direction its name does not
        tell (neither ``...accuracy`` nor ``...loss``) when no goal is given.
    """
    if goal is None:
        goal = next((r["goal"] for r in records if r.get("metric") == metric and r.get("goal")), None)
    if goal is None:
        if metric.endswith("accuracy"):
            return "maximize"
        if metric.endswith("loss"):
            return "minimize"
        raise ValueError(
            f"cannot tell whether metric {metric!r} is better high or low; pass goal='maximize' or goal='minimize'"
        )
    return _check_goal(goal)


def _check_goal(goal):
    if goal not in GOALS:
        raise ValueError(f"unknown metric goal {goal!r}; choose one of {', '.join(GOALS)}")
    return goal


def goal_sign(goal):
    """+1 when higher values of the metric are better, -1 when lower ones are."""
    return 1 if goal == "maximize" else -1


def _hashable(v):
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def value_sort_key(v):
    """Sort key for a parameter's values: numbers in numeric order first, then the rest by their text."""
    return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v))


def analysis_rows(records, metric="val_accuracy"):
    """``(params, value, record)`` for the runs that say something about a configuration.

    Completed runs count with their final ``metric``; diverged runs with the value the sweep
    gave them (0 for accuracy), since diverging is that configuration's outcome. (A minimized
    metric's diverged runs were given +inf, which no mean or plot can use, so they are left out.)
    Pruned runs (stopped early by design) and failed runs (a bug, not a result) are left out.
    """
    rows = []
    for r in records:
        status = r.get("status")
        if status == "completed" and r.get(metric) is not None:
            value = r[metric]
        elif status == "diverged":
            value = r.get("value")
            if value is None or not math.isfinite(value):
                continue
        else:
            continue
        params = {k: _hashable(v) for k, v in (r.get("params") or {}).items()}
        rows.append((params, float(value), r))
    return rows


def varied_params(rows):
    """Parameters taking more than one value across ``rows``, in first-seen order."""
    seen = defaultdict(set)
    for params, _, _ in rows:
        for k, v in params.items():
            seen[k].add(v)
    return [k for k, vals in seen.items() if len(vals) > 1]


def is_continuous(values):
    """Whether a parameter's distinct ``values`` are all numbers and more than 12 of them (drawn as an
    axis and correlated, not grouped as categories)."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return len(nums) == len(values) and len(set(nums)) > 12


def wants_log_scale(values):
    """Whether numeric ``values`` are all positive and span more than a factor of 20 (shown and fitted on
    a log scale)."""
    v = np.asarray(values, float)
    return bool(np.all(v > 0) and v.max() / v.min() > 20)


def param_effects(rows):
    """Per parameter: mean metric per value, one-hot correlations and the variance it explains.

    Returns
    -------
    dict
        ``{param: {"means": {value: (mean, std, n)}, "correlation": {label: r}, "eta2": float}}``.
        ``eta2`` is the share of the metric's variance explained by the parameter alone
        (between-group over total sum of squares; continuous values are binned in quartiles).
        ``correlation`` holds Pearson's r of each value's indicator with the metric (or of the
        (log) value itself for continuous parameters), as wandb's importance panel shows it.
    """
    if not rows:
        return {}
    y = np.array([v for _, v, _ in rows])
    total_ss = float(((y - y.mean()) ** 2).sum())
    out = {}
    for p in varied_params(rows):
        vals = [params.get(p) for params, _, _ in rows]
        uniq = sorted(set(vals), key=value_sort_key)
        info = {"means": {}, "correlation": {}, "eta2": 0.0, "continuous": False}
        if is_continuous(uniq):
            x = np.asarray(vals, float)
            xs = np.log10(x) if wants_log_scale(x) else x
            info["continuous"] = True
            label = f"{p} (log)" if wants_log_scale(x) else p
            if xs.std() > 0 and y.std() > 0:
                info["correlation"][label] = float(np.corrcoef(xs, y)[0, 1])
            groups = np.digitize(xs, np.quantile(xs, [0.25, 0.5, 0.75]))
        else:
            index = {v: i for i, v in enumerate(uniq)}
            groups = np.array([index[v] for v in vals])
            for v in uniq:
                ind = (groups == index[v]).astype(float)
                sel = y[groups == index[v]]
                info["means"][v] = (float(sel.mean()), float(sel.std(ddof=1)) if sel.size > 1 else 0.0, int(sel.size))
                if 0 < ind.sum() < len(ind) and y.std() > 0:
                    info["correlation"][f"{p}={v}"] = float(np.corrcoef(ind, y)[0, 1])
        between = sum(y[groups == g].size * (y[groups == g].mean() - y.mean()) ** 2 for g in np.unique(groups))
        info["eta2"] = float(between / total_ss) if total_ss > 0 else 0.0
        out[p] = info
    return out


def optuna_importance(rows, seed=0, goal="maximize"):
    """Optuna's importance of each varied parameter, or None when it cannot be computed.

    fANOVA (how much of the metric's variance each parameter explains, through a random forest)
    needs scikit-learn; without it PED-ANOVA (which parameters set the top 10% of runs apart)
    is used. The study is rebuilt in memory from the rows, in the direction ``goal`` (the "top"
    runs of a loss are its lowest), so a results file is enough.

    Returns
    -------
    (str, dict) or None
        The evaluator's name and ``{param: importance}``.
    """
    _check_goal(goal)
    params = varied_params(rows)
    if len(rows) < 4 or not params:
        return None
    try:
        import optuna
        from optuna.distributions import CategoricalDistribution, FloatDistribution
        from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    except ImportError:
        return None
    try:
        import sklearn  # noqa: F401

        name, evaluator = "fANOVA (Optuna)", FanovaImportanceEvaluator(seed=seed)
    except ImportError:
        from optuna.importance import PedAnovaImportanceEvaluator

        name, evaluator = "PED-ANOVA, top 10% (Optuna)", PedAnovaImportanceEvaluator()
    dists = {}
    for p in params:
        vals = [r[0].get(p) for r in rows]
        if any(v is None for v in vals):
            return None
        uniq = sorted(set(vals), key=value_sort_key)
        if is_continuous(uniq):
            lo, hi = float(min(uniq)), float(max(uniq))
            dists[p] = FloatDistribution(lo, hi, log=wants_log_scale(uniq))
        else:
            dists[p] = CategoricalDistribution(uniq)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(direction=goal)

        def values(params_):
            return {p: float(params_[p]) if isinstance(dists[p], FloatDistribution) else params_[p] for p in params}

        study.add_trials(
            [optuna.trial.create_trial(params=values(r[0]), distributions=dists, value=r[1]) for r in rows]
        )
        try:
            return name, dict(get_param_importances(study, evaluator=evaluator))
        except Exception:  # too few distinct points for the evaluator  # noqa: BLE001
            return None
