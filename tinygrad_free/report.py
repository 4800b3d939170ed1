"""The report's figures and the numbers behind them, drawn from data, never hard-coded.

Every ``plot_*`` function writes one PNG (matplotlib's Agg renderer through ``Figure``
objects, so pyplot's global state and the user's backend are left alone), logs it to wandb
when a run is active, and returns the PNG's path. Files are written to a temporary name and
renamed into place, so an interrupted report never leaves a truncated image.

Sweep figures read the records of a results JSONL written by :mod:`tinygrad_free.sweep`
(one dict per trial with ``params``, ``status``, ``val_accuracy``, ``history``, ...).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from collections import defaultdict
from itertools import combinations

import numpy as np

from .metrics import confusion_matrix, per_class_accuracy
from .fileio import atomic_open, atomic_write_text
from .sweep import best_record, read_results

#: Accuracy below which a 10-class run learned (almost) nothing.
NEAR_CHANCE = 0.2
#: Directions a sweep's metric can have (wandb's ``metric.goal``).
GOALS = ("maximize", "minimize")
#: Order of the sections in report.md.
SECTIONS = ("samples", "sweep", "confusion", "losses", "mnist")
STATUS_COLORS = {"completed": "#1f77b4", "pruned": "#ff7f0e", "diverged": "#d62728", "stopped": "#9467bd",
                 "failed": "#7f7f7f"}


# --------------------------------------------------------------------------------------------
# Files and wandb
# --------------------------------------------------------------------------------------------


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path, dpi=110):
    """Render ``fig`` to ``path`` (PNG) atomically, log it to wandb if a run is active; returns the path."""
    path = os.fspath(path)
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=dpi)
    log_to_wandb({os.path.splitext(os.path.basename(path))[0]: path})
    return path


def log_to_wandb(images=None, tables=None):
    """Log PNGs (``{key: path}``) and tables (``{key: (columns, rows)}``) to the active wandb run, if any."""
    try:
        import wandb
    except ImportError:
        return False
    if getattr(wandb, "run", None) is None:
        return False
    payload = {k: wandb.Image(p) for k, p in (images or {}).items()}
    payload.update({k: wandb.Table(columns=list(c), data=[list(r) for r in rows])
                    for k, (c, rows) in (tables or {}).items()})
    if payload:
        wandb.log(payload)
    return True


# --------------------------------------------------------------------------------------------
# 1. One sample per class
# --------------------------------------------------------------------------------------------


def _image(x):
    x = np.asarray(x)
    return x.reshape(28, 28) if x.size == 784 else x


def plot_class_samples(x, y, class_names, path, title=None, seed=0):
    """One image per class in a labelled grid.

    Parameters
    ----------
    x : ndarray
        Images, ``(N, 28, 28)`` or flattened ``(N, 784)``.
    y : ndarray
        Integer labels.
    class_names : sequence of str
    path : str
        PNG to write.
    seed : int or None
        Which example of each class is shown (None: the first one).
    """
    y = np.asarray(y)
    k = len(class_names)
    cols = min(5, k)
    rows = -(-k // cols)
    fig = _figure((2.0 * cols, 2.25 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    rng = np.random.default_rng(seed) if seed is not None else None
    for c, ax in enumerate(axes):
        ax.set_axis_off()
        if c >= k:
            continue
        idx = np.flatnonzero(y == c)
        if idx.size == 0:
            ax.set_title(f"{c}: {class_names[c]}\n(no example)", fontsize=9)
            continue
        i = idx[0] if rng is None else rng.choice(idx)
        ax.imshow(_image(x[i]), cmap="gray_r")
        ax.set_title(f"{c}: {class_names[c]}", fontsize=10)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# 2. Sweep summaries
# --------------------------------------------------------------------------------------------


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
        raise ValueError(f"cannot tell whether metric {metric!r} is better high or low; "
                         f"pass goal='maximize' or goal='minimize'")
    return _check_goal(goal)


def _check_goal(goal):
    if goal not in GOALS:
        raise ValueError(f"unknown metric goal {goal!r}; choose one of {', '.join(GOALS)}")
    return goal


def _sign(goal):
    """+1 when higher values of the metric are better, -1 when lower ones are."""
    return 1 if goal == "maximize" else -1


def _hashable(v):
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def _sort_key(v):
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


def _is_continuous(values):
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return len(nums) == len(values) and len(set(nums)) > 12


def _log_scale(values):
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
        uniq = sorted(set(vals), key=_sort_key)
        info = {"means": {}, "correlation": {}, "eta2": 0.0, "continuous": False}
        if _is_continuous(uniq):
            x = np.asarray(vals, float)
            xs = np.log10(x) if _log_scale(x) else x
            info["continuous"] = True
            label = f"{p} (log)" if _log_scale(x) else p
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
        uniq = sorted(set(vals), key=_sort_key)
        if _is_continuous(uniq):
            lo, hi = float(min(uniq)), float(max(uniq))
            dists[p] = FloatDistribution(lo, hi, log=_log_scale(uniq))
        else:
            dists[p] = CategoricalDistribution(uniq)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(direction=goal)
        def values(params_):
            return {p: float(params_[p]) if isinstance(dists[p], FloatDistribution) else params_[p] for p in params}
        study.add_trials([optuna.trial.create_trial(params=values(r[0]), distributions=dists, value=r[1])
                          for r in rows])
        try:
            return name, dict(get_param_importances(study, evaluator=evaluator))
        except Exception:  # too few distinct points for the evaluator  # noqa: BLE001
            return None


def plot_sweep_timeline(records, path, metric="val_accuracy", goal=None):
    """Metric of every run against the sweep's wall-clock time: a segment from each trial's
    start to its finish, coloured by status, and the best value so far (the highest, or the
    lowest when ``goal`` is ``"minimize"``; None: see :func:`metric_goal`)."""
    sign = _sign(metric_goal(metric, records, goal))
    rows = [r for r in records if r.get("finished_at") and r.get("started_at")]
    fig = _figure((10, 4.8))
    ax = fig.add_subplot()
    if not rows:
        ax.text(0.5, 0.5, "no timed runs in the results", ha="center", va="center", transform=ax.transAxes)
        return save_figure(fig, path)
    t0 = min(r["started_at"] for r in rows)
    rows.sort(key=lambda r: r["finished_at"])
    best, bx, by = None, [], []
    for status in STATUS_COLORS:
        sel = [r for r in rows if r.get("status") == status]
        if not sel:
            continue
        ys = [(r.get(metric) if status != "diverged" else r.get("value")) for r in sel]
        ys = [np.nan if v is None else v for v in ys]
        xs0 = [(r["started_at"] - t0) / 60 for r in sel]
        xs1 = [(r["finished_at"] - t0) / 60 for r in sel]
        color = STATUS_COLORS[status]
        for a, b, v in zip(xs0, xs1, ys):
            ax.plot([a, b], [v, v], color=color, alpha=0.35, lw=1)
        ax.scatter(xs1, ys, s=18, color=color, marker="x" if status == "diverged" else "o",
                   label=f"{status} ({len(sel)})", zorder=3)
    for r in rows:
        v = r.get(metric) if r.get("status") == "completed" else None
        if v is not None and (best is None or sign * v > sign * best):
            best = v
        if best is not None:
            bx.append((r["finished_at"] - t0) / 60)
            by.append(best)
    if bx:
        ax.step(bx, by, where="post", color="black", lw=1.5, label=f"best so far ({by[-1]:.4f})")
    ax.set_xlabel("minutes since the sweep started (segment: trial start to finish)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} of each of {len(rows)} runs over time")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if sign > 0 else "upper right", fontsize=8)
    return save_figure(fig, path)


def plot_parallel_coordinates(records, path, metric="val_accuracy", params=None, goal=None):
    """Parallel coordinates of the varied hyperparameters, one line per run coloured by ``metric``.

    Categorical axes place their values evenly (with a little jitter so overlapping runs stay
    visible); continuous ones are linear or log scaled. Diverged runs are grey dashes. The best
    runs (by ``goal``; None: see :func:`metric_goal`) are drawn last and brightest.
    """
    from matplotlib import cm, colors
    from matplotlib.collections import LineCollection

    sign = _sign(metric_goal(metric, records, goal))
    cmap = "viridis" if sign > 0 else "viridis_r"  # the best runs yellow either way
    rows = analysis_rows(records, metric)
    params = params or varied_params(rows)
    fig = _figure((max(8, 1.5 * (len(params) + 1)), 5.5))
    ax = fig.add_subplot()
    if not rows or not params:
        ax.text(0.5, 0.5, "no varied parameters among finished runs", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return save_figure(fig, path)
    rng = np.random.default_rng(0)
    n_axes = len(params) + 1
    coords = np.zeros((len(rows), n_axes))
    ticks = []
    for j, p in enumerate(params):
        vals = [r[0].get(p) for r in rows]
        uniq = sorted(set(vals), key=_sort_key)
        if _is_continuous(uniq):
            x = np.asarray(vals, float)
            log = _log_scale(x)
            xs = np.log10(x) if log else x
            lo, hi = xs.min(), xs.max()
            coords[:, j] = (xs - lo) / (hi - lo) if hi > lo else 0.5
            tv = np.linspace(lo, hi, 4)
            ticks.append([(float((t - lo) / (hi - lo)) if hi > lo else 0.5, f"{10 ** t:.2g}" if log else f"{t:.3g}")
                          for t in tv])
        else:
            pos = {v: (i / (len(uniq) - 1) if len(uniq) > 1 else 0.5) for i, v in enumerate(uniq)}
            jitter = 0.25 / max(len(uniq), 2)
            coords[:, j] = [pos[v] + rng.uniform(-jitter, jitter) for v in vals]
            ticks.append([(pos[v], str(v)) for v in uniq])
    y = np.array([r[1] for r in rows])
    lo, hi = float(y.min()), float(y.max())
    coords[:, -1] = (y - lo) / (hi - lo) if hi > lo else 0.5
    ticks.append([(float((t - lo) / (hi - lo)) if hi > lo else 0.5, f"{t:.3f}") for t in np.linspace(lo, hi, 5)])
    diverged = np.array([r[2].get("status") == "diverged" for r in rows])
    order = np.argsort(sign * y, kind="stable")  # best runs drawn last, on top
    finished = [i for i in order if not diverged[i]]
    norm = colors.Normalize(vmin=min((y[i] for i in finished), default=lo), vmax=hi)
    xs = np.arange(n_axes)
    if diverged.any():
        ax.add_collection(LineCollection([np.column_stack([xs, coords[i]]) for i in order if diverged[i]],
                                         colors="0.6", linestyles="dashed", linewidths=0.8, alpha=0.6))
    ax.add_collection(LineCollection([np.column_stack([xs, coords[i]]) for i in finished],
                                     cmap=cmap, norm=norm, array=y[finished], linewidths=1.2, alpha=0.8))
    for j in range(n_axes):
        ax.axvline(j, color="black", lw=0.8)
        for pos, label in ticks[j]:
            ax.text(j + 0.03, pos, label, fontsize=7, va="center", ha="left",
                    bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 0.5})
    ax.set_xticks(xs, list(params) + [metric], rotation=20, fontsize=9)
    ax.set_yticks([])
    ax.set_xlim(-0.1, n_axes - 0.6)
    ax.set_ylim(-0.08, 1.08)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=metric, pad=0.01)
    ax.set_title(f"{len(rows)} runs ({int(diverged.sum())} diverged, grey dashes)")
    return save_figure(fig, path)


def plot_param_importance(records, path, metric="val_accuracy", optuna_importance_too=True, top=20, goal=None):
    """Each hyperparameter's importance and its values' correlation with ``metric``.

    Left: variance explained by each parameter alone (eta squared) and, with
    ``optuna_importance_too``, Optuna's importance (see :func:`optuna_importance`). Right: Pearson
    correlation of each value (one-hot) with the metric, green where the value goes with better
    runs (higher ``metric``, or lower when ``goal`` is ``"minimize"``; None: see :func:`metric_goal`).
    """
    goal = metric_goal(metric, records, goal)
    sign = _sign(goal)
    rows = analysis_rows(records, metric)
    effects = param_effects(rows)
    fig = _figure((12, max(4, 0.32 * min(top, sum(len(e["correlation"]) for e in effects.values()) or 1) + 1.5)))
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.3])
    if not effects:
        for ax in (ax1, ax2):
            ax.text(0.5, 0.5, "not enough finished runs", ha="center", va="center", transform=ax.transAxes)
        return save_figure(fig, path)
    imp = optuna_importance(rows, goal=goal) if optuna_importance_too else None
    fan_name, fan = imp if imp else (None, None)
    names = sorted(effects, key=lambda p: effects[p]["eta2"])
    ypos = np.arange(len(names))
    h = 0.4 if fan else 0.7
    ax1.barh(ypos + (h / 2 if fan else 0), [effects[p]["eta2"] for p in names], height=h,
             color="#1f77b4", label="variance explained alone (eta²)")
    if fan:
        ax1.barh(ypos - h / 2, [fan.get(p, 0.0) for p in names], height=h, color="#2ca02c", label=fan_name)
    ax1.set_yticks(ypos, names)
    ax1.set_xlabel("importance")
    ax1.set_title(f"importance for {metric}")
    ax1.legend(fontsize=8, loc="lower right")
    corr = sorted(((label, r) for e in effects.values() for label, r in e["correlation"].items()),
                  key=lambda t: abs(t[1]), reverse=True)[:top][::-1]
    ax2.barh(np.arange(len(corr)), [r for _, r in corr],
             color=["#2ca02c" if sign * r > 0 else "#d62728" for _, r in corr])
    ax2.set_yticks(np.arange(len(corr)), [label for label, _ in corr], fontsize=8)
    ax2.axvline(0, color="black", lw=0.8)
    ax2.set_xlim(-1, 1)
    ax2.set_xlabel(f"correlation with {metric} ({'higher' if sign > 0 else 'lower'} is better)")
    ax2.set_title("correlation of each value (one-hot)")
    return save_figure(fig, path)


def _gap_is_clear(a, b, min_gap):
    """Means (mean, std, n) ``a`` and ``b`` differ by at least ``min_gap`` and by two standard errors."""
    (m1, s1, n1), (m2, s2, n2) = a, b
    se = math.sqrt(s1 ** 2 / max(n1, 1) + s2 ** 2 / max(n2, 1))
    return abs(m1 - m2) >= max(min_gap, 2 * se)


def _stats(values):
    v = np.asarray(values, float)
    return (float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size))


def _fmt(v, pct):
    return f"{100 * v:.1f}%" if pct else f"{v:.4g}"


def _gap(v, pct):
    return f"{100 * v:.1f} points" if pct else f"{v:.4g}"


def _describe(config, keys):
    return ", ".join(f"{k}={config[k]:g}" if isinstance(config[k], float) else f"{k}={config[k]}"
                     for k in keys if k in config)


def sweep_findings(records, metric="val_accuracy", goal=None, min_gap=0.05, min_runs=3):
    """Short statements the results support, each computed from the data.

    ``goal`` says whether ``metric`` is better high (``"maximize"``) or low (``"minimize"``);
    None takes it from the records or the metric's name (:func:`metric_goal`). Accuracies are
    shown as percentages, other metrics as plain numbers.

    The best run; the most important parameter; values whose runs are clearly worse than the
    parameter's best value (gap >= ``min_gap`` and two standard errors, ``min_runs`` runs each);
    pairs of values that fail together more than either alone (such as sigmoid with small random
    weights); the values behind diverged and near-chance runs.

    Returns
    -------
    list of str
        Markdown bullet texts (without the bullet).
    """
    goal = metric_goal(metric, records, goal)
    pct = metric.endswith("accuracy")
    rows = analysis_rows(records, metric)
    status = defaultdict(int)
    for r in records:
        status[r.get("status", "unknown")] += 1
    lines = [f"{len(records)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items(), key=lambda t: -t[1]))
             + "."]
    best = best_record(records, metric, goal)
    if best is None or not rows:
        lines.append("No completed runs yet, so nothing to conclude.")
        return lines
    params = varied_params(rows)
    test = best.get("test_accuracy")
    lines.append(f"Best run: `{best.get('run_name')}` with {metric} {_fmt(best[metric], pct)}"
                 + (f" and test accuracy {_fmt(test, True)}" if test is not None else "") + " ("
                 + _describe(best.get("params") or best.get("config") or {}, params or best.get("params", {})) + ").")
    sign = _sign(goal)
    worse = "lower" if sign > 0 else "higher"
    effects = param_effects(rows)
    if effects and len(rows) >= 10:  # with fewer runs the explained variance is mostly noise
        top = max(effects, key=lambda p: effects[p]["eta2"])
        lines.append(f"`{top}` matters most: alone it explains {100 * effects[top]['eta2']:.0f}% of the variance "
                     f"in {metric}.")
    ranked = sorted(rows, key=lambda t: sign * t[1], reverse=True)
    k = max(3, min(10, len(ranked) // 5))
    if len(ranked) >= 2 * k:
        for p in params:
            vals = {t[0].get(p) for t in ranked[:k]}
            if len(vals) == 1:
                lines.append(f"All top {k} runs use {p}={next(iter(vals))}.")
    inter = _interactions(rows, params, sign, min_gap, min_runs, metric=metric, pct=pct)
    hurts = []
    for p, e in effects.items():
        means = {v: s for v, s in e["means"].items() if s[2] >= min_runs}
        if len(means) < 2:
            continue
        best_v = max(means, key=lambda v: sign * means[v][0])
        for v, s in means.items():
            if v != best_v and sign * (means[best_v][0] - s[0]) > 0 and _gap_is_clear(means[best_v], s, min_gap):
                hurts.append((abs(means[best_v][0] - s[0]), p, v, s, best_v, means[best_v]))
    for gap, p, v, s, bv, bs in sorted(hurts, key=lambda t: t[0], reverse=True)[:6]:
        text = (f"{p}={v} hurts: mean {metric} {_fmt(s[0], pct)} over {s[2]} runs vs {_fmt(bs[0], pct)} "
                f"for {p}={bv} ({bs[2]} runs), {_gap(gap, pct)} {worse}")
        # Is the damage only that of a failing combination? Compare without the combination's runs.
        for it in inter:
            other = (it["b"], it["v"]) if (it["a"], it["u"]) == (p, v) else \
                (it["a"], it["u"]) if (it["b"], it["v"]) == (p, v) else None
            if other is None:
                continue
            rest = [val for pr, val, _ in rows if pr.get(p) == v and pr.get(other[0]) != other[1]]
            if len(rest) >= min_runs:
                rs = _stats(rest)
                clear = sign * (bs[0] - rs[0]) > 0 and _gap_is_clear(bs, rs, min_gap)
                text += (f"; without {other[0]}={other[1]} its mean is {_fmt(rs[0], pct)}, "
                         + (f"still clearly {worse}" if clear else "so most of the damage comes from that combination"))
                break
        lines.append(text + ".")
    lines += [it["text"] for it in inter]
    y = np.array([t[1] for t in rows])
    for label, mask in (("diverged", np.array([t[2].get("status") == "diverged" for t in rows])),
                        (f"ended near chance ({metric} < {_fmt(NEAR_CHANCE, pct)})",
                         np.array([t[2].get("status") == "completed" for t in rows]) & (y < NEAR_CHANCE)
                         if pct else np.zeros(len(rows), bool))):
        if not mask.any():
            continue
        causes = []
        if mask.sum() < min_runs:  # too few to say what they have in common
            params_checked = []
        else:
            params_checked = params
        for p in params_checked:
            vals = np.array([str(t[0].get(p)) for t in rows])
            for v in np.unique(vals):
                share_bad = float(np.mean(vals[mask] == v))
                share_all = float(np.mean(vals == v))
                if share_bad >= 0.6 and share_bad >= 1.5 * share_all and share_all < 1:
                    causes.append((share_bad / share_all, f"{p}={v} ({100 * share_bad:.0f}% of them vs "
                                                          f"{100 * share_all:.0f}% of all runs)"))
        text = f"{int(mask.sum())} of {len(rows)} runs {label}"
        if causes:
            text += "; over-represented among them: " + ", ".join(c for _, c in sorted(causes, reverse=True)[:4])
        lines.append(text + ".")
    return lines


def _interactions(rows, params, sign, min_gap, min_runs, metric, pct, k=3):
    """Pairs ``a=u, b=v`` whose runs are clearly worse than runs with ``a=u`` or ``b=v`` alone.

    ``sign`` is +1 when higher values of ``metric`` are better, -1 when lower ones are; ``pct``
    shows the values as percentages.

    Returns up to ``k`` dicts with ``a, u, b, v`` and a sentence ``text``, worst first.
    """
    found = []
    cats = [p for p in params if not _is_continuous(sorted({t[0].get(p) for t in rows}, key=_sort_key))]
    for a, b in combinations(cats, 2):
        groups = defaultdict(list)
        for params_, value, _ in rows:
            groups[(params_.get(a), params_.get(b))].append(value)
        for (u, v), values in groups.items():
            if len(values) < min_runs:
                continue
            combo = _stats(values)
            only_a = [val for pr, val, _ in rows if pr.get(a) == u and pr.get(b) != v]
            only_b = [val for pr, val, _ in rows if pr.get(b) == v and pr.get(a) != u]
            if len(only_a) < min_runs or len(only_b) < min_runs:
                continue
            sa, sb = _stats(only_a), _stats(only_b)
            worse_a, worse_b = sign * (sa[0] - combo[0]), sign * (sb[0] - combo[0])
            if worse_a > 0 and worse_b > 0 and _gap_is_clear(sa, combo, 2 * min_gap) \
                    and _gap_is_clear(sb, combo, 2 * min_gap):
                found.append((min(worse_a, worse_b), {
                    "a": a, "u": u, "b": b, "v": v,
                    "text": f"{a}={u} together with {b}={v} fails: mean {metric} {_fmt(combo[0], pct)} over "
                            f"{combo[2]} runs, vs {_fmt(sa[0], pct)} for {a}={u} with another {b} and "
                            f"{_fmt(sb[0], pct)} for {b}={v} with another {a}."}))
    found.sort(key=lambda t: t[0], reverse=True)
    return [d for _, d in found[:k]]


def top_runs_table(records, metric="val_accuracy", goal=None, n=10):
    """(columns, rows) of the ``n`` best completed runs by ``metric`` (``goal``: see :func:`metric_goal`)."""
    goal = metric_goal(metric, records, goal)
    ok = [r for r in records if r.get("status") == "completed" and r.get(metric) is not None]
    ok.sort(key=lambda r: r[metric], reverse=goal == "maximize")
    columns = ["rank", "run", metric, "test_accuracy", "seconds"]
    rows = [[i + 1, r.get("run_name"), round(r[metric], 4),
             None if r.get("test_accuracy") is None else round(r["test_accuracy"], 4),
             None if r.get("seconds") is None else round(r["seconds"], 1)] for i, r in enumerate(ok[:n])]
    return columns, rows


# --------------------------------------------------------------------------------------------
# 3. Confusion matrix
# --------------------------------------------------------------------------------------------


def most_confused_pairs(cm, k=5):
    """The ``k`` largest off-diagonal cells as ``(true, predicted, count)``, largest first."""
    cm = np.asarray(cm)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None)[::-1][:k]
    return [(int(i), int(j), int(off[i, j])) for i, j in zip(*np.unravel_index(flat, cm.shape)) if off[i, j] > 0]


def _heatmap(ax, data, labels, fmt, title, cmap, vmax=None):
    im = ax.imshow(data, cmap=cmap, vmin=0, vmax=vmax)
    k = len(labels)
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = np.nanmax(data) if vmax is None else vmax
    for i in range(k):
        for j in range(k):
            v = data[i, j]
            if v:
                ax.text(j, i, fmt(v), ha="center", va="center", fontsize=6.5,
                        color="white" if v > 0.55 * top else "black")
    return im


def plot_confusion(y_true, y_pred, class_names, path, title=None):
    """Confusion matrix as counts and as row-normalised rates, plus each class's accuracy."""
    k = len(class_names)
    cm = confusion_matrix(y_true, y_pred, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = cm / cm.sum(axis=1, keepdims=True)
    rates = np.nan_to_num(rates)
    acc = per_class_accuracy(cm)
    fig = _figure((18, 6.2))
    ax1, ax2, ax3 = fig.subplots(1, 3, width_ratios=[1, 1, 0.6])
    im1 = _heatmap(ax1, cm, class_names, lambda v: f"{int(v)}", "counts", "Blues")
    fig.colorbar(im1, ax=ax1, shrink=0.8)
    im2 = _heatmap(ax2, rates, class_names, lambda v: f"{100 * v:.0f}" if v >= 0.005 else "",
                   "row-normalised (% of each true class)", "Blues", vmax=1.0)
    fig.colorbar(im2, ax=ax2, shrink=0.8)
    order = np.argsort(acc)
    ax3.barh(range(k), acc[order], color=["#d62728" if a < np.nanmean(acc) else "#2ca02c" for a in acc[order]])
    ax3.set_yticks(range(k), [class_names[i] for i in order], fontsize=8)
    for pos, a in enumerate(acc[order]):
        ax3.text(min(a, 1.0) - 0.01, pos, f"{100 * a:.1f}%", ha="right", va="center", fontsize=7, color="white")
    ax3.axvline(float(np.trace(cm) / max(cm.sum(), 1)), color="black", ls="--", lw=1, label="overall")
    ax3.set_xlim(0, 1)
    ax3.set_title("per-class accuracy (recall)")
    ax3.legend(fontsize=8, loc="lower left")
    overall = np.trace(cm) / max(cm.sum(), 1)
    fig.suptitle(title or f"test accuracy {100 * overall:.2f}% on {int(cm.sum())} images")
    return save_figure(fig, path)


def plot_confused_pairs(x, y_true, y_pred, class_names, path, n_pairs=4, n_examples=6):
    """Example images of the most confused (true, predicted) pairs, one row per pair."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    pairs = most_confused_pairs(cm, n_pairs)
    rows = max(len(pairs), 1)
    fig = _figure((1.5 * n_examples + 2.5, 1.7 * rows + 0.6))
    axes = np.atleast_2d(fig.subplots(rows, n_examples))
    for ax in axes.ravel():
        ax.set_axis_off()
    if not pairs:
        axes[0, 0].text(0, 0.5, "no mistakes", transform=axes[0, 0].transAxes)
    for r, (i, j, count) in enumerate(pairs):
        idx = np.flatnonzero((y_true == i) & (y_pred == j))[:n_examples]
        for c, n in enumerate(idx):
            axes[r, c].imshow(_image(x[n]), cmap="gray_r")
        axes[r, 0].set_title(f"true {class_names[i]} -> predicted {class_names[j]}: {count} "
                             f"({100 * count / max(cm[i].sum(), 1):.1f}% of {class_names[i]})",
                             fontsize=9, loc="left")
    fig.suptitle("most confused pairs (test set)")
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# 4. Cross-entropy vs squared error
# --------------------------------------------------------------------------------------------

LOSS_LABELS = {"cross_entropy": "cross-entropy", "mean_squared_error": "squared error"}


def _curves(runs, key):
    """``{(label, loss): (epochs, mean, lo, hi, n)}`` over seeds, for runs with ``key`` in history."""
    groups = defaultdict(list)
    for r in runs:
        h = (r.get("history") or {}).get(key)
        if h:
            groups[(r["label"], r["loss"])].append([np.nan if v is None else v for v in h])
    out = {}
    for g, series in groups.items():
        n = min(len(s) for s in series)
        arr = np.array([s[:n] for s in series], float)
        out[g] = (np.arange(1, n + 1), np.nanmean(arr, 0), np.nanmin(arr, 0), np.nanmax(arr, 0), len(series))
    return out


def plot_loss_comparison(runs, path):
    """Validation accuracy and loss per epoch for each configuration trained with each loss.

    Parameters
    ----------
    runs : list of dict
        ``label`` (configuration), ``loss`` (``cross_entropy`` or ``mean_squared_error``),
        ``seed`` and ``history`` (per-epoch lists with ``val_accuracy``, ``val_loss``). Seeds
        of one (label, loss) are drawn as their mean with a min-max band.
    """
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator
    labels = sorted({r["label"] for r in runs})
    color = {lab: colormaps["tab10"](i % 10) for i, lab in enumerate(labels)}
    style = {"cross_entropy": "-", "mean_squared_error": "--"}
    fig = _figure((16, 5))
    axes = fig.subplots(1, 3)
    panels = [("val_accuracy", None, "validation accuracy"),
              ("val_loss", "cross_entropy", "validation loss: cross-entropy runs"),
              ("val_loss", "mean_squared_error", "validation loss: squared-error runs")]
    for ax, (key, only, title) in zip(axes, panels):
        for (label, loss), (ep, mean, lo, hi, n) in sorted(_curves(runs, key).items()):
            if only and loss != only:
                continue
            ax.plot(ep, mean, style.get(loss, ":"), color=color[label], marker="o", ms=3,
                    label=f"{label} / {LOSS_LABELS.get(loss, loss)} (n={n})")
            if n > 1:
                ax.fill_between(ep, lo, hi, color=color[label], alpha=0.15)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("cross-entropy (solid) vs squared error (dashed): mean over seeds, band = min to max")
    return save_figure(fig, path)


def loss_summary(runs):
    """``{label: {loss: (mean, std, n)}}`` of the final validation accuracy, and of epoch 1's."""
    final, first = defaultdict(dict), defaultdict(dict)
    groups = defaultdict(list)
    for r in runs:
        acc = [v for v in (r.get("history") or {}).get("val_accuracy", []) if v is not None]
        if r.get("status") == "diverged" or not acc:
            acc = [0.0]
        groups[(r["label"], r["loss"])].append(acc)
    for (label, loss), accs in groups.items():
        final[label][loss] = _stats([a[-1] for a in accs])
        first[label][loss] = _stats([a[0] for a in accs])
    return dict(final), dict(first)


def loss_conclusion(runs):
    """The conclusion the curves support, in one paragraph computed from ``runs``."""
    final, first = loss_summary(runs)
    pairs = [(lab, d["cross_entropy"], d["mean_squared_error"]) for lab, d in final.items()
             if "cross_entropy" in d and "mean_squared_error" in d]
    if not pairs:
        return "Both losses are needed for a comparison; no configuration was trained with both."
    ce_wins = [lab for lab, ce, se in pairs if ce[0] > se[0] and _gap_is_clear(ce, se, 0.005)]
    se_wins = [lab for lab, ce, se in pairs if se[0] > ce[0] and _gap_is_clear(ce, se, 0.005)]
    diffs = ", ".join(f"{100 * (ce[0] - se[0]):+.1f} points for {lab} (seed spread ±{100 * max(ce[1], se[1]):.1f})"
                      for lab, ce, se in pairs)
    early = [(lab, first[lab]["cross_entropy"][0] - first[lab]["mean_squared_error"][0]) for lab, _, _ in pairs]
    early_text = ", ".join(f"{100 * d:+.1f}" for _, d in early)
    n = len(pairs)
    every = "the one configuration" if n == 1 else f"all {n} configurations"
    if len(ce_wins) == n:
        verdict = f"Cross-entropy ends with a clearly higher validation accuracy than squared error in {every}"
    elif len(se_wins) == n:
        verdict = f"Squared error ends with a clearly higher validation accuracy than cross-entropy in {every}"
    elif not ce_wins and not se_wins:
        verdict = (f"The final validation accuracies of the two losses are within the seed-to-seed spread in {every}, "
                   "so these runs do not separate them")
    else:
        verdict = (f"Cross-entropy is clearly better in {len(ce_wins)} and squared error in {len(se_wins)} "
                   f"of {n} configuration(s)")
    faster = sum(d > 0 for _, d in early)
    speed = (f"After the first epoch cross-entropy is ahead in {faster} of {n} ({early_text} points), "
             + ("consistent with its larger gradients when the softmax output is confidently wrong."
                if faster > n / 2 else "so it does not learn faster in these runs."))
    return f"{verdict} (cross-entropy minus squared error: {diffs}). {speed}"


# --------------------------------------------------------------------------------------------
# 5. Transfer to MNIST
# --------------------------------------------------------------------------------------------

TRANSFER_KEYS = ("optimizer", "activation", "num_layers", "hidden_size", "batch_size", "learning_rate",
                 "weight_init", "weight_decay")


def choose_transfer_configs(records, k=3, metric="val_accuracy", min_differences=2, goal=None):
    """``k`` good and different configurations from a sweep, with the reason each was chosen.

    The best run first; then, going down the ranking, runs that differ from every run chosen
    so far in at least ``min_differences`` of :data:`TRANSFER_KEYS`, so the three test more
    than one idea; the next best runs fill up if too few differ. The ranking puts the highest
    ``metric`` first, or the lowest when ``goal`` is ``"minimize"`` (None: see :func:`metric_goal`).

    Returns
    -------
    list of (dict, str)
        The records and why each was picked.
    """
    ok = sorted((r for r in records if r.get("status") == "completed" and r.get(metric) is not None),
                key=lambda r: r[metric], reverse=metric_goal(metric, records, goal) == "maximize")
    cfg = [r.get("config") or r.get("params") or {} for r in ok]
    chosen = []
    for i, r in enumerate(ok):
        if len(chosen) == k:
            break
        if not chosen:
            chosen.append((i, f"best on Fashion-MNIST ({metric} {r[metric]:.4f})"))
            continue
        diffs = [[key for key in TRANSFER_KEYS if cfg[i].get(key) != cfg[j].get(key)] for j, _ in chosen]
        if all(len(d) >= min_differences for d in diffs):
            d0 = diffs[0]
            chosen.append((i, f"rank {i + 1} ({metric} {r[metric]:.4f}); differs from the best in {', '.join(d0)}"))
    for i, r in enumerate(ok):
        if len(chosen) == k:
            break
        if i not in [c for c, _ in chosen]:
            chosen.append((i, f"rank {i + 1} ({metric} {r[metric]:.4f})"))
    return [(ok[i], why) for i, why in chosen]


def markdown_table(columns, rows):
    """A GitHub-flavoured Markdown table."""
    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def plot_table(columns, rows, path, title=None, col_widths=None):
    """A table rendered as a PNG (for wandb and the report)."""
    cells = [["" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v)) for v in row] for row in rows]
    chars = [max([len(str(c))] + [len(r[i]) for r in cells]) + 2 for i, c in enumerate(columns)]
    width = max(6.0, 0.085 * sum(chars))
    if col_widths is None:  # each column as wide as its longest text
        col_widths = [n / sum(chars) for n in chars]
    fig = _figure((width, 0.32 * (len(rows) + 1) + (0.5 if title else 0.1)))
    ax = fig.add_subplot()
    ax.set_axis_off()
    table = ax.table(cellText=cells or [[""] * len(columns)], colLabels=list(columns), loc="center",
                     cellLoc="left", colLoc="left", colWidths=col_widths)
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.4)
    for (r, col), c in table.get_celld().items():
        c.PAD = 0.5 / chars[col]  # matplotlib pads by a share of the cell width; keep it about half a character
        if r == 0:
            c.set_text_props(weight="bold")
            c.set_facecolor("#e8e8e8")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# report.md
