"""The sweep's figures: the timeline of its trials, parallel coordinates, parameter importance."""

from __future__ import annotations

import numpy as np

from .figures import new_figure, save_figure
from .sweep_analysis import (
    analysis_rows,
    goal_sign,
    is_continuous,
    metric_goal,
    optuna_importance,
    param_effects,
    value_sort_key,
    varied_params,
    wants_log_scale,
)

STATUS_COLORS = {
    "completed": "#1f77b4",
    "pruned": "#ff7f0e",
    "diverged": "#d62728",
    "stopped": "#9467bd",
    "failed": "#7f7f7f",
}


def plot_sweep_timeline(records, path, metric="val_accuracy", goal=None):
    """Metric of every run against the sweep's wall-clock time: a segment from each trial's
    start to its finish, coloured by status, and the best value so far (the highest, or the
    lowest when ``goal`` is ``"minimize"``; None: see :func:`metric_goal`)."""
    sign = goal_sign(metric_goal(metric, records, goal))
    rows = [r for r in records if r.get("finished_at") and r.get("started_at")]
    fig = new_figure((10, 4.8))
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
        ax.scatter(
            xs1,
            ys,
            s=18,
            color=color,
            marker="x" if status == "diverged" else "o",
            label=f"{status} ({len(sel)})",
            zorder=3,
        )
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

    sign = goal_sign(metric_goal(metric, records, goal))
    cmap = "viridis" if sign > 0 else "viridis_r"  # the best runs yellow either way
    rows = analysis_rows(records, metric)
    params = params or varied_params(rows)
    fig = new_figure((max(8, 1.5 * (len(params) + 1)), 5.5))
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
        uniq = sorted(set(vals), key=value_sort_key)
        if is_continuous(uniq):
            x = np.asarray(vals, float)
            log = wants_log_scale(x)
            xs = np.log10(x) if log else x
            lo, hi = xs.min(), xs.max()
            coords[:, j] = (xs - lo) / (hi - lo) if hi > lo else 0.5
            tv = np.linspace(lo, hi, 4)
            ticks.append(
                [(float((t - lo) / (hi - lo)) if hi > lo else 0.5, f"{10**t:.2g}" if log else f"{t:.3g}") for t in tv]
            )
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
        ax.add_collection(
            LineCollection(
                [np.column_stack([xs, coords[i]]) for i in order if diverged[i]],
                colors="0.6",
                linestyles="dashed",
                linewidths=0.8,
                alpha=0.6,
            )
        )
    ax.add_collection(
        LineCollection(
            [np.column_stack([xs, coords[i]]) for i in finished],
            cmap=cmap,
            norm=norm,
            array=y[finished],
            linewidths=1.2,
            alpha=0.8,
        )
    )
    for j in range(n_axes):
        ax.axvline(j, color="black", lw=0.8)
        for pos, label in ticks[j]:
            ax.text(
                j + 0.03,
                pos,
                label,
                fontsize=7,
                va="center",
                ha="left",
                bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 0.5},
            )
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
    sign = goal_sign(goal)
    rows = analysis_rows(records, metric)
    effects = param_effects(rows)
    fig = new_figure((12, max(4, 0.32 * min(top, sum(len(e["correlation"]) for e in effects.values()) or 1) + 1.5)))
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
    ax1.barh(
        ypos + (h / 2 if fan else 0),
        [effects[p]["eta2"] for p in names],
        height=h,
        color="#1f77b4",
        label="variance explained alone (eta²)",
    )
    if fan:
        ax1.barh(ypos - h / 2, [fan.get(p, 0.0) for p in names], height=h, color="#2ca02c", label=fan_name)
    ax1.set_yticks(ypos, names)
    ax1.set_xlabel("importance")
    ax1.set_title(f"importance for {metric}")
    ax1.legend(fontsize=8, loc="lower right")
    corr = sorted(
        ((label, r) for e in effects.values() for label, r in e["correlation"].items()),
        key=lambda t: abs(t[1]),
        reverse=True,
    )[:top][::-1]
    ax2.barh(
        np.arange(len(corr)), [r for _, r in corr], color=["#2ca02c" if sign * r > 0 else "#d62728" for _, r in corr]
    )
    ax2.set_yticks(np.arange(len(corr)), [label for label, _ in corr], fontsize=8)
    ax2.axvline(0, color="black", lw=0.8)
    ax2.set_xlim(-1, 1)
    ax2.set_xlabel(f"correlation with {metric} ({'higher' if sign > 0 else 'lower'} is better)")
    ax2.set_title("correlation of each value (one-hot)")
    return save_figure(fig, path)