# --------------------------------------------------------------------------------------------


def write_section(out_dir, key, markdown):
    """Store one section of report.md (``sections/<n>-<key>.md``) and rebuild the report."""
    if key not in SECTIONS:
        raise ValueError(f"unknown section {key!r}; choose one of {', '.join(SECTIONS)}")
    n = SECTIONS.index(key) + 1
    atomic_write_text(os.path.join(out_dir, "sections", f"{n}-{key}.md"), markdown.rstrip() + "\n")
    return assemble_report(out_dir)


def assemble_report(out_dir, title="Feedforward networks on Fashion-MNIST: experiments"):
    """Concatenate the sections present in ``out_dir/sections`` into ``out_dir/report.md``."""
    parts = [f"# {title}\n"]
    for n, key in enumerate(SECTIONS, 1):
        p = os.path.join(out_dir, "sections", f"{n}-{key}.md")
        if os.path.exists(p):
            with open(p) as f:
                parts.append(f.read())
    path = os.path.join(out_dir, "report.md")
    atomic_write_text(path, "\n".join(parts))
    return path


__all__ = ["plot_class_samples", "plot_sweep_timeline", "plot_parallel_coordinates", "plot_param_importance",
           "plot_confusion", "plot_confused_pairs", "plot_loss_comparison", "plot_table", "sweep_findings",
           "param_effects", "optuna_importance", "analysis_rows", "most_confused_pairs", "loss_conclusion",
           "loss_summary", "choose_transfer_configs", "metric_goal", "markdown_table", "top_runs_table", "write_section",
           "assemble_report", "save_figure", "log_to_wandb", "read_results"]
